/* The running engine: a context (one KV pool, threads, scratch, accounting)
 * and the sequences in it. The data path of a step reads
 *   lethe_ctx_decode / lethe_seq_append (runtime/step.c)
 *     -> policies make room (runtime/room.c, kv/)
 *     -> forward pass over all rows (model/forward.c)
 *     -> per sequence and layer: KV append + attention over the hot pool and
 *        the cold tier (runtime/attend.c -> attn/, kv/)
 *     -> policies observe the attention statistics. */
#ifndef LETHE_ENGINE_H
#define LETHE_ENGINE_H

#include "attn/attn.h"
#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_plan.h"
#include "kv/kv_stream.h"
#include "model/forward.h"
#include "model/model.h"
#include "policy/policy.h"
#include "tensor/matmul.h"
#include "tensor/threadpool.h"
#include "util/error.h"

struct lethe_ctx {
    const lethe_model *m;
    lethe_ctx_params params;    /* resolved: no zeros left */
    threadpool *tp;
    lt_workspace ws;
    kv_pool *kv;
    attn_scratch *attn;
    float *act;                 /* forward activations for one chunk */
    size_t act_floats;
    /* cold-tier attention: one view stream per KV head listing the chosen
     * cold pages (read in place), merge buffers for FWD_CHUNK rows */
    kv_stream *views;
    float *att2, *lse, *lse2;
    size_t merge_rows;
    /* shared-prefix decode (attn_decode_shared): room for the decode jobs
     * of a chunk of rows that share nothing */
    attn_decode_job *sh_jobs;
    size_t sh_rows;
    long sh_shared;             /* decode rows (x layers) that attended a shared prefix: for tests */
    void *rank;                 /* cold page ranking scratch */
    size_t rank_bytes;
    size_t cold_bytes, cold_peak; /* cold tiers of all sequences */
    float *retrieval;           /* per stream retrieval-head scores, once measured (runtime/calibrate.c) */
    /* a step's rows regrouped by sequence */
    struct step_scratch *step;
    lethe_seq **seqs;           /* every live sequence */
    int n_seqs, cap_seqs;
    char err[LETHE_ERR_MAX];
};

struct lethe_seq {
    lethe_ctx *c;
    kv_stream *streams;         /* n_layer * n_head_kv, layer-major */
    int n_streams;
    int32_t pos_next;           /* RoPE position of the next token */
    int32_t n_tokens;           /* tokens run so far: the statistics clock */
    int n_ctx;
    kv_policy *policy;
    char *policy_name, *calib_path; /* owned copies the policy's params point at */
    float *head_reach;          /* calibration, for policies that need it */
    kv_cold *cold;              /* cold tier per stream, for policies that have one */
    int cold_capacity;          /* slots per stream's cold tier; -1 unbounded */
    size_t cold_bytes;          /* this sequence's share of c->cold_bytes */
    char *cold_kind, *cold_dir; /* owned copies of the policy's cold storage strings */
    kv_cold *stage;             /* disk cold tier: n_head_kv RAM tiers the chosen pages are read into */
    int stage_pages;            /* pages each stage tier holds (quest's pages per step) */
    size_t budget_bytes;        /* RAM bytes the sequence may hold (0: slot budget only) */
    size_t ram_peak;            /* most RAM bytes held after a step */
    kv_plan *plan;              /* the policy's masks and their executor */
    int *budget;                /* slot budget of each stream */
    int *stream_floor;          /* a policy whose layers share their room (Ada-KV, shares_layer): per stream,
                                 * the slots it keeps at least and may hold at most; NULL otherwise */
    int *stream_cap;
    int min_budget;
    int *target;                /* plan scratch */
    int *order;                 /* re-index scratch: sorted positions */
    int order_cap;
    int *n_before;              /* each stream's slots before a step (rollback) */
    bool calibrating;           /* statistics on for every query (runtime/calibrate.c) */
    int probe_rows;             /* the current step's last rows are question probes (policy question_probe):
                                 * they vote, then their slots are dropped and positions not advanced */
    /* Protected positions (seq_protect_set): n_protect disjoint ranges
     * [protect[2k], protect[2k+1]) in ascending order, merged; protect
     * points at protect_small (up to 4 ranges) or protect_heap (room for
     * cap_protect ranges), NULL before the first set. */
    int32_t *protect;
    int n_protect, cap_protect;
    int32_t *protect_heap;
    int32_t protect_small[8];
    char err[LETHE_ERR_MAX];
};

/* The KV pool's element type of a lethe_kv_type (LETHE_KV_F32.. LETHE_KV_Q4_0). */
lt_type ctx_kv_dtype(lethe_kv_type t);

/* Policy view of a sequence. */
policy_view seq_view(const lethe_seq *s, bool prefill);
/* Protected positions: the cached slots at positions inside the n ranges
 * [ranges[2k], ranges[2k+1]) are never dropped or demoted by the KV
 * policy's plans (an end of INT32_MAX: open-ended). The set replaces the
 * previous one (n = 0: none, the default); ranges may overlap and come in
 * any order (empty ones are ignored). Structured memory (src/memory) keeps
 * its open spans here; when the protected slots of a stream leave no room
 * for a chunk, the step fails with LETHE_ERR_BUDGET. Edits of positions
 * (remove, shift, truncate) do not move the ranges: their owner resets
 * them. LETHE_ERR_ARG (bad ranges) or LETHE_ERR_NOMEM: the set unchanged. */
lethe_status seq_protect_set(lethe_seq *s, const int *ranges, int n);
/* Whether position pos is protected in s; and (test and plan use) how many
 * of a stream's slots are. */
bool seq_protected(const lethe_seq *s, int32_t pos);
int seq_protected_slots(const lethe_seq *s, const kv_stream *st);
/* Every byte s holds (runtime/seq_bytes.c). */
void seq_bytes_get(const lethe_seq *s, lethe_seq_bytes *b);
/* The slot budget per stream (a multiple of the page size) and, for
 * quest, the pages attended per step and the cold slots per stream of a
 * RAM cold tier (-1: not bounded here), that keep every RAM byte of s within
 * bytes; LETHE_ERR_BUDGET when not even one page per stream fits. Called
 * before the policy is set up (ops, params and the cold storage chosen). */
lethe_status seq_budget_from_bytes(lethe_seq *s, const kv_policy_ops *ops, const lethe_kv_policy_params *kp, lt_type cold_dt,
                                   bool cold_disk, size_t bytes, int *budget, int *quest_pages, int *cold_slots);
/* The same model for a policy without a cold tier whose streams have the
 * given slot budgets (its budgets() hook): every RAM byte s can reach. */
size_t seq_bytes_model_streams(const lethe_seq *s, const kv_policy_ops *ops, const lethe_kv_policy_params *kp,
                               const int *budgets, const int *caps);
/* Ada-KV's per-stream floor and cap for the given budgets (streams of a
 * layer share the sum of their budgets): the floor a fifth of the budget in
 * whole pages, at least a page, at most the budget; the cap the layer's room
 * less the other heads' floors. */
void seq_layer_caps(const lethe_seq *s, const int *budget, int *floor, int *cap);
/* Before a step of c tokens is committed: LETHE_ERR_BUDGET (message in
 * s->err) when the RAM bytes it would leave exceed s's byte budget. */
lethe_status seq_bytes_check(lethe_seq *s, int c, bool planned);
/* After a step: the peak. */
void seq_bytes_note(lethe_seq *s);
/* The cold storage a policy's params ask for (quest's --kv-cold):
 * LETHE_ERR_ARG for an unknown name. */
lethe_status seq_cold_kind(const kv_policy_ops *ops, const char *kind, lt_type *dtype, bool *disk);
/* Keeps the context-wide count of cold-tier bytes in step with s. */
void seq_account_cold(lethe_seq *s);
/* Making room for c more tokens in every stream, in two halves: the
 * policy's plan, checked and reserved (nothing observable changes; *planned
 * says whether an eviction is due, *pages the pool pages its commit takes),
 * then the commit, which cannot fail unless re-indexing finds its pages
 * gone (the step counts them in). */
lethe_status seq_room_plan(lethe_seq *s, int c, bool *planned, size_t *pages);
lethe_status seq_room_commit(lethe_seq *s);
/* Drops every cached slot (hot and cold) at positions [p0, p1). */
lethe_status seq_remove_range(lethe_seq *s, int32_t p0, int32_t p1);
/* Moves the cached slots at positions [p0, p1) by delta, re-rotating keys. */
lethe_status seq_shift_range(lethe_seq *s, int32_t p0, int32_t p1, int32_t delta);
/* The statistics the attention hook should gather for a chunk of n rows
 * of s (cfg->enabled 0: none). */
void seq_stats_cfg(const lethe_seq *s, int n, attn_stats_cfg *cfg);

/* Attention of one group (a sequence's rows) at one layer: the
 * fwd_attend_fn of the step. */
typedef struct {
    lethe_ctx *c;
    int n_groups;
    const int *group_start;      /* n_groups + 1 row offsets */
    lethe_seq **seqs;            /* per group */
    const attn_stats_cfg *stats; /* per group */
    const int32_t *pos;          /* per row */
    attn_layer *layers;          /* scratch: one per group */
    attn_decode_job *jobs;       /* scratch: one per group */
} attend_ctx;
/* The fwd_attend_fn of a step: decode rows of all sequences share one
 * attention dispatch; prompt chunks and cold tiers go one by one. */
lethe_status attend_rows(void *user, int layer, int r0, int n, const float *q, const float *k, const float *v, float *out,
                         char *err);
/* Rows of a chunk that a disk cold tier attends at once (its share of the
 * merge buffers). */
#define ATTEND_COLD_ROWS 4
/* Grows the merge and ranking scratch for rows x (cold pages) before a
 * step; the views list at most max_view_pages pages. */
lethe_status attend_reserve(lethe_ctx *c, int rows, int max_cold_pages, int max_view_pages);

/* One forward step of rows (token, sequence); want[r] asks for row r's
 * logits (NULL: each sequence's last row), written in row order. Error
 * message in *err_out's buffer. */
lethe_status step_run(lethe_ctx *c, const lethe_token *tokens, lethe_seq *const *seqs, const bool *want, int n,
                      float *logits, char *err);
void step_scratch_free(struct step_scratch *s);

#endif
