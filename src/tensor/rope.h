/* Rotary position embedding (RoPE) on F32 rows: the cos/sin table of a set
 * of positions and the rotation of one token's heads by such a table. The
 * kv layer uses these to re-rotate cached keys when positions are edited;
 * the arithmetic is the model's own, to the bit. */
#ifndef LETHE_TENSOR_ROPE_H
#define LETHE_TENSOR_ROPE_H

#include <stdint.h>

/* cs[t][i] = {cos, sin} of pos[t] * base^(-2i/n_rot), i < n_rot/2: n * n_rot floats. */
void lt_rope_table(float *cs, const int32_t *pos, int n, int n_rot, float base);
/* Rotates the first n_rot dims of each of n_heads heads (head_dim apart) of
 * one token by one table row cs (n_rot floats): adjacent pairs (x[2i],
 * x[2i+1]) when neox == 0, (x[i], x[i + n_rot/2]) otherwise. */
void lt_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cs, int neox);

#endif
