/*
 * quant/kernels_avx512.c: the AVX-512 (F/BW/VL/VNNI) kernel set. It inherits every AVX2
 * kernel (kernels.c completes a set from the lower ISAs) and replaces the packed products
 * of the 32-block types (Q8_0, Q4_0, Q5_0, IQ4_NL: the prompt tiles and the decode tile)
 * with pack_vnni.c's, which use vpdpbusd on 256-bit vectors over the same packed layout
 * (so packing is AVX2's) and give exactly the AVX2 results, bit for bit.
 *
 * Neither the development machine nor CI has AVX-512: the tests run this set on SIMDe's
 * portable definitions of the intrinsics (SLM_QUANT_EMULATE_VNNI, see pack_vnni.c), which
 * checks its values; its speed has not been measured on hardware.
 * Thread-safety: immutable data. Non-goals: VNNI versions of the K types' tiles and of the
 * unpacked vec_dot kernels (decode reads packed rows; the K tiles are next).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX512

const slm_quant_kernel_set slm_quant_kernels_avx512 = {
    .isa = SLM_QUANT_ISA_AVX512,
    .name = "avx512",
    .pack = {
        [SLM_TYPE_Q8_0] = slm_quant_pack_q8_0_avx2,
        [SLM_TYPE_Q4_0] = slm_quant_pack_q4_0_avx2,
        [SLM_TYPE_IQ4_NL] = slm_quant_pack_iq4_nl_avx2,
        [SLM_TYPE_Q5_0] = slm_quant_pack_q5_0_avx2,
    },
    .unpack = {
        [SLM_TYPE_Q8_0] = slm_quant_unpack_q8_0_avx2,
        [SLM_TYPE_Q4_0] = slm_quant_unpack_q4_0_avx2,
        [SLM_TYPE_IQ4_NL] = slm_quant_unpack_iq4_nl_avx2,
        [SLM_TYPE_Q5_0] = slm_quant_unpack_q5_0_avx2,
    },
    .gemm_packed = {
        [SLM_TYPE_Q8_0] = slm_quant_gemm_packed_q8_0_vnni,
        [SLM_TYPE_Q4_0] = slm_quant_gemm_packed_q4_0_vnni,
        [SLM_TYPE_IQ4_NL] = slm_quant_gemm_packed_iq4_nl_vnni,
        [SLM_TYPE_Q5_0] = slm_quant_gemm_packed_q5_0_vnni,
    },
};

#else
typedef int slm_quant_kernels_avx512_unused; /* not an x86-64 GCC/clang build */
#endif
