/* tova: Oren et al., "Transformers are Multi-State RNNs" (TOVA: Token Omission Via Attention), 2024.
 *
 * Drop the slots that the latest step attended least, the attention
 * averaged over all heads of the layer (attn_last averaged over the layer's
 * KV streams), so every stream of a layer keeps the same positions. The
 * sinks and the recent window stay protected (--kv-sink 0 --kv-window 0 is
 * plain TOVA, up to the newest slot). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    void *rank;
    size_t rank_cap;
    float *score;
    int score_cap;
} tova_state;

/* Whether the streams of a layer hold the same positions slot by slot. */
static bool same_slots(const kv_stream *st, int n_head_kv) {
    for (int h = 1; h < n_head_kv; h++) {
        if (st[h].n != st[0].n) return false;
        if (st[0].n > 0 && memcmp(st[h].pos, st[0].pos, (size_t)st[0].n * sizeof *st[0].pos) != 0) return false;
    }
    return true;
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    if (!p->state && !(p->state = lt_calloc(1, sizeof(tova_state)))) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    tova_state *ts = p->state;
    const int H = v->n_head_kv;
    for (int l = 0; l < v->n_layer; l++) {
        const kv_stream *st = &v->streams[l * H];
        const int *tg = &target[l * H];
        uint8_t **keep = &out->keep[l * H];
        bool over = false;
        int tmin = tg[0];
        for (int h = 0; h < H; h++) {
            over |= st[h].n > tg[h];
            if (tg[h] < tmin) tmin = tg[h];
        }
        if (!over) continue;
        const int n = st[0].n;
        if (same_slots(st, H) && st[0].attn_last) {
            if (n > ts->score_cap) {
                float *sc = lt_realloc(ts->score, (size_t)n * sizeof *sc);
                if (!sc) {
                    snprintf(p->err, sizeof p->err, "out of memory");
                    return LETHE_ERR_NOMEM;
                }
                ts->score = sc;
                ts->score_cap = n;
            }
            for (int i = 0; i < n; i++) {
                float a = 0.0f;
                for (int h = 0; h < H; h++) a += st[h].attn_last[i];
                ts->score[i] = a / (float)H;
            }
            if (policy_keep_top_in(v, &st[0], ts->score, tmin, p->params.sink, policy_window_for(&p->params, tmin), keep[0],
                                &ts->rank, &ts->rank_cap)) return policy_oom(p);
            for (int h = 1; h < H; h++) memcpy(keep[h], keep[0], (size_t)n);
        } else {
            /* streams that went their own ways (per-head budgets): each by its own latest attention */
            for (int h = 0; h < H; h++)
                if (st[h].n > tg[h])
                    if (policy_keep_top_in(v, &st[h], st[h].attn_last, tg[h], p->params.sink,
                                        policy_window_for(&p->params, tg[h]), keep[h], &ts->rank, &ts->rank_cap)) return policy_oom(p);
        }
    }
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    tova_state *ts = p->state;
    if (!ts) return;
    lt_free(ts->rank);
    lt_free(ts->score);
    lt_free(ts);
    p->state = NULL;
}

/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    return sizeof(tova_state) + policy_rank_bytes(r->slots) + r->slots * sizeof(float);
}

const kv_policy_ops policy_tova_ops = {
    .name = "tova",
    .flags = "sink window",
    .summary = "TOVA: drop the slots the latest step attended least (averaged over the layer's heads)",
    .needs_stats = true,
    .may_evict = true,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
