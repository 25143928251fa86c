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

typedef struct {
    float score;
    int stream_idx; /* >= 0: hot slot index being demoted; -1 - j: cold slot j */
} cand;

static int cmp_cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

static lethe_status budgets(kv_policy *p, const policy_view *v, int budget, int *out) {
    const int n = v->n_layer * v->n_head_kv;
    if (budget >= v->n_ctx) { /* everything fits at full precision */
        for (int s = 0; s < n; s++) out[s] = budget;
        return LETHE_OK;
    }
    const int P = kv_pool_page_slots(v->pool);
    float f = p->params.hot_fraction > 0 && p->params.hot_fraction <= 1 ? p->params.hot_fraction : 0.5f;
    int hot = (int)(budget * f);
    int floor_slots = p->params.sink + policy_window_for(&p->params, hot) + 1;
    if (hot < floor_slots) hot = floor_slots;
    if (hot > budget) hot = budget;
    (void)P;
    for (int s = 0; s < n; s++) out[s] = hot;
    return LETHE_OK;
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    const int n_streams = v->n_layer * v->n_head_kv;
    cand *c = NULL;
    size_t c_cap = 0;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *st = &v->streams[s];
        if (st->n <= target[s]) continue;
        policy_keep_top(st, st->attn_acc, target[s], p->params.sink, policy_window_for(&p->params, target[s]), out->keep[s]);
        kv_cold *cold = &v->cold[s];
        /* the demoted and the already cold compete for the cold capacity */
        size_t need = (size_t)st->n + (size_t)cold->n_slots;
        if (need > c_cap) {
            cand *nc = realloc(c, need * sizeof *nc);
            if (!nc) {
                free(c);
                snprintf(p->err, sizeof p->err, "out of memory");
                return LETHE_ERR_NOMEM;
            }
            c = nc;
            c_cap = need;
        }
        int n = 0;
        for (int i = 0; i < st->n; i++)
            if (!out->keep[s][i]) c[n++] = (cand){st->attn_acc ? st->attn_acc[i] : 0.0f, i};
        int j = 0;
        for (int pi = 0; pi < cold->n_pages; pi++)
            for (int k = 0; k < cold->pages[pi].n; k++, j++) c[n++] = (cand){cold->pages[pi].score[k], -1 - j};
        int cap = v->cold_capacity < 0 ? n : v->cold_capacity;
        if (n > cap) qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
        for (int i = 0; i < n; i++) {
            bool keep_it = i < cap;
            if (c[i].stream_idx >= 0) out->demote[s][c[i].stream_idx] = keep_it;
            else out->cold_keep[s][-1 - c[i].stream_idx] = keep_it;
        }
    }
    free(c);
    return LETHE_OK;
}

const kv_policy_ops policy_mixed_ops = {
    .name = "mixed",
    .summary = "mixed precision: heavy hitters, sinks and window at full precision, the rest Q4_0, the least important dropped",
    .needs_stats = true,
    .may_evict = true,
    .cold_tier = true,
    .cold_dtype = LT_Q4_0,
    .cold_in_budget = true,
    .cold_select = false,
    .budgets = budgets,
    .plan = plan,
};
