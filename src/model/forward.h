/* The forward pass, written once for every architecture: a batch of rows
 * (token, position), of any sequences, goes through all layers. Weight
 * matrices are read once per chunk of rows for every sequence in it; the
 * attention of each group is delegated to the caller (the runtime owns the
 * KV cache, its tiers and policies; this layer knows nothing of them). */
#ifndef LETHE_FORWARD_H
#define LETHE_FORWARD_H

#include "model/model.h"
#include "tensor/matmul.h"
#include "tensor/threadpool.h"

/* Rows per pass through the layers: bounds the activation scratch while
 * keeping the batched matmuls efficient. */
#define FWD_CHUNK 256

typedef struct {
    const lethe_token *ids;  /* n token ids */
    const int32_t *pos;      /* n RoPE positions */
    int n;
    const int *out_rows;     /* ascending rows whose logits are wanted */
    int n_out;
} fwd_batch;

/* Attention at one layer of batch rows [r0, r0 + n), whichever groups they
 * belong to: q is n x n_head x head_dim, k and v n x n_head_kv x head_dim
 * (RoPE applied), out like q. The callee appends each group's k and v to its
 * cache before attending. */
typedef lethe_status (*fwd_attend_fn)(void *user, int layer, int r0, int n, const float *q, const float *k,
                                      const float *v, float *out, char *err);

typedef struct {
    threadpool *tp;
    lt_workspace *ws;
    float *scratch;          /* forward_scratch_floats(m, min(n, FWD_CHUNK)) floats */
    fwd_attend_fn attend;
    void *user;
} fwd_engine;

/* Activation floats for a chunk of n rows. */
size_t forward_scratch_floats(const lethe_model *m, int n);

/* Runs the batch; logits receives one n_vocab row per out_rows entry (may be
 * NULL when n_out is 0). Returns LETHE_OK or an error (message in err). */
lethe_status forward_run(const lethe_model *m, const fwd_engine *e, const fwd_batch *b, float *logits, char *err);

#endif
