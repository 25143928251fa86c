/* SwiGLU of the FFN: a[i] = silu(a[i]) * b[i] = a[i] / (1 + exp(-a[i])) * b[i],
 * on the dispatched level (tensor/cpu.h). The AVX2 and AVX-512 kernels
 * compute exp with one polynomial (exp256 / exp512: the same steps), so
 * they give the same bits as each other, within 1e-6 relative of the
 * scalar expf; the scalar level keeps expf. */
#ifndef LETHE_SWIGLU_H
#define LETHE_SWIGLU_H

#include <stdint.h>

void lt_swiglu(float *a, const float *b, int64_t n);
/* The kernel of each level, for the tests (NULL where the build or CPU lacks it). */
typedef void (*lt_swiglu_fn)(float *a, const float *b, int64_t n);
lt_swiglu_fn lt_swiglu_kernel(int level);

void lt_swiglu_scalar(float *a, const float *b, int64_t n);
void lt_swiglu_avx2(float *a, const float *b, int64_t n);
void lt_swiglu_avx512(float *a, const float *b, int64_t n);

#endif
