/* h2o: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models", 2023.
 *
 * Score = attention mass a slot has accumulated over all steps (attn_acc):
 * keep the sinks, the recent window and the heaviest hitters. With
 * params.keyformer the score is Keyformer's (Adnan et al., "Keyformer: KV
 * Cache Reduction through Key Tokens Selection for Efficient Generative
 * Inference", 2024): every step adds a Gumbel-regularised softmax of that
 * step's attention, softmax((log attn_last + g) / tau) over the stream's
 * slots, with g ~ Gumbel(0, 1) from a seeded generator, accumulated in aux. */
#include <math.h>
#include <stdlib.h>

#include "policy/policy.h"
#include "util/alloc.h"

typedef struct {
    void *rank;     /* policy_keep_top_in scratch */
    size_t rank_cap;
    float *z;       /* keyformer: per-slot logits of one stream */
    int z_cap;
    uint64_t rng;
} h2o_state;

static h2o_state *state_of(kv_policy *p) {
    if (!p->state) {
        h2o_state *st = lt_calloc(1, sizeof *st);
        if (!st) return NULL;
        st->rng = p->params.seed ^ 0x5851f42d4c957f2dull;
        p->state = st;
    }
    return p->state;
}

/* splitmix64 */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Gumbel(0, 1): -log(-log(u)), u uniform in (0, 1) */
static float gumbel(uint64_t *s) {
    double u = ((double)(next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    return (float)-log(-log(u));
}

/* Keyformer: adds this step's Gumbel-softmax score of every slot to aux. */
static void observe(kv_policy *p, const policy_view *v) {
    if (!p->params.keyformer) return;
    h2o_state *st = state_of(p);
    if (!st) return; /* out of memory: this step adds nothing */
    const float tau = p->params.keyformer_tau > 0.0f ? p->params.keyformer_tau : 1.0f;
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        if (!kv->attn_last || !kv->aux || kv->n == 0) continue;
        if (kv->n > st->z_cap) {
            float *z = lt_realloc(st->z, (size_t)kv->n * sizeof *z);
            if (!z) return;
            st->z = z;
            st->z_cap = kv->n;
        }
        float mx = -INFINITY;
        for (int i = 0; i < kv->n; i++) {
            float a = kv->attn_last[i];
            /* a slot no query saw gets nothing (but draws its noise anyway, for reproducibility) */
            float g = gumbel(&st->rng);
            st->z[i] = a > 0.0f ? (logf(a) + g) / tau : -INFINITY;
            if (st->z[i] > mx) mx = st->z[i];
        }
        if (mx == -INFINITY) continue;
        double sum = 0.0;
        for (int i = 0; i < kv->n; i++) {
            st->z[i] = st->z[i] == -INFINITY ? 0.0f : expf(st->z[i] - mx);
            sum += st->z[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < kv->n; i++) kv->aux[(size_t)i * kv->aux_width] += st->z[i] * inv;
    }
}

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    h2o_state *st = state_of(p);
    void *tmp = NULL;
    size_t tmp_cap = 0;
    const int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *kv = &v->streams[s];
        if (kv->n <= target[s]) continue;
        /* aux is one float per slot, so it doubles as the score array */
        const float *score = p->params.keyformer ? kv->aux : kv->attn_acc;
        if (policy_keep_top_in(v, kv, score, target[s], p->params.sink, policy_window_for(&p->params, target[s]), out->keep[s],
                            st ? &st->rank : &tmp, st ? &st->rank_cap : &tmp_cap)) return policy_oom(p);
    }
    lt_free(tmp);
    return LETHE_OK;
}

static void destroy(kv_policy *p) {
    h2o_state *st = p->state;
    if (!st) return;
    lt_free(st->rank);
    lt_free(st->z);
    lt_free(st);
    p->state = NULL;
}

/* The state's buffers at their reach: each grows to a stream's slots. */
static size_t state_bytes(const policy_params *kp, const policy_reach *r) {
    return sizeof(h2o_state) + policy_rank_bytes(r->slots) + (kp->keyformer ? r->slots * sizeof(float) : 0);
}

const kv_policy_ops policy_h2o_ops = {
    .name = "h2o",
    .flags = "sink window keyformer",
    .summary = "H2O: sinks + recent window + heavy hitters by accumulated attention (--kv-keyformer: Keyformer score)",
    .needs_stats = true,
    .stats = KV_STATS_ACC,
    .may_evict = true,
    .aux_width = 1,
    .observe = observe,
    .plan = plan,
    .destroy = destroy,
    .state_bytes = state_bytes,
};
