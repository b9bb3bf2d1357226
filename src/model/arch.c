/*
 * model/arch.c: the table of supported architectures. A new architecture of the same
 * family (a pre-norm decoder with RMSNorm, RoPE, GQA attention and a SwiGLU FFN) is one row
 * here plus, when it has something new (QK-norm for qwen3, GeGLU and embedding scaling for
 * gemma, fused QKV for phi3), a flag and a small hook in forward.c.
 *
 * Values: defaults are those of the reference runtime when the GGUF omits the key.
 * Thread-safety: static constant data. Non-goals: encoder models, MoE, recurrent models.
 */
#include <string.h>

#include "model/model.h"

/* The reference runtime's default RMSNorm epsilon and RoPE base. */
#define DEFAULT_RMS_EPS   1e-5f
#define DEFAULT_ROPE_BASE 10000.0f

static const slm_arch arch_table[] = {
    /* Llama 2/3, TinyLlama, SmolLM/SmolLM2 (tied embeddings), Mistral. The converter
     * permutes Q/K so that adjacent-pair RoPE applies. */
    {.name = "llama", .rope_neox = false, .has_qkv_bias = false, .tied_output_ok = true,
     .default_rms_eps = DEFAULT_RMS_EPS, .default_rope_base = DEFAULT_ROPE_BASE},
    /* Qwen2/2.5: biases on q/k/v, NeoX RoPE (half-split pairs). */
    {.name = "qwen2", .rope_neox = true, .has_qkv_bias = true, .tied_output_ok = true,
     .default_rms_eps = 1e-6f, .default_rope_base = DEFAULT_ROPE_BASE},
    /* Qwen3 (dense): no biases; q and k heads are RMS-normalised before NeoX RoPE. */
    {.name = "qwen3", .rope_neox = true, .has_qk_norm = true, .tied_output_ok = true,
     .default_rms_eps = 1e-6f, .default_rope_base = DEFAULT_ROPE_BASE},
};

const slm_arch *slm_arch_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strlen(arch_table[i].name) == len && !memcmp(arch_table[i].name, name, len)) return &arch_table[i];
    return NULL;
}
