/*
 * quant/kernels_isa.h (internal): the kernel sets the SIMD files provide. Each holds only
 * the kernels that ISA speeds up (NULL elsewhere); kernels.c completes them from the
 * scalar ones. A file that is not built for this target leaves its HAVE macro at 0.
 * Thread-safety: immutable data. Non-goals: anything but declarations.
 */
#ifndef SLMESH_QUANT_KERNELS_ISA_H
#define SLMESH_QUANT_KERNELS_ISA_H

#include "quant/kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SLM_QUANT_X86 1
#else
#define SLM_QUANT_X86 0
#endif

/* Which SIMD files this build compiles (they use per-function target attributes, so any
 * x86-64 GCC/clang build has them; kernels.c still asks the CPU before using them). */
#define SLM_QUANT_HAVE_AVX2 SLM_QUANT_X86
#define SLM_QUANT_HAVE_AVX512 SLM_QUANT_X86

#if SLM_QUANT_HAVE_AVX2
extern const slm_quant_kernel_set slm_quant_kernels_avx2;

/* The activation table of the Q8_0-activation tiles (kernels_avx2.c, shared with
 * pack_avx2.c): for rows v in [v0, v1) of xq (row v at xq + v * xs, Q8_0 blocks) and blocks
 * b < nb, entry b * pstride + (v - v0) of pd is the block's scale as a float and, when ps
 * is not NULL, that of ps the exact sum of its 32 quants times off (a power of two, so the
 * product is exact: 8 for the packed tiles, a type's offset 8 or 16 for the gemm tiles).
 * pstride >= v1 - v0. */
void slm_quant_q8_0_table_avx2(const uint8_t *xq, size_t xs, int64_t v0, int64_t v1, int64_t nb, size_t pstride,
                               float *pd, float *ps, float off);

/* slm_pack_table_fn of the AVX2 set (kernels.h gives the layout). */
void slm_quant_pack_table_avx2(const void *xq, size_t xs, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                               float *tab);

/* The packed layouts of the AVX2 set (pack_avx2.c, pack_avx2_k.c), one line per kernel. */
/* slm_gemm_packed_fn slm_quant_gemm_packed_<name>_<isa> */
#define SLM_QUANT_GEMM_PACKED_DECL(name, isa)                                                              \
    void slm_quant_gemm_packed_##name##_##isa(int64_t n, const void *P, size_t row_bytes, int64_t g0,      \
                                              int64_t g1, const void *xq, size_t xq_stride, int64_t n_vec, \
                                              float *y, size_t y_stride, const float *tab);
#define SLM_QUANT_PACKED_DECL(name)                                                                    \
    void slm_quant_pack_##name##_avx2(const void *rows, size_t row_bytes, int64_t n, void *group);     \
    void slm_quant_unpack_##name##_avx2(const void *group, int64_t n, void *rows, size_t row_bytes);   \
    SLM_QUANT_GEMM_PACKED_DECL(name, avx2)
SLM_QUANT_PACKED_DECL(q8_0)
SLM_QUANT_PACKED_DECL(q4_0)
SLM_QUANT_PACKED_DECL(iq4_nl)
SLM_QUANT_PACKED_DECL(q5_0)
SLM_QUANT_PACKED_DECL(q4_k)
SLM_QUANT_PACKED_DECL(q5_k)
SLM_QUANT_PACKED_DECL(q6_k)
#endif
#if SLM_QUANT_HAVE_AVX512
extern const slm_quant_kernel_set slm_quant_kernels_avx512;

/* The packed 32-block products of the avx512 set (pack_vnni.c; the layout is AVX2's). */
SLM_QUANT_GEMM_PACKED_DECL(q8_0, vnni)
SLM_QUANT_GEMM_PACKED_DECL(q4_0, vnni)
SLM_QUANT_GEMM_PACKED_DECL(iq4_nl, vnni)
SLM_QUANT_GEMM_PACKED_DECL(q5_0, vnni)
#endif

#endif /* SLMESH_QUANT_KERNELS_ISA_H */
