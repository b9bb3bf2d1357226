/*
 * quant/act.h (internal): the scalar activation quantizers, i.e. the specification of the
 * kernel sets' `act` entries for Q8_0 and Q8_1 (kernels.h: slm_quant_act_convert).
 *
 * Activations (the right-hand side of a matrix product) are converted the way the
 * reference runtime's x86 matrix product converts them, which for Q8_0 and Q8_1 is NOT
 * its reference quantizer (quantize_row_q8_*_ref, which the type table's from_float
 * reproduces for weights): the x86 build quantizes activations with id = 127 / amax and
 * rounds half to even (its SIMD path), where the reference quantizer uses
 * id = 1 / (amax / 127) and rounds half away from zero. The int8 values differ in rare
 * elements, and random-weight quantized models amplify that: with the weight quantizer
 * for activations, tiny-llama-q8_0's log-probabilities at position 0 differ from the
 * reference by 0.06; with this one they match to 1e-5. Every other type's activations go
 * through from_float.
 * Block layouts (the GGUF ecosystem's): Q8_0 = f16 d, int8 qs[32] (34 bytes);
 * Q8_1 = f16 d, f16 s = d * sum(qs), int8 qs[32] (36 bytes). Values x = d * q.
 * Thread-safety: pure. Non-goals: SIMD (the ISA files').
 */
#ifndef SLMESH_QUANT_ACT_H
#define SLMESH_QUANT_ACT_H

#include <stdint.h>

/* x[n] (n a multiple of 32) into n / 32 Q8_0 / Q8_1 blocks at dst. */
void slm_quant_act_q8_0(const float *x, void *dst, int64_t n);
void slm_quant_act_q8_1(const float *x, void *dst, int64_t n);

#endif /* SLMESH_QUANT_ACT_H */
