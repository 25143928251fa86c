/* The forward pass, written once for every architecture: a batch of tokens
 * at given positions goes through all layers, appending its keys and values
 * to the sequence's KV streams (n_layer x n_head_kv of them, layer-major). */
#ifndef LETHE_FORWARD_H
#define LETHE_FORWARD_H

#include "kv/kv_cold.h"
#include "model/model.h"

typedef struct {
    kv_stream *streams;          /* n_layer * n_head_kv */
    const attn_stats_cfg *stats; /* NULL: no attention statistics */
    kv_cold *cold;               /* NULL, or the cold tier of each stream, attended too */
    int cold_pages;              /* > 0: attend only this many cold pages per stream, by key bound (Quest); 0: all */
} forward_state;

/* Pages the pool must have free for n more tokens in these streams. */
size_t forward_pages_needed(const lethe_model *m, const kv_stream *streams, int n);

/* Runs n tokens. logits: NULL, or n_vocab floats for the last token, or
 * n x n_vocab when all_logits. Returns LETHE_OK or an error (message in
 * err); on LETHE_ERR_BUDGET nothing was appended. */
lethe_status forward_batch(lethe_model *m, forward_state *fs, const lethe_token *ids, const int32_t *pos, int n,
                           float *logits, bool all_logits, char *err);

#endif
