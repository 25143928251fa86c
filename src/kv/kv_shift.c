/* Position edits of a hot stream: shift a position range by a delta and
 * re-rotate its cached keys (RoPE is applied before caching). */
#include <limits.h>
#include <string.h>

#include "kv/kv_stream.h"
#include "kv/kv_stream_impl.h"
#include "tensor/rope.h"

static bool in_range(int32_t p, int32_t p0, int32_t p1) { return p >= p0 && p < p1; }

bool kv_rope_valid(const kv_rope *r, int head_dim) {
    return r && r->head_dim == head_dim && head_dim <= KV_ROPE_MAX_DIM && r->n_rot >= 0 && r->n_rot % 2 == 0 &&
           r->n_rot <= head_dim && r->base > 0.0f;
}

bool kv_shift_target_ok(int32_t p, int32_t delta) {
    int64_t q = (int64_t)p + delta;
    return q >= 0 && q <= INT32_MAX;
}

void kv_rope_delta_table(const kv_rope *r, int32_t from, int32_t to, float *cs) {
    float c1[KV_ROPE_MAX_DIM], c2[KV_ROPE_MAX_DIM];
    lt_rope_table(c1, &from, 1, r->n_rot, r->base);
    lt_rope_table(c2, &to, 1, r->n_rot, r->base);
    /* un-rotate by the old angle and rotate by the new one in one step */
    for (int i = 0; i < r->n_rot / 2; i++) {
        float ca = c1[2 * i], sa = c1[2 * i + 1], cb = c2[2 * i], sb = c2[2 * i + 1];
        cs[2 * i] = cb * ca + sb * sa;
        cs[2 * i + 1] = sb * ca - cb * sa;
    }
}

size_t kv_stream_shift_pages_needed(const kv_pool *pool, const kv_stream *s, int32_t p0, int32_t p1) {
    const int P = kv_pool_page_slots(pool);
    size_t need = 0;
    int last = -1;
    for (int i = 0; i < s->n; i++) {
        if (!in_range(s->pos[i], p0, p1) || i / P == last) continue;
        last = i / P;
        if (kv_pool_refcount(pool, s->pages[last]) > 1) need++;
    }
    return need;
}

lethe_status kv_stream_shift(kv_pool *pool, kv_stream *s, const kv_rope *rope, int32_t p0, int32_t p1, int32_t delta) {
    const int D = kv_pool_head_dim(pool), P = kv_pool_page_slots(pool);
    if (!kv_rope_valid(rope, D)) return LETHE_ERR_ARG;
    if (delta == 0 || p1 <= p0) return LETHE_OK;
    for (int i = 0; i < s->n; i++)
        if (in_range(s->pos[i], p0, p1) && !kv_shift_target_ok(s->pos[i], delta)) return LETHE_ERR_ARG;
    if (kv_stream_shift_pages_needed(pool, s, p0, p1) > kv_pool_pages_free(pool)) return LETHE_ERR_BUDGET;
    const bool f32 = kv_pool_dtype(pool) == LT_F32;
    float row[KV_ROPE_MAX_DIM], cs[KV_ROPE_MAX_DIM];
    int last = -1;
    for (int i = 0; i < s->n; i++) {
        if (!in_range(s->pos[i], p0, p1)) continue;
        if (i / P != last) {
            last = i / P;
            if (kv_pool_refcount(pool, s->pages[last]) > 1) kv_stream_cow_page(pool, s, last); /* counted above */
        }
        const int32_t to = s->pos[i] + delta;
        kv_rope_delta_table(rope, s->pos[i], to, cs);
        void *k = kv_stream_k(pool, s, i);
        float *x = f32 ? (float *)k : row;
        if (!f32) kv_load_row(pool, k, row);
        lt_rope_apply(x, 1, D, rope->n_rot, cs, rope->neox);
        if (!f32) kv_store_row(pool, k, row);
        s->pos[i] = to;
    }
    return LETHE_OK;
}
