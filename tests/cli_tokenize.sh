#!/usr/bin/env bash
# tests/cli_tokenize.sh: `slmesh tokenize` against the reference: the stories260K prompt's
# ids (shared/reference/logits/stories260K.json, BOS included), the piece format, special
# tokens on and off with the qwen2 vocabulary, and the usage/failure exit codes.
set -u
BIN=${SLMESH_BIN:?SLMESH_BIN not set}
SHARED=${SLMESH_SHARED:-../shared}
MODEL="$SHARED/models/stories260K.gguf"
QWEN="$SHARED/models/vocab/ggml-vocab-qwen2.gguf"
REF="$SHARED/reference/logits/stories260K.json"
for f in "$MODEL" "$QWEN" "$REF"; do
    if [ ! -f "$f" ]; then echo "SKIP: $f not found"; exit 77; fi
done
fail() { echo "FAIL: $*"; exit 1; }

# 1. ids of the reference prompt, BOS included
prompt=$(node -e 'process.stdout.write(require(process.argv[1]).prompt)' "$REF" 2>/dev/null ||
         python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["prompt"])' "$REF")
want=$(node -e 'process.stdout.write(require(process.argv[1]).tokens.join(" "))' "$REF" 2>/dev/null ||
       python3 -c 'import json,sys; sys.stdout.write(" ".join(map(str,json.load(open(sys.argv[1]))["tokens"])))' "$REF")
got=$("$BIN" tokenize -m "$MODEL" --ids "$prompt") || fail "tokenize exited $?"
[ "$got" = "$want" ] || fail "stories260K prompt ids: got '$got', want '$want'"

# 2. piece lines: BOS shown as its text, then ' Once'
out=$("$BIN" tokenize -m "$MODEL" "Once") || fail "tokenize exited $?"
[ "$(printf '%s\n' "$out" | head -1)" = "$(printf "1\t'<s>'")" ] || fail "BOS line: $out"
printf '%s\n' "$out" | sed -n 2p | grep -q "^403	' Once'$" || fail "piece line: $out"
[ "$("$BIN" tokenize -m "$MODEL" --no-bos --ids "Once")" = "403" ] || fail "--no-bos"

# 3. special tokens only with --special
[ "$("$BIN" tokenize -m "$QWEN" --ids --special "<|im_start|>")" = "151644" ] || fail "--special"
[ "$("$BIN" tokenize -m "$QWEN" --ids "<|im_start|>")" != "151644" ] || fail "special parsed without --special"

# 4. exit codes: usage 2, failure 1
"$BIN" tokenize -m "$MODEL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing TEXT should exit 2"
"$BIN" tokenize --bogus -m "$MODEL" x >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option should exit 2"
"$BIN" tokenize -m /nonexistent.gguf x >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing model should exit 1"
echo "cli_tokenize: ok"
