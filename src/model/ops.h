/* Element-wise pieces of the forward pass. */
#ifndef LETHE_OPS_H
#define LETHE_OPS_H

#include "model/model.h"

/* out[i] = x[i] / rms(x) * w[i]; sum of squares in double, as llama.cpp. */
void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* RoPE is tensor/rope.h's (the kv layer re-rotates cached keys with it). */
/* SwiGLU is tensor/swiglu.h's (vector kernels per level). */
/* a[i] += b[i] */
void op_add(float *a, const float *b, long n);

#endif
