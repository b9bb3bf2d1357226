/*
 * guard/guard_patterns.c: the pattern detectors: one PCRE2 expression per shape (e-mail,
 * card, IBAN, phone, ...), an optional validator that accepts, rejects or trims a match,
 * and optional context words that raise the score when they occur just before or after the
 * match ("SSN:", "driver's license", "zip code", "555 0100 office").
 *
 * Invariants:
 *  - Every expression is compiled once (UTF mode, ASCII \d and \b) and JIT-compiled when
 *    the platform allows; matching uses PCRE2_NO_UTF_CHECK because guard.c validated the
 *    text first.
 *  - A detector's score is base (+ boost when its context matches), clamped to [0, 1];
 *    guard.c applies the per-type thresholds.
 * Thread-safety: a guard_patterns is immutable after creation; match data is per call.
 * Non-goals: names, addresses, organisations and places (guard_tagger.c).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard/guard_int.h"

#include <arpa/inet.h>
#include <pcre2.h>
#include <string.h>

#include "core/core.h"

/* ---- the detector table ------------------------------------------------------------------ */

/* How a raw match is checked after the expression matched. */
typedef enum {
    CHECK_NONE,
    CHECK_CARD,      /* 12..19 digits, one separator style, Luhn, issuer range */
    CHECK_IBAN,      /* country length, mod-97; trims to the IBAN's length */
    CHECK_SSN,       /* area/group/serial rules */
    CHECK_IPV6,      /* inet_pton accepts it */
    CHECK_URL,       /* trims trailing sentence punctuation */
    CHECK_ENTROPY,   /* random-looking: letters and digits, high entropy */
    CHECK_AGE,       /* 0..130 */
    CHECK_PHONE,     /* 7..15 digits */
    CHECK_MONTH,     /* a bare month name scores low unless capitalised and not "May" */
    CHECK_LICENSE,   /* at least 5 digits */
} check_kind;

typedef struct {
    slm_pii_type type;
    const char *re;        /* PCRE2 expression */
    int group;             /* capture group that is the finding (0 = whole match) */
    check_kind check;
    float base;            /* score without context */
    const char *context;   /* caseless expression looked for just before the match, or NULL */
    float boost;           /* added to base when the context matches */
} pattern_def;

/* Bytes before a match searched for context words: covers "Here's my SSN: " and
 * "my driver's license number is " with room to spare. */
#define CONTEXT_WINDOW 48
/* Bytes after a match searched for context words: labels that follow a number
 * ("555 0100 office", "-Fax"). */
#define CONTEXT_AFTER 12

#define CTX_PHONE "phone|tel\\b|telephone|call|mobile|cell|fax|contact|reach|text me|sms|" \
                  "whatsapp|dial|ring|answer|messages? to|office|landline|hotline|number"
#define CTX_ZIP "zip|post ?code|postal|plz|\\bcep\\b"

static const pattern_def defs[] = {
    /* secrets first: a key can look like anything else */
    {SLM_PII_SECRET,
     /* body: anything but "-----", possessive, so that each BEGIN scans at most to the next
      * marker (linear); a block cut off before its END line is still a secret */
     "-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----))*+"
     "(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
     0, CHECK_NONE, 0.99f, NULL, 0},
    {SLM_PII_SECRET,
     "(?<![A-Za-z0-9_-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
     "|pk_(?:live|test)_[A-Za-z0-9]{16,}|A(?:KIA|SIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
     "|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
     "|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36}"
     "|SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43})",
     0, CHECK_NONE, 0.97f, NULL, 0},
    {SLM_PII_SECRET, "\\beyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}",
     0, CHECK_NONE, 0.95f, NULL, 0},
    {SLM_PII_SECRET,
     "(?i)\\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)"
     "\\s*[:=]\\s*[\"']?([^\\s\"']{6,})",
     1, CHECK_NONE, 0.85f, NULL, 0},
    {SLM_PII_SECRET, "(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{24,}(?![A-Za-z0-9+/_=-])",
     0, CHECK_ENTROPY, 0.75f, NULL, 0},

    {SLM_PII_EMAIL_ADDRESS,
     "(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
     "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.){1,8}[A-Za-z]{2,24}\\b",
     0, CHECK_NONE, 0.95f, NULL, 0},
    {SLM_PII_URL, "(?i)\\b(?:https?|ftp)://[^\\s<>\"'`{}|\\\\^\\[\\]]+", 0, CHECK_URL, 0.9f, NULL, 0},
    {SLM_PII_URL, "(?i)(?<![\\w@./-])www\\.[A-Za-z0-9-]{1,63}(?:\\.[A-Za-z0-9-]{1,63}){1,8}[^\\s<>\"'`]*",
     0, CHECK_URL, 0.85f, NULL, 0},
    {SLM_PII_DOMAIN_NAME,
     "(?i)(?<![\\w@.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.){1,8}"
     "(?:com|org|net|edu|gov|mil|int|io|ai|co|info|biz|dev|app|me|tv|xyz|online|site|tech"
     "|de|uk|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|cz|hu|ru|br|ca|us|au|jp|cn|in|eu|ie|pt|gr)"
     "(?![\\w@-]|\\.\\w)",
     0, CHECK_NONE, 0.7f, NULL, 0},

    {SLM_PII_IP_ADDRESS,
     "(?<![\\w.])(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}"
     "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?!\\w|\\.\\d)",
     0, CHECK_NONE, 0.9f, NULL, 0},
    {SLM_PII_IP_ADDRESS,
     "(?<![\\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\\d{1,3}\\.){3}\\d{1,3})(?![\\w:])",
     0, CHECK_IPV6, 0.9f, NULL, 0},

    {SLM_PII_CREDIT_CARD, "(?<![\\w.-])\\d{12,19}(?![\\w]|[.-]\\d)", 0, CHECK_CARD, 0.9f,
     "card|visa|master|amex|cc\\b|credit|debit|payment", 0.09f},
    {SLM_PII_CREDIT_CARD, "(?<![\\w.-])\\d{4}([ -])\\d{4,6}\\1\\d{4,5}(?:\\1\\d{1,4}){0,2}(?![\\w]|[.-]\\d)",
     0, CHECK_CARD, 0.9f, "card|visa|master|amex|cc\\b|credit|debit|payment", 0.09f},
    {SLM_PII_IBAN_CODE, "(?i)\\b[A-Z]{2}\\d{2}(?: ?[A-Z0-9]){11,31}\\b", 0, CHECK_IBAN, 0.95f, NULL, 0},
    {SLM_PII_US_SSN, "(?<![\\w.-])\\d{3}([- ]?)\\d{2}\\1\\d{4}(?![\\w]|[.-]\\d)", 0, CHECK_SSN, 0.6f,
     "ssn|social security|\\bss#|social sec", 0.35f},

    {SLM_PII_PHONE_NUMBER,
     "(?<![\\w+])\\+\\d{1,3}(?:[ .-]?\\(0\\))?(?:[ .-]?\\(?\\d{1,5}\\)?){1,6}(?!\\d|[.-]\\d)",
     0, CHECK_PHONE, 0.8f, CTX_PHONE, 0.15f},
    {SLM_PII_PHONE_NUMBER,
     "(?<![\\w+/.-])(?:\\(\\d{2,5}\\) ?|\\d{2,5}[ .-])\\d{2,8}(?:[ .-]\\d{2,8}){0,3}(?!\\w|[./-]\\d)",
     0, CHECK_PHONE, 0.4f, CTX_PHONE, 0.45f},
    {SLM_PII_PHONE_NUMBER, "(?<![\\w+.-])\\d{7,12}(?!\\w|[.-]\\d)", 0, CHECK_PHONE, 0.2f, CTX_PHONE, 0.45f},

    {SLM_PII_DATE_TIME,
     "\\b\\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\\d|3[01])"
     "(?:[T ](?:[01]\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d(?:\\.\\d+)?)?(?:Z|[+-]\\d{2}:?\\d{2})?)?\\b",
     0, CHECK_NONE, 0.9f, NULL, 0},
    {SLM_PII_DATE_TIME,
     "(?<![\\w./-])(?:0?[1-9]|[12]\\d|3[01])([/.-])(?:0?[1-9]|[12]\\d|3[01])\\1(?:19|20)?\\d{2}(?![\\w]|[./-]\\d)",
     0, CHECK_NONE, 0.8f, NULL, 0},
    {SLM_PII_DATE_TIME,
     "(?i)\\b(?:\\d{1,2}(?:st|nd|rd|th)?\\s+(?:of\\s+)?)?"
     "(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
     "|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\\b\\.?"
     "(?:\\s+\\d{1,2}(?:st|nd|rd|th)?\\b)?(?:,?\\s+(?:19|20)\\d{2}\\b)?",
     0, CHECK_MONTH, 0.85f, NULL, 0},
    {SLM_PII_DATE_TIME, "(?i)\\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\\b", 0, CHECK_NONE, 0.7f, NULL, 0},
    {SLM_PII_DATE_TIME,
     "(?<![\\w:.])(?:[01]?\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d)?(?:\\s?(?:[AaPp][Mm]\\b|[AaPp]\\.[Mm]\\.))?(?![\\w:])",
     0, CHECK_NONE, 0.7f, NULL, 0},
    {SLM_PII_DATE_TIME, "(?<![\\w.:])(?:1[0-2]|0?[1-9])\\s?(?:[AaPp][Mm]\\b|[AaPp]\\.[Mm]\\.)", 0, CHECK_NONE, 0.6f, NULL, 0},
    {SLM_PII_DATE_TIME, "(?<![\\w.,-])(?:19|20)\\d{2}(?![\\w]|[.,-]\\d)", 0, CHECK_NONE, 0.5f, NULL, 0},

    {SLM_PII_AGE, "(?i)\\b(\\d{1,3})(?:\\s*|-)(?:years?|yrs?)(?:\\s*|-)old\\b", 1, CHECK_AGE, 0.9f, NULL, 0},
    {SLM_PII_AGE, "(?i)\\b(?:aged?|age:|age of)\\s*(\\d{1,3})\\b", 1, CHECK_AGE, 0.85f, NULL, 0},
    {SLM_PII_AGE, "(?i)\\bturn(?:ed|s|ing)\\s+(\\d{1,3})\\b", 1, CHECK_AGE, 0.6f, NULL, 0},

    {SLM_PII_ZIP_CODE, "\\b[A-Z]{1,2}\\d[A-Z\\d]? ?\\d[A-Z]{2}\\b", 0, CHECK_NONE, 0.55f, CTX_ZIP, 0.35f},
    {SLM_PII_ZIP_CODE, "\\b[A-Z]\\d[A-Z] ?\\d[A-Z]\\d\\b", 0, CHECK_NONE, 0.55f, CTX_ZIP, 0.35f},
    {SLM_PII_ZIP_CODE,
     "\\b(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|RI"
     "|S[CD]|T[NX]|UT|V[AT]|W[AIVY]),?\\s+(\\d{5}(?:-\\d{4})?)\\b",
     1, CHECK_NONE, 0.8f, NULL, 0},
    {SLM_PII_ZIP_CODE, "(?<![\\w.-])\\d{3,6}(?:[ -]\\d{2,4})?(?![\\w]|[.-]\\d)",
     0, CHECK_NONE, 0.2f, CTX_ZIP, 0.7f},

    {SLM_PII_US_DRIVER_LICENSE, "(?<![\\w-])[A-Za-z]?\\d[\\d-]{4,16}\\d(?![\\w-])", 0, CHECK_LICENSE,
     0.2f, "driver'?s?\\W{0,2}licen[cs]e|\\bDL\\b|licen[cs]e (?:no|number|#)", 0.7f},
};

#define NDEFS (sizeof defs / sizeof defs[0])

/* ---- compiled set ---------------------------------------------------------------------------- */

struct guard_patterns {
    pcre2_general_context *gctx;  /* owned: routes PCRE2's heap use through slm_malloc */
    pcre2_code *re[NDEFS];   /* owned: one per defs[] entry */
    pcre2_code *ctx[NDEFS];  /* owned: context expression or NULL */
    uint32_t max_groups;     /* largest capture count, sizes per-call match data */
};

void slm_guard_patterns_destroy(guard_patterns *p) {
    if (!p) return;
    for (size_t i = 0; i < NDEFS; i++) {
        pcre2_code_free(p->re[i]);
        pcre2_code_free(p->ctx[i]);
    }
    pcre2_general_context_free(p->gctx);
    slm_free(p);
}

/* PCRE2 allocator hooks: allocation failures become testable like every other one. */
static void *pcre_alloc(PCRE2_SIZE n, void *data) {
    (void)data;
    return slm_malloc(n);
}
static void pcre_free(void *ptr, void *data) {
    (void)data;
    slm_free(ptr);
}

static slm_status compile_one(const guard_patterns *p, const char *src, uint32_t extra, pcre2_code **out,
                              char *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_compile_context *cc = pcre2_compile_context_create(p->gctx);
    if (!cc) return slm_errf(err, SLM_ERR_NOMEM, "compile context");
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_UTF | extra,
                                   &code, &off, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(code, msg, sizeof msg);
        return slm_errf(err, code == PCRE2_ERROR_HEAP_FAILED ? SLM_ERR_NOMEM : SLM_ERR_INTERNAL,
                        "pattern /%.40s/ at %zu: %s", src, (size_t)off, (const char *)msg);
    }
    /* JIT is an optimisation: when unavailable the interpreter gives the same matches; only
     * running out of memory is an error. */
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == PCRE2_ERROR_NOMEMORY) {
        pcre2_code_free(re);
        return slm_errf(err, SLM_ERR_NOMEM, "JIT for pattern /%.40s/", src);
    }
    *out = re;
    return SLM_OK;
}

slm_status slm_guard_patterns_create(guard_patterns **out, char *err) {
    slm_status st;
    guard_patterns *p = slm_calloc(1, sizeof *p);
    if (!p) return slm_errf(err, SLM_ERR_NOMEM, "pattern set");
    if (!(p->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "PCRE2 context");
        goto fail;
    }
    for (size_t i = 0; i < NDEFS; i++) {
        if ((st = compile_one(p, defs[i].re, 0, &p->re[i], err))) goto fail;
        if (defs[i].context && (st = compile_one(p, defs[i].context, PCRE2_CASELESS, &p->ctx[i], err)))
            goto fail;
        uint32_t groups = 0;
        pcre2_pattern_info(p->re[i], PCRE2_INFO_CAPTURECOUNT, &groups);
        if (groups > p->max_groups) p->max_groups = groups;
    }
    *out = p;
    return SLM_OK;
fail:
    slm_guard_patterns_destroy(p);
    return st;
}

/* ---- validators applied to a match ----------------------------------------------------------------- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Copy the digits of s[0..n) into d (cap bytes); returns how many, or cap + 1 if more. */
static size_t digits_of(const char *s, size_t n, char *d, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) continue;
        if (k == cap) return cap + 1;
        d[k++] = s[i];
    }
    return k;
}

static bool check_card(const char *s, size_t n) {
    char d[20];
    size_t k = digits_of(s, n, d, sizeof d);
    return k >= 12 && k <= 19 && slm_guard_luhn(d, k) && slm_guard_card_issuer(d, k);
}

static bool check_entropy(const char *s, size_t n) {
    bool lower = false, upper = false, digit = false;
    for (size_t i = 0; i < n; i++) {
        lower |= s[i] >= 'a' && s[i] <= 'z';
        upper |= s[i] >= 'A' && s[i] <= 'Z';
        digit |= is_digit(s[i]);
    }
    /* Random base64/hex of this length has well over 3.5 bits per character; words,
     * identifiers and paths joined by '_' or '-' rarely mix all three classes that richly. */
    return digit && (lower || upper) && (lower + upper + digit) >= 2 && slm_guard_entropy(s, n) >= 3.5;
}

/* Apply defs[i].check to the span [*s, *e) (may trim it); returns the score factor:
 * < 0 rejects, otherwise the base score to use. */
static float run_check(const pattern_def *def, const char *text, size_t *s, size_t *e) {
    const char *m = text + *s;
    size_t n = *e - *s;
    switch (def->check) {
    case CHECK_NONE: return def->base;
    case CHECK_CARD: return check_card(m, n) ? def->base : -1.0f;
    case CHECK_IBAN: {
        size_t used;
        if (!slm_guard_iban(m, n, &used)) return -1.0f;
        *e = *s + used;
        return def->base;
    }
    case CHECK_SSN: {
        char d[10];
        size_t k = digits_of(m, n, d, 9);
        if (k != 9 || !slm_guard_ssn(d, 9)) return -1.0f;
        return n == 9 ? def->base - 0.3f : def->base;  /* bare 9 digits: needs context */
    }
    case CHECK_IPV6: {
        char buf[64];
        unsigned char addr[16];
        if (n >= sizeof buf) return -1.0f;
        memcpy(buf, m, n);
        buf[n] = '\0';
        return inet_pton(AF_INET6, buf, addr) == 1 ? def->base : -1.0f;
    }
    case CHECK_URL:
        while (*e > *s && strchr(".,;:!?)'\"", text[*e - 1])) (*e)--;
        return *e - *s > 7 ? def->base : -1.0f;
    case CHECK_ENTROPY: return check_entropy(m, n) ? def->base : -1.0f;
    case CHECK_AGE: {
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) v = v * 10 + (unsigned)(m[i] - '0');
        return v <= 130 ? def->base : -1.0f;
    }
    case CHECK_PHONE: {
        char d[16];
        size_t k = digits_of(m, n, d, 15);
        return k >= 7 && k <= 15 ? def->base : -1.0f;
    }
    case CHECK_MONTH: {
        /* Only a month word: "May" and lower-case months are too often ordinary words. */
        bool has_digit = false;
        for (size_t i = 0; i < n; i++) has_digit |= is_digit(m[i]);
        if (has_digit) return def->base;
        if (n < 3 || m[0] < 'A' || m[0] > 'Z' || !memcmp(m, "May", 3) || !memcmp(m, "Mar", 3))
            return -1.0f;
        return def->base - 0.25f;
    }
    case CHECK_LICENSE: {
        char d[20];
        size_t k = digits_of(m, n, d, sizeof d);
        return k >= 5 ? def->base : -1.0f;
    }
    }
    return -1.0f;
}

/* ---- matching -------------------------------------------------------------------------------- */

/* Does ctx match in the window before [start, end) or just after it? */
static bool context_near(const pcre2_code *ctx, const char *text, size_t len, size_t start,
                         size_t end, pcre2_match_data *md) {
    size_t from = start > CONTEXT_WINDOW ? start - CONTEXT_WINDOW : 0;
    size_t to = len - end > CONTEXT_AFTER ? end + CONTEXT_AFTER : len;
    /* Move to character boundaries so that each subject stays valid UTF-8. */
    while (from < start && ((unsigned char)text[from] & 0xC0) == 0x80) from++;
    while (to < len && ((unsigned char)text[to] & 0xC0) == 0x80) to++;
    if (pcre2_match(ctx, (PCRE2_SPTR)(text + from), start - from, 0, PCRE2_NO_UTF_CHECK, md, NULL) >= 0)
        return true;
    return pcre2_match(ctx, (PCRE2_SPTR)(text + end), to - end, 0, PCRE2_NO_UTF_CHECK, md, NULL) >= 0;
}

slm_status slm_guard_patterns_run(const guard_patterns *p, const char *text, size_t len,
                                  uint32_t types, guard_cands *c, char *err) {
    slm_status st = SLM_OK;
    pcre2_match_data *md = pcre2_match_data_create(p->max_groups + 1, p->gctx);
    pcre2_match_data *cmd = pcre2_match_data_create(1, p->gctx);
    if (!md || !cmd) {
        st = slm_errf(err, SLM_ERR_NOMEM, "match data");
        goto done;
    }
    for (size_t i = 0; i < NDEFS; i++) {
        const pattern_def *def = &defs[i];
        if (!(types & (1u << def->type))) continue;
        size_t off = 0;
        while (off <= len) {
            int rc = pcre2_match(p->re[i], (PCRE2_SPTR)text, len, off, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                /* Skipping a detector would let its data through: report instead, so that
                 * the caller blocks the request. */
                st = slm_errf(err, rc == PCRE2_ERROR_NOMEMORY ? SLM_ERR_NOMEM : SLM_ERR_LIMIT,
                              "%s detector: PCRE2 error %d", slm_pii_type_name(def->type), rc);
                goto done;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t whole_end = ov[1];
            size_t s = ov[2 * def->group], e = ov[2 * def->group + 1];
            if (s != PCRE2_UNSET && e > s) {
                float score = run_check(def, text, &s, &e);
                if (score >= 0.0f && e > s) {
                    if (p->ctx[i] && context_near(p->ctx[i], text, len, s, e, cmd)) score += def->boost;
                    if (score > 1.0f) score = 1.0f;
                    if ((st = slm_guard_cands_push(c, def->type, s, e, score, false, err))) goto done;
                }
            }
            /* Continue after the match; step one character past an empty match. */
            if (whole_end > off) off = whole_end;
            else {
                off++;
                while (off < len && ((unsigned char)text[off] & 0xC0) == 0x80) off++;
            }
        }
    }
done:
    pcre2_match_data_free(md);
    pcre2_match_data_free(cmd);
    return st;
}
