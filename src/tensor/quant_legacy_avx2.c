/* AVX2 dot products and matmul tiles of the 32-element block types: Q4_0,
 * Q5_0, Q8_0, IQ4_NL (against Q8_0 activations) and Q4_1, Q5_1 (against
 * Q8_1). Per block the integer dot product is exact and is scaled once, as
 * in the scalar code, so the two differ only in the order of the float
 * additions. */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"

enum { K_Q4_0, K_Q5_0, K_Q8_0, K_IQ4_NL, K_Q4_1, K_Q5_1 };

LT_INLINE size_t blk_bytes(int kind) {
    switch (kind) {
    case K_Q4_0: return sizeof(blk_q4_0);
    case K_Q5_0: return sizeof(blk_q5_0);
    case K_Q8_0: return sizeof(blk_q8_0);
    case K_IQ4_NL: return sizeof(blk_iq4_nl);
    case K_Q4_1: return sizeof(blk_q4_1);
    default: return sizeof(blk_q5_1);
    }
}

LT_INLINE uint32_t qh32(const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* The 32 quants of one block as bytes: signed values (q-8, q-16, q,
 * table value) for the Q8_0-activation kinds, unsigned 0..31 for Q4_1 /
 * Q5_1; *d gets the scale and *m the offset (the _1 kinds). */
LT_INLINE __m256i decode(int kind, const char *p, float *d, float *m) {
    switch (kind) {
    case K_Q4_0: {
        const blk_q4_0 *b = (const blk_q4_0 *)p;
        *d = h2f(b->d);
        return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    }
    case K_Q5_0: {
        const blk_q5_0 *b = (const blk_q5_0 *)p;
        *d = h2f(b->d);
        /* q - 16 = q_low - 16 + 16*bit: the low nibble with 0xF0 or-ed in
         * (= q_low - 16 as int8) where the fifth bit is clear. */
        const __m256i hi = _mm256_andnot_si256(bits32_to_mask(qh32(b->qh)), _mm256_set1_epi8((char)0xF0));
        return _mm256_or_si256(nibbles32(b->qs), hi);
    }
    case K_Q8_0: {
        const blk_q8_0 *b = (const blk_q8_0 *)p;
        *d = h2f(b->d);
        return loadu256(b->qs);
    }
    case K_IQ4_NL: {
        const blk_iq4_nl *b = (const blk_iq4_nl *)p;
        *d = h2f(b->d);
        const __m256i table = _mm256_broadcastsi128_si256(loadu128(lt_iq4nl_values));
        return _mm256_shuffle_epi8(table, nibbles32(b->qs));
    }
    case K_Q4_1: {
        const blk_q4_1 *b = (const blk_q4_1 *)p;
        *d = h2f(b->d);
        *m = h2f(b->m);
        return nibbles32(b->qs);
    }
    default: {
        const blk_q5_1 *b = (const blk_q5_1 *)p;
        *d = h2f(b->d);
        *m = h2f(b->m);
        const __m256i hi = _mm256_and_si256(bits32_to_mask(qh32(b->qh)), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(nibbles32(b->qs), hi);
    }
    }
}

LT_INLINE int is_signed_kind(int kind) { return kind <= K_IQ4_NL; }

/* RM weight rows x RN tokens. Signed kinds use |x| * sign(y, x) so that
 * maddubs (unsigned x signed) applies; the _1 kinds are unsigned already and
 * add m * s per block, s = d_y * sum(q_y) as stored in Q8_1. */
LT_INLINE void ltile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx,
                     const char *y, size_t by, float *s, size_t ldc) {
    const int64_t nb = n / 32;
    const size_t xs = blk_bytes(kind);
    const size_t ys = is_signed_kind(kind) ? sizeof(blk_q8_0) : sizeof(blk_q8_1);
    __m256 acc[4][4];
    float macc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            acc[r][c] = _mm256_setzero_ps();
            macc[r][c] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i qx[4], ax[4];
        float dx[4], mx[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            qx[r] = decode(kind, x + r * bx + b * xs, &dx[r], &mx[r]);
            if (is_signed_kind(kind)) ax[r] = _mm256_sign_epi8(qx[r], qx[r]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const char *yb = y + c * by + b * ys;
            if (is_signed_kind(kind)) {
                const blk_q8_0 *q8 = (const blk_q8_0 *)yb;
                const __m256i qy = loadu256(q8->qs);
                const float dy = h2f(q8->d);
#pragma GCC unroll 4
                for (int r = 0; r < RM; r++) {
                    const __m256i i = dot_u8s8(ax[r], _mm256_sign_epi8(qy, qx[r]));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(dx[r] * dy), acc[r][c]);
                }
            } else {
                const blk_q8_1 *q8 = (const blk_q8_1 *)yb;
                const __m256i qy = loadu256(q8->qs);
                const float dy = h2f(q8->d), sy = h2f(q8->s);
#pragma GCC unroll 4
                for (int r = 0; r < RM; r++) {
                    const __m256i i = dot_u8s8(qx[r], qy);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(dx[r] * dy), acc[r][c]);
                    macc[r][c] += mx[r] * sy;
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) s[c * ldc + r] = hsum_ps(acc[r][c]) + macc[r][c];
}

LT_INLINE float ldot(int kind, int64_t n, const char *x, const char *y) {
    float s;
    ltile(kind, 1, 1, n, x, 0, y, 0, &s, 1);
    return s;
}

/* ---- matmul tiles ----
 * lt_matmul passes, besides the activation rows, two tables of floats laid
 * out block-major across the batch (aux[b*ld + t]): the activation scales
 * d_y, then sT = d_y * sum(q_y) (Q8_0) or Q8_1's own s. With them:
 *  - the scale products d_x * d_y of a block are made with one vector
 *    multiply per row and read back as broadcasts;
 *  - Q4_0 / Q5_0 use their quants unsigned (q + 8, q + 16), so no sign
 *    fix-up is needed per row x token pair, and subtract 8 (16) * d_x * sT
 *    per block; Q4_1 / Q5_1 add m * s the same way. These corrections are a
 *    small float product over the blocks, one FMA per row per block. */

LT_INLINE __m256i decode_unsigned(int kind, const char *p, float *d, float *m) {
    switch (kind) {
    case K_Q4_0: {
        const blk_q4_0 *b = (const blk_q4_0 *)p;
        *d = h2f(b->d);
        *m = *d;
        return nibbles32(b->qs);
    }
    case K_Q5_0: {
        const blk_q5_0 *b = (const blk_q5_0 *)p;
        *d = h2f(b->d);
        *m = *d;
        const __m256i hi = _mm256_and_si256(bits32_to_mask(qh32(b->qh)), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(nibbles32(b->qs), hi);
    }
    default:
        return decode(kind, p, d, m);
    }
}

LT_INLINE float corr_factor(int kind) {
    return kind == K_Q4_0 ? -8.0f : kind == K_Q5_0 ? -16.0f : 1.0f;
}

LT_INLINE int has_corr(int kind) { return kind == K_Q4_0 || kind == K_Q5_0 || kind == K_Q4_1 || kind == K_Q5_1; }

LT_INLINE void mtile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx, const char *y,
                     size_t by, const float *aux, size_t ld, float *s, size_t ldc) {
    const int64_t nb = n / 32;
    const size_t xs = blk_bytes(kind);
    const size_t ys = kind == K_Q4_1 || kind == K_Q5_1 ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const int sgn = kind == K_Q8_0 || kind == K_IQ4_NL;
    const float *sT = aux + nb * ld;
    __m256 acc[4][4];
    __m128 corr[4];
    float prod[4][4] __attribute__((aligned(16)));
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        corr[r] = _mm_setzero_ps();
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        if (RN == 1) {
            /* one token: a scalar scale product, no table of products.
             * (|x| with sign(y, x), not |y| with sign(x, y): a Q8_0 weight
             * may be -128, which has no negation in int8.) */
            const __m256i qy = loadu256(y + b * ys + (ys == sizeof(blk_q8_1) ? 4 : 2));
            const float dy1 = aux[b * ld];
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                float dx, m;
                const __m256i q = decode_unsigned(kind, x + r * bx + b * xs, &dx, &m);
                const __m256i i = sgn ? dot_s8s8(q, qy) : dot_u8s8(q, qy);
                acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(dx * dy1), acc[r][0]);
                if (has_corr(kind)) corr[r] = _mm_fmadd_ps(_mm_set1_ps(m), _mm_load_ss(sT + b * ld), corr[r]);
            }
            continue;
        }
        /* the table rows are padded, so 4 floats can be read for any RN */
        const __m128 dy = _mm_loadu_ps(aux + b * ld);
        __m256i qx[4], ax[4];
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            float dx, m;
            qx[r] = decode_unsigned(kind, x + r * bx + b * xs, &dx, &m);
            if (sgn) ax[r] = _mm256_sign_epi8(qx[r], qx[r]);
            _mm_store_ps(prod[r], _mm_mul_ps(_mm_set1_ps(dx), dy));
            if (has_corr(kind)) corr[r] = _mm_fmadd_ps(_mm_set1_ps(m), _mm_loadu_ps(sT + b * ld), corr[r]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256i qy = loadu256(y + c * by + b * ys + (ys == sizeof(blk_q8_1) ? 4 : 2));
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                const __m256i i = sgn ? dot_u8s8(ax[r], _mm256_sign_epi8(qy, qx[r])) : dot_u8s8(qx[r], qy);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_broadcast_ss(&prod[r][c]), acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        const __m128 cr = _mm_mul_ps(corr[r], _mm_set1_ps(corr_factor(kind)));
        if (RN == 4) {
            __m128 v = hsum4_ps(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
            if (has_corr(kind)) v = _mm_add_ps(v, cr);
            store4_strided(s + r, ldc, v);
        } else {
            float crs[4];
            _mm_storeu_ps(crs, cr);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) s[c * ldc + r] = hsum_ps(acc[r][c]) + (has_corr(kind) ? crs[c] : 0.0f);
        }
    }
}

#ifndef MT_RM
#define MT_RM 3
#endif
#ifndef MT_RN
#define MT_RN 4
#endif
#ifndef MT_RM1 /* rows per call for a single token */
#define MT_RM1 4
#endif

#define DEFINE_MTILES(name, kind)                                                                        \
    static void name##_full(int64_t n, const char *x, size_t bx, const char *y, size_t by,              \
                            const float *aux, size_t ld, float *s, size_t ldc) {                         \
        mtile(kind, MT_RM, MT_RN, n, x, bx, y, by, aux, ld, s, ldc);                                     \
    }                                                                                                    \
    static void name##_rows(int64_t n, const char *x, size_t bx, const char *y, const float *aux,        \
                            size_t ld, float *s) {                                                       \
        mtile(kind, MT_RM, 1, n, x, bx, y, 0, aux, ld, s, 1);                                            \
    }                                                                                                    \
    static void name##_cols(int64_t n, const char *x, const char *y, size_t by, const float *aux,        \
                            size_t ld, float *s, size_t ldc) {                                           \
        mtile(kind, 1, MT_RN, n, x, 0, y, by, aux, ld, s, ldc);                                          \
    }                                                                                                    \
    static void name##_one(int64_t n, const char *x, const char *y, const float *aux, size_t ld,         \
                           float *s) {                                                                   \
        mtile(kind, 1, 1, n, x, 0, y, 0, aux, ld, s, 1);                                                 \
    }                                                                                                    \
    static void name##_dec(int64_t n, const char *x, size_t bx, const char *y, const float *aux,         \
                           size_t ld, float *s) {                                                        \
        mtile(kind, MT_RM1, 1, n, x, bx, y, 0, aux, ld, s, 1);                                           \
    }                                                                                                    \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                  \
        const char *x = vx, *y = vy;                                                                     \
        if (nc == 1 && nr == MT_RM1 && MT_RM1 != MT_RM) {                                                \
            name##_dec(n, x, bx, y, aux, ld, s);                                                         \
        } else if (nr == MT_RM && nc == MT_RN) {                                                         \
            name##_full(n, x, bx, y, by, aux, ld, s, ldc);                                               \
        } else if (nr == MT_RM) {                                                                        \
            for (int c = 0; c < nc; c++) name##_rows(n, x, bx, y + c * by, aux + c, ld, s + c * ldc);    \
        } else if (nc == MT_RN) {                                                                        \
            for (int r = 0; r < nr; r++) name##_cols(n, x + r * bx, y, by, aux, ld, s + r, ldc);         \
        } else {                                                                                         \
            for (int r = 0; r < nr; r++)                                                                 \
                for (int c = 0; c < nc; c++)                                                             \
                    name##_one(n, x + r * bx, y + c * by, aux + c, ld, s + c * ldc + r);                 \
        }                                                                                                \
    }

/* The unsigned kinds (Q4_0, Q5_0 as q + 8 / q + 16, Q4_1, Q5_1) in row
 * pairs: their maddubs sums are small (|p| <= 2*31*127), so the products of
 * two rows with one token are added pairwise (hadd) before a single widening
 * madd, cvt and FMA. This saves a quarter of the integer multiplies, which
 * bound these loops. acc lanes 0,1,4,5 belong to the even row, 2,3,6,7 to
 * the odd one; the scale vector is [s0 s0 s1 s1 s0 s0 s1 s1]. */
LT_INLINE void ptile(int kind, const int RP, const int RN, int64_t n, const char *x, size_t bx, const char *y,
                     size_t by, const float *aux, size_t ld, float *s, size_t ldc) {
    const int64_t nb = n / 32;
    const size_t xs = blk_bytes(kind);
    const size_t ys = kind == K_Q4_1 || kind == K_Q5_1 ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const size_t qoff = ys == sizeof(blk_q8_1) ? 4 : 2;
    const float *sT = aux + nb * ld;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
    __m128 corr[4];
#pragma GCC unroll 4
    for (int r = 0; r < 2 * RP; r++) corr[r] = _mm_setzero_ps();
#pragma GCC unroll 2
    for (int p = 0; p < RP; p++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[p][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i qx[4];
        __m256 dxv[2];
#pragma GCC unroll 2
        for (int p = 0; p < RP; p++) {
            float d0, d1, m0, m1;
            qx[2 * p] = decode_unsigned(kind, x + (2 * p) * bx + b * xs, &d0, &m0);
            qx[2 * p + 1] = decode_unsigned(kind, x + (2 * p + 1) * bx + b * xs, &d1, &m1);
            const __m128 dd = _mm_setr_ps(d0, d0, d1, d1);
            dxv[p] = _mm256_set_m128(dd, dd);
            const __m128 st = _mm_loadu_ps(sT + b * ld);
            corr[2 * p] = _mm_fmadd_ps(_mm_set1_ps(m0), st, corr[2 * p]);
            corr[2 * p + 1] = _mm_fmadd_ps(_mm_set1_ps(m1), st, corr[2 * p + 1]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256i qy = loadu256(y + c * by + b * ys + qoff);
            const __m256 dy = _mm256_broadcast_ss(aux + b * ld + c);
#pragma GCC unroll 2
            for (int p = 0; p < RP; p++) {
                const __m256i h = _mm256_hadd_epi16(_mm256_maddubs_epi16(qx[2 * p], qy),
                                                    _mm256_maddubs_epi16(qx[2 * p + 1], qy));
                const __m256i i = _mm256_madd_epi16(h, ones);
                acc[p][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dxv[p], dy), acc[p][c]);
            }
        }
    }
    const __m128 f = _mm_set1_ps(corr_factor(kind));
#pragma GCC unroll 2
    for (int p = 0; p < RP; p++) {
        if (RN == 4) {
            __m128 t[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) /* [a a b b]: halves added */
                t[c] = _mm_add_ps(_mm256_castps256_ps128(acc[p][c]), _mm256_extractf128_ps(acc[p][c], 1));
            const __m128 u01 = _mm_hadd_ps(t[0], t[1]); /* a0 b0 a1 b1 */
            const __m128 u23 = _mm_hadd_ps(t[2], t[3]); /* a2 b2 a3 b3 */
            const __m128 ra = _mm_shuffle_ps(u01, u23, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 rb = _mm_shuffle_ps(u01, u23, _MM_SHUFFLE(3, 1, 3, 1));
            store4_strided(s + 2 * p, ldc, _mm_fmadd_ps(corr[2 * p], f, ra));
            store4_strided(s + 2 * p + 1, ldc, _mm_fmadd_ps(corr[2 * p + 1], f, rb));
        } else {
            float ca[4], cb[4];
            _mm_storeu_ps(ca, _mm_mul_ps(corr[2 * p], f));
            _mm_storeu_ps(cb, _mm_mul_ps(corr[2 * p + 1], f));
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc[p][c]), _mm256_extractf128_ps(acc[p][c], 1));
                const __m128 u = _mm_hadd_ps(t, t); /* a b a b */
                s[c * ldc + 2 * p] = _mm_cvtss_f32(u) + ca[c];
                s[c * ldc + 2 * p + 1] = _mm_cvtss_f32(_mm_shuffle_ps(u, u, 1)) + cb[c];
            }
        }
    }
}

#ifndef PT_RP
#define PT_RP 2
#endif

#define DEFINE_PTILES(name, kind)                                                                        \
    static void name##_full(int64_t n, const char *x, size_t bx, const char *y, size_t by,              \
                            const float *aux, size_t ld, float *s, size_t ldc) {                         \
        ptile(kind, PT_RP, MT_RN, n, x, bx, y, by, aux, ld, s, ldc);                                     \
    }                                                                                                    \
    static void name##_rows(int64_t n, const char *x, size_t bx, const char *y, const float *aux,        \
                            size_t ld, float *s) {                                                       \
        ptile(kind, PT_RP, 1, n, x, bx, y, 0, aux, ld, s, 1);                                            \
    }                                                                                                    \
    static void name##_cols(int64_t n, const char *x, const char *y, size_t by, const float *aux,        \
                            size_t ld, float *s, size_t ldc) {                                           \
        mtile(kind, 1, MT_RN, n, x, 0, y, by, aux, ld, s, ldc);                                          \
    }                                                                                                    \
    static void name##_one(int64_t n, const char *x, const char *y, const float *aux, size_t ld,         \
                           float *s) {                                                                   \
        mtile(kind, 1, 1, n, x, 0, y, 0, aux, ld, s, 1);                                                 \
    }                                                                                                    \
    static void name##_dec(int64_t n, const char *x, size_t bx, const char *y, const float *aux,         \
                           size_t ld, float *s) {                                                        \
        mtile(kind, MT_RM1, 1, n, x, bx, y, 0, aux, ld, s, 1);                                           \
    }                                                                                                    \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                  \
        const char *x = vx, *y = vy;                                                                     \
        if (nc == 1 && nr == MT_RM1) { /* a single token: plain rows beat row pairs */                 \
            name##_dec(n, x, bx, y, aux, ld, s);                                                         \
        } else if (nr == 2 * PT_RP && nc == MT_RN) {                                                     \
            name##_full(n, x, bx, y, by, aux, ld, s, ldc);                                               \
        } else if (nr == 2 * PT_RP) {                                                                    \
            for (int c = 0; c < nc; c++) name##_rows(n, x, bx, y + c * by, aux + c, ld, s + c * ldc);    \
        } else if (nc == MT_RN) {                                                                        \
            for (int r = 0; r < nr; r++) name##_cols(n, x + r * bx, y, by, aux, ld, s + r, ldc);         \
        } else {                                                                                         \
            for (int r = 0; r < nr; r++)                                                                 \
                for (int c = 0; c < nc; c++)                                                             \
                    name##_one(n, x + r * bx, y + c * by, aux + c, ld, s + c * ldc + r);                 \
        }                                                                                                \
    }

DEFINE_PTILES(tile_q4_0, K_Q4_0)
DEFINE_PTILES(tile_q5_0, K_Q5_0)
DEFINE_PTILES(tile_q4_1, K_Q4_1)
DEFINE_PTILES(tile_q5_1, K_Q5_1)
#define P_ROWS (2 * PT_RP)
#define P_ROWS1 MT_RM1
DEFINE_MTILES(tile_q8_0, K_Q8_0)
DEFINE_MTILES(tile_iq4_nl, K_IQ4_NL)

float lt_q4_0_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_Q4_0, n, x, y); }
float lt_q5_0_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_Q5_0, n, x, y); }
float lt_q8_0_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_Q8_0, n, x, y); }
float lt_iq4_nl_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_IQ4_NL, n, x, y); }
float lt_q4_1_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_Q4_1, n, x, y); }
float lt_q5_1_dot_avx2(int64_t n, const void *x, const void *y) { return ldot(K_Q5_1, n, x, y); }

/* 32 int8 values times d, as floats: the same products as the scalar
 * dequantisers (d * q with q a small integer), so bit-identical. */
LT_INLINE void scale32(__m256i q, float d, float *dst) {
    const __m256 vd = _mm256_set1_ps(d);
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(dst, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(dst + 16, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(dst + 24, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

/* Dequantisers of the cold tier's types (attention reads cold pages
 * through them every step). */
LT_INLINE void to_float(int kind, const void *src, float *dst, int64_t n) {
    const char *p = src;
    float d, m;
    for (int64_t i = 0; i < n / 32; i++, p += blk_bytes(kind), dst += 32) {
        const __m256i q = decode(kind, p, &d, &m); /* sets d */
        scale32(q, d, dst);
    }
}

void lt_q4_0_to_float_avx2(const void *src, float *dst, int64_t n) { to_float(K_Q4_0, src, dst, n); }
void lt_q8_0_to_float_avx2(const void *src, float *dst, int64_t n) { to_float(K_Q8_0, src, dst, n); }

void lt_tiles_legacy_avx2(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0, P_ROWS, MT_RN, P_ROWS1, true, LT_PREFETCH_ROWS};
    t[LT_Q5_0] = (lt_tile){tile_q5_0, P_ROWS, MT_RN, P_ROWS1, true, LT_PREFETCH_ROWS};
    t[LT_Q8_0] = (lt_tile){tile_q8_0, MT_RM, MT_RN, MT_RM1, true, LT_PREFETCH_ROWS};
    t[LT_IQ4_NL] = (lt_tile){tile_iq4_nl, MT_RM, MT_RN, MT_RM1, true, LT_PREFETCH_ROWS};
    t[LT_Q4_1] = (lt_tile){tile_q4_1, P_ROWS, MT_RN, P_ROWS1, true, LT_PREFETCH_ROWS};
    t[LT_Q5_1] = (lt_tile){tile_q5_1, P_ROWS, MT_RN, P_ROWS1, true, LT_PREFETCH_ROWS};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_kernels;
#endif
