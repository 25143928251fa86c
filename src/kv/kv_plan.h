/* A policy's plan for a sequence's streams, checked whole and then applied
 * whole: hot drops, demotions to the cold tier and cold drops. The masks
 * and scratch belong to the plan object (one per sequence) and grow on
 * demand in kv_plan_prepare, so that in steady state an apply allocates
 * nothing.
 *
 * Use: kv_plan_prepare (presets the masks), let the policy clear keep bits
 * / set demote bits / clear cold_keep bits, then kv_plan_apply. */
#ifndef LETHE_KV_PLAN_H
#define LETHE_KV_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"

typedef struct kv_plan kv_plan; /* owned by a sequence: masks + scratch, grown on demand */

/* Bytes the plan's masks and scratch hold. */
size_t kv_plan_bytes(const kv_plan *p);
/* Its part that does not grow with the streams' slots (the byte model's). */
size_t kv_plan_fixed_bytes(int n_streams, bool with_cold);
/* NULL when out of memory or n_streams < 1. */
kv_plan *kv_plan_create(int n_streams, bool with_cold);
void kv_plan_free(kv_plan *p);

/* Grows the masks to the streams' (and cold tiers') current sizes and
 * presets them: keep = 1, demote = 0, cold_keep = 1. NOMEM: nothing changed
 * (the streams; masks are scratch). cold: n_streams tiers, NULL without a
 * cold tier (the plan was created with_cold = false, or it is ignored). */
lethe_status kv_plan_prepare(kv_plan *p, const kv_stream *streams, const kv_cold *cold);

/* Per stream masks, valid until the next prepare; the latter two NULL
 * without cold. */
uint8_t **kv_plan_keep(kv_plan *p);
uint8_t **kv_plan_demote(kv_plan *p);
uint8_t **kv_plan_cold_keep(kv_plan *p);

/* Checks the whole plan (kept <= target[s] for every stream; cold slots
 * after <= cold_capacity when >= 0; free pool pages for copy on write;
 * cold-tier storage), reserves everything it needs, then applies it to
 * every stream: cold drops (kv_cold_compact), demotions (kv_cold_add of
 * slots with keep = 0 and demote = 1, scored by attn_acc, 0 without
 * statistics), hot drops (kv_stream_compact). Any error: every stream and
 * cold tier exactly as before (capacities and reserved cold storage may
 * have grown), message in err (LETHE_ERR_MAX bytes, may be NULL):
 * LETHE_ERR_ARG (plan not prepared for these sizes), LETHE_ERR_BUDGET
 * (over a target or capacity, or too few free pages), LETHE_ERR_NOMEM.
 * Once the buffers have grown, an apply allocates nothing. */
lethe_status kv_plan_apply(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold, const int *target,
                           int cold_capacity, char *err);

/* The two halves of kv_plan_apply, for a caller that must check several
 * plans (sequences of one batch) before it commits any: kv_plan_check
 * refuses or reserves (nothing observable changes; *pages, when non-NULL,
 * gets the free pool pages the commit will take), and kv_plan_commit, right
 * after a successful check with nothing changed in between, cannot fail. */
lethe_status kv_plan_check(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold, const int *target,
                           int cold_capacity, size_t *pages, char *err);
void kv_plan_commit(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold);

#endif
