/* snapkv: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", 2024.
 *
 * The last obs_window queries of a prompt chunk (the observation window)
 * vote for the prompt slots they attend to: the runtime computes the
 * statistics of a chunk from those queries only (stats_from), and
 * observe() max-pools the votes over neighbouring positions (width
 * pool_kernel, so a selected slot brings its neighbours along) and stores
 * them in aux. plan() keeps, per KV head, the sinks, the recent window and
 * the best-voted slots. Decode steps bring no fresh observation: their
 * tokens score 0 and leave oldest first once they fall out of the window
 * (a recent-window rule), until the next prompt chunk votes again. */
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    int32_t pos;
    int idx;
} slot_ref;

typedef struct {
    void *rank;
    size_t rank_cap;
    slot_ref *order; /* the slots in position order */
    int order_cap;
} snap_state;

static snap_state *state_of(kv_policy *p) {
    if (!p->state) p->state = lt_calloc(1, sizeof(snap_state));
    return p->state;
}

static int cmp_slot_pos(const void *a, const void *b) {
    int32_t x = ((const slot_ref *)a)->pos, y = ((const slot_ref *)b)->pos;
    return (x > y) - (x < y);
}

static void observe(kv_policy *p, const policy_view *v) {
    if (!v->in_prefill) return;
    snap_state *ss = state_of(p);
    if (!ss) return;
    const int half = p->params.pool_kernel > 1 ? p->params.pool_kernel / 2 : 0;
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        const int n = kv->n;
        if (!kv->attn_last || !kv->aux || n == 0) continue;
        if (n > ss->order_cap) {
            slot_ref *o = lt_realloc(ss->order, (size_t)n * sizeof *o);
            if (!o) return;
            ss->order = o;
            ss->order_cap = n;
        }
        bool sorted = true;
        for (int i = 0; i < n; i++) {
            ss->order[i] = (slot_ref){kv->pos[i], i};
            if (i > 0 && kv->pos[i] < kv->pos[i - 1]) sorted = false;
        }
        if (!sorted) qsort(ss->order, (size_t)n, sizeof *ss->order, cmp_slot_pos);
        /* 1-D max pooling over the positions within `half` of each slot
         * (at most pool_kernel slots, positions being distinct) */
        const slot_ref *o = ss->order;
        for (int r = 0, lo = 0; r < n; r++) {
            const int32_t pr = o[r].pos;
            while (o[lo].pos < pr - half) lo++;
            float m = 0.0f;
            for (int j = lo; j < n && o[j].pos <= pr + half; j++)
                if (kv->attn_last[o[j].idx] > m) m = kv->attn_last[o[j].idx];
            kv->aux[(size_t)o[r].idx * kv->aux_width] = m;
        }
    }
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    snap_state *ss = state_of(p);
    if (!ss) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        if (kv->n <= target[s]) continue;
        if (policy_keep_top_in(v, kv, kv->aux, target[s], p->params.sink, policy_window_for(&p->params, target[s]), out->keep[s],
                            &ss->rank, &ss->rank_cap)) return policy_oom(p);
    }
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    snap_state *ss = p->state;
    if (!ss) return;
    lt_free(ss->rank);
    lt_free(ss->order);
    lt_free(ss);
    p->state = NULL;
}

static int stats_from(const kv_policy *p, int n) {
    int w = p->params.obs_window;
    return w > 0 && n > w ? n - w : 0;
}

const kv_policy_ops policy_snapkv_ops = {
    .name = "snapkv",
    .flags = "sink window obs-window pool",
    .summary = "SnapKV: prompt slots voted for by the last obs-window queries (max-pooled) + recent window",
    .needs_stats = true,
    .stats_from = stats_from,
    .may_evict = true,
    .aux_width = 1,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
};
