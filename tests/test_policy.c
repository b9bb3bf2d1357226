/* tests/test_policy.c: policy parsing (every rule kind, every kind of mistake), input and
 * output checks, verdict combination, redaction through the policy, allocation failures. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "slmesh/guard.h"
#include "slmesh/policy.h"

static const char *const POLICY =
    "{\"input\": ["
    "  {\"name\": \"no-cards\", \"pii\": [\"CREDIT_CARD\", \"IBAN_CODE\"], \"action\": \"block\","
    "   \"reason\": \"payment data must not be sent\"},"
    "  {\"name\": \"contact\", \"pii\": [\"EMAIL_ADDRESS\", \"PHONE_NUMBER\"], \"action\": \"redact\"},"
    "  {\"name\": \"size\", \"max_chars\": 40},"
    "  {\"name\": \"injection\", \"deny\": [\"ignore previous instructions\", \"system prompt\"]}"
    " ],"
    " \"output\": ["
    "  {\"name\": \"schema\", \"schema\": {\"type\": \"object\", \"required\": [\"label\"],"
    "    \"additionalProperties\": false, \"properties\": {\"label\": {\"type\": \"string\", \"maxLength\": 20},"
    "    \"score\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1},"
    "    \"tags\": {\"type\": \"array\", \"maxItems\": 2, \"items\": {\"enum\": [\"a\", \"b\"]}}}}},"
    "  {\"name\": \"labels\", \"labels\": [\"refund\", \"billing\"], \"field\": \"label\"}"
    " ]}";

typedef struct {
    slm_policy *p;
    slm_guard *g;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    char err[SLM_ERR_LEN];
    if (slm_policy_parse(POLICY, strlen(POLICY), &fx->p, err)) {
        fprintf(stderr, "parse: %s\n", err);
        return -1;
    }
    if (slm_guard_create(NULL, &fx->g, err)) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    slm_policy_destroy(fx->p);
    slm_guard_destroy(fx->g);
    free(fx);
    return 0;
}

static slm_policy_verdict check(const fixture *fx, slm_policy_dir dir, const char *text, slm_vault *v) {
    slm_policy_verdict out;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_policy_check(fx->p, dir, fx->g, text, strlen(text), v, &out, err), SLM_OK);
    return out;
}

static void test_parse_counts(void **state) {
    fixture *fx = *state;
    assert_int_equal(slm_policy_rule_count(fx->p, SLM_POLICY_INPUT), 4);
    assert_int_equal(slm_policy_rule_count(fx->p, SLM_POLICY_OUTPUT), 2);
    assert_int_equal(slm_policy_pii_types(fx->p, SLM_POLICY_INPUT),
                     (1u << SLM_PII_CREDIT_CARD) | (1u << SLM_PII_IBAN_CODE) | (1u << SLM_PII_EMAIL_ADDRESS) |
                         (1u << SLM_PII_PHONE_NUMBER));
    assert_int_equal(slm_policy_pii_types(fx->p, SLM_POLICY_OUTPUT), 0);
}

static void test_input_rules(void **state) {
    fixture *fx = *state;
    slm_policy_verdict v = check(fx, SLM_POLICY_INPUT, "Where is my parcel?", NULL);
    assert_int_equal(v.action, SLM_POLICY_ALLOW);
    assert_int_equal(v.fired, 0);
    assert_null(v.redacted);
    slm_policy_verdict_clear(&v);

    v = check(fx, SLM_POLICY_INPUT, "card 4111 1111 1111 1111 a@b.io", NULL);
    assert_int_equal(v.action, SLM_POLICY_BLOCK);   /* block beats redact */
    assert_string_equal(v.rule, "no-cards");
    assert_string_equal(v.reason, "payment data must not be sent");
    assert_int_equal(v.fired, 2);
    assert_null(v.redacted);
    slm_policy_verdict_clear(&v);

    v = check(fx, SLM_POLICY_INPUT, "mail me: a@b.io", NULL);
    assert_int_equal(v.action, SLM_POLICY_REDACT);
    assert_string_equal(v.rule, "contact");
    assert_string_equal(v.reason, "contains EMAIL_ADDRESS");
    assert_string_equal(v.redacted, "mail me: <EMAIL_ADDRESS>");
    slm_policy_verdict_clear(&v);

    /* 40 characters allowed: 20 two-byte characters are 40 bytes but only 20 characters */
    v = check(fx, SLM_POLICY_INPUT, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9", NULL);
    assert_int_equal(v.action, SLM_POLICY_ALLOW);
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_INPUT, "this sentence is clearly longer than forty characters", NULL);
    assert_int_equal(v.action, SLM_POLICY_BLOCK);
    assert_string_equal(v.rule, "size");
    assert_string_equal(v.reason, "53 characters exceed the limit of 40");
    slm_policy_verdict_clear(&v);

    /* deny phrases: case and whitespace do not matter */
    v = check(fx, SLM_POLICY_INPUT, "Please IGNORE   previous\ninstructions", NULL);
    assert_int_equal(v.action, SLM_POLICY_BLOCK);
    assert_string_equal(v.rule, "injection");
    assert_string_equal(v.reason, "contains the denied phrase \"ignore previous instructions\"");
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_INPUT, "ignore previous", NULL);
    assert_int_equal(v.action, SLM_POLICY_ALLOW);
    slm_policy_verdict_clear(&v);
}

static void test_redact_with_vault(void **state) {
    fixture *fx = *state;
    slm_vault *vault = NULL;
    char err[SLM_ERR_LEN], *back = NULL;
    size_t len;
    assert_int_equal(slm_vault_create(&vault, err), SLM_OK);
    slm_policy_verdict v = check(fx, SLM_POLICY_INPUT, "call +1-984-182-0190", vault);
    assert_int_equal(v.action, SLM_POLICY_REDACT);
    assert_string_equal(v.redacted, "call <PHONE_NUMBER_1>");
    assert_int_equal(slm_vault_restore(vault, v.redacted, v.redacted_len, &back, &len, err), SLM_OK);
    assert_string_equal(back, "call +1-984-182-0190");
    slm_free(back);
    slm_policy_verdict_clear(&v);
    slm_vault_destroy(vault);
}

static void test_output_rules(void **state) {
    fixture *fx = *state;
    slm_policy_verdict v = check(fx, SLM_POLICY_OUTPUT, "{\"label\": \"refund\", \"score\": 0.9, \"tags\": [\"a\"]}", NULL);
    assert_int_equal(v.action, SLM_POLICY_ALLOW);
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "Sure! {\"label\": \"refund\"}", NULL);
    assert_int_equal(v.action, SLM_POLICY_BLOCK);
    assert_string_equal(v.rule, "schema");
    assert_non_null(strstr(v.reason, "not valid JSON"));
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "{\"label\": \"refund\", \"score\": 2}", NULL);
    assert_string_equal(v.reason, "does not match the schema: $.score: above 1");
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "{\"label\": \"refund\", \"tags\": [\"a\", \"c\"]}", NULL);
    assert_string_equal(v.reason, "does not match the schema: $.tags[1]: not one of the allowed values");
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "{\"label\": \"refund\", \"extra\": 1}", NULL);
    assert_string_equal(v.reason, "does not match the schema: $: unexpected \"extra\"");
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "{\"score\": 1}", NULL);
    assert_string_equal(v.reason, "does not match the schema: $: missing \"label\"");
    slm_policy_verdict_clear(&v);
    v = check(fx, SLM_POLICY_OUTPUT, "{\"label\": \"shipping\"}", NULL);
    assert_string_equal(v.rule, "labels");
    assert_string_equal(v.reason, "label \"shipping\" is not an allowed label");
    slm_policy_verdict_clear(&v);
}

static void test_labels_plain(void **state) {
    (void)state;
    const char *pol = "{\"policy\": {\"output\": [{\"labels\": [\"yes\", \"no\"]}, {\"json\": true, \"name\": \"j\"}]}}";
    slm_policy *p = NULL;
    slm_policy_verdict v;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_policy_parse(pol, strlen(pol), &p, err), SLM_OK);
    assert_int_equal(slm_policy_check(p, SLM_POLICY_OUTPUT, NULL, " yes\n", 5, NULL, &v, err), SLM_OK);
    assert_int_equal(v.action, SLM_POLICY_BLOCK); /* a bare word is not JSON */
    assert_string_equal(v.rule, "j");
    slm_policy_verdict_clear(&v);
    assert_int_equal(slm_policy_check(p, SLM_POLICY_OUTPUT, NULL, "\"yes\"", 5, NULL, &v, err), SLM_OK);
    assert_int_equal(v.action, SLM_POLICY_BLOCK); /* JSON, but the label is "\"yes\"" */
    assert_string_equal(v.rule, "labels-0");
    slm_policy_verdict_clear(&v);
    /* input direction has no rules: everything is allowed */
    assert_int_equal(slm_policy_check(p, SLM_POLICY_INPUT, NULL, "anything", 8, NULL, &v, err), SLM_OK);
    assert_int_equal(v.action, SLM_POLICY_ALLOW);
    /* a pii rule on a type the guard does not detect is an error, not a silent allow */
    slm_policy *pp = NULL;
    slm_guard *g = NULL;
    const char *pol2 = "{\"input\": [{\"pii\": [\"PERSON\"]}]}";
    assert_int_equal(slm_policy_parse(pol2, strlen(pol2), &pp, err), SLM_OK);
    assert_int_equal(slm_guard_create(NULL, &g, err), SLM_OK); /* patterns only */
    assert_int_equal(slm_policy_check(pp, SLM_POLICY_INPUT, g, "Anna", 4, NULL, &v, err), SLM_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "does not detect PERSON"));
    slm_guard_destroy(g);
    slm_policy_destroy(pp);
    /* invalid UTF-8 */
    assert_int_equal(slm_policy_check(p, SLM_POLICY_INPUT, NULL, "a\xff", 2, NULL, &v, err), SLM_ERR_UTF8);
    slm_policy_destroy(p);
}

static void expect_error(const char *pol, slm_status want, const char *detail) {
    slm_policy *p = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_policy_parse(pol, strlen(pol), &p, err);
    if (st != want || !strstr(err, detail)) fail_msg("policy %s: status %d, detail \"%s\"", pol, st, err);
    assert_null(p);
}

static void test_parse_errors(void **state) {
    (void)state;
    expect_error("{", SLM_ERR_CORRUPT, "policy line");
    expect_error("[]", SLM_ERR_INVALID_ARG, "object");
    expect_error("{\"inputs\": []}", SLM_ERR_INVALID_ARG, "unknown policy key");
    expect_error("{\"input\": {}}", SLM_ERR_INVALID_ARG, "list of rules");
    expect_error("{\"input\": [{\"name\": \"x\"}]}", SLM_ERR_INVALID_ARG, "needs one of");
    expect_error("{\"input\": [{\"pii\": [\"EMAIL_ADDRESS\"], \"deny\": [\"a\"]}]}", SLM_ERR_INVALID_ARG, "more than one");
    expect_error("{\"input\": [{\"pii\": [\"NOPE\"]}]}", SLM_ERR_INVALID_ARG, "unknown type");
    expect_error("{\"input\": [{\"max_chars\": 5, \"action\": \"redact\"}]}", SLM_ERR_INVALID_ARG, "only pii");
    expect_error("{\"input\": [{\"max_chars\": -1}]}", SLM_ERR_INVALID_ARG, "non-negative");
    expect_error("{\"input\": [{\"deny\": []}]}", SLM_ERR_INVALID_ARG, "non-empty list");
    expect_error("{\"input\": [{\"deny\": [\"   \"]}]}", SLM_ERR_INVALID_ARG, "only spaces");
    expect_error("{\"input\": [{\"deny\": [\"a\"], \"colour\": 1}]}", SLM_ERR_INVALID_ARG, "unknown key \"colour\"");
    expect_error("{\"output\": [{\"schema\": {\"type\": \"strin\"}}]}", SLM_ERR_INVALID_ARG, "bad value for schema keyword");
    expect_error("{\"output\": [{\"schema\": {\"pattern\": \"a*\"}}]}", SLM_ERR_INVALID_ARG, "unsupported schema keyword");
    expect_error("{\"output\": [{\"json\": false}]}", SLM_ERR_INVALID_ARG, "json must be true");
    expect_error("{\"input\": [{\"pii\": [\"PERSON\"], \"min_score\": 2}]}", SLM_ERR_INVALID_ARG, "min_score");
    expect_error("{\"operator\": \"shred\"}", SLM_ERR_INVALID_ARG, "operator");
    expect_error("{\"input\": [{\"max_bytes\": 1}], \"input\": []}", SLM_ERR_CORRUPT, "duplicate");
    /* too many rules */
    size_t cap = 64 + 20 * (SLM_POLICY_MAX_RULES + 1);
    char *big = malloc(cap);
    size_t n = (size_t)snprintf(big, cap, "{\"input\": [");
    for (int i = 0; i <= SLM_POLICY_MAX_RULES; i++) n += (size_t)snprintf(big + n, cap - n, "%s{\"max_bytes\": 1}", i ? "," : "");
    snprintf(big + n, cap - n, "]}");
    expect_error(big, SLM_ERR_LIMIT, "exceed");
    free(big);
    /* deep schema */
    char deep[2048] = "{\"output\": [{\"schema\": ";
    for (int i = 0; i < SLM_POLICY_MAX_DEPTH + 2; i++) strcat(deep, "{\"items\": ");
    strcat(deep, "{}");
    for (int i = 0; i < SLM_POLICY_MAX_DEPTH + 2; i++) strcat(deep, "}");
    strcat(deep, "}]}");
    expect_error(deep, SLM_ERR_INVALID_ARG, "deeper");
}

static void test_alloc_failures(void **state) {
    fixture *fx = *state;
    for (long k = 1; k < 500; k++) {
        slm_policy *p = NULL;
        slm_policy_verdict v = {0};
        char err[SLM_ERR_LEN];
        slm_fault_arm(k);
        slm_status st = slm_policy_parse(POLICY, strlen(POLICY), &p, err);
        if (!st) st = slm_policy_check(p, SLM_POLICY_INPUT, fx->g, "mail a@b.io", 11, NULL, &v, err);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (fired) {
            assert_int_equal(st, SLM_ERR_NOMEM);
        } else {
            assert_int_equal(st, SLM_OK);
            assert_string_equal(v.redacted, "mail <EMAIL_ADDRESS>");
        }
        slm_policy_verdict_clear(&v);
        slm_policy_destroy(p);
        if (!fired) return;
    }
    fail_msg("allocation failure loop did not finish");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_counts),
        cmocka_unit_test(test_input_rules),
        cmocka_unit_test(test_redact_with_vault),
        cmocka_unit_test(test_output_rules),
        cmocka_unit_test(test_labels_plain),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
