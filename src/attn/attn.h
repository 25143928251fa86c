/* Exact attention over paged KV streams, never materialising a score matrix.
 *
 * Prefill: FlashAttention-2 style tiles: a block of queries against one page
 * of keys at a time with an online softmax (running max and sum per query
 * row, output rescaled per tile); scratch is O(tile).
 * Decode: flash-decoding / split-KV: one query per head against all pages of
 * its stream, the pages split across threads, each producing a partial
 * (max, sum, output) merged exactly by log-sum-exp.
 *
 * Layout: n_head query heads, n_head_kv streams; query head h reads stream
 * h / (n_head / n_head_kv) (GQA, no copies). q is [n_tok][n_head][head_dim],
 * out the same shape. A slot is visible to query t when its position is
 * <= q_pos[t] (causal mask by original position). Scores are scaled by
 * `scale` (usually 1/sqrt(head_dim)). */
#ifndef LETHE_ATTN_H
#define LETHE_ATTN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "tensor/threadpool.h"

typedef struct {
    /* When on, each stream's attn_last and, where enabled, attn_acc /
     * attn_last_hit arrays (kv_stream_enable_stats) are updated with the softmax probability mass
     * every slot received, summed over the query heads of its group (and, in
     * prefill, over the queries). attn_last is overwritten, attn_acc added to,
     * attn_last_hit set to `step` where a single query head gave the slot
     * probability >= hit_threshold. */
    int enabled;
    float hit_threshold;
    int32_t step;
    int from_query; /* prefill: only queries t >= from_query count (an observation window); 0: all */
} attn_stats_cfg;

/* Per-engine scratch, grown on demand, reused across calls. */
typedef struct attn_scratch attn_scratch;
attn_scratch *attn_scratch_create(void);
void attn_scratch_free(attn_scratch *s);
/* Peak bytes this scratch has held (for bench). */
size_t attn_scratch_peak_bytes(const attn_scratch *s);

typedef struct {
    const kv_pool *pool;
    const kv_stream *streams; /* n_head_kv streams of one layer of one sequence */
    int n_head;
    int n_head_kv;
    int head_dim;
    float scale;
    /* NULL, or n_head_kv cold tiers: stream g's pages are then page indices
     * of cold[g] (in slot order, only the last one partly filled), read and
     * dequantised in place; pool still gives the page shape. */
    const kv_cold *cold;
} attn_layer;

/* n_tok queries (any n_tok >= 1), tiled. Returns 0, -1 on allocation failure. */
int attn_prefill(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q,
                 const int32_t *q_pos, int n_tok, float *out, const attn_stats_cfg *stats);

/* One query per head, split-KV across threads. Returns 0, -1 on allocation failure. */
int attn_decode(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q,
                int32_t q_pos, float *out, const attn_stats_cfg *stats);

/* One decode query (all heads of one token) of one sequence. */
typedef struct {
    const attn_layer *L;
    const float *q;
    int32_t q_pos;
    float *out;
    float *lse;                  /* NULL, or n_head log-sum-exps (see attn_decode_lse) */
    const attn_stats_cfg *stats; /* NULL: no statistics */
} attn_decode_job;

/* Decode queries of many sequences as one work list, so that their pages
 * share the thread pool in one dispatch (continuous batching). Every job's
 * layer has the same pool and head counts. Each job is split as it would be
 * alone, so its result equals attn_decode_lse's on it alone, bit for bit.
 * Returns 0, -1 on bad arguments or allocation failure. */
int attn_decode_multi(threadpool *tp, attn_scratch *scr, const attn_decode_job *jobs, int n_jobs);

/* Shared-prefix decode (Hydragen; attn_shared.c): attn_decode_multi, except
 * that for every KV head the jobs whose streams begin with the same full
 * pages (same page ids and positions: forks sharing pages copy on write)
 * attend those pages once, all their query rows in one block per page, and
 * go on over their own pages from that softmax state. Jobs with statistics
 * or a cold tier share nothing (the statistics need each sequence's own
 * pass). Equal to attn_decode_multi within float rounding (bit for bit with
 * one thread and full pages of a multiple of 4 slots, or when nothing is
 * shared). rest: scratch for n_jobs jobs. Returns the number of jobs that
 * shared pages, -1 on bad arguments or allocation failure. */
int attn_decode_shared(threadpool *tp, attn_scratch *scr, const attn_decode_job *jobs, int n_jobs, attn_decode_job *rest);

/* Dispatch: attn_decode for n_tok == 1, else attn_prefill. */
int attn_forward(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q,
                 const int32_t *q_pos, int n_tok, float *out, const attn_stats_cfg *stats);

/* The same, also writing lse[t * n_head + h] = the log of the softmax
 * denominator of query t, head h (scores scaled), or -INFINITY when no
 * slot is visible (the output row is then zero). lse may be NULL. Two
 * attentions over disjoint slot sets merge exactly with attn_merge_lse. */
int attn_prefill_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                     int n_tok, float *out, float *lse, const attn_stats_cfg *stats);
int attn_decode_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, int32_t q_pos, float *out,
                    float *lse, const attn_stats_cfg *stats);
int attn_forward_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                     int n_tok, float *out, float *lse, const attn_stats_cfg *stats);
/* out/lse (n_rows rows of head_dim) become the attention over the union of
 * the slots behind (out, lse) and (out2, lse2). */
void attn_merge_lse(float *out, float *lse, const float *out2, const float *lse2, int n_rows, int head_dim);

/* Plain reference for tests and `lethe bench attn`: materialises the full
 * score row per query (O(n) scratch per query, O(n_tok * n) for all). */
int attn_naive(const attn_layer *L, const float *q, const int32_t *q_pos, int n_tok, float *out);
/* Bytes attn_naive allocates for n_tok queries against L's streams. */
size_t attn_naive_scratch_bytes(const attn_layer *L, int n_tok);

/* `lethe bench attn`: decode-step and prefill-chunk times, tiled vs naive,
 * with peak scratch, at contexts 1K..64K, on a KV pool of kv_dtype, 32
 * query heads over n_kv_heads (a divisor of 32; anything else, 0 included,
 * gives 8); n_threads <= 0: all cores. */
void attn_bench(FILE *out, int n_threads, lt_type kv_dtype, int n_kv_heads);

#endif
