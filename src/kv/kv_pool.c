/* The KV page pool: one 64-byte aligned block cut into pages, a free stack,
 * per-page reference counts and usage accounting. */
#include "kv/kv_pool.h"

#include <stdlib.h>
#include <string.h>

#include "kv/kv_convert.h"
#include "util/alloc.h"
#include "util/checked.h"
#include "util/error.h"

#define KV_POOL_ALIGN 64
/* Pools of at least this size are aligned to 2 MiB and offered to the kernel
 * as transparent huge pages: attention streams through the pages of a
 * stream, and hardware prefetchers stop at every 4 KiB boundary. */
#define KV_POOL_HUGE ((size_t)2 << 20)

struct kv_pool {
    int page_slots;
    int head_dim;
    lt_type dtype;
    size_t n_pages;
    size_t row_bytes;  /* one K (or V) row */
    size_t page_bytes; /* K block + V block */
    unsigned char *data;
    int32_t *refcount; /* n_pages */
    int32_t *free_ids; /* stack of free page ids, n_free on it */
    size_t n_free;
    size_t peak_used;
};

kv_pool *kv_pool_create(const kv_pool_params *p, char *err) {
    if (!p) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: no parameters");
        return NULL;
    }
    if (p->page_slots < 1 || p->head_dim < 1) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: page_slots (%d) and head_dim (%d) must be >= 1",
                  p->page_slots, p->head_dim);
        return NULL;
    }
    if (!kv_dtype_supported(p->dtype)) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: unsupported KV dtype %d (F32, F16 or Q8_0)",
                  (int)p->dtype);
        return NULL;
    }
    size_t row = kv_row_size(p->dtype, p->head_dim);
    if (row == 0) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: head_dim %d is not a multiple of 32 (needed by Q8_0)",
                  p->head_dim);
        return NULL;
    }
    if (p->n_pages < 1 || p->n_pages > (size_t)INT32_MAX) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: n_pages %zu out of range", p->n_pages);
        return NULL;
    }
    size_t page_bytes, total;
    if (!mul_size(row, (size_t)p->page_slots * 2, &page_bytes) || !mul_size(page_bytes, p->n_pages, &total) ||
        !add_size(total, KV_POOL_ALIGN - 1, &total)) {
        set_error(err, LETHE_ERR_ARG, "kv_pool_create: pool size overflows");
        return NULL;
    }
    size_t align = KV_POOL_ALIGN;
    if (total >= KV_POOL_HUGE && total <= SIZE_MAX - KV_POOL_HUGE) {
        align = KV_POOL_HUGE;
        total += KV_POOL_HUGE - KV_POOL_ALIGN;
    }
    total -= total % align; /* aligned_alloc wants a multiple of the alignment */

    kv_pool *pool = lt_calloc(1, sizeof *pool);
    if (!pool) goto nomem;
    pool->page_slots = p->page_slots;
    pool->head_dim = p->head_dim;
    pool->dtype = p->dtype;
    pool->n_pages = p->n_pages;
    pool->row_bytes = row;
    pool->page_bytes = page_bytes;
    pool->data = lt_aligned_alloc(align, total);
    if (pool->data && align == KV_POOL_HUGE) lt_advise_huge(pool->data, total);
    pool->refcount = lt_calloc(p->n_pages, sizeof *pool->refcount);
    pool->free_ids = lt_malloc(p->n_pages * sizeof *pool->free_ids);
    if (!pool->data || !pool->refcount || !pool->free_ids) goto nomem;
    /* Lowest ids on top of the stack, so a fresh pool hands out 0, 1, 2... */
    for (size_t i = 0; i < p->n_pages; i++) pool->free_ids[i] = (int32_t)(p->n_pages - 1 - i);
    pool->n_free = p->n_pages;
    return pool;

nomem:
    kv_pool_free(pool);
    set_error(err, LETHE_ERR_NOMEM, "kv_pool_create: cannot allocate %zu pages of %zu bytes",
              p->n_pages, page_bytes);
    return NULL;
}

void kv_pool_free(kv_pool *pool) {
    if (!pool) return;
    lt_free(pool->data);
    lt_free(pool->refcount);
    lt_free(pool->free_ids);
    lt_free(pool);
}

int32_t kv_pool_alloc(kv_pool *pool) {
    if (pool->n_free == 0) return -1;
    int32_t id = pool->free_ids[--pool->n_free];
    pool->refcount[id] = 1;
    size_t used = pool->n_pages - pool->n_free;
    if (used > pool->peak_used) pool->peak_used = used;
    return id;
}

static bool valid_page(const kv_pool *pool, int32_t page) {
    return page >= 0 && (size_t)page < pool->n_pages;
}

void kv_pool_retain(kv_pool *pool, int32_t page) {
    if (valid_page(pool, page) && pool->refcount[page] > 0) pool->refcount[page]++;
}

void kv_pool_release(kv_pool *pool, int32_t page) {
    if (!valid_page(pool, page) || pool->refcount[page] <= 0) return;
    if (--pool->refcount[page] == 0) pool->free_ids[pool->n_free++] = page;
}

int kv_pool_refcount(const kv_pool *pool, int32_t page) {
    return valid_page(pool, page) ? pool->refcount[page] : 0;
}

void *kv_page_k_row(const kv_pool *pool, int32_t page, int r) {
    return pool->data + (size_t)page * pool->page_bytes + (size_t)r * pool->row_bytes;
}

void *kv_page_v_row(const kv_pool *pool, int32_t page, int r) {
    return pool->data + (size_t)page * pool->page_bytes + (size_t)(pool->page_slots + r) * pool->row_bytes;
}

int kv_pool_page_slots(const kv_pool *pool) { return pool->page_slots; }
int kv_pool_head_dim(const kv_pool *pool) { return pool->head_dim; }
lt_type kv_pool_dtype(const kv_pool *pool) { return pool->dtype; }
size_t kv_pool_row_bytes(const kv_pool *pool) { return pool->row_bytes; }
size_t kv_pool_page_bytes(const kv_pool *pool) { return pool->page_bytes; }
size_t kv_pool_n_pages(const kv_pool *pool) { return pool->n_pages; }
size_t kv_pool_pages_used(const kv_pool *pool) { return pool->n_pages - pool->n_free; }
size_t kv_pool_bytes_used(const kv_pool *pool) { return kv_pool_pages_used(pool) * pool->page_bytes; }
size_t kv_pool_bytes_free(const kv_pool *pool) { return pool->n_free * pool->page_bytes; }
size_t kv_pool_peak_pages_used(const kv_pool *pool) { return pool->peak_used; }
void kv_pool_reset_peak(kv_pool *pool) { pool->peak_used = kv_pool_pages_used(pool); }
size_t kv_pool_pages_free(const kv_pool *pool) { return pool->n_free; }

void kv_store_row(const kv_pool *pool, void *dst, const float *src) {
    kv_row_from_f32(pool->dtype, src, dst, pool->head_dim);
}

void kv_load_row(const kv_pool *pool, const void *src, float *dst) {
    kv_row_to_f32(pool->dtype, src, dst, pool->head_dim);
}
