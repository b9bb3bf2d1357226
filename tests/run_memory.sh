#!/usr/bin/env bash
# tests/run_memory.sh: resident memory of `slmesh run` stays within model file + KV cache +
# 64 MiB (issue 3), with the file mapped (default), read (--no-mmap) and locked (--mlock).
# Model: a 2-layer random smollm2-135m built by `slmesh bench --shape` when this build has
# it (its 30 MB embedding makes the bound meaningful), else the shared tiny F32 model.
# The KV cache is computed from the file's hyper-parameters (F16 K and V, -c cells).
# Needs GNU time (/usr/bin/time) for the peak RSS; skips without it.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
shared=${SLMESH_SHARED:-../shared}
fail() { echo "run_memory: FAIL: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "run_memory: skip: /usr/bin/time (GNU time) is absent" >&2; exit 77; }
command -v jq >/dev/null || { echo "run_memory: skip: jq is absent" >&2; exit 77; }
if grep -q __asan_init "$bin" 2>/dev/null; then
    echo "run_memory: skip: sanitizer build (shadow memory is not the engine's)" >&2
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model=$tmp/shape.gguf
if ! "$bin" bench --shape smollm2-135m --type q8_0 --shape-layers 2 --save "$model" -p 8 -n 0 -r 1 >/dev/null 2>&1; then
    model=$shared/models/tiny/tiny-llama-f32.gguf
    [ -f "$model" ] || { echo "run_memory: skip: no bench --shape and no $model" >&2; exit 77; }
fi
ctx=256
info=$("$bin" info --json "$model")
arch=$(jq -r .architecture <<<"$info")
hp() { jq -r --arg k "$arch.$1" '.hparams[$k] // empty' <<<"$info"; }
n_layer=$(hp block_count); n_embd=$(hp embedding_length); n_head=$(hp attention.head_count)
n_head_kv=$(hp attention.head_count_kv); n_head_kv=${n_head_kv:-$n_head}
head_dim=$((n_embd / n_head))
file_bytes=$(stat -c %s "$model")
kv_bytes=$((n_layer * ctx * n_head_kv * head_dim * 2 * 2))
limit_kib=$(((file_bytes + kv_bytes) / 1024 + 64 * 1024))

for opt in "" --no-mmap --mlock; do
    /usr/bin/time -f "%M" -o "$tmp/rss" "$bin" run -m "$model" -p "hello world" -n 16 --temp 0 -t 2 -c $ctx $opt \
        >/dev/null 2>"$tmp/err" || fail "run $opt: $(cat "$tmp/err")"
    rss=$(tail -n 1 "$tmp/rss")
    echo "run_memory: $(basename "$model") $opt: peak RSS $rss KiB, limit $limit_kib KiB (file $file_bytes B, KV $kv_bytes B)"
    [ "$rss" -le "$limit_kib" ] || fail "peak RSS $rss KiB > $limit_kib KiB with '$opt'"
done
echo "run_memory: ok"
