/* lt_swiglu on AVX-512: 16 lanes, exp512 (exp256's steps), the tail in
 * masked lanes: the AVX2 kernel's bits. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include "tensor/avx512_util.h"
#include "tensor/swiglu.h"

LT_INLINE __m512 swiglu16(__m512 a, __m512 b) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), a));
    return _mm512_mul_ps(_mm512_div_ps(a, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), b);
}

void lt_swiglu_avx512(float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(a + i, swiglu16(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        const __mmask16 k = first_lanes16(n - i);
        _mm512_mask_storeu_ps(a + i, k, swiglu16(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i)));
    }
}
#else
typedef int lt_no_avx512_swiglu;
#endif
