/* headwise: per-head budgets after Task-KV (2025), RazorAttention (Tang et al., 2024) and HACK: far-reaching heads get the room.
 *
 * Most heads only look at the sinks and the recent window; a few reach far
 * back. A calibration pass (runtime/calibrate.c) measures each stream's
 * reach: its share of attention mass beyond the window. budgets() gives
 * every stream sink + window (rounded up to whole pages) and shares the
 * rest of the sequence's slots, in whole pages, among the streams whose
 * reach is above the mean, in proportion to how far above it they are (at
 * most 8 x budget each). plan() keeps sinks + window in the small heads
 * and, in the large ones, the sinks, window and heaviest hitters by
 * accumulated attention (as h2o). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "util/alloc.h"

#define HEADWISE_MAX_FACTOR 8

typedef struct {
    void *rank;
    size_t rank_cap;
    uint8_t *large; /* per stream, from budgets(); NULL: all large */
    int n_streams;
} headwise_state;

static headwise_state *state_of(kv_policy *p) {
    if (!p->state) p->state = lt_calloc(1, sizeof(headwise_state));
    return p->state;
}

static lethe_status budgets(kv_policy *p, const policy_view *v, int budget, int *out) {
    headwise_state *hs = state_of(p);
    const int n = v->n_layer * v->n_head_kv;
    uint8_t *large = hs ? lt_realloc(hs->large, (size_t)n) : NULL;
    if (!large) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    hs->large = large;
    hs->n_streams = n;
    memset(hs->large, 1, (size_t)n);
    for (int s = 0; s < n; s++) out[s] = budget;
    if (!v->head_reach) return LETHE_OK;
    if (budget >= v->n_ctx) return LETHE_OK; /* the whole context fits every head: nothing to redistribute */

    const long P = kv_pool_page_slots(v->pool);
    long floor_slots = (long)p->params.sink + policy_window_for(&p->params, budget);
    floor_slots = (floor_slots + P - 1) / P * P;
    if (floor_slots >= budget) return LETHE_OK; /* no room to differ: uniform */

    double mean = 0.0;
    for (int s = 0; s < n; s++) mean += v->head_reach[s];
    mean /= n;
    double wsum = 0.0;
    for (int s = 0; s < n; s++) wsum += v->head_reach[s] > mean ? v->head_reach[s] - mean : 0.0;
    if (!(wsum > 0.0)) return LETHE_OK; /* every head alike */

    /* whole pages to share beyond every stream's floor */
    long spare = ((long)n * budget - (long)n * floor_slots) / P;
    const long cap_pages = ((long)HEADWISE_MAX_FACTOR * budget) / P - floor_slots / P; /* extra pages a stream may get */
    long *extra = lt_calloc((size_t)n, sizeof *extra);
    double *want = lt_calloc((size_t)n, sizeof *want);
    if (!extra || !want) {
        lt_free(extra);
        lt_free(want);
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    /* water-filling: share in proportion to the excess reach, streams that
     * hit the cap drop out and the rest share again */
    for (int round = 0; round < n && spare > 0; round++) {
        double w = 0.0;
        for (int s = 0; s < n; s++)
            if (extra[s] < cap_pages && v->head_reach[s] > mean) w += v->head_reach[s] - mean;
        if (!(w > 0.0)) break;
        long given = 0;
        for (int s = 0; s < n; s++) {
            want[s] = 0.0;
            if (extra[s] >= cap_pages || !(v->head_reach[s] > mean)) continue;
            want[s] = (double)spare * (v->head_reach[s] - mean) / w;
            long g = (long)want[s];
            if (g > cap_pages - extra[s]) g = cap_pages - extra[s];
            extra[s] += g;
            given += g;
            want[s] -= (double)g;
        }
        spare -= given;
        if (given == 0) {
            /* largest remainders get the last pages, one each */
            while (spare > 0) {
                int best = -1;
                for (int s = 0; s < n; s++)
                    if (extra[s] < cap_pages && want[s] > 0.0 && (best < 0 || want[s] > want[best])) best = s;
                if (best < 0) break;
                extra[best]++;
                want[best] = 0.0;
                spare--;
            }
            break;
        }
    }
    for (int s = 0; s < n; s++) {
        out[s] = (int)(floor_slots + extra[s] * P);
        hs->large[s] = extra[s] > 0;
    }
    lt_free(extra);
    lt_free(want);
    return LETHE_OK;
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    headwise_state *hs = state_of(p);
    if (!hs) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        if (kv->n <= target[s]) continue;
        bool large = !hs->large || s >= hs->n_streams || hs->large[s];
        /* large: by accumulated attention; else sinks + everything recent that fits */
        lethe_status st = policy_keep_top_in(v, kv, large ? kv->attn_acc : NULL, target[s], p->params.sink,
                                              large ? policy_window_for(&p->params, target[s]) : target[s], out->keep[s],
                                              &hs->rank, &hs->rank_cap);
        if (st) return policy_oom(p);
    }
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    headwise_state *hs = p->state;
    if (!hs) return;
    lt_free(hs->rank);
    lt_free(hs->large);
    lt_free(hs);
    p->state = NULL;
}

/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    return sizeof(headwise_state) + policy_rank_bytes(r->slots) + (size_t)r->n_streams;
}

const kv_policy_ops policy_headwise_ops = {
    .name = "headwise",
    .flags = "sink window calib",
    .summary = "per-head budgets from a calibration pass: far-reaching heads get more (h2o scores), the rest sinks + window",
    .needs_stats = true,
    .stats = KV_STATS_ACC,
    .may_evict = true,
    .needs_calibration = true,
    .budgets = budgets,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
