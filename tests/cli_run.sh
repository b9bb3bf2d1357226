#!/usr/bin/env bash
# tests/cli_run.sh: `slmesh run` and `slmesh perplexity` end to end on stories260K: the
# greedy continuation of each reference prompt equals the reference runtime's
# (../shared/reference/logits/stories260K*.json, greedy_text), a seeded sampled run is
# reproducible, repacked and file weight layouts give the same text, bad options exit 2, a missing model exits 1.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
shared=${SLMESH_SHARED:-../shared}
model=$shared/models/stories260K.gguf
fail() { echo "cli_run: FAIL: $*" >&2; exit 1; }
if [ ! -f "$model" ] || [ ! -d "$shared/reference/logits" ]; then
    echo "cli_run: skip: $model or the reference outputs are absent" >&2
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Greedy continuations equal the reference, token for token (64 tokens).
for ref in "$shared"/reference/logits/stories260K*.json; do
    prompt=$(jq -r .prompt "$ref")
    want=$(jq -r .greedy_text "$ref")
    got=$("$bin" run -m "$model" -p "$prompt" -n 64 --temp 0 -t 2 2>"$tmp/err") || fail "$(basename "$ref"): exit $?: $(cat "$tmp/err")"
    [ "$got" = "$want" ] || fail "$(basename "$ref"): greedy text differs:
got:  $got
want: $want"
    grep -q "generated: 64 tokens" "$tmp/err" || fail "stats line missing: $(cat "$tmp/err")"
done

# Sampling with a seed is reproducible; another seed gives another text.
a=$("$bin" run -m "$model" -p "Once upon a time" -n 48 --temp 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.1 --seed 7 2>/dev/null)
b=$("$bin" run -m "$model" -p "Once upon a time" -n 48 --temp 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.1 --seed 7 -t 1 --no-mmap 2>/dev/null)
c=$("$bin" run -m "$model" -p "Once upon a time" -n 48 --temp 0.9 --seed 8 2>/dev/null)
[ "$a" = "$b" ] || fail "same seed, different text"
[ -n "$a" ] && [ "$a" != "$c" ] || fail "different seeds gave the same text"

# Weights repacked at load (the default), kept in the file's layout (--no-repack), and read
# into memory give the same greedy tokens.
q=$shared/models/tiny/tiny-llama-q4_0.gguf
if [ -f "$q" ]; then
    r1=$("$bin" run -m "$q" -p "Once upon a time" -n 24 --temp 0 2>/dev/null) || fail "q4_0 run exit $?"
    r2=$("$bin" run -m "$q" -p "Once upon a time" -n 24 --temp 0 --no-repack 2>/dev/null) || fail "--no-repack exit $?"
    r3=$("$bin" run -m "$q" -p "Once upon a time" -n 24 --temp 0 --no-mmap -t 1 2>/dev/null) || fail "--no-mmap exit $?"
    [ -n "$r1" ] && [ "$r1" = "$r2" ] && [ "$r1" = "$r3" ] || fail "repacked and file layouts gave different text"
fi

# Perplexity over a small file.
for i in 1 2 3 4; do jq -r .prompt "$shared/reference/logits/stories260K.json"; done >"$tmp/text.txt"
out=$("$bin" perplexity -m "$model" -f "$tmp/text.txt" --ctx 64 2>/dev/null) || fail "perplexity exit $?"
echo "$out" | grep -Eq '^perplexity: [0-9]+\.[0-9]+ over [0-9]+ tokens' || fail "perplexity output: $out"

# Chat: two turns; the second reuses the first turn's tokens from the KV cache.
printf 'Hello there\nTell me a story\n' | "$bin" chat -m "$model" -n 12 --temp 0 --system "Be nice" >"$tmp/chat.out" 2>"$tmp/chat.err" \
    || fail "chat exit $?: $(cat "$tmp/chat.err")"
[ "$(grep -c 'generated' "$tmp/chat.err")" -eq 2 ] || fail "chat: want two turns: $(cat "$tmp/chat.err")"
grep -q '([1-9][0-9]* cached)' "$tmp/chat.err" || fail "chat: second turn reused nothing: $(cat "$tmp/chat.err")"
[ -s "$tmp/chat.out" ] || fail "chat: no reply"

# Usage errors exit 2; failures exit 1.
expect() {  # expect CODE ARGS...
    local want=$1; shift
    set +e; "$bin" "$@" >/dev/null 2>&1; local rc=$?; set -e
    [ "$rc" -eq "$want" ] || fail "slmesh $*: exit $rc, want $want"
}
expect 2 run -p "x"
expect 2 run -m "$model"
expect 2 run -m "$model" -p "x" --bogus
expect 2 run -m "$model" -p "x" -n 0
expect 2 run -m "$model" -p "x" -n abc
expect 2 run -m "$model" -p "x" --temp -1
expect 2 run -m "$model" -p "x" --top-p 0
expect 2 run -m "$model" -p "x" --top-k -3
expect 2 run -m "$model" -p "x" --min-p 2
expect 2 run -m "$model" -p "x" --seed -1
expect 2 run -m "$model" -p "x" -t 0
expect 2 run -m "$model" -p "x" --ctx 0
expect 2 run -m "$model" -p
expect 2 perplexity -m "$model"
expect 2 perplexity -m "$model" -f "$tmp/text.txt" --ctx x
expect 2 chat -m "$model" --chat-template no-such-template
expect 1 run -m "$tmp/missing.gguf" -p "x"
expect 1 perplexity -m "$model" -f "$tmp/missing.txt"
expect 1 run -m "$tmp/text.txt" -p "x"
echo "cli_run: ok"
