/* A stream: the cached K/V of one sequence for one layer and one KV head,
 * as a page table into the pool. Slot i lives in page pages[i / P], row
 * i % P, and remembers the position of its token in pos[i] (RoPE is applied
 * to K before caching, so slots can be moved or dropped without touching
 * the others). Optional per-slot attention statistics (filled by the
 * attention kernel when enabled) and policy state move with their slots.
 *
 * Slot order is NOT position order once a stream has been compacted:
 * compaction fills holes from the tail (O(1) per dropped slot), so readers
 * must go by pos[i] (attention masks a slot by pos[i] <= q_pos; the order
 * of slots does not change its result beyond float summation order). The
 * slots [0, n) are always dense: no holes. */
#ifndef LETHE_KV_STREAM_H
#define LETHE_KV_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_pool.h"

/* How the model rotates its keys: used to re-rotate cached keys when
 * their positions change. */
typedef struct {
    int head_dim;  /* the pool's head_dim, <= KV_ROPE_MAX_DIM */
    int n_rot;     /* rotated dims (partial rotary), even, <= head_dim */
    float base;    /* RoPE frequency base (theta) */
    int neox;      /* 0: adjacent pairs (x[2i], x[2i+1]); 1: (x[i], x[i + n_rot/2]) */
} kv_rope;

#define KV_ROPE_MAX_DIM 256

typedef struct {
    int32_t *pages;     /* page ids, ceil(n / P) in use */
    int32_t *pos;       /* original position of each slot */
    int n;              /* slots in use */
    int cap;            /* capacity of pos (and of the stats arrays) in slots */
    int pages_cap;      /* capacity of pages */
    /* Attention statistics, NULL unless enabled with kv_stream_enable_stats:
     * attn_last always, attn_acc and attn_last_hit only when asked for. */
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
/* Statistics channels beside attn_last (which every policy that reads
 * statistics uses): bytes per slot are paid only for what is read. */
#define KV_STATS_ACC 1u /* attn_acc */
#define KV_STATS_HIT 2u /* attn_last_hit */
/* Allocates (zeroed; hits -1) attn_last and the channels asked for;
 * adding channels later is allowed, none is removed. LETHE_OK or NOMEM. */
lethe_status kv_stream_enable_stats(kv_stream *s, unsigned channels);
/* The channels s holds (KV_STATS_*), for a copy that wants the same. */
unsigned kv_stream_stats_channels(const kv_stream *s);
/* Allocates (zeroed) width floats of policy state per slot; idempotent for
 * the same width, LETHE_ERR_ARG for another. */
lethe_status kv_stream_enable_aux(kv_stream *s, int width);

/* Appends n rows: row t of K is k + t * k_stride (head_dim floats), same for
 * v; pos[t] its position. A shared last page is copied first (copy on
 * write). Returns LETHE_OK, LETHE_ERR_BUDGET when the pool has no free page,
 * or LETHE_ERR_NOMEM; on error the stream's contents are unchanged (its
 * array capacities may have grown). Allocation-free while n + n_new <= cap
 * and the page table has room. */
lethe_status kv_stream_append(kv_pool *pool, kv_stream *s, const float *k, const float *v,
                              long k_stride, long v_stride, const int32_t *pos, int n);

/* Keeps slots [0, n) and drops the rest (the pages past them released, the
 * arrays kept): undoes appends, since an append only adds at the tail.
 * Allocates nothing; n outside [0, s->n) changes nothing. */
void kv_stream_truncate(kv_pool *pool, kv_stream *s, int n);

/* Grows the stream's arrays to hold n_slots slots (page table included),
 * so that appends up to that size allocate nothing. NOMEM: contents
 * unchanged. */
lethe_status kv_stream_reserve(const kv_pool *pool, kv_stream *s, int n_slots);
/* The same to exactly n_slots (no growth slack): a stream whose size a byte
 * budget bounds. */
lethe_status kv_stream_reserve_exact(const kv_pool *pool, kv_stream *s, int n_slots);

/* dst (initialised, empty) becomes a copy of src that shares all its pages.
 * On error src is unchanged and dst still holds no slots. */
lethe_status kv_stream_fork(kv_pool *pool, const kv_stream *src, kv_stream *dst);

/* Keeps the slots whose keep[i] is non-zero and drops the rest, by dense
 * swap-fill: with m slots kept, each dropped slot below m receives a kept
 * slot from [m, n) (its K and V rows, pos, statistics and aux), kept slots
 * below m stay where they are, and trailing pages that become empty are
 * released. Row moves: at most the number of dropped slots (the mask scan
 * is O(n) byte reads). A shared page (refcount > 1) that receives a row is
 * copied first. Returns LETHE_OK, LETHE_ERR_BUDGET when the pool lacks the
 * pages kv_stream_compact_pages_needed reports, or LETHE_ERR_ARG; on error
 * nothing changed. Allocates nothing. */
lethe_status kv_stream_compact(kv_pool *pool, kv_stream *s, const uint8_t *keep);
/* Free pool pages kv_stream_compact(keep) would take (copy on write). */
size_t kv_stream_compact_pages_needed(const kv_pool *pool, const kv_stream *s, const uint8_t *keep);

/* Drops the slots with p0 <= pos < p1 (the same swap-fill; no mask, no
 * allocation). Errors as kv_stream_compact. */
lethe_status kv_stream_remove(kv_pool *pool, kv_stream *s, int32_t p0, int32_t p1);
size_t kv_stream_remove_pages_needed(const kv_pool *pool, const kv_stream *s, int32_t p0, int32_t p1);

/* Every slot with p0 <= pos < p1 gets pos += delta and its K row rotated by
 * delta positions: one rotation per pair whose cos/sin combine the float
 * tables of the old and new positions (cos = c2 c1 + s2 s1, sin = s2 c1 -
 * c2 s1), so the error does not grow with |pos|. Error against the key
 * computed at the new position (max|k| = the row's largest |element|):
 *   F32:  <= 1e-5 absolute (measured 2.4e-7 on keys in [-1, 1), positions
 *         2000..4990 shifted by -1999, base 1e4);
 *   F16:  <= 1.25 * 2^-10 * max|k| (measured 0.78 * 2^-10): the first
 *         rounding, carried through the rotation (<= sqrt 2 half-ulps),
 *         plus the re-rounding (one half-ulp);
 *   Q8_0: <= 1.5 * max|k| / 127 (measured 1.18 / 127; theory
 *         (sqrt 2 + 1) / 2 steps plus the fp16 rounding of the scales).
 * The test (tests/test_kv_edit.c) checks these bounds.
 * A shared page holding such a slot is copied first. LETHE_ERR_ARG (nothing
 * changed) for a bad descriptor or when a new position would be < 0 or
 * overflow; LETHE_ERR_BUDGET when the pool lacks the pages needed.
 * Allocates nothing (one row of stack scratch). */
lethe_status kv_stream_shift(kv_pool *pool, kv_stream *s, const kv_rope *rope, int32_t p0, int32_t p1, int32_t delta);
size_t kv_stream_shift_pages_needed(const kv_pool *pool, const kv_stream *s, int32_t p0, int32_t p1);

/* Row pointers of slot i. */
void *kv_stream_k(const kv_pool *pool, const kv_stream *s, int i);
void *kv_stream_v(const kv_pool *pool, const kv_stream *s, int i);

#endif
