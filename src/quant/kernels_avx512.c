/*
 * quant/kernels_avx512.c: the AVX-512 (F/BW/VL/VNNI) kernel set. For now it holds no
 * kernels of its own: it inherits every AVX2 kernel (kernels.c completes a set from the
 * lower ISAs), so it gives exactly the AVX2 results.
 *
 * Its earlier VNNI vec_dot for Q8_0 and Q4_0 reproduced the AVX2 kernels' old float order
 * (8 lanes, FMA per block); the AVX2 kernels of those types now keep the scalar order and
 * their tiles (gemm) must equal the set's vec_dot bit for bit, so a VNNI kernel here has to
 * be written the same way: vpdpbusd in place of maddubs + madd in the lanes-as-outputs
 * tiles of kernels_avx2.c, one exact integer sum per block, the scalar float step. That
 * needs AVX-512 hardware to verify (the development machine and CI have none), as does
 * raising AUTO_CAP in kernels.c: the set stays opt-in (SLMESH_KERNELS=avx512).
 * Thread-safety: immutable data. Non-goals: 512-bit-wide loops (the 32-element blocks and
 * the memory bandwidth leave little to gain).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX512

const slm_quant_kernel_set slm_quant_kernels_avx512 = {
    .isa = SLM_QUANT_ISA_AVX512,
    .name = "avx512",
};

#else
typedef int slm_quant_kernels_avx512_unused; /* not an x86-64 GCC/clang build */
#endif
