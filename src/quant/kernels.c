/*
 * quant/kernels.c: choosing the kernel set once per process, and the matrix-vector
 * products that use it.
 *
 * Each ISA's file (kernels_avx2.c, kernels_avx512.c, when built) provides only the kernels
 * it speeds up; at first use every set is completed from the scalar kernels of the type
 * table, the CPU is probed, SLMESH_KERNELS is read, and one set is chosen. After that
 * pthread_once the sets are read-only.
 * Thread-safety: see kernels.h. Non-goals: re-selection at run time.
 */
#include "quant/kernels.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "quant/act.h"
#include "quant/blocks.h"
#include "quant/kernels_isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* ---- selection ------------------------------------------------------------------------- */

/* Highest ISA chosen without SLMESH_KERNELS: the best the CPU runs. (The avx512 set's own
 * kernels are checked on SIMDe's emulation on every test run, not yet timed on hardware:
 * SLMESH_KERNELS=avx2 keeps an AVX-512 machine on the AVX2 set; see kernels_avx512.c.) */
#define AUTO_CAP SLM_QUANT_ISA_AVX512

static const char *const isa_names[SLM_QUANT_ISA_COUNT] = {"scalar", "avx2", "avx512"};

/* The scalar axpy kernels (the specification of slm_axpy_fn). */
static void axpy_f32(int64_t n, float a, const void *x, float *y) {
    const float *xf = x;
    for (int64_t i = 0; i < n; i++) y[i] += a * xf[i];
}

/* The packed kernels' activation table in portable C (the specification of
 * slm_pack_table_fn). */
static void pack_table_scalar(const void *xq, size_t xs, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                              float *tab) {
    const int64_t nb = n / SLM_QK8_0;
    for (int64_t v = v0; v < v1; v++) {
        const slm_block_q8_0 *x = (const slm_block_q8_0 *)((const uint8_t *)xq + (size_t)v * xs);
        for (int64_t b = 0; b < nb; b++) {
            int sum = 0;
            for (int i = 0; i < SLM_QK8_0; i++) sum += x[b].qs[i];
            tab[(size_t)v * (size_t)nb + (size_t)b] = slm_quant_h2f(x[b].d);
            tab[(size_t)(n_vec + v) * (size_t)nb + (size_t)b] = 8.0f * (float)sum;
        }
    }
}

static void axpy_f16(int64_t n, float a, const void *x, float *y) {
    const uint16_t *xh = x;
    for (int64_t i = 0; i < n; i++) y[i] += a * slm_f16_to_f32(xh[i]);
}

/* Written once under `once`, read-only afterwards. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static slm_quant_kernel_set sets[SLM_QUANT_ISA_COUNT];
static bool runnable[SLM_QUANT_ISA_COUNT];
static slm_quant_isa chosen;

#if defined(__x86_64__) || defined(__i386__)
/* F16C (the half conversions the AVX2 kernels use): CPUID leaf 1, ECX bit 29. Every AVX2
 * CPU has it, but a virtual machine may hide it; not every compiler's
 * __builtin_cpu_supports knows the name. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

/* Whether this CPU can run an ISA's kernels (the scalar ones always). */
static bool cpu_runs(slm_quant_isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    switch (isa) {
    case SLM_QUANT_ISA_SCALAR: return true;
    case SLM_QUANT_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case SLM_QUANT_ISA_AVX512:
#ifdef SLM_QUANT_EMULATE_VNNI
        return cpu_runs(SLM_QUANT_ISA_AVX2); /* the tests' library: VNNI by SIMDe (pack_vnni.c) */
#else
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
               cpu_runs(SLM_QUANT_ISA_AVX2);
#endif
    default: return false;
    }
#else
    return isa == SLM_QUANT_ISA_SCALAR;
#endif
}

/* The kernels a build provides for an ISA beyond scalar (NULL: none built). */
static const slm_quant_kernel_set *isa_overrides(slm_quant_isa isa) {
    switch (isa) {
#if SLM_QUANT_HAVE_AVX2
    case SLM_QUANT_ISA_AVX2: return &slm_quant_kernels_avx2;
#endif
#if SLM_QUANT_HAVE_AVX512
    case SLM_QUANT_ISA_AVX512: return &slm_quant_kernels_avx512;
#endif
    default: return NULL;
    }
}

static void select_once(void) {
    for (int i = 0; i < SLM_QUANT_ISA_COUNT; i++) {
        const slm_quant_isa isa = (slm_quant_isa)i;
        slm_quant_kernel_set *s = &sets[i];
        s->isa = isa;
        s->name = isa_names[i];
        /* scalar for everything, then the ISA's own kernels over it; a higher ISA also
         * inherits the lower ones' kernels (AVX-512 machines run AVX2 code) */
        for (int t = 0; t < SLM_TYPE_COUNT; t++) {
            const slm_type_traits *tr = slm_type_traits_of((slm_type)t);
            if (!tr) continue;
            s->to_float[t] = tr->to_float;
            s->from_float[t] = tr->from_float;
            s->vec_dot[t] = tr->vec_dot;
            s->act[t] = tr->from_float;
        }
        s->act[SLM_TYPE_Q8_0] = slm_quant_act_q8_0;
        s->act[SLM_TYPE_Q8_1] = slm_quant_act_q8_1;
        s->axpy[SLM_TYPE_F32] = axpy_f32;
        s->axpy[SLM_TYPE_F16] = axpy_f16;
        s->pack_table = pack_table_scalar;
        for (int j = 1; j <= i; j++) {
            const slm_quant_kernel_set *o = isa_overrides((slm_quant_isa)j);
            if (!o) continue;
            for (int t = 0; t < SLM_TYPE_COUNT; t++) {
                if (o->to_float[t]) s->to_float[t] = o->to_float[t];
                if (o->from_float[t]) s->from_float[t] = o->from_float[t];
                if (o->vec_dot[t]) s->vec_dot[t] = o->vec_dot[t];
                if (o->gemm[t]) s->gemm[t] = o->gemm[t];
                if (o->axpy[t]) s->axpy[t] = o->axpy[t];
                if (o->act[t]) s->act[t] = o->act[t];
                if (o->pack_table) s->pack_table = o->pack_table;
                if (o->pack[t] && o->unpack[t] && o->gemm_packed[t]) {
                    s->pack[t] = o->pack[t];
                    s->unpack[t] = o->unpack[t];
                    s->gemm_packed[t] = o->gemm_packed[t];
                }
            }
        }
        runnable[i] = cpu_runs(isa) && (i == SLM_QUANT_ISA_SCALAR || isa_overrides(isa) != NULL);
    }
    /* best runnable up to the automatic cap, or up to the ISA SLMESH_KERNELS names */
    int cap = AUTO_CAP;
    const char *env = getenv("SLMESH_KERNELS");
    for (int i = 0; env && i < SLM_QUANT_ISA_COUNT; i++) {
        if (!strcmp(env, isa_names[i])) cap = i;
    }
    chosen = SLM_QUANT_ISA_SCALAR;
    for (int i = cap; i > 0; i--) {
        if (runnable[i]) {
            chosen = (slm_quant_isa)i;
            break;
        }
    }
}

const slm_quant_kernel_set *slm_quant_kernels(void) {
    pthread_once(&once, select_once);
    return &sets[chosen];
}

const slm_quant_kernel_set *slm_quant_kernels_isa(slm_quant_isa isa) {
    pthread_once(&once, select_once);
    if ((unsigned)isa >= SLM_QUANT_ISA_COUNT || !runnable[isa]) return NULL;
    return &sets[isa];
}

const char *slm_quant_isa_name(slm_quant_isa isa) {
    return (unsigned)isa < SLM_QUANT_ISA_COUNT ? isa_names[isa] : "unknown";
}

void slm_quant_act_convert(slm_type vt, const float *x, void *dst, int64_t n) {
    slm_quant_kernels()->act[vt](x, dst, n);
}

/* ---- matrix-vector products ------------------------------------------------------------------ */

size_t slm_quant_matvec_scratch_bytes(slm_type type, int64_t cols) {
    const slm_type_traits *tr = slm_type_traits_of(type);
    size_t wbytes, xbytes;
    if (!tr || !tr->vec_dot || cols <= 0 || !slm_type_row_bytes(type, cols, &wbytes) ||
        !slm_type_row_bytes(tr->vec_dot_type, cols, &xbytes))
        return SIZE_MAX;
    return tr->vec_dot_type == SLM_TYPE_F32 ? 0 : xbytes;
}

slm_status slm_quant_matvec_prepare(slm_type type, int64_t cols, const float *x, void *scratch,
                                    const void **xq) {
    const size_t need = slm_quant_matvec_scratch_bytes(type, cols);
    if (need == SIZE_MAX || (need && !scratch)) return SLM_ERR_INVALID_ARG;
    const slm_type vt = slm_type_traits_of(type)->vec_dot_type;
    if (vt == SLM_TYPE_F32) {
        *xq = x;
        return SLM_OK;
    }
    slm_quant_act_convert(vt, x, scratch, cols); /* as the forward pass converts activations */
    *xq = scratch;
    return SLM_OK;
}

void slm_quant_matvec_rows(slm_type type, const void *W, int64_t cols, const void *xq,
                           int64_t row_begin, int64_t row_end, float *y) {
    slm_quant_matmul_rows(type, W, cols, xq, 0, 1, row_begin, row_end, y, 0);
}

void slm_quant_matmul_rows(slm_type type, const void *W, int64_t cols, const void *xq,
                           size_t xq_stride, int64_t n_vec, int64_t row_begin, int64_t row_end,
                           float *y, size_t y_stride) {
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const slm_vec_dot_fn dot = ks->vec_dot[type];
    size_t row_bytes = 0;
    slm_type_row_bytes(type, cols, &row_bytes);
    if (ks->gemm[type]) { /* same values, tiled (several weight rows at once even for one vector) */
        ks->gemm[type](cols, W, row_bytes, row_begin, row_end, xq, xq_stride, n_vec, y, y_stride);
        return;
    }
    const char *w = (const char *)W + (size_t)row_begin * row_bytes;
    for (int64_t r = row_begin; r < row_end; r++, w += row_bytes) {
        for (int64_t v = 0; v < n_vec; v++) {
            y[(size_t)v * y_stride + (size_t)r] = dot(cols, w, (const char *)xq + (size_t)v * xq_stride);
        }
    }
}

void slm_quant_matmul_packed_rows(slm_type type, const void *W, int64_t cols, int64_t rows, const void *xq,
                                  size_t xq_stride, int64_t n_vec, int64_t row_begin, int64_t row_end,
                                  float *y, size_t y_stride, const float *tab) {
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const int64_t packed_end = rows - rows % SLM_QUANT_PACK_ROWS; /* rows in whole groups */
    size_t row_bytes = 0;
    slm_type_row_bytes(type, cols, &row_bytes);
    const int64_t g_end = row_end < packed_end ? row_end : packed_end;
    if (row_begin < g_end)
        ks->gemm_packed[type](cols, W, row_bytes, row_begin / SLM_QUANT_PACK_ROWS, g_end / SLM_QUANT_PACK_ROWS, xq,
                              xq_stride, n_vec, y, y_stride, tab);
    const int64_t tail = row_begin > packed_end ? row_begin : packed_end;
    if (tail < row_end) slm_quant_matmul_rows(type, W, cols, xq, xq_stride, n_vec, tail, row_end, y, y_stride);
}

bool slm_quant_pack_uses_table(slm_type type) {
    const slm_type_traits *tr = slm_type_traits_of(type);
    return tr && tr->vec_dot_type == SLM_TYPE_Q8_0 && slm_quant_kernels()->gemm_packed[type] != NULL;
}

void slm_quant_pack_table(const void *xq, size_t xq_stride, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                          float *tab) {
    slm_quant_kernels()->pack_table(xq, xq_stride, v0, v1, n_vec, n, tab);
}

slm_status slm_quant_matvec(slm_type type, const void *W, int64_t rows, int64_t cols,
                            const float *x, float *y, void *scratch) {
    const void *xq = NULL;
    if (rows < 0) return SLM_ERR_INVALID_ARG;
    slm_status st = slm_quant_matvec_prepare(type, cols, x, scratch, &xq);
    if (st != SLM_OK) return st;
    slm_quant_matvec_rows(type, W, cols, xq, 0, rows, y);
    return SLM_OK;
}
