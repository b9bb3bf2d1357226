/*
 * fuzz/fuzz_head_file.c: libFuzzer target for the head file loader (src/head/head_io.c).
 *
 * A mutated file almost never passes the SHA-256 check, which would keep the fuzzer at the
 * door; so each input is loaded twice: as is (must fail cleanly or succeed), and with a
 * correct checksum appended, which sends it into the field parser and its limits. When a
 * head loads, a few texts are classified and the head is saved and loaded again, which
 * must succeed and give the same prediction, or the target aborts.
 *
 * Seeds: fuzz/seeds/fuzz_head_file/ (a small head trained by tests/test_head.c's data).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "slmesh/head.h"

#define FUZZ_MAX_INPUT (1u << 20) /* longer inputs add nothing but time */

static void exercise(const slm_head *h) {
    static const char *const texts[] = {"", "I lost my card", "\xC3\x89T\xC3\x89 \xE4\xB8\xAD", "a b c d e f g"};
    char err[SLM_ERR_LEN], path[] = "/tmp/fuzz_head_XXXXXX";
    float probs[SLM_HEAD_MAX_LABELS];
    slm_head_prediction p, q;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        slm_status st = slm_head_predict(h, texts[i], strlen(texts[i]), probs, &p, err);
        if (st != SLM_OK && slm_head_embed_dim(h) == 0) abort(); /* n-gram heads always predict */
    }
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    slm_head *g = NULL;
    if (slm_head_save(h, path, err) != SLM_OK || slm_head_load(path, &g, err) != SLM_OK) abort();
    if (slm_head_embed_dim(h) == 0) {
        if (slm_head_predict(h, "card", 4, NULL, &p, err) != SLM_OK ||
            slm_head_predict(g, "card", 4, NULL, &q, err) != SLM_OK || p.label != q.label ||
            p.confidence != q.confidence)
            abort();
    }
    slm_head_destroy(g);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[SLM_ERR_LEN];
    slm_head *h = NULL;
    unsigned int n = 0;
    if (size > FUZZ_MAX_INPUT) return 0;
    if (slm_head_load_mem(data, size, &h, err) == SLM_OK) {
        exercise(h);
        slm_head_destroy(h);
    }
    uint8_t *buf = malloc(size + 32);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    if (EVP_Digest(buf, size, buf + size, &n, EVP_sha256(), NULL) != 1) abort();
    if (slm_head_load_mem(buf, size + 32, &h, err) == SLM_OK) {
        exercise(h);
        slm_head_destroy(h);
    }
    free(buf);
    return 0;
}
