/* Element-wise pieces of the forward pass. */
#ifndef LETHE_OPS_H
#define LETHE_OPS_H

#include "model/model.h"

/* out[i] = x[i] / rms(x) * w[i]; sum of squares in double, as llama.cpp. */
void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* cos/sin table for n_tok positions: cs[t][i] = {cos, sin} of pos[t] * base^(-2i/n_rot). */
void op_rope_table(float *cs, const int32_t *pos, int n_tok, int n_rot, float base);
/* Rotates the first n_rot dims of each of n_heads heads of one token. */
void op_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs, rope_style style);
/* a[i] = silu(a[i]) * b[i] */
void op_swiglu(float *a, const float *b, long n);
void op_add(float *a, const float *b, long n);

#endif
