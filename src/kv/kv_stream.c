/* KV streams: a page table into the pool plus per-slot positions and
 * optional attention statistics; append, fork (shared pages). Compaction
 * is in kv_compact.c, position edits in kv_shift.c. */
#include "kv/kv_stream.h"

#include <string.h>

#include "kv/kv_stream_impl.h"
#include "util/alloc.h"

#define pages_for kv_pages_for

void kv_stream_init(kv_stream *s) { memset(s, 0, sizeof *s); }

void kv_stream_free(kv_pool *pool, kv_stream *s) {
    if (!s) return;
    if (pool && s->pages) {
        int np = pages_for(s->n, kv_pool_page_slots(pool));
        for (int i = 0; i < np; i++) kv_pool_release(pool, s->pages[i]);
    }
    lt_free(s->pages);
    lt_free(s->pos);
    lt_free(s->attn_acc);
    lt_free(s->attn_last);
    lt_free(s->attn_last_hit);
    lt_free(s->aux);
    kv_stream_init(s);
}

/* Grows every per-slot array to hold at least `need` slots. On failure the
 * arrays that did grow keep their (larger) blocks; cap is left unchanged. */
static lethe_status reserve_slots(kv_stream *s, int need, bool exact) {
    if (need <= s->cap) return LETHE_OK;
    size_t cap = exact ? 0 : (size_t)s->cap * 2;
    if (cap < (size_t)need) cap = (size_t)need;
    if (!exact && cap < 64) cap = 64;
    if (cap > (size_t)INT32_MAX) cap = (size_t)INT32_MAX;
    if (cap < (size_t)need) return LETHE_ERR_NOMEM;
    int32_t *pos = lt_realloc(s->pos, cap * sizeof *pos);
    if (!pos) return LETHE_ERR_NOMEM;
    s->pos = pos;
    if (s->attn_last) {
        float *last = lt_realloc(s->attn_last, cap * sizeof *last);
        if (!last) return LETHE_ERR_NOMEM;
        s->attn_last = last;
    }
    if (s->attn_acc) {
        float *acc = lt_realloc(s->attn_acc, cap * sizeof *acc);
        if (!acc) return LETHE_ERR_NOMEM;
        s->attn_acc = acc;
    }
    if (s->attn_last_hit) {
        int32_t *hit = lt_realloc(s->attn_last_hit, cap * sizeof *hit);
        if (!hit) return LETHE_ERR_NOMEM;
        s->attn_last_hit = hit;
    }
    if (s->aux) {
        float *aux = lt_realloc(s->aux, cap * (size_t)s->aux_width * sizeof *aux);
        if (!aux) return LETHE_ERR_NOMEM;
        s->aux = aux;
    }
    s->cap = (int)cap;
    return LETHE_OK;
}

static lethe_status reserve_pages(kv_stream *s, int need, bool exact) {
    if (need <= s->pages_cap) return LETHE_OK;
    size_t cap = exact ? 0 : (size_t)s->pages_cap * 2;
    if (cap < (size_t)need) cap = (size_t)need;
    if (!exact && cap < 8) cap = 8;
    int32_t *pages = lt_realloc(s->pages, cap * sizeof *pages);
    if (!pages) return LETHE_ERR_NOMEM;
    s->pages = pages;
    s->pages_cap = (int)cap;
    return LETHE_OK;
}

lethe_status kv_stream_enable_stats(kv_stream *s, unsigned channels) {
    const size_t cap = s->cap > 0 ? (size_t)s->cap : 1;
    const bool want_last = !s->attn_last, want_acc = !s->attn_acc && (channels & KV_STATS_ACC),
               want_hit = !s->attn_last_hit && (channels & KV_STATS_HIT);
    float *last = want_last ? lt_calloc(cap, sizeof *last) : NULL;
    float *acc = want_acc ? lt_calloc(cap, sizeof *acc) : NULL;
    int32_t *hit = want_hit ? lt_malloc(cap * sizeof *hit) : NULL;
    if ((want_last && !last) || (want_acc && !acc) || (want_hit && !hit)) {
        lt_free(last);
        lt_free(acc);
        lt_free(hit);
        return LETHE_ERR_NOMEM;
    }
    if (hit)
        for (size_t i = 0; i < cap; i++) hit[i] = -1; /* -1: never hit */
    if (last) s->attn_last = last;
    if (acc) s->attn_acc = acc;
    if (hit) s->attn_last_hit = hit;
    return LETHE_OK;
}

unsigned kv_stream_stats_channels(const kv_stream *s) {
    return (s->attn_acc ? KV_STATS_ACC : 0u) | (s->attn_last_hit ? KV_STATS_HIT : 0u);
}

lethe_status kv_stream_enable_aux(kv_stream *s, int width) {
    if (width <= 0) return LETHE_ERR_ARG;
    if (s->aux) return s->aux_width == width ? LETHE_OK : LETHE_ERR_ARG;
    size_t cap = s->cap > 0 ? (size_t)s->cap : 1;
    float *aux = lt_calloc(cap * (size_t)width, sizeof *aux);
    if (!aux) return LETHE_ERR_NOMEM;
    s->aux = aux;
    s->aux_width = width;
    return LETHE_OK;
}

lethe_status kv_stream_cow_page(kv_pool *pool, kv_stream *s, int pi) {
    int32_t old = s->pages[pi];
    int32_t fresh = kv_pool_alloc(pool);
    if (fresh < 0) return LETHE_ERR_BUDGET;
    memcpy(kv_page_k_row(pool, fresh, 0), kv_page_k_row(pool, old, 0), kv_pool_page_bytes(pool));
    kv_pool_release(pool, old);
    s->pages[pi] = fresh;
    return LETHE_OK;
}

lethe_status kv_stream_append(kv_pool *pool, kv_stream *s, const float *k, const float *v,
                              long k_stride, long v_stride, const int32_t *pos, int n) {
    if (n < 0 || (n > 0 && (!k || !v || !pos))) return LETHE_ERR_ARG;
    if (n == 0) return LETHE_OK;
    if (n > INT32_MAX - s->n) return LETHE_ERR_BUDGET;
    const int P = kv_pool_page_slots(pool);
    const int old_pages = pages_for(s->n, P);
    const int new_pages = pages_for(s->n + n, P);
    const bool cow = s->n % P != 0 && kv_pool_refcount(pool, s->pages[old_pages - 1]) > 1;
    const size_t need = (size_t)(new_pages - old_pages) + (cow ? 1 : 0);
    if (need > kv_pool_pages_free(pool)) return LETHE_ERR_BUDGET;
    if (reserve_slots(s, s->n + n, false) != LETHE_OK || reserve_pages(s, new_pages, false) != LETHE_OK)
        return LETHE_ERR_NOMEM;

    if (cow) kv_stream_cow_page(pool, s, old_pages - 1); /* cannot fail: checked above */
    for (int i = old_pages; i < new_pages; i++) s->pages[i] = kv_pool_alloc(pool);

    for (int t = 0; t < n; t++) {
        int slot = s->n + t;
        int32_t page = s->pages[slot / P];
        int row = slot % P;
        kv_store_row(pool, kv_page_k_row(pool, page, row), k + (long)t * k_stride);
        kv_store_row(pool, kv_page_v_row(pool, page, row), v + (long)t * v_stride);
        s->pos[slot] = pos[t];
        if (s->attn_last) s->attn_last[slot] = 0.0f;
        if (s->attn_acc) s->attn_acc[slot] = 0.0f;
        if (s->attn_last_hit) s->attn_last_hit[slot] = -1;
        if (s->aux) memset(s->aux + (size_t)slot * s->aux_width, 0, (size_t)s->aux_width * sizeof *s->aux);
    }
    s->n += n;
    return LETHE_OK;
}

void kv_stream_truncate(kv_pool *pool, kv_stream *s, int n) {
    if (n < 0 || n >= s->n) return;
    const int P = kv_pool_page_slots(pool);
    for (int i = (n + P - 1) / P; i < (s->n + P - 1) / P; i++) kv_pool_release(pool, s->pages[i]);
    s->n = n;
}

static lethe_status reserve(const kv_pool *pool, kv_stream *s, int n_slots, bool exact) {
    if (!pool || n_slots < 0) return LETHE_ERR_ARG;
    const int P = kv_pool_page_slots(pool);
    if (reserve_slots(s, n_slots, exact) != LETHE_OK || reserve_pages(s, (n_slots + P - 1) / P, exact) != LETHE_OK)
        return LETHE_ERR_NOMEM;
    return LETHE_OK;
}

lethe_status kv_stream_reserve(const kv_pool *pool, kv_stream *s, int n_slots) { return reserve(pool, s, n_slots, false); }

lethe_status kv_stream_reserve_exact(const kv_pool *pool, kv_stream *s, int n_slots) { return reserve(pool, s, n_slots, true); }

lethe_status kv_stream_fork(kv_pool *pool, const kv_stream *src, kv_stream *dst) {
    if (dst == src || dst->n != 0) return LETHE_ERR_ARG;
    const int P = kv_pool_page_slots(pool);
    const int np = pages_for(src->n, P);
    if (src->aux && dst->aux && dst->aux_width != src->aux_width) return LETHE_ERR_ARG;
    /* what this call enables in dst it takes back on failure */
    const bool new_last = src->attn_last && !dst->attn_last, new_acc = src->attn_acc && !dst->attn_acc,
               new_hit = src->attn_last_hit && !dst->attn_last_hit, new_aux = src->aux && !dst->aux;
    lethe_status st = LETHE_OK;
    if (src->attn_last) st = kv_stream_enable_stats(dst, kv_stream_stats_channels(src));
    if (!st && new_aux) st = kv_stream_enable_aux(dst, src->aux_width);
    if (!st && (reserve_slots(dst, src->n, false) != LETHE_OK || reserve_pages(dst, np, false) != LETHE_OK)) st = LETHE_ERR_NOMEM;
    if (st) {
        if (new_last) lt_free(dst->attn_last), dst->attn_last = NULL;
        if (new_acc) lt_free(dst->attn_acc), dst->attn_acc = NULL;
        if (new_hit) lt_free(dst->attn_last_hit), dst->attn_last_hit = NULL;
        if (new_aux) {
            lt_free(dst->aux);
            dst->aux = NULL;
            dst->aux_width = 0;
        }
        return st;
    }
    for (int i = 0; i < np; i++) {
        kv_pool_retain(pool, src->pages[i]);
        dst->pages[i] = src->pages[i];
    }
    if (src->n > 0) memcpy(dst->pos, src->pos, (size_t)src->n * sizeof *dst->pos);
    for (int i = 0; i < src->n; i++) {
        if (dst->attn_last) dst->attn_last[i] = src->attn_last ? src->attn_last[i] : 0.0f;
        if (dst->attn_acc) dst->attn_acc[i] = src->attn_acc ? src->attn_acc[i] : 0.0f;
        if (dst->attn_last_hit) dst->attn_last_hit[i] = src->attn_last_hit ? src->attn_last_hit[i] : -1;
    }
    if (src->aux && src->n > 0) memcpy(dst->aux, src->aux, (size_t)src->n * (size_t)src->aux_width * sizeof *dst->aux);
    dst->n = src->n;
    return LETHE_OK;
}

void *kv_stream_k(const kv_pool *pool, const kv_stream *s, int i) {
    int P = kv_pool_page_slots(pool);
    return kv_page_k_row(pool, s->pages[i / P], i % P);
}

void *kv_stream_v(const kv_pool *pool, const kv_stream *s, int i) {
    int P = kv_pool_page_slots(pool);
    return kv_page_v_row(pool, s->pages[i / P], i % P);
}
