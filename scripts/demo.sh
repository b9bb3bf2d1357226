#!/usr/bin/env bash
# scripts/demo.sh MODEL: the main job on the default model: stream a continuation, then serve
# it over the OpenAI API and make one chat completion with curl.
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
echo "== slmesh serve: one chat completion with curl =="
log=$(mktemp)
./build/slmesh serve -m "$model" --port 0 >/dev/null 2>"$log" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
    sleep 0.1
done
echo "POST http://127.0.0.1:$port/v1/chat/completions"
curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":48,"seed":42}'
echo
kill -TERM "$pid"
wait "$pid"
rm -f "$log"
