/*
 * bench/bench_util.h: what the micro-benchmarks share: synthetic inputs from a fixed seed
 * (xorshift64, so runs are comparable) and thread CPU time (the build machine is shared;
 * CPU time is what a kernel costs the thread that runs it, whatever else runs).
 * Header-only: every benchmark is one executable. Not for tests or library code.
 */
#ifndef SLMESH_BENCH_UTIL_H
#define SLMESH_BENCH_UTIL_H

#include <math.h>
#include <stdint.h>
#include <time.h>

#define BENCH_SEED 0x9E3779B97F4A7C15ull

/* Uniform in (0, 1); *state is the generator (start it at BENCH_SEED). */
static inline double bench_uniform(uint64_t *state) {
    uint64_t r = *state;
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    *state = r;
    return ((double)(r >> 11) + 0.5) * 0x1.0p-53;
}

/* Normal(0, 1) by Box-Muller. */
static inline float bench_normal(uint64_t *state) {
    const double u = bench_uniform(state), w = bench_uniform(state);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * w));
}

/* Thread CPU time in microseconds. */
static inline double bench_cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

#endif /* SLMESH_BENCH_UTIL_H */
