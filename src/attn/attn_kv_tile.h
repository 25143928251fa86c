/* Per-page access to a stream's K / V rows as F32, so the attention math
 * never sees the pool's dtype: F32, F16 and Q8_0 pages are read in place by
 * kernels that convert in registers (bit for bit the page's F32
 * conversion); Q4_0 pages, whose nibbles cost more to unpack than a pass
 * through L1, are converted a page at a time into a small tile buffer.
 * Blocks of many rows (prefill) score on the keys transposed once
 * (attn_kernels.scores_many) and take quantised keys and values converted
 * once. Q4_0 / Q8_0 cold pages of 32k slots go straight to the cold
 * kernels (scores on the per-channel key layout, values converted in
 * registers); other cold pages are dequantised into the tile buffer. */
#ifndef LETHE_ATTN_KV_TILE_H
#define LETHE_ATTN_KV_TILE_H

#include <stdint.h>

#include "attn/attn_kernels.h"
#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"

typedef struct {
    const kv_pool *pool;
    int head_dim;
    int page_slots;
    int direct;  /* F32 pool: rows are read in place */
    int half;    /* F16 pool: scores and pv read its rows in place */
    int q8;      /* Q8_0 pool: the same (attn_kernels.scores_q8 / pv_q8) */
    float *kbuf; /* page_slots x head_dim, unused when direct */
    float *vbuf;
    float *tmp;  /* head_dim x page_slots rounded up to 8: cold pages' per-channel keys,
                    the transposed keys of scores_many */
    int many;    /* a block of many rows (prefill): scores by scores_many */
    const kv_cold *cold; /* non-NULL: the stream's pages are pages of this cold tier, read in place */
} kv_tile_reader;

/* Floats of tile buffer a reader needs (room to convert a page's K and V
 * and a cold page's transposed keys). */
long kv_tile_reader_floats(const kv_pool *pool);
/* buf: kv_tile_reader_floats(pool) floats (may be NULL when that is 0). */
void kv_tile_reader_init(kv_tile_reader *r, const kv_pool *pool, float *buf);

/* Rows of page index pi of stream s: the slot range [*first, *first + count). */
int kv_tile_rows(const kv_tile_reader *r, const kv_stream *s, int pi, int *first);

/* The first `rows` K (V) rows of a page as F32, rows head_dim floats apart. */
const float *kv_tile_k(kv_tile_reader *r, int32_t page, int rows);
const float *kv_tile_v(kv_tile_reader *r, int32_t page, int rows);

/* S[r * s_stride + j] = dot(q + r * head_dim, key j of page index pi of
 * stream st) for r < nr, j < nk (up to nk rounded to 32 may be written;
 * s_stride >= page_slots). */
void kv_tile_scores(kv_tile_reader *r, const attn_kernels *kern, const kv_stream *st, int pi, int nk, const float *q,
                    int nr, float *S, int s_stride);
/* o = o * alpha + p x V over the page's first nk rows (as attn_kernels.pv). */
void kv_tile_pv(kv_tile_reader *r, const attn_kernels *kern, int32_t page, int nk, float *o, int nr, const float *alpha,
                const float *p, int p_stride);

#endif
