#!/usr/bin/env bash
# tests/audit_pg.sh: the audit suite against a real PostgreSQL server.
#
# Starts a throw-away server (Debian's postgresql package: initdb + pg_ctl) in a temporary
# directory, listening only on a Unix socket in that directory (no TCP), as the postgres
# user when run as root (the server refuses to run as root). Then runs, with
# SLMESH_AUDIT_PG_URL pointing at it: the C suite (tests/test_audit.c: tampering by SQL,
# 8 threads, signed checkpoints), the kill -9 crash test (tests/audit_crash.sh), and the
# CLI's verify exit codes after an UPDATE and a DELETE made with psql. The server and its
# data are removed on exit, whatever happens. Exit 77 (skip) when the server binaries are
# absent.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
build=${SLMESH_BUILD_DIR:?SLMESH_BUILD_DIR not set}
src=${SLMESH_SOURCE_DIR:?SLMESH_SOURCE_DIR not set}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
    echo "SKIP: PostgreSQL server binaries not found (Debian package postgresql; scripts/deps.sh)"
    exit 77
fi
as_pg() { sh -c "$1"; }
if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "SKIP: running as root and there is no postgres user to run the server as"
        exit 77
    fi
    as_pg() { su postgres -s /bin/sh -c "$1"; }
fi

tmp=$(mktemp -d)
started=0
cleanup() {
    if [ "$started" = 1 ]; then as_pg "'$pgbin/pg_ctl' -D '$tmp/data' -m immediate -w stop" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "audit_pg: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] && chown postgres "$tmp"

as_pg "'$pgbin/initdb' -D '$tmp/data' -A trust -U slmesh -E UTF8 --locale=C.UTF-8 --no-sync" \
    >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log"; fail "initdb"; }
as_pg "'$pgbin/pg_ctl' -D '$tmp/data' -l '$tmp/server.log' -w -t 60 \
    -o \"-k '$tmp' -c listen_addresses='' -c max_connections=40\" start" >/dev/null \
    || { cat "$tmp/server.log"; fail "pg_ctl start"; }
started=1
url="postgresql://slmesh@/postgres?host=$tmp"
export SLMESH_AUDIT_PG_URL=$url
echo "audit_pg: server $("$pgbin/postgres" --version) on socket dir $tmp"

# 1. The C suite, PostgreSQL group only (the SQLite group runs as test_audit itself).
SLMESH_AUDIT_PG_ONLY=1 "$build/test_audit" || fail "C suite against PostgreSQL"

# 2. Crash safety: four writers, one killed with SIGKILL mid-stream.
psql -q -d "$url" -c "DROP TABLE IF EXISTS audit_log, audit_checkpoint" >/dev/null
bash "$src/tests/audit_crash.sh" || fail "crash test against PostgreSQL"

# 3. CLI: verify exits 0, then 1 naming the record after edits made with psql.
psql -q -d "$url" -c "DROP TABLE IF EXISTS audit_log, audit_checkpoint" >/dev/null
for i in 1 2 3 4 5 6; do
    printf '{"request_id":"c%s","task":"chat","model":"m","tier":"local","route":"local","reason":"","tokens_in":1,"tokens_out":1,"latency_ms":1,"cost":0}\n' "$i"
done | "$bin" audit append --db "$url" >/dev/null
"$bin" audit verify --db "$url" | grep -q "ok: 6 records" || fail "verify after CLI append"
psql -q -d "$url" -c "UPDATE audit_log SET body = replace(body, '\"tokens_in\":1', '\"tokens_in\":2') WHERE seq = 4" >/dev/null
set +e
"$bin" audit verify --db "$url" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "record 4: stored hash" "$tmp/err" || fail "update: exit $rc: $(cat "$tmp/err")"
psql -q -d "$url" -c "DELETE FROM audit_log WHERE seq = 2" >/dev/null
set +e
"$bin" audit verify --db "$url" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "record 2: missing" "$tmp/err" || fail "delete: exit $rc: $(cat "$tmp/err")"
# A connection that cannot be made is a failure (exit 1) with libpq's reason.
set +e
"$bin" audit verify --db "postgresql://nobody@/nodb?host=$tmp" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "database error: postgresql: connect" "$tmp/err" || fail "bad URL: exit $rc: $(cat "$tmp/err")"
echo "audit_pg: ok"
