/*
 * quant/quant.c: the type table (names, block layouts) and the lookups over it.
 *
 * The table is indexed by type id; ids the ecosystem retired are empty entries. Kernel
 * pointers are filled for the types slmesh computes with; the others (the IQ1/IQ2/IQ3 and
 * ternary families) are known only by size so that a file containing them opens and the
 * model loader can name the tensor and type it cannot use.
 *
 * The pointers are the scalar kernels (the specification), defined by family in half.c
 * (F32/F16/BF16), quant_legacy.c (Q4_0..Q8_1), quant_k.c and quantize_k.c (K types) and
 * quant_iq.c (IQ4_NL/XS); the per-ISA sets built over them are in kernels.c.
 * Thread-safety: the table is immutable. Non-goals: choosing kernels (kernels.c does).
 */
#include "quant/quant.h"

#include <strings.h>

#include "core/core.h"
#include "quant/blocks.h"

/* Block byte sizes are those of the GGUF ecosystem's block structs: blocks.h
 * static_asserts each struct's size, and the entries with kernels take sizeof(struct). */
static const slm_type_traits type_table[SLM_TYPE_COUNT] = {
    [SLM_TYPE_F32] = {.name = "f32", .block_size = 1, .type_size = sizeof(float), .vec_dot_type = SLM_TYPE_F32,
        .to_float = slm_quant_f32_to_float, .from_float = slm_quant_f32_from_float,
        .vec_dot = slm_quant_vec_dot_f32},
    [SLM_TYPE_F16] = {.name = "f16", .block_size = 1, .type_size = sizeof(uint16_t), .vec_dot_type = SLM_TYPE_F16,
        .to_float = slm_quant_f16_to_float, .from_float = slm_quant_f16_from_float,
        .vec_dot = slm_quant_vec_dot_f16},
    [SLM_TYPE_Q4_0] = {.name = "q4_0", .block_size = 32, .type_size = sizeof(slm_block_q4_0), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_0,
        .to_float = slm_quant_q4_0_to_float, .from_float = slm_quant_q4_0_from_float,
        .vec_dot = slm_quant_vec_dot_q4_0_q8_0},
    [SLM_TYPE_Q4_1] = {.name = "q4_1", .block_size = 32, .type_size = sizeof(slm_block_q4_1), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_1,
        .to_float = slm_quant_q4_1_to_float, .from_float = slm_quant_q4_1_from_float,
        .vec_dot = slm_quant_vec_dot_q4_1_q8_1},
    [SLM_TYPE_Q5_0] = {.name = "q5_0", .block_size = 32, .type_size = sizeof(slm_block_q5_0), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_0,
        .to_float = slm_quant_q5_0_to_float, .from_float = slm_quant_q5_0_from_float,
        .vec_dot = slm_quant_vec_dot_q5_0_q8_0},
    [SLM_TYPE_Q5_1] = {.name = "q5_1", .block_size = 32, .type_size = sizeof(slm_block_q5_1), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_1,
        .to_float = slm_quant_q5_1_to_float, .from_float = slm_quant_q5_1_from_float,
        .vec_dot = slm_quant_vec_dot_q5_1_q8_1},
    [SLM_TYPE_Q8_0] = {.name = "q8_0", .block_size = 32, .type_size = sizeof(slm_block_q8_0), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_0,
        .to_float = slm_quant_q8_0_to_float, .from_float = slm_quant_q8_0_from_float,
        .vec_dot = slm_quant_vec_dot_q8_0_q8_0},
    [SLM_TYPE_Q8_1] = {.name = "q8_1", .block_size = 32, .type_size = sizeof(slm_block_q8_1), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_1,
        .to_float = slm_quant_q8_1_to_float, .from_float = slm_quant_q8_1_from_float,
        .vec_dot = slm_quant_vec_dot_q8_1_q8_1},
    [SLM_TYPE_Q2_K] = {.name = "q2_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q2_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q2_k_to_float, .from_float = slm_quant_q2_k_from_float,
        .vec_dot = slm_quant_vec_dot_q2_k_q8_k},
    [SLM_TYPE_Q3_K] = {.name = "q3_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q3_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q3_k_to_float, .from_float = slm_quant_q3_k_from_float,
        .vec_dot = slm_quant_vec_dot_q3_k_q8_k},
    [SLM_TYPE_Q4_K] = {.name = "q4_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q4_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q4_k_to_float, .from_float = slm_quant_q4_k_from_float,
        .vec_dot = slm_quant_vec_dot_q4_k_q8_k},
    [SLM_TYPE_Q5_K] = {.name = "q5_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q5_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q5_k_to_float, .from_float = slm_quant_q5_k_from_float,
        .vec_dot = slm_quant_vec_dot_q5_k_q8_k},
    [SLM_TYPE_Q6_K] = {.name = "q6_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q6_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q6_k_to_float, .from_float = slm_quant_q6_k_from_float,
        .vec_dot = slm_quant_vec_dot_q6_k_q8_k},
    [SLM_TYPE_Q8_K] = {.name = "q8_k", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_q8_k), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_q8_k_to_float, .from_float = slm_quant_q8_k_from_float,
        .vec_dot = slm_quant_vec_dot_q8_k_q8_k},
    [SLM_TYPE_IQ2_XXS] = {.name = "iq2_xxs", .block_size = SLM_QK_K, .type_size = 66, .quantized = true},
    [SLM_TYPE_IQ2_XS] = {.name = "iq2_xs", .block_size = SLM_QK_K, .type_size = 74, .quantized = true},
    [SLM_TYPE_IQ3_XXS] = {.name = "iq3_xxs", .block_size = SLM_QK_K, .type_size = 98, .quantized = true},
    [SLM_TYPE_IQ1_S] = {.name = "iq1_s", .block_size = SLM_QK_K, .type_size = 50, .quantized = true},
    [SLM_TYPE_IQ4_NL] = {.name = "iq4_nl", .block_size = 32, .type_size = sizeof(slm_block_iq4_nl), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_0,
        .to_float = slm_quant_iq4_nl_to_float, .from_float = slm_quant_iq4_nl_from_float,
        .vec_dot = slm_quant_vec_dot_iq4_nl_q8_0},
    [SLM_TYPE_IQ3_S] = {.name = "iq3_s", .block_size = SLM_QK_K, .type_size = 110, .quantized = true},
    [SLM_TYPE_IQ2_S] = {.name = "iq2_s", .block_size = SLM_QK_K, .type_size = 82, .quantized = true},
    [SLM_TYPE_IQ4_XS] = {.name = "iq4_xs", .block_size = SLM_QK_K, .type_size = sizeof(slm_block_iq4_xs), .quantized = true, .vec_dot_type = SLM_TYPE_Q8_K,
        .to_float = slm_quant_iq4_xs_to_float, .from_float = slm_quant_iq4_xs_from_float,
        .vec_dot = slm_quant_vec_dot_iq4_xs_q8_k},
    [SLM_TYPE_I8] = {.name = "i8", .block_size = 1, .type_size = 1},
    [SLM_TYPE_I16] = {.name = "i16", .block_size = 1, .type_size = 2},
    [SLM_TYPE_I32] = {.name = "i32", .block_size = 1, .type_size = 4},
    [SLM_TYPE_I64] = {.name = "i64", .block_size = 1, .type_size = 8},
    [SLM_TYPE_F64] = {.name = "f64", .block_size = 1, .type_size = 8},
    [SLM_TYPE_IQ1_M] = {.name = "iq1_m", .block_size = SLM_QK_K, .type_size = 56, .quantized = true},
    [SLM_TYPE_BF16] = {.name = "bf16", .block_size = 1, .type_size = sizeof(uint16_t), .vec_dot_type = SLM_TYPE_BF16,
        .to_float = slm_quant_bf16_to_float, .from_float = slm_quant_bf16_from_float,
        .vec_dot = slm_quant_vec_dot_bf16},
    [SLM_TYPE_TQ1_0] = {.name = "tq1_0", .block_size = SLM_QK_K, .type_size = 54, .quantized = true},
    [SLM_TYPE_TQ2_0] = {.name = "tq2_0", .block_size = SLM_QK_K, .type_size = 66, .quantized = true},
};

const slm_type_traits *slm_type_traits_of(slm_type type) {
    if ((unsigned)type >= SLM_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

const char *slm_type_name(slm_type type) {
    const slm_type_traits *tr = slm_type_traits_of(type);
    return tr ? tr->name : "unknown";
}

bool slm_type_from_name(const char *name, slm_type *out) {
    for (int i = 0; i < SLM_TYPE_COUNT; i++) {
        if (type_table[i].name && !strcasecmp(type_table[i].name, name)) {
            *out = (slm_type)i;
            return true;
        }
    }
    return false;
}

bool slm_type_row_bytes(slm_type type, int64_t n, size_t *out) {
    const slm_type_traits *tr = slm_type_traits_of(type);
    if (!tr || n < 0 || n % tr->block_size != 0) return false;
    return slm_mul_size((size_t)(n / tr->block_size), tr->type_size, out);
}
