/*
 * tests/test_reference_logits.c: the acceptance test of the engine against the reference
 * runtime: every file of ../shared/reference/logits is checked with reflogits_check (see
 * tests/reflogits.h for the checks and tolerances).
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflogits.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_reference_logits(void **state) {
    (void)state;
    char dir[1024];
    TU_SHARED_OR_SKIP(dir, "reference/logits");
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    char *names[256];
    int n = 0;
    for (struct dirent *de; (de = readdir(dp)) && n < 256;) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".json")) names[n++] = strdup(de->d_name);
    }
    closedir(dp);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    assert_true(n > 0);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (reflogits_check(tu_shared_dir(), names[i], NULL)) failed++;
        free(names[i]);
    }
    printf("reference logits: %d of %d files pass\n", n - failed, n);
    assert_int_equal(failed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_logits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
