/*
 * head/calib.h: confidence calibration of task heads: temperature scaling fitted on
 * validation logits, expected calibration error, and the escalation threshold.
 *
 * Temperature scaling divides every logit by one T > 0 chosen to minimise the validation
 * negative log-likelihood (Guo et al., 2017); it keeps the arg max, so accuracy does not
 * change, and has one parameter, so a few hundred validation examples are enough.
 * ECE uses SLM_HEAD_ECE_BINS equal-width bins of the top probability.
 * Thread-safety: pure functions. Non-goals: isotonic or per-class calibration.
 */
#ifndef SLMESH_HEAD_CALIB_H
#define SLMESH_HEAD_CALIB_H

#include <stddef.h>
#include <stdint.h>

#define SLM_HEAD_ECE_BINS 15
#define SLM_HEAD_TEMP_MIN 0.01 /* search range of T: far beyond any sensible fit */
#define SLM_HEAD_TEMP_MAX 100.0

/* Mean NLL of softmax(logits / T) for n examples of k logits with labels y. */
double slm_head_calib_nll(const float *logits, const uint32_t *y, size_t n, uint32_t k, double T);
/* T in [SLM_HEAD_TEMP_MIN, SLM_HEAD_TEMP_MAX] minimising slm_head_calib_nll (golden section
 * on log T; the NLL is convex in 1/T). */
double slm_head_calib_fit(const float *logits, const uint32_t *y, size_t n, uint32_t k);
/* ECE of top probabilities conf[i] with correct[i] in {0,1}. */
double slm_head_calib_ece(const float *conf, const uint8_t *correct, size_t n);
/* Largest threshold t among scores[0..n) such that at most floor(rate * n) scores are
 * below t (scores is sorted in place). Escalating "score < t" then escalates at most that
 * share of these (in-scope) examples. Returns -INFINITY when n == 0. */
double slm_head_calib_threshold(float *scores, size_t n, double rate);

#endif /* SLMESH_HEAD_CALIB_H */
