#!/usr/bin/env bash
# tests/server_models.sh: several models from a JSON config (docs/server.md): names and
# aliases in /v1/models, loading on first use, LRU eviction under a memory budget that holds
# one model, defaults from the config, 503 for a model that cannot load, use_mmap / --no-mmap
# (the weights read, not mapped), a bad config refused with exit 1, bad usage exit 2.
set -euo pipefail
source "$(dirname "$0")/server_common.bash"

TINY="$SHARED/models/tiny/tiny-llama-f32.gguf"
[ -f "$TINY" ] || { echo "skip: $TINY not found"; exit 77; }
# each model is over 1 MB: with a 1 MB budget, loading one evicts the other (an idle one)
cat >"$WORK/models.json" <<EOF
{
  "memory_budget_mb": 1,
  "models": [
    {"name": "stories", "path": "$MODEL", "aliases": ["gpt-4o-mini"], "ctx_size": 1024, "parallel": 2,
     "sampling": {"temperature": 0}},
    {"path": "$TINY", "ctx_size": 512, "parallel": 1, "keep_alive_s": 300},
    {"name": "missing", "path": "$WORK/missing.gguf"}
  ]
}
EOF
loaded() { curl -s "$BASE/metrics" | sed -n "s/^slmesh_model_loaded{model=\"$1\"} //p"; }

start_server --config "$WORK/models.json" -t 1
ids=$(curl -s "$BASE/v1/models" | jq -r '[.data[].id] | join(",")')
[ "$ids" = "stories,gpt-4o-mini,tiny-llama-f32,missing" ] || fail "models: $ids"
[ "$(loaded stories)" = 1 ] || fail "the default model is not preloaded"
[ "$(loaded tiny-llama-f32)" = 0 ] || fail "tiny loaded before use"

# the alias answers with its own name; temperature 0 from the config: deterministic
a=$(curl -s "$BASE/v1/completions" -d '{"model":"gpt-4o-mini","prompt":"Once","max_tokens":8}')
[ "$(jq -r .model <<<"$a")" = gpt-4o-mini ] || fail "alias: $a"
b=$(curl -s "$BASE/v1/completions" -d '{"model":"stories","prompt":"Once","max_tokens":8}')
[ "$(jq -r '.choices[0].text' <<<"$a")" = "$(jq -r '.choices[0].text' <<<"$b")" ] || fail "config temperature 0 not applied"

# first use of the second model loads it and evicts the first (budget)
c=$(curl -s "$BASE/v1/completions" -d '{"model":"tiny-llama-f32","prompt":"Once","max_tokens":4}')
jq -e '.choices[0].finish_reason' <<<"$c" >/dev/null || fail "tiny: $c"
[ "$(loaded tiny-llama-f32)" = 1 ] || fail "tiny not loaded"
[ "$(loaded stories)" = 0 ] || fail "stories not evicted under the budget"
# and back
curl -s "$BASE/v1/completions" -d '{"model":"stories","prompt":"Once","max_tokens":4}' | jq -e .choices >/dev/null || fail "reload"
[ "$(loaded stories)" = 1 ] && [ "$(loaded tiny-llama-f32)" = 0 ] || fail "LRU eviction back"
# a model that cannot load: 503 in OpenAI's shape; unknown: 404
code=$(curl -s -o "$WORK/out" -w '%{http_code}' "$BASE/v1/completions" -d '{"model":"missing","prompt":"x"}')
[ "$code" = 503 ] && jq -e '.error.code == "model_unavailable"' "$WORK/out" >/dev/null || fail "missing model: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/completions" -d '{"model":"unknown","prompt":"x"}')
[ "$code" = 404 ] || fail "unknown model: $code"
stop_server

# use_mmap false (config) and --no-mmap: the weights are read, so the file is not among the
# server's mappings; a model left as it is stays mapped
cat >"$WORK/mmap.json" <<EOF
{"models": [{"name": "read", "path": "$MODEL", "use_mmap": false, "use_mlock": true},
            {"name": "mapped", "path": "$TINY"}]}
EOF
start_server --config "$WORK/mmap.json" -t 1
curl -s "$BASE/v1/completions" -d '{"model":"mapped","prompt":"Once","max_tokens":2}' | jq -e .choices >/dev/null || fail "mapped"
curl -s "$BASE/v1/completions" -d '{"model":"read","prompt":"Once","max_tokens":2}' | jq -e .choices >/dev/null || fail "read"
grep -qF "$(realpath "$TINY")" "/proc/$SRV_PID/maps" || fail "the default (use_mmap) model is not mapped"
grep -qF "$(realpath "$MODEL")" "/proc/$SRV_PID/maps" && fail "use_mmap false: $MODEL is mapped"
stop_server
start_server -m "$MODEL" --no-mmap -t 1
curl -s "$BASE/v1/completions" -d '{"prompt":"Once","max_tokens":2}' | jq -e .choices >/dev/null || fail "--no-mmap"
grep -qF "$(realpath "$MODEL")" "/proc/$SRV_PID/maps" && fail "--no-mmap: $MODEL is mapped"
stop_server

# bad config: exit 1 with a message; bad usage: exit 2
echo "{\"models\": [{\"path\": \"$MODEL\", \"use_mmap\": \"no\"}]}" >"$WORK/bad_mmap.json"
rc=0
"$SLMESH_BIN" serve --config "$WORK/bad_mmap.json" 2>"$WORK/err3" || rc=$?
[ "$rc" = 1 ] && grep -q use_mmap "$WORK/err3" || fail "bad use_mmap: rc $rc $(cat "$WORK/err3")"
echo '{"models": [{"name": "x"}]}' >"$WORK/bad.json"
rc=0
"$SLMESH_BIN" serve --config "$WORK/bad.json" 2>"$WORK/err2" || rc=$?
[ "$rc" = 1 ] && grep -q path "$WORK/err2" || fail "bad config: rc $rc $(cat "$WORK/err2")"
rc=0
"$SLMESH_BIN" serve -m "$MODEL" --port 99999 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "bad port: rc $rc"
rc=0
"$SLMESH_BIN" serve 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "no model: rc $rc"
echo "server_models: ok"
