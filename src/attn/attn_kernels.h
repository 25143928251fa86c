/* Inner kernels of the tiled attention (internal to src/attn): scores of a
 * block of query rows against a tile of keys, exp-and-sum of a score row,
 * and the rescale-and-accumulate of P x V. A scalar and an AVX2/FMA table;
 * attn_kernels_get() picks one at run time. */
#ifndef LETHE_ATTN_KERNELS_H
#define LETHE_ATTN_KERNELS_H

#include <stdbool.h>

typedef struct {
    const char *name;
    /* S[r * s_stride + j] = dot(q + r * q_stride, k + j * d) for r < nr, j < nk. */
    void (*scores)(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S, int s_stride);
    /* s[j] = exp(s[j] - m) for j < n (-inf gives 0); returns the sum. */
    float (*exp_sum)(float *s, int n, float m);
    /* o[r] = o[r] * alpha[r] + sum_j p[r * p_stride + j] * v[j] for r < nr
     * (o rows d floats apart, v rows d floats apart). */
    void (*pv)(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk, int d);
} attn_kernels;

const attn_kernels *attn_kernels_scalar(void);
/* NULL when the CPU lacks AVX2/FMA. */
const attn_kernels *attn_kernels_avx2(void);
/* The table in use: AVX2 when available unless forced off. */
const attn_kernels *attn_kernels_get(void);
/* Test hook: force the scalar kernels (true) or the run-time choice (false). */
void attn_force_scalar(bool on);

#endif
