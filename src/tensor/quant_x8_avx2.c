/* AVX2 matmul tiles on weights interleaved by 8 rows (tensor/repack.h):
 * one vector lane per row, so a block of 8 rows needs no horizontal sums,
 * one scale conversion and one FMA, and the activation bytes are broadcast
 * once for the 8 rows. Per row-block this is about half the instructions
 * of the row-major tiles, which bound 4-bit decode on AVX2.
 *
 * Group block (8 rows, 32 columns): 8 half scales, then the quants in
 * 4-byte chunks, chunk j of row i at byte 16 + 32 j + 4 i. Chunk j holds a
 * row's elements 4j..4j+3 (Q8_0), or for Q4_0 its packed bytes 4j..4j+3:
 * low nibbles = elements 4j..4j+3, high nibbles = 16+4j..16+4j+3.
 *
 * Q4_0 uses its quants unsigned (q + 8) and subtracts 8 d_x sT per block
 * (sT = d_y * sum(q_y), from the activation tables); its maddubs sums stay
 * in int16 across a block (8 x 2 x 15 x 127 < 2^15). Q8_0 multiplies |x|
 * with sign(y, x) (a weight may be -128) and widens every product pair. */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"

#define GROUP_Q4 (8 * sizeof(blk_q4_0))
#define GROUP_Q8 (8 * sizeof(blk_q8_0))

LT_INLINE __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Q4_0 in plain variables, not arrays: gcc kept its arrays of vectors on
 * the stack, which put a store and a load into every accumulation. */

/* Q4_0: the int16 sums of one token's block (qy: its 32 quants) against a
 * group's low (l) and high (h) nibbles of chunks 0..3. */
LT_INLINE __m256i q4_tok(__m256i l0, __m256i l1, __m256i l2, __m256i l3, __m256i h0, __m256i h1, __m256i h2,
                         __m256i h3, const int8_t *qy) {
    const __m256i a = _mm256_add_epi16(_mm256_maddubs_epi16(l0, bcast4(qy)), _mm256_maddubs_epi16(h0, bcast4(qy + 16)));
    const __m256i b = _mm256_add_epi16(_mm256_maddubs_epi16(l1, bcast4(qy + 4)), _mm256_maddubs_epi16(h1, bcast4(qy + 20)));
    const __m256i c = _mm256_add_epi16(_mm256_maddubs_epi16(l2, bcast4(qy + 8)), _mm256_maddubs_epi16(h2, bcast4(qy + 24)));
    const __m256i d = _mm256_add_epi16(_mm256_maddubs_epi16(l3, bcast4(qy + 12)), _mm256_maddubs_epi16(h3, bcast4(qy + 28)));
    return _mm256_add_epi16(_mm256_add_epi16(a, b), _mm256_add_epi16(c, d));
}

/* acc + d_x (d_y sum - 8 sT) for one token of one block. */
LT_INLINE __m256 q4_acc(__m256 acc, __m256 dx, __m256i sum16, const float *d, const float *sT) {
    const __m256 corr = _mm256_mul_ps(_mm256_broadcast_ss(sT), _mm256_set1_ps(-8.0f));
    const __m256i sum = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(dx, _mm256_fmadd_ps(_mm256_broadcast_ss(d), _mm256_cvtepi32_ps(sum), corr), acc);
}

#define Q4_SPLIT(p, l0, l1, l2, l3, h0, h1, h2, h3)                                                   \
    const __m256i w0 = loadu256((p) + 16), w1 = loadu256((p) + 48), w2 = loadu256((p) + 80),            \
                  w3 = loadu256((p) + 112);                                                            \
    const __m256i l0 = _mm256_and_si256(w0, m4), l1 = _mm256_and_si256(w1, m4), l2 = _mm256_and_si256(w2, m4), \
                  l3 = _mm256_and_si256(w3, m4);                                                       \
    const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), m4),                                 \
                  h1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), m4),                                 \
                  h2 = _mm256_and_si256(_mm256_srli_epi16(w2, 4), m4),                                 \
                  h3 = _mm256_and_si256(_mm256_srli_epi16(w3, 4), m4)

/* One group of 8 rows x RN <= 4 tokens. */
LT_INLINE void q4_0_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, const float *aux,
                       size_t ld, float *s, size_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const float *sT = aux + nb * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q4;
        const char *yb = y + (size_t)b * sizeof(blk_q8_0) + 2;
        Q4_SPLIT(blk, l0, l1, l2, l3, h0, h1, h2, h3);
        const __m256 dx = _mm256_cvtph_ps(loadu128(blk));
        const float *d = aux + b * ld, *t = sT + b * ld;
        a0 = q4_acc(a0, dx, q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, (const int8_t *)yb), d, t);
        if (RN > 1) a1 = q4_acc(a1, dx, q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, (const int8_t *)(yb + by)), d + 1, t + 1);
        if (RN > 2) a2 = q4_acc(a2, dx, q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, (const int8_t *)(yb + 2 * by)), d + 2, t + 2);
        if (RN > 3) a3 = q4_acc(a3, dx, q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, (const int8_t *)(yb + 3 * by)), d + 3, t + 3);
    }
    _mm256_storeu_ps(s, a0);
    if (RN > 1) _mm256_storeu_ps(s + ldc, a1);
    if (RN > 2) _mm256_storeu_ps(s + 2 * ldc, a2);
    if (RN > 3) _mm256_storeu_ps(s + 3 * ldc, a3);
}

/* One token, two groups (x and x + gs): the activation broadcasts serve 16 rows. */
LT_INLINE void q4_0_x8_pair(int64_t nb, const char *x, size_t gs, const char *y, const float *aux, float *s) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const float *sT = aux + nb; /* ld = 1 */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q4;
        const int8_t *qy = (const int8_t *)(y + (size_t)b * sizeof(blk_q8_0) + 2);
        __m256i s0, s1;
        {
            Q4_SPLIT(blk, l0, l1, l2, l3, h0, h1, h2, h3);
            s0 = q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, qy);
        }
        {
            Q4_SPLIT(blk + gs, l0, l1, l2, l3, h0, h1, h2, h3);
            s1 = q4_tok(l0, l1, l2, l3, h0, h1, h2, h3, qy);
        }
        a0 = q4_acc(a0, _mm256_cvtph_ps(loadu128(blk)), s0, aux + b, sT + b);
        a1 = q4_acc(a1, _mm256_cvtph_ps(loadu128(blk + gs)), s1, aux + b, sT + b);
    }
    _mm256_storeu_ps(s, a0);
    _mm256_storeu_ps(s + 8, a1);
}

/* Q8_0: RG groups of 8 rows (group g at x + g*gs) x RN tokens; j-outer, so
 * that |x| and the chunk serve every token (here gcc keeps the arrays in
 * registers). */
LT_INLINE void q8_0_x8_groups(const int RG, const int RN, int64_t nb, const char *x, size_t gs, const char *y, size_t by,
                       const float *aux, size_t ld, float *s, size_t ldc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[g][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q8;
        __m256i sum[2][4];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[g][c] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i w[2], a[2];
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++) {
                w[g] = loadu256(blk + g * gs + 16 + 32 * j);
                a[g] = _mm256_sign_epi8(w[g], w[g]);
            }
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m256i qy = bcast4((const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j);
#pragma GCC unroll 2
                for (int g = 0; g < RG; g++)
                    sum[g][c] = _mm256_add_epi32(
                        sum[g][c], _mm256_madd_epi16(_mm256_maddubs_epi16(a[g], _mm256_sign_epi8(qy, w[g])), ones));
            }
        }
        __m256 dx[2];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++) dx[g] = _mm256_cvtph_ps(loadu128(blk + g * gs));
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256 dy = _mm256_broadcast_ss(aux + b * ld + c);
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++)
                acc[g][c] = _mm256_fmadd_ps(_mm256_mul_ps(dx[g], dy), _mm256_cvtepi32_ps(sum[g][c]), acc[g][c]);
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) _mm256_storeu_ps(s + c * ldc + 8 * g, acc[g][c]);
}

LT_INLINE void q8_0_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, const float *aux,
                       size_t ld, float *s, size_t ldc) {
    q8_0_x8_groups(1, RN, nb, x, 0, y, by, aux, ld, s, ldc);
}

LT_INLINE void q8_0_x8_pair(int64_t nb, const char *x, size_t gs, const char *y, const float *aux, float *s) {
    q8_0_x8_groups(2, 1, nb, x, gs, y, 0, aux, 1, s, 0);
}

/* nr: a multiple of 8; nc <= 4. A single token takes two groups per pass,
 * a batch one group x nc tokens. */
#define DEFINE_X8_TILE(name, kern)                                                                          \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,    \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                     \
        const char *x = vx, *y = vy;                                                                        \
        const int64_t nb = n / 32;                                                                          \
        int r = 0;                                                                                          \
        if (nc == 1 && ld == 1)                                                                             \
            for (; r + 16 <= nr; r += 16) kern##_pair(nb, x + (size_t)r * bx, 8 * bx, y, aux, s + r);       \
        for (; r < nr; r += 8) {                                                                            \
            const char *xr = x + (size_t)r * bx;                                                            \
            switch (nc) {                                                                                   \
            case 1: kern(1, nb, xr, y, by, aux, ld, s + r, ldc); break;                                     \
            case 2: kern(2, nb, xr, y, by, aux, ld, s + r, ldc); break;                                     \
            case 3: kern(3, nb, xr, y, by, aux, ld, s + r, ldc); break;                                     \
            default: kern(4, nb, xr, y, by, aux, ld, s + r, ldc); break;                                    \
            }                                                                                               \
        }                                                                                                   \
    }

DEFINE_X8_TILE(tile_q4_0_x8, q4_0_x8)
DEFINE_X8_TILE(tile_q8_0_x8, q8_0_x8)

void lt_tiles_x8_avx2(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0_x8, 8, 4, 16, true, 0};
    t[LT_Q8_0] = (lt_tile){tile_q8_0_x8, 8, 4, 16, true, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_x8_kernels;
#endif
