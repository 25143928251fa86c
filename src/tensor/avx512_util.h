/* Small AVX-512 helpers of quant_legacy_avx512.c and quant_float_avx512.c
 * (include only in files compiled with the AVX-512 flags). */
#ifndef LETHE_AVX512_UTIL_H
#define LETHE_AVX512_UTIL_H

#include "tensor/avx2_util.h"

/* Two 32-byte halves (lo at bytes 0..31, hi at 32..63). */
LT_INLINE __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Lanes k..k+3 of a 16-lane int32 vector: 128-bit lane order swapped to
 * [0 2 1 3], which turns [a_lo a_hi b_lo b_hi] into [a_lo b_lo a_hi b_hi]. */
LT_INLINE __m512i swap_mid_lanes(__m512i v) { return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)); }

/* Mask of the first k (0..16) lanes. */
LT_INLINE __mmask16 first_lanes16(int64_t k) { return (__mmask16)((1u << k) - 1u); }

#endif
