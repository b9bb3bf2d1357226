#!/usr/bin/env bash
# tests/audit_cli.sh: `slmesh audit` end to end on SQLite: append from stdin, verify (exit
# 0), export, signed checkpoints (keygen, --key, --pub), usage errors (exit 2), a bad
# record (exit 1), and tampering with the bytes of the database file itself (one byte of
# a record changed, as an editor or a disk would), which verify must report (exit 1)
# naming the record.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "audit_cli: FAIL: $*" >&2; exit 1; }
db=$tmp/a.db

rec() {  # rec ID ANSWER
    printf '{"request_id":"%s","task":"classify","model":"tiny","tier":"local","route":"local","reason":"ok","tokens_in":5,"tokens_out":1,"latency_ms":2,"cost":0.5,"policy":{"pii.email":"redacted"},"prompt":"is <EMAIL_1> spam?","answer":"%s"}\n' "$1" "$2"
}

# Usage errors: exit 2.
set +e
"$bin" audit >/dev/null 2>&1; [ $? -eq 2 ] || fail "no action: want exit 2"
"$bin" audit verify >/dev/null 2>&1; [ $? -eq 2 ] || fail "no --db: want exit 2"
"$bin" audit frobnicate --db "$db" >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown action: want exit 2"
"$bin" audit verify --db "$db" --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option: want exit 2"
"$bin" audit append --db "$db" --checkpoint-every 0 </dev/null >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad N: want exit 2"
set -e

# Keys, then records with a signed checkpoint every 4 records.
"$bin" audit keygen --key "$tmp/k.pem" --pub "$tmp/k.pub"
[ "$(stat -c %a "$tmp/k.pem")" = 600 ] || fail "private key mode"
if "$bin" audit keygen --key "$tmp/k.pem" --pub "$tmp/k2.pub" 2>/dev/null; then fail "keygen overwrote a key"; fi
for i in 1 2 3 4 5 6 7 8 9; do rec "req-$i" "no"; done \
    | "$bin" audit append --db "$db" --key "$tmp/k.pem" --checkpoint-every 4 >"$tmp/append.out"
[ "$(wc -l <"$tmp/append.out")" -eq 9 ] || fail "append printed $(wc -l <"$tmp/append.out") lines"
grep -qE '^9 [0-9a-f]{64}$' "$tmp/append.out" || fail "append output"
out=$("$bin" audit verify --db "$db" --pub "$tmp/k.pub") || fail "verify: $out"
echo "$out"
echo "$out" | grep -q "9 records, 2 checkpoints (2 signatures verified)" || fail "verify summary"
[ "$("$bin" audit export --db "$db" | wc -l)" -eq 9 ] || fail "export lines"
"$bin" audit export --db "$db" --checkpoints | grep -q '"signature":"[0-9a-f]\{128\}"' || fail "checkpoint export"

# A bad record stops append with exit 1 and a line number; earlier lines are committed.
set +e
{ rec req-10 no; echo '{"request_id":"x","bogus":1}'; } | "$bin" audit append --db "$db" >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "bad record: exit $rc"
grep -q "line 2: .*unknown field 'bogus'" "$tmp/err" || fail "bad record message: $(cat "$tmp/err")"
"$bin" audit verify --db "$db" | grep -q "ok: 10 records" || fail "10 records after the bad line"

# Tamper with the file's bytes: record req-7's answer "no" -> "ok" (same length, so SQLite
# still reads the page; keys are sorted, so "answer" precedes "request_id" in a body). Every connection is closed, so the data is in the main file.
[ ! -s "$db-wal" ] || fail "WAL not checkpointed at close"
perl -0777 -pi -e 's/"answer":"no"((?:(?!"answer").){0,400}?"request_id":"req-7")/"answer":"ok"$1/s' "$db"
set +e
"$bin" audit verify --db "$db" >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "tampered file: exit $rc"
cat "$tmp/err"
grep -q "TAMPERED: record 7: stored hash does not match" "$tmp/err" || fail "verify message"
echo "audit_cli: ok"
