#!/usr/bin/env bash
# bench/tile_mca.sh: a static estimate of the packed 32-block tiles (quant/pack_avx2.c and
# quant/pack_vnni.c) from llvm-mca, for ISAs this machine cannot time (AVX-512 VNNI).
#
# For each file, kind and group count it compiles a wrapper that calls the tile with fixed
# G groups x 4 activation rows (clang -O2, loops of constant count fully unrolled so that a
# block is one straight run of code), takes the loop of the wrapper that holds the
# most multiply instructions (vpdpbusd / vpmaddubsw), and reports llvm-mca's cycles per
# iteration and per multiply instruction (each is 32 byte products of 8 weight rows x 4
# elements). A model's estimate, not a measurement: timings come from `slmesh kernels` on
# hardware that has the ISA. The production build is GCC's; the estimate compares tiles
# compiled alike, and it is only as good as llvm-mca's model of the CPU: for the AVX2 Q4_0
# tile it predicts 9% from pairing the groups where Zen 4 measured 20-26%.
#
# usage: bench/tile_mca.sh [MCPU]     (default icelake-server: llvm-mca 14 knows no Zen 4)
# Needs clang and llvm-mca (Debian: clang, llvm).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mcpu=${1:-icelake-server}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the loop of function $2 in assembly $1 with the most lines matching $3
loop_of() {
    python3 - "$@" <<'PY'
import re, sys
asm, fn, op = sys.argv[1:4]
lines = open(asm).read().split('\n')
i = next(k for k, l in enumerate(lines) if l.startswith(fn + ':'))
j = next(k for k in range(i, len(lines)) if lines[k].strip().startswith('.Lfunc_end'))
body = lines[i:j]
labels = {m.group(1): k for k, l in enumerate(body) if (m := re.match(r'^(\.LBB\w+):', l))}
best = None
for k, l in enumerate(body):
    m = re.match(r'\s+j\w+\s+(\.LBB\w+)$', l)
    if m and m.group(1) in labels and labels[m.group(1)] < k:
        rng = [x for x in body[labels[m.group(1)]:k + 1] if x.startswith('\t') and not x.strip().startswith('.')]
        n = sum(op in x for x in rng)
        if best is None or n > best[0]:
            best = (n, rng)
print('\n'.join(best[1]))
PY
}

printf '| file | kind | groups | multiplies in the loop | cycles / iteration | cycles / multiply |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: |\n'
for file in pack_avx2 pack_vnni; do
    tile=ptile target=AVX2_TARGET op=vpmaddubsw
    [ "$file" = pack_vnni ] && tile=ptile_vnni target=VNNI_TARGET op=vpdpbusd
    {
        echo "#include \"quant/$file.c\""
        for kind in Q4_0 Q8_0 Q5_0; do
            for g in 1 2; do
                echo "$target void h_${kind}_$g(int64_t nb, const uint8_t *grp, size_t gb, const uint8_t *x, size_t xs," \
                     "const float *pd, const float *ps, size_t bs, size_t rs, float *y, size_t ys) {" \
                     "$tile(nb, grp, gb, x, xs, pd, ps, bs, rs, y, ys, $g, 4, PK_$kind); }"
            done
        done
    } >"$tmp/$file.c"
    clang -O2 -mllvm -unroll-threshold=100000 -S -Wno-everything -I"$here/src" -I"$here/include" "$tmp/$file.c" -o "$tmp/$file.s"
    for kind in Q4_0 Q8_0 Q5_0; do
        for g in 1 2; do
            loop_of "$tmp/$file.s" "h_${kind}_$g" "$op" >"$tmp/loop.s"
            n=$(grep -c "$op" "$tmp/loop.s" || true)
            cyc=$(llvm-mca -mcpu="$mcpu" -iterations=100 "$tmp/loop.s" 2>/dev/null | awk '/Total Cycles/ {print $3 / 100}')
            awk -v f="$file" -v k="$kind" -v g="$g" -v n="$n" -v c="$cyc" \
                'BEGIN { printf "| %s | %s | %d | %d | %.1f | %.2f |\n", f, k, g, n, c, (n ? c / n : 0) }'
        done
    done
done
echo "llvm-mca -mcpu=$mcpu, $(clang --version | head -1)"
