/* AVX-512 VNNI matmul tiles on weights interleaved by 8 rows (tensor/repack.h,
 * the layout of quant_x8_avx2.c): a 512-bit register holds one 4-byte chunk
 * of 16 rows, two groups side by side (lanes 0-7 the group at x, 8-15 the
 * one 8 rows further), so one broadcast of 4 activation bytes serves 16 rows
 * and one vpdpbusd does what maddubs + madd + add did for 8.
 *
 * The integer sums of a block are exact whatever the order, and the float
 * steps per block and row are the AVX2 kernels' own, in the same order: the
 * results are bit-identical to quant_x8_avx2.c's (tests/test_repack.c on
 * AVX-512 hardware, tests/avx512_emul/driver_x8.c anywhere with AVX2).
 *
 * Q4_0: the quants unsigned (q + 8, 0..15) against the signed activation
 * bytes, as vpdpbusd wants; 8 d_x sT is taken back per block as in AVX2.
 * Q8_0: |w| (u8; -128 gives 128) against y with w's sign (y negated where
 * w < 0, by mask), the AVX2 kernel's sign trick without _mm256_sign_epi8.
 * Q4_K / Q6_K: per sub-block sums, the scales applied in int32 (below).
 *
 * A batch call takes one pair of groups x RN <= 4 tokens; a lone group at
 * the end of a call (n_rows a multiple of 8, not of 16) runs as a pair with
 * both halves on it, and only its 8 lanes are stored. A
 * single token takes other kernels, one group at a time (see "a single
 * token" below: one stream from memory). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "tensor/avx512_util.h"
#include "tensor/quant_impl.h"
#include "tensor/x8_k_util.h"

#define GROUP_Q4 (8 * sizeof(blk_q4_0))
#define GROUP_Q8 (8 * sizeof(blk_q8_0))

/* As quant_x8_avx2.c: each group is a stream the hardware prefetcher
 * follows, but not far enough ahead of these kernels on one thread. With
 * one group at a time (a single token) 4 KiB ahead measured best: Q4_0
 * decode on one thread at 75-80% of the roofline with 2 KiB, 83-84% with
 * 4 KiB (Q8_0 86-88% -> 95%). */
#ifndef X8_AHEAD
#define X8_AHEAD 4096
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

/* A batch: the pair's blocks b (the second group g1 is g0 for a lone
 * group), fetched ahead. */
LT_INLINE void pair_blocks(const char *g0, const char *g1, int64_t b, size_t group, const char **b0, const char **b1) {
    *b0 = g0 + (size_t)b * group;
    *b1 = g1 + (size_t)b * group;
    x8_prefetch(*b0, group);
    if (g1 != g0) x8_prefetch(*b1, group);
}

/* The RN tokens' 16 row results (only keep's lanes: 8 for a lone group). */
LT_INLINE void store_pair(const int RN, const __m512 *acc, float *s, size_t ldc, __mmask16 keep) {
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) _mm512_mask_storeu_ps(s + c * ldc, keep, acc[c]);
}

/* The pair of groups at g0, g1 x RN tokens, nb blocks. */
LT_INLINE void q4_0_x16(const int RN, int64_t nb, const char *g0, const char *g1, const char *y, size_t by,
                        const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const float *sT = aux + nb * ld;
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *b0, *b1;
        pair_blocks(g0, g1, b, GROUP_Q4, &b0, &b1);
        __m512i sum[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) sum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i w = pair_chunk(b0, b1, 16 + 32 * (size_t)j);
            const __m512i lo = _mm512_and_si512(w, m4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t *qy = (const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j;
                sum[c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sum[c], lo, bcast4(qy)), hi, bcast4(qy + 16));
            }
        }
        const __m512 dx = pair_scales(b0, b1);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[c] = q4_acc(acc[c], dx, sum[c], aux + b * ld + c, sT + b * ld + c);
    }
    store_pair(RN, acc, s, ldc, keep);
}

/* Q8_0: the same walk over its 8 chunks. */
LT_INLINE void q8_0_x16(const int RN, int64_t nb, const char *g0, const char *g1, const char *y, size_t by,
                        const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *b0, *b1;
        pair_blocks(g0, g1, b, GROUP_Q8, &b0, &b1);
        __m512i sum[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) sum[c] = zero;
#pragma GCC unroll 2
        for (int j = 0; j < 8; j++) {
            const __m512i w = pair_chunk(b0, b1, 16 + 32 * (size_t)j);
            const __m512i a = _mm512_abs_epi8(w);
            const __mmask64 neg = _mm512_movepi8_mask(w);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m512i qy = bcast4((const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j);
                sum[c] = _mm512_dpbusd_epi32(sum[c], a, _mm512_mask_sub_epi8(qy, neg, zero, qy));
            }
        }
        const __m512 dx = pair_scales(b0, b1);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m512 dy = _mm512_set1_ps(aux[b * ld + c]);
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy), _mm512_cvtepi32_ps(sum[c]), acc[c]);
        }
    }
    store_pair(RN, acc, s, ldc, keep);
}

/* ---- Q4_K and Q6_K (tensor/repack.c gives the group layouts) ----
 * The integer sums of a super-block per row, sum_j sc_j (q.y)_j and the
 * mins' sum_j m_j ysum_j (Q4_K) or the offset 32 sum_j sc_j bsum_j (Q6_K),
 * are exact, and the float steps are the AVX2 kernels' own. */
#define GROUP_Q4K (8 * sizeof(blk_q4_K))
#define GROUP_Q6K (8 * sizeof(blk_q6_K))

/* 8 bytes of each group (one value per row) as the 16 rows' int32 lanes. */
LT_INLINE __m512i pair_u8_32(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b)));
}

LT_INLINE void q4_K_x16(const int RN, int64_t nb, const char *g0, const char *g1, const char *y, size_t by,
                        const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    (void)aux, (void)ld;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[4];
    uint8_t scv[2][64], mnv[2][64];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *b0, *b1;
        pair_blocks(g0, g1, b, GROUP_Q4K, &b0, &b1);
        k4_group_values(b0, scv[0], mnv[0]);
        k4_group_values(b1, scv[1], mnv[1]);
        const blk_q8_K *yb[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) yb[c] = (const blk_q8_K *)(y + c * by) + b;
        __m512i isum[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) isum[c] = _mm512_setzero_si512();
        /* sub-block 2k + h: the low (h = 0) or high nibbles of chunks
         * 8k..8k+7; one half at a time keeps the sums in registers (both at
         * once made gcc spill them), the chunks are read again from L1 */
#pragma GCC unroll 1
        for (int j = 0; j < 8; j++) {
            const int k = j / 2, h = j % 2;
            __m512i sum[4];
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                const __m512i w = pair_chunk(b0, b1, 128 + 32 * (size_t)(8 * k + q));
                const __m512i v = _mm512_and_si512(h ? _mm512_srli_epi16(w, 4) : w, m4);
#pragma GCC unroll 4
                for (int c = 0; c < RN; c++) sum[c] = _mm512_dpbusd_epi32(sum[c], v, bcast4(yb[c]->qs + 32 * j + 4 * q));
            }
            const __m512i sc = pair_u8_32(scv[0] + 8 * j, scv[1] + 8 * j);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(sum[c], sc));
        }
        const __m512 d = pair_scales(b0, b1), dmin = pair_scales(b0 + 16, b1 + 16);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const int ys = yb[c]->bsums[2 * j] + yb[c]->bsums[2 * j + 1];
                msum = _mm512_add_epi32(msum, _mm512_mullo_epi32(pair_u8_32(mnv[0] + 8 * j, mnv[1] + 8 * j), _mm512_set1_epi32(ys)));
            }
            const __m512 dy = _mm512_set1_ps(yb[c]->d);
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(isum[c]), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(msum), acc[c]);
        }
    }
    store_pair(RN, acc, s, ldc, keep);
}

/* Q6_K: quants unsigned (q + 32, 0..63) as in AVX2. Sub-block order: for
 * half n and quarter t, elements 128n + 32t + 4l (pieces l = 0..7: l < 4
 * sub-block 8n + 2t, else 8n + 2t + 1). */
LT_INLINE __m512i k6_quants(const char *g0, const char *g1, int n, int t, int l) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const size_t piece = 144 + 96 * (size_t)(8 * n + l);
    const __m512i L = pair_chunk(g0, g1, piece + (t & 1 ? 32 : 0)), H = pair_chunk(g0, g1, piece + 64);
    const __m512i lo = t < 2 ? _mm512_and_si512(L, m4) : _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
    const __m512i hs = t == 0 ? _mm512_slli_epi16(H, 4) : t == 1 ? _mm512_slli_epi16(H, 2) : t == 2 ? H : _mm512_srli_epi16(H, 2);
    return _mm512_or_si512(lo, _mm512_and_si512(hs, m30));
}

LT_INLINE void q6_K_x16(const int RN, int64_t nb, const char *g0, const char *g1, const char *y, size_t by,
                        const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {
    (void)aux, (void)ld;
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *b0, *b1;
        pair_blocks(g0, g1, b, GROUP_Q6K, &b0, &b1);
        __m512i scp[8]; /* pair q: lanes (sc[2q], sc[2q + 1]) of the 16 rows as int16 */
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            scp[q] = _mm512_cvtepi8_epi16(
                _mm256_inserti128_si256(_mm256_castsi128_si256(loadu128(b0 + 16 + 16 * q)), loadu128(b1 + 16 + 16 * q), 1));
        const blk_q8_K *yb[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) yb[c] = (const blk_q8_K *)(y + c * by) + b;
        __m512i isum[4];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) isum[c] = _mm512_setzero_si512();
#pragma GCC unroll 1
        for (int n = 0; n < 2; n++)
#pragma GCC unroll 1
            for (int t = 0; t < 4; t++)
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    __m512i sum[4];
#pragma GCC unroll 4
                    for (int c = 0; c < RN; c++) sum[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
                    for (int l = 4 * h; l < 4 * h + 4; l++) {
                        const __m512i v = k6_quants(b0, b1, n, t, l);
#pragma GCC unroll 4
                        for (int c = 0; c < RN; c++)
                            sum[c] = _mm512_dpbusd_epi32(sum[c], v, bcast4(yb[c]->qs + 128 * n + 32 * t + 4 * l));
                    }
                    /* sub-block 8n + 2t + h: pair 4n + t, low or high int16 */
                    const __m512i pr = scp[4 * n + t];
                    const __m512i sc = h ? _mm512_srai_epi32(pr, 16) : _mm512_srai_epi32(_mm512_slli_epi32(pr, 16), 16);
#pragma GCC unroll 4
                    for (int c = 0; c < RN; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(sum[c], sc));
                }
        const __m512 dx = pair_scales(b0, b1);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            __m512i osum = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                int32_t bs;
                memcpy(&bs, yb[c]->bsums + 2 * q, 4);
                osum = _mm512_dpwssd_epi32(osum, scp[q], _mm512_set1_epi32(bs));
            }
            const __m512i is = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(osum, 5));
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_set1_ps(yb[c]->d)), _mm512_cvtepi32_ps(is), acc[c]);
        }
    }
    store_pair(RN, acc, s, ldc, keep);
}

/* ---- a single token: one group at a time ----
 * Reading several groups at once is several streams, and one core gets
 * much less from memory that way: a read-only pass here gave 35 GB/s on
 * one sequential stream, 26 GB/s on four 9 KiB streams side by side (with
 * the prefetch these kernels use) and 17-24 GB/s on eight 4 KiB ones. So a
 * single token walks the groups one after the other, and a register holds
 * two chunks of one group (lanes 0-7 chunk j, 8-15 chunk j + 1 of the same
 * 8 rows); the activation bytes of the two chunks are spread over the
 * halves by one permute of the block's 32 bytes. Per block the two halves'
 * integer sums are added (exact), and the float steps are the AVX2 tiles'
 * on 8 lanes, so the bits are theirs again. */

/* The block's activation bytes as a register and the permutes that put its
 * int32 words a and a + 1 in the low and high halves. */
LT_INLINE __m512i word_pair(int a) {
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, a + 1, a + 1, a + 1, a + 1, a + 1, a + 1, a + 1, a + 1);
}

/* lanes i + 8 added to lanes i: a row's sum over both chunks */
LT_INLINE __m256i fold_halves(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/* Q4_0, one group (8 rows) of nb blocks at x. */
static LT_NOINLINE void q4_0_group1(int64_t nb, const char *x, const char *y, const float *aux, float *s) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i i01 = word_pair(0), i23 = word_pair(2), i45 = word_pair(4), i67 = word_pair(6);
    const float *sT = aux + nb; /* ld = 1 */
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q4;
        x8_prefetch(blk, GROUP_Q4);
        const __m512i Y = _mm512_castsi256_si512(loadu256(y + (size_t)b * sizeof(blk_q8_0) + 2));
        const __m512i w01 = _mm512_loadu_si512(blk + 16), w23 = _mm512_loadu_si512(blk + 80);
        /* low nibbles: elements 4j..; high: 16 + 4j.. (words 4..7 of Y) */
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(w01, m4), _mm512_permutexvar_epi32(i01, Y));
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(w23, m4), _mm512_permutexvar_epi32(i23, Y));
        s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(_mm512_srli_epi16(w01, 4), m4), _mm512_permutexvar_epi32(i45, Y));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(w23, 4), m4), _mm512_permutexvar_epi32(i67, Y));
        const __m256i sum = fold_halves(_mm512_add_epi32(s0, s1));
        const __m256 corr = _mm256_mul_ps(_mm256_broadcast_ss(sT + b), _mm256_set1_ps(-8.0f));
        const __m256 dx = _mm256_cvtph_ps(loadu128(blk));
        acc = _mm256_fmadd_ps(dx, _mm256_fmadd_ps(_mm256_broadcast_ss(aux + b), _mm256_cvtepi32_ps(sum), corr), acc);
    }
    _mm256_storeu_ps(s, acc);
}

/* Q8_0, one group. */
static LT_NOINLINE void q8_0_group1(int64_t nb, const char *x, const char *y, const float *aux, float *s) {
    const __m512i zero = _mm512_setzero_si512();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q8;
        x8_prefetch(blk, GROUP_Q8);
        const __m512i Y = _mm512_castsi256_si512(loadu256(y + (size_t)b * sizeof(blk_q8_0) + 2));
        __m512i sp[2] = {zero, zero};
#pragma GCC unroll 4
        for (int jp = 0; jp < 4; jp++) {
            const __m512i w = _mm512_loadu_si512(blk + 16 + 64 * jp);
            const __m512i qy = _mm512_permutexvar_epi32(word_pair(2 * jp), Y);
            sp[jp % 2] = _mm512_dpbusd_epi32(sp[jp % 2], _mm512_abs_epi8(w),
                                             _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(w), zero, qy));
        }
        const __m256i sum = fold_halves(_mm512_add_epi32(sp[0], sp[1]));
        const __m256 dx = _mm256_cvtph_ps(loadu128(blk));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_broadcast_ss(aux + b)), _mm256_cvtepi32_ps(sum), acc);
    }
    _mm256_storeu_ps(s, acc);
}

/* Q4_K, one group: chunks 8k + q and 8k + q + 1 per register; the 8 rows'
 * int32 sum sum_j sc_j (q.y)_j, then the AVX2 tile's finish (mins, d, dmin). */
LT_INLINE __m256i k4_scale8(__m256i v0, __m256i v1, int j) { /* sub-block j's 8 values as int32 */
    const __m256i v = j < 4 ? v0 : v1;
    const __m128i l = j % 4 < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    return _mm256_cvtepu8_epi32(j % 2 ? _mm_unpackhi_epi64(l, l) : l);
}

static LT_NOINLINE void q4_K_group1(int64_t nb, const char *x, const char *y, const float *aux, float *s) {
    (void)aux;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    uint8_t mnv[64] __attribute__((aligned(32)));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *g = x + (size_t)b * GROUP_Q4K;
        x8_prefetch(g, GROUP_Q4K);
        const blk_q8_K *yb = (const blk_q8_K *)y + b;
        __m256i v0, v1, m0, m1;
        k4x8_values(g + 32, g + 96, &v0, &v1);
        k4x8_values(g + 64, g + 112, &m0, &m1);
        _mm256_store_si256((__m256i *)mnv, m0);
        _mm256_store_si256((__m256i *)(mnv + 32), m1);
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i Y = _mm512_loadu_si512(yb->qs + 64 * k); /* words: 0..7 low nibbles, 8..15 high */
            __m512i lo = _mm512_setzero_si512(), hi = lo;
#pragma GCC unroll 4
            for (int q = 0; q < 8; q += 2) {
                const __m512i w = _mm512_loadu_si512(g + 128 + 32 * (8 * k + q));
                lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(w, m4), _mm512_permutexvar_epi32(word_pair(q), Y));
                hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(w, 4), m4),
                                         _mm512_permutexvar_epi32(word_pair(8 + q), Y));
            }
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_mullo_epi32(fold_halves(lo), k4_scale8(v0, v1, 2 * k)),
                                                           _mm256_mullo_epi32(fold_halves(hi), k4_scale8(v0, v1, 2 * k + 1))));
        }
        acc = k4x8_finish(acc, g, mnv, yb, isum);
    }
    _mm256_storeu_ps(s, acc);
}

/* Q6_K, one group: pieces l and l + 1 of a half per register (96 bytes
 * apart); the AVX2 tile's offset and float step. */
static LT_NOINLINE void q6_K_group1(int64_t nb, const char *x, const char *y, const float *aux, float *s) {
    (void)aux;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *g = x + (size_t)b * GROUP_Q6K;
        x8_prefetch(g, GROUP_Q6K);
        const blk_q8_K *yb = (const blk_q8_K *)y + b;
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 1
        for (int n = 0; n < 2; n++) {
            const __m512i Y01 = _mm512_loadu_si512(yb->qs + 128 * n), Y23 = _mm512_loadu_si512(yb->qs + 128 * n + 64);
            __m512i sum[4][2];
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) sum[t][0] = sum[t][1] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int l = 0; l < 8; l += 2) {
                const char *pc = g + 144 + 96 * (size_t)(8 * n + l); /* pieces l, l + 1 */
                const __m512i A = join256(loadu256(pc), loadu256(pc + 96)), B = join256(loadu256(pc + 32), loadu256(pc + 128));
                const __m512i H = join256(loadu256(pc + 64), loadu256(pc + 160));
                const __m512i v[4] = {
                    _mm512_or_si512(_mm512_and_si512(A, m4), _mm512_and_si512(_mm512_slli_epi16(H, 4), m30)),
                    _mm512_or_si512(_mm512_and_si512(B, m4), _mm512_and_si512(_mm512_slli_epi16(H, 2), m30)),
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), m4), _mm512_and_si512(H, m30)),
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), m4),
                                    _mm512_and_si512(_mm512_srli_epi16(H, 2), m30))};
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) /* elements 128n + 32t + 4l: word 8t + l of the half */
                    sum[t][l / 4] = _mm512_dpbusd_epi32(sum[t][l / 4], v[t],
                                                        _mm512_permutexvar_epi32(word_pair(8 * (t % 2) + l), t < 2 ? Y01 : Y23));
            }
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                /* sub-blocks 8n + 2t (+1): pair 4n + t of the scales, (sc[2p], sc[2p+1]) per row */
                const __m256i pr = _mm256_cvtepi8_epi16(loadu128(g + 16 + 16 * (4 * n + t)));
                const __m256i even = _mm256_srai_epi32(_mm256_slli_epi32(pr, 16), 16), odd = _mm256_srai_epi32(pr, 16);
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_mullo_epi32(fold_halves(sum[t][0]), even),
                                                               _mm256_mullo_epi32(fold_halves(sum[t][1]), odd)));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(loadu128(g));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps(yb->d)), _mm256_cvtepi32_ps(k6x8_offset(g, yb, isum)), acc);
    }
    _mm256_storeu_ps(s, acc);
}

/* One function per token count, so that each loop gets the whole register
 * file. */
#define X16_VARIANT(kern, RN)                                                                                 \
    static LT_NOINLINE void kern##_##RN(int64_t nb, const char *g0, const char *g1, const char *y, size_t by,  \
                                        const float *aux, size_t ld, float *s, size_t ldc, __mmask16 keep) {   \
        kern(RN, nb, g0, g1, y, by, aux, ld, s, ldc, keep);                                                   \
    }

/* A batch: nr a multiple of 8 up to 16, nc <= 4 (one pair x nc tokens);
 * qk: elements per block. */
#define DEFINE_X16_TILE(name, kern, qk)                                                                       \
    X16_VARIANT(kern, 1)                                                                                      \
    X16_VARIANT(kern, 2)                                                                                      \
    X16_VARIANT(kern, 3)                                                                                      \
    X16_VARIANT(kern, 4)                                                                                      \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,      \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                       \
        const int64_t nb = n / (qk);                                                                          \
        for (int r = 0; r < nr; r += 16) {                                                                    \
            const char *g0 = (const char *)vx + (size_t)r * bx;                                               \
            const bool two = r + 16 <= nr; /* else one group: both halves on it */                            \
            const char *g1 = two ? g0 + 8 * bx : g0;                                                          \
            const __mmask16 keep = two ? 0xFFFF : 0x00FF;                                                     \
            switch (nc) {                                                                                     \
            case 1: kern##_1(nb, g0, g1, vy, by, aux, ld, s + r, ldc, keep); break;                           \
            case 2: kern##_2(nb, g0, g1, vy, by, aux, ld, s + r, ldc, keep); break;                           \
            case 3: kern##_3(nb, g0, g1, vy, by, aux, ld, s + r, ldc, keep); break;                           \
            default: kern##_4(nb, g0, g1, vy, by, aux, ld, s + r, ldc, keep); break;                          \
            }                                                                                                 \
        }                                                                                                     \
    }

DEFINE_X16_TILE(tile_q4_0_x16, q4_0_x16, 32)
DEFINE_X16_TILE(tile_q8_0_x16, q8_0_x16, 32)

/* A single token walks one group at a time (the group1 kernels above), a
 * batch takes the x16 tiles. */
#define DEFINE_TILE(name, group1, x16, qk)                                                                    \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,      \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                       \
        if (nc == 1 && ld == 1)                                                                               \
            for (int r = 0; r < nr; r += 8) group1(n / (qk), (const char *)vx + (size_t)r * bx, vy, aux, s + r); \
        else                                                                                                  \
            x16(n, vx, bx, vy, by, aux, ld, s, ldc, nr, nc);                                                  \
    }
DEFINE_TILE(tile_q4_0, q4_0_group1, tile_q4_0_x16, 32)
DEFINE_TILE(tile_q8_0, q8_0_group1, tile_q8_0_x16, 32)

DEFINE_X16_TILE(tile_q4_K_x16, q4_K_x16, QK_K)
DEFINE_X16_TILE(tile_q6_K_x16, q6_K_x16, QK_K)

DEFINE_TILE(tile_q4_K, q4_K_group1, tile_q4_K_x16, QK_K)
DEFINE_TILE(tile_q6_K, q6_K_group1, tile_q6_K_x16, QK_K)

/* ---- F16 (x8: per 4 columns the 8 rows' 8 bytes, tensor/repack.h) ----
 * A register holds 4 rows x 4 columns (32 bytes of a group), and one
 * broadcast of 4 activations serves it: lane 4i + p of an accumulator sums
 * columns 4c + p of row i over the chunks c in order, and the 4 phases are
 * added at the end as (p0 + p1) + (p2 + p3) (f16_row_sums). A single token
 * and a batch run that same chain for every (row, token), so a token's
 * result does not depend on the batch it came in (tests/test_batch.c's
 * batched-equals-alone holds bit for bit).
 *
 * Why 4 x 4: a batch tile of 16 rows x 6 tokens then loads 4 bytes of each
 * token's activations per multiply-add, where the row-major tiles (a
 * register of 16 columns of one row) loaded 16, and on this layout the
 * weights convert into an L1 panel once for every token of the call; the
 * old tile, converting in the inner loop and streaming the activations
 * from L2, held prefill to 65% of the FMA peak. */
#define GROUP_F16_CHUNK 64 /* bytes of a group per 4 columns */

LT_INLINE __m512 f16_bcast4(const float *p) { return _mm512_broadcast_f32x4(_mm_loadu_ps(p)); }

/* The 4 rows' sums of an accumulator, in lanes 0-3. */
LT_INLINE __m128 f16_row_sums(__m512 a) {
    const __m512 t = _mm512_add_ps(a, _mm512_permutexvar_ps(_mm512_setr_epi32(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14), a));
    const __m512 u = _mm512_add_ps(t, _mm512_permutexvar_ps(_mm512_setr_epi32(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13), t));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12), u));
}

/* One group x one token: two accumulators (rows 0-3, 4-7) along one stream,
 * a line (one chunk) fetched X8_AHEAD ahead: one thread read F16 weights
 * at 28 GB/s without it, 34 with it (the old layout's tile: 28), two threads
 * 35 / 42 (39). Walking two or four groups at once, with more chains but as
 * many streams, measured slower. */
static LT_NOINLINE void f16_group1(int64_t nc16, const char *x, const float *y, float *s) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int64_t c = 0; c < 4 * nc16; c++) {
        const char *blk = x + (size_t)c * GROUP_F16_CHUNK;
        _mm_prefetch(blk + X8_AHEAD, _MM_HINT_T0);
        const __m512 v = f16_bcast4(y + 4 * c);
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(loadu256(blk)), v, a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(loadu256(blk + 32)), v, a1);
    }
    _mm_storeu_ps(s, f16_row_sums(a0));
    _mm_storeu_ps(s + 4, f16_row_sums(a1));
}

/* A batch: per block of F16_KB columns, the call's rows (two groups, or a
 * lone one: MR = 4 or 2 registers of 4 rows) are converted to a float panel
 * (16 KiB, in L1) that serves all its tokens, F16_RN at a time, with
 * MR x F16_RN accumulators (24 with the weights and a broadcast: 29 of the
 * 32 registers) that wait in memory between blocks (exactly: a stored float
 * is the float). */
#define F16_RN 6              /* tokens per register tile */
#define F16_KB 256            /* columns per block */
#define F16_COLS (16 * F16_RN) /* tokens per call */

LT_INLINE void f16_block(const int MR, const int RN, int64_t nch, const float *wp, const float *y, size_t byf,
                         __m512 *acc) {
    __m512 a[4][F16_RN];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) a[r][c] = acc[r * F16_RN + c];
    for (int64_t k = 0; k < nch; k++) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) w[r] = _mm512_loadu_ps(wp + 16 * (MR * k + r));
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            const __m512 v = f16_bcast4(y + c * byf + 4 * k);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) a[r][c] = _mm512_fmadd_ps(w[r], v, a[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) acc[r * F16_RN + c] = a[r][c];
}

typedef void (*f16_block_fn)(int64_t, const float *, const float *, size_t, __m512 *);
#define F16_VARIANT(MR, RN)                                                                                       \
    static LT_NOINLINE void f16_block_##MR##_##RN(int64_t nch, const float *wp, const float *y, size_t byf, __m512 *acc) { \
        f16_block(MR, RN, nch, wp, y, byf, acc);                                                                  \
    }
#define F16_VARIANTS(MR) F16_VARIANT(MR, 1) F16_VARIANT(MR, 2) F16_VARIANT(MR, 3) F16_VARIANT(MR, 4) F16_VARIANT(MR, 5) F16_VARIANT(MR, 6)
F16_VARIANTS(2)
F16_VARIANTS(4)

/* nr a multiple of 8, nc <= F16_COLS. */
static void tile_f16_x8(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, size_t ld,
                        float *s, size_t ldc, int nr, int nc) {
    (void)aux, (void)ld;
    static const f16_block_fn kern[2][F16_RN] = {
        {f16_block_2_1, f16_block_2_2, f16_block_2_3, f16_block_2_4, f16_block_2_5, f16_block_2_6},
        {f16_block_4_1, f16_block_4_2, f16_block_4_3, f16_block_4_4, f16_block_4_5, f16_block_4_6}};
    _Alignas(64) float wp[16 * F16_KB];
    __m512 acc[F16_COLS / F16_RN][4 * F16_RN]; /* [token tile][register][token] */
    const int64_t nch = n / 4, kb = F16_KB / 4;
    const size_t byf = by / sizeof(float);
    const int tiles = (nc + F16_RN - 1) / F16_RN;
    for (int r0 = 0; r0 < nr; r0 += 16) {
        const int groups = nr - r0 >= 16 ? 2 : 1, mr = 2 * groups;
        const char *grp = (const char *)vx + (size_t)r0 * bx;
        for (int j = 0; j < tiles; j++)
            for (int i = 0; i < 4 * F16_RN; i++) acc[j][i] = _mm512_setzero_ps();
        for (int64_t k0 = 0; k0 < nch; k0 += kb) {
            const int64_t nk = nch - k0 < kb ? nch - k0 : kb;
            for (int64_t k = 0; k < nk; k++)
                for (int g = 0; g < groups; g++) {
                    const char *blk = grp + (size_t)g * 8 * bx + (size_t)(k0 + k) * GROUP_F16_CHUNK;
                    _mm512_store_ps(wp + 16 * (mr * k + 2 * g), _mm512_cvtph_ps(loadu256(blk)));
                    _mm512_store_ps(wp + 16 * (mr * k + 2 * g + 1), _mm512_cvtph_ps(loadu256(blk + 32)));
                }
            /* the weights come from memory: the next block's lines (or the
             * next pair's first block's) are fetched a few before each
             * token tile, spread over this block's multiplies (all at once,
             * before them, left the conversion above waiting on memory) */
            const char *next = k0 + kb < nch ? grp + (size_t)(k0 + kb) * GROUP_F16_CHUNK : grp + 16 * bx;
            const int64_t per = (nk + tiles - 1) / tiles; /* chunks (a line per group) per tile */
            for (int j = 0; j < tiles; j++) {
                for (int64_t k = per * j; k < per * (j + 1) && k < nk; k++)
                    for (int g = 0; g < groups; g++)
                        _mm_prefetch(next + (size_t)g * 8 * bx + (size_t)k * GROUP_F16_CHUNK, _MM_HINT_T0);
                const int t = F16_RN * j, rn = nc - t < F16_RN ? nc - t : F16_RN;
                kern[groups - 1][rn - 1](nk, wp, (const float *)((const char *)vy + (size_t)t * by) + 4 * k0, byf, acc[j]);
            }
        }
        for (int j = 0; j < tiles; j++) {
            const int t = F16_RN * j, rn = nc - t < F16_RN ? nc - t : F16_RN;
            for (int r = 0; r < mr; r++)
                for (int c = 0; c < rn; c++) {
                    float sum[4];
                    _mm_storeu_ps(sum, f16_row_sums(acc[j][r * F16_RN + c]));
                    for (int i = 0; i < 4; i++) s[(size_t)(t + c) * ldc + r0 + 4 * r + i] = sum[i];
                }
        }
    }
}

static void tile_f16(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, size_t ld,
                     float *s, size_t ldc, int nr, int nc) {
    if (nc == 1 && ld == 1)
        for (int r = 0; r < nr; r += 8) f16_group1(n / 16, (const char *)vx + (size_t)r * bx, vy, s + r);
    else
        tile_f16_x8(n, vx, bx, vy, by, aux, ld, s, ldc, nr, nc);
}

void lt_tiles_x8_avx512(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0, 16, 4, 32, true, 0};
    t[LT_Q8_0] = (lt_tile){tile_q8_0, 16, 4, 32, true, 0};
    t[LT_Q4_K] = (lt_tile){tile_q4_K, 16, 4, 32, false, 0};
    t[LT_Q6_K] = (lt_tile){tile_q6_K, 16, 4, 32, false, 0};
    t[LT_F16] = (lt_tile){tile_f16, 16, F16_COLS, 32, false, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_x8_kernels;
#endif
