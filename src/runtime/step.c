/* A step: rows of tokens from any sequences of one context, regrouped by
 * sequence, after each sequence's policy made room, through one forward
 * pass. lethe_seq_append is the one-sequence case (streaming a long prompt
 * through in chunks when the policy may evict). */
#include <string.h>

#include "runtime/engine.h"
#include "util/alloc.h"

struct step_scratch {
    int cap_rows;
    lethe_token *probe_ids; /* a chunk followed by the question probe (cap_single) */
    lethe_token *ids;   /* rows regrouped by sequence */
    int32_t *pos;
    int *orig;          /* regrouped row -> caller's row */
    int *out_rows;      /* regrouped rows whose logits are wanted */
    int *group_start;   /* n_groups + 1 */
    int *count;
    lethe_seq **gseqs;
    attn_stats_cfg *stats;
    attn_layer *layers; /* attention scratch, one per group */
    attn_decode_job *jobs;
    bool *planned;      /* per group: its room plan is to be committed */
    float *logits;      /* regrouped logits when the order differs */
    size_t logits_cap;
    int cap_single;     /* lethe_seq_append's rows: one sequence */
    lethe_seq **one_seq;
    bool *one_want;
};

void step_scratch_free(struct step_scratch *s) {
    if (!s) return;
    lt_free(s->ids);
    lt_free(s->probe_ids);
    lt_free(s->pos);
    lt_free(s->orig);
    lt_free(s->out_rows);
    lt_free(s->group_start);
    lt_free(s->count);
    lt_free(s->gseqs);
    lt_free(s->stats);
    lt_free(s->layers);
    lt_free(s->jobs);
    lt_free(s->planned);
    lt_free(s->logits);
    lt_free(s->one_seq);
    lt_free(s->one_want);
    lt_free(s);
}

#define GROW(ptr, cap_new) do { void *p_ = lt_realloc((ptr), (size_t)(cap_new) * sizeof *(ptr)); if (!p_) return LETHE_ERR_NOMEM; (ptr) = p_; } while (0)

/* The context's step scratch, made on first use; NULL when out of memory. */
static struct step_scratch *scratch_of(lethe_ctx *c) {
    if (!c->step) c->step = lt_calloc(1, sizeof *c->step);
    return c->step;
}

static lethe_status reserve_rows(lethe_ctx *c, int n) {
    struct step_scratch *s = scratch_of(c);
    if (!s) return LETHE_ERR_NOMEM;
    if (n > s->cap_rows) {
        GROW(s->ids, n);
        GROW(s->pos, n);
        GROW(s->orig, n);
        GROW(s->out_rows, n);
        GROW(s->group_start, n + 1);
        GROW(s->count, n);
        GROW(s->gseqs, n);
        GROW(s->stats, n);
        GROW(s->layers, n);
        GROW(s->jobs, n);
        GROW(s->planned, n);
        s->cap_rows = n;
    }
    size_t act = forward_scratch_floats(c->m, n);
    if (act > c->act_floats) {
        float *p = lt_realloc(c->act, act * sizeof *p);
        if (!p) return LETHE_ERR_NOMEM;
        c->act = p;
        c->act_floats = act;
    }
    return LETHE_OK;
}

/* Pool pages that n more slots in each of s's streams take once its plan
 * (if any) is committed; *freed gets the pages the commit releases. */
static size_t pages_needed(const lethe_seq *s, int n, bool planned, size_t *freed) {
    const kv_pool *pool = s->c->kv;
    const int P = kv_pool_page_slots(pool);
    uint8_t **keep = planned ? kv_plan_keep(s->plan) : NULL;
    size_t pages = 0;
    *freed = 0;
    for (int i = 0; i < s->n_streams; i++) {
        const kv_stream *st = &s->streams[i];
        long m = st->n; /* slots after the commit */
        if (keep) {
            m = 0;
            for (int j = 0; j < st->n; j++) m += keep[i][j] != 0;
        }
        long now = (st->n + P - 1) / P, have = (m + P - 1) / P, want = (m + n + P - 1) / P;
        *freed += (size_t)(now - have);
        pages += (size_t)(want - have);
        /* a partly filled last page that is shared gets copied on write */
        if (n > 0 && m % P != 0 && kv_pool_refcount(pool, st->pages[have - 1]) > 1) pages++;
    }
    return pages;
}

/* Drops the slots a failed step appended (they are at the tails). */
static void rollback(lethe_seq *s) {
    for (int i = 0; i < s->n_streams; i++) kv_stream_truncate(s->c->kv, &s->streams[i], s->n_before[i]);
}

/* The most cold pages a stream of s may hold once its plan is committed
 * (what the attention's ranking scratch must hold), and the most a view
 * lists (a policy that picks pages lists at most its pages per step). */
static int max_cold_pages_after(const lethe_seq *s, bool planned, int *view_pages) {
    int m = 0;
    for (int i = 0; s->cold && i < s->n_streams; i++) {
        /* planned: as if every hot slot were demoted, an upper bound */
        int pages = planned ? kv_cold_pages_after(&s->cold[i], NULL, s->streams[i].n) : s->cold[i].n_pages;
        if (pages > m) m = pages;
    }
    *view_pages = m;
    if (s->stage && s->stage_pages < m) *view_pages = s->stage_pages;
    return m;
}

/* Per-slot arrays of every stream grown for its rows, so that the appends
 * inside the pass cannot fail half-way. */
static lethe_status reserve_streams(lethe_ctx *c, struct step_scratch *w, int ng) {
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        int cnt = w->group_start[g + 1] - w->group_start[g];
        for (int i = 0; i < s->n_streams; i++) {
            /* a planned stream keeps at most its target before the rows come */
            int n_after = w->planned[g] && s->target[i] < s->streams[i].n ? s->target[i] : s->streams[i].n;
            lethe_status st = kv_stream_reserve(c->kv, &s->streams[i], n_after + cnt);
            if (st) return st;
        }
    }
    return LETHE_OK;
}

/* Regroups the rows by sequence (in order of first appearance) and checks
 * each sequence's share. */
static lethe_status group_rows(lethe_ctx *c, const lethe_token *tokens, lethe_seq *const *seqs, int n, int *n_groups,
                               char *err) {
    struct step_scratch *w = c->step;
    int ng = 0;
    for (int r = 0; r < n; r++) {
        int g = 0;
        while (g < ng && w->gseqs[g] != seqs[r]) g++;
        if (g == ng) {
            w->gseqs[ng] = seqs[r];
            w->count[ng++] = 0;
        }
        w->count[g]++;
    }
    w->group_start[0] = 0;
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        int cap = lethe_seq_max_batch(s);
        if (w->count[g] > cap)
            return set_error(err, LETHE_ERR_BUDGET, "%d rows for one sequence, more than the %d it may run in one step%s",
                             w->count[g], cap, s->policy->ops->may_evict ? " (half its KV budget)" : " (its context is full)");
        w->group_start[g + 1] = w->group_start[g] + w->count[g];
        w->count[g] = 0;
    }
    for (int r = 0; r < n; r++) {
        int g = 0;
        while (w->gseqs[g] != seqs[r]) g++;
        int k = w->group_start[g] + w->count[g];
        w->ids[k] = tokens[r];
        w->pos[k] = w->count[g]++; /* the offset in its group: positions are set once room is made */
        w->orig[k] = r;
    }
    *n_groups = ng;
    return LETHE_OK;
}

lethe_status step_run(lethe_ctx *c, const lethe_token *tokens, lethe_seq *const *seqs, const bool *want, int n,
                      float *logits, char *err) {
    const hparams *hp = &c->m->hp;
    if (n <= 0 || !tokens || !seqs) return set_error(err, LETHE_ERR_ARG, "step: no tokens");
    for (int r = 0; r < n; r++) {
        if (!seqs[r] || seqs[r]->c != c) return set_error(err, LETHE_ERR_ARG, "step: row %d has no sequence of this context", r);
        if (tokens[r] < 0 || tokens[r] >= hp->n_vocab)
            return set_error(err, LETHE_ERR_ARG, "step: token id %d out of range [0, %d)", tokens[r], hp->n_vocab);
    }
    if (reserve_rows(c, n)) return set_error(err, LETHE_ERR_NOMEM, "step: out of memory");
    struct step_scratch *w = c->step;
    int ng = 0;
    lethe_status st = group_rows(c, tokens, seqs, n, &ng, err);
    if (st) return st;

    /* the rows whose logits are wanted, in regrouped order */
    int n_out = 0;
    bool identity = true;
    for (int g = 0; g < ng; g++)
        for (int k = w->group_start[g]; k < w->group_start[g + 1]; k++) {
            int r = w->orig[k];
            identity &= r == k;
            if (want ? want[r] : k + 1 == w->group_start[g + 1]) w->out_rows[n_out++] = k;
        }
    if (n_out > 0 && !logits) return set_error(err, LETHE_ERR_ARG, "step: no logits buffer");
    float *out = logits;
    if (n_out > 0 && !identity) {
        size_t need = (size_t)n_out * hp->n_vocab;
        if (need > w->logits_cap) {
            float *p = lt_realloc(w->logits, need * sizeof *p);
            if (!p) return set_error(err, LETHE_ERR_NOMEM, "step: out of memory");
            w->logits = p;
            w->logits_cap = need;
        }
        out = w->logits;
    }

    /* Every sequence's plan is checked, and everything the step needs is
     * reserved, before any sequence changes; then the plans are committed
     * and the pass runs. */
    int max_cold = 0, max_view = 0;
    size_t need_pages = 0, plan_pages = 0, freed_pages = 0;
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        int cnt = w->group_start[g + 1] - w->group_start[g];
        bool planned;
        size_t pages;
        if ((st = seq_room_plan(s, cnt, &planned, &pages))) {
            if (err != s->err) set_error(err, st, "%s", s->err);
            return st;
        }
        w->planned[g] = planned;
        plan_pages += pages;
        size_t freed;
        need_pages += pages_needed(s, cnt, planned, &freed);
        freed_pages += freed;
        int vp, mc = max_cold_pages_after(s, planned, &vp);
        if (mc > max_cold) max_cold = mc;
        if (vp > max_view) max_view = vp;
    }
    if (need_pages + plan_pages > kv_pool_pages_free(c->kv) + freed_pages)
        return set_error(err, LETHE_ERR_BUDGET, "step: %d tokens need %zu KV pages but only %zu of %zu are free", n,
                         need_pages + plan_pages, kv_pool_pages_free(c->kv) + freed_pages, kv_pool_n_pages(c->kv));
    if (attend_reserve(c, n, max_cold, max_view))
        return set_error(err, LETHE_ERR_NOMEM, "step: out of memory for attention scratch");
    if ((st = reserve_streams(c, w, ng))) return set_error(err, st, "step: out of memory for the KV streams");
    /* byte budgets: everything is reserved, so this is what the step holds */
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        if ((st = seq_bytes_check(s, w->group_start[g + 1] - w->group_start[g], w->planned[g]))) {
            if (err != s->err) set_error(err, st, "%s", s->err);
            return st;
        }
    }
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        if (w->planned[g] && (st = seq_room_commit(s))) {
            if (err != s->err) set_error(err, st, "%s", s->err);
            return st;
        }
        seq_stats_cfg(s, w->group_start[g + 1] - w->group_start[g], &w->stats[g]);
    }
    /* positions after making room (a re-indexing policy moves the next one) */
    for (int g = 0; g < ng; g++)
        for (int k = w->group_start[g]; k < w->group_start[g + 1]; k++) w->pos[k] += w->gseqs[g]->pos_next;
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        for (int i = 0; i < s->n_streams; i++) s->n_before[i] = s->streams[i].n;
    }

    attend_ctx ac = {c, ng, w->group_start, w->gseqs, w->stats, w->pos, w->layers, w->jobs};
    fwd_engine e = {c->tp, &c->ws, c->act, attend_rows, &ac};
    fwd_batch b = {w->ids, w->pos, n, w->out_rows, n_out};
    st = forward_run(c->m, &e, &b, out, err);
    if (st) {
        for (int g = 0; g < ng; g++) rollback(w->gseqs[g]);
        return st;
    }
    for (int g = 0; g < ng; g++) {
        lethe_seq *s = w->gseqs[g];
        const int rows = w->group_start[g + 1] - w->group_start[g];
        int cnt = rows;
        if (s->probe_rows > 0 && s->probe_rows < cnt) { /* question probes voted: their slots go */
            cnt -= s->probe_rows;
            for (int i = 0; i < s->n_streams; i++) kv_stream_truncate(c->kv, &s->streams[i], s->n_before[i] + cnt);
        }
        s->pos_next += cnt;
        s->n_tokens += cnt;
        seq_bytes_note(s);
        if (s->policy->ops->observe) {
            policy_view v = seq_view(s, rows > 1);
            s->policy->ops->observe(s->policy, &v);
        }
    }
    /* logits back in the caller's row order */
    if (out != logits) {
        /* count[r]: the regrouped logits row of caller row r, or -1 */
        for (int r = 0; r < n; r++) w->count[r] = -1;
        for (int i = 0; i < n_out; i++) w->count[w->orig[w->out_rows[i]]] = i;
        for (int r = 0, j = 0; r < n; r++)
            if (w->count[r] >= 0)
                memcpy(logits + (size_t)j++ * hp->n_vocab, out + (size_t)w->count[r] * hp->n_vocab,
                       (size_t)hp->n_vocab * sizeof *logits);
    }
    return LETHE_OK;
}

lethe_status lethe_ctx_decode(lethe_ctx *c, const lethe_batch *b, float *logits) {
    if (!c) return LETHE_ERR_ARG;
    c->err[0] = 0;
    if (!b) return set_error(c->err, LETHE_ERR_ARG, "lethe_ctx_decode: no batch");
    return step_run(c, b->tokens, b->seqs, b->logits, b->n, logits, c->err);
}

/* Row arrays for a one-sequence step of n rows. */
static lethe_status reserve_single(lethe_ctx *c, lethe_seq *s, int n, bool all) {
    struct step_scratch *w = scratch_of(c);
    if (!w) return LETHE_ERR_NOMEM;
    if (n > w->cap_single) {
        GROW(w->one_seq, n);
        GROW(w->one_want, n);
        GROW(w->probe_ids, n);
        w->cap_single = n;
    }
    for (int i = 0; i < n; i++) {
        w->one_seq[i] = s;
        w->one_want[i] = all;
    }
    return LETHE_OK;
}

/* Question probe rows for a prompt of n tokens streamed in steps of at most
 * max rows: the policy's observation window (at most half a step), when
 * the policy asks for it and the prompt needs more than one step; 0
 * otherwise (also when every row's logits are wanted: a probe has none). */
static int question_probe_rows(const lethe_seq *s, int n, int max, bool all) {
    const kv_policy *p = s->policy;
    if (!p->ops->probe || all || n <= max) return 0;
    int w = p->ops->probe(p);
    if (w > max / 2) w = max / 2;
    return w > 0 && w < n ? w : 0;
}

/* One sequence's tokens as steps: all at once for "full", else chunks of at
 * most half the smallest budget, so that a prompt longer than the budget
 * streams through and the policy always keeps at least half of its budget
 * from before each chunk. */
static lethe_status append(lethe_seq *s, const lethe_token *ids, int n, float *logits, bool all) {
    if (!s) return LETHE_ERR_ARG;
    s->err[0] = 0;
    if (n <= 0 || !ids) return set_error(s->err, LETHE_ERR_ARG, "append: no tokens");
    const int V = s->c->m->hp.n_vocab;
    for (int i = 0; i < n; i++) /* all of them before anything runs */
        if (ids[i] < 0 || ids[i] >= V) return set_error(s->err, LETHE_ERR_ARG, "append: token id %d out of range [0, %d)", ids[i], V);
    if (!s->policy->ops->may_evict && n > lethe_seq_max_batch(s)) {
        int cap = s->min_budget < s->n_ctx ? s->min_budget : s->n_ctx;
        return set_error(s->err, LETHE_ERR_BUDGET, "append: %d tokens after %d would exceed the %s of %d tokens", n,
                         lethe_seq_n_cached(s), cap == s->n_ctx ? "context" : "KV budget", cap);
    }
    lethe_ctx *c = s->c;
    const int max = s->policy->ops->may_evict ? lethe_seq_max_batch(s) : n;
    const int probe = question_probe_rows(s, n, max, all);
    const int chunk = max - probe; /* a probed chunk and its probe fit one step */
    if (reserve_single(c, s, max < n ? max : n, all)) return set_error(s->err, LETHE_ERR_NOMEM, "append: out of memory");
    for (int done = 0; done < n;) {
        /* the rest in one step when it fits (its own last queries vote), else a chunk and the probe */
        const bool rest = n - done <= max;
        int cnt = rest ? n - done : chunk;
        bool last = done + cnt == n;
        float *out = all ? logits + (size_t)done * V : last ? logits : NULL;
        /* one_want holds `all` for every row: all rows, or none (then NULL asks for the last row) */
        const bool *want = all || !out ? c->step->one_want : NULL;
        const lethe_token *rows = ids + done;
        if (!rest && probe > 0) {
            memcpy(c->step->probe_ids, ids + done, (size_t)cnt * sizeof *ids);
            memcpy(c->step->probe_ids + cnt, ids + n - probe, (size_t)probe * sizeof *ids);
            rows = c->step->probe_ids;
            s->probe_rows = probe;
        }
        lethe_status st = step_run(c, rows, c->step->one_seq, want, cnt + s->probe_rows, out, s->err);
        s->probe_rows = 0;
        if (st) return st;
        done += cnt;
    }
    return LETHE_OK;
}

lethe_status lethe_seq_append(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    return append(s, ids, n, logits, false);
}

lethe_status lethe_seq_append_all_logits(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    if (s && !logits) return set_error(s->err, LETHE_ERR_ARG, "append: no logits buffer");
    return append(s, ids, n, logits, true);
}

lethe_status lethe_seq_decode(lethe_seq *s, lethe_token id, float *logits) { return append(s, &id, 1, logits, false); }
