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

/* A group super-block's 64 scales and 64 mins (v = 8 * sub-block + row). */
LT_INLINE void k4_group_values(const char *g, uint8_t *scv, uint8_t *mnv) {
    __m256i v0, v1;
    k4x8_values(g + 32, g + 96, &v0, &v1);
    _mm256_storeu_si256((__m256i *)scv, v0);
    _mm256_storeu_si256((__m256i *)(scv + 32), v1);
    k4x8_values(g + 64, g + 112, &v0, &v1);
    _mm256_storeu_si256((__m256i *)mnv, v0);
    _mm256_storeu_si256((__m256i *)(mnv + 32), v1);
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

/* ---- F16 (x8: per 16 columns the 8 rows' 32 bytes, tensor/repack.h) ----
 * One accumulator per (row, token) over the columns in steps of 16 and one
 * reduction, as the row-major float tiles (quant_float_avx512.c) do: the
 * same bits as those, read from one stream. */
#define GROUP_F16 (8 * 32)

/* One group x one token. */
static LT_NOINLINE void f16_group1(int64_t nc16, const char *x, const char *y, const float *aux, float *s) {
    (void)aux;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc16; c++) {
        const char *blk = x + (size_t)c * GROUP_F16;
        const __m512 v = _mm512_loadu_ps((const float *)y + 16 * c);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(loadu256(blk + 32 * r)), v, acc[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) s[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Rows h4..h4+3 of one group x RN <= F16_RN tokens: 4 x 6 accumulators
 * (with the weights and a token's row, 29 of the 32 registers), so a
 * converted weight vector serves 6 tokens (4 x 4 reached 55-70% of the
 * FMA peak in cache, the conversions taking the rest). */
#ifndef F16_RN
#define F16_RN 6
#endif
LT_INLINE void f16_x8(const int RN, int64_t nc16, const char *x, int h4, const char *y, size_t by, float *s, size_t ldc) {
    __m512 acc[4][F16_RN];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nc16; k++) {
        const char *blk = x + (size_t)k * GROUP_F16 + 32 * (size_t)h4;
        __m512 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) w[r] = _mm512_cvtph_ps(loadu256(blk + 32 * r));
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            const __m512 v = _mm512_loadu_ps((const float *)(y + c * by) + 16 * k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[r][c] = _mm512_fmadd_ps(w[r], v, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) s[c * ldc + h4 + r] = _mm512_reduce_add_ps(acc[r][c]);
}

#define F16_VARIANT(RN)                                                                                 \
    static LT_NOINLINE void f16_x8_##RN(int64_t nc16, const char *x, int h4, const char *y, size_t by, float *s, \
                                        size_t ldc) {                                                   \
        f16_x8(RN, nc16, x, h4, y, by, s, ldc);                                                         \
    }
F16_VARIANT(1)
F16_VARIANT(2)
F16_VARIANT(3)
F16_VARIANT(4)
F16_VARIANT(5)
F16_VARIANT(6)

/* A batch: nr a multiple of 8, nc <= F16_RN; each group in two halves of 4 rows. */
static void tile_f16_x8(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, size_t ld,
                        float *s, size_t ldc, int nr, int nc) {
    (void)aux, (void)ld;
    static void (*const kern[F16_RN])(int64_t, const char *, int, const char *, size_t, float *, size_t) = {
        f16_x8_1, f16_x8_2, f16_x8_3, f16_x8_4, f16_x8_5, f16_x8_6};
    for (int r = 0; r < nr; r += 8)
        for (int h4 = 0; h4 < 8; h4 += 4) kern[nc - 1](n / 16, (const char *)vx + (size_t)r * bx, h4, vy, by, s + r, ldc);
}

DEFINE_TILE(tile_f16, f16_group1, tile_f16_x8, 16)

void lt_tiles_x8_avx512(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0, 16, 4, 32, true, 0};
    t[LT_Q8_0] = (lt_tile){tile_q8_0, 16, 4, 32, true, 0};
    t[LT_Q4_K] = (lt_tile){tile_q4_K, 16, 4, 32, false, 0};
    t[LT_Q6_K] = (lt_tile){tile_q6_K, 16, 4, 32, false, 0};
    t[LT_F16] = (lt_tile){tile_f16, 8, F16_RN, 32, false, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_x8_kernels;
#endif
