#!/usr/bin/env bash
# bench/engine_table.sh: the engine speed table of issue 3. First the machine's read
# bandwidth (slmesh bench --bandwidth), then for each shape x type row of
# ../shared/bench/README.md (smallest first)
#     slmesh bench -m MODELS/<shape>-shape-<type>.gguf -t 2 -p 512 -n 128 -r 3 -o jsonl
# (the file is built once with --shape S --type T --save, and reused: building a 1B model
# takes a minute), appending its two JSON lines to OUT.jsonl; then a Markdown table joining
# them with the reference runtime's rows (../shared/bench/reference.json, by model_filename,
# n_prompt, n_gen), the bandwidth limit of tg (the best measured bandwidth / model bytes) and the
# issue's target: pp >= 1.5x the reference, tg >= 1.3x the reference or >= 90% of the limit
# where 1.3x would exceed it.
#
# usage: bench/engine_table.sh OUT.jsonl [ROW...]       run ROWs (default: all 9) and print
#        bench/engine_table.sh --table OUT.jsonl         only print the table of OUT.jsonl
# environment: SLMESH_BIN (default build/slmesh), SLMESH_SHARED (default ../shared),
#              MODELS (default build/bench-models), THREADS (2), P (512), N (128), R (3);
#              a ROW is SHAPE/TYPE, e.g. smollm2-135m/q4_0.
# Needs jq. The machine is shared: quote the date and the load with the figures.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMESH_BIN:-$here/build/slmesh}
shared=${SLMESH_SHARED:-$here/../shared}
ref="$shared/bench/reference.json"
models=${MODELS:-$here/build/bench-models}

table() { # table OUT.jsonl: Markdown joined with the reference rows
    local out=$1
    echo "| shape / type | size MB | test | slmesh t/s (mean ± sd) | median | cores busy | reference t/s | slmesh / reference | tg limit t/s | tg % of limit | target | met |"
    echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    jq -rs --slurpfile ref "$ref" '
        (map(select(.test == "read_bandwidth")) | max_by(.read_gbs) | .read_gbs // 33.3) as $bw
        | .[] | select(.model_filename) as $r
        | ($ref[0].rows[] | select(.model_filename == $r.model_filename and .n_prompt == $r.n_prompt
                                   and .n_gen == $r.n_gen)) as $x
        | ($bw * 1e9 / $r.model_size) as $lim
        | (if $r.n_prompt > 0 then 1.5 * $x.avg_ts
           else ([1.3 * $x.avg_ts, 0.9 * $lim] | min) end) as $target
        | [ ($r.model_filename | sub("-shape-"; " ") | sub("\\.gguf$"; "")),
            (($r.model_size / 1e6) | floor | tostring),
            (if $r.n_prompt > 0 then "pp\($r.n_prompt)" else "tg\($r.n_gen)" end),
            "\($r.avg_ts * 10 | round / 10) ± \($r.stddev_ts * 10 | round / 10)",
            "\($r.median_ts * 10 | round / 10)",
            (if $r.cores_busy then "\($r.cores_busy * 100 | round / 100)" else "-" end),
            "\($x.avg_ts * 10 | round / 10)",
            "\($r.median_ts / $x.avg_ts * 100 | round / 100)x",
            (if $r.n_gen > 0 then "\($lim | round)" else "" end),
            (if $r.n_gen > 0 then "\($r.median_ts / $lim * 100 | round)%" else "" end),
            "\($target | round)",
            (if $r.median_ts >= $target then "yes" else "no" end) ]
        | "| " + join(" | ") + " |"' "$out"
    jq -rs 'map(select(.test == "read_bandwidth")) | max_by(.read_gbs)
            | if . then "read bandwidth: \(.read_gbs) GB/s with \(.n_threads) threads (slmesh bench --bandwidth; the best of the runs in the file)"
              else "read bandwidth: not measured; 33.3 GB/s (README) assumed" end' "$out"
}

if [ "${1:-}" = "--table" ]; then
    table "${2:?usage: $0 --table OUT.jsonl}"
    exit 0
fi
out=${1:?usage: $0 OUT.jsonl [SHAPE/TYPE...]}
shift
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
    rows=(smollm2-135m/q4_0 smollm2-135m/q4_k_m smollm2-135m/q8_0 qwen2.5-0.5b/q4_0 qwen2.5-0.5b/q4_k_m
          qwen2.5-0.5b/q8_0 llama3.2-1b/q4_0 llama3.2-1b/q4_k_m llama3.2-1b/q8_0)
fi
mkdir -p "$models"
echo "$(date -u +%H:%M:%S) read bandwidth (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
"$bin" bench --bandwidth -t "${THREADS:-2}" -o jsonl >>"$out" || echo "bandwidth: slmesh bench failed" >&2
for row in "${rows[@]}"; do
    shape=${row%/*} type=${row#*/}
    file="$models/$shape-shape-$type.gguf"
    if [ ! -f "$file" ]; then
        echo "$(date -u +%H:%M:%S) building $file" >&2
        "$bin" bench --shape "$shape" --type "$type" -t "${THREADS:-2}" -p 0 -n 1 -r 1 --save "$file" >/dev/null ||
            { echo "$row: slmesh bench --shape failed" >&2; continue; }
    fi
    echo "$(date -u +%H:%M:%S) $row (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$bin" bench -m "$file" -t "${THREADS:-2}" -p "${P:-512}" -n "${N:-128}" -r "${R:-3}" -o jsonl >>"$out" ||
        echo "$row: slmesh bench failed" >&2
done
table "$out"
