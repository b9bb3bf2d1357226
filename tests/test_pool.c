/* tests/test_pool.c: barriers inside a pool job (pool/pool.c).
 *
 * Each round every thread writes its slot, waits at the barrier, checks that every slot
 * holds this round's value, and waits again before the next round overwrites them. A
 * barrier that lets a thread through early makes a check see another round's value. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

#include "pool/pool.h"

#define ROUNDS 3000
#define MAX_T 4

typedef struct bar_job {
    slm_pool *pool;
    _Atomic int64_t slot[MAX_T];
    _Atomic int bad;     /* checks that saw another round */
    _Atomic int visits;  /* calls of the job function */
} bar_job;

static void bar_run(void *arg, int ith, int nth) {
    bar_job *j = arg;
    atomic_fetch_add(&j->visits, 1);
    for (int64_t r = 1; r <= ROUNDS; r++) {
        atomic_store_explicit(&j->slot[ith], r, memory_order_relaxed);
        slm_pool_barrier(j->pool);
        for (int t = 0; t < nth; t++)
            if (atomic_load_explicit(&j->slot[t], memory_order_relaxed) != r) atomic_fetch_add(&j->bad, 1);
        slm_pool_barrier(j->pool);
    }
}

static void test_barrier_rounds(void **state) {
    (void)state;
    for (int nt = 1; nt <= MAX_T; nt++) {
        slm_pool *p = NULL;
        assert_int_equal(slm_pool_create(nt, &p, NULL), SLM_OK);
        for (int job = 0; job < 3; job++) { /* barrier state carries over between jobs */
            bar_job j = {.pool = p};
            slm_pool_run(p, bar_run, &j);
            assert_int_equal(atomic_load(&j.bad), 0);
            assert_int_equal(atomic_load(&j.visits), nt);
        }
        slm_pool_destroy(p);
    }
    bar_job j = {.pool = NULL}; /* NULL pool: one thread, barriers return at once */
    slm_pool_run(NULL, bar_run, &j);
    assert_int_equal(atomic_load(&j.bad), 0);
}

/* slm_pool_claim: in every step between two barriers, the threads' claims of pieces of a
 * step's work cover each unit exactly once (the counter restarts at 0 each step, in every
 * job). Step s has 50 + s % 7 units claimed 3 at a time. */
#define CLAIM_STEPS 400
#define CLAIM_MAX_UNITS 64
typedef struct claim_job {
    slm_pool *pool;
    _Atomic int hits[CLAIM_STEPS][CLAIM_MAX_UNITS];
} claim_job;

static void claim_run(void *arg, int ith, int nth) {
    claim_job *j = arg;
    (void)ith, (void)nth;
    for (int s = 0; s < CLAIM_STEPS; s++) {
        const int64_t units = 50 + s % 7;
        for (int64_t a; (a = slm_pool_claim(j->pool, 3)) < units;)
            for (int64_t u = a; u < a + 3 && u < units; u++) atomic_fetch_add(&j->hits[s][u], 1);
        slm_pool_barrier(j->pool);
    }
}

static void test_claim(void **state) {
    (void)state;
    static claim_job j; /* large: not on the stack */
    for (int nt = 2; nt <= MAX_T; nt++) {
        slm_pool *p = NULL;
        assert_int_equal(slm_pool_create(nt, &p, NULL), SLM_OK);
        for (int job = 0; job < 2; job++) {
            memset(&j, 0, sizeof j);
            j.pool = p;
            slm_pool_run(p, claim_run, &j);
            for (int s = 0; s < CLAIM_STEPS; s++)
                for (int u = 0; u < CLAIM_MAX_UNITS; u++) assert_int_equal(atomic_load(&j.hits[s][u]), u < 50 + s % 7);
        }
        slm_pool_destroy(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_barrier_rounds), cmocka_unit_test(test_claim)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
