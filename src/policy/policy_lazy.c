/* lazy: Zhang et al., "LazyEviction: Lagged KV Eviction with Attention Pattern Observation for Efficient Long Reasoning", 2025.
 *
 * Tokens often regain attention after many steps. For each slot we track
 * its hits (steps where one query head gave it probability >=
 * hit_threshold, attn_last_hit) and the maximum recurrence interval (MRI):
 * the longest gap seen between two consecutive hits. aux[0] = the last hit
 * step already counted + 1 (0: none yet), aux[1] = MRI.
 *
 * Eviction is lagged: when the runtime asks for room we drop up to lag - 1
 * slots more than needed, so the following lag - 1 decode steps need no
 * eviction and every slot is observed for lag steps between decisions. The
 * slots that go first are those overdue, i.e. not hit for longer than their
 * MRI predicts (most overdue relative to their rhythm first; a slot that
 * never recurred counts from its last hit or its position), then those
 * with the largest MRI. The sinks and the recent window are protected. */
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    void *rank;
    size_t rank_cap;
    float *score;
    int score_cap;
} lazy_state;

static void observe(kv_policy *p, const policy_view *v) {
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        if (!kv->attn_last_hit || !kv->aux) continue;
        for (int i = 0; i < kv->n; i++) {
            const int32_t h = kv->attn_last_hit[i];
            float *a = kv->aux + (size_t)i * kv->aux_width;
            if (h < 0 || (float)h + 1.0f <= a[0]) continue; /* no hit, or this hit is counted already */
            if (a[0] > 0.0f) {
                float gap = (float)h + 1.0f - a[0];
                if (gap > a[1]) a[1] = gap;
            }
            a[0] = (float)h + 1.0f;
        }
    }
}

/* How many slots to keep when the runtime asks for at most target: lag - 1
 * fewer, but never into the sinks and window, and never below half (of
 * what the n_prot protected slots leave, which always stay). */
static int lagged_target(const policy_params *pp, int target, int n_prot) {
    int extra = pp->lag - 1, free_ = target - n_prot;
    int room = free_ - pp->sink - policy_window_for(pp, target);
    if (extra > room) extra = room;
    if (extra > free_ / 2) extra = free_ / 2;
    return extra > 0 ? target - extra : target;
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    if (!p->state && !(p->state = lt_calloc(1, sizeof(lazy_state)))) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    lazy_state *ls = p->state;
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        const int n = kv->n;
        if (n <= target[s]) continue;
        const float *score = NULL;
        if (kv->aux) {
            if (n > ls->score_cap) {
                float *sc = lt_realloc(ls->score, (size_t)n * sizeof *sc);
                if (!sc) {
                    snprintf(p->err, sizeof p->err, "out of memory");
                    return LETHE_ERR_NOMEM;
                }
                ls->score = sc;
                ls->score_cap = n;
            }
            for (int i = 0; i < n; i++) {
                const float *a = kv->aux + (size_t)i * kv->aux_width;
                float last = a[0] > 0.0f ? a[0] - 1.0f : (float)kv->pos[i];
                float since = (float)v->step - last, mri = a[1];
                /* higher keeps: in rhythm (0, 1], smaller MRI better; overdue < 0 */
                ls->score[i] = since > mri ? -(since - mri) / (mri + 1.0f) : 1.0f / (mri + 1.0f);
            }
            score = ls->score;
        }
        const int lagged = lagged_target(&p->params, target[s], policy_protected_slots(v, kv, NULL));
        if (policy_keep_top_in(v, kv, score, lagged, p->params.sink,
                            policy_window_for(&p->params, target[s]), out->keep[s], &ls->rank, &ls->rank_cap)) return policy_oom(p);
    }
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    lazy_state *ls = p->state;
    if (!ls) return;
    lt_free(ls->rank);
    lt_free(ls->score);
    lt_free(ls);
    p->state = NULL;
}

/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    return sizeof(lazy_state) + policy_rank_bytes(r->slots) + r->slots * sizeof(float);
}

const kv_policy_ops policy_lazy_ops = {
    .name = "lazy",
    .flags = "sink window lag threshold",
    .summary = "LazyEviction: lagged eviction (every --kv-lag steps) of slots overdue for their recurrence interval",
    .needs_stats = true,
    .stats = KV_STATS_HIT,
    .may_evict = true,
    .aux_width = 2,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
