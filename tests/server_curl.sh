#!/usr/bin/env bash
# tests/server_curl.sh: the real `slmesh serve` on stories260K driven with curl: every
# endpoint (health, models, completions, chat, streaming, embeddings, metrics), completions
# echo+logprobs equal to `slmesh score`, each error status (400, 401, 404, 405, 413, 429),
# API-key enforcement, a client that disconnects mid-stream (slot freed, server fine) and
# SIGTERM shutdown (exit 0).
set -euo pipefail
source "$(dirname "$0")/server_common.bash"

KEY=test-key-123
echo "$KEY" >"$WORK/key"
start_server -m "$MODEL" --api-key-file "$WORK/key" --parallel 2 --queue 4 --ctx 8192 --max-body 65536 -t 1 --grace 3

# req METHOD PATH [BODY] -> prints the status, body in $WORK/out
req() {
    local data=()
    [ $# -ge 3 ] && data=(--data-binary "$3")
    curl -s -o "$WORK/out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' "${data[@]}" "$BASE$2"
}
expect() { # expect STATUS METHOD PATH [BODY]
    local want=$1
    shift
    local got
    got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2: status $got, want $want: $(head -c 300 "$WORK/out")"
}
expect_error() { # expect_error STATUS METHOD PATH [BODY]: also the OpenAI error shape
    expect "$@"
    jq -e '.error.message | length > 0' "$WORK/out" >/dev/null || fail "$2 $3: no error.message"
    jq -e '.error | has("type") and has("param") and has("code")' "$WORK/out" >/dev/null || fail "$2 $3: error shape"
}

# ---- endpoints ----
expect 200 GET /health
expect 200 GET /v1/models
jq -e '.object == "list" and .data[0].id == "stories260K"' "$WORK/out" >/dev/null || fail "models list"
expect 200 GET /v1/models/stories260K

expect 200 POST /v1/completions '{"model":"stories260K","prompt":"Once upon a time","max_tokens":12,"seed":5}'
jq -e '.object == "text_completion" and (.choices[0].text | length > 0) and .usage.completion_tokens == 12' \
    "$WORK/out" >/dev/null || fail "completion: $(cat "$WORK/out")"
first=$(jq -r '.choices[0].text' "$WORK/out")
expect 200 POST /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"seed":5}'
[ "$(jq -r '.choices[0].text' "$WORK/out")" = "$first" ] || fail "same seed, different text"
jq -e '.usage.prompt_tokens_details.cached_tokens > 0' "$WORK/out" >/dev/null || fail "prefix cache not reported"

# several prompts, token-id prompts, n
expect 200 POST /v1/completions '{"prompt":["The dog","The cat"],"n":2,"max_tokens":4,"seed":1}'
[ "$(jq '.choices | length' "$WORK/out")" = 4 ] || fail "2 prompts x n=2"
expect 200 POST /v1/completions '{"prompt":[1,403,407],"max_tokens":4}'

expect 200 POST /v1/chat/completions \
    '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Tell a story"}],"max_tokens":16,"seed":3,"logprobs":true,"top_logprobs":2}'
jq -e '.object == "chat.completion" and .choices[0].message.role == "assistant" and
       (.choices[0].logprobs.content | length > 0) and (.choices[0].logprobs.content[0].top_logprobs | length == 2)' \
    "$WORK/out" >/dev/null || fail "chat: $(head -c 400 "$WORK/out")"

# streaming chat with usage; the streamed text equals the non-streamed text for the same seed
body='{"messages":[{"role":"user","content":"Hello"}],"max_tokens":24,"seed":9,"temperature":0.7}'
expect 200 POST /v1/chat/completions "$body"
whole=$(jq -r '.choices[0].message.content' "$WORK/out")
curl -sN -H "Authorization: Bearer $KEY" "$BASE/v1/chat/completions" \
    -d "${body%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$WORK/sse"
tail -n 2 "$WORK/sse" | grep -q '^data: \[DONE\]$' || fail "stream does not end with [DONE]"
streamed=$(grep '^data: {' "$WORK/sse" | sed 's/^data: //' | jq -j '.choices[0].delta.content // empty')
[ "$streamed" = "$whole" ] || fail "streamed '$streamed' != whole '$whole'"
grep '^data: {' "$WORK/sse" | tail -n 1 | sed 's/^data: //' | jq -e '.usage.completion_tokens > 0 and (.choices | length == 0)' \
    >/dev/null || fail "usage chunk"

# streaming completions
curl -sN -H "Authorization: Bearer $KEY" "$BASE/v1/completions" -d '{"prompt":"Lily","max_tokens":8,"stream":true}' >"$WORK/sse"
grep -q '"object":"text_completion"' "$WORK/sse" && grep -q '^data: \[DONE\]' "$WORK/sse" || fail "completion stream"

# echo + logprobs with max_tokens 0 scores the prompt exactly as `slmesh score`
TEXT="Once upon a time, there was a little dog"
expect 200 POST /v1/completions "{\"prompt\":\"$TEXT\",\"max_tokens\":0,\"echo\":true,\"logprobs\":5}"
cp "$WORK/out" "$WORK/echo.json"
[ "$(jq -r '.choices[0].text' "$WORK/echo.json")" = "$TEXT" ] || fail "echo text"
"$SLMESH_BIN" score -m "$MODEL" -p "$TEXT" --top 5 --json -t 1 >"$WORK/score.json"
n_tok=$(jq '.tokens | length' "$WORK/score.json")
[ "$(jq '.choices[0].logprobs.token_logprobs | length' "$WORK/echo.json")" = "$n_tok" ] || fail "token count"
# each position's top-5 log-probabilities, and the token's own when score lists it
jq -e --slurpfile s "$WORK/score.json" '
  [range(1; $s[0].tokens | length) as $i |
     ((.choices[0].logprobs.top_logprobs[$i] | [.[]] | sort) as $mine |
      ($s[0].positions[$i - 1].top | map(.[1]) | sort) as $ref |
      ($mine | length) <= 5 and ([$mine[-1], $ref[-1]] | (.[0] - .[1]) | fabs) < 1e-4) and
     (($s[0].positions[$i - 1].top | map(select(.[0] == $s[0].tokens[$i])) | .[0][1]) as $lp |
      $lp == null or ((.choices[0].logprobs.token_logprobs[$i] - $lp) | fabs) < 1e-4)
  ] | all' "$WORK/echo.json" >/dev/null || fail "echo logprobs differ from slmesh score"

# embeddings: float and base64, unit length
expect 200 POST /v1/embeddings '{"input":["a happy dog","the sun"],"model":"stories260K"}'
jq -e '.data | length == 2' "$WORK/out" >/dev/null || fail "embeddings count"
jq -e '.data[0].embedding | (map(. * .) | add) as $s | ($s - 1 | fabs) < 1e-3' "$WORK/out" >/dev/null || fail "not L2-normalised"
dim=$(jq '.data[0].embedding | length' "$WORK/out")
expect 200 POST /v1/embeddings '{"input":"a happy dog","encoding_format":"base64"}'
bytes=$(jq -r '.data[0].embedding' "$WORK/out" | base64 -d | wc -c)
[ "$bytes" = $((dim * 4)) ] || fail "base64 embedding has $bytes bytes, want $((dim * 4))"

# ---- errors ----
expect_error 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}'
expect_error 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}'
jq -e '.error.param == "temperature"' "$WORK/out" >/dev/null || fail "param not named"
expect_error 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}'
expect_error 400 POST /v1/chat/completions '{"messages":[]}'
expect_error 400 POST /v1/chat/completions "$(printf '{"messages":[{"role":"user","content":"\xff\xfe"}]}')"
expect_error 400 POST /v1/completions "{\"prompt\":\"$(head -c 20000 /dev/zero | tr '\0' 'a')\"}"
jq -e '.error.code == "context_length_exceeded"' "$WORK/out" >/dev/null || fail "context length code"
expect_error 400 POST /v1/completions "$(printf '%.0s[' $(seq 1 40))$(printf '%.0s]' $(seq 1 40))"
expect_error 400 POST /v1/completions '{"prompt":"x","max_tokens":100000}'
expect_error 400 POST /v1/completions '{"prompt":"x","n":100}'
expect_error 404 POST /v1/completions '{"model":"nope","prompt":"x"}'
expect_error 404 GET /v1/nothing
expect_error 405 GET /v1/completions
head -c 70000 /dev/zero | tr '\0' 'a' >"$WORK/big"
code=$(curl -s -o "$WORK/out" -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary @"$WORK/big" "$BASE/v1/completions")
[ "$code" = 413 ] || fail "big body: $code"
# 429: 2 slots + 4 queued places; n = 8 choices cannot all be accepted
expect_error 429 POST /v1/completions '{"prompt":"x","n":8,"max_tokens":2000}'
# 401: no key, wrong key; /health needs none
code=$(curl -s -o "$WORK/out" -w '%{http_code}' "$BASE/v1/models")
[ "$code" = 401 ] || fail "no key: $code"
jq -e '.error.code == "invalid_api_key"' "$WORK/out" >/dev/null || fail "401 shape"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$BASE/v1/models")
[ "$code" = 401 ] || fail "wrong key: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health")
[ "$code" = 200 ] || fail "health with no key: $code"

# ---- a client that disconnects mid-stream frees its slot ----
curl -sN -m 0.5 -H "Authorization: Bearer $KEY" "$BASE/v1/completions" \
    -d '{"prompt":"Once","max_tokens":4000,"stream":true,"temperature":1}' >/dev/null 2>&1 || true
ok=""
for _ in $(seq 1 100); do
    busy=$(curl -s -H "Authorization: Bearer $KEY" "$BASE/metrics" | sed -n 's/^slmesh_busy_slots{model="stories260K"} //p')
    [ "$busy" = 0 ] && ok=1 && break
    sleep 0.05
done
[ -n "$ok" ] || fail "slot still busy after the client left"
expect 200 POST /v1/completions '{"prompt":"After","max_tokens":4}'

# ---- metrics ----
expect 200 GET /metrics
for m in 'slmesh_requests_total{endpoint="/v1/completions",status="200"}' slmesh_time_to_first_token_seconds_bucket \
    slmesh_request_duration_seconds_count slmesh_generated_tokens_total slmesh_tokens_per_second \
    'slmesh_queue_depth{model="stories260K"}' 'slmesh_kv_cells_used{model="stories260K"}' \
    'slmesh_prefix_cache_hits_total{model="stories260K"}' 'slmesh_requests_total{endpoint="/v1/completions",status="429"}'; do
    grep -qF "$m" "$WORK/out" || fail "metrics lack $m"
done

# ---- access log: JSON lines, no prompt text by default ----
jq -e -s 'length > 10 and all(has("id") and has("status") and has("total_ms"))' "$WORK/access.log" >/dev/null || fail "access log"
grep -q "Once upon a time" "$WORK/access.log" && fail "prompt text in the access log"

# ---- SIGTERM with a request in flight: it ends properly ([DONE]), new connections are refused, exit 0 ----
curl -sN -H "Authorization: Bearer $KEY" "$BASE/v1/completions" \
    -d '{"prompt":"Once","max_tokens":3000,"stream":true,"temperature":1}' >"$WORK/inflight" 2>/dev/null &
cpid=$!
for _ in $(seq 1 100); do
    grep -q '"text"' "$WORK/inflight" 2>/dev/null && break
    sleep 0.02
done
stop_server
wait "$cpid" || true
grep -v '^$' "$WORK/inflight" | tail -n 1 | grep -q '^data: \[DONE\]' || fail "in-flight stream cut at shutdown: $(tail -c 200 "$WORK/inflight")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health" || true)
[ "$code" = 000 ] || fail "still answering after shutdown: $code"
echo "server_curl: ok"
