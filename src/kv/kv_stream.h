/* A stream: the cached K/V of one sequence for one layer and one KV head,
 * as a page table into the pool. Slot i lives in page pages[i / P], row
 * i % P, and remembers the original position of its token in pos[i] (RoPE
 * is applied to K before caching, so slots can be moved or dropped without
 * touching the others). Optional per-slot attention statistics (filled by
 * the attention kernel when enabled) move with their slots. */
#ifndef LETHE_KV_STREAM_H
#define LETHE_KV_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_pool.h"

typedef struct {
    int32_t *pages;     /* page ids, ceil(n / P) in use */
    int32_t *pos;       /* original position of each slot */
    int n;              /* slots in use */
    int cap;            /* capacity of pos (and of the stats arrays) in slots */
    int pages_cap;      /* capacity of pages */
    /* Attention statistics, NULL unless enabled with kv_stream_enable_stats. */
    float *attn_acc;      /* attention mass accumulated over all steps (summed over the group's query heads) */
    float *attn_last;     /* mass received in the most recent step */
    int32_t *attn_last_hit; /* last step whose mass exceeded the hit threshold, -1 never */
    /* Per-slot state of the KV policy: aux_width floats per slot (zero on
     * append), NULL unless enabled with kv_stream_enable_aux. */
    float *aux;
    int aux_width;
} kv_stream;

void kv_stream_init(kv_stream *s);
/* Releases every page reference and frees the arrays; s is re-initialised. */
void kv_stream_free(kv_pool *pool, kv_stream *s);
/* Allocates (zeroed) statistics arrays; idempotent. Returns LETHE_OK or NOMEM. */
lethe_status kv_stream_enable_stats(kv_stream *s);
/* Allocates (zeroed) width floats of policy state per slot; idempotent for
 * the same width, LETHE_ERR_ARG for another. */
lethe_status kv_stream_enable_aux(kv_stream *s, int width);

/* Appends n rows: row t of K is k + t * k_stride (head_dim floats), same for
 * v; pos[t] its position. A shared last page is copied first (copy on
 * write). Returns LETHE_OK, LETHE_ERR_BUDGET when the pool has no free page
 * (nothing appended then), or LETHE_ERR_NOMEM. */
lethe_status kv_stream_append(kv_pool *pool, kv_stream *s, const float *k, const float *v,
                              long k_stride, long v_stride, const int32_t *pos, int n);

/* dst (initialised, empty) becomes a copy of src that shares all its pages. */
lethe_status kv_stream_fork(kv_pool *pool, const kv_stream *src, kv_stream *dst);

/* Keeps the slots whose keep[i] is non-zero, in order, and drops the rest;
 * trailing pages that become empty are released; shared pages that must be
 * written are copied first. Returns LETHE_OK or an error (then unchanged). */
lethe_status kv_stream_compact(kv_pool *pool, kv_stream *s, const uint8_t *keep);

/* Row pointers of slot i. */
void *kv_stream_k(const kv_pool *pool, const kv_stream *s, int i);
void *kv_stream_v(const kv_pool *pool, const kv_stream *s, int i);

#endif
