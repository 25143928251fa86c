/* AVX-512 kernels for the tiled attention: scores, exp-and-sum and P x V of
 * attn_kernels_avx2.c at 16 floats a register, for head dims a multiple of
 * 16 (other dims, and the cold pages, keep the AVX2 kernels). Same contracts
 * as the scalar kernels in attn_kernels.c.
 *
 * scores: blocks of 4 rows x 4 keys, 16 accumulators reduced together by
 * one tree (per dot product: the lanes 8 apart added, then 4, 2, 1 apart).
 * An edge block repeats its last row or key and stores only the real ones,
 * so a (row, key) always takes the same steps, whatever nr and nk are (the
 * shared-prefix decode, with more rows per call, equals the per-sequence
 * one bit for bit). pv: per output element the AVX2 kernel's own steps (o
 * times alpha, then one FMA per key in order), so the same bits as AVX2.
 * exp_sum: exp512 (exp256's steps on 16 lanes: the same values), summed in
 * 16 lanes. */
#include "attn/attn_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#include "attn/attn_rows.h"
#include "attn/attn_softmax.h"
#include "tensor/avx512_util.h"
#include "tensor/quant_impl.h"

/* The scale of the block holding element e of a Q8_0 row, broadcast. */
LT_INLINE __m512 row_scale(const int kind, const char *row, int e) {
    if (kind != ROW_Q8_0) return _mm512_setzero_ps();
    return _mm512_set1_ps(h2f(((const blk_q8_0 *)(const void *)row)[e >> 5].d));
}

/* Elements e..e+15 of a row as floats; sc: row_scale at e. */
LT_INLINE __m512 row16(const int kind, const char *row, int e, __m512 sc) {
    if (kind == ROW_F32) return _mm512_loadu_ps((const float *)(const void *)row + e);
    if (kind == ROW_F16) return _mm512_cvtph_ps(loadu256((const uint16_t *)(const void *)row + e));
    const blk_q8_0 *b = (const blk_q8_0 *)(const void *)row + (e >> 5);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(loadu128(b->qs + (e & 31)))), sc);
}

/* a[4r + j] (row r, key j) -> one vector, lane 4r + j = the sum of a[4r + j]. */
LT_INLINE __m512 reduce16(const __m512 a[16]) {
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* 8 apart: a[2i] in lanes 0-7, a[2i+1] in 8-15 */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 4 apart: quarter m holds a[4i + m] */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* 2 apart: quarter m holds a[8i + m], a[8i + 4 + m] */
        d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xee));
    /* 1 apart: lane 4m + i = a[4i + m]; then back to lane 4r + j */
    const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xdd));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
}

LT_INLINE void scores_body(const int kind, const float *q, int q_stride, int nr, const void *k, int nk, int d,
                           float *S, int s_stride) {
    float res[16];
    for (int r = 0; r < nr; r += 4) {
        const float *qr[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) qr[i] = q + (long)(r + i < nr ? r + i : nr - 1) * q_stride;
        for (int j = 0; j < nk; j += 4) {
            const char *kj[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) kj[i] = row_at(kind, k, j + i < nk ? j + i : nk - 1, d);
            __m512 a[16], sc[4];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) sc[i] = _mm512_setzero_ps();
            for (int e = 0; e < d; e += 16) {
                if (kind == ROW_Q8_0 && !(e & 31))
#pragma GCC unroll 4
                    for (int i = 0; i < 4; i++) sc[i] = row_scale(kind, kj[i], e);
                const __m512 k0 = row16(kind, kj[0], e, sc[0]), k1 = row16(kind, kj[1], e, sc[1]);
                const __m512 k2 = row16(kind, kj[2], e, sc[2]), k3 = row16(kind, kj[3], e, sc[3]);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    const __m512 x = _mm512_loadu_ps(qr[i] + e);
                    a[4 * i] = _mm512_fmadd_ps(x, k0, a[4 * i]);
                    a[4 * i + 1] = _mm512_fmadd_ps(x, k1, a[4 * i + 1]);
                    a[4 * i + 2] = _mm512_fmadd_ps(x, k2, a[4 * i + 2]);
                    a[4 * i + 3] = _mm512_fmadd_ps(x, k3, a[4 * i + 3]);
                }
            }
            _mm512_storeu_ps(res, reduce16(a));
            const int nj = nk - j < 4 ? nk - j : 4, ni = nr - r < 4 ? nr - r : 4;
            for (int i = 0; i < ni; i++)
                for (int c = 0; c < nj; c++) S[(long)(r + i) * s_stride + j + c] = res[4 * i + c];
        }
    }
}

static void scores_avx512(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S,
                          int s_stride) {
    if (d % 16) attn_kernels_avx2()->scores(q, q_stride, nr, k, nk, d, S, s_stride);
    else scores_body(ROW_F32, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void scores_f16_avx512(const float *q, int q_stride, int nr, const uint16_t *k, int nk, int d, float *S,
                              int s_stride) {
    if (d % 16) attn_kernels_avx2()->scores_f16(q, q_stride, nr, k, nk, d, S, s_stride);
    else scores_body(ROW_F16, q, q_stride, nr, k, nk, d, S, s_stride);
}

static float exp_sum_avx512(float *s, int n, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
        _mm512_storeu_ps(s + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < n) { /* the tail in masked lanes (the others add 0) */
        const __mmask16 k = first_lanes16(n - j);
        const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vm)));
        _mm512_mask_storeu_ps(s + j, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Rows o0.. (R of them, 1 or 2) over dims [e0, e0 + 16 W). */
LT_INLINE void pv_rows(const int kind, const int R, const int W, float *const *o, const float *al,
                       const float *const *p, const void *v, int e0, int nk, int d) {
    __m512 x[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        const __m512 b = _mm512_set1_ps(al[r]);
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) x[r][w] = _mm512_mul_ps(_mm512_loadu_ps(o[r] + 16 * w), b);
    }
    for (int j = 0; j < nk; j++) {
        const char *vj = row_at(kind, v, j, d);
        __m512 vv[4], sc = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) {
            if (kind == ROW_Q8_0 && (w == 0 || !((e0 + 16 * w) & 31))) sc = row_scale(kind, vj, e0 + 16 * w);
            vv[w] = row16(kind, vj, e0 + 16 * w, sc);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const __m512 pw = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 4
            for (int w = 0; w < W; w++) x[r][w] = _mm512_fmadd_ps(pw, vv[w], x[r][w]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm512_storeu_ps(o[r] + 16 * w, x[r][w]);
}

LT_INLINE void pv_body(const int kind, float *o, int nr, const float *alpha, const float *p, int p_stride,
                       const void *v, int nk, int d) {
    int r = 0;
    for (; r + 2 <= nr; r += 2) {
        const float *pr[2] = {p + (long)r * p_stride, p + (long)(r + 1) * p_stride};
        int e = 0;
        for (; e + 64 <= d; e += 64) {
            float *orow[2] = {o + (long)r * d + e, o + (long)(r + 1) * d + e};
            pv_rows(kind, 2, 4, orow, alpha + r, pr, v, e, nk, d);
        }
        for (; e < d; e += 16) {
            float *orow[2] = {o + (long)r * d + e, o + (long)(r + 1) * d + e};
            pv_rows(kind, 2, 1, orow, alpha + r, pr, v, e, nk, d);
        }
    }
    for (; r < nr; r++) {
        const float *pr[1] = {p + (long)r * p_stride};
        int e = 0;
        for (; e + 64 <= d; e += 64) {
            float *orow[1] = {o + (long)r * d + e};
            pv_rows(kind, 1, 4, orow, alpha + r, pr, v, e, nk, d);
        }
        for (; e < d; e += 16) {
            float *orow[1] = {o + (long)r * d + e};
            pv_rows(kind, 1, 1, orow, alpha + r, pr, v, e, nk, d);
        }
    }
}

/* The largest of s[0..n), n >= 1: exact, so the scalar loop's value. */
static float row_max_avx512(const float *s, int n) {
    float mx = s[0];
    int j = 1;
    if (n >= 16) {
        __m512 v = _mm512_loadu_ps(s);
        for (j = 16; j + 16 <= n; j += 16) v = _mm512_max_ps(v, _mm512_loadu_ps(s + j));
        mx = _mm512_reduce_max_ps(v);
    }
    for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    return mx;
}

static void softmax_avx512(float *s, int s_stride, int nr, int nk, float *m, float *l, float *alpha) {
    attn_softmax_rows(row_max_avx512, exp_sum_avx512, s, s_stride, nr, nk, m, l, alpha);
}

static void pv_avx512(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk,
                      int d) {
    if (d % 16) attn_kernels_avx2()->pv(o, nr, alpha, p, p_stride, v, nk, d);
    else pv_body(ROW_F32, o, nr, alpha, p, p_stride, v, nk, d);
}

static void pv_f16_avx512(float *o, int nr, const float *alpha, const float *p, int p_stride, const uint16_t *v,
                          int nk, int d) {
    if (d % 16) attn_kernels_avx2()->pv_f16(o, nr, alpha, p, p_stride, v, nk, d);
    else pv_body(ROW_F16, o, nr, alpha, p, p_stride, v, nk, d);
}

static void scores_cold_avx512(lt_type ty, const float *q, int q_stride, int nr, const void *k, int P, int nk, int d,
                               float *S, int s_stride, float *stage) {
    attn_kernels_avx2()->scores_cold(ty, q, q_stride, nr, k, P, nk, d, S, s_stride, stage);
}

static void pv_cold_avx512(lt_type ty, float *o, int nr, const float *alpha, const float *p, int p_stride,
                           const void *v, int nk, int d, float *stage) {
    attn_kernels_avx2()->pv_cold(ty, o, nr, alpha, p, p_stride, v, nk, d, stage);
}

/* The AVX2 kernel: no horizontal sums to save, and on Zen 4 a 512-bit FMA
 * is two 256-bit ones, so 16 lanes would not add FMA throughput. */
static void scores_many_avx512(const float *q, int q_stride, int nr, const void *k, int half, int nk, int d, float *S,
                               int s_stride, float *kt) {
    attn_kernels_avx2()->scores_many(q, q_stride, nr, k, half, nk, d, S, s_stride, kt);
}

static void scores_q8_avx512(const float *q, int q_stride, int nr, const void *k, int nk, int d, float *S,
                             int s_stride) {
    scores_body(ROW_Q8_0, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void pv_q8_avx512(float *o, int nr, const float *alpha, const float *p, int p_stride, const void *v, int nk,
                         int d) {
    pv_body(ROW_Q8_0, o, nr, alpha, p, p_stride, v, nk, d);
}

const attn_kernels attn_kernels_avx512_table = {"avx512",           scores_avx512,      exp_sum_avx512,
                                                pv_avx512,          scores_cold_avx512, pv_cold_avx512,
                                                scores_f16_avx512,  pv_f16_avx512,      softmax_avx512,
                                                scores_many_avx512, scores_q8_avx512,   pv_q8_avx512};

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_attn_kernels;
#endif
