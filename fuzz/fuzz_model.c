/*
 * fuzz/fuzz_model.c: libFuzzer target for model loading and the forward pass.
 *
 * Each input is opened as a GGUF (over an aligned copy of exactly its length) and, when it
 * opens, validated as a model (slm_model_load_weights: architecture, hyper-parameters,
 * every tensor's presence, type, shape and alignment). A model that validates and is small
 * (so the fuzzer does not spend its time allocating) runs a 3-token forward pass over two
 * sequences with an F16 cache: whatever the weights (NaN, inf, huge), nothing may crash,
 * read out of bounds or leak. The same bytes are then opened as a mapped file (a memfd),
 * repacked for this CPU's kernels (model/repack.c) and run again: the logits must be the
 * same bits as the file layout's (any NaN equals any NaN: its sign and payload depend on
 * operand order, which the compiler may swap in the scalar tails).
 *
 * Seeds: fuzz/seeds/fuzz_model/ (written by tests/test_model_mini.c).
 */
#define _GNU_SOURCE /* memfd_create */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/model.h"

/* Run the forward pass only below this many weights per layer block and vocabulary rows. */
#define FUZZ_MAX_WORK (1 << 20)

/* The forward pass's logits (2 rows) into a new buffer, or NULL when too big or it fails. */
static float *run_forward(const slm_model *m) {
    const slm_hparams *hp = &m->hp;
    float *ret = NULL;
    if ((int64_t)hp->n_embd * hp->n_ff > FUZZ_MAX_WORK || (int64_t)hp->n_embd * hp->n_vocab > FUZZ_MAX_WORK ||
        (int64_t)hp->n_head * hp->head_dim * hp->n_embd > FUZZ_MAX_WORK)
        return NULL;
    slm_kv *kv = NULL;
    slm_fwd *f = NULL;
    float *logits = NULL;
    const slm_kv_params kp = {.type = SLM_TYPE_F16, .n_cells = 8, .n_layer = hp->n_layer,
                              .n_embd_kv = (int64_t)hp->n_head_kv * hp->head_dim, .n_seq_max = 2};
    if (slm_kv_create(&kp, &kv, NULL) || slm_fwd_create(m, 3, 8, SLM_TYPE_F16, 1, &f, NULL)) goto done;
    logits = malloc((size_t)hp->n_vocab * 2 * sizeof *logits);
    if (!logits) goto done;
    const int32_t tok[3] = {0, hp->n_vocab - 1, hp->n_vocab / 2}, pos[3] = {0, 1, 0}, seq[3] = {0, 0, 1};
    const int32_t out_idx[2] = {1, 2};
    int32_t cells[3];
    if (slm_kv_alloc(kv, 3, pos, seq, cells, NULL) == SLM_OK &&
        slm_model_forward(m, f, kv, NULL, 3, tok, pos, seq, cells, 2, out_idx, logits, NULL, NULL) == SLM_OK)
        ret = logits, logits = NULL;
done:
    free(logits);
    slm_fwd_destroy(f);
    slm_kv_destroy(kv);
    return ret;
}

/* The input as a mapped file, repacked: its logits must equal the unpacked ones (want). */
static void check_repacked(const uint8_t *data, size_t size, const float *want) {
    char path[64];
    int fd = memfd_create("fuzz_model", 0);
    if (fd < 0) return;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    slm_model m = {0};
    if ((size_t)write(fd, data, size) == size && slm_gguf_open(path, NULL, &m.gguf, NULL) == SLM_OK &&
        slm_model_load_weights(&m, NULL) == SLM_OK && slm_model_repack(&m, false, NULL) == SLM_OK) {
        float *got = run_forward(&m);
        for (size_t i = 0; got && i < (size_t)m.hp.n_vocab * 2; i++) /* NaNs may differ in sign and payload */
            if (memcmp(&got[i], &want[i], sizeof *got) != 0 && !(isnan(got[i]) && isnan(want[i]))) abort();
        free(got);
    }
    if (m.packed_map) munmap(m.packed_map, m.packed_size);
    slm_free(m.layers);
    slm_gguf_close(m.gguf);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    void *copy = malloc(size ? size : 1); /* malloc alignment, exact length */
    if (!copy) return 0;
    memcpy(copy, data, size);
    slm_model m = {0};
    if (slm_gguf_open_memory(copy, size, &m.gguf, NULL) == SLM_OK) {
        if (slm_model_load_weights(&m, NULL) == SLM_OK) {
            float *want = run_forward(&m);
            if (want) check_repacked(data, size, want);
            free(want);
        }
        slm_free(m.layers);
        slm_gguf_close(m.gguf);
    }
    free(copy);
    return 0;
}
