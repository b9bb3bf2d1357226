/*
 * tokenizer/tok_unicode.h: the Unicode character data WordPiece normalisation needs, as
 * sorted tables generated into tok_unicode_data.c by gen_unicode_data.py, and lookups.
 * Thread-safety: constant data, pure functions. Non-goals: general Unicode services.
 */
#ifndef SLMESH_TOK_UNICODE_H
#define SLMESH_TOK_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tok_uc_range { uint32_t first, last; } tok_uc_range;
typedef struct tok_uc_map { uint32_t from, to; } tok_uc_map;
typedef struct tok_uc_nfd_run { uint32_t first, last, base; } tok_uc_nfd_run;

extern const tok_uc_range tok_uc_control[];
extern const size_t tok_uc_control_n;
extern const tok_uc_range tok_uc_punct[];
extern const size_t tok_uc_punct_n;
extern const tok_uc_map tok_uc_lower[];
extern const size_t tok_uc_lower_n;
extern const tok_uc_nfd_run tok_uc_nfd[];
extern const size_t tok_uc_nfd_n;

bool tok_uc_is_control(uint32_t cp);     /* general category Cc, Cf, Co or Cs */
bool tok_uc_is_punct(uint32_t cp);       /* general category P* */
uint32_t tok_uc_tolower(uint32_t cp);    /* first code point of the lower-case form */
uint32_t tok_uc_nfd_first(uint32_t cp);  /* first code point of the NFD decomposition */

#endif /* SLMESH_TOK_UNICODE_H */
