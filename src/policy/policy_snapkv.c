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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    int32_t pos;
    int idx;
} slot_ref;

typedef struct {
    void *rank; /* the selection's scratch in plan, the votes' position order in observe, Ada's votes */
    size_t rank_cap;
    int *heads; /* Ada: per KV head of a layer, its run's start and the slots it keeps */
} snap_state;

static snap_state *state_of(kv_policy *p) {
    if (!p->state) p->state = lt_calloc(1, sizeof(snap_state));
    return p->state;
}

static int cmp_slot_pos(const void *a, const void *b) {
    int32_t x = ((const slot_ref *)a)->pos, y = ((const slot_ref *)b)->pos;
    return (x > y) - (x < y);
}

size_t policy_snap_votes_bytes(size_t n) { return n * sizeof(slot_ref); }

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

/* Ada-KV (Feng et al., 2024, "Ada-KV: Optimizing KV Cache Eviction by
 * Adaptive Budget Allocation"): the KV heads of a layer share its room.
 * Each head first keeps its best floor - c slots (Ada-KV's safeguard, so a
 * head whose votes are diffuse is not emptied), then the rest of the room
 * goes to the layer's best-voted slots whichever head holds them: the
 * heads' votes are attention probabilities of the same question queries,
 * so they compare, and a head that attends to a few tokens needs fewer
 * slots than one that spreads. A head's sinks and window count as best
 * (its plan keeps them). Then whole pages: the head with the least-filled
 * last page gives it up until the layer fits its room's pages, and each
 * head keeps whatever still fits its last page. */
static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static int pages_of(int n, int P) { return (n + P - 1) / P; }

static lethe_status share_targets(kv_policy *p, const policy_view *v, int c, const int *budget, const int *floor,
                                  const int *cap, int *target) {
    snap_state *ss = state_of(p);
    if (!ss) return policy_oom(p);
    const int H = v->n_head_kv, P = kv_pool_page_slots(v->pool);
    for (int l = 0; l < v->n_layer; l++) {
        const kv_stream *st = &v->streams[l * H];
        const int *b = &budget[l * H], *fl = &floor[l * H], *cp = &cap[l * H];
        int *t = &target[l * H];
        int room = 0, pages = 0, total = 0;
        bool fits = true;
        for (int h = 0; h < H; h++) {
            room += b[h];
            pages += pages_of(st[h].n + c, P);
            fits &= st[h].n + c <= cp[h];
            total += st[h].n;
        }
        if (fits && pages * P <= room) {
            for (int h = 0; h < H; h++) t[h] = st[h].n;
            continue;
        }
        /* every head's slots by vote, best first, one run per head */
        const size_t need = (size_t)total * sizeof(float);
        if (need > ss->rank_cap) {
            void *nb = lt_realloc(ss->rank, need);
            if (!nb) return policy_oom(p);
            ss->rank = nb;
            ss->rank_cap = need;
        }
        float *all = ss->rank;
        if (!ss->heads && !(ss->heads = lt_malloc((size_t)(2 * H) * sizeof *ss->heads))) return policy_oom(p);
        int *start = ss->heads, *take = start + H; /* a head's run in all[], and how many of it are kept */
        int keep = room - H * c; /* slots kept besides the chunk's */
        for (int h = 0, o = 0; h < H; h++) {
            const kv_stream *kv = &st[h];
            int32_t newest = -1;
            for (int i = 0; i < kv->n; i++)
                if (kv->pos[i] > newest) newest = kv->pos[i];
            const int32_t window = policy_window_for(&p->params, b[h]);
            start[h] = o;
            for (int i = 0; i < kv->n; i++) {
                const bool kept = kv->pos[i] < p->params.sink || kv->pos[i] > newest - window;
                all[o++] = kept ? INFINITY : kv->aux[(size_t)i * kv->aux_width];
            }
            qsort(all + start[h], (size_t)kv->n, sizeof *all, cmp_float_desc);
            const int lim = cp[h] - c < kv->n ? cp[h] - c : kv->n;
            take[h] = fl[h] - c < lim ? fl[h] - c : lim;
            if (take[h] < 0) take[h] = 0;
            keep -= take[h];
        }
        /* the rest of the room to the best remaining votes of the layer */
        for (; keep > 0; keep--) {
            int best = -1;
            for (int h = 0; h < H; h++) {
                const int lim = cp[h] - c < st[h].n ? cp[h] - c : st[h].n;
                if (take[h] >= lim) continue;
                if (best < 0 || all[start[h] + take[h]] > all[start[best] + take[best]]) best = h;
            }
            if (best < 0) break;
            take[best]++;
        }
        /* whole pages: the least-filled last page goes until the layer fits
         * (never below the chunk, nor below the floor of a head that holds it) */
        for (;;) {
            int used = 0, give = -1, give_part = 0;
            for (int h = 0; h < H; h++) used += pages_of(take[h] + c, P);
            if (used * P <= room) break;
            for (int h = 0; h < H; h++) {
                const int x = take[h] + c, part = x % P ? x % P : P;
                const int lo = fl[h] < st[h].n + c ? fl[h] : st[h].n + c;
                if (x - part < c || x - part < lo) continue;
                if (give < 0 || part < give_part) give = h, give_part = part;
            }
            if (give < 0) {
                snprintf(p->err, sizeof p->err, "layer %d: no head can give up a page for a chunk of %d", l, c);
                return LETHE_ERR_BUDGET;
            }
            take[give] -= give_part;
        }
        /* what still fits each head's last page stays */
        for (int h = 0; h < H; h++) {
            int fill = pages_of(take[h] + c, P) * P - c;
            if (fill > cp[h] - c) fill = cp[h] - c;
            t[h] = fill < st[h].n ? fill : st[h].n;
        }
    }
    return LETHE_OK;
}

static bool shares_layer(const kv_policy *p) { return p->params.snap_ada; }

static void destroy(kv_policy *p) {
    snap_state *ss = p->state;
    if (!ss) return;
    lt_free(ss->rank);
    lt_free(ss->heads);
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
    size_t order = policy_snap_votes_bytes(r->slots), rank = policy_rank_bytes(r->slots);
    const size_t ada = kp->snap_ada ? r->slots * (size_t)r->n_head_kv * sizeof(float) : 0; /* a layer's votes */
    if (ada > order) order = ada;
    return sizeof(snap_state) + (order > rank ? order : rank) /* one scratch for all three */ +
           (kp->snap_ada ? (size_t)(2 * r->n_head_kv) * sizeof(int) : 0);
}

const kv_policy_ops policy_snapkv_ops = {
    .name = "snapkv",
    .flags = "sink window obs-window pool snap-votes snap-alloc pyramid-ratio snap-ada",
    .summary = "SnapKV: prompt slots voted for by the question (last obs-window tokens, max-pooled) + recent window",
    .needs_stats = true,
    .stats_from = policy_snap_stats_from,
    .probe = probe,
    .budgets = budgets,
    .wants_retrieval = wants_retrieval,
    .shares_layer = shares_layer,
    .share_targets = share_targets,
    .may_evict = true,
    .aux_width = 1,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
