/* knorm: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", 2024.
 *
 * Keys with a low L2 norm tend to draw high attention, so keep the keys
 * with the LOWEST norm; no attention statistics needed. Each key's norm is
 * computed once, after the step that cached it, and kept in aux
 * (aux[0] = norm, aux[1] = 1 once computed). Sinks and window protected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    void *rank;
    size_t rank_cap;
    float *score;
    int score_cap;
    float *row; /* one key in F32 */
    int row_cap;
} knorm_state;

static knorm_state *state_of(kv_policy *p, int head_dim) {
    if (!p->state && !(p->state = lt_calloc(1, sizeof(knorm_state)))) return NULL;
    knorm_state *ks = p->state;
    if (head_dim > ks->row_cap) {
        float *r = lt_realloc(ks->row, (size_t)head_dim * sizeof *r);
        if (!r) return NULL;
        ks->row = r;
        ks->row_cap = head_dim;
    }
    return ks;
}

/* Computes the norms of the slots that have none yet: O(new slots x head_dim) plus an O(n) scan. */
static void fill_norms(knorm_state *ks, const kv_pool *pool, const kv_stream *kv) {
    const int d = kv_pool_head_dim(pool);
    for (int i = 0; i < kv->n; i++) {
        float *a = kv->aux + (size_t)i * kv->aux_width;
        if (a[1] != 0.0f) continue;
        kv_load_row(pool, kv_stream_k(pool, kv, i), ks->row);
        double ss = 0.0;
        for (int e = 0; e < d; e++) ss += (double)ks->row[e] * ks->row[e];
        a[0] = (float)sqrt(ss);
        a[1] = 1.0f;
    }
}

static void observe(kv_policy *p, const policy_view *v) {
    knorm_state *ks = state_of(p, kv_pool_head_dim(v->pool));
    if (!ks) return; /* plan computes what is missing */
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++)
        if (v->streams[s].aux) fill_norms(ks, v->pool, &v->streams[s]);
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    knorm_state *ks = state_of(p, kv_pool_head_dim(v->pool));
    if (!ks) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        const int n = kv->n;
        if (n <= target[s]) continue;
        const float *score = NULL;
        if (kv->aux) {
            fill_norms(ks, v->pool, kv);
            if (n > ks->score_cap) {
                float *sc = lt_realloc(ks->score, (size_t)n * sizeof *sc);
                if (!sc) {
                    snprintf(p->err, sizeof p->err, "out of memory");
                    return LETHE_ERR_NOMEM;
                }
                ks->score = sc;
                ks->score_cap = n;
            }
            for (int i = 0; i < n; i++) ks->score[i] = -kv->aux[(size_t)i * kv->aux_width]; /* low norm keeps */
            score = ks->score;
        }
        if (policy_keep_top_in(v, kv, score, target[s], p->params.sink, policy_window_for(&p->params, target[s]), out->keep[s],
                            &ks->rank, &ks->rank_cap)) return policy_oom(p);
    }
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    knorm_state *ks = p->state;
    if (!ks) return;
    lt_free(ks->rank);
    lt_free(ks->score);
    lt_free(ks->row);
    lt_free(ks);
    p->state = NULL;
}

/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    return sizeof(knorm_state) + policy_rank_bytes(r->slots) + r->slots * sizeof(float) + (size_t)r->head_dim * sizeof(float);
}

const kv_policy_ops policy_knorm_ops = {
    .name = "knorm",
    .flags = "sink window",
    .summary = "K-norm: keep the keys with the lowest L2 norm (no attention statistics)",
    .may_evict = true,
    .aux_width = 2,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
