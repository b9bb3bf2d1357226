#!/usr/bin/env bash
# tests/cli_redact.sh: `slmesh redact` through the real binary: plain text, --json with
# character offsets, --jsonl, operators, invalid UTF-8, and usage errors (exit 2).
set -euo pipefail
BIN=${SLMESH_BIN:?SLMESH_BIN not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# plain text from stdin and from a file
out=$(printf 'Mail <ann@example.com>, card 4111-1111-1111-1111.\n' | "$BIN" redact --no-tagger)
[ "$out" = "Mail <<EMAIL_ADDRESS>>, card <CREDIT_CARD>." ] || fail "plain: $out"
printf 'IBAN gb82 west 1234 5698 7654 32\n' > "$tmp/in.txt"
out=$("$BIN" redact --no-tagger "$tmp/in.txt")
[ "$out" = "IBAN <IBAN_CODE>" ] || fail "file: $out"

# --json: character offsets (é is 2 bytes, 1 character)
out=$(printf 'Café a@b.io' | "$BIN" redact --no-tagger --json)
echo "$out" | grep -q '"findings": *\[{"type": *"EMAIL_ADDRESS", *"start": *5, *"end": *11' || fail "json: $out"
echo "$out" | grep -q '"redacted": *"Café <EMAIL_ADDRESS>"' || fail "json redacted: $out"

# --jsonl keeps other fields, adds "redacted"
out=$(printf '{"id":1,"text":"call +1-984-182-0190"}\n\n{"id":2,"text":"nothing here"}\n' | "$BIN" redact --no-tagger --jsonl)
[ "$(echo "$out" | wc -l)" -eq 2 ] || fail "jsonl lines: $out"
echo "$out" | head -1 | grep -q '"id": *1.*"redacted": *"call <PHONE_NUMBER>"' || fail "jsonl 1: $out"
echo "$out" | tail -1 | grep -q '"redacted": *"nothing here"' || fail "jsonl 2: $out"

# operators and type selection
out=$(printf 'a@b.io 4111111111111111' | "$BIN" redact --no-tagger --operator mask --mask-keep 2)
[ "$out" = "****io **************11" ] || fail "mask: $out"
out=$(printf 'a@b.io 4111111111111111' | "$BIN" redact --no-tagger --types CREDIT_CARD --operator numbered)
[ "$out" = "a@b.io <CREDIT_CARD_1>" ] || fail "types: $out"
h1=$(printf 'a@b.io' | "$BIN" redact --no-tagger --operator hash --salt s1)
h2=$(printf 'a@b.io' | "$BIN" redact --no-tagger --operator hash --salt s2)
[ "$h1" != "$h2" ] && [[ "$h1" == "<EMAIL_ADDRESS:"* ]] || fail "hash: $h1 $h2"

# invalid UTF-8: clear error, exit 1, nothing on stdout
set +e
out=$(printf 'ok \xff\xfe' | "$BIN" redact --no-tagger 2>"$tmp/err"); rc=$?
set -e
[ $rc -eq 1 ] && [ -z "$out" ] && grep -q "invalid UTF-8 at byte 3" "$tmp/err" || fail "utf8: rc=$rc $(cat "$tmp/err")"

# usage errors exit 2
for args in "--bogus" "--operator shred" "--types NOPE" "--threshold 2" "--mask-keep x" "a b"; do
    set +e
    # shellcheck disable=SC2086
    "$BIN" redact $args </dev/null >/dev/null 2>&1; rc=$?
    set -e
    [ $rc -eq 2 ] || fail "usage '$args' exit $rc"
done
echo "cli_redact: ok"
