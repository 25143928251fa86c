/* Stream compaction by dense swap-fill: the m kept slots end in [0, m);
 * each dropped slot below m is refilled by a kept slot from [m, n), so a
 * drop costs one row move at most and kept slots below m never move. Also
 * the position-range removal, which is the same walk with a range test in
 * place of the mask. */
#include <string.h>

#include "kv/kv_stream.h"
#include "kv/kv_stream_impl.h"

/* Which slots stay: the mask when there is one, else those outside [p0, p1). */
typedef struct {
    const uint8_t *keep;
    int32_t p0, p1;
} keep_rule;

static bool kept(const kv_stream *s, const keep_rule *r, int i) {
    return r->keep ? r->keep[i] != 0 : !(s->pos[i] >= r->p0 && s->pos[i] < r->p1);
}

static int count_kept(const kv_stream *s, const keep_rule *r) {
    int m = 0;
    for (int i = 0; i < s->n; i++) m += kept(s, r, i);
    return m;
}

/* Shared pages among those holding a hole below m (each receives a row). */
static size_t pages_needed(const kv_pool *pool, const kv_stream *s, const keep_rule *r, int m) {
    const int P = kv_pool_page_slots(pool);
    size_t need = 0;
    int last = -1;
    for (int i = 0; i < m; i++) {
        if (kept(s, r, i) || i / P == last) continue;
        last = i / P;
        if (kv_pool_refcount(pool, s->pages[last]) > 1) need++;
    }
    return need;
}

static void move_slot(kv_pool *pool, kv_stream *s, int dst, int src) {
    const size_t rb = kv_pool_row_bytes(pool);
    memcpy(kv_stream_k(pool, s, dst), kv_stream_k(pool, s, src), rb);
    memcpy(kv_stream_v(pool, s, dst), kv_stream_v(pool, s, src), rb);
    s->pos[dst] = s->pos[src];
    if (s->attn_last) s->attn_last[dst] = s->attn_last[src];
    if (s->attn_acc) s->attn_acc[dst] = s->attn_acc[src];
    if (s->attn_last_hit) s->attn_last_hit[dst] = s->attn_last_hit[src];
    if (s->aux) {
        const size_t w = (size_t)s->aux_width;
        memcpy(s->aux + (size_t)dst * w, s->aux + (size_t)src * w, w * sizeof *s->aux);
    }
}

static lethe_status compact_by(kv_pool *pool, kv_stream *s, const keep_rule *r) {
    if (s->n == 0) return LETHE_OK;
    const int P = kv_pool_page_slots(pool);
    const int m = count_kept(s, r);
    if (m == s->n) return LETHE_OK;
    if (pages_needed(pool, s, r, m) > kv_pool_pages_free(pool)) return LETHE_ERR_BUDGET;
    /* Holes below m pair with kept slots of [m, n): both number the kept
     * slots of the tail. Moves write only below m, each slot tested before
     * it is written, and read only from [m, n), never written, so the range
     * rule (which reads pos) sees the original positions throughout. */
    int tail = s->n - 1, last_cow = -1;
    for (int i = 0; i < m; i++) {
        if (kept(s, r, i)) continue;
        while (!kept(s, r, tail)) tail--;
        if (i / P != last_cow) {
            last_cow = i / P;
            /* cannot fail: the pages were counted above */
            if (kv_pool_refcount(pool, s->pages[last_cow]) > 1) kv_stream_cow_page(pool, s, last_cow);
        }
        move_slot(pool, s, i, tail);
        tail--;
    }
    const int old_pages = kv_pages_for(s->n, P), new_pages = kv_pages_for(m, P);
    for (int pi = new_pages; pi < old_pages; pi++) kv_pool_release(pool, s->pages[pi]);
    s->n = m;
    return LETHE_OK;
}

lethe_status kv_stream_compact(kv_pool *pool, kv_stream *s, const uint8_t *keep) {
    if (s->n > 0 && !keep) return LETHE_ERR_ARG;
    keep_rule r = {keep, 0, 0};
    return compact_by(pool, s, &r);
}

size_t kv_stream_compact_pages_needed(const kv_pool *pool, const kv_stream *s, const uint8_t *keep) {
    if (s->n == 0 || !keep) return 0;
    keep_rule r = {keep, 0, 0};
    return pages_needed(pool, s, &r, count_kept(s, &r));
}

lethe_status kv_stream_remove(kv_pool *pool, kv_stream *s, int32_t p0, int32_t p1) {
    if (p1 <= p0) return LETHE_OK;
    keep_rule r = {NULL, p0, p1};
    return compact_by(pool, s, &r);
}

size_t kv_stream_remove_pages_needed(const kv_pool *pool, const kv_stream *s, int32_t p0, int32_t p1) {
    if (p1 <= p0 || s->n == 0) return 0;
    keep_rule r = {NULL, p0, p1};
    return pages_needed(pool, s, &r, count_kept(s, &r));
}
