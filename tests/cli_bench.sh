#!/usr/bin/env bash
# tests/cli_bench.sh: `slmesh bench` and `slmesh quantize` end to end: a tiny model in md
# and jsonl (fields checked with jq: llama-bench's names, consistent figures), a random
# smollm2-135m-shaped Q4_0 model shrunk to 2 layers (--shape-layers, a test-only option)
# saved and benchmarked again from the file, quantize on the shared F32 tiny model (same
# bytes as the reference's file), and bad usage (exit 2).
set -uo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
shared=${SLMESH_SHARED:-../shared}
model="$shared/models/tiny/tiny-llama-q4_0.gguf"
if [ ! -f "$model" ]; then
    echo "SKIP: $model not found (set SLMESH_SHARED)"
    exit 77
fi
if ! command -v jq >/dev/null; then
    echo "SKIP: jq not installed (scripts/deps.sh)"
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
jqok() { jq -e "$@" >/dev/null; }

# Markdown: header, one pp and one tg row.
"$bin" bench -m "$model" -t 2 -p 16 -n 8 -r 1 >"$tmp/md" 2>"$tmp/err"
check "md: exit 0" test $? -eq 0
check "md: header" has "$tmp/md" '^\| model \| size \| params \| threads \| test \| t/s \| peak RSS \|$'
check "md: pp row" has "$tmp/md" '^\| llama q4_0 \| 0\.99 MiB \| 1\.84 M \| 2 \| pp16 \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ MiB \|$'
check "md: tg row" has "$tmp/md" '^\| llama q4_0 \| .* \| tg8 \| [0-9.]+ ± [0-9.]+ \|'

# JSON lines: two objects with llama-bench's fields, joinable with reference.json rows.
"$bin" bench -m "$model" -t 2 -p 16 -n 8 -r 2 -o jsonl >"$tmp/jsonl" 2>"$tmp/err"
check "jsonl: exit 0" test $? -eq 0
check "jsonl: two lines" test "$(wc -l <"$tmp/jsonl")" -eq 2
check "jsonl: fields" jqok 'has("model_filename") and has("model_size") and has("model_n_params") and has("n_prompt")
    and has("n_gen") and has("n_threads") and has("avg_ts") and has("stddev_ts")' "$tmp/jsonl"
check "jsonl: values" jqok -s '.[0].model_filename == "tiny-llama-q4_0.gguf" and .[0].n_prompt == 16 and .[0].n_gen == 0
    and .[1].n_prompt == 0 and .[1].n_gen == 8 and .[0].n_threads == 2 and .[0].model_size == 1037312
    and (.[1].samples_ts | length) == 2 and all(.[]; .avg_ts > 0 and .stddev_ts >= 0 and .peak_rss_bytes > 0 and .cores_busy > 0)' \
    "$tmp/jsonl"

# A random model of a real shape (2 of its 30 layers), saved, then benchmarked from the file.
"$bin" bench --shape smollm2-135m --type q4_0 --shape-layers 2 -t 2 -p 8 -n 4 -r 1 -o jsonl \
    --save "$tmp/smol.gguf" >"$tmp/shape" 2>"$tmp/err"
check "shape: exit 0" test $? -eq 0
check "shape: built message" has "$tmp/err" '^slmesh bench: built smollm2-135m Q4_0 in'
check "shape: filename" jqok -s '.[0].model_filename == "smollm2-135m-shape-q4_0.gguf" and .[0].model_n_params == 35392320' \
    "$tmp/shape"
check "shape: saved" test -s "$tmp/smol.gguf"
"$bin" info "$tmp/smol.gguf" >"$tmp/info"
check "shape: info arch" has "$tmp/info" '^architecture +llama$'
check "shape: info embd tied q8_0" has "$tmp/info" '^  token_embd\.weight +q8_0 +576 x 49152'
check "shape: info file_type" has "$tmp/info" '^  general\.file_type +2$'
"$bin" bench -m "$tmp/smol.gguf" -t 2 -p 8 -n 0 -r 1 >"$tmp/md2"
check "shape: bench saved file" has "$tmp/md2" '\| pp8 \|'
# Its made-up SentencePiece vocabulary has no "▁" piece: every space becomes 3 byte tokens,
# more tokens than the prompt has bytes; `slmesh run` must still take the prompt.
"$bin" run -m "$tmp/smol.gguf" -p "a b c d e f g h" -n 2 --temp 0 -t 2 >/dev/null 2>"$tmp/err"
check "shape: run with more tokens than bytes" has "$tmp/err" '^prompt: 33 tokens'
check "shape: no temp left" test -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name "slmesh-bench-*" -newer "$tmp/md" 2>/dev/null)"

# Read bandwidth (the tg bound).
"$bin" bench --bandwidth -t 1 -r 1 -o jsonl >"$tmp/bw" 2>"$tmp/err"
check "bandwidth: exit 0" test $? -eq 0
check "bandwidth: json" jqok '.test == "read_bandwidth" and .n_threads == 1 and .read_gbs > 0' "$tmp/bw"

# quantize: the reference's Q4_K_M of the same F32 file, byte for byte.
if [ -f "$shared/models/tiny/tiny-llama-f32.gguf" ]; then
    "$bin" quantize "$shared/models/tiny/tiny-llama-f32.gguf" "$tmp/q4km.gguf" q4_k_m -t 2 >"$tmp/q" 2>"$tmp/err"
    check "quantize: exit 0" test $? -eq 0
    check "quantize: summary" has "$tmp/q" 'Q4_K_M\): 21 tensors, 16 converted, 0 fallbacks'
    check "quantize: same file as the reference" cmp -s "$tmp/q4km.gguf" "$shared/models/tiny/tiny-llama-q4_k_m.gguf"
    "$bin" quantize "$shared/models/tiny/tiny-llama-q8_0.gguf" "$tmp/x.gguf" q4_0 >/dev/null 2>"$tmp/err"
    check "quantize: requantize refused (exit 1)" test $? -eq 1
    check "quantize: requantize message" has "$tmp/err" 'allow-requantize'
fi

# Bad usage: exit 2 with the usage text.
usage() { # usage DESCRIPTION ARGS...: expect exit 2 and a usage line on stderr
    local what=$1; shift
    "$bin" "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    check "$what: exit 2 (got $rc)" test $rc -eq 2
    check "$what: usage" has "$tmp/err" '^usage: slmesh'
}
usage "bench unknown option" bench -m "$model" --frobnicate
usage "bench no model" bench -p 16
usage "bench model and shape" bench -m "$model" --shape smollm2-135m
usage "bench bad shape" bench --shape gpt-9
usage "bench bad type" bench --shape smollm2-135m --type q9_9
usage "bench type without shape" bench -m "$model" --type q4_0
usage "bench bad -p" bench -m "$model" -p -1
usage "bench bad -r" bench -m "$model" -r 0
usage "bench bad -o" bench -m "$model" -o csv
usage "bench nothing to do" bench -m "$model" -p 0 -n 0
usage "bench bandwidth with a model" bench --bandwidth -m "$model"
usage "bench missing value" bench -m "$model" -t
usage "quantize missing args" quantize "$model"
usage "quantize bad type" quantize "$model" "$tmp/y.gguf" q7_k
usage "quantize unknown option" quantize --fast "$model" "$tmp/y.gguf" q4_0
"$bin" bench -m "$tmp/does-not-exist.gguf" -p 8 -n 0 -r 1 >/dev/null 2>"$tmp/err"
check "bench missing file: exit 1" test $? -eq 1

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "cli_bench: all checks passed"
