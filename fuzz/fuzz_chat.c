/*
 * fuzz/fuzz_chat.c: libFuzzer target for chat templates (src/chat/chat.c).
 *
 * The whole input is given to slm_chat_template_detect (any bytes: a hostile GGUF's
 * template). Then it is cut at NUL bytes into messages whose first byte picks the role
 * (system/user/assistant, or an invalid one) and whose rest is the content, and the
 * conversation is rendered in every family with every combination of flags. A
 * rendering that succeeds must be NUL-terminated at the reported length and contain every
 * non-empty user message it was given (user text is never trimmed away entirely unless it
 * is all whitespace). Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "core/core.h"

#define MAX_MSGS 16 /* messages taken from one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    slm_chat_template t;
    char err[SLM_ERR_LEN];
    slm_status st = slm_chat_template_detect((const char *)data, size, &t, err);
    if (st == SLM_OK && slm_chat_template_info(t) == NULL) abort();

    char *copy = malloc(size + 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    static const char *roles[4] = {"system", "user", "assistant", "tool"};
    slm_chat_message msgs[MAX_MSGS];
    size_t n = 0, at = 0;
    while (at < size && n < MAX_MSGS) {
        size_t l = strlen(copy + at);
        msgs[n].role = roles[(unsigned char)copy[at] % 4];
        msgs[n].content = l ? copy + at + 1 : copy + at;
        n++;
        at += l + 1;
    }
    for (int f = 0; f < SLM_CHAT_TEMPLATE_COUNT; f++) {
        for (int flags = 0; flags < 8; flags++) { /* every combination of SLM_CHAT_* */
            char *out = NULL;
            size_t len = 0;
            st = slm_chat_render((slm_chat_template)f, msgs, n, flags, &out, &len, err);
            if (st != SLM_OK) {
                if (out) abort();
                continue;
            }
            if (strlen(out) != len) abort();
            for (size_t i = 0; i < n; i++) {
                const char *c = msgs[i].content;
                size_t k = 0;
                while (c[k] == ' ' || (c[k] >= '\t' && c[k] <= '\r')) k++;
                if (strcmp(msgs[i].role, "user") == 0 && c[k] && !strstr(out, c + k) && f != SLM_CHAT_LLAMA3 &&
                    f != SLM_CHAT_GEMMA && f != SLM_CHAT_LLAMA2_SYS_STRIP)
                    abort(); /* families that trim may drop trailing spaces: not checked there */
            }
            slm_free(out);
        }
    }
    free(copy);
    return 0;
}
