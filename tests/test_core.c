/* tests/test_core.c: status table, error details, checked arithmetic, fault injection. */
#include "testutil.h"

#include <string.h>

#include "core/core.h"

static void test_status_text_complete(void **state) {
    (void)state;
    for (int s = 0; s < SLM_STATUS_COUNT; s++) {
        const char *t = slm_status_str((slm_status)s);
        assert_non_null(t);
        assert_string_not_equal(t, "unknown status");
    }
    assert_string_equal(slm_status_str(SLM_STATUS_COUNT), "unknown status");
    assert_string_equal(slm_status_str((slm_status)-1), "unknown status");
}

static void test_errf(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_errf(err, SLM_ERR_CORRUPT, "bad %s %d", "thing", 7), SLM_ERR_CORRUPT);
    assert_string_equal(err, "bad thing 7");
    assert_int_equal(slm_errf(NULL, SLM_ERR_IO, "ignored"), SLM_ERR_IO);
    char big[2 * SLM_ERR_LEN];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    slm_errf(err, SLM_ERR_LIMIT, "%s", big);
    assert_int_equal(strlen(err), SLM_ERR_LEN - 1);
}

static void test_checked_arith(void **state) {
    (void)state;
    size_t out = 5;
    assert_true(slm_mul_size(3, 4, &out));
    assert_int_equal(out, 12);
    assert_false(slm_mul_size(SIZE_MAX / 2 + 1, 2, &out));
    assert_false(slm_add_size(SIZE_MAX, 1, &out));
    assert_true(slm_add_size(SIZE_MAX - 1, 1, &out));
    assert_true(out == SIZE_MAX);
}

static void test_fault_injection(void **state) {
    (void)state;
    slm_fault_arm(2);
    void *a = slm_malloc(8);
    void *b = slm_malloc(8);
    void *c = slm_malloc(8);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    assert_true(slm_fault_fired());
    slm_free(a);
    slm_free(c);
    slm_fault_arm(0);
    assert_false(slm_fault_fired());
    char *s = slm_strdup("hello");
    assert_string_equal(s, "hello");
    slm_free(s);
    s = slm_strndup("hello", 3);
    assert_string_equal(s, "hel");
    slm_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_text_complete),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_checked_arith),
        cmocka_unit_test(test_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
