/*
 * bench/bandwidth.c: the machine's memory read bandwidth (`slmesh bench --bandwidth`), the
 * bound of token generation: tg <= bandwidth / model bytes.
 *
 * Each pool thread sums its slice of a large buffer as 64-bit words with four independent
 * accumulators (the compiler vectorizes the loop); the sums are kept so that the reads
 * cannot be optimised away. The best of reps passes is reported (the machine is shared).
 * Thread-safety: reentrant. Non-goals: write or copy bandwidth, NUMA placement.
 */
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "core/core.h"
#include "pool/pool.h"

typedef struct bw_job {
    const uint64_t *words;
    size_t n_words;
    uint64_t sums[SLM_POOL_MAX_THREADS];
} bw_job;

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    int64_t r0, r1;
    slm_pool_range((int64_t)(j->n_words / 4), ith, nth, &r0, &r1);
    const uint64_t *w = j->words;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t i = r0 * 4; i < r1 * 4; i += 4) { /* [n_words] -> 4 running sums */
        a += w[i], b += w[i + 1], c += w[i + 2], d += w[i + 3];
    }
    j->sums[ith] = a + b + c + d;
}

slm_status slm_bench_bandwidth(int32_t n_threads, size_t bytes, int32_t reps, double *gbs, char *err) {
    if (bytes < ((size_t)1 << 20) || reps < 1 || reps > SLM_BENCH_MAX_REPS)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "bandwidth: %zu bytes, %d passes", bytes, reps);
    slm_pool *pool = NULL;
    bw_job *j = slm_calloc(1, sizeof *j);
    uint64_t *buf = slm_malloc(bytes);
    slm_status st = SLM_OK;
    if (!j || !buf) {
        st = slm_errf(err, SLM_ERR_NOMEM, "bandwidth buffer of %zu bytes", bytes);
        goto done;
    }
    if ((st = slm_pool_create(n_threads > 0 ? n_threads : slm_pool_default_threads(), &pool, err))) goto done;
    memset(buf, 1, bytes); /* touch every page before timing */
    j->words = buf;
    j->n_words = bytes / sizeof(uint64_t) / 4 * 4;
    double best = 0;
    for (int32_t r = 0; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        slm_pool_run(pool, bw_read, j);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        const double g = (double)(j->n_words * sizeof(uint64_t)) / s / 1e9;
        if (g > best) best = g;
    }
    uint64_t all = 0;
    for (int i = 0; i < SLM_POOL_MAX_THREADS; i++) all += j->sums[i];
    /* every byte is 0x01: the sum is known, which also checks that every word was read */
    if (all != (uint64_t)j->n_words * 0x0101010101010101ull)
        st = slm_errf(err, SLM_ERR_INTERNAL, "bandwidth: the threads did not read the whole buffer");
    *gbs = best;
done:
    slm_pool_destroy(pool);
    slm_free(buf);
    slm_free(j);
    return st;
}
