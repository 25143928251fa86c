/* Matrix products of weights (any supported type) with F32 activations.
 *
 *   y[t][r] = sum_k W[r][k] * x[t][k]   for t < n_tok, r < n_rows
 *
 * W is row-major in its own type (n_rows rows of n_cols elements, as GGUF
 * stores a tensor with ne0 = n_cols, ne1 = n_rows). x is n_tok x n_cols F32,
 * y is n_tok x n_rows F32. Activations are quantised once to the weight
 * type's vec_dot_type, then rows are split across the pool's threads. */
#ifndef LETHE_MATMUL_H
#define LETHE_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/threadpool.h"
#include "tensor/types.h"

/* Reusable scratch for quantised activations; grows as needed. */
typedef struct {
    void *buf;
    size_t cap;
} lt_workspace;

void lt_workspace_free(lt_workspace *ws);

/* Returns 0, or -1 when the scratch cannot be allocated or the type has no
 * dot product (checked at load time, so this is not expected). */
int lt_matmul(threadpool *tp, lt_workspace *ws, lt_type wtype, const void *W,
              int64_t n_rows, int64_t n_cols, const float *x, int64_t n_tok, float *y);

/* One matrix of a group that reads the same activations. */
typedef struct {
    lt_type type;
    const void *W;
    int64_t n_rows;
    float *y; /* n_tok x n_rows */
    bool x8;  /* W is in the x8 layout (tensor/repack.h) */
} lt_matmul_out;

#define LT_MATMUL_MAX_GROUP 4

/* y_i = W_i x for n_out <= LT_MATMUL_MAX_GROUP matrices of n_cols columns
 * (Q/K/V, gate/up): the activations are quantised once per distinct
 * vec_dot_type and all the rows are computed in one parallel run. Each y_i
 * equals what lt_matmul gives for it alone, bit for bit. */
int lt_matmul_group(threadpool *tp, lt_workspace *ws, const lt_matmul_out *outs, int n_out, int64_t n_cols,
                    const float *x, int64_t n_tok);

/* Activations made on the fly: row(user, t, dst) writes row t (n_cols
 * floats) to dst = x + t * n_cols, once per token, from any thread of the
 * pool, just before the row is quantised while it is still in L1 (an
 * RMSNorm fused with the activation quantiser). */
typedef struct {
    void (*row)(const void *user, int64_t t, float *dst);
    const void *user;
    float *x; /* n_tok x n_cols: filled, then read by the F32-activation matrices */
} lt_matmul_rows;

/* lt_matmul_group on rows made by src: the same bits as making every row
 * first and calling lt_matmul_group on src->x. */
int lt_matmul_group_rows(threadpool *tp, lt_workspace *ws, const lt_matmul_out *outs, int n_out, int64_t n_cols,
                         const lt_matmul_rows *src, int64_t n_tok);

/* Prints GFLOP/s of lt_matmul per weight type for decode- (1 token) and
 * prefill-shaped (64 tokens) products (`lethe bench kernels`). */
void lt_matmul_bench(FILE *out, int n_threads);

#endif
