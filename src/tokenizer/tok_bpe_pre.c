/*
 * tokenizer/tok_bpe_pre.c: the byte-level BPE pre-tokenizer: the regular expressions the
 * reference runtime (llama.cpp b4748, llm_tokenizer_bpe) applies per tokenizer.ggml.pre,
 * and the GPT-2 byte-to-unicode alphabet.
 *
 * How the reference splits (unicode_regex_split), reproduced here:
 *  - the text is decoded to code points (malformed bytes become U+FFFD, one per byte);
 *  - each regex of the list is applied in turn, separately inside every piece the previous
 *    regex produced; the text between two matches is kept as a piece of its own;
 *  - before matching, every non-ASCII whitespace code point is replaced by U+000B (vertical
 *    tab): the reference does this so that \s sees them, and it also means such characters
 *    match nothing else (e.g. U+3000 in deepseek-llm's explicit ranges);
 *  - `$` is the end of the piece (ECMAScript), hence PCRE2_DOLLAR_ENDONLY;
 *  - each word is re-encoded as UTF-8 and every byte mapped to the byte-level alphabet.
 * The reference approximates \p{L}, \p{N}, \p{P} with its own Unicode tables (or hand-written
 * matchers for the gpt-2 and llama3 patterns); PCRE2 with UCP uses Unicode's, which agree
 * for every character of the shared test vectors. Patterns are compiled once per tokenizer
 * (a pcre2_code is immutable and safe to share between threads; match data is per call).
 *
 * Thread-safety: immutable after creation. Non-goals: pre-tokenizers newer than b4748 and
 * the ones without test vectors whose regexes the reference leaves undocumented (viking,
 * chatglm).
 */
#include "tokenizer/tok_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "core/core.h"

#define TOK_PRE_MAX_REGEX 8 /* regexes per pre-tokenizer; the longest list has 6 */

/* ---- regex lists (sources: llama.cpp llm_tokenizer_bpe constructor) ------------------------ */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "           \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+" /* [一-龥ࠀ-一가-퟿]+ */

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const re_deepseek_coder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}", NULL};
/* The letter class below is the reference's, character for character; the six code points
 * that Unicode normalisation would change (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A)
 * are written as \x{...} so that no editor or tool can silently replace them. */
static const char *const re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    RE_CJK,
    "\\p{N}+",
    NULL};
static const char *const re_deepseek3[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_poro[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", NULL};
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+("
    "(?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_chameleon[] = {
    "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2, NULL};
static const char *const re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};

/* Flags the reference sets per name (clean_spaces defaults to true for BPE). */
enum { PRE_IGNORE_MERGES = 1, PRE_NO_CLEAN = 2, PRE_ADD_BOS = 4 };

static const struct pre_def {
    const char *name;
    const char *const *re;
    int flags;
} pre_defs[] = {
    {"default", re_default, 0},
    {"llama3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", re_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"dbrx", re_llama3, 0},
    {"smaug-bpe", re_llama3, 0},
    {"deepseek-llm", re_deepseek_llm, PRE_NO_CLEAN},
    {"deepseek-coder", re_deepseek_coder, PRE_NO_CLEAN},
    {"deepseek-v3", re_deepseek3, PRE_NO_CLEAN},
    {"falcon", re_falcon, 0},
    {"mpt", re_gpt2, 0},
    {"olmo", re_gpt2, 0},
    {"jais", re_gpt2, 0},
    {"gpt-2", re_gpt2, 0},
    {"phi-2", re_gpt2, 0},
    {"jina-es", re_gpt2, 0},
    {"jina-de", re_gpt2, 0},
    {"jina-v1-en", re_gpt2, 0},
    {"jina-v2-es", re_gpt2, 0},
    {"jina-v2-de", re_gpt2, 0},
    {"jina-v2-code", re_gpt2, 0},
    {"roberta-bpe", re_gpt2, 0},
    {"gigachat", re_gpt2, 0},
    {"starcoder", re_starcoder, 0},
    {"refact", re_starcoder, 0},
    {"codeshell", re_starcoder, 0},
    {"exaone", re_starcoder, 0},
    {"minerva-7b", re_starcoder, 0},
    {"command-r", re_starcoder, PRE_NO_CLEAN},
    {"smollm", re_starcoder, PRE_NO_CLEAN},
    {"qwen2", re_qwen2, PRE_NO_CLEAN},
    {"deepseek-r1-qwen", re_qwen2, PRE_NO_CLEAN},
    {"stablelm2", re_qwen2, 0},
    {"megrez", re_qwen2, 0},
    {"poro-chat", re_poro, PRE_NO_CLEAN},
    {"bloom", re_poro, 0},
    {"gpt3-finnish", re_poro, 0},
    {"tekken", re_tekken, PRE_IGNORE_MERGES | PRE_NO_CLEAN | PRE_ADD_BOS},
    {"chameleon", re_chameleon, PRE_NO_CLEAN | PRE_ADD_BOS},
    {"gpt-4o", re_gpt4o, PRE_NO_CLEAN},
};

/* ---- byte-level alphabet --------------------------------------------------------------------
 * GPT-2 maps every byte to a printable code point: bytes 33-126, 161-172 and 174-255 stand
 * for themselves; the other 68 (0-32, 127-160, 173), in order, become U+0100..U+0143. */

static bool byte_is_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static uint32_t byte_cp(unsigned b) {
    if (byte_is_printable(b)) return b;
    unsigned k = b <= 32 ? b : b <= 160 ? 33 + (b - 127) : 67; /* index among the 68 others */
    return 256 + k;
}

int tok_unicode_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned k = cp - 256;
    return k <= 32 ? (int)k : k <= 66 ? (int)(127 + (k - 33)) : 173;
}

size_t tok_byte_to_unicode(unsigned char b, char out[2]) { return tok_utf8_encode(byte_cp(b), out); }

/* ---- compile ------------------------------------------------------------------------------------ */

struct tok_bpe_pre {
    int n;                                /* regexes */
    pcre2_code *re[TOK_PRE_MAX_REGEX];    /* compiled, JIT where available */
    pcre2_general_context *gctx;          /* routes PCRE2's allocations through slm_malloc */
};

static void *pcre_alloc(size_t n, void *ctx) {
    (void)ctx;
    return slm_malloc(n);
}
static void pcre_free(void *p, void *ctx) {
    (void)ctx;
    slm_free(p);
}

slm_status tok_bpe_pre_create(const char *name, size_t name_len, struct tok_bpe_pre **out, tok_pre_opts *opts,
                              char *err) {
    const struct pre_def *d = NULL;
    *out = NULL;
    if (name_len == 0) {
        d = &pre_defs[0];
    } else {
        for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
            if (strlen(pre_defs[i].name) == name_len && !memcmp(pre_defs[i].name, name, name_len)) d = &pre_defs[i];
    }
    if (!d)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "pre-tokenizer '%.*s'", (int)(name_len < 64 ? name_len : 64), name);
    opts->ignore_merges = (d->flags & PRE_IGNORE_MERGES) != 0;
    opts->clean_spaces = !(d->flags & PRE_NO_CLEAN);
    opts->add_bos = (d->flags & PRE_ADD_BOS) != 0;

    struct tok_bpe_pre *p = slm_calloc(1, sizeof *p);
    if (!p) return slm_errf(err, SLM_ERR_NOMEM, "pre-tokenizer");
    p->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    pcre2_compile_context *cctx = p->gctx ? pcre2_compile_context_create(p->gctx) : NULL;
    if (!cctx) {
        tok_bpe_pre_destroy(p);
        return slm_errf(err, SLM_ERR_NOMEM, "pre-tokenizer");
    }
    slm_status st = SLM_OK;
    for (int i = 0; d->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)d->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, cctx);
        if (!re) {
            st = ec == PCRE2_ERROR_HEAP_FAILED
                     ? slm_errf(err, SLM_ERR_NOMEM, "pre-tokenizer regex")
                     : slm_errf(err, SLM_ERR_INTERNAL, "pre-tokenizer %s regex %d: PCRE2 error %d at %zu", d->name,
                                i, ec, (size_t)eo);
            break;
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; failure is fine */
        p->re[p->n++] = re;
    }
    pcre2_compile_context_free(cctx);
    if (st != SLM_OK) {
        tok_bpe_pre_destroy(p);
        return st;
    }
    *out = p;
    return SLM_OK;
}

void tok_bpe_pre_destroy(struct tok_bpe_pre *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    pcre2_general_context_free(p->gctx);
    slm_free(p);
}

/* ---- split ------------------------------------------------------------------------------------ */

typedef struct len_vec {
    size_t *v;
    size_t n, cap;
} len_vec;

static slm_status len_push(len_vec *l, size_t x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32, bytes;
        if (!slm_mul_size(cap, sizeof *l->v, &bytes)) return SLM_ERR_NOMEM;
        size_t *v = slm_realloc(l->v, bytes);
        if (!v) return SLM_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return SLM_OK;
}

/* Apply one regex inside every piece of *in (lengths in code points), writing *out. */
static slm_status apply_regex(const pcre2_code *re, pcre2_match_data *md, const char *mbuf, const size_t *boff,
                              const uint32_t *b2c, const len_vec *in, len_vec *out) {
    slm_status st;
    size_t start = 0;
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t L = in->v[k], sb = boff[start], slen = boff[start + L] - sb, last = 0, pos = 0;
        while (pos <= slen) {
            int rc = pcre2_match(re, (PCRE2_SPTR)(mbuf + sb), slen, pos, PCRE2_NO_UTF_CHECK | PCRE2_NOTEMPTY, md,
                                 NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) return rc == PCRE2_ERROR_NOMEMORY ? SLM_ERR_NOMEM : SLM_ERR_INTERNAL;
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = b2c[sb + ov[0]] - start, me = b2c[sb + ov[1]] - start;
            if (ms > last && (st = len_push(out, ms - last)) != SLM_OK) return st;
            if ((st = len_push(out, me - ms)) != SLM_OK) return st;
            last = me;
            pos = ov[1];
        }
        if (last < L && (st = len_push(out, L - last)) != SLM_OK) return st;
        start += L;
    }
    return SLM_OK;
}

slm_status tok_bpe_pre_split(const struct tok_bpe_pre *p, const char *text, size_t len,
                             slm_status (*fn)(void *ctx, const char *word, size_t len), void *ctx) {
    slm_status st = SLM_ERR_NOMEM;
    uint32_t *cps = NULL, *b2c = NULL;
    size_t *boff = NULL;
    char *mbuf = NULL, *word = NULL;
    len_vec a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    size_t mlen, n = 0;
    if (len == 0) return SLM_OK;
    if (len > (SIZE_MAX / 8) / sizeof *boff || len >= UINT32_MAX / 4) return SLM_ERR_LIMIT;

    /* code points, and the text PCRE2 sees: valid UTF-8, non-ASCII whitespace -> U+000B */
    cps = slm_malloc(len * sizeof *cps);
    boff = slm_malloc((len + 1) * sizeof *boff);
    mbuf = slm_malloc(4 * len);
    if (!cps || !boff || !mbuf) goto done;
    mlen = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = tok_utf8_decode((const unsigned char *)text, len, &i);
        uint32_t m = cp;
        if (cp >= 0x80 && tok_is_space(cp)) m = 0x0B;
        else if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) m = 0xFFFD;
        cps[n] = cp;
        boff[n++] = mlen;
        mlen += tok_utf8_encode(m, mbuf + mlen);
    }
    boff[n] = mlen;
    b2c = slm_malloc((mlen + 1) * sizeof *b2c);
    if (!b2c) goto done;
    for (size_t i = 0; i <= n; i++) b2c[boff[i]] = (uint32_t)i;

    md = pcre2_match_data_create(1, p->gctx);
    if (!md) goto done;
    if ((st = len_push(&a, n)) != SLM_OK) goto done;
    for (int r = 0; r < p->n; r++) {
        if ((st = apply_regex(p->re[r], md, mbuf, boff, b2c, &a, &b)) != SLM_OK) goto done;
        len_vec t = a;
        a = b;
        b = t;
    }

    /* words: original code points as UTF-8 (U+FFFD for what cannot be encoded), each byte
     * spelled in the byte-level alphabet (at most 2 bytes per byte) */
    word = slm_malloc(8 * len);
    st = SLM_ERR_NOMEM;
    if (!word) goto done;
    st = SLM_OK;
    size_t start = 0;
    for (size_t k = 0; k < a.n && st == SLM_OK; k++) {
        size_t wl = 0;
        for (size_t i = start; i < start + a.v[k]; i++) {
            char u[4];
            size_t ul = tok_utf8_encode(cps[i], u);
            for (size_t j = 0; j < ul; j++) {
                wl += tok_byte_to_unicode((unsigned char)u[j], word + wl);
            }
        }
        start += a.v[k];
        st = fn(ctx, word, wl);
    }
done:
    pcre2_match_data_free(md);
    slm_free(word);
    slm_free(a.v);
    slm_free(b.v);
    slm_free(b2c);
    slm_free(mbuf);
    slm_free(boff);
    slm_free(cps);
    return st;
}
