/* lt_swiglu: the scalar kernel and the dispatch. */
#include "tensor/swiglu.h"

#include <math.h>

#include "tensor/cpu.h"

void lt_swiglu_scalar(float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

lt_swiglu_fn lt_swiglu_kernel(int level) {
#if defined(__x86_64__) || defined(__i386__)
    if (level == LT_SIMD_AVX512) {
#if defined(LETHE_HAVE_AVX512) && LETHE_HAVE_AVX512
        return lt_simd_avx512() ? lt_swiglu_avx512 : NULL;
#else
        return NULL;
#endif
    }
    if (level == LT_SIMD_AVX2) return lt_simd_avx2() ? lt_swiglu_avx2 : NULL;
#endif
    return level == LT_SIMD_SCALAR ? lt_swiglu_scalar : NULL;
}

void lt_swiglu(float *a, const float *b, int64_t n) {
    lt_swiglu_fn f = lt_swiglu_kernel(lt_simd_level());
    (f ? f : lt_swiglu_scalar)(a, b, n);
}
