/* snapkv: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", 2024.
 *
 * The last obs_window queries of the prompt (the observation window: the
 * question) vote for the prompt slots they attend to; observe() max-pools
 * the votes over neighbouring positions (width pool_kernel, so a selected
 * slot brings its neighbours along) and stores them in aux. plan() keeps,
 * per KV head, the sinks, the recent window and the best-voted slots.
 *
 * Under a hard cap a long prompt streams through in chunks, and each
 * chunk's evictions are decided before the question has been seen. With
 * the question probe (snap_votes LETHE_SNAP_PROBE, the default) the
 * runtime runs the prompt's last obs_window tokens after every chunk but
 * the last, in the same step, and drops their slots afterwards
 * (runtime/step.c): they vote, as the question, over the cache and the new
 * chunk, so what stays is what the question attends to. LETHE_SNAP_CHUNK
 * is the plain chunked SnapKV (each chunk's own last queries vote).
 *
 * Budgets: uniform, or PyramidKV's (Cai et al. 2024, "PyramidKV: Dynamic
 * KV Cache Compression based on Pyramidal Information Funneling"): lower
 * layers attend broadly and get more, upper layers focus and get less,
 * linearly in depth with the first layer's budget pyramid_ratio times the
 * last's, the total unchanged (in whole pages); or retrieval heads
 * (RazorAttention / DuoAttention): a calibration pass
 * (runtime/calibrate.c, calibrate_retrieval) scores each stream by how
 * much attention it sends back to a stated value while the value is
 * repeated, and the pages beyond one per stream go in proportion.
 *
 * Decode steps bring no fresh observation: their tokens score 0 and leave
 * oldest first once they fall out of the window (a recent-window rule),
 * until the next multi-token append votes again. */
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    int32_t pos;
    int idx;
} slot_ref;

typedef struct {
    void *rank; /* the selection's scratch in plan, the votes' position order in observe */
    size_t rank_cap;
} snap_state;

static snap_state *state_of(kv_policy *p) {
    if (!p->state) p->state = lt_calloc(1, sizeof(snap_state));
    return p->state;
}

static int cmp_slot_pos(const void *a, const void *b) {
    int32_t x = ((const slot_ref *)a)->pos, y = ((const slot_ref *)b)->pos;
    return (x > y) - (x < y);
}

void policy_snap_votes(const policy_view *v, int pool_kernel, void **buf, size_t *cap) {
    if (!v->in_prefill) return;
    const int half = pool_kernel > 1 ? pool_kernel / 2 : 0;
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        const int n = kv->n;
        if (!kv->attn_last || !kv->aux || n == 0) continue;
        if ((size_t)n * sizeof(slot_ref) > *cap) {
            slot_ref *o = lt_realloc(*buf, (size_t)n * sizeof *o);
            if (!o) return;
            *buf = o;
            *cap = (size_t)n * sizeof *o;
        }
        slot_ref *order = *buf;
        bool sorted = true;
        for (int i = 0; i < n; i++) {
            order[i] = (slot_ref){kv->pos[i], i};
            if (i > 0 && kv->pos[i] < kv->pos[i - 1]) sorted = false;
        }
        if (!sorted) qsort(order, (size_t)n, sizeof *order, cmp_slot_pos);
        /* 1-D max pooling over the positions within `half` of each slot
         * (at most pool_kernel slots, positions being distinct) */
        const slot_ref *o = order;
        for (int r = 0, lo = 0; r < n; r++) {
            const int32_t pr = o[r].pos;
            while (o[lo].pos < pr - half) lo++;
            float m = 0.0f;
            for (int j = lo; j < n && o[j].pos <= pr + half; j++)
                if (kv->attn_last[o[j].idx] > m) m = kv->attn_last[o[j].idx];
            kv->aux[(size_t)o[r].idx * kv->aux_width] = m; /* the latest question's votes replace older ones */
        }
    }
}

static void observe(kv_policy *p, const policy_view *v) {
    snap_state *ss = state_of(p);
    if (ss) policy_snap_votes(v, p->params.pool_kernel, &ss->rank, &ss->rank_cap);
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
    lt_free(ss);
    p->state = NULL;
}

static int probe(const kv_policy *p) {
    return p->params.snap_votes == LETHE_SNAP_PROBE ? p->params.obs_window : 0;
}

int policy_snap_stats_from(const kv_policy *p, int n) {
    int w = p->params.obs_window;
    return w > 0 && n > w ? n - w : 0;
}

/* PyramidKV: the sequence's whole pages shared out by layer, weights
 * falling linearly from (1 + d) at the first layer to (1 - d) at the last,
 * d = (R - 1) / (R + 1) so that their ratio is R; largest remainders get
 * the pages left over, and every stream at least one page. */
static lethe_status pyramid_budgets(kv_policy *p, const policy_view *v, int budget, int *out) {
    const int L = v->n_layer, H = v->n_head_kv, n = L * H;
    const int P = kv_pool_page_slots(v->pool);
    const long units = (long)n * budget / P; /* whole pages within the slots of a uniform budget */
    if (budget >= v->n_ctx || L < 2 || units < n) return LETHE_OK;
    const double R = p->params.pyramid_ratio > 0.0f ? p->params.pyramid_ratio : 3.0; /* 0: the default */
    const double d = (R - 1.0) / (R + 1.0);
    long given = 0;
    double frac[64];
    int pages[64];
    if (L > 64) return LETHE_OK; /* more layers than this table: stay uniform */
    for (int l = 0; l < L; l++) {
        double w = 1.0 + d * (1.0 - 2.0 * l / (L - 1));
        double want = (double)units / n * w;
        pages[l] = (int)want;
        if (pages[l] < 1) pages[l] = 1;
        frac[l] = want - (int)want;
        given += (long)pages[l] * H;
    }
    while (given > units) { /* the floors of one page overshot: take from the largest */
        int top = 0;
        for (int l = 1; l < L; l++)
            if (pages[l] > pages[top]) top = l;
        if (pages[top] <= 1) return LETHE_OK;
        pages[top]--;
        given -= H;
    }
    while (given + H <= units) { /* a page per head of the layer with the largest remainder */
        int best = 0;
        for (int l = 1; l < L; l++)
            if (frac[l] > frac[best]) best = l;
        if (frac[best] < 0) break;
        pages[best]++;
        frac[best] = -1.0;
        given += H;
    }
    for (int s = 0; s < n; s++) out[s] = pages[s / H] * P;
    return LETHE_OK;
}

/* Retrieval heads: every stream one page (sinks and a short window), the
 * rest of the sequence's whole pages in proportion to each stream's
 * calibrated retrieval score (view->head_reach), largest remainders
 * first, none past the context. (Giving the rest only to the streams
 * above the mean score, as headwise does with its reach, measured worse:
 * docs/policies.md.) */
static lethe_status retrieval_budgets(const policy_view *v, int budget, int *out) {
    enum { MAX_STREAMS = 1024 };
    const int n = v->n_layer * v->n_head_kv;
    const int P = kv_pool_page_slots(v->pool);
    const long units = (long)n * budget / P, cap = (v->n_ctx + P - 1) / P;
    if (!v->head_reach || budget >= v->n_ctx || units <= n || n > MAX_STREAMS) return LETHE_OK;
    double w = 0.0;
    for (int s = 0; s < n; s++) w += v->head_reach[s] > 0 ? v->head_reach[s] : 0.0;
    if (!(w > 0.0)) return LETHE_OK; /* no head retrieves: uniform */
    int pages[MAX_STREAMS];
    double frac[MAX_STREAMS];
    long given = 0;
    for (int s = 0; s < n; s++) {
        double sc = v->head_reach[s] > 0 ? v->head_reach[s] : 0.0;
        double want = 1.0 + (double)(units - n) * sc / w;
        pages[s] = want > cap ? (int)cap : (int)want;
        frac[s] = want >= cap ? -1.0 : want - (int)want;
        given += pages[s];
    }
    while (given < units) { /* the pages left: largest remainders, then any stream below the cap */
        int best = -1;
        for (int s = 0; s < n; s++)
            if (pages[s] < cap && (best < 0 || frac[s] > frac[best])) best = s;
        if (best < 0) break;
        pages[best]++;
        frac[best] = -1.0;
        given++;
    }
    for (int s = 0; s < n; s++) out[s] = pages[s] * P;
    return LETHE_OK;
}

static lethe_status budgets(kv_policy *p, const policy_view *v, int budget, int *out) {
    const int n = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n; s++) out[s] = budget;
    if (p->params.snap_alloc == LETHE_SNAP_PYRAMID) return pyramid_budgets(p, v, budget, out);
    if (p->params.snap_alloc == LETHE_SNAP_RETRIEVAL) return retrieval_budgets(v, budget, out);
    return LETHE_OK;
}

static bool wants_retrieval(const kv_policy *p) { return p->params.snap_alloc == LETHE_SNAP_RETRIEVAL; }


/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    const size_t order = r->slots * sizeof(slot_ref), rank = policy_rank_bytes(r->slots);
    return sizeof(snap_state) + (order > rank ? order : rank); /* one scratch for both */
}

const kv_policy_ops policy_snapkv_ops = {
    .name = "snapkv",
    .flags = "sink window obs-window pool snap-votes snap-alloc pyramid-ratio",
    .summary = "SnapKV: prompt slots voted for by the question (last obs-window tokens, max-pooled) + recent window",
    .needs_stats = true,
    .stats_from = policy_snap_stats_from,
    .probe = probe,
    .budgets = budgets,
    .wants_retrieval = wants_retrieval,
    .may_evict = true,
    .aux_width = 1,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
