/* The KV page pool: one allocation per engine instance, cut into fixed-size
 * pages. A page holds page_slots consecutive cache slots of ONE stream (one
 * layer x one KV head): a K block [page_slots][head_dim] followed by a V
 * block of the same shape, in the pool's dtype (F32, F16 or Q8_0; Q8_0 rows
 * are head_dim/32 blocks). Pages are reference counted so sequences can
 * share a prefix; allocation and release are O(1) through a free list. */
#ifndef LETHE_KV_POOL_H
#define LETHE_KV_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lethe.h"
#include "tensor/types.h"

typedef struct kv_pool kv_pool;

typedef struct {
    int page_slots;   /* slots per page (P), >= 1; default 32 */
    int head_dim;     /* elements per K (and V) row */
    lt_type dtype;    /* LT_F32, LT_F16 or LT_Q8_0 (needs head_dim % 32 == 0) */
    size_t n_pages;   /* capacity, fixed for the pool's life */
} kv_pool_params;

/* Returns NULL with a message in err (LETHE_ERR_MAX bytes) on bad params or
 * allocation failure. */
kv_pool *kv_pool_create(const kv_pool_params *p, char *err);
void kv_pool_free(kv_pool *pool);

/* A fresh page with refcount 1, or -1 when the pool is full. O(1). */
int32_t kv_pool_alloc(kv_pool *pool);
void kv_pool_retain(kv_pool *pool, int32_t page);
/* Drops one reference; the page returns to the free list at zero. O(1). */
void kv_pool_release(kv_pool *pool, int32_t page);
int kv_pool_refcount(const kv_pool *pool, int32_t page);

/* Row r (0 <= r < page_slots) of a page's K / V block. */
void *kv_page_k_row(const kv_pool *pool, int32_t page, int r);
void *kv_page_v_row(const kv_pool *pool, int32_t page, int r);

int kv_pool_page_slots(const kv_pool *pool);
int kv_pool_head_dim(const kv_pool *pool);
lt_type kv_pool_dtype(const kv_pool *pool);
size_t kv_pool_row_bytes(const kv_pool *pool);  /* one K (or V) row */
size_t kv_pool_page_bytes(const kv_pool *pool); /* K + V of a whole page */
size_t kv_pool_n_pages(const kv_pool *pool);
size_t kv_pool_pages_used(const kv_pool *pool);
size_t kv_pool_bytes_used(const kv_pool *pool); /* pages in use x page bytes; shared pages once */
size_t kv_pool_bytes_free(const kv_pool *pool);
size_t kv_pool_peak_pages_used(const kv_pool *pool);
/* Restarts peak tracking from the pages in use now. */
void kv_pool_reset_peak(kv_pool *pool);
size_t kv_pool_pages_free(const kv_pool *pool);  /* pages on the free list */

/* Converts n F32 values to / from the pool's dtype (n = head_dim). */
void kv_store_row(const kv_pool *pool, void *dst, const float *src);
void kv_load_row(const kv_pool *pool, const void *src, float *dst);

#endif
