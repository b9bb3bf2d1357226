#!/usr/bin/env bash
# bench/server_bench.sh [MODEL.gguf] [REQUESTS_PER_CLIENT]: start `slmesh serve` (16 slots,
# 2 threads, like the llama-server figures in ../shared/bench/README.md) on a free loopback
# port and run bench/server_bench.mjs at 1, 4 and 16 concurrent streaming clients; prints a
# markdown table row per level (generated tok/s across all streams, TTFT p50/p99). Not a test.
# Use a release build (cmake -S . -B build && cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/models/stories260K.gguf}
per_client=${2:-8}
bin=${SLMESH_BIN:-build/slmesh}
log=$(mktemp)
"$bin" serve -m "$model" --port 0 --parallel 16 --queue 64 -t 2 >/dev/null 2>"$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; exit 1; }
name=$(basename "$model" .gguf)
node bench/server_bench.mjs "http://127.0.0.1:$port" 1 1 >/dev/null # warm-up: page in the weights
echo "| model | clients | generated tok/s (all streams) | TTFT p50 ms | TTFT p99 ms |"
echo "| --- | --- | --- | --- | --- |"
for c in 1 4 16; do
    r=$(node bench/server_bench.mjs "http://127.0.0.1:$port" "$c" "$per_client")
    echo "| $name | $c | $(jq -r .tok_per_s <<<"$r") | $(jq -r .ttft_p50_ms <<<"$r") | $(jq -r .ttft_p99_ms <<<"$r") |"
done
