/*
 * quantize/quantize.c: file types and the per-tensor type choice of the reference runtime's
 * quantize tool (build 4748, llama_tensor_get_type), for the mixtures slmesh produces.
 *
 * Invariants: slm_quantize_choose returns a type whose block size divides ne[0] and that
 * has a from_float (or the source type, for tensors left alone). The rules are written
 * in the reference's order (first matching branch wins) so that they can be compared line
 * by line; only the branches that can fire for the file types of slm_ftype are kept.
 * Thread-safety: a chooser is single-threaded; everything else here is pure.
 * Non-goals: the IQ mixtures, MoE (n_expert) and Falcon rules, the 70B attn_v rule.
 */
#include "quantize/quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- file types ---------------------------------------------------------------------------- */

typedef struct ftype_info {
    const char *name;   /* the reference tool's spelling */
    slm_ftype ftype;
    slm_type type;      /* default type of the weights */
} ftype_info;

/* Aliases first resolve to the same ftype; the first entry of an ftype is its name. */
static const ftype_info ftype_table[] = {
    {"Q4_0", SLM_FTYPE_MOSTLY_Q4_0, SLM_TYPE_Q4_0},
    {"Q4_1", SLM_FTYPE_MOSTLY_Q4_1, SLM_TYPE_Q4_1},
    {"Q5_0", SLM_FTYPE_MOSTLY_Q5_0, SLM_TYPE_Q5_0},
    {"Q5_1", SLM_FTYPE_MOSTLY_Q5_1, SLM_TYPE_Q5_1},
    {"Q8_0", SLM_FTYPE_MOSTLY_Q8_0, SLM_TYPE_Q8_0},
    {"Q2_K", SLM_FTYPE_MOSTLY_Q2_K, SLM_TYPE_Q2_K},
    {"Q3_K_S", SLM_FTYPE_MOSTLY_Q3_K_S, SLM_TYPE_Q3_K},
    {"Q3_K_M", SLM_FTYPE_MOSTLY_Q3_K_M, SLM_TYPE_Q3_K},
    {"Q3_K", SLM_FTYPE_MOSTLY_Q3_K_M, SLM_TYPE_Q3_K},
    {"Q3_K_L", SLM_FTYPE_MOSTLY_Q3_K_L, SLM_TYPE_Q3_K},
    {"Q4_K_S", SLM_FTYPE_MOSTLY_Q4_K_S, SLM_TYPE_Q4_K},
    {"Q4_K_M", SLM_FTYPE_MOSTLY_Q4_K_M, SLM_TYPE_Q4_K},
    {"Q4_K", SLM_FTYPE_MOSTLY_Q4_K_M, SLM_TYPE_Q4_K},
    {"Q5_K_S", SLM_FTYPE_MOSTLY_Q5_K_S, SLM_TYPE_Q5_K},
    {"Q5_K_M", SLM_FTYPE_MOSTLY_Q5_K_M, SLM_TYPE_Q5_K},
    {"Q5_K", SLM_FTYPE_MOSTLY_Q5_K_M, SLM_TYPE_Q5_K},
    {"Q6_K", SLM_FTYPE_MOSTLY_Q6_K, SLM_TYPE_Q6_K},
    {"F16", SLM_FTYPE_MOSTLY_F16, SLM_TYPE_F16},
    {"BF16", SLM_FTYPE_MOSTLY_BF16, SLM_TYPE_BF16},
    {"F32", SLM_FTYPE_ALL_F32, SLM_TYPE_F32},
};
#define N_FTYPES (sizeof ftype_table / sizeof ftype_table[0])

static const ftype_info *ftype_find(slm_ftype f) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftype_table[i].ftype == f) return &ftype_table[i];
    return NULL;
}

bool slm_quantize_ftype_from_name(const char *name, slm_ftype *out) {
    for (size_t i = 0; name && i < N_FTYPES; i++)
        if (!strcasecmp(name, ftype_table[i].name)) {
            *out = ftype_table[i].ftype;
            return true;
        }
    return false;
}

const char *slm_quantize_ftype_name(slm_ftype ftype) {
    const ftype_info *f = ftype_find(ftype);
    return f ? f->name : "unknown";
}

slm_type slm_quantize_ftype_default_type(slm_ftype ftype) {
    const ftype_info *f = ftype_find(ftype);
    return f ? f->type : SLM_TYPE_F32;
}

const char *slm_quantize_ftype_list(void) {
    return "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M (= Q3_K), Q3_K_L, Q4_K_S, Q4_K_M (= Q4_K), "
           "Q5_K_S, Q5_K_M (= Q5_K), Q6_K, F16, BF16, F32";
}

/* ---- order ------------------------------------------------------------------------------------ */

/* Layer of a "blk.N." name, or -1 (the reference's weight_name_comparer). */
static long name_layer(const char *s) {
    if (strncmp(s, "blk.", 4)) return -1;
    char *end;
    long v = strtol(s + 4, &end, 10);
    return end != s + 4 && *end == '.' ? v : -1;
}

void slm_quantize_order(const char *const *names, size_t n, size_t *idx) {
    for (size_t i = 0; i < n; i++) idx[i] = i;
    /* Insertion sort (tensor counts are small, ~hundreds): reentrant, unlike qsort with a
     * comparator that would need the names through a global. */
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0) {
            const char *x = names[idx[j - 1]], *y = names[v];
            long lx = name_layer(x), ly = name_layer(y);
            int c = lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
            if (c <= 0) break;
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* ---- which tensors are quantized ------------------------------------------------------------ */

/* Substrings that keep a 2-D weight in its type (the reference's list, for the
 * architectures it names: expert gates, positional tables, SSM and RWKV small weights). */
static const char *const keep_substrings[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d", "attn_rel_b.weight", "time_mix_first.weight",
    "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
};
static const char *const keep_names[] = {"position_embd.weight", "token_types.weight"};

bool slm_quantize_wanted(const char *name, uint32_t n_dims) {
    if (n_dims < 2) return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight")) return false;
    for (size_t i = 0; i < sizeof keep_substrings / sizeof keep_substrings[0]; i++)
        if (strstr(name, keep_substrings[i])) return false;
    for (size_t i = 0; i < sizeof keep_names / sizeof keep_names[0]; i++)
        if (!strcmp(name, keep_names[i])) return false;
    return true;
}

/* ---- the mixture rules ------------------------------------------------------------------------ */

/* Layers that get more bits in the _M mixtures: the first and last eighth, and every third
 * layer in between. */
static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* The mixture's choice for one quantized tensor (llama_tensor_get_type without the
 * fallback), starting from t = the ftype's default type. */
static slm_type mixture_type(slm_quantize_chooser *c, const char *name, const int64_t *ne, slm_type t) {
    const slm_ftype f = c->ftype;
    if (!strcmp(name, "output.weight") || (!c->has_output && !strcmp(name, "token_embd.weight"))) {
        /* build 4748 tests the row length against 256 whatever the type */
        if (ne[0] % SLM_QK_K != 0) t = SLM_TYPE_Q8_0;
        else if (t != SLM_TYPE_Q8_0) t = SLM_TYPE_Q6_K;
    } else if (!strcmp(name, "token_embd.weight")) {
        /* only the IQ/TQ mixtures change it */
    } else if (strstr(name, "attn_v.weight")) {
        if (f == SLM_FTYPE_MOSTLY_Q2_K) t = c->n_gqa >= 4 ? SLM_TYPE_Q4_K : SLM_TYPE_Q3_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_M) t = c->i_attn_v < 2 ? SLM_TYPE_Q5_K : SLM_TYPE_Q4_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_L) t = SLM_TYPE_Q5_K;
        else if ((f == SLM_FTYPE_MOSTLY_Q4_K_M || f == SLM_FTYPE_MOSTLY_Q5_K_M) && use_more_bits(c->i_attn_v, c->n_attn_v))
            t = SLM_TYPE_Q6_K;
        else if (f == SLM_FTYPE_MOSTLY_Q4_K_S && c->i_attn_v < 4) t = SLM_TYPE_Q5_K;
        c->i_attn_v++;
    } else if (strstr(name, "attn_k.weight") || strstr(name, "attn_q.weight")) {
        /* only the IQ3 mixtures change them */
    } else if (strstr(name, "ffn_down")) {
        const int i = c->i_ffn_down, n = c->n_layer;
        if (f == SLM_FTYPE_MOSTLY_Q2_K) t = SLM_TYPE_Q3_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_M) t = i < n / 16 ? SLM_TYPE_Q5_K : SLM_TYPE_Q4_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_L) t = SLM_TYPE_Q5_K;
        else if (f == SLM_FTYPE_MOSTLY_Q4_K_M) {
            if (use_more_bits(i, n)) t = SLM_TYPE_Q6_K;
        } else if (f == SLM_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i, n)) t = SLM_TYPE_Q6_K;
        else if (f == SLM_FTYPE_MOSTLY_Q4_K_S && i < n / 8) t = SLM_TYPE_Q5_K;
        c->i_ffn_down++;
    } else if (strstr(name, "attn_output.weight")) {
        if (f == SLM_FTYPE_MOSTLY_Q2_K) t = SLM_TYPE_Q3_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_M) t = SLM_TYPE_Q4_K;
        else if (f == SLM_FTYPE_MOSTLY_Q3_K_L) t = SLM_TYPE_Q5_K;
    } else if (strstr(name, "attn_qkv.weight")) {
        if (f == SLM_FTYPE_MOSTLY_Q3_K_M || f == SLM_FTYPE_MOSTLY_Q3_K_L) t = SLM_TYPE_Q4_K;
        else if (f == SLM_FTYPE_MOSTLY_Q4_K_M) t = SLM_TYPE_Q5_K;
        else if (f == SLM_FTYPE_MOSTLY_Q5_K_M) t = SLM_TYPE_Q6_K;
    }
    return t;
}

/* A type for rows of nx elements when t's blocks do not divide them (the reference's
 * fallback for K types; F16 when nothing divides, which the reference does for K types and
 * slmesh extends to the 32-blocks instead of failing). */
static slm_type fallback_type(slm_quantize_chooser *c, int64_t nx, slm_type t) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    if (nx % tr->block_size == 0) return t;
    c->n_fallback++;
    slm_type f = SLM_TYPE_F16;
    switch (t) {
    case SLM_TYPE_Q2_K:
    case SLM_TYPE_Q3_K:
    case SLM_TYPE_IQ4_XS: f = SLM_TYPE_IQ4_NL; break;
    case SLM_TYPE_Q4_K: f = SLM_TYPE_Q5_0; break;
    case SLM_TYPE_Q5_K: f = SLM_TYPE_Q5_1; break;
    case SLM_TYPE_Q6_K: f = SLM_TYPE_Q8_0; break;
    default: break;
    }
    if (nx % slm_type_traits_of(f)->block_size != 0) f = SLM_TYPE_F16;
    return f;
}

slm_type slm_quantize_choose(slm_quantize_chooser *c, const char *name, uint32_t n_dims, const int64_t *ne,
                             slm_type src_type) {
    if (!slm_quantize_wanted(name, n_dims)) return src_type;
    slm_type t = slm_quantize_ftype_default_type(c->ftype);
    const slm_type_traits *tr = slm_type_traits_of(t);
    if (tr->quantized && !c->pure) t = mixture_type(c, name, ne, t);
    if (tr->quantized) t = fallback_type(c, ne[0], t);
    return t;
}
