#!/usr/bin/env bash
# tests/audit_crash.sh: crash safety of the audit log with the real binary. Four writers
# append at once; one of them, streaming without end, is killed with SIGKILL mid-stream.
# Then `slmesh audit verify` must pass, and every record any writer reported committed
# ("SEQ HASH" on its stdout) must be in the log with that hash.
#
# The log is a SQLite file in a temporary directory, or $SLMESH_AUDIT_PG_URL when set
# (tests/audit_pg.sh runs this script against a real PostgreSQL server).
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "audit_crash: FAIL: $*" >&2; exit 1; }

db=${SLMESH_AUDIT_PG_URL:-$tmp/audit.db}
echo "audit_crash: log in ${db%%\?*}"

# One JSON record per line: writer $1, records $2 .. $3 (no end when $3 is empty).
gen() {
    local w=$1 i=$2 last=${3:-}
    while [ -z "$last" ] || [ "$i" -le "$last" ]; do
        printf '{"request_id":"w%s-%s","task":"chat","model":"tiny","tier":"local","route":"local","reason":"crash test","tokens_in":%s,"tokens_out":1,"latency_ms":1.5,"cost":0,"prompt":"line %s","answer":"ok"}\n' \
            "$w" "$i" "$i" "$i"
        i=$((i + 1))
    done
}

# The victim streams without end through a FIFO (so we hold the writer's own pid).
mkfifo "$tmp/victim.in"
gen victim 1 >"$tmp/victim.in" &
pids+=($!)
"$bin" audit append --db "$db" <"$tmp/victim.in" >"$tmp/victim.out" 2>"$tmp/victim.err" &
victim=$!
pids+=($victim)

# Three bounded writers at the same time.
for w in 1 2 3; do
    gen "$w" 1 60 | "$bin" audit append --db "$db" >"$tmp/w$w.out" 2>"$tmp/w$w.err" &
    pids+=($!)
done

# Kill the victim once it has committed a fair number of records, while the others write.
for _ in $(seq 1 600); do
    n=$(wc -l <"$tmp/victim.out")
    [ "$n" -ge 40 ] && break
    kill -0 "$victim" 2>/dev/null || fail "victim exited early: $(cat "$tmp/victim.err")"
    sleep 0.05
done
[ "$n" -ge 40 ] || fail "victim committed only $n records in 30 s"
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
echo "audit_crash: killed the victim after $(wc -l <"$tmp/victim.out") reported commits"

# The bounded writers finish normally.
for w in 1 2 3; do
    for _ in $(seq 1 1200); do
        [ "$(wc -l <"$tmp/w$w.out")" -ge 60 ] && break
        sleep 0.05
    done
    [ "$(wc -l <"$tmp/w$w.out")" -eq 60 ] || fail "writer $w: $(wc -l <"$tmp/w$w.out") of 60 committed: $(cat "$tmp/w$w.err")"
done

"$bin" audit verify --db "$db" >"$tmp/verify.out" || fail "verify after kill -9: $(cat "$tmp/verify.out")"
cat "$tmp/verify.out"

# Every reported (seq, hash) is in the export. Only complete lines count: the kill may cut
# the victim's last line.
"$bin" audit export --db "$db" \
    | sed -n 's/.*"hash":"\([0-9a-f]\{64\}\)".*"seq":\([0-9]*\),.*/\2 \1/p' | sort >"$tmp/have"
cat "$tmp"/victim.out "$tmp"/w?.out | grep -E '^[0-9]+ [0-9a-f]{64}$' | sort >"$tmp/want"
missing=$(comm -13 "$tmp/have" "$tmp/want" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing committed records missing after the crash"
echo "audit_crash: ok: $(wc -l <"$tmp/want") reported commits all present in $(wc -l <"$tmp/have") records"
