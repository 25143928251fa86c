/* lt_swiglu on AVX2: 8 lanes, exp256; the tail through a padded copy, so
 * every element takes the same steps (and the AVX-512 kernel's bits). */
#if defined(__x86_64__) || defined(__i386__)
#include <string.h>

#include "tensor/avx2_util.h"
#include "tensor/swiglu.h"

LT_INLINE __m256 swiglu8(__m256 a, __m256 b) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), a));
    return _mm256_mul_ps(_mm256_div_ps(a, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), b);
}

void lt_swiglu_avx2(float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, swiglu8(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        float ta[8] = {0}, tb[8] = {0};
        memcpy(ta, a + i, sizeof(float) * (size_t)(n - i));
        memcpy(tb, b + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(ta, swiglu8(_mm256_loadu_ps(ta), _mm256_loadu_ps(tb)));
        memcpy(a + i, ta, sizeof(float) * (size_t)(n - i));
    }
}
#else
typedef int lt_no_avx2_swiglu;
#endif
