/*
 * model/act.h: conversion of activation rows to a weight's vec_dot_type, the way the
 * reference runtime's x86 matrix product converts its right-hand side.
 *
 * For Q8_0 and Q8_1 that is NOT the reference quantizer (quantize_row_q8_*_ref, which the
 * quant module's from_float reproduces for weights): the x86 build quantizes activations
 * with id = 127 / amax and rounds half to even (its SIMD path), where the reference
 * quantizer uses id = 1 / (amax / 127) and rounds half away from zero. The int8 values
 * differ in rare elements, and random-weight quantized models amplify that: with the
 * weight quantizer for activations, tiny-llama-q8_0's log-probabilities at position 0
 * differ from the reference by 0.06; with this one they match to 1e-5. Every other type
 * goes through the quant module's from_float.
 * Thread-safety: pure. Non-goals: SIMD (the quant module's, later).
 */
#ifndef SLMESH_MODEL_ACT_H
#define SLMESH_MODEL_ACT_H

#include <stdint.h>

#include "quant/quant.h"

/* Convert x[n] to type vt (a vec_dot_type other than F32) into dst. */
void slm_model_act_convert(slm_type vt, const float *x, void *dst, int64_t n);

#endif /* SLMESH_MODEL_ACT_H */
