/* tokenizer/tok_wpm.c: WordPiece (placeholder while the Unicode tables are generated). */
#include "tokenizer/tok_internal.h"

slm_status tok_wpm_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out) {
    (void)t, (void)text, (void)len, (void)out;
    return SLM_ERR_UNSUPPORTED;
}
