#!/usr/bin/env bash
# scripts/fuzz.sh BUILD_DIR SECONDS: run each libFuzzer target in BUILD_DIR for SECONDS.
#
# Seeds: fuzz/seeds/<target>/ in the repository (small, hand-made) plus, where the target
# reads a format shared/ has samples of, those files (read in place, never copied into the
# repository). The working corpus lives in a temporary directory and is discarded.
# Exit status: non-zero if any target found a crash, leak or timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}; seconds=${2:-30}
shared=${SLMESH_SHARED:-../shared}
status=0
shopt -s nullglob
for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus=$(mktemp -d)
    seeds=()
    [ -d "fuzz/seeds/$name" ] && seeds+=("fuzz/seeds/$name")
    if [ "$name" = fuzz_gguf ] && [ -d "$shared/models" ]; then
        # Small models only: the fuzzer caps its input length anyway. libFuzzer takes
        # directories, not files, so they are linked (not copied) into a temporary one.
        mkdir -p "$corpus.shared"
        for f in "$shared"/models/tiny/tiny-llama-q2_k.gguf "$shared"/models/stories260K.gguf; do
            [ -f "$f" ] && ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$corpus.shared/"
        done
        seeds+=("$corpus.shared")
    fi
    echo "fuzz: $name for ${seconds}s"
    if ! "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
            -artifact_prefix="$corpus/" "$corpus" "${seeds[@]}" >"$corpus.log" 2>&1; then
        echo "fuzz: $name FAILED"; tail -40 "$corpus.log"; status=1
        # Keep the reproducer where the next engineer finds it, and print it (CI logs are all
        # that survive a CI run): replay with `BUILD_DIR/fuzz_NAME FILE`.
        mkdir -p "$build/fuzz-artifacts"
        for f in "$corpus"/crash-* "$corpus"/leak-* "$corpus"/timeout-*; do
            [ -f "$f" ] || continue
            cp "$f" "$build/fuzz-artifacts/$name-$(basename "$f")"
            echo "fuzz: reproducer $build/fuzz-artifacts/$name-$(basename "$f") (base64):"
            head -c 4096 "$f" | base64
        done
    else
        tail -1 "$corpus.log"
    fi
    rm -rf "$corpus" "$corpus.log" "$corpus.shared"
done
exit $status
