#!/usr/bin/env bash
# tests/kernels_cli.sh: `slmesh kernels`: usage errors exit 2; a small run lists the chosen
# set, one line per runnable set and path for the type, and every set agrees with scalar
# (the tiled and packed paths exactly, several activation rows; Q8_0 and F16 too); the SLMESH_KERNELS
# override is reported.
set -euo pipefail
bin=${SLMESH_BIN:?SLMESH_BIN not set}
fail() { echo "kernels_cli: FAIL: $*" >&2; exit 1; }

set +e
"$bin" kernels --cols 100 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --cols: want exit 2"
"$bin" kernels --cols 576 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--cols 576 without --type (K types need 256): want exit 2"
"$bin" kernels --type q4_k --cols 576 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--cols 576 for q4_k: want exit 2"
"$bin" kernels --type iq2_xxs >/dev/null 2>&1; [ $? -eq 2 ] || fail "type without kernels: want exit 2"
"$bin" kernels --rows 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --rows: want exit 2"
"$bin" kernels --bogus 1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option: want exit 2"
"$bin" kernels --rows >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing value: want exit 2"
"$bin" kernels --vectors 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --vectors: want exit 2"
set -e

out=$("$bin" kernels --type q4_k --rows 16 --cols 256 --ms 1)
echo "$out" | grep -q '^kernel set: ' || fail "no kernel set line: $out"
echo "$out" | grep -q '^q4_k    scalar' || fail "no scalar line: $out"
# every set within 1e-4 of scalar, relative to the outputs' scale
echo "$out" | awk '/vs scalar/ { if ($NF + 0 > 1e-4) bad = 1 } END { exit bad }' || fail "a set disagrees: $out"

# several activation rows: the tiled and packed paths of the AVX2 set equal scalar bit for bit
out=$("$bin" kernels --type q4_0 --rows 24 --cols 256 --vectors 5 --ms 1)
echo "$out" | grep -q '^matrix 24 x 256 times 5 activation rows' || fail "no shape line: $out"
if echo "$out" | grep -q '^q4_0    avx2'; then
    for path in dot gemm packed; do
        echo "$out" | grep -Eq "^q4_0 +avx2 +$path .* 0\.00e\+00$" || fail "avx2 $path missing or not exact: $out"
    done
fi

# a 32-block type takes any whole number of its blocks (SmolLM2's 576-wide rows)
out=$("$bin" kernels --type q4_0 --rows 16 --cols 576 --vectors 5 --ms 1)
echo "$out" | awk '/vs scalar/ { n++; if ($NF + 0 > 0) bad = 1 } END { exit bad || n < 2 }' || fail "q4_0 x 576: $out"

# types that are their own activation type (Q8_0, F16) take converted rows too: every set
# agrees with scalar (a tool that fed them the floats' raw bytes disagreed by 25%)
for t in q8_0 f16; do
    out=$("$bin" kernels --type $t --rows 64 --cols 256 --vectors 3 --ms 1)
    echo "$out" | awk '/vs scalar/ { n++; if ($NF + 0 > 1e-4) bad = 1 } END { exit bad || n < 1 }' ||
        fail "$t: a set disagrees: $out"
done

out=$(SLMESH_KERNELS=scalar "$bin" kernels --type q8_0 --rows 4 --cols 256 --ms 1)
echo "$out" | grep -q '^kernel set: scalar (SLMESH_KERNELS=scalar)' || fail "override not used: $out"
echo ok
