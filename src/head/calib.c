/*
 * head/calib.c: see calib.h.
 * Thread-safety: pure. Non-goals: calibration of anything but the top-label confidence.
 */
#include "head/calib.h"

#include <math.h>
#include <stdlib.h>

#define GOLDEN_ITERS 60 /* shrinks the log-T interval by 0.618^60: far below float noise */

double slm_head_calib_nll(const float *logits, const uint32_t *y, size_t n, uint32_t k, double T) {
    double total = 0.0;
    if (n == 0) return 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *l = logits + i * k;
        double mx = l[0];
        for (uint32_t j = 1; j < k; j++) mx = l[j] > mx ? l[j] : mx;
        double z = 0.0;
        for (uint32_t j = 0; j < k; j++) z += exp((l[j] - mx) / T);
        total += log(z) - (l[y[i]] - mx) / T;
    }
    return total / (double)n;
}

double slm_head_calib_fit(const float *logits, const uint32_t *y, size_t n, uint32_t k) {
    const double phi = 0.6180339887498949;
    double a = log(SLM_HEAD_TEMP_MIN), b = log(SLM_HEAD_TEMP_MAX);
    if (n == 0) return 1.0;
    double c = b - phi * (b - a), d = a + phi * (b - a);
    double fc = slm_head_calib_nll(logits, y, n, k, exp(c));
    double fd = slm_head_calib_nll(logits, y, n, k, exp(d));
    for (int it = 0; it < GOLDEN_ITERS; it++) {
        if (fc <= fd) {
            b = d; d = c; fd = fc;
            c = b - phi * (b - a);
            fc = slm_head_calib_nll(logits, y, n, k, exp(c));
        } else {
            a = c; c = d; fc = fd;
            d = a + phi * (b - a);
            fd = slm_head_calib_nll(logits, y, n, k, exp(d));
        }
    }
    return exp(0.5 * (a + b));
}

double slm_head_calib_ece(const float *conf, const uint8_t *correct, size_t n) {
    double sum_conf[SLM_HEAD_ECE_BINS] = {0}, sum_acc[SLM_HEAD_ECE_BINS] = {0};
    size_t count[SLM_HEAD_ECE_BINS] = {0};
    if (n == 0) return 0.0;
    for (size_t i = 0; i < n; i++) {
        int bin = (int)(conf[i] * SLM_HEAD_ECE_BINS);
        if (bin >= SLM_HEAD_ECE_BINS) bin = SLM_HEAD_ECE_BINS - 1;
        if (bin < 0) bin = 0;
        sum_conf[bin] += conf[i];
        sum_acc[bin] += correct[i];
        count[bin]++;
    }
    double ece = 0.0;
    for (int b = 0; b < SLM_HEAD_ECE_BINS; b++)
        if (count[b]) ece += fabs(sum_acc[b] - sum_conf[b]) / (double)n;
    return ece;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double slm_head_calib_threshold(float *scores, size_t n, double rate) {
    if (n == 0) return -INFINITY;
    qsort(scores, n, sizeof *scores, cmp_float);
    size_t allowed = (size_t)floor(rate * (double)n);
    if (allowed >= n) return INFINITY;
    /* scores[allowed] is the smallest value that leaves `allowed` or fewer below it */
    return scores[allowed];
}
