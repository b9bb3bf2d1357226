#!/usr/bin/env bash
# tests/server_openai.sh: drive the real `slmesh serve` with the official `openai` npm
# package (pinned in tests/package.json, installed here with `npm ci` into a temporary
# directory; skipped with exit 77 when node/npm are missing or the install fails): see
# tests/server_openai.mjs. Then SIGTERM.
set -euo pipefail
source "$(dirname "$0")/server_common.bash"

TESTS=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null || { echo "skip: node/npm missing"; exit 77; }
# A private install (tests/node_modules is shared with other tests that may reinstall it while
# this one runs): npm ci from tests/package.json + package-lock.json; should the lock not
# match package.json (other tests' packages added), the pinned openai version alone.
NPM="$WORK/npm"
mkdir -p "$NPM"
cp "$TESTS/package.json" "$TESTS/server_openai.mjs" "$NPM/"
[ -f "$TESTS/package-lock.json" ] && cp "$TESTS/package-lock.json" "$NPM/"
if ! npm ci --prefix "$NPM" --no-audit --no-fund >"$WORK/npm.log" 2>&1; then
    version=$(jq -r '.dependencies.openai' "$TESTS/package.json")
    rm -f "$NPM/package.json" "$NPM/package-lock.json"
    npm install --prefix "$NPM" --no-package-lock --no-audit --no-fund "openai@$version" >>"$WORK/npm.log" 2>&1 || {
        echo "skip: npm could not install openai: $(tail -3 "$WORK/npm.log")"
        exit 77
    }
fi

KEY=openai-test-key
TEXT="Once upon a time, there was a little dog"
"$SLMESH_BIN" score -m "$MODEL" -p "$TEXT" --top 5 --json -t 1 >"$WORK/score.json"
# 16 slots and a queue of 64: the 64 concurrent streams of the load test are all accepted
start_server -m "$MODEL" --api-key "$KEY" --parallel 16 --queue 64 -t 2
BASE="$BASE" KEY="$KEY" MODEL_NAME=stories260K SCORE_JSON="$WORK/score.json" SCORE_TEXT="$TEXT" \
    node "$NPM/server_openai.mjs" || fail "openai SDK checks"
stop_server
echo "server_openai: ok"
