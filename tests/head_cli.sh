#!/usr/bin/env bash
# tests/head_cli.sh: `slmesh head` end to end on a small hand-made data set: train (CSV with
# quoted fields and an embedded newline, and JSON lines), predict (--text and --data, JSON
# lines with label/confidence/top/escalate), eval (--json with accuracy, macro_f1, ece,
# per_class, confusion), an explicit out-of-scope class, usage errors (exit 2), and a
# damaged or truncated head file (exit 1 with a message naming the problem).
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "head_cli: FAIL: $*" >&2; exit 1; }

{
    echo 'text,label'
    for i in 1 2 3 4 5 6 7 8; do
        echo "\"I lost my card, help $i\",card_lost"
        echo "\"my card was stolen\"\"$i\"\"\",card_lost"
        echo "what is my balance $i,balance"
        echo "\"how much money\nis left $i\",balance"
        echo "send money to Anna $i,transfer"
        echo "transfer funds to my friend $i,transfer"
        echo "what's the weather like $i,oos"
        echo "tell me a joke $i,oos"
    done
} > "$tmp/train.csv"
printf '{"text": "I lost my card", "label": "card_lost"}\n{"text": "balance please", "label": "balance"}\n{"text": "send 5 to Bob", "label": "transfer"}\n{"text": "play some music", "label": "music"}\n' > "$tmp/test.jsonl"

# Usage errors: exit 2.
set +e
"$bin" head >/dev/null 2>&1; [ $? -eq 2 ] || fail "no subcommand: want 2"
"$bin" head train --data "$tmp/train.csv" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no -o: want 2"
"$bin" head train --data "$tmp/train.csv" -o "$tmp/h.bin" --max-false-escalation 2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad rate: want 2"
"$bin" head train --data "$tmp/train.csv" -o "$tmp/h.bin" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option: want 2"
"$bin" head predict "$tmp/h.bin" >/dev/null 2>&1; [ $? -eq 2 ] || fail "predict without input: want 2"
"$bin" head train --data "$tmp/train.csv" --label-col nope -o "$tmp/h.bin" >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing column: want 1"
set -e

"$bin" head train --data "$tmp/train.csv" --oos-label oos --hash-bits 12 -t 2 -o "$tmp/h.bin" --json > "$tmp/rep.json"
grep -q '"val_ece_after"' "$tmp/rep.json" || fail "train report"

out=$("$bin" head predict "$tmp/h.bin" --text "someone stole my card" --json)
echo "$out" | grep -q '^{"label":"card_lost","confidence":[0-9.e-]*,"top":\[\["card_lost",' || fail "predict: $out"
echo "$out" | grep -q '"escalate":false}$' || fail "predict escalate: $out"
out=$("$bin" head predict "$tmp/h.bin" --text "tell me a joke please" --json)
echo "$out" | grep -q '"label":"oos".*"escalate":true' || fail "oos class must escalate: $out"
n=$("$bin" head predict "$tmp/h.bin" --data "$tmp/test.jsonl" --json -t 3 | wc -l)
[ "$n" -eq 4 ] || fail "predict --data: $n lines"

ev=$("$bin" head eval "$tmp/h.bin" --data "$tmp/test.jsonl" --json)
for key in '"accuracy":' '"macro_f1":' '"ece":' '"per_class":{' '"confusion":{"labels":' '"oos_recall":1'; do
    echo "$ev" | grep -q "$key" || fail "eval lacks $key: $ev"
done

# A damaged file (one byte) and a truncated one: exit 1, with the reason.
cp "$tmp/h.bin" "$tmp/bad.bin"
printf '\x55' | dd of="$tmp/bad.bin" bs=1 seek=200 conv=notrunc status=none
set +e
msg=$("$bin" head predict "$tmp/bad.bin" --text hi 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "checksum" || fail "damaged file: rc=$rc $msg"
head -c 100 "$tmp/h.bin" > "$tmp/short.bin"
msg=$("$bin" head eval "$tmp/short.bin" --data "$tmp/test.jsonl" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "truncated file: rc=$rc $msg"
echo "not a head" > "$tmp/junk.bin"
msg=$("$bin" head predict "$tmp/junk.bin" --text hi 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "not a head file" || fail "junk file: rc=$rc $msg"
set -e
echo "head_cli: ok"
