#!/usr/bin/env bash
# scripts/demo.sh MODEL: the main job on the default model: stream a continuation.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/models/stories260K.gguf}
if [ ! -f "$model" ]; then
    echo "demo: model not found: $model (set SLMESH_MODEL=/path/to/model.gguf)" >&2
    exit 1
fi
echo "== slmesh info =="
(./build/slmesh info "$model" || true) | head -20  # head closes the pipe early: SIGPIPE is not a failure
echo "== slmesh run =="
./build/slmesh run -m "$model" -p "Once upon a time" -n 64 --seed 42
