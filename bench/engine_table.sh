#!/usr/bin/env bash
# bench/engine_table.sh: the engine speed table of issue 3. For each shape x type row of
# ../shared/bench/README.md (smallest first) run
#     slmesh bench --shape S --type T -t 2 -p 512 -n 128 -r 3 -o jsonl
# append its two JSON lines to OUT.jsonl, then print a Markdown table that joins them with
# the reference runtime's rows (../shared/bench/reference.json, by model_filename, n_prompt,
# n_gen) and the bandwidth limit of tg (33.3 GB/s / model bytes, README).
#
# usage: bench/engine_table.sh OUT.jsonl [ROW...]       run ROWs (default: all 9) and print
#        bench/engine_table.sh --table OUT.jsonl         only print the table of OUT.jsonl
# environment: SLMESH_BIN (default build/slmesh), SLMESH_SHARED (default ../shared),
#              THREADS (2), P (512), N (128), R (3); a ROW is SHAPE/TYPE, e.g. smollm2-135m/q4_0.
# Needs jq. The machine is shared: quote the date and the load with the figures.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMESH_BIN:-$here/build/slmesh}
shared=${SLMESH_SHARED:-$here/../shared}
ref="$shared/bench/reference.json"
bw_gbs=33.3 # the machine's read bandwidth with 2 threads (README)

table() { # table OUT.jsonl: Markdown joined with the reference rows
    local out=$1
    echo "| shape / type | size MB | test | slmesh t/s | median | cores busy | reference t/s | slmesh / reference | tg % of bandwidth limit |"
    echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    jq -rs --slurpfile ref "$ref" --argjson bw "$bw_gbs" '
        .[] as $r
        | ($ref[0].rows[] | select(.model_filename == $r.model_filename and .n_prompt == $r.n_prompt
                                   and .n_gen == $r.n_gen)) as $x
        | [ ($r.model_filename | sub("-shape-"; " ") | sub("\\.gguf$"; "")),
            (($r.model_size / 1e6) | floor | tostring),
            (if $r.n_prompt > 0 then "pp\($r.n_prompt)" else "tg\($r.n_gen)" end),
            "\($r.avg_ts * 100 | round / 100) ± \($r.stddev_ts * 100 | round / 100)",
            "\($r.median_ts * 100 | round / 100)",
            (if $r.cores_busy then "\($r.cores_busy * 100 | round / 100)" else "-" end),
            "\($x.avg_ts * 100 | round / 100) ± \($x.stddev_ts * 100 | round / 100)",
            "\($r.avg_ts / $x.avg_ts * 100 | round / 100)x",
            (if $r.n_gen > 0 then "\($r.avg_ts / ($bw * 1e9 / $r.model_size) * 100 | round)%" else "" end) ]
        | "| " + join(" | ") + " |"' "$out"
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
for row in "${rows[@]}"; do
    shape=${row%/*} type=${row#*/}
    echo "$(date -u +%H:%M:%S) $row (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$bin" bench --shape "$shape" --type "$type" -t "${THREADS:-2}" -p "${P:-512}" -n "${N:-128}" -r "${R:-3}" \
        -o jsonl >>"$out" || echo "$row: slmesh bench failed" >&2
done
table "$out"
