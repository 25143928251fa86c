/* AVX2/FMA kernels for the tiled attention: register-blocked dot products
 * (several query rows x several keys, reduced with one horizontal-add tree),
 * a vector exp, and a blocked P x V accumulate. Same contracts as the scalar
 * kernels in attn_kernels.c; head dims that are not a multiple of 8 go to
 * the scalar code. */
#include "attn/attn_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "attn/attn_rows.h"
#include "attn/attn_softmax.h"
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"
#include "util/fp16.h"

/* _mm256_hadd_ps(a, b) in two shuffles and an add: the same sums (so the
 * same bits), but vhaddps is 3-4 uops on AMD cores, and with it the
 * reductions of the decode scores cost a third of their time at head dim 64. */
static inline __m256 hadd8(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD));
}

/* Horizontal sums of 8 vectors, (a0, a1) the two keys of row 0, (a2, a3)
 * of row 1 ...: row i's two sums go to s + i * stride, s + i * stride + 1. */
static inline void hsum8x8_rows(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                                __m256 a7, float *s, long stride) {
    const __m256 u0 = hadd8(hadd8(a0, a1), hadd8(a2, a3)), u1 = hadd8(hadd8(a4, a5), hadd8(a6, a7));
    const __m128 r01 = _mm_add_ps(_mm256_castps256_ps128(u0), _mm256_extractf128_ps(u0, 1));
    const __m128 r23 = _mm_add_ps(_mm256_castps256_ps128(u1), _mm256_extractf128_ps(u1, 1));
    _mm_storel_pi((__m64 *)(void *)s, r01);
    _mm_storeh_pi((__m64 *)(void *)(s + stride), r01);
    _mm_storel_pi((__m64 *)(void *)(s + 2 * stride), r23);
    _mm_storeh_pi((__m64 *)(void *)(s + 3 * stride), r23);
}

/* Horizontal sums of 4 vectors: lane i = sum of a[i]'s lanes. */
static inline __m128 hsum4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 u = hadd8(hadd8(a0, a1), hadd8(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

static inline float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The scale of the block holding element e of a Q8_0 row, broadcast. */
LT_INLINE __m256 row_scale(const int kind, const char *row, int e) {
    if (kind != ROW_Q8_0) return _mm256_setzero_ps();
    return _mm256_set1_ps(h2f(((const blk_q8_0 *)(const void *)row)[e >> 5].d));
}

/* For a walk over a row 8 elements at a time: the scale reloaded where a
 * block starts, else sc as it was. */
LT_INLINE __m256 walk_scale(const int kind, const char *row, int e, __m256 sc) {
    return kind == ROW_Q8_0 && !(e & 31) ? row_scale(kind, row, e) : sc;
}

/* Elements e..e+7 of a row as floats; sc: row_scale at e. */
LT_INLINE __m256 row8(const int kind, const char *row, int e, __m256 sc) {
    if (kind == ROW_F32) return _mm256_loadu_ps((const float *)(const void *)row + e);
    if (kind == ROW_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)(const void *)row + e)));
    const blk_q8_0 *b = (const blk_q8_0 *)(const void *)row + (e >> 5);
    const __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(b->qs + (e & 31))));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(x), sc);
}

/* 8 F32 or F16 floats from element i of a page row block. */
LT_INLINE __m256 ld8(const int half, const void *base, long i) {
    if (half) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_loadu_ps((const float *)base + i);
}

LT_INLINE void scores_body(const int kind, const float *q, int q_stride, int nr, const void *k, int nk, int d,
                           float *S, int s_stride) {
    float res[8];
    int r = 0;
    /* 4 rows x 2 keys: 6 loads feed 8 FMAs. */
    for (; r + 4 <= nr; r += 4) {
        const float *q0 = q + (long)r * q_stride, *q1 = q0 + q_stride, *q2 = q1 + q_stride, *q3 = q2 + q_stride;
        float *s0 = S + (long)r * s_stride;
        int j = 0;
        for (; j + 2 <= nk; j += 2) {
            const char *k0 = row_at(kind, k, j, d), *k1 = row_at(kind, k, j + 1, d);
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
            __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            __m256 c0 = a00, c1 = a00;
            for (int e = 0; e < d; e += 8) {
                c0 = walk_scale(kind, k0, e, c0), c1 = walk_scale(kind, k1, e, c1);
                __m256 kv0 = row8(kind, k0, e, c0), kv1 = row8(kind, k1, e, c1);
                __m256 x = _mm256_loadu_ps(q0 + e);
                a00 = _mm256_fmadd_ps(x, kv0, a00);
                a01 = _mm256_fmadd_ps(x, kv1, a01);
                x = _mm256_loadu_ps(q1 + e);
                a10 = _mm256_fmadd_ps(x, kv0, a10);
                a11 = _mm256_fmadd_ps(x, kv1, a11);
                x = _mm256_loadu_ps(q2 + e);
                a20 = _mm256_fmadd_ps(x, kv0, a20);
                a21 = _mm256_fmadd_ps(x, kv1, a21);
                x = _mm256_loadu_ps(q3 + e);
                a30 = _mm256_fmadd_ps(x, kv0, a30);
                a31 = _mm256_fmadd_ps(x, kv1, a31);
            }
            hsum8x8_rows(a00, a01, a10, a11, a20, a21, a30, a31, s0 + j, s_stride);
        }
        for (; j < nk; j++) {
            const char *k0 = row_at(kind, k, j, d);
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0;
            for (int e = 0; e < d; e += 8) {
                c0 = walk_scale(kind, k0, e, c0);
                __m256 kv0 = row8(kind, k0, e, c0);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + e), kv0, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + e), kv0, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + e), kv0, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + e), kv0, a3);
            }
            _mm_storeu_ps(res, hsum4x8(a0, a1, a2, a3));
            for (int i = 0; i < 4; i++) s0[(long)i * s_stride + j] = res[i];
        }
    }
    /* Remaining rows one at a time, 4 keys per pass. */
    for (; r < nr; r++) {
        const float *q0 = q + (long)r * q_stride;
        float *s0 = S + (long)r * s_stride;
        int j = 0;
        for (; j + 4 <= nk; j += 4) {
            const char *k0 = row_at(kind, k, j, d), *k1 = row_at(kind, k, j + 1, d);
            const char *k2 = row_at(kind, k, j + 2, d), *k3 = row_at(kind, k, j + 3, d);
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (int e = 0; e < d; e += 8) {
                c0 = walk_scale(kind, k0, e, c0), c1 = walk_scale(kind, k1, e, c1);
                c2 = walk_scale(kind, k2, e, c2), c3 = walk_scale(kind, k3, e, c3);
                __m256 x = _mm256_loadu_ps(q0 + e);
                a0 = _mm256_fmadd_ps(x, row8(kind, k0, e, c0), a0);
                a1 = _mm256_fmadd_ps(x, row8(kind, k1, e, c1), a1);
                a2 = _mm256_fmadd_ps(x, row8(kind, k2, e, c2), a2);
                a3 = _mm256_fmadd_ps(x, row8(kind, k3, e, c3), a3);
            }
            _mm_storeu_ps(s0 + j, hsum4x8(a0, a1, a2, a3));
        }
        for (; j < nk; j++) {
            const char *k0 = row_at(kind, k, j, d);
            __m256 a0 = _mm256_setzero_ps(), c0 = a0;
            for (int e = 0; e < d; e += 8) {
                c0 = walk_scale(kind, k0, e, c0);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + e), row8(kind, k0, e, c0), a0);
            }
            s0[j] = hsum(a0);
        }
    }
}

static void scores_avx2(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S,
                        int s_stride) {
    if (d % 8) attn_kernels_scalar()->scores(q, q_stride, nr, k, nk, d, S, s_stride);
    else scores_body(ROW_F32, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void scores_f16_avx2(const float *q, int q_stride, int nr, const uint16_t *k, int nk, int d, float *S,
                            int s_stride) {
    if (d % 8) attn_kernels_scalar()->scores_f16(q, q_stride, nr, k, nk, d, S, s_stride);
    else scores_body(ROW_F16, q, q_stride, nr, k, nk, d, S, s_stride);
}

static float exp_sum_avx2(float *s, int n, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum(acc);
    for (; j < n; j++) {
        float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    return sum;
}

/* ---- scores of many rows on transposed keys (prefill blocks) ---- */

/* Keys j0..j0+7 x dims e0..e0+7 (base = j0 * d + e0) -> rows e0..e0+7 of
 * kt, columns j0..j0+7: an 8 x 8 transpose in registers. */
LT_INLINE void kt_block8(const int half, const void *k, long base, int d, float *kt, int kts) {
    __m256 r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = ld8(half, k, base + (long)i * d);
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);     /* (i, i+1) x dims 0, 1 | 4, 5 */
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]); /* dims 2, 3 | 6, 7 */
    }
#pragma GCC unroll 2
    for (int h = 0; h < 8; h += 4) { /* keys h..h+3 */
        u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);     /* dim 0 | 4 */
        u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xee); /* dim 1 | 5 */
        u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xee);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(kt + (long)i * kts, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(kt + (long)(i + 4) * kts, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

/* R rows x C vectors of 8 keys: R x C accumulators, one FMA chain each
 * over the dims in order; a broadcast query element serves C x 8 keys. */
LT_INLINE void many_block(const int R, const int C, const float *q, int q_stride, const float *kt, int kts, int d,
                          float *S, int s_stride) {
    __m256 a[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
    for (int e = 0; e < d; e++) {
        const __m256 k0 = _mm256_loadu_ps(kt + (long)e * kts), k1 = C > 1 ? _mm256_loadu_ps(kt + (long)e * kts + 8) : k0;
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m256 b = _mm256_broadcast_ss(q + (long)r * q_stride + e);
            a[r][0] = _mm256_fmadd_ps(b, k0, a[r][0]);
            if (C > 1) a[r][1] = _mm256_fmadd_ps(b, k1, a[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(S + (long)r * s_stride, a[r][0]);
        if (C > 1) _mm256_storeu_ps(S + (long)r * s_stride + 8, a[r][1]);
    }
}

#define MANY_ROWS 6 /* 12 accumulators, 2 key vectors and a broadcast: 15 registers */
#define MANY_CASE(R)                                                                                   \
    case R:                                                                                            \
        if (C == 2) many_block(R, 2, qr, q_stride, kt + j, kts, d, out, out_stride);                   \
        else many_block(R, 1, qr, q_stride, kt + j, kts, d, out, out_stride);                          \
        break;

static void scores_many_avx2(const float *q, int q_stride, int nr, const void *k, int half, int nk, int d, float *S,
                             int s_stride, float *kt) {
    if (d % 8) {
        attn_kernels_scalar()->scores_many(q, q_stride, nr, k, half, nk, d, S, s_stride, kt);
        return;
    }
    const int kts = (nk + 7) & ~7;
    int j0 = 0;
    for (; j0 + 8 <= nk; j0 += 8)
        for (int e0 = 0; e0 < d; e0 += 8) kt_block8(half, k, (long)j0 * d + e0, d, kt + (long)e0 * kts + j0, kts);
    for (int e = 0; e < d && j0 < nk; e++) /* the last keys, then zeros to a whole vector */
        for (int j = j0; j < kts; j++)
            kt[(long)e * kts + j] = j < nk ? (half ? fp16_to_fp32(((const uint16_t *)k)[(long)j * d + e])
                                                    : ((const float *)k)[(long)j * d + e])
                                           : 0.0f;
    float part[MANY_ROWS * 8]; /* a last vector of fewer than 8 keys, before its copy into S */
    for (int r = 0; r < nr; r += MANY_ROWS) {
        const float *qr = q + (long)r * q_stride;
        const int R = nr - r < MANY_ROWS ? nr - r : MANY_ROWS;
        for (int j = 0; j < nk;) { /* 16 keys a block, then 8, then what is left */
            const int left = nk - j, C = left >= 16 ? 2 : 1, whole = left >= 8; /* S's rows may be nk apart */
            float *out = whole ? S + (long)r * s_stride + j : part;
            const int out_stride = whole ? s_stride : 8;
            switch (R) {
                MANY_CASE(1)
                MANY_CASE(2)
                MANY_CASE(3)
                MANY_CASE(4)
                MANY_CASE(5)
                default: MANY_CASE(6)
            }
            if (!whole)
                for (int i = 0; i < R; i++) memcpy(S + (long)(r + i) * s_stride + j, part + 8 * i, sizeof(float) * (size_t)left);
            j += whole ? 8 * C : left;
        }
    }
}
#undef MANY_CASE

/* The largest of s[0..n), n >= 1: exact, so the scalar loop's value. */
static float row_max_avx2(const float *s, int n) {
    float mx = s[0];
    int j = 1;
    if (n >= 8) {
        __m256 v = _mm256_loadu_ps(s);
        for (j = 8; j + 8 <= n; j += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(s + j));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        mx = _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
    }
    for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    return mx;
}

static void softmax_avx2(float *s, int s_stride, int nr, int nk, float *m, float *l, float *alpha) {
    attn_softmax_rows(row_max_avx2, exp_sum_avx2, s, s_stride, nr, nk, m, l, alpha);
}

/* Rows 0..R-1 of o over dims [e0, e0 + 8 W): R x W <= 12 accumulators (8 or
 * more FMA chains, so no chain waits on its latency), a value vector
 * serving R rows and a broadcast probability W vectors. Per output
 * element: o times alpha, then one FMA per key in order, whatever the
 * block, so any blocking (and the AVX-512 kernel) gives the same bits. */
LT_INLINE void pv_block(const int kind, const int R, const int W, float *o, int d, const float *alpha, const float *p,
                        int p_stride, const void *v, int e0, int nk) {
    __m256 x[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        const __m256 b = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) x[r][w] = _mm256_mul_ps(_mm256_loadu_ps(o + (long)r * d + e0 + 8 * w), b);
    }
    for (int j = 0; j < nk; j++) {
        const char *vj = row_at(kind, v, j, d);
        const __m256 sc = row_scale(kind, vj, e0); /* [e0, e0 + 8 W) lies in one block */
        __m256 vv[4];
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) vv[w] = row8(kind, vj, e0 + 8 * w, sc);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m256 pw = _mm256_broadcast_ss(p + (long)r * p_stride + j);
#pragma GCC unroll 4
            for (int w = 0; w < W; w++) x[r][w] = _mm256_fmadd_ps(pw, vv[w], x[r][w]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm256_storeu_ps(o + (long)r * d + e0 + 8 * w, x[r][w]);
}

/* R rows over all d dims: 32 dims a block for one or two rows, else 16. */
#define PV_DIMS(R)                                                                                          \
    do {                                                                                                    \
        int e = 0;                                                                                          \
        if (R <= 2)                                                                                         \
            for (; e + 32 <= d; e += 32) pv_block(kind, R, 4, o, d, alpha, p, p_stride, v, e, nk);          \
        for (; e + 16 <= d; e += 16) pv_block(kind, R, 2, o, d, alpha, p, p_stride, v, e, nk);              \
        if (e < d) pv_block(kind, R, 1, o, d, alpha, p, p_stride, v, e, nk);                                \
    } while (0)

/* Rows in blocks as even as possible: F32 values up to 6 rows a block (8
 * rows: 4 + 4, so each block has 8 chains); F16 values 2 rows x 32 dims,
 * where 4 rows x 16 dims, half the conversions, measured 20% slower on Zen
 * 3 (twice the broadcasts, which share the FMA pipes). */
LT_INLINE void pv_body(const int kind, float *o, int nr, const float *alpha, const float *p, int p_stride,
                       const void *v, int nk, int d) {
    const int most = kind == ROW_F16 ? 2 : 6;
    while (nr > 0) {
        const int blocks = (nr + most - 1) / most, R = (nr + blocks - 1) / blocks;
        switch (R) {
        case 1: PV_DIMS(1); break;
        case 2: PV_DIMS(2); break;
        case 3: PV_DIMS(3); break;
        case 4: PV_DIMS(4); break;
        case 5: PV_DIMS(5); break;
        default: PV_DIMS(6); break;
        }
        o += (long)R * d, alpha += R, p += (long)R * p_stride, nr -= R;
    }
}
#undef PV_DIMS

static void pv_avx2(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk,
                    int d) {
    if (d % 8) attn_kernels_scalar()->pv(o, nr, alpha, p, p_stride, v, nk, d);
    else pv_body(ROW_F32, o, nr, alpha, p, p_stride, v, nk, d);
}

static void pv_f16_avx2(float *o, int nr, const float *alpha, const float *p, int p_stride, const uint16_t *v, int nk,
                        int d) {
    if (d % 8) attn_kernels_scalar()->pv_f16(o, nr, alpha, p, p_stride, v, nk, d);
    else pv_body(ROW_F16, o, nr, alpha, p, p_stride, v, nk, d);
}

/* Block bi of a cold page: its 32 signed integers (Q4_0: q - 8; Q8_0: q) as
 * 4 x 8 floats (exact); returns the block's scale. */
LT_INLINE float cold_block(lt_type ty, const void *base, long bi, __m256 f[4]) {
    __m256i x;
    float sc;
    if (ty == LT_Q4_0) {
        const blk_q4_0 *b = (const blk_q4_0 *)base + bi;
        sc = h2f(b->d);
        x = _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    } else {
        const blk_q8_0 *b = (const blk_q8_0 *)base + bi;
        sc = h2f(b->d);
        x = loadu256(b->qs);
    }
    const __m128i lo = _mm256_castsi256_si128(x), hi = _mm256_extracti128_si256(x, 1);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)));
    return sc;
}

/* The blocks a kernel walks for one column of 32 lanes, converted once into
 * the caller's stage when many rows reuse them (prefill): n x 32 floats,
 * then n scales. */
typedef struct {
    float *x, *sc;
} cold_stage;

/* Block i of the walk (block bi of the page): converted in registers, or
 * read back from the stage. Both give the same floats. */
LT_INLINE float cold_fetch(lt_type ty, const void *base, long bi, const cold_stage *st, int i, __m256 f[4]) {
    if (!st) return cold_block(ty, base, bi, f);
    const float *x = st->x + 32L * i;
    f[0] = _mm256_loadu_ps(x);
    f[1] = _mm256_loadu_ps(x + 8);
    f[2] = _mm256_loadu_ps(x + 16);
    f[3] = _mm256_loadu_ps(x + 24);
    return st->sc[i];
}

LT_INLINE void cold_fill(lt_type ty, const void *base, long bi0, long step, int n, const cold_stage *st) {
    __m256 f[4];
    for (int i = 0; i < n; i++) {
        st->sc[i] = cold_block(ty, base, bi0 + i * step, f);
        for (int w = 0; w < 4; w++) _mm256_storeu_ps(st->x + 32L * i + 8 * w, f[w]);
    }
}

/* Scores on the per-channel key layout: each channel block holds one dim
 * of 32 slots, so a slot's score accumulates in its own lane, dim after dim,
 * with (q_e * scale) broadcast: no transpose, no horizontal sums. Two rows
 * share each block's conversion; with more rows the column's blocks are
 * converted once into the stage. */
LT_INLINE void scores_cold_body(lt_type ty, const cold_stage *st, const float *q, int q_stride, int nr, const void *k,
                                int P, int nk, int d, float *S, int s_stride) {
    const int nb = P / 32, nbk = (nk + 31) / 32;
    __m256 f[4];
    for (int b = 0; b < nbk; b++) {
        if (st) cold_fill(ty, k, b, nb, d, st);
        int r = 0;
        for (; r + 2 <= nr; r += 2) {
            const float *q0 = q + (long)r * q_stride, *q1 = q0 + q_stride;
            __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, y0 = x0, y1 = x0, y2 = x0, y3 = x0;
            for (int e = 0; e < d; e++) {
                const float sc = cold_fetch(ty, k, (long)e * nb + b, st, e, f);
                const __m256 c0 = _mm256_set1_ps(q0[e] * sc), c1 = _mm256_set1_ps(q1[e] * sc);
                x0 = _mm256_fmadd_ps(c0, f[0], x0);
                x1 = _mm256_fmadd_ps(c0, f[1], x1);
                x2 = _mm256_fmadd_ps(c0, f[2], x2);
                x3 = _mm256_fmadd_ps(c0, f[3], x3);
                y0 = _mm256_fmadd_ps(c1, f[0], y0);
                y1 = _mm256_fmadd_ps(c1, f[1], y1);
                y2 = _mm256_fmadd_ps(c1, f[2], y2);
                y3 = _mm256_fmadd_ps(c1, f[3], y3);
            }
            float *d0 = S + (long)r * s_stride + 32 * b, *d1 = d0 + s_stride;
            _mm256_storeu_ps(d0, x0);
            _mm256_storeu_ps(d0 + 8, x1);
            _mm256_storeu_ps(d0 + 16, x2);
            _mm256_storeu_ps(d0 + 24, x3);
            _mm256_storeu_ps(d1, y0);
            _mm256_storeu_ps(d1 + 8, y1);
            _mm256_storeu_ps(d1 + 16, y2);
            _mm256_storeu_ps(d1 + 24, y3);
        }
        for (; r < nr; r++) {
            const float *q0 = q + (long)r * q_stride;
            __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0;
            for (int e = 0; e < d; e++) {
                const __m256 c0 = _mm256_set1_ps(q0[e] * cold_fetch(ty, k, (long)e * nb + b, st, e, f));
                x0 = _mm256_fmadd_ps(c0, f[0], x0);
                x1 = _mm256_fmadd_ps(c0, f[1], x1);
                x2 = _mm256_fmadd_ps(c0, f[2], x2);
                x3 = _mm256_fmadd_ps(c0, f[3], x3);
            }
            float *d0 = S + (long)r * s_stride + 32 * b;
            _mm256_storeu_ps(d0, x0);
            _mm256_storeu_ps(d0 + 8, x1);
            _mm256_storeu_ps(d0 + 16, x2);
            _mm256_storeu_ps(d0 + 24, x3);
        }
    }
}

static void scores_cold_avx2(lt_type ty, const float *q, int q_stride, int nr, const void *k, int P, int nk, int d,
                             float *S, int s_stride, float *stage) {
    const cold_stage st = {stage, stage + 32L * d}; /* one instance of the body per (type, staged) */
    if (nr > 2 && stage) {
        if (ty == LT_Q4_0) scores_cold_body(LT_Q4_0, &st, q, q_stride, nr, k, P, nk, d, S, s_stride);
        else scores_cold_body(LT_Q8_0, &st, q, q_stride, nr, k, P, nk, d, S, s_stride);
    } else if (ty == LT_Q4_0) scores_cold_body(LT_Q4_0, NULL, q, q_stride, nr, k, P, nk, d, S, s_stride);
    else scores_cold_body(LT_Q8_0, NULL, q, q_stride, nr, k, P, nk, d, S, s_stride);
}

/* P x V with the value blocks converted in registers (or once into the
 * stage for many rows): each token's block serves two rows, and its scale
 * folds into the probability. */
LT_INLINE void pv_cold_body(lt_type ty, const cold_stage *st, float *o, int nr, const float *alpha, const float *p,
                            int p_stride, const void *v, int nk, int d) {
    const int nb = d / 32;
    __m256 f[4];
    for (int b = 0; b < nb; b++) {
        if (st) cold_fill(ty, v, b, nb, nk, st);
        int r = 0;
        for (; r + 2 <= nr; r += 2) {
            const float *p0 = p + (long)r * p_stride, *p1 = p0 + p_stride;
            float *o0 = o + (long)r * d + 32 * b, *o1 = o0 + d;
            const __m256 a0 = _mm256_set1_ps(alpha[r]), a1 = _mm256_set1_ps(alpha[r + 1]);
            __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(o0), a0), x1 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 8), a0);
            __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 16), a0), x3 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 24), a0);
            __m256 y0 = _mm256_mul_ps(_mm256_loadu_ps(o1), a1), y1 = _mm256_mul_ps(_mm256_loadu_ps(o1 + 8), a1);
            __m256 y2 = _mm256_mul_ps(_mm256_loadu_ps(o1 + 16), a1), y3 = _mm256_mul_ps(_mm256_loadu_ps(o1 + 24), a1);
            for (int j = 0; j < nk; j++) {
                if (p0[j] == 0.0f && p1[j] == 0.0f) continue; /* masked for both rows */
                const float sc = cold_fetch(ty, v, (long)j * nb + b, st, j, f);
                const __m256 w0 = _mm256_set1_ps(p0[j] * sc), w1 = _mm256_set1_ps(p1[j] * sc);
                x0 = _mm256_fmadd_ps(w0, f[0], x0);
                x1 = _mm256_fmadd_ps(w0, f[1], x1);
                x2 = _mm256_fmadd_ps(w0, f[2], x2);
                x3 = _mm256_fmadd_ps(w0, f[3], x3);
                y0 = _mm256_fmadd_ps(w1, f[0], y0);
                y1 = _mm256_fmadd_ps(w1, f[1], y1);
                y2 = _mm256_fmadd_ps(w1, f[2], y2);
                y3 = _mm256_fmadd_ps(w1, f[3], y3);
            }
            _mm256_storeu_ps(o0, x0);
            _mm256_storeu_ps(o0 + 8, x1);
            _mm256_storeu_ps(o0 + 16, x2);
            _mm256_storeu_ps(o0 + 24, x3);
            _mm256_storeu_ps(o1, y0);
            _mm256_storeu_ps(o1 + 8, y1);
            _mm256_storeu_ps(o1 + 16, y2);
            _mm256_storeu_ps(o1 + 24, y3);
        }
        for (; r < nr; r++) {
            const float *p0 = p + (long)r * p_stride;
            float *o0 = o + (long)r * d + 32 * b;
            const __m256 a0 = _mm256_set1_ps(alpha[r]);
            __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(o0), a0), x1 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 8), a0);
            __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 16), a0), x3 = _mm256_mul_ps(_mm256_loadu_ps(o0 + 24), a0);
            for (int j = 0; j < nk; j++) {
                if (p0[j] == 0.0f) continue;
                const __m256 w0 = _mm256_set1_ps(p0[j] * cold_fetch(ty, v, (long)j * nb + b, st, j, f));
                x0 = _mm256_fmadd_ps(w0, f[0], x0);
                x1 = _mm256_fmadd_ps(w0, f[1], x1);
                x2 = _mm256_fmadd_ps(w0, f[2], x2);
                x3 = _mm256_fmadd_ps(w0, f[3], x3);
            }
            _mm256_storeu_ps(o0, x0);
            _mm256_storeu_ps(o0 + 8, x1);
            _mm256_storeu_ps(o0 + 16, x2);
            _mm256_storeu_ps(o0 + 24, x3);
        }
    }
}

static void pv_cold_avx2(lt_type ty, float *o, int nr, const float *alpha, const float *p, int p_stride,
                         const void *v, int nk, int d, float *stage) {
    const cold_stage st = {stage, stage + 32L * nk};
    if (nr > 2 && stage) {
        if (ty == LT_Q4_0) pv_cold_body(LT_Q4_0, &st, o, nr, alpha, p, p_stride, v, nk, d);
        else pv_cold_body(LT_Q8_0, &st, o, nr, alpha, p, p_stride, v, nk, d);
    } else if (ty == LT_Q4_0) pv_cold_body(LT_Q4_0, NULL, o, nr, alpha, p, p_stride, v, nk, d);
    else pv_cold_body(LT_Q8_0, NULL, o, nr, alpha, p, p_stride, v, nk, d);
}

static void scores_q8_avx2(const float *q, int q_stride, int nr, const void *k, int nk, int d, float *S,
                           int s_stride) {
    scores_body(ROW_Q8_0, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void pv_q8_avx2(float *o, int nr, const float *alpha, const float *p, int p_stride, const void *v, int nk,
                       int d) {
    pv_body(ROW_Q8_0, o, nr, alpha, p, p_stride, v, nk, d);
}

const attn_kernels attn_kernels_avx2_table = {"avx2", scores_avx2, exp_sum_avx2, pv_avx2, scores_cold_avx2,
                                              pv_cold_avx2, scores_f16_avx2, pv_f16_avx2, softmax_avx2,
                                              scores_many_avx2, scores_q8_avx2, pv_q8_avx2};

#endif
