/* llama2.c checkpoints (karpathy/llama2.c run.c "legacy" version-0 layout):
 * a header of seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len; a negative vocab_size means the classifier is stored
 * separately) followed by F32 weights in a fixed order. This reader checks
 * the header against the file size and returns the offset of each array. */
#ifndef LETHE_LLAMA2C_H
#define LETHE_LLAMA2C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
    /* byte offsets of the F32 arrays, in file order */
    size_t token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
} llama2c_layout;

/* Fills *out from the first bytes of a file of file_size bytes. */
lethe_status llama2c_parse(const void *data, size_t file_size, llama2c_layout *out, char *err);

#endif
