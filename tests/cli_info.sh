#!/usr/bin/env bash
# tests/cli_info.sh: `slmesh info` on a real model (text and --json), on a corrupt file
# (exit 1, one error line), and with bad usage (exit 2).
set -uo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
shared=${SLMESH_SHARED:-../shared}
model="$shared/models/stories260K.gguf"
if [ ! -f "$model" ]; then
    echo "SKIP: $model not found (set SLMESH_SHARED)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check DESCRIPTION COMMAND...: report and count a failed condition
    local what=$1; shift
    if ! "$@"; then echo "FAIL: $what"; fails=$((fails + 1)); fi
}
has() { grep -qE -- "$2" "$1"; }

# Text output: architecture, hyper-parameters, tokenizer, tensors, totals.
"$bin" info "$model" >"$tmp/out" 2>"$tmp/err"
check "text: exit 0" test $? -eq 0
check "text: version" has "$tmp/out" '^gguf +version 3, alignment 32'
check "text: architecture" has "$tmp/out" '^architecture +llama$'
check "text: block_count" has "$tmp/out" '^  llama\.block_count +5$'
check "text: head_count_kv" has "$tmp/out" '^  llama\.attention\.head_count_kv +4$'
check "text: vocab size" has "$tmp/out" '^  vocab size +512$'
check "text: bos text" has "$tmp/out" '^  bos +1 "<s>"$'
check "text: chat template" has "$tmp/out" '^chat template +none$'
check "text: tensor row" has "$tmp/out" '^  token_embd\.weight +f32 +64 x 512 +131072$'
check "text: totals" has "$tmp/out" '^totals +292800 parameters'
check "text: no stderr" test ! -s "$tmp/err"

# JSON output: one object with the same facts.
"$bin" info --json "$model" >"$tmp/json"
check "json: exit 0" test $? -eq 0
check "json: architecture" has "$tmp/json" '"architecture": "llama"'
check "json: block_count" has "$tmp/json" '"llama\.block_count": 5'
check "json: vocab size" has "$tmp/json" '"vocab_size": 512'
check "json: tensor" has "$tmp/json" '"name": "token_embd\.weight"'
check "json: parameters" has "$tmp/json" '"parameters": 292800'
if command -v python3 >/dev/null; then
    check "json: parses" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["tensors"]) == 48' "$tmp/json"
fi

# A truncated copy: exit 1 and one line naming what is wrong.
head -c 20000 "$model" >"$tmp/bad.gguf"
"$bin" info "$tmp/bad.gguf" >"$tmp/out" 2>"$tmp/err"
check "corrupt: exit 1" test $? -eq 1
check "corrupt: message" has "$tmp/err" '^slmesh info: corrupt input: .*bad\.gguf: tensor .*extends past end of file'
check "corrupt: one line" test "$(wc -l <"$tmp/err")" -eq 1
"$bin" info "$tmp/missing.gguf" 2>"$tmp/err"
check "missing: exit 1" test $? -eq 1

# Usage errors: exit 2 with the usage text.
"$bin" info --bogus "$model" >"$tmp/out" 2>"$tmp/err"
check "unknown option: exit 2" test $? -eq 2
check "unknown option: message" has "$tmp/err" "unknown option '--bogus'"
check "unknown option: usage" has "$tmp/err" '^usage: slmesh info'
"$bin" info >/dev/null 2>&1
check "no model: exit 2" test $? -eq 2
"$bin" info "$model" "$model" >/dev/null 2>&1
check "two models: exit 2" test $? -eq 2
"$bin" info --help >"$tmp/out"
check "help: exit 0" test $? -eq 0

[ "$fails" -eq 0 ] && echo "cli_info: all checks passed"
exit $((fails > 0))
