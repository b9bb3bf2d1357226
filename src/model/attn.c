/*
 * model/attn.c: causal self-attention over the KV cache (see attn.h for the contract), tiled
 * with an online softmax (the flash-attention scheme on a CPU):
 *
 *   tile  = up to tile_tokens consecutive tokens of one sequence x the query heads of one KV
 *           head (GQA), with the list of cells its tokens see in (position, cell) order, of
 *           which each token sees a prefix (always, for tokens of one sequence);
 *   block = 64 consecutive entries [64k, 64k + 64) of that list, K and V converted to f32
 *           once per tile (K transposed, V as rows);
 *   per query row r (a token t and head h) and block, over the cells t sees in it:
 *       s[c]  = (q_r / sqrt(hd)) . k_c, -inf for the cells t does not see   (kern->scores)
 *       m'    = max(m, max s);  alpha = e^(m - m')
 *       l     = l alpha + sum_c e^(s[c] - m')                                 (kern->exp_sum)
 *       acc   = acc alpha + sum_c e^(s[c] - m') v_c                           (kern->pv)
 *   out_r = acc / l (0 when t sees no cell).
 * A row's blocks are the 64-cell chunks of ITS OWN list of visible cells in (position, cell)
 * order, so its arithmetic depends only on its query and the (position, K, V) it sees, never
 * on the other rows of its tile, the tile size, other sequences' cells, where in the cache
 * the cells are, or the thread count: a batched prompt equals token-by-token decoding bit
 * for bit, and a sequence gives the same bits alone or batched with others, in a fresh or a
 * fragmented cache. A tile's list is built in cell order, which is already (position, cell)
 * order unless the cache is fragmented; then it is sorted. Tokens of several sequences are
 * split into runs of one sequence (one token each if a run's lists still are not prefixes,
 * which only repeated positions could cause).
 * Unlike the reference's non-flash path, q stays f32 (not rounded to F16) and the softmax
 * weights are not rounded to F16 before multiplying V; both only add precision (the
 * reference's F32-KV variant is within the acceptance tolerances, and so is this).
 *
 * Work split: with enough tiles, whole tiles. The forward pass passes a counter: the tiles
 * are claimed from it longest first (from the last tile, whose tokens see the most cells),
 * a thread taking the next one when it is free, so the step ends together whatever the
 * cores do (a split of estimated work left ~2% of a SmolLM2 prompt waiting after
 * attention). Without one (tests, benchmarks), tiles go round-robin. With few tiles
 * (decode, small batches), the (tile, KV head, query head) rows are cut into contiguous
 * ranges.
 * Scratch per thread: one block of K and V in f32, the tile's scaled queries, accumulators,
 * maxima and sums, the scores of a block for every row of the tile, and the tile's cell
 * list. Per block, the kernels take a run of rows at a time (scores for all, then pv for
 * all), so that the AVX2 set can block rows in registers and only one of K and V is being
 * read at a time (a block's K and V for head_dim 64 are 16 KiB each, an L1 is 32 KiB).
 * Thread-safety: thread ith uses only scratch ith. Non-goals: splitting one row's cells
 * across threads (flash-decoding), which would change a row's arithmetic with the split.
 */
#include "model/attn.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/core.h"
#include "model/attn_kern.h"
#include "model/vexp.h"
#include "pool/pool.h"
#include "quant/kernels.h"

/* Query rows per tile (tokens x heads of a KV head): enough that converting a block is
 * small next to the rows' work on it (one conversion per ~60 rows), few enough that the
 * rows' queries, scores and accumulators (60 x (2 head_dim + 64) floats) stay in L2 while
 * the block stays in L1 (the kernels read one of K and V at a time, 16 KiB for head_dim
 * 64). */
#define TILE_ROWS 64
/* Tokens per tile at most (a token set is a uint32_t). */
#define TILE_TOKENS_MAX 32
/* Tiles per thread below which rows are split instead of whole tiles. */
#define MIN_TILES_PER_THREAD 2
/* Cells a block is converted in (the kernels' vector width): a partly used block converts
 * its entries rounded up to this. */
#define KERN_CELLS 8
/* Each thread's scratch starts at a multiple of this many floats (64 bytes: its own cache
 * lines). */
#define PER_THREAD_ALIGN 16

typedef struct attn_ws {  /* one thread's scratch, all inside slm_attn.mem */
    uint64_t *list;       /* [n_cells] the cells a tile's tokens see: position << 32 | cell */
    float *kt;            /* [head_dim][BLOCK] K of a block, transposed */
    float *vt;            /* [BLOCK][head_dim] V of a block */
    float *s;             /* [tile rows][BLOCK] the rows' scores of a block, then weights */
    float *row;           /* [head_dim] a non-F16 row converted to f32 */
    float *qs;            /* [tile rows][head_dim] scaled queries */
    float *acc;           /* [tile rows][head_dim] weighted sums */
    float *m, *l;         /* [tile rows] running maxima and sums */
    float *bmax, *alpha;  /* [tile rows] a block's maxima and rescaling factors */
    uint64_t *vis;        /* [tile rows] the cells of a block each row sees */
} attn_ws;

struct slm_attn {
    int n_threads;
    int64_t n_cells;      /* cells the scratch is sized for */
    int64_t head_dim;
    int32_t tile_tokens;  /* tokens per tile */
    int64_t tile_rows;    /* tile_tokens x query heads per KV head */
    attn_ws *ws;          /* [n_threads], owned */
    float *mem;           /* every thread's buffers, owned */
    size_t bytes;
};

/* ---- scratch ------------------------------------------------------------------------------ */

slm_status slm_attn_create(const slm_hparams *hp, int64_t n_cells, slm_type kv_type, int n_threads, slm_attn **out,
                           char *err) {
    (void)kv_type; /* every cache type goes through the same f32 blocks */
    *out = NULL;
    if (n_threads < 1 || n_cells < 1 || n_cells > SLM_KV_MAX_CELLS || hp->head_dim < 1 || hp->n_head_kv < 1 ||
        hp->n_head % hp->n_head_kv)
        return slm_errf(err, SLM_ERR_RANGE, "attention shape");
    slm_attn *a = slm_calloc(1, sizeof *a);
    if (!a) return slm_errf(err, SLM_ERR_NOMEM, "attention scratch");
    const int64_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    a->n_threads = n_threads;
    a->n_cells = n_cells;
    a->head_dim = hd;
    a->tile_tokens = group >= TILE_ROWS ? 1 : (int32_t)(TILE_ROWS / group);
    if (a->tile_tokens > TILE_TOKENS_MAX) a->tile_tokens = TILE_TOKENS_MAX;
    a->tile_rows = a->tile_tokens * group;
    /* floats per thread: list and vis (8 bytes an entry: 2 floats), kt, vt, s, row, qs, acc,
     * m, l, bmax, alpha */
    size_t blk, tile, srows, per, total, bytes;
    if (!slm_mul_size((size_t)hd, SLM_ATTN_BLOCK, &blk) || !slm_mul_size((size_t)a->tile_rows, (size_t)hd, &tile) ||
        !slm_mul_size((size_t)a->tile_rows, SLM_ATTN_BLOCK, &srows))
        goto fail;
    per = 2 * blk + (size_t)hd + 6 * (size_t)a->tile_rows;
    if (!slm_add_size(per, 2 * tile, &per) || !slm_add_size(per, srows, &per) ||
        !slm_add_size(per, 2 * (size_t)n_cells + PER_THREAD_ALIGN - 1, &per) ||
        !slm_mul_size(per, (size_t)n_threads, &total) || !slm_mul_size(total, sizeof(float), &bytes))
        goto fail;
    per -= per % PER_THREAD_ALIGN;
    a->ws = slm_calloc((size_t)n_threads, sizeof *a->ws);
    a->mem = slm_calloc(1, bytes); /* zeros: the unloaded tail of a block is finite (attn_kern.h) */
    if (!a->ws || !a->mem) goto fail;
    for (int i = 0; i < n_threads; i++) {
        attn_ws *w = &a->ws[i];
        float *p = a->mem + (size_t)i * per;
        w->list = (uint64_t *)(void *)p; /* first: 64-byte aligned as each thread's part */
        p += 2 * n_cells;
        w->vis = (uint64_t *)(void *)p; /* 8-byte aligned: after list's 8-byte entries */
        p += 2 * a->tile_rows;
        w->kt = p, p += blk;
        w->vt = p, p += blk;
        w->s = p, p += srows;
        w->row = p, p += hd;
        w->qs = p, p += tile;
        w->acc = p, p += tile;
        w->m = p, p += a->tile_rows;
        w->l = p, p += a->tile_rows;
        w->bmax = p, p += a->tile_rows;
        w->alpha = p;
    }
    a->bytes = bytes + (size_t)n_threads * sizeof *a->ws;
    *out = a;
    return SLM_OK;
fail:
    slm_attn_destroy(a);
    return slm_errf(err, SLM_ERR_NOMEM, "attention scratch for %lld cells", (long long)n_cells);
}

void slm_attn_destroy(slm_attn *a) {
    if (!a) return;
    slm_free(a->ws);
    slm_free(a->mem);
    slm_free(a);
}

size_t slm_attn_bytes(const slm_attn *a) { return a->bytes; }

int64_t slm_attn_work(const slm_attn_args *g) {
    return (int64_t)g->n * g->hp->n_head * slm_kv_used_end(g->kv) * g->hp->head_dim * 2;
}

/* ---- one tile ------------------------------------------------------------------------------ */

#define LIST_CELL(e) ((int64_t)((e) & 0xFFFFFFFFu)) /* a list entry's cell */

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* cnt[i] = how many entries of list[0..n) token t0 + i sees; false unless each sees exactly
 * the first cnt[i]. */
static bool count_prefixes(const slm_attn_args *g, int32_t t0, int32_t nt, const uint64_t *list, int64_t n,
                           int64_t *cnt) {
    const uint64_t *masks = slm_kv_masks(g->kv);
    const int32_t *cpos = slm_kv_positions(g->kv);
    for (int32_t i = 0; i < nt; i++) {
        const int32_t s = g->seq[t0 + i], p = g->pos[t0 + i];
        int64_t k = 0;
        while (k < n && slm_kv_visible(masks, cpos, LIST_CELL(list[k]), s, p)) k++;
        cnt[i] = k;
        for (; k < n; k++)
            if (slm_kv_visible(masks, cpos, LIST_CELL(list[k]), s, p)) return false;
    }
    return true;
}

/* The list of tokens [t0, t0 + nt): list[0..*n) the cells some of them sees as position << 32
 * | cell, in increasing order (= (position, cell) order), and cnt[i] how many token t0 + i
 * sees. False when some token's cells are not the first cnt[i] of the list: the tile must
 * be split. */
static bool tile_list(const slm_attn_args *g, int32_t t0, int32_t nt, uint64_t *list, int64_t *n_list, int64_t *cnt) {
    const uint64_t *masks = slm_kv_masks(g->kv);
    const int32_t *cpos = slm_kv_positions(g->kv);
    const int64_t used_end = slm_kv_used_end(g->kv);
    const uint32_t all = nt == 32 ? ~0u : (1u << nt) - 1; /* bit i: token t0 + i */
    /* one sequence (as run_tokens calls it): a cell of that sequence is seen by every token
     * at or after its position: by all of them below the smallest, by none above the largest */
    bool one_seq = true;
    int32_t pmin = g->pos[t0], pmax = g->pos[t0];
    for (int32_t i = 1; i < nt; i++) {
        one_seq &= g->seq[t0 + i] == g->seq[t0];
        pmin = g->pos[t0 + i] < pmin ? g->pos[t0 + i] : pmin;
        pmax = g->pos[t0 + i] > pmax ? g->pos[t0 + i] : pmax;
    }
    uint32_t gap = 0;     /* bit i: token t0 + i has missed an entry of the list: it may see no later one */
    int64_t n_all = 0;    /* entries every token sees (added to cnt at the end) */
    bool prefix = true, sorted = true;
    for (int32_t i = 0; i < nt; i++) cnt[i] = 0;
    int64_t n = 0;
    for (int64_t c = 0; c < used_end; c++) { /* cell order, then sorted if need be */
        uint32_t seen = 0;                   /* bit i: token t0 + i sees c */
        if (one_seq && (!(masks[c] >> g->seq[t0] & 1) || cpos[c] > pmax)) continue;
        if (one_seq && cpos[c] <= pmin) {
            seen = all;
        } else {
            for (int32_t i = 0; i < nt; i++)
                seen |= (uint32_t)slm_kv_visible(masks, cpos, c, g->seq[t0 + i], g->pos[t0 + i]) << i;
            if (!seen) continue;
        }
        if (seen & gap) prefix = false;
        gap |= all & ~seen;
        if (seen == all) {
            n_all++;
        } else {
            for (int32_t i = 0; i < nt; i++) cnt[i] += seen >> i & 1;
        }
        list[n] = (uint64_t)(uint32_t)cpos[c] << 32 | (uint64_t)c; /* visible cells have pos >= 0 */
        if (n > 0 && list[n] < list[n - 1]) sorted = false;
        n++;
    }
    for (int32_t i = 0; i < nt; i++) cnt[i] += n_all;
    *n_list = n;
    if (sorted) return prefix;
    qsort(list, (size_t)n, sizeof *list, cmp_u64);
    return count_prefixes(g, t0, nt, list, n, cnt);
}

/* K and V of the cells of list[0..nc) (nc <= BLOCK) for KV head hkv into w->kt / w->vt,
 * zeros past nc up to the next multiple of 8 (the rest of the block is not touched: no row
 * sees those cells, see attn_kern.h). */
static void load_block(const slm_attn_args *g, const slm_attn_kern *kern, const uint64_t *list, int64_t nc,
                       int32_t hkv, attn_ws *w) {
    const int64_t hd = g->hp->head_dim;
    const slm_type kvt = slm_kv_type(g->kv);
    const slm_type_traits *tr = slm_type_traits_of(kvt);
    const size_t head_off = (size_t)(hkv * hd / tr->block_size) * tr->type_size; /* bytes into a row */
    const int nc8 = (int)(nc + KERN_CELLS - 1) / KERN_CELLS * KERN_CELLS; /* cells to convert */
    const void *krows[SLM_ATTN_BLOCK], *vrows[SLM_ATTN_BLOCK];
    for (int64_t c = 0; c < nc8; c++) {
        krows[c] = c < nc ? (const uint8_t *)slm_kv_k_row(g->kv, g->il, LIST_CELL(list[c])) + head_off : NULL;
        vrows[c] = c < nc ? (const uint8_t *)slm_kv_v_row(g->kv, g->il, LIST_CELL(list[c])) + head_off : NULL;
    }
    if (kvt == SLM_TYPE_F16) {
        kern->load_kt_f16((const uint16_t *const *)krows, nc8, hd, w->kt);
        kern->load_v_f16((const uint16_t *const *)vrows, nc8, hd, w->vt);
        return;
    }
    const slm_to_float_fn to_float = slm_quant_kernels()->to_float[kvt]; /* exact in every set */
    for (int c = 0; c < nc8; c++) {
        float *vr = w->vt + c * hd;
        if (!krows[c]) {
            for (int64_t d = 0; d < hd; d++) w->kt[d * SLM_ATTN_BLOCK + c] = 0.0f, vr[d] = 0.0f;
            continue;
        }
        to_float(krows[c], w->row, hd);
        for (int64_t d = 0; d < hd; d++) w->kt[d * SLM_ATTN_BLOCK + c] = w->row[d];
        to_float(vrows[c], vr, hd);
    }
}

/* Tokens [t0, t0 + nt) x query heads [h0, h1) of KV head hkv (h relative to the group),
 * over the tile's list (tile_list: w->list[0..n_cells), cnt). Block k is entries
 * [64k, 64k + 64) of the list; a token sees a prefix of it. */
static void run_tile(const slm_attn_args *g, const slm_attn_kern *kern, attn_ws *w, int64_t n_cells,
                     const int64_t *cnt, int32_t t0, int32_t nt, int32_t hkv, int32_t h0, int32_t h1) {
    const slm_hparams *hp = g->hp;
    const int64_t hd = hp->head_dim, nq = (int64_t)hp->n_head * hd, group = hp->n_head / hp->n_head_kv;
    const int32_t nh = h1 - h0;
    const float scale = 1.0f / sqrtf((float)hd);
    /* row r = token t0 + r / nh, query head hkv * group + h0 + r % nh */
    for (int32_t r = 0; r < nt * nh; r++) {
        const float *q = g->q + (size_t)((t0 + r / nh) * nq + (hkv * group + h0 + r % nh) * hd);
        for (int64_t d = 0; d < hd; d++) w->qs[r * hd + d] = q[d] * scale, w->acc[r * hd + d] = 0.0f;
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
    }
    for (int64_t c0 = 0; c0 < n_cells; c0 += SLM_ATTN_BLOCK) {
        load_block(g, kern, w->list + c0, n_cells - c0 < SLM_ATTN_BLOCK ? n_cells - c0 : SLM_ATTN_BLOCK, hkv, w);
        for (int32_t r0 = 0, r1; r0 < nt * nh; r0 = r1) {
            /* rows [r0, r1): a run of rows whose token sees some cell of the block, one call
             * of each kernel (scores, then exp_sum row by row, then pv) */
            for (r1 = r0; r1 < nt * nh && cnt[r1 / nh] > c0; r1++) {
                const int64_t nseen = cnt[r1 / nh] - c0; /* the token sees the first nseen cells */
                w->vis[r1] = nseen >= SLM_ATTN_BLOCK ? ~(uint64_t)0 : ((uint64_t)1 << nseen) - 1;
            }
            if (r1 == r0) {
                r1++; /* a row that sees nothing here */
                continue;
            }
            const int nr = (int)(r1 - r0);
            float *s = w->s + r0 * SLM_ATTN_BLOCK;
            kern->scores(nr, hd, w->qs + r0 * hd, w->kt, w->vis + r0, s, w->bmax + r0);
            for (int32_t r = r0; r < r1; r++) {
                const float m = w->m[r] > w->bmax[r] ? w->m[r] : w->bmax[r];
                const float alpha = w->m[r] == m ? 1.0f : slm_vexp(w->m[r] - m); /* -inf - m: 0 */
                w->l[r] = w->l[r] * alpha + kern->exp_sum(w->s + r * SLM_ATTN_BLOCK, m);
                w->alpha[r] = alpha;
                w->m[r] = m;
            }
            kern->pv(nr, hd, s, w->vt, w->alpha + r0, w->acc + r0 * hd);
        }
    }
    for (int32_t r = 0; r < nt * nh; r++) {
        float *out = g->out + (size_t)((t0 + r / nh) * nq + (hkv * group + h0 + r % nh) * hd);
        const float inv = w->l[r] > 0.0f ? 1.0f / w->l[r] : 0.0f;
        for (int64_t d = 0; d < hd; d++) out[d] = w->acc[r * hd + d] * inv;
    }
}

/* Query heads [r0, r1) (numbered KV head x group + head of the group) of the tokens [a, a +
 * nt) over their list: one run_tile per KV head. */
static void run_heads(const slm_attn_args *g, const slm_attn_kern *kern, attn_ws *w, int64_t n_cells,
                      const int64_t *cnt, int32_t a, int32_t nt, int32_t r0, int32_t r1) {
    const int32_t group = g->hp->n_head / g->hp->n_head_kv;
    for (int32_t hkv = r0 / group; hkv * group < r1; hkv++) {
        const int32_t h0 = r0 > hkv * group ? r0 - hkv * group : 0, h1 = r1 < (hkv + 1) * group ? r1 - hkv * group : group;
        run_tile(g, kern, w, n_cells, cnt, a, nt, hkv, h0, h1);
    }
}

/* Tokens [t0, t0 + nt) x query heads [r0, r1) (as in run_heads): runs of one sequence as
 * tiles, each list built once for all the heads, token by token for a run whose lists are
 * not prefixes of one. */
static void run_tokens(const slm_attn_args *g, const slm_attn_kern *kern, attn_ws *w, int32_t t0, int32_t nt,
                       int32_t r0, int32_t r1) {
    int64_t cnt[TILE_TOKENS_MAX], n_cells;
    for (int32_t a = t0, b; a < t0 + nt; a = b) {
        for (b = a + 1; b < t0 + nt && g->seq[b] == g->seq[a]; b++) {}
        if (tile_list(g, a, b - a, w->list, &n_cells, cnt)) {
            run_heads(g, kern, w, n_cells, cnt, a, b - a, r0, r1);
            continue;
        }
        for (int32_t t = a; t < b; t++) {
            tile_list(g, t, 1, w->list, &n_cells, cnt); /* one token: always a prefix */
            run_heads(g, kern, w, n_cells, cnt, t, 1, r0, r1);
        }
    }
}

/* ---- the work split -------------------------------------------------------------------------- */

/* Rows (tile, query head) are split across threads when there are fewer tiles than this. */
static bool rows_split(const slm_attn *a, const slm_attn_args *g, int nth) {
    const int32_t n_tiles = (g->n + a->tile_tokens - 1) / a->tile_tokens;
    return n_tiles < MIN_TILES_PER_THREAD * nth;
}

#define PREFETCH_LINE 64 /* bytes a prefetch brings */

void slm_attn_prefetch(const slm_attn *a, const slm_attn_args *g, int ith, int nth) {
    if (!rows_split(a, g, nth)) return;
    const slm_hparams *hp = g->hp;
    const int32_t tt = a->tile_tokens, n_kv = hp->n_head_kv, group = hp->n_head / hp->n_head_kv;
    const int64_t per_tile = (int64_t)n_kv * group;
    int64_t r0, r1;
    slm_pool_range((int64_t)((g->n + tt - 1) / tt) * per_tile, ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    /* the KV heads of rows [r0, r1): all of them when the range wraps into another tile */
    int32_t k0 = (int32_t)(r0 % per_tile / group), k1 = (int32_t)((r1 - 1) % per_tile / group) + 1;
    if (r1 - r0 >= per_tile || k1 <= k0) k0 = 0, k1 = n_kv;
    const slm_type_traits *tr = slm_type_traits_of(slm_kv_type(g->kv));
    const size_t head_bytes = (size_t)(hp->head_dim / tr->block_size) * tr->type_size;
    const int64_t end = slm_kv_used_end(g->kv);
    const int64_t n_cells = end < SLM_ATTN_PREFETCH_CELLS ? end : SLM_ATTN_PREFETCH_CELLS;
    for (int64_t c = 0; c < n_cells; c++) {
        const uint8_t *k = (const uint8_t *)slm_kv_k_row(g->kv, g->il, c) + (size_t)k0 * head_bytes;
        const uint8_t *v = (const uint8_t *)slm_kv_v_row(g->kv, g->il, c) + (size_t)k0 * head_bytes;
        for (size_t b = 0; b < (size_t)(k1 - k0) * head_bytes; b += PREFETCH_LINE)
            __builtin_prefetch(k + b, 0, 2), __builtin_prefetch(v + b, 0, 2);
    }
}

bool slm_attn_token_heads(const slm_attn *a, const slm_attn_args *g, int ith, int nth, int32_t *h0, int32_t *h1) {
    if (g->n != 1 || !rows_split(a, g, nth)) return false;
    int64_t r0, r1; /* slm_attn_run_isa's rows of one tile: its query heads */
    slm_pool_range(g->hp->n_head, ith, nth, &r0, &r1);
    *h0 = (int32_t)r0, *h1 = (int32_t)r1;
    return true;
}

void slm_attn_run(slm_attn *a, const slm_attn_args *g, int ith, int nth) {
    slm_attn_run_isa(a, g, slm_quant_kernels()->isa, ith, nth);
}

void slm_attn_run_isa(slm_attn *a, const slm_attn_args *g, slm_quant_isa isa, int ith, int nth) {
    const slm_hparams *hp = g->hp;
    const slm_quant_isa runnable = slm_quant_kernels_isa(isa) ? isa : SLM_QUANT_ISA_SCALAR;
    const slm_attn_kern *kern = slm_attn_kern_pick(runnable, hp->head_dim);
    attn_ws *w = &a->ws[ith];
    const int32_t tt = a->tile_tokens, n_kv = hp->n_head_kv, group = hp->n_head / hp->n_head_kv;
    const int32_t n_tiles = (g->n + tt - 1) / tt;
    if (!rows_split(a, g, nth)) {
        if (g->claim) { /* longest first, each tile to whichever thread is free first */
            for (int32_t c; (c = atomic_fetch_add_explicit(g->claim, 1, memory_order_relaxed)) < n_tiles;) {
                const int32_t ti = n_tiles - 1 - c, t0 = ti * tt, nt = g->n - t0 < tt ? g->n - t0 : tt;
                run_tokens(g, kern, w, t0, nt, 0, n_kv * group);
            }
            return;
        }
        for (int32_t ti = ith; ti < n_tiles; ti += nth) { /* round-robin */
            const int32_t t0 = ti * tt, nt = g->n - t0 < tt ? g->n - t0 : tt;
            run_tokens(g, kern, w, t0, nt, 0, n_kv * group);
        }
        return;
    }
    /* rows (tile, query head) in that order, contiguous per thread; a tile's list is built
     * once for its rows on this thread */
    const int64_t per_tile = (int64_t)n_kv * group;
    int64_t r0, r1;
    slm_pool_range((int64_t)n_tiles * per_tile, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1;) {
        const int32_t ti = (int32_t)(r / per_tile), t0 = ti * tt, nt = g->n - t0 < tt ? g->n - t0 : tt;
        const int64_t end = r1 < (ti + 1) * per_tile ? r1 : (ti + 1) * per_tile;
        run_tokens(g, kern, w, t0, nt, (int32_t)(r - ti * per_tile), (int32_t)(end - ti * per_tile));
        r = end;
    }
}
