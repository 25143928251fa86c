/* Making room: before a chunk runs, the sequence's policy plans which slots
 * leave each stream that would pass its budget (kv/kv_plan.h), the plan is
 * checked and its storage reserved, and only then carried out: cold-tier
 * drops, demotions, hot drops. A step checks every sequence's plan before
 * it commits any (runtime/step.c). Also here: editing positions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "runtime/engine.h"
#include "util/alloc.h"

/* Slots a re-indexing window frees beyond what a chunk needs, so that the
 * re-rotation of the window's keys happens once every `slack` tokens, not
 * every token. */
static int reindex_slack(const lethe_seq *s) {
    int w = s->min_budget - s->policy->params.sink;
    return w / 8 > 1 ? w / 8 : 1;
}

static int cmp_int(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

/* StreamingLLM's positions within the cache: after an eviction the cached
 * tokens are renumbered 0..n-1 in position order (one shift per run of
 * consecutive positions: the sinks stay, the window moves down), and the
 * next token goes to n. Every stream keeps the same positions (window). */
static lethe_status reindex(lethe_seq *s) {
    const kv_stream *st = &s->streams[0];
    const int n = st->n;
    int *p = s->order; /* grown to the budget when room was planned */
    for (int j = 0; j < n; j++) p[j] = st->pos[j];
    qsort(p, (size_t)n, sizeof *p, cmp_int);
    int32_t next = 0;
    for (int i = 0; i < n;) {
        int j = i + 1; /* the run of consecutive positions p[i] .. p[j - 1] */
        while (j < n && p[j] == p[j - 1] + 1) j++;
        int32_t a = p[i], len = j - i;
        if (a != next) {
            lethe_status e = seq_shift_range(s, a, a + len, next - a);
            if (e) return e;
        }
        next += len;
        i = j;
    }
    s->pos_next = next;
    return LETHE_OK;
}

/* Pool pages of s shared with another sequence: a bound on what the copy on
 * write of a re-index can take. */
static size_t shared_pages(const lethe_seq *s) {
    const kv_pool *pool = s->c->kv;
    const int P = kv_pool_page_slots(pool);
    size_t n = 0;
    for (int i = 0; i < s->n_streams; i++)
        for (int pi = 0; pi < (s->streams[i].n + P - 1) / P; pi++) n += kv_pool_refcount(pool, s->streams[i].pages[pi]) > 1;
    return n;
}

/* Whatever the policy planned, protected slots are neither dropped nor
 * demoted (the policies' selection already leaves them; this makes it so
 * for any plan, and kv_plan_check refuses one that then keeps too many). */
static void keep_protected(lethe_seq *s, policy_plan *plan) {
    for (int i = 0; i < s->n_streams; i++) {
        const kv_stream *st = &s->streams[i];
        for (int j = 0; j < st->n; j++)
            if (!plan->keep[i][j] && seq_protected(s, st->pos[j])) {
                plan->keep[i][j] = 1;
                if (plan->demote) plan->demote[i][j] = 0;
            }
    }
}

/* A policy whose layers share their room (Ada-KV) sets every stream's
 * target itself; checked here: the layer's streams in its room's pages
 * once the chunk is in, each within its cap. */
static lethe_status share_room(lethe_seq *s, int c, bool *over) {
    const kv_policy *p = s->policy;
    policy_view v = seq_view(s, false);
    lethe_status st = p->ops->share_targets(s->policy, &v, c, s->budget, s->stream_floor, s->stream_cap, s->target);
    if (st) return set_error(s->err, st, "policy %s: %s", p->ops->name, p->err);
    const int H = s->c->m->hp.n_head_kv, P = kv_pool_page_slots(s->c->kv);
    for (int l = 0; l < s->n_streams / H; l++) {
        int room = 0, used = 0;
        for (int i = l * H; i < (l + 1) * H; i++) {
            const int n = s->streams[i].n;
            if (s->target[i] > n) s->target[i] = n;
            if (s->target[i] < 0 || s->target[i] + c > s->stream_cap[i])
                return set_error(s->err, LETHE_ERR_BUDGET, "policy %s: stream %d's target %d with %d new slots is outside [0, %d]",
                                 p->ops->name, i, s->target[i], c, s->stream_cap[i]);
            room += s->budget[i];
            used += (s->target[i] + c + P - 1) / P;
            *over |= s->target[i] < n;
        }
        if (used * P > room)
            return set_error(s->err, LETHE_ERR_BUDGET, "policy %s: layer %d's KV heads would hold %d slots of pages, over its %d",
                             p->ops->name, l, used * P, room);
    }
    return LETHE_OK;
}

/* Each stream's target from its own budget: room for the chunk, `slack`
 * below it (an eviction ahead, at most a quarter of the budget), never
 * below its protected slots. */
static lethe_status budget_room(lethe_seq *s, int c, int slack, bool *over) {
    for (int i = 0; i < s->n_streams; i++) {
        int n = s->streams[i].n;
        int ahead = slack < s->budget[i] / 4 ? slack : s->budget[i] / 4;
        s->target[i] = n + c > s->budget[i] ? s->budget[i] - c - ahead : n;
        if (s->target[i] < 0) s->target[i] = 0;
        if (s->n_protect > 0 && s->target[i] < n) {
            /* protected slots stay: they must leave room for the chunk, and
             * an eviction ahead never goes below them */
            const int np = seq_protected_slots(s, &s->streams[i]);
            const int H = s->c->m->hp.n_head_kv;
            if (np + c > s->budget[i])
                return set_error(s->err, LETHE_ERR_BUDGET,
                                 "stream %d (layer %d, KV head %d) holds %d protected slots (open structured-memory spans), "
                                 "and %d new token%s would take it past its KV budget of %d slots: the policy may not evict "
                                 "protected slots (close or prune spans, or raise the budget)",
                                 i, i / H, i % H, np, c, c == 1 ? "" : "s", s->budget[i]);
            if (s->target[i] < np) s->target[i] = np;
        }
        *over |= s->target[i] < n;
    }
    return LETHE_OK;
}

lethe_status seq_room_plan(lethe_seq *s, int c, bool *planned, size_t *pages) {
    *planned = false;
    *pages = 0;
    bool over = false;
    const bool re = s->policy->params.reindex;
    /* how far below the budget an eviction goes: a plan costs a scan of the
     * stream, so a policy that may evict ahead does it once a page */
    const int slack = re ? reindex_slack(s) : s->policy->ops->evict_ahead ? kv_pool_page_slots(s->c->kv) : 0;
    /* layers that share their room do so unless spans are protected (then
     * every stream keeps to its own budget, which the protection rules know) */
    lethe_status st = s->stream_cap && s->n_protect == 0 ? share_room(s, c, &over) : budget_room(s, c, slack, &over);
    if (st) return st;
    if (!over) return LETHE_OK;
    st = kv_plan_prepare(s->plan, s->streams, s->cold);
    if (st) return set_error(s->err, st, "out of memory for the KV plan");
    if (re && s->order_cap < s->streams[0].n) {
        int *o = lt_realloc(s->order, (size_t)s->streams[0].n * sizeof *o);
        if (!o) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        s->order = o;
        s->order_cap = s->streams[0].n;
    }
    policy_view v = seq_view(s, false);
    policy_plan plan = {kv_plan_keep(s->plan), kv_plan_demote(s->plan), kv_plan_cold_keep(s->plan)};
    st = s->policy->ops->plan(s->policy, &v, s->target, &plan);
    if (st) return set_error(s->err, st, "policy %s: %s", s->policy->ops->name, s->policy->err);
    if (s->n_protect > 0) keep_protected(s, &plan);
    char err[LETHE_ERR_MAX];
    st = kv_plan_check(s->plan, s->c->kv, s->streams, s->cold, s->target, s->cold_capacity, pages, err);
    if (st == LETHE_ERR_NOMEM && s->cold) /* a disk tier's reserve fails with its errno set */
        for (int i = 0; i < s->n_streams; i++)
            if (s->cold[i].io_errno) {
                int e = s->cold[i].io_errno;
                s->cold[i].io_errno = 0;
                return set_error(s->err, LETHE_ERR_IO, "cannot grow the cold tier's file: %s", strerror(e));
            }
    if (st) return set_error(s->err, st, "policy %s: %.400s", s->policy->ops->name, err);
    if (re) *pages += shared_pages(s);
    *planned = true;
    return LETHE_OK;
}

lethe_status seq_room_commit(lethe_seq *s) {
    kv_plan_commit(s->plan, s->c->kv, s->streams, s->cold);
    seq_account_cold(s);
    for (int i = 0; s->cold && i < s->n_streams; i++)
        if (s->cold[i].io_errno) /* its records were allocated at the check: a device error */
            return set_error(s->err, LETHE_ERR_IO, "cannot write the cold tier's pages to disk: %s",
                             strerror(s->cold[i].io_errno));
    return s->policy->params.reindex ? reindex(s) : LETHE_OK;
}

/* The model's RoPE, for re-rotating cached keys. */
static kv_rope rope_of(const lethe_seq *s) {
    const lethe_model *m = s->c->m;
    kv_rope r = {m->hp.head_dim, m->hp.n_rot, m->hp.rope_base, m->arch->rope == ROPE_NEOX};
    return r;
}

lethe_status seq_remove_range(lethe_seq *s, int32_t p0, int32_t p1) {
    kv_pool *pool = s->c->kv;
    size_t pages = 0; /* copy on write of shared pages, for every stream at once */
    for (int i = 0; i < s->n_streams; i++) pages += kv_stream_remove_pages_needed(pool, &s->streams[i], p0, p1);
    if (pages > kv_pool_pages_free(pool))
        return set_error(s->err, LETHE_ERR_BUDGET, "remove: %zu KV pages needed for copy on write, %zu free", pages,
                         kv_pool_pages_free(pool));
    for (int i = 0; i < s->n_streams; i++) {
        lethe_status st = kv_stream_remove(pool, &s->streams[i], p0, p1);
        if (!st && s->cold) st = kv_cold_remove(&s->cold[i], p0, p1);
        if (st) return set_error(s->err, st, "remove: %s", lethe_status_name(st)); /* checked above: not expected */
    }
    if (s->cold) seq_account_cold(s);
    return LETHE_OK;
}

lethe_status seq_shift_range(lethe_seq *s, int32_t p0, int32_t p1, int32_t delta) {
    kv_pool *pool = s->c->kv;
    const kv_rope rope = rope_of(s);
    size_t pages = 0;
    for (int i = 0; i < s->n_streams; i++) pages += kv_stream_shift_pages_needed(pool, &s->streams[i], p0, p1);
    if (pages > kv_pool_pages_free(pool))
        return set_error(s->err, LETHE_ERR_BUDGET, "shift: %zu KV pages needed for copy on write, %zu free", pages,
                         kv_pool_pages_free(pool));
    for (int i = 0; i < s->n_streams; i++) {
        lethe_status st = kv_stream_shift(pool, &s->streams[i], &rope, p0, p1, delta);
        if (!st && s->cold) st = kv_cold_shift(&s->cold[i], &rope, p0, p1, delta);
        if (st) return set_error(s->err, st, "shift: %s", lethe_status_name(st)); /* checked above: not expected */
    }
    return LETHE_OK;
}

void seq_stats_cfg(const lethe_seq *s, int n, attn_stats_cfg *cfg) {
    const kv_policy *p = s->policy;
    memset(cfg, 0, sizeof *cfg);
    if (!s->calibrating && !p->ops->needs_stats) return;
    cfg->enabled = 1;
    cfg->step = s->n_tokens + n - 1;
    if (s->calibrating) { /* every query counts; hits are not used */
        cfg->hit_threshold = 1.0f;
        return;
    }
    cfg->hit_threshold = p->params.hit_threshold;
    cfg->from_query = p->ops->stats_from ? p->ops->stats_from(p, n) : 0;
    if (s->probe_rows > 0 && s->probe_rows < n) cfg->from_query = n - s->probe_rows; /* only the question probe votes */
}
