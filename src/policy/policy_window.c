/* window: attention sinks + the most recent tokens.
 * StreamingLLM: Xiao et al., "Efficient Streaming Language Models with
 * Attention Sinks", 2023. Keeps the first `sink` positions and the newest
 * slots; needs no attention statistics. */
#include "policy/policy.h"

static lethe_status plan(kv_policy *p, const policy_view *v, const int *target, policy_plan *out) {
    int n_streams = v->n_layer * v->n_head_kv;
    for (int s = 0; s < n_streams; s++) {
        const kv_stream *st = &v->streams[s];
        if (st->n <= target[s]) continue;
        /* score = position: the oldest unprotected slots go first */
        if (policy_keep_top(p, v, st, NULL, target[s], p->params.sink, target[s], out->keep[s])) return policy_oom(p);
    }
    return LETHE_OK;
}

const kv_policy_ops policy_window_ops = {
    .name = "window",
    .flags = "sink reindex",
    .summary = "StreamingLLM: attention sinks + most recent tokens",
    .may_evict = true,
    .evict_ahead = true,
    .plan = plan,
    .state_bytes = policy_keep_top_state,
};
