#!/usr/bin/env bash
# tests/server_openai.sh: drive the real `slmesh serve` with the official `openai` npm
# package (pinned in tests/package.json, installed here with `npm ci`; skipped with exit 77
# when node/npm are missing or the install fails): see tests/server_openai.mjs. Then SIGTERM.
set -euo pipefail
source "$(dirname "$0")/server_common.bash"

TESTS=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null || { echo "skip: node/npm missing"; exit 77; }
if [ ! -d "$TESTS/node_modules/openai" ]; then
    npm ci --prefix "$TESTS" --no-audit --no-fund >"$WORK/npm.log" 2>&1 || {
        echo "skip: npm ci failed: $(tail -3 "$WORK/npm.log")"
        exit 77
    }
fi

KEY=openai-test-key
TEXT="Once upon a time, there was a little dog"
"$SLMESH_BIN" score -m "$MODEL" -p "$TEXT" --top 5 --json -t 1 >"$WORK/score.json"
# 16 slots and a queue of 64: the 64 concurrent streams of the load test are all accepted
start_server -m "$MODEL" --api-key "$KEY" --parallel 16 --queue 64 -t 2
BASE="$BASE" KEY="$KEY" MODEL_NAME=stories260K SCORE_JSON="$WORK/score.json" SCORE_TEXT="$TEXT" \
    node "$TESTS/server_openai.mjs" || fail "openai SDK checks"
stop_server
echo "server_openai: ok"
