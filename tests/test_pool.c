/* tests/test_pool.c: barriers inside a pool job (pool/pool.c).
 *
 * Each round every thread writes its slot, waits at the barrier, checks that every slot
 * holds this round's value, and waits again before the next round overwrites them. A
 * barrier that lets a thread through early makes a check see another round's value. */
#include <stdatomic.h>
#include <stdint.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_barrier_rounds)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
