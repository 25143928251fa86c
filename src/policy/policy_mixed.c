/* mixed: important slots at full precision, the rest quantised to Q4.
 * The ZipVL (He et al. 2024) / KIVI (Liu et al. 2024) idea of mixed
 * precision by importance. Importance is the accumulated attention (as
 * H2O). The budget's bytes are split: hot_fraction of them hold slots in
 * the pool's precision (sinks, window and the heaviest hitters), the rest
 * hold demoted slots in Q4_0 pages, roughly 3.5x as many per byte; when
 * even those are full, the least important demoted slots are dropped.
 * Every cold slot is attended at every step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    float score;
    int idx;
} cand;

static int cmp_cand_asc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->score > y->score) - (x->score < y->score);
}

static lethe_status budgets(kv_policy *p, const policy_view *v, int budget, int *out) {
    const int n = v->n_layer * v->n_head_kv;
    if (budget >= v->n_ctx) { /* everything fits at full precision */
        for (int s = 0; s < n; s++) out[s] = budget;
        return LETHE_OK;
    }
    float f = p->params.hot_fraction > 0 && p->params.hot_fraction <= 1 ? p->params.hot_fraction : 0.5f;
    int hot = (int)(budget * f);
    int floor_slots = p->params.sink + policy_window_for(&p->params, hot) + 1;
    if (hot < floor_slots) hot = floor_slots;
    /* demotion moves whole pages: with less than a page to spare on either
     * side, split nothing and keep the whole budget hot (as h2o) */
    const int P = kv_pool_page_slots(v->pool);
    if (hot - floor_slots < P || budget - hot < P) hot = budget;
    if (hot > budget) hot = budget;
    for (int s = 0; s < n; s++) out[s] = hot;
    return LETHE_OK;
}

/* Demotion and cold drops work in whole pages, so cold pages are quantised
 * once, full, and never repacked: a hot tier over its target demotes a
 * page's worth of its least important unprotected slots (so up to P - 1
 * more than it must), and a full cold tier drops its least important pages
 * (mean accumulated attention, frozen at demotion). */
/* Scratch kept between plans: the dropped slots of one stream. */
typedef struct {
    cand *c;
    size_t cap;
} mixed_state;

static void destroy(kv_policy *p) {
    mixed_state *ms = p->state;
    if (ms) lt_free(ms->c);
    lt_free(ms);
    p->state = NULL;
}

/* Question mode (mixed_question): the slots are ranked by snapkv's pooled
 * votes of the question (aux), with snapkv's probe and observation window;
 * cold pages keep the accumulated attention of those votes (attn_acc,
 * which then counts only the window's and the probe's queries). */
static void observe(kv_policy *p, const policy_view *v) {
    if (!p->params.mixed_question) return;
    mixed_state *ms = p->state;
    if (!ms && !(ms = p->state = lt_calloc(1, sizeof *ms))) return;
    policy_snap_votes(v, p->params.pool_kernel, &p->rank, &p->rank_cap); /* plan's selection scratch, free here */
}

static int stats_from(const kv_policy *p, int n) { return p->params.mixed_question ? policy_snap_stats_from(p, n) : 0; }

static int probe(const kv_policy *p) {
    return p->params.mixed_question && p->params.snap_votes == LETHE_SNAP_PROBE ? p->params.obs_window : 0;
}

/* Whether a cold page holds a protected position (such a page is never
 * dropped; slots are only demoted outside protection, so this is a page
 * demoted before its positions came under it). */
static bool cold_page_protected(const policy_view *v, const kv_cold_page *pg) {
    for (int j = 0; v->n_protect > 0 && j < pg->n; j++)
        if (policy_pos_protected(v->protect, v->n_protect, pg->pos[j])) return true;
    return false;
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    const int n_streams = v->n_layer * v->n_head_kv;
    const int P = kv_pool_page_slots(v->pool);
    mixed_state *ms = p->state;
    if (!ms && !(ms = p->state = lt_calloc(1, sizeof *ms))) return policy_oom(p);
    lethe_status st = LETHE_OK;
    for (int s = 0; s < n_streams && !st; s++) {
        const kv_stream *kv = &v->streams[s];
        if (kv->n <= target[s]) continue;
        int excess = kv->n - target[s];
        int n_out = (excess + P - 1) / P * P; /* whole pages */
        int protect_lo = p->params.sink, protect_hi = policy_window_for(&p->params, target[s]);
        /* not enough unprotected slots (sinks, window, protected positions) for a page */
        if (n_out > kv->n - protect_lo - protect_hi - policy_protected_slots(v, kv, NULL)) n_out = excess;
        const float *score = p->params.mixed_question ? kv->aux : kv->attn_acc;
        if (policy_keep_top(p, v, kv, score, kv->n - n_out, protect_lo, protect_hi, out->keep[s])) return policy_oom(p);
        /* the dropped slots, least important first */
        if ((size_t)kv->n > ms->cap) {
            cand *nc = lt_realloc(ms->c, (size_t)kv->n * sizeof *nc);
            if (!nc) return policy_oom(p);
            ms->c = nc;
            ms->cap = (size_t)kv->n;
        }
        cand *c = ms->c;
        int m = 0;
        for (int i = 0; i < kv->n; i++)
            if (!out->keep[s][i]) c[m++] = (cand){score ? score[i] : 0.0f, i};
        qsort(c, (size_t)m, sizeof *c, cmp_cand_asc);
        int to_cold = m / P * P; /* whole pages; an odd remainder is dropped */
        /* make room in the cold tier by whole pages, least important first */
        const kv_cold *cold = &v->cold[s];
        if (v->cold_capacity >= 0 && cold->n_slots + to_cold > v->cold_capacity) {
            int need = cold->n_slots + to_cold - v->cold_capacity, freed = 0;
            while (freed < need) {
                int worst = -1, first = 0, worst_first = 0;
                float worst_mean = 0.0f;
                for (int pi = 0; pi < cold->n_pages; first += cold->pages[pi].n, pi++) {
                    const kv_cold_page *pg = &cold->pages[pi];
                    if (!pg->n || !out->cold_keep[s][first]) continue; /* empty or already dropped */
                    if (cold_page_protected(v, pg)) continue;          /* holds a protected position */
                    float sum = 0.0f;
                    for (int j = 0; j < pg->n; j++) sum += pg->score[j];
                    /* the page with the lowest mean score goes first */
                    if (worst < 0 || sum / pg->n < worst_mean) worst = pi, worst_mean = sum / pg->n, worst_first = first;
                }
                if (worst < 0) break;
                memset(out->cold_keep[s] + worst_first, 0, (size_t)cold->pages[worst].n);
                freed += cold->pages[worst].n;
            }
            if (freed < need) to_cold -= (need - freed + P - 1) / P * P;
            if (to_cold < 0) to_cold = 0;
        }
        for (int i = m - to_cold; i < m; i++) out->demote[s][c[i].idx] = 1;
    }
    if (st) snprintf(p->err, sizeof p->err, "out of memory");
    return st;
}

/* The state's buffers at their reach: each grows to a stream's slots; p->rank
 * (policy_keep_top's scratch) doubles as the question votes' position order. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    const size_t order = policy_snap_votes_bytes(r->slots), rank = policy_rank_bytes(r->slots);
    return sizeof(mixed_state) + (order > rank ? order : rank) + r->slots * sizeof(cand);
}

const kv_policy_ops policy_mixed_ops = {
    .name = "mixed",
    .flags = "sink window hot-fraction mixed-question obs-window pool snap-votes",
    .summary = "mixed precision: heavy hitters, sinks and window at full precision, the rest Q4_0, the least important dropped",
    .needs_stats = true,
    .stats = KV_STATS_ACC,
    .aux_width = 1,
    .observe = observe,
    .stats_from = stats_from,
    .probe = probe,
    .may_evict = true,
    .cold_tier = true,
    .cold_dtype = LT_Q4_0,
    .cold_in_budget = true,
    .budgets = budgets,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
