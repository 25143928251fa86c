/* Helpers of the AVX-512 k-quant kernels (quant_k_avx512.c only).
 *
 * With LT_K512_EMULATE defined the intrinsics come from SIMDe's portable
 * implementations instead of the compiler's, so that the kernels can be
 * checked against the scalar code on a machine without AVX-512
 * (tests/test_kernels_k_avx512.c); the library itself never defines it. */
#ifndef LETHE_AVX512_K_UTIL_H
#define LETHE_AVX512_K_UTIL_H

#include <stdint.h>
#include <string.h>

#ifdef LT_K512_EMULATE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include "util/fp16.h"
#define k512_h2f(h) fp16_to_fp32(h)
/* 256 -> 512 bits, the upper half zero */
#define k512_widen(v) _mm512_inserti64x4(_mm512_setzero_si512(), (v), 0)
typedef simde__mmask64 k512_mask64;
#else
#include <immintrin.h>
#define k512_h2f(h) _cvtsh_ss(h)
#define k512_widen(v) _mm512_zextsi256_si512(v)
typedef __mmask64 k512_mask64;
#endif

#ifdef LT_K512_EMULATE /* plain inline: emulated, forced inlining only costs compile time */
#define K512_INLINE static inline
#else
#define K512_INLINE static inline __attribute__((always_inline))
#endif

K512_INLINE __m512i k512_load(const void *p) { return _mm512_loadu_si512(p); }
K512_INLINE __m256i k512_load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
K512_INLINE __m128i k512_load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
/* 32 bytes at p in both halves of a 512-bit register */
K512_INLINE __m512i k512_bcast256(const void *p) { return _mm512_broadcast_i64x4(k512_load256(p)); }

K512_INLINE float k512_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* [sum a, sum b, sum c, sum d] */
K512_INLINE __m128 k512_hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

#endif
