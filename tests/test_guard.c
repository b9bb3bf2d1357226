/* tests/test_guard.c: pattern detectors with positives and adversarial negatives, validators,
 * operators, vault round trip, UTF-8 offsets, invalid UTF-8, limits, allocation failures. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "guard/guard_int.h"
#include "slmesh/guard.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static slm_guard *pattern_guard(void) {
    slm_guard *g = NULL;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_guard_create(NULL, &g, err), SLM_OK);
    return g;
}

/* Type of the finding that covers exactly `needle` in text, or -1. */
static int type_of(const slm_guard *g, const char *text, const char *needle) {
    slm_pii_finding *f = NULL;
    size_t n = 0;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_guard_detect(g, text, strlen(text), &f, &n, err), SLM_OK);
    const char *at = strstr(text, needle);
    assert_non_null(at);
    size_t s = (size_t)(at - text), e = s + strlen(needle);
    int type = -1;
    for (size_t i = 0; i < n; i++)
        if (f[i].start == s && f[i].end == e) type = (int)f[i].type;
    slm_free(f);
    return type;
}

/* Number of findings of `type` anywhere in text. */
static size_t count_type(const slm_guard *g, const char *text, slm_pii_type type) {
    slm_pii_finding *f = NULL;
    size_t n = 0, k = 0;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_guard_detect(g, text, strlen(text), &f, &n, err), SLM_OK);
    for (size_t i = 0; i < n; i++) k += f[i].type == type || type == SLM_PII_COUNT; /* COUNT: any type */
    slm_free(f);
    return k;
}

/* ---- validators ------------------------------------------------------------------------------ */

static void test_validators(void **state) {
    (void)state;
    assert_true(slm_guard_luhn("4111111111111111", 16));
    assert_false(slm_guard_luhn("4111111111111112", 16));
    assert_true(slm_guard_luhn("4111-1111-1111-1111", 19));
    assert_true(slm_guard_card_issuer("4111111111111111", 16));
    assert_true(slm_guard_card_issuer("378282246310005", 15));   /* Amex */
    assert_true(slm_guard_card_issuer("5555555555554444", 16));  /* Mastercard */
    assert_true(slm_guard_card_issuer("2221000000000009", 16));  /* Mastercard 2-series */
    assert_true(slm_guard_card_issuer("6011111111111117", 16));  /* Discover */
    assert_true(slm_guard_card_issuer("30569309025904", 14));    /* Diners */
    assert_true(slm_guard_card_issuer("3530111333300000", 16));  /* JCB */
    assert_false(slm_guard_card_issuer("9111111111111111", 16)); /* no issuer */
    assert_false(slm_guard_card_issuer("37828224631000", 14));   /* Amex is 15 digits */
    size_t used = 0;
    const char *iban = "GB82 WEST 1234 5698 7654 32 is mine";
    assert_true(slm_guard_iban(iban, strlen(iban), &used));
    assert_int_equal(used, 27);
    assert_true(slm_guard_iban("de89370400440532013000", 22, &used));
    assert_false(slm_guard_iban("DE89370400440532013001", 22, &used)); /* mod-97 */
    assert_false(slm_guard_iban("DE8937040044053201300", 21, &used));  /* too short */
    assert_false(slm_guard_iban("ZZ89370400440532013000", 22, &used)); /* no such country */
    assert_true(slm_guard_ssn("123456788", 9));
    assert_false(slm_guard_ssn("666123456", 9));
    assert_false(slm_guard_ssn("000123456", 9));
    assert_false(slm_guard_ssn("912345678", 9));
    assert_false(slm_guard_ssn("123004567", 9));
    assert_false(slm_guard_ssn("123450000", 9));
    assert_false(slm_guard_ssn("078051120", 9));
    assert_true(slm_guard_entropy("abcdefgh", 8) > 2.99);
    assert_true(slm_guard_entropy("aaaa", 4) < 0.01);
}

static void test_utf8_check(void **state) {
    (void)state;
    assert_int_equal(slm_guard_utf8_check("h\xc3\xa9llo", 6), 6);
    assert_int_equal(slm_guard_utf8_check("ab\xc3", 3), 2);           /* truncated */
    assert_int_equal(slm_guard_utf8_check("a\xc0\xafz", 4), 1);       /* overlong */
    assert_int_equal(slm_guard_utf8_check("a\xed\xa0\x80", 4), 1);    /* surrogate */
    assert_int_equal(slm_guard_utf8_check("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    assert_int_equal(slm_guard_utf8_check("x\x80", 2), 1);            /* stray continuation */
    assert_int_equal(slm_guard_utf8_check("\xf0\x9f\x98\x80!", 5), 5);
}

/* ---- detectors ------------------------------------------------------------------------------ */

static void test_cards(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    assert_int_equal(type_of(g, "card 4111111111111111 ok", "4111111111111111"), SLM_PII_CREDIT_CARD);
    assert_int_equal(type_of(g, "card 4111 1111 1111 1111.", "4111 1111 1111 1111"), SLM_PII_CREDIT_CARD);
    assert_int_equal(type_of(g, "card 5555-5555-5555-4444!", "5555-5555-5555-4444"), SLM_PII_CREDIT_CARD);
    assert_int_equal(type_of(g, "amex 3782 822463 10005", "3782 822463 10005"), SLM_PII_CREDIT_CARD);
    /* adversarial: Luhn failures, mixed separators, no issuer */
    assert_int_equal(count_type(g, "card 4111111111111112", SLM_PII_CREDIT_CARD), 0);
    assert_int_equal(count_type(g, "card 4111 1111 1111 1112", SLM_PII_CREDIT_CARD), 0);
    assert_int_equal(count_type(g, "card 4111 1111-1111 1111", SLM_PII_CREDIT_CARD), 0);
    assert_int_equal(count_type(g, "order 9111111111111111", SLM_PII_CREDIT_CARD), 0);
    slm_guard_destroy(g);
}

static void test_iban_ssn(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    assert_int_equal(type_of(g, "to GB82WEST12345698765432 now", "GB82WEST12345698765432"), SLM_PII_IBAN_CODE);
    assert_int_equal(type_of(g, "iban gb82 west 1234 5698 7654 32 thanks", "gb82 west 1234 5698 7654 32"),
                     SLM_PII_IBAN_CODE);
    assert_int_equal(count_type(g, "to GB82WEST12345698765433 now", SLM_PII_IBAN_CODE), 0);
    assert_int_equal(type_of(g, "SSN: 123-45-6788", "123-45-6788"), SLM_PII_US_SSN);
    assert_int_equal(type_of(g, "my ssn is 123456788", "123456788"), SLM_PII_US_SSN);
    assert_int_equal(count_type(g, "SSN: 666-45-6788", SLM_PII_US_SSN), 0);
    assert_int_equal(count_type(g, "SSN: 123-00-6788", SLM_PII_US_SSN), 0);
    assert_int_equal(count_type(g, "order 123456788 shipped", SLM_PII_US_SSN), 0); /* bare, no context */
    slm_guard_destroy(g);
}

static void test_contact(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    assert_int_equal(type_of(g, "From: Ann <ann.lee+x@mail.example.org>", "ann.lee+x@mail.example.org"),
                     SLM_PII_EMAIL_ADDRESS);
    assert_int_equal(type_of(g, "call +1-984-182-0190 now", "+1-984-182-0190"), SLM_PII_PHONE_NUMBER);
    assert_int_equal(type_of(g, "phone: (08) 8747 6301", "(08) 8747 6301"), SLM_PII_PHONE_NUMBER);
    assert_int_equal(type_of(g, "+41 (0)38 549 02 90 mobile", "+41 (0)38 549 02 90"), SLM_PII_PHONE_NUMBER);
    assert_int_equal(count_type(g, "we shipped 12 34 boxes", SLM_PII_PHONE_NUMBER), 0);
    assert_int_equal(type_of(g, "see https://example.com/a?b=1.", "https://example.com/a?b=1"), SLM_PII_URL);
    assert_int_equal(type_of(g, "host api.example.com is down", "api.example.com"), SLM_PII_DOMAIN_NAME);
    assert_int_equal(count_type(g, "open file.txt and e.g. this", SLM_PII_DOMAIN_NAME), 0);
    assert_int_equal(type_of(g, "from 192.168.10.200.", "192.168.10.200"), SLM_PII_IP_ADDRESS);
    assert_int_equal(type_of(g, "v6 2001:db8::ff00:42:8329 here", "2001:db8::ff00:42:8329"), SLM_PII_IP_ADDRESS);
    assert_int_equal(count_type(g, "version 1.2.3 at 999.1.1.1 and 10:30:00", SLM_PII_IP_ADDRESS), 0);
    slm_guard_destroy(g);
}

static void test_dates_ages_zip_license(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    assert_int_equal(type_of(g, "on 2020-06-20 14:11:22 we", "2020-06-20 14:11:22"), SLM_PII_DATE_TIME);
    assert_int_equal(type_of(g, "born 9/25/1945.", "9/25/1945"), SLM_PII_DATE_TIME);
    assert_int_equal(type_of(g, "on 3 March 2021 ok", "3 March 2021"), SLM_PII_DATE_TIME);
    assert_int_equal(type_of(g, "see you Friday", "Friday"), SLM_PII_DATE_TIME);
    assert_int_equal(count_type(g, "you may go", SLM_PII_DATE_TIME), 0);
    assert_int_equal(type_of(g, "a 35-year-old male", "35"), SLM_PII_AGE);
    assert_int_equal(type_of(g, "retired at the age of 66", "66"), SLM_PII_AGE);
    assert_int_equal(type_of(g, "My zip code is 880", "880"), SLM_PII_ZIP_CODE);
    assert_int_equal(type_of(g, "Denver, CO 80202", "80202"), SLM_PII_ZIP_CODE);
    assert_int_equal(type_of(g, "London SW1A 1AA", "SW1A 1AA"), SLM_PII_ZIP_CODE);
    assert_int_equal(count_type(g, "I bought 880 apples", SLM_PII_ZIP_CODE), 0);
    assert_int_equal(type_of(g, "driver's license number is F162823540116", "F162823540116"),
                     SLM_PII_US_DRIVER_LICENSE);
    assert_int_equal(count_type(g, "invoice F162823540116", SLM_PII_US_DRIVER_LICENSE), 0);
    slm_guard_destroy(g);
}

static void test_secrets(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    const char *pem = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----\nbye";
    assert_int_equal(type_of(g, pem, "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----"),
                     SLM_PII_SECRET);
    assert_int_equal(type_of(g, "aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"), SLM_PII_SECRET);
    assert_int_equal(type_of(g, "tok ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5 x",
                             "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"), SLM_PII_SECRET);
    assert_int_equal(type_of(g, "password: hunter2!x", "hunter2!x"), SLM_PII_SECRET);
    assert_int_equal(type_of(g, "blob 9fQ2xL7vR3kP8mZ1tW6yB4nH0cJ5gD2s end", "9fQ2xL7vR3kP8mZ1tW6yB4nH0cJ5gD2s"),
                     SLM_PII_SECRET);
    assert_int_equal(count_type(g, "the_quick_brown_fox_jumps_over_the_lazy_dog", SLM_PII_SECRET), 0);
    /* a key pasted without its END line is still a secret */
    assert_int_equal(type_of(g, "here:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"),
                     SLM_PII_SECRET);
    /* many BEGIN lines: each block ends at the next marker (linear time, one finding each) */
    size_t reps = 5000, unit = strlen("-----BEGIN RSA PRIVATE KEY-----\n");
    char *many = malloc(reps * unit + 1);
    for (size_t i = 0; i < reps; i++) memcpy(many + i * unit, "-----BEGIN RSA PRIVATE KEY-----\n", unit);
    many[reps * unit] = '\0';
    assert_int_equal(count_type(g, many, SLM_PII_SECRET), reps);
    free(many);
    slm_guard_destroy(g);
}

/* ---- Unicode, limits ------------------------------------------------------------------------------ */

static void test_utf8_offsets(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    const char *t = "Zo\xc3\xab \xe2\x9c\x89 <zo\xc3\xab@example.com> Tel: +44 20 7946 0958";
    slm_pii_finding *f = NULL;
    size_t n = 0;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_guard_detect(g, t, strlen(t), &f, &n, err), SLM_OK);
    /* The e-mail local part stops at the non-ASCII letter: "@example.com" is preceded by ë,
     * so the address found is the domain part only if anything; the phone must be exact. */
    bool phone = false;
    for (size_t i = 0; i < n; i++) {
        if (f[i].type != SLM_PII_PHONE_NUMBER) continue;
        phone = true;
        assert_int_equal(f[i].end - f[i].start, strlen("+44 20 7946 0958"));
        assert_int_equal(f[i].cend - f[i].cstart, strlen("+44 20 7946 0958"));
        /* bytes before: "Zoë ✉ <zoë@example.com> Tel: " = 2+2+1+3+1+1+2+2+12+1+1+5 */
        assert_int_equal(f[i].start, strlen("Zo\xc3\xab \xe2\x9c\x89 <zo\xc3\xab@example.com> Tel: "));
        assert_int_equal(f[i].cstart, f[i].start - 1 - 2 - 1);
    }
    assert_true(phone);
    slm_free(f);
    const char *bad = "card 4111111111111111 \xff\xfe";
    assert_int_equal(slm_guard_detect(g, bad, strlen(bad), &f, &n, err), SLM_ERR_UTF8);
    assert_non_null(strstr(err, "byte 22"));
    assert_null(f);
    slm_guard_destroy(g);
}

static void test_limits(void **state) {
    (void)state;
    slm_guard_opts o;
    slm_guard *g = NULL;
    char err[SLM_ERR_LEN];
    slm_guard_opts_default(&o);
    o.max_input = 16;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_OK);
    slm_pii_finding *f = NULL;
    size_t n = 0;
    assert_int_equal(slm_guard_detect(g, "0123456789abcdefX", 17, &f, &n, err), SLM_ERR_LIMIT);
    assert_int_equal(slm_guard_detect(g, "", 0, &f, &n, err), SLM_OK);
    assert_int_equal(n, 0);
    slm_guard_destroy(g);
    o.max_input = 0;
    o.threshold[SLM_PII_PERSON] = 1.5f;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_ERR_RANGE);
    slm_guard_opts_default(&o);
    o.tagger_path = "/nonexistent/pii-tagger.bin";
    assert_int_not_equal(slm_guard_create(&o, &g, err), SLM_OK);
    /* Type restriction: only e-mails. */
    slm_guard_opts_default(&o);
    assert_true(slm_pii_types_parse("EMAIL_ADDRESS", &o.types));
    assert_false(slm_pii_types_parse("EMAIL_ADDRESS,NOPE", &o.types));
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_OK);
    assert_int_equal(count_type(g, "a@b.io 4111111111111111", SLM_PII_CREDIT_CARD), 0);
    assert_int_equal(count_type(g, "a@b.io 4111111111111111", SLM_PII_EMAIL_ADDRESS), 1);
    slm_guard_destroy(g);
    slm_guard_destroy(NULL);
}

/* ---- operators and vault ----------------------------------------------------------------------------- */

static char *redact_with(const slm_guard *g, const char *text, slm_redact_op op, slm_vault *v) {
    slm_pii_finding *f = NULL;
    size_t n = 0, len = 0;
    char err[SLM_ERR_LEN], *out = NULL;
    slm_redact_opts o;
    slm_redact_opts_default(&o);
    slm_redact_opts_all(&o, op);
    memcpy(o.salt, "pepper", 6);
    o.salt_len = 6;
    assert_int_equal(slm_guard_detect(g, text, strlen(text), &f, &n, err), SLM_OK);
    assert_int_equal(slm_guard_redact(text, strlen(text), f, n, &o, v, &out, &len, err), SLM_OK);
    assert_int_equal(strlen(out), len);
    slm_free(f);
    return out;
}

static void test_operators(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    const char *t = "mail a@x.io, b@y.io and a@x.io; card 4111 1111 1111 1111";
    char *r = redact_with(g, t, SLM_REDACT_REPLACE, NULL);
    assert_string_equal(r, "mail <EMAIL_ADDRESS>, <EMAIL_ADDRESS> and <EMAIL_ADDRESS>; card <CREDIT_CARD>");
    slm_free(r);
    r = redact_with(g, t, SLM_REDACT_NUMBERED, NULL);
    assert_string_equal(r, "mail <EMAIL_ADDRESS_1>, <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>; card <CREDIT_CARD_1>");
    slm_free(r);
    r = redact_with(g, "card 4111 1111 1111 1111", SLM_REDACT_MASK, NULL);
    assert_string_equal(r, "card ***************1111");
    slm_free(r);
    char *h1 = redact_with(g, "a@x.io", SLM_REDACT_HASH, NULL);
    char *h2 = redact_with(g, "a@x.io", SLM_REDACT_HASH, NULL);
    char *h3 = redact_with(g, "b@x.io", SLM_REDACT_HASH, NULL);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);
    assert_int_equal(strlen(h1), strlen("<EMAIL_ADDRESS:>") + 16);
    assert_null(strstr(h1, "a@x.io"));
    slm_free(h1);
    slm_free(h2);
    slm_free(h3);
    r = redact_with(g, "mail a@x.io", SLM_REDACT_KEEP, NULL);
    assert_string_equal(r, "mail a@x.io");
    slm_free(r);
    slm_guard_destroy(g);
}

static void test_mask_utf8(void **state) {
    (void)state;
    slm_pii_finding f = {.type = SLM_PII_PERSON, .start = 0, .end = 6};
    slm_redact_opts o;
    char *out = NULL, err[SLM_ERR_LEN];
    size_t len;
    slm_redact_opts_default(&o);
    slm_redact_opts_all(&o, SLM_REDACT_MASK);
    o.mask_keep = 2;
    assert_int_equal(slm_guard_redact("J\xc3\xb6rg!", 6, &f, 1, &o, NULL, &out, &len, err), SLM_OK);
    assert_string_equal(out, "***g!");
    slm_free(out);
    /* findings out of order or range are rejected */
    slm_pii_finding bad[2] = {{.start = 3, .end = 5}, {.start = 1, .end = 2}};
    assert_int_equal(slm_guard_redact("abcdef", 6, bad, 2, &o, NULL, &out, &len, err), SLM_ERR_INVALID_ARG);
    bad[0].end = 9;
    assert_int_equal(slm_guard_redact("abcdef", 6, bad, 1, &o, NULL, &out, &len, err), SLM_ERR_INVALID_ARG);
}

static void test_vault_roundtrip(void **state) {
    (void)state;
    slm_guard *g = pattern_guard();
    slm_vault *v = NULL;
    char err[SLM_ERR_LEN], *back = NULL;
    size_t len;
    assert_int_equal(slm_vault_create(&v, err), SLM_OK);
    const char *t = "Write to ann@corp.example about card 5555 5555 5555 4444, cc ann@corp.example.";
    char *r = redact_with(g, t, SLM_REDACT_PSEUDO, v);
    assert_null(strstr(r, "ann@corp.example"));
    assert_null(strstr(r, "5555"));
    assert_int_equal(slm_vault_count(v), 2);
    assert_int_equal(slm_vault_restore(v, r, strlen(r), &back, &len, err), SLM_OK);
    assert_string_equal(back, t);
    slm_free(back);
    /* A model's answer that reuses placeholders, plus text that only looks like one. */
    const char *answer = "Sent <EMAIL_ADDRESS_1> a note about <CREDIT_CARD_1>; <EMAIL_ADDRESS_9> and <x> stay.";
    assert_int_equal(slm_vault_restore(v, answer, strlen(answer), &back, &len, err), SLM_OK);
    assert_string_equal(back, "Sent ann@corp.example a note about 5555 5555 5555 4444; <EMAIL_ADDRESS_9> and <x> stay.");
    slm_free(back);
    slm_free(r);
    /* Many distinct values: the index grows and stays consistent. */
    char big[64 * 40] = "";
    for (int i = 0; i < 60; i++) {
        char one[40];
        snprintf(one, sizeof one, "u%d@example.com ", i);
        strcat(big, one);
    }
    r = redact_with(g, big, SLM_REDACT_PSEUDO, v);
    assert_int_equal(slm_vault_count(v), 62);
    assert_int_equal(slm_vault_restore(v, r, strlen(r), &back, &len, err), SLM_OK);
    assert_string_equal(back, big);
    slm_free(back);
    slm_free(r);
    /* values may hold NUL bytes (found by fuzz_guard) */
    const char nul_text[] = "id a\0b end";
    slm_pii_finding nf = {.type = SLM_PII_SECRET, .start = 3, .end = 6};
    slm_redact_opts o;
    slm_redact_opts_default(&o);
    slm_redact_opts_all(&o, SLM_REDACT_PSEUDO);
    assert_int_equal(slm_guard_redact(nul_text, sizeof nul_text - 1, &nf, 1, &o, v, &r, &len, err), SLM_OK);
    assert_string_equal(r, "id <SECRET_1> end");
    assert_int_equal(slm_vault_restore(v, r, len, &back, &len, err), SLM_OK);
    assert_int_equal(len, sizeof nul_text - 1);
    assert_memory_equal(back, nul_text, len);
    slm_free(back);
    slm_free(r);
    slm_vault_destroy(v);
    slm_vault_destroy(NULL);
    slm_guard_destroy(g);
}

/* ---- allocation failures -------------------------------------------------------------------------------- */

static void test_alloc_failures(void **state) {
    (void)state;
    const char *t = "Mail ann@x.io, 4111 1111 1111 1111, SSN 123-45-6788, ann@x.io";
    for (long k = 1; k < 2000; k++) {
        slm_guard *g = NULL;
        slm_vault *v = NULL;
        slm_pii_finding *f = NULL;
        char *r = NULL, *back = NULL, err[SLM_ERR_LEN];
        size_t n = 0, len = 0;
        slm_redact_opts o;
        slm_redact_opts_default(&o);
        slm_redact_opts_all(&o, SLM_REDACT_PSEUDO);
        slm_fault_arm(k);
        slm_status st = slm_guard_create(NULL, &g, err);
        if (!st) st = slm_guard_detect(g, t, strlen(t), &f, &n, err);
        if (!st) st = slm_vault_create(&v, err);
        if (!st) st = slm_guard_redact(t, strlen(t), f, n, &o, v, &r, &len, err);
        if (!st) st = slm_vault_restore(v, r, len, &back, &len, err);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (fired) assert_int_equal(st, SLM_ERR_NOMEM);
        else {
            assert_int_equal(st, SLM_OK);
            assert_string_equal(back, t);
        }
        slm_free(back);
        slm_free(r);
        slm_vault_destroy(v);
        slm_free(f);
        slm_guard_destroy(g);
        if (!fired) return;
    }
    fail_msg("allocation failure loop did not finish");
}

/* ---- tagger ---------------------------------------------------------------------------------------- */

static const char *repo_model(char *buf, size_t cap) {
    const char *src = getenv("SLMESH_SOURCE_DIR");
    snprintf(buf, cap, "%s/models/pii-tagger.bin", src && *src ? src : ".");
    return buf;
}

/* Findings of `type` that cover needle (fully) in text. */
static bool covers(const slm_guard *g, const char *text, const char *needle) {
    slm_pii_finding *f = NULL;
    size_t n = 0;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_guard_detect(g, text, strlen(text), &f, &n, err), SLM_OK);
    size_t s = (size_t)(strstr(text, needle) - text), e = s + strlen(needle), covered = 0;
    for (size_t i = 0; i < n; i++) {
        size_t lo = f[i].start > s ? f[i].start : s, hi = f[i].end < e ? f[i].end : e;
        if (hi > lo) covered += hi - lo;
    }
    slm_free(f);
    return covered * 10 >= (e - s) * 7;
}

static void test_tagger_names(void **state) {
    (void)state;
    char model[4096], err[SLM_ERR_LEN];
    slm_guard_opts o;
    slm_guard *g = NULL;
    slm_guard_opts_default(&o);
    o.tagger_path = repo_model(model, sizeof model);
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_OK);
    assert_true(covers(g, "Hello, my name is Margarete Lindqvist and I need help.", "Margarete Lindqvist"));
    assert_true(covers(g, "please follow up with john smith about the refund", "john smith"));  /* lower case */
    assert_true(covers(g, "mr. elliott flew to oslo on friday", "elliott"));
    assert_true(covers(g, "Please ship it to 221B Baker Street, London.", "221B Baker Street"));
    assert_true(covers(g, "Agent: hello\nAlice: my card is blocked", "Alice"));
    /* postcodes next to a place, and made-up company names */
    assert_int_equal(type_of(g, "Adres: ul. Słowicza 10, Wrocław 53-320", "53-320"), SLM_PII_ZIP_CODE);
    assert_true(covers(g, "Our account at Miller Ltd. was closed.", "Miller Ltd."));
    assert_true(covers(g, "The Brightwave office is at 12 Main Street.", "Brightwave"));
    /* lower-case common words in cased text are not names; numbers alone are not postcodes */
    assert_int_equal(count_type(g, "The community orchestra serves the region.", SLM_PII_COUNT), 0);
    assert_int_equal(count_type(g, "He paid 300 dollars for the ticket.", SLM_PII_COUNT), 0);
    /* patterns still win over the tagger on their own spans */
    assert_int_equal(type_of(g, "mail <JohnSmith@example.com> now", "JohnSmith@example.com"), SLM_PII_EMAIL_ADDRESS);
    /* no tagger type is reported when only e-mails are asked for */
    slm_guard_destroy(g);
    assert_true(slm_pii_types_parse("EMAIL_ADDRESS", &o.types));
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_OK);
    assert_int_equal(count_type(g, "Hello, my name is Margarete Lindqvist.", SLM_PII_PERSON), 0);
    slm_guard_destroy(g);
}

static void test_tagger_file_checks(void **state) {
    (void)state;
    char model[4096], err[SLM_ERR_LEN];
    size_t len = 0;
    char *bytes = tu_read_file(repo_model(model, sizeof model), &len);
    assert_non_null(bytes);
    slm_guard_opts o;
    slm_guard *g = NULL;
    slm_guard_opts_default(&o);
    /* one flipped weight byte: checksum */
    bytes[len / 2] ^= 0x40;
    char *p = tu_write_temp(bytes, len, ".bin");
    o.tagger_path = p;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_ERR_TAMPERED);
    unlink(p);
    free(p);
    bytes[len / 2] ^= 0x40;
    /* truncated */
    p = tu_write_temp(bytes, len - 100, ".bin");
    o.tagger_path = p;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_ERR_CORRUPT);
    unlink(p);
    free(p);
    /* not a weights file */
    p = tu_write_temp("hello world, not weights", 24, ".bin");
    o.tagger_path = p;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_ERR_CORRUPT);
    unlink(p);
    free(p);
    /* a newer version */
    bytes[8] = 99;
    p = tu_write_temp(bytes, len, ".bin");
    o.tagger_path = p;
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_ERR_UNSUPPORTED);
    unlink(p);
    free(p);
    free(bytes);
}

static void test_tagger_training(void **state) {
    (void)state;
    const char *data =
        "[{\"full_text\": \"My name is Anna Berg.\", \"spans\": [{\"entity_type\": \"PERSON\", "
        "\"entity_value\": \"Anna Berg\", \"start_position\": 11, \"end_position\": 20}]},"
        "{\"full_text\": \"Zo\\u00eb lives in Malm\\u00f6.\", \"spans\": [{\"entity_type\": \"PERSON\", "
        "\"entity_value\": \"Zo\\u00eb\", \"start_position\": 0, \"end_position\": 3}, {\"entity_type\": \"GPE\", "
        "\"entity_value\": \"Malm\\u00f6\", \"start_position\": 13, \"end_position\": 18}]},"
        "{\"full_text\": \"Card 4111111111111111 please.\", \"spans\": []}]";
    char *in = tu_write_temp(data, strlen(data), ".json");
    char *out1 = tu_write_temp("", 0, ".bin"), *out2 = tu_write_temp("", 0, ".bin");
    char err[SLM_ERR_LEN];
    slm_guard_train_opts o = {.data_path = in, .out_path = out1, .epochs = 3, .seed = 7, .dropout = 0.2};
    slm_guard_train_stats st;
    assert_int_equal(slm_guard_train(&o, &st, err), SLM_OK);
    assert_int_equal(st.sentences, 3);
    o.out_path = out2;
    assert_int_equal(slm_guard_train(&o, &st, err), SLM_OK);
    size_t l1, l2;
    char *b1 = tu_read_file(out1, &l1), *b2 = tu_read_file(out2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);  /* same data and seed: the same file */
    free(b1);
    free(b2);
    slm_guard_opts go;
    slm_guard *g = NULL;
    slm_guard_opts_default(&go);
    go.tagger_path = out1;
    assert_int_equal(slm_guard_create(&go, &g, err), SLM_OK);
    slm_guard_destroy(g);
    /* malformed data: span beyond the text */
    const char *bad = "[{\"full_text\": \"abc\", \"spans\": [{\"entity_type\": \"PERSON\", \"start_position\": 1, \"end_position\": 9}]}]";
    char *inb = tu_write_temp(bad, strlen(bad), ".json");
    o.data_path = inb;
    assert_int_equal(slm_guard_train(&o, &st, err), SLM_ERR_CORRUPT);
    o.data_path = "/nonexistent.json";
    assert_int_not_equal(slm_guard_train(&o, &st, err), SLM_OK);
    unlink(in);
    unlink(inb);
    unlink(out1);
    unlink(out2);
    free(in);
    free(inb);
    free(out1);
    free(out2);
}

/* ---- sharing between threads ---------------------------------------------------------------------- */

typedef struct {
    const slm_guard *g;  /* shared, borrowed */
    size_t count;        /* findings seen by the thread on every round */
    int rounds_ok;
} thread_job;

static const char *const SHARED_TEXT =
    "Hi, I am Anna Berg (anna.berg@example.com, +46 8 123 456 78). Card 4111-1111-1111-1111, "
    "IBAN GB82 WEST 1234 5698 7654 32. Mr. Smith lives at 221B Baker Street, London.";

static void *detect_loop(void *arg) {
    thread_job *job = arg;
    char err[SLM_ERR_LEN];
    for (int r = 0; r < 50; r++) {
        slm_pii_finding *f = NULL;
        size_t n = 0;
        if (slm_guard_detect(job->g, SHARED_TEXT, strlen(SHARED_TEXT), &f, &n, err) == SLM_OK &&
            (r == 0 || n == job->count))
            job->rounds_ok++;
        job->count = n;
        slm_free(f);
    }
    return NULL;
}

static void test_shared_between_threads(void **state) {
    (void)state;
    char model[4096], err[SLM_ERR_LEN];
    slm_guard_opts o;
    slm_guard *g = NULL;
    slm_guard_opts_default(&o);
    o.tagger_path = repo_model(model, sizeof model);
    assert_int_equal(slm_guard_create(&o, &g, err), SLM_OK);
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.g = g};
        assert_int_equal(pthread_create(&th[i], NULL, detect_loop, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].rounds_ok, 50);
        assert_int_equal(jobs[i].count, jobs[0].count);
    }
    assert_true(jobs[0].count >= 5);
    slm_guard_destroy(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validators),
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_cards),
        cmocka_unit_test(test_iban_ssn),
        cmocka_unit_test(test_contact),
        cmocka_unit_test(test_dates_ages_zip_license),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_utf8_offsets),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_mask_utf8),
        cmocka_unit_test(test_vault_roundtrip),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_tagger_names),
        cmocka_unit_test(test_tagger_file_checks),
        cmocka_unit_test(test_tagger_training),
        cmocka_unit_test(test_shared_between_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
