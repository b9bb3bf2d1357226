/*
 * guard/guard_checks.c: validators that turn a pattern match into a finding: UTF-8
 * well-formedness, the Luhn checksum and issuer ranges of payment cards, IBAN country
 * lengths and mod-97, US SSN area/group/serial rules, and the entropy of a token.
 *
 * Invariants: pure functions of their arguments; no allocation.
 * Thread-safety: all functions are reentrant.
 * Non-goals: checking that a card or account exists; BBAN-level national check digits.
 */
#include "guard/guard_int.h"

#include <math.h>
#include <string.h>

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

size_t slm_guard_utf8_check(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
        else return i;                      /* continuation byte, C0/C1 or F5..FF */
        if (len - i <= need) return i;       /* truncated */
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += need + 1;
    }
    return len;
}

uint32_t slm_guard_utf8_next(const char *s, size_t len, size_t *i) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[*i];
    size_t need = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    uint32_t cp = need == 0 ? c : need == 1 ? (c & 0x1F) : need == 2 ? (c & 0x0F) : (c & 0x07);
    size_t k = 1;
    for (; k <= need && *i + k < len; k++) cp = (cp << 6) | (p[*i + k] & 0x3F);
    *i += k;
    return cp;
}

/* ---- payment cards ---------------------------------------------------------------------------- */

bool slm_guard_luhn(const char *s, size_t n) {
    unsigned sum = 0, pos = 0;
    for (size_t i = n; i-- > 0;) {
        if (s[i] < '0' || s[i] > '9') continue;
        unsigned d = (unsigned)(s[i] - '0');
        if (pos++ & 1) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
    }
    return pos > 0 && sum % 10 == 0;
}

/* Issuer ranges: the first `plen` digits lie in [lo, hi] and the length in [minlen, maxlen]. */
typedef struct {
    unsigned plen, lo, hi;   /* prefix length and inclusive range */
    unsigned minlen, maxlen; /* valid numbers of digits */
} card_range;

static const card_range card_ranges[] = {
    {1, 4, 4, 13, 19},            /* Visa (13, 16, 19 in use) */
    {2, 51, 55, 16, 16},          /* Mastercard */
    {4, 2221, 2720, 16, 16},      /* Mastercard 2-series */
    {2, 34, 34, 15, 15},          /* American Express */
    {2, 37, 37, 15, 15},
    {4, 6011, 6011, 16, 19},      /* Discover */
    {3, 644, 649, 16, 19},
    {2, 65, 65, 16, 19},
    {3, 300, 305, 14, 19},        /* Diners Club */
    {4, 3095, 3095, 14, 19},
    {2, 36, 36, 14, 19},
    {2, 38, 39, 14, 19},
    {2, 35, 35, 16, 19},          /* JCB (3528-3589 assigned; generators use all of 35) */
    {4, 2131, 2131, 15, 15},
    {4, 1800, 1800, 15, 15},
    {2, 62, 62, 16, 19},          /* UnionPay */
    {2, 50, 50, 12, 19},          /* Maestro */
    {2, 56, 69, 12, 19},
};

bool slm_guard_card_issuer(const char *digits, size_t n) {
    for (size_t r = 0; r < sizeof card_ranges / sizeof card_ranges[0]; r++) {
        const card_range *cr = &card_ranges[r];
        if (n < cr->minlen || n > cr->maxlen || n < cr->plen) continue;
        unsigned v = 0;
        for (unsigned k = 0; k < cr->plen; k++) v = v * 10 + (unsigned)(digits[k] - '0');
        if (v >= cr->lo && v <= cr->hi) return true;
    }
    return false;
}

/* ---- IBAN ---------------------------------------------------------------------------------------- */

/* Country code and total IBAN length (ISO 13616 registry). */
static const struct { char cc[3]; unsigned char len; } iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
    {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
    {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
    {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22},
    {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28},
    {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

static int upper_ascii(int c) { return c >= 'a' && c <= 'z' ? c - 32 : c; }
static bool is_alnum_ascii(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool slm_guard_iban(const char *s, size_t n, size_t *used) {
    if (n < 4) return false;
    char cc[3] = {(char)upper_ascii((unsigned char)s[0]), (char)upper_ascii((unsigned char)s[1]), 0};
    unsigned want = 0;
    for (size_t k = 0; k < sizeof iban_lengths / sizeof iban_lengths[0]; k++)
        if (!memcmp(iban_lengths[k].cc, cc, 2)) want = iban_lengths[k].len;
    if (!want) return false;
    /* Collect exactly `want` alphanumerics; the IBAN ends there and must not run on. */
    char buf[40];
    unsigned got = 0;
    size_t i = 0;
    for (; i < n && got < want; i++) {
        if (s[i] == ' ') continue;
        if (!is_alnum_ascii((unsigned char)s[i])) return false;
        buf[got++] = (char)upper_ascii((unsigned char)s[i]);
    }
    if (got != want) return false;
    if (i < n && is_alnum_ascii((unsigned char)s[i])) return false;
    if (buf[2] < '0' || buf[2] > '9' || buf[3] < '0' || buf[3] > '9') return false;
    /* mod-97 over BBAN + country + check digits, letters as 10..35, streamed. */
    unsigned rem = 0;
    for (unsigned k = 0; k < want; k++) {
        char c = buf[(k + 4) % want];
        if (c >= '0' && c <= '9') rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
    }
    if (rem != 1) return false;
    *used = i;
    return true;
}

/* ---- US SSN ---------------------------------------------------------------------------------------- */

bool slm_guard_ssn(const char *d, size_t n) {
    if (n != 9) return false;
    unsigned area = (unsigned)((d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0'));
    unsigned group = (unsigned)((d[3] - '0') * 10 + (d[4] - '0'));
    bool serial_zero = !memcmp(d + 5, "0000", 4);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial_zero) return false;
    /* Numbers printed on sample cards and in advertising. */
    if (!memcmp(d, "078051120", 9) || !memcmp(d, "219099999", 9) || !memcmp(d, "123456789", 9))
        return false;
    bool same = true;
    for (size_t k = 1; k < 9; k++) same = same && d[k] == d[0];
    return !same;
}

/* ---- entropy -------------------------------------------------------------------------------------------- */

double slm_guard_entropy(const char *s, size_t n) {
    if (n == 0) return 0.0;
    unsigned counts[256] = {0};
    for (size_t i = 0; i < n; i++) counts[(unsigned char)s[i]]++;
    double h = 0.0;
    for (unsigned c = 0; c < 256; c++) {
        if (!counts[c]) continue;
        double p = (double)counts[c] / (double)n;
        h -= p * log2(p);
    }
    return h;
}
