/* The Q4_K x8 group's scale decoding (tensor/repack.c gives the layout),
 * shared by quant_x8_avx2.c and quant_x8_avx512.c (include only in files
 * compiled with AVX2). */
#ifndef LETHE_X8_K_UTIL_H
#define LETHE_X8_K_UTIL_H

#include "tensor/avx2_util.h"

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

#endif
