/*
 * quantize/quantize_file.c: row conversion on a thread pool, and `slmesh quantize`'s file
 * to file conversion.
 *
 * Rows: each pool thread takes a contiguous range of rows, fills one row of floats from the
 * source into its own scratch and quantizes it into its place in dst. The reference
 * quantizers work block by block, so row by row gives the reference's bytes.
 * Files: the input is mapped; tensors are visited in the reference's order (which the
 * mixture rules count in) and written in that order, as the reference tool writes them;
 * tensors that keep their type point into the mapping, converted ones into buffers owned
 * here until the file is written.
 * Thread-safety: slm_quantize_file is reentrant (its pool and buffers are its own).
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "quantize/quantize.h"

/* ---- rows --------------------------------------------------------------------------------- */

void slm_quantize_tensor_row(void *ctx, int64_t row, float *out) {
    const slm_quantize_tensor_src *s = ctx;
    const uint8_t *p = (const uint8_t *)s->data + (size_t)row * s->row_bytes;
    slm_type_traits_of(s->type)->to_float(p, out, s->n_per_row);
}

typedef struct rows_job {
    slm_quantize_row_fn src;
    void *src_ctx;
    int64_t n_rows, n_per_row;
    slm_from_float_fn from_float;
    size_t row_bytes;
    uint8_t *dst;
    float *scratch; /* n_per_row floats per thread */
} rows_job;

static void rows_worker(void *arg, int ith, int nth) {
    rows_job *j = arg;
    int64_t r0, r1;
    slm_pool_range(j->n_rows, ith, nth, &r0, &r1);
    float *buf = j->scratch + (size_t)ith * (size_t)j->n_per_row;
    for (int64_t r = r0; r < r1; r++) {
        j->src(j->src_ctx, r, buf);
        j->from_float(buf, j->dst + (size_t)r * j->row_bytes, j->n_per_row);
    }
}

slm_status slm_quantize_rows(slm_pool *pool, slm_quantize_row_fn src, void *src_ctx, int64_t n_rows,
                             int64_t n_per_row, slm_type dst_type, void *dst, char *err) {
    const slm_type_traits *tr = slm_type_traits_of(dst_type);
    size_t row_bytes, scratch_n;
    if (!tr || !tr->from_float) return slm_errf(err, SLM_ERR_UNSUPPORTED, "no quantizer for type %s", slm_type_name(dst_type));
    if (n_rows < 0 || n_per_row <= 0 || !slm_type_row_bytes(dst_type, n_per_row, &row_bytes))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "%lld elements per row do not fit %s blocks", (long long)n_per_row,
                        tr->name);
    const int nth = pool ? slm_pool_n_threads(pool) : 1;
    if (!slm_mul_size((size_t)nth, (size_t)n_per_row, &scratch_n) || !slm_mul_size(scratch_n, sizeof(float), &scratch_n))
        return slm_errf(err, SLM_ERR_LIMIT, "row scratch overflows");
    rows_job j = {src, src_ctx, n_rows, n_per_row, tr->from_float, row_bytes, dst, slm_malloc(scratch_n)};
    if (!j.scratch) return slm_errf(err, SLM_ERR_NOMEM, "row scratch of %zu bytes", scratch_n);
    slm_pool_run(pool, rows_worker, &j);
    slm_free(j.scratch);
    return SLM_OK;
}

/* ---- files -------------------------------------------------------------------------------- */

static bool skip_type_keys(const char *key, void *ctx) {
    (void)ctx;
    return !strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version");
}

/* The quantization format version the reference writes (GGML_QNT_VERSION). */
#define QNT_VERSION 2

/* An integer hyper-parameter "<arch>.<suffix>", or def when absent. */
static int64_t arch_int(const slm_gguf *g, const char *suffix, int64_t def) {
    slm_gguf_str arch;
    char key[128];
    int64_t v;
    if (slm_gguf_get_str(g, "general.architecture", &arch, NULL) != SLM_OK || arch.len > 64) return def;
    snprintf(key, sizeof key, "%.*s.%s", (int)arch.len, arch.ptr, suffix);
    return slm_gguf_get_i64(g, key, &v, NULL) == SLM_OK ? v : def;
}

slm_status slm_quantize_file(const char *in_path, const char *out_path, const slm_quantize_params *p,
                             slm_quantize_stats *stats, char *err) {
    slm_gguf *g = NULL;             /* owned: the mapped input */
    slm_gguf_writer *w = NULL;      /* owned */
    slm_pool *pool = NULL;          /* owned */
    const char **names = NULL;      /* owned array; strings borrowed from g */
    size_t *order = NULL;           /* owned */
    void **bufs = NULL;             /* owned: converted tensors, one per input tensor or NULL */
    slm_quantize_stats st_local;
    slm_quantize_stats *s = stats ? stats : &st_local;
    memset(s, 0, sizeof *s);
    slm_status st = slm_gguf_open(in_path, NULL, &g, err);
    if (st) goto done;
    const int64_t n = slm_gguf_n_tensors(g);
    const int64_t n_layer = arch_int(g, "block_count", 0);
    if (n_layer < 0 || n_layer > SLM_QUANTIZE_MAX_LAYERS) {
        st = slm_errf(err, SLM_ERR_LIMIT, "block_count %lld outside [0, %d]", (long long)n_layer, SLM_QUANTIZE_MAX_LAYERS);
        goto done;
    }
    const int64_t n_head = arch_int(g, "attention.head_count", 1), n_head_kv = arch_int(g, "attention.head_count_kv", n_head);
    names = slm_calloc((size_t)n + 1, sizeof *names);
    order = slm_calloc((size_t)n + 1, sizeof *order);
    bufs = slm_calloc((size_t)n + 1, sizeof *bufs);
    if (!names || !order || !bufs) {
        st = slm_errf(err, SLM_ERR_NOMEM, "tensor tables");
        goto done;
    }
    slm_quantize_chooser ch = {.ftype = p->ftype, .pure = p->pure, .n_layer = (int32_t)n_layer,
                               .n_gqa = n_head_kv > 0 ? (int32_t)(n_head / n_head_kv) : 1};
    for (int64_t i = 0; i < n; i++) {
        names[i] = slm_gguf_tensor_at(g, i)->name;
        if (strstr(names[i], "attn_v.weight") || strstr(names[i], "attn_qkv.weight") || strstr(names[i], "attn_kv_b.weight"))
            ch.n_attn_v++;
        if (!strcmp(names[i], "output.weight")) ch.has_output = true;
    }
    slm_quantize_order(names, (size_t)n, order);
    if ((st = slm_pool_create(p->n_threads > 0 ? p->n_threads : slm_pool_default_threads(), &pool, err)) ||
        (st = slm_gguf_writer_create(&w)) || (st = slm_gguf_writer_copy_kv(w, g, skip_type_keys, NULL)) ||
        (st = slm_gguf_writer_set_u32(w, "general.quantization_version", QNT_VERSION)) ||
        (st = slm_gguf_writer_set_u32(w, "general.file_type", (uint32_t)p->ftype))) {
        if (st == SLM_ERR_NOMEM) slm_errf(err, st, "writer");
        goto done;
    }

    for (int64_t k = 0; k < n; k++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, (int64_t)order[k]);
        slm_type to = slm_quantize_choose(&ch, t->name, t->n_dims, t->ne, t->type);
        if (slm_gguf_tensor_nelements(t) == 0) to = t->type; /* nothing to convert */
        const void *data = t->data;
        size_t size = t->size;
        s->bytes_in += t->size;
        if (to != t->type) {
            const slm_type_traits *src_tr = slm_type_traits_of(t->type);
            if (src_tr->quantized && !p->allow_requantize) {
                st = slm_errf(err, SLM_ERR_UNSUPPORTED, "%s is %s: requantizing needs --allow-requantize", t->name,
                              src_tr->name);
                goto done;
            }
            if (!src_tr->to_float) {
                st = slm_errf(err, SLM_ERR_UNSUPPORTED, "%s: cannot convert from %s", t->name, src_tr->name);
                goto done;
            }
            const int64_t n_rows = slm_gguf_tensor_nelements(t) / t->ne[0];
            size_t row_out;
            if (!slm_type_row_bytes(to, t->ne[0], &row_out) || !slm_mul_size(row_out, (size_t)n_rows, &size)) {
                st = slm_errf(err, SLM_ERR_LIMIT, "%s: converted size overflows", t->name);
                goto done;
            }
            bufs[k] = slm_malloc(size ? size : 1);
            if (!bufs[k]) {
                st = slm_errf(err, SLM_ERR_NOMEM, "%s: %zu bytes", t->name, size);
                goto done;
            }
            slm_quantize_tensor_src src = {t->data, t->type, t->size / (size_t)n_rows, t->ne[0]};
            if ((st = slm_quantize_rows(pool, slm_quantize_tensor_row, &src, n_rows, t->ne[0], to, bufs[k], err)))
                goto done;
            data = bufs[k];
            s->n_converted++;
        }
        if ((st = slm_gguf_writer_add_tensor(w, t->name, to, t->n_dims, t->ne, data, size, err))) goto done;
        s->n_tensors++;
        s->bytes_out += size;
        s->n_of_type[to]++;
    }
    s->n_fallback = ch.n_fallback;
    st = slm_gguf_writer_write(w, out_path, err);
done:
    if (bufs)
        for (int64_t i = 0; i < (g ? slm_gguf_n_tensors(g) : 0); i++) slm_free(bufs[i]);
    slm_free(bufs);
    slm_free(order);
    slm_free(names);
    slm_gguf_writer_destroy(w);
    slm_pool_destroy(pool);
    slm_gguf_close(g);
    return st;
}
