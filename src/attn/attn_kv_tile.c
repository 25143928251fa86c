/* Page row accessor: F32, F16 and Q8_0 rows in place (the kernels convert
 * in registers), Q4_0 pages converted into a tile buffer; a block of many
 * rows (reader.many) scores on keys the kernel transposes into tmp and
 * takes P x V on values converted once; quantised cold pages read by the
 * cold kernels in place. */
#include "attn/attn_kv_tile.h"

#include <stdbool.h>

#include "kv/kv_convert.h"

long kv_tile_reader_floats(const kv_pool *pool) {
    const long p = kv_pool_page_slots(pool), d = kv_pool_head_dim(pool);
    return 2 * p * d + d * ((p + 7) & ~7L);
}

void kv_tile_reader_init(kv_tile_reader *r, const kv_pool *pool, float *buf) {
    r->pool = pool;
    r->head_dim = kv_pool_head_dim(pool);
    r->page_slots = kv_pool_page_slots(pool);
    r->direct = kv_pool_dtype(pool) == LT_F32;
    r->half = kv_pool_dtype(pool) == LT_F16;
    r->q8 = kv_pool_dtype(pool) == LT_Q8_0;
    r->kbuf = buf;
    r->vbuf = buf + (long)r->page_slots * r->head_dim;
    r->tmp = buf + 2L * r->page_slots * r->head_dim;
    r->cold = NULL;
    r->many = 0;
}

int kv_tile_rows(const kv_tile_reader *r, const kv_stream *s, int pi, int *first) {
    int f = pi * r->page_slots;
    int n = s->n - f;
    *first = f;
    return n < r->page_slots ? n : r->page_slots;
}

/* F16 and Q8_0 rows are read in place only on pool pages: a cold page's index is its tier's. */
static bool half_in_place(const kv_tile_reader *r) { return r->half && !r->cold; }
static bool q8_in_place(const kv_tile_reader *r) { return r->q8 && !r->cold; }

/* A page's rows are packed (the pool lays them kv_row_size apart), so they
 * convert in one call: a call per row cost Q4_0 decode attention a third. */
static const float *load(kv_tile_reader *r, const void *row0, float *buf, int rows) {
    if (r->direct) return row0;
    kv_row_to_f32(kv_pool_dtype(r->pool), row0, buf, rows * r->head_dim);
    return buf;
}

const float *kv_tile_k(kv_tile_reader *r, int32_t page, int rows) {
    if (r->cold) {
        kv_cold_page_to_f32(r->cold, page, r->kbuf, NULL, r->tmp);
        return r->kbuf;
    }
    return load(r, kv_page_k_row(r->pool, page, 0), r->kbuf, rows);
}

const float *kv_tile_v(kv_tile_reader *r, int32_t page, int rows) {
    if (r->cold) {
        kv_cold_page_to_f32(r->cold, page, NULL, r->vbuf, r->tmp);
        return r->vbuf;
    }
    return load(r, kv_page_v_row(r->pool, page, 0), r->vbuf, rows);
}

/* The cold kernels take Q4_0 / Q8_0 pages whose blocks line up: keys per
 * channel need page_slots % 32 == 0, values per token head_dim % 32 == 0. */
static bool cold_quant(const kv_tile_reader *r) { return r->cold->dtype == LT_Q4_0 || r->cold->dtype == LT_Q8_0; }

/* The cold kernels' stage: the K and V tile buffers, unused on this path:
 * 2 x page_slots x head_dim floats, at least 33 x head_dim for scores
 * (page_slots >= 32) and 33 x page_slots for values (head_dim >= 32). */
static float *cold_stage(const kv_tile_reader *r) { return r->kbuf; }

void kv_tile_scores(kv_tile_reader *r, const attn_kernels *kern, const kv_stream *st, int pi, int nk, const float *q,
                    int nr, float *S, int s_stride) {
    const int32_t page = st->pages[pi];
    if (r->cold && cold_quant(r) && r->page_slots % 32 == 0) {
        /* Cold pages are separate allocations the hardware prefetcher does
         * not run into: start the next page's K and V blocks (adjacent) on
         * their way while this one is read (-40% for the cold tier when the
         * weights have pushed it out of cache between steps). */
        if ((long)(pi + 1) * r->page_slots < st->n) {
            const unsigned char *next = r->cold->pages[st->pages[pi + 1]].k;
            for (size_t b = 0; b < 2 * r->cold->block_bytes; b += 64) __builtin_prefetch(next + b);
        }
        kern->scores_cold(r->cold->dtype, q, r->head_dim, nr, r->cold->pages[page].k, r->page_slots, nk, r->head_dim,
                          S, s_stride, cold_stage(r));
        return;
    }
    const bool half = half_in_place(r);
    if (r->many) {
        const void *k = half ? kv_page_k_row(r->pool, page, 0) : (const void *)kv_tile_k(r, page, nk);
        kern->scores_many(q, r->head_dim, nr, k, half, nk, r->head_dim, S, s_stride, r->tmp);
        return;
    }
    if (half) {
        kern->scores_f16(q, r->head_dim, nr, kv_page_k_row(r->pool, page, 0), nk, r->head_dim, S, s_stride);
        return;
    }
    if (q8_in_place(r)) {
        kern->scores_q8(q, r->head_dim, nr, kv_page_k_row(r->pool, page, 0), nk, r->head_dim, S, s_stride);
        return;
    }
    kern->scores(q, r->head_dim, nr, kv_tile_k(r, page, nk), nk, r->head_dim, S, s_stride);
}

void kv_tile_pv(kv_tile_reader *r, const attn_kernels *kern, int32_t page, int nk, float *o, int nr, const float *alpha,
                const float *p, int p_stride) {
    if (r->cold && cold_quant(r) && r->head_dim % 32 == 0) {
        kern->pv_cold(r->cold->dtype, o, nr, alpha, p, p_stride, r->cold->pages[page].v, nk, r->head_dim,
                      cold_stage(r));
        return;
    }
    if (half_in_place(r) && !r->many) { /* many rows: converting the page once beats once per pair of rows */
        kern->pv_f16(o, nr, alpha, p, p_stride, kv_page_v_row(r->pool, page, 0), nk, r->head_dim);
        return;
    }
    if (q8_in_place(r) && !r->many) {
        kern->pv_q8(o, nr, alpha, p, p_stride, kv_page_v_row(r->pool, page, 0), nk, r->head_dim);
        return;
    }
    kern->pv(o, nr, alpha, p, p_stride, kv_tile_v(r, page, nk), nk, r->head_dim);
}
