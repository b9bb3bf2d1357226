#!/usr/bin/env bash
# tests/cli_guard.sh: `slmesh guard check|train|bench` through the real binary: verdicts and
# exit codes (0 allow/redact, 1 block or failure, 2 usage), training a tiny model, bench.
set -euo pipefail
BIN=${SLMESH_BIN:?SLMESH_BIN not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/policy.json" <<'JSON'
{"input": [
   {"name": "no-cards", "pii": ["CREDIT_CARD"], "action": "block", "reason": "no payment data"},
   {"name": "contact", "pii": ["EMAIL_ADDRESS"], "action": "redact"},
   {"name": "injection", "deny": ["ignore previous instructions"]}],
 "output": [{"name": "labels", "labels": ["refund", "billing"]}]}
JSON

out=$(printf 'where is my parcel?' | "$BIN" guard check --policy "$tmp/policy.json" --no-tagger)
echo "$out" | grep -q '"action": *"allow"' || fail "allow: $out"
out=$(printf 'mail a@b.io' | "$BIN" guard check --policy "$tmp/policy.json" --no-tagger)
echo "$out" | grep -q '"action": *"redact".*"redacted": *"mail <EMAIL_ADDRESS>"' || fail "redact: $out"
set +e
out=$(printf 'card 4111111111111111' | "$BIN" guard check --policy "$tmp/policy.json" --no-tagger); rc=$?
set -e
[ $rc -eq 1 ] && echo "$out" | grep -q '"rule": *"no-cards".*"reason": *"no payment data"' || fail "block: rc=$rc $out"
set +e
out=$(printf 'shipping' | "$BIN" guard check --policy "$tmp/policy.json" --output); rc=$?
set -e
[ $rc -eq 1 ] && echo "$out" | grep -q 'not an allowed label' || fail "output labels: rc=$rc $out"
printf 'refund\n' > "$tmp/answer.txt"
"$BIN" guard check --policy "$tmp/policy.json" --output "$tmp/answer.txt" | grep -q '"allow"' || fail "output file"

# a broken policy is a failure with the rule named; usage errors exit 2
echo '{"input": [{"pii": ["NOPE"]}]}' > "$tmp/bad.json"
set +e
"$BIN" guard check --policy "$tmp/bad.json" </dev/null >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "input rule 0: pii lists an unknown type" "$tmp/err" || fail "bad policy: rc=$rc $(cat "$tmp/err")"
for args in "check" "check --bogus" "train" "train --data x" "train --data x -o y --epochs 0" "bench --mb 99" "frobnicate" ""; do
    set +e
    # shellcheck disable=SC2086
    "$BIN" guard $args </dev/null >/dev/null 2>&1; rc=$?
    set -e
    [ $rc -eq 2 ] || fail "usage 'guard $args' exit $rc"
done

# train a tiny model, use it
cat > "$tmp/train.json" <<'JSON'
[{"full_text": "My name is Anna Berg.", "spans": [{"entity_type": "PERSON", "start_position": 11, "end_position": 20}]},
 {"full_text": "I live in Oslo.", "spans": [{"entity_type": "GPE", "start_position": 10, "end_position": 14}]}]
JSON
"$BIN" guard train --data "$tmp/train.json" -o "$tmp/m.bin" --epochs 3 --seed 5 | grep -q "trained on 2 sentences" || fail "train"
printf 'My name is Anna Berg.' | "$BIN" redact --tagger "$tmp/m.bin" >/dev/null || fail "redact with trained model"

# bench prints both figures
"$BIN" guard bench --mb 1 --no-tagger | grep -q "ms per 1000 tokens" || fail "bench"
echo "cli_guard: ok"
