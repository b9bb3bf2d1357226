#!/usr/bin/env bash
# tests/cli_score.sh: `slmesh score` on stories260K against the reference: --json gives the
# reference tokens, one entry per position with N alternatives, the reference's top-1 token
# first with its log-probability (within the F32 tolerance of the README); text output and
# usage errors.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
shared=${SLMESH_SHARED:-../shared}
model=$shared/models/stories260K.gguf
ref=$shared/reference/logits/stories260K.json
fail() { echo "cli_score: FAIL: $*" >&2; exit 1; }
if [ ! -f "$model" ] || [ ! -f "$ref" ]; then
    echo "cli_score: skip: $model or $ref is absent" >&2
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prompt=$(jq -r .prompt "$ref")

"$bin" score -m "$model" -p "$prompt" --top 5 --json >"$tmp/out.json" || fail "exit $?"
[ "$(jq -c .tokens "$tmp/out.json")" = "$(jq -c .tokens "$ref")" ] || fail "tokens differ from the reference"
n=$(jq '.tokens | length' "$ref")
[ "$(jq '.positions | length' "$tmp/out.json")" -eq "$n" ] || fail "want $n positions"
[ "$(jq '[.positions[] | .top | length] | unique' -c "$tmp/out.json")" = "[5]" ] || fail "want 5 alternatives everywhere"
# top-1 ids equal the reference argmax; their logprobs within 0.05 (README, F32 column)
jq -n --slurpfile o "$tmp/out.json" --slurpfile r "$ref" '
  [range(0; $r[0].positions | length) as $p
   | ($r[0].positions[$p].logprobs) as $lp
   | ($lp | to_entries | max_by(.value) | .key) as $best
   | ($o[0].positions[$p].top[0]) as $t
   | {p: $p, same: ($t[0] == $best), diff: (($t[1] - $lp[$t[0]]) | fabs)}]
  | {miss: map(select(.same | not)) | length, worst: (map(.diff) | max)}' >"$tmp/cmp.json"
[ "$(jq .miss "$tmp/cmp.json")" -eq 0 ] || fail "top-1 differs: $(cat "$tmp/cmp.json")"
jq -e '.worst <= 0.05' "$tmp/cmp.json" >/dev/null || fail "logprob differs: $(cat "$tmp/cmp.json")"
# descending order within each position
jq -e '[.positions[] | .top | map(.[1]) | . == (sort | reverse)] | all' "$tmp/out.json" >/dev/null || fail "alternatives not sorted"

# Text output: one line per position.
lines=$("$bin" score -m "$model" -p "$prompt" --top 3 | wc -l)
[ "$lines" -eq "$n" ] || fail "text output: $lines lines, want $n"

expect() {  # expect CODE ARGS...
    local want=$1; shift
    set +e; "$bin" "$@" >/dev/null 2>&1; local rc=$?; set -e
    [ "$rc" -eq "$want" ] || fail "slmesh $*: exit $rc, want $want"
}
expect 2 score -m "$model" -p "x" --top 0
expect 2 score -m "$model" -p "x" --top 21
expect 2 score -m "$model" -p "x" --frob
expect 2 score -p "x"
expect 1 score -m "$tmp/none.gguf" -p "x"
echo "cli_score: ok"
