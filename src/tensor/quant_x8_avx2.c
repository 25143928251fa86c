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

/* RG groups of 8 rows (group g at x + g*gs) x RN tokens. */
LT_INLINE void q4_0_x8(const int RG, const int RN, int64_t nb, const char *x, size_t gs, const char *y, size_t by,
                       const float *aux, size_t ld, float *s, size_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256 minus8 = _mm256_set1_ps(-8.0f);
    const float *sT = aux + nb * ld;
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[g][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q4;
        __m256i sum[2][4];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[g][c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i lo[2], hi[2];
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++) {
                const __m256i w = loadu256(blk + g * gs + 16 + 32 * j);
                lo[g] = _mm256_and_si256(w, m4);
                hi[g] = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            }
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t *qy = (const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2);
                const __m256i ylo = bcast4(qy + 4 * j), yhi = bcast4(qy + 16 + 4 * j);
#pragma GCC unroll 2
                for (int g = 0; g < RG; g++)
                    sum[g][c] = _mm256_add_epi16(sum[g][c], _mm256_add_epi16(_mm256_maddubs_epi16(lo[g], ylo),
                                                                             _mm256_maddubs_epi16(hi[g], yhi)));
            }
        }
        __m256 dx[2];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++) dx[g] = _mm256_cvtph_ps(loadu128(blk + g * gs));
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256 dy = _mm256_broadcast_ss(aux + b * ld + c);
            const __m256 corr = _mm256_mul_ps(_mm256_broadcast_ss(sT + b * ld + c), minus8);
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++) {
                const __m256 t = _mm256_fmadd_ps(dy, _mm256_cvtepi32_ps(_mm256_madd_epi16(sum[g][c], ones)), corr);
                acc[g][c] = _mm256_fmadd_ps(dx[g], t, acc[g][c]);
            }
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) _mm256_storeu_ps(s + c * ldc + 8 * g, acc[g][c]);
}

LT_INLINE void q8_0_x8(const int RG, const int RN, int64_t nb, const char *x, size_t gs, const char *y, size_t by,
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

/* nr: a multiple of 8; nc <= 4. A single token takes two groups per pass
 * (the activation broadcasts serve 16 rows), a batch one group x nc tokens. */
#define DEFINE_X8_TILE(name, kern)                                                                          \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,    \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                     \
        const char *x = vx, *y = vy;                                                                        \
        const int64_t nb = n / 32;                                                                          \
        const size_t gs = 8 * bx;                                                                           \
        int r = 0;                                                                                          \
        if (nc == 1)                                                                                        \
            for (; r + 16 <= nr; r += 16) kern(2, 1, nb, x + (size_t)r * bx, gs, y, by, aux, ld, s + r, ldc); \
        for (; r < nr; r += 8) {                                                                            \
            const char *xr = x + (size_t)r * bx;                                                            \
            switch (nc) {                                                                                   \
            case 1: kern(1, 1, nb, xr, gs, y, by, aux, ld, s + r, ldc); break;                              \
            case 2: kern(1, 2, nb, xr, gs, y, by, aux, ld, s + r, ldc); break;                              \
            case 3: kern(1, 3, nb, xr, gs, y, by, aux, ld, s + r, ldc); break;                              \
            default: kern(1, 4, nb, xr, gs, y, by, aux, ld, s + r, ldc); break;                             \
            }                                                                                               \
        }                                                                                                   \
    }

DEFINE_X8_TILE(tile_q4_0_x8, q4_0_x8)
DEFINE_X8_TILE(tile_q8_0_x8, q8_0_x8)

void lt_tiles_x8_avx2(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0_x8, 8, 4, 16, true};
    t[LT_Q8_0] = (lt_tile){tile_q8_0_x8, 8, 4, 16, true};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_x8_kernels;
#endif
