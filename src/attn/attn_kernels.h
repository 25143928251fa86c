/* Inner kernels of the tiled attention (internal to src/attn): scores of a
 * block of query rows against a tile of keys, exp-and-sum of a score row,
 * the online-softmax step of a tile, and the rescale-and-accumulate of
 * P x V. A scalar, an AVX2/FMA and an
 * AVX-512 table; attn_kernels_get() picks one at run time. */
#ifndef LETHE_ATTN_KERNELS_H
#define LETHE_ATTN_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/types.h"

typedef struct {
    const char *name;
    /* S[r * s_stride + j] = dot(q + r * q_stride, k + j * d) for r < nr, j < nk. */
    void (*scores)(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S, int s_stride);
    /* s[j] = exp(s[j] - m) for j < n (-inf gives 0); returns the sum. */
    float (*exp_sum)(float *s, int n, float m);
    /* o[r] = o[r] * alpha[r] + sum_j p[r * p_stride + j] * v[j] for r < nr
     * (o rows d floats apart, v rows d floats apart). */
    void (*pv)(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk, int d);
    /* The same two on a cold page read in place (kv/kv_cold.h), never
     * dequantised to memory: ty is LT_Q4_0 or LT_Q8_0 (blocks of 32 values,
     * one half-precision scale each), the page holds P slots (P a multiple
     * of 32) of d dims (d a multiple of 32 for pv_cold).
     * scores_cold: keys stored per channel, the page's [d][P] values in
     * blocks, so block e * P / 32 + b is dim e of slots [32 b, 32 b + 32):
     * S[r * s_stride + j] = dot(q + r * q_stride, key j) for r < nr and j
     * below nk rounded up to 32 (slots past nk are the page's padding).
     * pv_cold: as pv, v the page's [nk][d] values in blocks (one token's
     * row is d / 32 blocks).
     * stage: NULL, or scratch of 33 x d (scores_cold) / 33 x nk (pv_cold)
     * floats where a kernel may convert blocks once for many rows. */
    void (*scores_cold)(lt_type ty, const float *q, int q_stride, int nr, const void *k, int P, int nk, int d,
                        float *S, int s_stride, float *stage);
    void (*pv_cold)(lt_type ty, float *o, int nr, const float *alpha, const float *p, int p_stride, const void *v,
                    int nk, int d, float *stage);
    /* scores and pv on F16 keys / values (rows d halves apart) read in
     * place: equal, bit for bit, to converting them to F32 first. */
    void (*scores_f16)(const float *q, int q_stride, int nr, const uint16_t *k, int nk, int d, float *S, int s_stride);
    void (*pv_f16)(float *o, int nr, const float *alpha, const float *p, int p_stride, const uint16_t *v, int nk,
                   int d);
    /* The online-softmax step of a tile of scores (attn_softmax.h) with
     * this table's exp_sum: the same bits as calling it row by row. */
    void (*softmax)(float *s, int s_stride, int nr, int nk, float *m, float *l, float *alpha);
    /* Scores of a block of many rows (prefill): as scores (half 0: k F32
     * rows) / scores_f16 (half 1), but each score sums its d products in
     * order, dim 0 first, one FMA each where the CPU has FMA; the SIMD
     * kernels transpose the keys into kt (d x nk rounded up to 8 floats)
     * first, so that a register holds 8 keys' products and no score needs
     * the horizontal sum that dominates scores for short head dims. Writes
     * nk scores a row (s_stride >= nk). */
    void (*scores_many)(const float *q, int q_stride, int nr, const void *k, int half, int nk, int d, float *S,
                        int s_stride, float *kt);
    /* scores and pv on Q8_0 rows of a pool page read in place: each key /
     * value row its d / 32 blocks (d a multiple of 32), rows packed
     * (kv/kv_convert.h). Equal, bit for bit, to converting the rows to F32
     * first (each value scale x integer, one rounding) and calling scores /
     * pv. */
    void (*scores_q8)(const float *q, int q_stride, int nr, const void *k, int nk, int d, float *S, int s_stride);
    void (*pv_q8)(float *o, int nr, const float *alpha, const float *p, int p_stride, const void *v, int nk, int d);
} attn_kernels;

const attn_kernels *attn_kernels_scalar(void);
/* NULL when the CPU lacks AVX2/FMA or the dispatch level (tensor/cpu.h) is scalar. */
const attn_kernels *attn_kernels_avx2(void);
/* NULL below the AVX-512 level (or in a build without the AVX-512 files):
 * 16-wide scores / exp_sum / pv for head dims a multiple of 16, the AVX2
 * kernels for the rest and for the cold pages. */
const attn_kernels *attn_kernels_avx512(void);
/* The table in use: the AVX-512 one, else AVX2, when available unless forced off. */
const attn_kernels *attn_kernels_get(void);
/* Test hook: force the scalar kernels (true) or the run-time choice (false). */
void attn_force_scalar(bool on);

#endif
