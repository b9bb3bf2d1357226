/*
 * guard/guard_lexicon.h: word classes used as tagger features (see guard_lexicon.c).
 * Thread-safety: an index is immutable after creation and may be shared.
 */
#ifndef SLMESH_GUARD_LEXICON_H
#define SLMESH_GUARD_LEXICON_H

#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

typedef enum {
    GUARD_LEX_TITLE,     /* honorifics: mr, dr, frau */
    GUARD_LEX_JOB,       /* job words: clerk, engineer */
    GUARD_LEX_STREET,    /* street words: street, rue, vej, apt */
    GUARD_LEX_ORG,       /* organisation words: inc, gmbh, agency */
    GUARD_LEX_CALENDAR,  /* weekdays, months */
    GUARD_LEX_PLACE,     /* countries, large cities, place words */
    GUARD_LEX_NRP,       /* nationalities, religions, political groups */
    GUARD_LEX_FIRST,     /* common first names */
    GUARD_LEX_COMMON,    /* common English words */
    GUARD_LEX_BRAND,     /* well-known companies and brands */
    GUARD_LEX_COUNT
} guard_lex_class;

typedef struct guard_lexicon guard_lexicon;

slm_status slm_guard_lexicon_create(guard_lexicon **out, char *err);
void slm_guard_lexicon_destroy(guard_lexicon *lx);
/* Classes (bit set) of a lower-case word word[0..n); 0 when unknown. */
uint32_t slm_guard_lexicon_get(const guard_lexicon *lx, const char *word, size_t n);

#endif
