/* quest: every page kept, most of them cold; each step attends the pages
 * whose key bound is highest.
 * Quest: Tang et al., "Quest: Query-Aware Sparsity for Efficient
 * Long-Context LLM Inference", 2024 (also the RetrievalAttention / IceCache
 * idea of retrieving cold KV by the query). The hot tier (the budget) holds
 * the sinks and the recent window; every slot leaving it is demoted to the
 * cold tier (Q8_0 or Q4_0 pages, in RAM or in a file, with per-dimension
 * key min / max in RAM), never dropped unless a byte budget caps the tier.
 * The forward pass attends the hot tier plus the quest_pages cold pages
 * with the largest upper bound of q.k, merged exactly by log-sum-exp. */
#include <math.h>
#include <stdlib.h>

#include "policy/policy.h"

static int cmp_rank_desc(const void *a, const void *b) {
    const page_rank *x = a, *y = b;
    return (x->bound < y->bound) - (x->bound > y->bound);
}

/* The quest_pages pages (default: the budget's worth) with the largest
 * bound max_d(q_d kmin_d, q_d kmax_d), maximised over the chunk's queries of
 * the group. */
static int cold_pages(const kv_policy *p, const kv_cold *cold, const float *q, int n_tok, int n_head, int h, int G,
                      int *sel, void *scratch) {
    const int np = cold->n_pages, hd = cold->head_dim, P = cold->page_slots;
    int want = p->params.quest_pages > 0 ? p->params.quest_pages : (p->params.budget + P - 1) / P;
    if (want >= np) {
        for (int i = 0; i < np; i++) sel[i] = i;
        return np;
    }
    page_rank *r = scratch;
    for (int pg = 0; pg < np; pg++) {
        r[pg].page = pg;
        r[pg].bound = -INFINITY;
        for (int t = 0; t < n_tok; t++)
            for (int g = 0; g < G; g++) {
                float b = kv_cold_bound(cold, pg, q + ((long)t * n_head + (long)h * G + g) * hd, 1.0f);
                if (b > r[pg].bound) r[pg].bound = b;
            }
    }
    qsort(r, (size_t)np, sizeof *r, cmp_rank_desc);
    for (int i = 0; i < want; i++) sel[i] = r[i].page;
    return want;
}

/* A cold tier with a capacity (a byte budget in RAM) makes room for the
 * demoted slots by dropping its oldest pages whole (cold pages are in
 * demotion order), so the pages left are quantised once and never
 * repacked: quest then retrieves from the most recent capacity's worth of
 * evicted tokens. */
static void drop_oldest_pages(const policy_view *v, int s, int demoted, uint8_t *cold_keep) {
    const kv_cold *c = &v->cold[s];
    const int P = c->page_slots, cap_pages = v->cold_capacity / P;
    int flag = 0;
    for (int pi = 0; pi < c->n_pages && kv_cold_pages_after(c, cold_keep, demoted) > cap_pages; pi++) {
        for (int i = 0; i < c->pages[pi].n; i++) {
            int32_t pos = c->on_disk ? -1 : c->pages[pi].pos[i];
            if (pos < 0 || !policy_pos_protected(v->protect, v->n_protect, pos)) cold_keep[flag + i] = 0;
        }
        flag += c->pages[pi].n;
    }
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *st = &v->streams[s];
        if (st->n <= target[s]) continue;
        /* hot tier = sinks + newest; the oldest others go cold a whole page
         * at a time, so each cold page is quantised once, full */
        const int P = kv_pool_page_slots(v->pool), excess = st->n - target[s];
        int keep_n = st->n - (excess + P - 1) / P * P;
        /* ... unless that would eat into the sinks or the recent window
         * (beside the protected slots, which stay hot) */
        if (keep_n - policy_protected_slots(v, st, NULL) < p->params.sink + policy_window_for(&p->params, target[s]))
            keep_n = target[s];
        if (policy_keep_top(p, v, st, NULL, keep_n, p->params.sink, keep_n, out->keep[s])) return policy_oom(p);
        int demoted = 0;
        for (int i = 0; i < st->n; i++) demoted += out->demote[s][i] = !out->keep[s][i];
        if (v->cold_capacity >= 0) drop_oldest_pages(v, s, demoted, out->cold_keep[s]);
    }
    return LETHE_OK;
}

const kv_policy_ops policy_quest_ops = {
    .name = "quest",
    .flags = "sink window quest-pages cold cold-dir hot-fraction",
    .summary = "Quest: sinks + window hot, every other page cold (--kv-cold: Q8_0 / Q4 in RAM or on disk) and attended when its key bound is in the top quest_pages",
    .may_evict = true,
    .cold_tier = true,
    .cold_dtype = LT_Q8_0,
    .cold_in_budget = false,
    .cold_pages = cold_pages,
    .plan = plan,
    .state_bytes = policy_keep_top_state,
};
