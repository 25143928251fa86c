/* Internals shared by the kv_stream files (kv_stream.c, kv_compact.c,
 * kv_shift.c); not part of the kv interface. */
#ifndef LETHE_KV_STREAM_IMPL_H
#define LETHE_KV_STREAM_IMPL_H

#include "kv/kv_stream.h"

static inline int kv_pages_for(int n, int page_slots) { return (n + page_slots - 1) / page_slots; }

/* Replaces page index pi of s by a private copy (copy on write).
 * LETHE_ERR_BUDGET (nothing changed) when the pool has no free page. */
lethe_status kv_stream_cow_page(kv_pool *pool, kv_stream *s, int pi);

/* Position-edit helpers shared with the cold tier (kv_shift.c). */
bool kv_rope_valid(const kv_rope *r, int head_dim);
/* p + delta is a valid position (>= 0, no overflow). */
bool kv_shift_target_ok(int32_t p, int32_t delta);
/* cs (n_rot floats): the rotation from position `from` to `to`. */
void kv_rope_delta_table(const kv_rope *r, int32_t from, int32_t to, float *cs);

#endif
