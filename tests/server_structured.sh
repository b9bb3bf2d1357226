#!/usr/bin/env bash
# tests/server_structured.sh: response_format on the real `slmesh serve` with the random-weight
# tiny-qwen2 (temperature 1.5, several seeds, n = 2): json_schema output on chat and
# completions that ended "stop" parses and validates under its schema (ajv through
# tests/grammar_validate.cjs when node and the validators are installed, else jq parses it);
# streamed content equals the non-streamed content of the same seed; json_object gives a
# JSON object; an output cut by max_tokens is "length"; an unsupported schema keyword and a
# malformed response_format are 400s in OpenAI's shape with param "response_format". The
# "grammar" (GBNF) and "regex" fields constrain chat and completions the same way (outputs
# that ended "stop" match them), as do llama-server's top-level "json_schema" and vLLM's
# "guided_json" (object or text) and "guided_regex"; syntax errors, unsupported constructs,
# combined constraints and vLLM's guided_choice are 400s naming the field.
set -euo pipefail
source "$(dirname "$0")/server_common.bash"
SRC=${SLMESH_SOURCE_DIR:-$(dirname "$0")/..}
QWEN="$SHARED/models/tiny/tiny-qwen2-q8_0.gguf"
[ -f "$QWEN" ] || { echo "skip: $QWEN not found"; exit 77; }
VALIDATE=""
if command -v node >/dev/null && [ -d "$SRC/tests/node_modules/ajv" ] && [ -d "$SRC/tests/node_modules/ajv-formats" ]; then
    VALIDATE=1
else
    echo "note: node or ajv missing: outputs are only parsed (jq), not validated"
fi

start_server -m "$QWEN" --parallel 2 --ctx 2048 -t 1 --grace 3

post() { # post PATH BODY -> status; body in $WORK/out
    curl -s -o "$WORK/out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$BASE$1"
}
n_out=0
: >"$WORK/manifest"
# record SCHEMA_FILE: every choice of $WORK/out into the manifest (content, finish_reason)
record() {
    local k fr
    for k in $(seq 0 $(($(jq '.choices | length' "$WORK/out") - 1))); do
        n_out=$((n_out + 1))
        jq -j ".choices[$k] | (.message.content // .text)" "$WORK/out" >"$WORK/o$n_out"
        fr=$(jq -r ".choices[$k].finish_reason" "$WORK/out")
        case "$fr" in
        stop) printf '%s\t%s\tgrammar complete\n' "$1" "$WORK/o$n_out" >>"$WORK/manifest" ;;
        length) printf '%s\t%s\tlength\n' "$1" "$WORK/o$n_out" >>"$WORK/manifest" ;;
        *) fail "finish_reason '$fr'" ;;
        esac
    done
}

SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3},"ok":{"type":"boolean"}},"required":["name","age"]}'
echo "$SCHEMA" >"$WORK/s1.json"
cp "$SRC/tests/schema_corpus/35_recursive_tree.json" "$WORK/s2.json"
RF1="{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"person\",\"schema\":$SCHEMA,\"strict\":true}}"
RF2="{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"tree\",\"schema\":$(jq -c . "$WORK/s2.json")}}"

# ---- json_schema: chat and completions, several seeds, n = 2 ----
for seed in 1 2 3; do
    st=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"A person as JSON\"}],\"response_format\":$RF1,\"temperature\":1.5,\"seed\":$seed,\"n\":2,\"max_tokens\":96}")
    [ "$st" = 200 ] || fail "chat json_schema: $st $(head -c 300 "$WORK/out")"
    record "$WORK/s1.json"
    st=$(post /v1/completions "{\"prompt\":\"tree:\",\"response_format\":$RF2,\"temperature\":1.5,\"seed\":$seed,\"n\":2,\"max_tokens\":96}")
    [ "$st" = 200 ] || fail "completions json_schema: $st $(head -c 300 "$WORK/out")"
    record "$WORK/s2.json"
done

# ---- llama-server's top-level json_schema, vLLM's guided_json (object or JSON text) ----
for field in json_schema guided_json guided_json_text; do
    case $field in
    guided_json_text) kv="\"guided_json\":$(jq -Rn --arg s "$SCHEMA" '$s')" ;;
    *) kv="\"$field\":$SCHEMA" ;;
    esac
    st=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"A person\"}],$kv,\"temperature\":1.5,\"seed\":5,\"n\":2,\"max_tokens\":96}")
    [ "$st" = 200 ] || fail "chat $field: $st $(head -c 300 "$WORK/out")"
    record "$WORK/s1.json"
done
st=$(post /v1/completions '{"prompt":"x","guided_regex":"(yes|no)!","temperature":1.5,"seed":2,"max_tokens":8}')
[ "$st" = 200 ] || fail "guided_regex: $st $(head -c 300 "$WORK/out")"
jq -je '.choices[0].text' "$WORK/out" | grep -Eqx '(yes|no)!' || fail "guided_regex output: $(cat "$WORK/out")"

# ---- streaming gives the same content and finish_reason as the same seed without it ----
body="{\"messages\":[{\"role\":\"user\",\"content\":\"JSON\"}],\"response_format\":$RF1,\"temperature\":1.5,\"seed\":4,\"max_tokens\":96}"
[ "$(post /v1/chat/completions "$body")" = 200 ] || fail "chat json_schema seed 4"
whole=$(jq -j '.choices[0].message.content' "$WORK/out")
whole_fr=$(jq -r '.choices[0].finish_reason' "$WORK/out")
record "$WORK/s1.json"
curl -sN "$BASE/v1/chat/completions" -d "${body%\}},\"stream\":true}" >"$WORK/sse"
streamed=$(grep '^data: {' "$WORK/sse" | sed 's/^data: //' | jq -j '.choices[0].delta.content // empty')
[ "$streamed" = "$whole" ] || fail "streamed '$streamed' != whole '$whole'"
stream_fr=$(grep '^data: {' "$WORK/sse" | sed 's/^data: //' | jq -r '.choices[0].finish_reason // empty' | tail -n 1)
[ "$stream_fr" = "$whole_fr" ] || fail "streamed finish_reason '$stream_fr' != '$whole_fr'"

# ---- json_object ----
for seed in 1 2; do
    st=$(post /v1/completions "{\"prompt\":\"{\",\"response_format\":{\"type\":\"json_object\"},\"temperature\":1.5,\"seed\":$seed,\"max_tokens\":64}")
    [ "$st" = 200 ] || fail "json_object: $st $(head -c 300 "$WORK/out")"
    if [ "$(jq -r '.choices[0].finish_reason' "$WORK/out")" = stop ]; then
        jq -j '.choices[0].text' "$WORK/out" | jq -e 'type == "object"' >/dev/null ||
            fail "json_object output is not an object: $(jq '.choices[0].text' "$WORK/out")"
    fi
done
[ "$(post /v1/completions '{"prompt":"x","response_format":{"type":"text"},"max_tokens":4}')" = 200 ] || fail "text format"

# ---- truncated: finish_reason length, never stop ----
st=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"JSON\"}],\"response_format\":$RF1,\"seed\":1,\"max_tokens\":2}")
[ "$st" = 200 ] || fail "truncated: $st"
jq -e '.choices[0].finish_reason == "length"' "$WORK/out" >/dev/null || fail "truncated: $(cat "$WORK/out")"

# ---- "grammar" (GBNF) and "regex" on chat and completions ----
GBNF='root ::= ("yes" | "no" | "maybe " [0-9]{1,2}) ("!" | "")'
RE='[A-Z][a-z]{1,8}( [A-Z][a-z]{1,8})?'
n_gr=0
for seed in 1 2 3 4; do
    for ep in chat completions; do
        if [ $ep = chat ]; then
            base=$(jq -nc --argjson s $seed '{messages:[{role:"user",content:"Answer"}],temperature:1.5,seed:$s,max_tokens:24}')
            path=/v1/chat/completions sel='.choices[0].message.content'
        else
            base=$(jq -nc --argjson s $seed '{prompt:"Answer:",temperature:1.5,seed:$s,max_tokens:24}')
            path=/v1/completions sel='.choices[0].text'
        fi
        for kind in grammar regex; do
            if [ $kind = grammar ]; then text=$GBNF want='^(yes|no|maybe [0-9]{1,2})!?$'; else text=$RE want="^$RE\$"; fi
            st=$(post $path "$(jq -c --arg t "$text" --arg k $kind '. + {($k): $t}' <<<"$base")")
            [ "$st" = 200 ] || fail "$kind on $ep: $st $(head -c 300 "$WORK/out")"
            fr=$(jq -r '.choices[0].finish_reason' "$WORK/out")
            out=$(jq -j "$sel" "$WORK/out")
            case "$fr" in
            stop) grep -Eq -- "$want" <<<"$out" || fail "$kind on $ep: '$out' does not match"; n_gr=$((n_gr + 1)) ;;
            length) ;;
            *) fail "$kind on $ep: finish_reason '$fr'" ;;
            esac
        done
    done
done
[ "$n_gr" -gt 0 ] || fail "no grammar/regex output completed"

# ---- errors: 400, OpenAI's shape, the parameter named ----
expect_400() { # expect_400 BODY WORD [PARAM]: the message names WORD, param is PARAM (response_format)
    local st
    st=$(post /v1/chat/completions "$1")
    [ "$st" = 400 ] || fail "status $st for $1: $(head -c 300 "$WORK/out")"
    jq -e --arg p "${3:-response_format}" '.error.param == $p and .error.type == "invalid_request_error" and (.error | has("code"))' \
        "$WORK/out" >/dev/null || fail "error shape: $(cat "$WORK/out")"
    grep -q -- "$2" "$WORK/out" || fail "message does not name '$2': $(cat "$WORK/out")"
}
M='"messages":[{"role":"user","content":"x"}]'
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"allOf\":[{\"type\":\"string\"}]}}}}}}" "'allOf'"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"integer\",\"multipleOf\":3}}}}" "'multipleOf'"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}" "schema"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\"}}" "json_schema"
expect_400 "{$M,\"response_format\":{\"type\":\"xml\"}}" "type"
expect_400 "{$M,\"response_format\":\"json\"}" "response_format"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"strict\":\"yes\",\"schema\":{}}}}" "strict"
expect_400 "{$M,\"grammar\":\"root ::= \\\"a\\\" )\"}" "line 1:14: unbalanced" grammar
expect_400 "{$M,\"grammar\":\"root ::= foo\"}" "undefined rule 'foo'" grammar
expect_400 "{$M,\"grammar\":7}" "'grammar' must be a string" grammar
expect_400 "{$M,\"regex\":\"(?!x)a\"}" "regex" regex
expect_400 "{$M,\"regex\":\"a\",\"grammar\":\"root ::= \\\"a\\\"\"}" "'regex' cannot be combined with 'grammar'" regex
expect_400 "{$M,\"response_format\":{\"type\":\"json_object\"},\"regex\":\"a\"}" "cannot be combined with 'response_format'" regex
expect_400 "{$M,\"json_schema\":$SCHEMA,\"regex\":\"a\"}" "'json_schema' cannot be combined with 'regex'" json_schema
expect_400 "{$M,\"json_schema\":\"{}\"}" "must be a JSON Schema object" json_schema
expect_400 "{$M,\"guided_json\":\"{not json\"}" "guided_json: schema JSON" guided_json
expect_400 "{$M,\"guided_json\":{\"allOf\":[]}}" "'allOf'" guided_json
expect_400 "{$M,\"guided_choice\":[\"a\",\"b\"]}" "'guided_choice' is not supported" guided_choice
[ "$(post /v1/completions '{"prompt":"x","grammar":"","regex":null,"max_tokens":2}')" = 200 ] || fail "empty grammar is none"
[ "$(post /v1/completions "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"not\":{}}}}}")" = 400 ] ||
    fail "completions: unsupported keyword accepted"
grep -q "'not'" "$WORK/out" || fail "completions: keyword not named: $(cat "$WORK/out")"

# ---- every completed output parses (and validates) ----
n_stop=$(grep -c 'grammar complete' "$WORK/manifest" || true)
[ "$n_stop" -gt 0 ] || fail "no output completed its grammar: $(cat "$WORK/manifest")"
if [ -n "$VALIDATE" ]; then
    NODE_PATH="$SRC/tests/node_modules" node "$SRC/tests/grammar_validate.cjs" "$WORK/manifest" || fail "validation"
else
    while IFS=$'\t' read -r _ out stop; do
        [ "$stop" = length ] || jq -e . "$out" >/dev/null || fail "not JSON: $(cat "$out")"
    done <"$WORK/manifest"
fi
stop_server
echo "ok: $n_out outputs, $n_stop complete; $n_gr grammar/regex outputs complete"
