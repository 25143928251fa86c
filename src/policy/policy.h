/* KV policies: what stays in a sequence's cache when its budget is reached.
 *
 * A policy never touches memory itself. The runtime asks it for a plan when
 * appending would take a stream past its slot budget, and carries the plan
 * out (kv_stream_compact for drops, the cold tier for demotions). Between
 * steps the policy observes the attention statistics the kernel hook
 * accumulated into each stream (attn_acc / attn_last / attn_last_hit) and
 * may keep per-slot state of its own in the stream's aux channels, which
 * move with their slots when a stream is compacted.
 *
 * Streams are the sequence's n_layer x n_head_kv page tables, layer-major.
 * One file per policy implements a kv_policy_ops table. */
#ifndef LETHE_POLICY_H
#define LETHE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "lethe.h"

typedef struct {
    int n_layer, n_head_kv, n_head, head_dim;
    const kv_pool *pool;
    kv_stream *streams;  /* n_layer * n_head_kv */
    int32_t n_past;      /* position of the next token */
    int32_t step;        /* position of the last query the statistics saw */
    bool in_prefill;     /* the statistics came from prompt queries */
    /* Policies with needs_calibration: per stream, the share of attention
     * mass each (layer, KV head) sent beyond the recent window during the
     * calibration pass (runtime/calibrate.c); with wants_retrieval, each
     * stream's retrieval-head score; NULL otherwise. */
    const float *head_reach;
    /* Policies with a cold tier: each stream's cold store, and how many
     * slots it may hold (-1: unbounded, it is outside the budget). */
    kv_cold *cold;
    int cold_capacity;
    int n_ctx;           /* the sequence's context: a budget at least this large never needs to evict */
    /* Protected positions (the runtime's seq_protect_set: structured
     * memory's open spans): n_protect disjoint ranges [protect[2k],
     * protect[2k+1]) in ascending order. A plan never drops or demotes a
     * slot inside one; the protected slots count against the target and
     * the policy's own rule (sinks, window, scores) picks among the others
     * with what is left. The runtime checks before planning that the
     * protected slots leave room. NULL / 0: none. */
    const int32_t *protect;
    int n_protect;
} policy_view;

/* Per stream: keep[i] = 0 drops slot i. The runtime sets every mask to 1
 * before calling plan, so a policy only clears what it drops. */
typedef struct {
    uint8_t **keep;
    /* Policies with a cold tier: per stream, demote[i] = 1 (with keep[i]
     * = 0) moves hot slot i to the cold tier instead of dropping it, and
     * cold_keep[j] = 0 drops cold slot j (flags in cold page order). Both
     * preset (to 0 and 1); NULL without a cold tier. */
    uint8_t **demote;
    uint8_t **cold_keep;
} policy_plan;

typedef struct kv_policy kv_policy;

/* Scratch entry for ranking cold pages (cold_pages). */
typedef struct {
    float bound;
    int page;
} page_rank;

/* The sizes a policy's state grows with: the largest stream's slots (its
 * capacity), the streams, the head dimension. */
typedef struct {
    size_t slots;
    int n_streams;
    int head_dim;
    int n_head_kv;
} policy_reach;

typedef struct {
    const char *name;
    const char *summary;           /* one line for --help */
    const char *flags;             /* the --kv-* parameters it reads besides the budget, space separated */
    bool needs_stats;              /* turn the attention statistics hook on (attn_last) */
    unsigned stats;                /* with it, the channels read beside attn_last: KV_STATS_ACC, KV_STATS_HIT */
    bool may_evict;                /* false for "full": exceeding the budget is an error */
    bool evict_ahead;              /* evict a page more than needed, so the plan (an O(n) scan) runs once a page of tokens */
    bool needs_calibration;        /* the runtime supplies view->head_reach */
    /* Optional: whether this policy (with its params) wants retrieval-head
     * scores (runtime/calibrate.c calibrate_retrieval) in view->head_reach
     * for budgets(); asked at creation when the budget is below the
     * context. NULL: no. */
    bool (*wants_retrieval)(const kv_policy *p);
    /* Cold tier (quest, mixed): demoted slots are kept quantised to
     * cold_dtype outside the pool and attended through kv_cold views. */
    bool cold_tier;
    lt_type cold_dtype;
    bool cold_in_budget;           /* true: hot + cold bytes fit the budget (mixed); false: only hot (quest) */
    /* Optional question probe (snapkv): how many of a prompt's last tokens
     * (the question) follow each chunk of a prompt that streams through in
     * several steps (0: none). Every chunk but the last then runs in one
     * step with these probe rows after it: they attend to the cache and the
     * chunk at the positions right after it, only their queries count in
     * the statistics, and their slots are dropped after the step
     * (runtime/step.c). So each eviction is decided by the question's
     * votes, not by the chunk's own tail. NULL: no probe. */
    int (*probe)(const kv_policy *p);
    int aux_width;                 /* per-slot floats of policy state (0: none) */
    /* Optional: per-stream slot budgets whose sum is at most
     * n_streams * budget (each a multiple of the page size unless it equals
     * budget). NULL: every stream gets `budget`. */
    lethe_status (*budgets)(kv_policy *p, const policy_view *v, int budget, int *out);
    /* Optional (head-adaptive budgets, Ada-KV): whether the KV heads of
     * each layer share the layer's room (the sum of their budgets) instead
     * of keeping one budget each; asked at creation. */
    bool (*shares_layer)(const kv_policy *p);
    /* With shares_layer, before a chunk of c tokens: target[s] for every
     * stream, so that the streams of a layer, once the chunk is in, hold
     * at most the layer's room in whole pages (sum over its streams of
     * ceil((min(target, n) + c) / P) * P <= the sum of budget[]), each
     * stream at most cap[s] slots and at least floor[s] unless it holds
     * fewer; target[s] >= n where nothing needs to go. The runtime checks
     * these bounds. */
    lethe_status (*share_targets)(kv_policy *p, const policy_view *v, int c, const int *budget, const int *floor,
                                  const int *cap, int *target);
    /* Optional: of a chunk of n queries, the first whose attention counts in
     * the statistics (an observation window, SnapKV); NULL: all of them. */
    int (*stats_from)(const kv_policy *p, int n);
    /* Optional (cold tier): which cold pages of one stream the queries
     * attend. q holds n_tok tokens x n_head heads x head_dim; the stream is
     * KV head h of group size G. Writes page indices into sel (room for
     * cold->n_pages) using rank (cold->n_pages page_rank entries of
     * scratch) and returns their count. NULL: every page. */
    int (*cold_pages)(const kv_policy *p, const kv_cold *cold, const float *q, int n_tok, int n_head, int h, int G,
                      int *sel, void *rank);
    /* Called after every forward step (prompt chunk or decode token). */
    void (*observe)(kv_policy *p, const policy_view *v);
    /* Make every stream s hold at most target[s] slots by clearing keep
     * bits. Return LETHE_OK, or an error with a message in p->err. */
    lethe_status (*plan)(kv_policy *p, const policy_view *v, const int *target, policy_plan *out);
    void (*destroy)(kv_policy *p);
    /* Optional: the bytes its private state (p->state and what it points
     * at) can reach with streams of at most r->slots slots, for the
     * sequence's byte accounting. Counted at the reach, not at the current
     * size, so no plan can grow past what the step's check saw. NULL: no
     * private state. */
    size_t (*state_bytes)(const lethe_kv_policy_params *kp, const policy_reach *r);
} kv_policy_ops;

/* Parameters, set from CLI flags or the public API; each policy reads
 * those it uses. */
typedef lethe_kv_policy_params policy_params;

struct kv_policy {
    const kv_policy_ops *ops;
    policy_params params;
    void *state;
    void *rank;         /* policy_keep_top's scratch, kept between plans */
    size_t rank_cap;
    char err[256];
};

policy_params policy_default_params(void);
/* Looks a policy up by name ("full", "window", "h2o", ...). NULL if unknown. */
const kv_policy_ops *policy_find(const char *name);
/* All policies, NULL-terminated, for --help and sweeps. */
const kv_policy_ops *const *policy_list(void);

/* Bytes of n entries of the selection scratch of policy_keep_top(_in). */
size_t policy_rank_bytes(size_t n);
/* state_bytes of a policy whose only state is p->rank (policy_keep_top's
 * scratch; a policy with more adds policy_rank_bytes itself). */
size_t policy_keep_top_state(const policy_params *kp, const policy_reach *r);
/* Every byte of policy state a sequence counts, at its reach (0 for a
 * policy without state_bytes). */
size_t policy_state_reach(const kv_policy_ops *ops, const policy_params *kp, const policy_reach *r);

kv_policy *policy_create(const kv_policy_ops *ops, const policy_params *params);
void policy_free(kv_policy *p);

/* Helpers for plan(): the recent window a policy keeps for a budget, and
 * "drop the lowest-scoring slots" with sinks and window protected. */
int policy_window_for(const policy_params *pp, int target);
/* Whether pos lies in one of the n sorted disjoint ranges [r[2k], r[2k+1])
 * (binary search). */
bool policy_pos_protected(const int32_t *ranges, int n, int32_t pos);
/* Slots of stream s inside v's protected ranges (and kept, when keep is
 * non-NULL). 0 without protection. */
int policy_protected_slots(const policy_view *v, const kv_stream *s, const uint8_t *keep);
/* Clears keep bits of the slots with the lowest score[i] until at most
 * target remain, never dropping the `sink` lowest positions or the
 * `window` highest positions (unless target leaves no room for them).
 * With v's protected ranges (v may be NULL: none): protected slots are
 * never cleared and take their share of target first; sinks, window and
 * scores then apply to the unprotected slots with target minus the
 * protected ones (at least 0: when the protected slots alone exceed it,
 * every unprotected slot goes and more than target stay, for the caller's
 * budget check to refuse). Without protection exactly the plain selection.
 * Scratch is the policy's own (p->rank), grown on demand and kept, so a
 * plan allocates nothing once warm. LETHE_ERR_NOMEM (keep unchanged, message
 * in p->err) when it cannot grow. */
lethe_status policy_keep_top(kv_policy *p, const policy_view *v, const kv_stream *s, const float *score, int target,
                             int sink, int window, uint8_t *keep);
/* SnapKV's votes (policy_snapkv.c), shared with mixed's question mode:
 * after a prompt step (v->in_prefill), each slot's aux[0] gets the maximum
 * of attn_last over the slots within pool_kernel / 2 positions of it
 * (1-D max pooling). buf / cap (bytes): the caller's scratch, grown on
 * demand (a failed growth leaves the votes of that stream as they were).
 * policy_snap_stats_from: the observation window's first query of a chunk
 * of n (the last obs_window). */
void policy_snap_votes(const policy_view *v, int pool_kernel, void **buf, size_t *cap);
/* The scratch policy_snap_votes needs for a stream of n slots. */
size_t policy_snap_votes_bytes(size_t n);
int policy_snap_stats_from(const kv_policy *p, int n);
/* Sets p->err to "out of memory" and returns LETHE_ERR_NOMEM. */
lethe_status policy_oom(kv_policy *p);
/* The same with a caller-owned scratch buffer (*buf of *cap bytes, grown
 * with lt_realloc, freed by the caller): policy_keep_top_in honours v's
 * protection, policy_keep_top_buf is the plain selection (no protection). */
lethe_status policy_keep_top_in(const policy_view *v, const kv_stream *s, const float *score, int target, int sink,
                                int window, uint8_t *keep, void **buf, size_t *cap);
lethe_status policy_keep_top_buf(const kv_stream *s, const float *score, int target, int sink, int window, uint8_t *keep,
                                 void **buf, size_t *cap);

#endif
