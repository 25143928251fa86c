/* AVX-512 VNNI matmul tiles on weights interleaved by 8 rows (tensor/repack.h,
 * the layout of quant_x8_avx2.c): a 512-bit register holds one 4-byte chunk
 * of 16 rows, two groups side by side (lanes 0-7 the group at x, 8-15 the
 * one 8 rows further), so one broadcast of 4 activation bytes serves 16 rows
 * and one vpdpbusd does what maddubs + madd + add did for 8.
 *
 * The integer sums of a block are exact whatever the order, and the float
 * steps per block and row are the AVX2 kernels' own, in the same order: the
 * results are bit-identical to quant_x8_avx2.c's (tests/test_repack.c).
 *
 * Q4_0: the quants unsigned (q + 8, 0..15) against the signed activation
 * bytes, as vpdpbusd wants; 8 d_x sT is taken back per block as in AVX2.
 * Q8_0: |w| (u8; -128 gives 128) against y with w's sign (y negated where
 * w < 0, by mask), the AVX2 kernel's sign trick without _mm256_sign_epi8.
 *
 * A call takes P pairs of groups (P = 2 for a single token: 32 rows, four
 * independent chains) x RN <= 4 tokens; a lone group at the end of a call
 * (n_rows a multiple of 8, not of 16) runs as a pair with both halves on it,
 * and only its 8 lanes are stored. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "tensor/avx512_util.h"
#include "tensor/quant_impl.h"

#define GROUP_Q4 (8 * sizeof(blk_q4_0))
#define GROUP_Q8 (8 * sizeof(blk_q8_0))

/* As quant_x8_avx2.c: each group is a stream the hardware prefetcher
 * follows, but not far enough ahead of these kernels on one thread. */
#ifndef X8_AHEAD
#define X8_AHEAD 1024
#endif
LT_INLINE void x8_prefetch(const char *block, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(block + X8_AHEAD + o, _MM_HINT_T0);
}

LT_INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Chunk bytes at offset o of the two groups' blocks (g0 in lanes 0-7). */
LT_INLINE __m512i pair_chunk(const char *g0, const char *g1, size_t o) {
    return join256(loadu256(g0 + o), loadu256(g1 + o));
}

/* The 16 rows' half scales of a block pair as floats. */
LT_INLINE __m512 pair_scales(const char *g0, const char *g1) {
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(loadu128(g0)), loadu128(g1), 1));
}

/* Q4_0: acc + d_x (d_y sum - 8 sT), the AVX2 kernel's two FMAs. */
LT_INLINE __m512 q4_acc(__m512 acc, __m512 dx, __m512i sum, const float *d, const float *sT) {
    const __m512 corr = _mm512_mul_ps(_mm512_set1_ps(*sT), _mm512_set1_ps(-8.0f));
    return _mm512_fmadd_ps(dx, _mm512_fmadd_ps(_mm512_set1_ps(*d), _mm512_cvtepi32_ps(sum), corr), acc);
}

/* P pairs (pair p at x + 2p gs, its second group gs further; gs2 = 0
 * puts the first group in both halves) x RN tokens. */
LT_INLINE void q4_0_x16(const int P, const int RN, int64_t nb, const char *x, size_t gs, size_t gs2, const char *y,
                        size_t by, const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const float *sT = aux + nb * ld;
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[p][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *g[2][2];
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            g[p][0] = x + 2 * (size_t)p * gs + (size_t)b * GROUP_Q4;
            g[p][1] = g[p][0] + gs2;
            x8_prefetch(g[p][0], GROUP_Q4);
            if (gs2) x8_prefetch(g[p][1], GROUP_Q4);
        }
        __m512i sum[2][4];
#pragma GCC unroll 2
        for (int p = 0; p < P; p++)
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[p][c] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i lo[2], hi[2];
#pragma GCC unroll 2
            for (int p = 0; p < P; p++) {
                const __m512i w = pair_chunk(g[p][0], g[p][1], 16 + 32 * (size_t)j);
                lo[p] = _mm512_and_si512(w, m4);
                hi[p] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
            }
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t *qy = (const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j;
                const __m512i yl = bcast4(qy), yh = bcast4(qy + 16);
#pragma GCC unroll 2
                for (int p = 0; p < P; p++)
                    sum[p][c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sum[p][c], lo[p], yl), hi[p], yh);
            }
        }
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            const __m512 dx = pair_scales(g[p][0], g[p][1]);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) acc[p][c] = q4_acc(acc[p][c], dx, sum[p][c], aux + b * ld + c, sT + b * ld + c);
        }
    }
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) _mm512_mask_storeu_ps(s + c * ldc + 16 * p, keep, acc[p][c]);
}

/* Q8_0: the same walk over its 8 chunks. */
LT_INLINE void q8_0_x16(const int P, const int RN, int64_t nb, const char *x, size_t gs, size_t gs2, const char *y,
                        size_t by, const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[p][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *g[2][2];
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            g[p][0] = x + 2 * (size_t)p * gs + (size_t)b * GROUP_Q8;
            g[p][1] = g[p][0] + gs2;
            x8_prefetch(g[p][0], GROUP_Q8);
            if (gs2) x8_prefetch(g[p][1], GROUP_Q8);
        }
        __m512i sum[2][4];
#pragma GCC unroll 2
        for (int p = 0; p < P; p++)
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[p][c] = zero;
#pragma GCC unroll 2
        for (int j = 0; j < 8; j++) {
            __m512i a[2];
            __mmask64 neg[2];
#pragma GCC unroll 2
            for (int p = 0; p < P; p++) {
                const __m512i w = pair_chunk(g[p][0], g[p][1], 16 + 32 * (size_t)j);
                a[p] = _mm512_abs_epi8(w);
                neg[p] = _mm512_movepi8_mask(w);
            }
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m512i qy = bcast4((const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j);
#pragma GCC unroll 2
                for (int p = 0; p < P; p++)
                    sum[p][c] = _mm512_dpbusd_epi32(sum[p][c], a[p], _mm512_mask_sub_epi8(qy, neg[p], zero, qy));
            }
        }
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            const __m512 dx = pair_scales(g[p][0], g[p][1]);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m512 dy = _mm512_set1_ps(aux[b * ld + c]);
                acc[p][c] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy), _mm512_cvtepi32_ps(sum[p][c]), acc[p][c]);
            }
        }
    }
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) _mm512_mask_storeu_ps(s + c * ldc + 16 * p, keep, acc[p][c]);
}

/* One function per (pairs, tokens), so that each loop gets the whole
 * register file. */
#define X16_VARIANT(kern, P, RN)                                                                              \
    static LT_NOINLINE void kern##_##P##_##RN(int64_t nb, const char *x, size_t gs, size_t gs2, const char *y, \
                                              size_t by, const float *aux, size_t ld, float *s, size_t ldc,    \
                                              __mmask16 keep) {                                                \
        kern(P, RN, nb, x, gs, gs2, y, by, aux, ld, s, ldc, keep);                                            \
    }

/* nr: a multiple of 8 up to 32; nc <= 4. Two pairs at once for a single
 * token (four independent sums), one pair x nc tokens for a batch. */
#define DEFINE_X16_TILE(name, kern)                                                                           \
    X16_VARIANT(kern, 2, 1)                                                                                   \
    X16_VARIANT(kern, 1, 1)                                                                                   \
    X16_VARIANT(kern, 1, 2)                                                                                   \
    X16_VARIANT(kern, 1, 3)                                                                                   \
    X16_VARIANT(kern, 1, 4)                                                                                   \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,      \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                       \
        const char *x = vx, *y = vy;                                                                          \
        const int64_t nb = n / 32;                                                                            \
        const size_t gs = 8 * bx;                                                                             \
        int r = 0;                                                                                            \
        if (nc == 1)                                                                                          \
            for (; r + 32 <= nr; r += 32) kern##_2_1(nb, x + (size_t)r * bx, gs, gs, y, by, aux, ld, s + r, ldc, 0xFFFF); \
        for (; r < nr; r += 16) {                                                                             \
            const char *xr = x + (size_t)r * bx;                                                              \
            const bool two = r + 16 <= nr; /* else one group: both halves on it */                            \
            const size_t gs2 = two ? gs : 0;                                                                  \
            const __mmask16 keep = two ? 0xFFFF : 0x00FF;                                                     \
            switch (nc) {                                                                                     \
            case 1: kern##_1_1(nb, xr, gs, gs2, y, by, aux, ld, s + r, ldc, keep); break;                     \
            case 2: kern##_1_2(nb, xr, gs, gs2, y, by, aux, ld, s + r, ldc, keep); break;                     \
            case 3: kern##_1_3(nb, xr, gs, gs2, y, by, aux, ld, s + r, ldc, keep); break;                     \
            default: kern##_1_4(nb, xr, gs, gs2, y, by, aux, ld, s + r, ldc, keep); break;                    \
            }                                                                                                 \
        }                                                                                                     \
    }

DEFINE_X16_TILE(tile_q4_0_x16, q4_0_x16)
DEFINE_X16_TILE(tile_q8_0_x16, q8_0_x16)

void lt_tiles_x8_avx512(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0_x16, 16, 4, 32, true, 0};
    t[LT_Q8_0] = (lt_tile){tile_q8_0_x16, 16, 4, 32, true, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_x8_kernels;
#endif
