/* The Q4_K x8 group's scale decoding and per-token finish, and Q6_K's
 * offset (tensor/repack.c gives the layouts), shared by quant_x8_avx2.c and quant_x8_avx512.c
 * (include only in files compiled with AVX2). */
#ifndef LETHE_X8_K_UTIL_H
#define LETHE_X8_K_UTIL_H

#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"

/* The 64 six-bit values (scales or mins; v = 8 * sub-block + row) of a
 * group super-block from their 32 low-nibble bytes and 16 bytes of top bits. */
LT_INLINE void k4x8_values(const char *lo, const char *hi, __m256i *v0, __m256i *v1) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), l = loadu256(lo);
    const __m128i h = loadu128(hi), m3 = _mm_set1_epi8(3);
    const __m128i h0 = _mm_slli_epi16(_mm_and_si128(h, m3), 4);
    const __m128i h1 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 2), m3), 4);
    const __m128i h2 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 4), m3), 4);
    const __m128i h3 = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 6), m3), 4);
    *v0 = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_inserti128_si256(_mm256_castsi128_si256(h0), h1, 1));
    *v1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
                          _mm256_inserti128_si256(_mm256_castsi128_si256(h2), h3, 1));
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

/* 16 bytes (the mins of sub-blocks 2k and 2k+1, by row) -> lane i holds
 * (min_2k, min_2k+1) of row i as int16. */
LT_INLINE __m256i k4x8_min_pair(const uint8_t *p) {
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(loadu128(p)),
                               _mm256_setr_epi8(0, -1, 8, -1, 1, -1, 9, -1, 2, -1, 10, -1, 3, -1, 11, -1, 4, -1, 12,
                                                -1, 5, -1, 13, -1, 6, -1, 14, -1, 7, -1, 15, -1));
}

/* acc + (d isum - dmin sum_j m_j ysum_j) times the token's d. */
LT_INLINE __m256 k4x8_finish(__m256 acc, const char *g, const uint8_t *mnv, const blk_q8_K *yb, __m256i isum) {
    /* per sub-block sums of the token: pairs (2k, 2k+1) as int16 in int32 elements 0, 1, 4, 5 */
    const __m256i ys = _mm256_madd_epi16(loadu256(yb->bsums), _mm256_set1_epi16(1));
    const __m256i ysp = _mm256_packs_epi32(ys, ys);
    __m256i msum = _mm256_madd_epi16(k4x8_min_pair(mnv), _mm256_permutevar8x32_epi32(ysp, _mm256_set1_epi32(0)));
    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(k4x8_min_pair(mnv + 16), _mm256_permutevar8x32_epi32(ysp, _mm256_set1_epi32(1))));
    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(k4x8_min_pair(mnv + 32), _mm256_permutevar8x32_epi32(ysp, _mm256_set1_epi32(4))));
    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(k4x8_min_pair(mnv + 48), _mm256_permutevar8x32_epi32(ysp, _mm256_set1_epi32(5))));
    const __m256 dy = _mm256_set1_ps(yb->d);
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(loadu128(g)), dy);
    const __m256 dm = _mm256_mul_ps(_mm256_cvtph_ps(loadu128(g + 16)), dy);
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    return _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(msum), acc);
}


/* The offset: pairs of sub-block scales against pairs of the token's bsums,
 * taken back from its sum: isum - 32 sum_j sc_j bsum_j. */
LT_INLINE __m256i k6x8_offset(const char *g, const blk_q8_K *yb, __m256i isum) {
    __m256i osum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) {
        int32_t bs;
        memcpy(&bs, yb->bsums + 2 * p, 4);
        osum = _mm256_add_epi32(osum, _mm256_madd_epi16(_mm256_cvtepi8_epi16(loadu128(g + 16 + 16 * p)),
                                                        _mm256_set1_epi32(bs)));
    }
    return _mm256_sub_epi32(isum, _mm256_slli_epi32(osum, 5));
}

#endif
