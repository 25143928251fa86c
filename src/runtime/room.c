/* Making room: before a chunk runs, the sequence's policy plans which slots
 * leave each stream that would pass its budget, and the plan is carried out
 * (cold-tier drops, demotions, hot drops). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/alloc.h"

/* Grows the plan masks to the streams' current sizes and presets them. */
static lethe_status prepare_masks(lethe_seq *s) {
    for (int i = 0; i < s->n_streams; i++) {
        int n = s->streams[i].n;
        if (n > s->keep_cap[i]) {
            uint8_t *k = lt_realloc(s->keep[i], (size_t)n);
            if (k) s->keep[i] = k;
            uint8_t *d = s->cold && k ? lt_realloc(s->demote[i], (size_t)n) : NULL;
            if (d) s->demote[i] = d;
            if (!k || (s->cold && !d)) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
            s->keep_cap[i] = n;
        }
        memset(s->keep[i], 1, (size_t)n);
        if (s->cold) {
            int nc = s->cold[i].n_slots;
            if (nc > s->cold_keep_cap[i]) { /* geometric: an unbounded cold tier (quest) grows a page at a time */
                int cap = nc > 2 * s->cold_keep_cap[i] ? nc : 2 * s->cold_keep_cap[i];
                uint8_t *k = lt_realloc(s->cold_keep[i], (size_t)cap);
                if (!k) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
                s->cold_keep[i] = k;
                s->cold_keep_cap[i] = cap;
            }
            if (n) memset(s->demote[i], 0, (size_t)n);
            if (nc) memset(s->cold_keep[i], 1, (size_t)nc);
        }
    }
    return LETHE_OK;
}

static lethe_status grow_idx(lethe_seq *s, int n) {
    if (n <= s->idx_cap) return LETHE_OK;
    int *ni = lt_realloc(s->idx, (size_t)n * sizeof *ni);
    if (ni) s->idx = ni;
    float *ns = ni ? lt_realloc(s->score, (size_t)n * sizeof *ns) : NULL;
    if (ns) s->score = ns;
    if (!ni || !ns) return LETHE_ERR_NOMEM;
    s->idx_cap = n;
    return LETHE_OK;
}

/* Carries out the plan in the masks: cold drops, demotions, hot drops,
 * checking each stream against its target. */
static lethe_status apply_plan(lethe_seq *s, const char *who) {
    lethe_status st = LETHE_OK;
    for (int i = 0; i < s->n_streams && !st; i++) {
        kv_stream *str = &s->streams[i];
        int kept = 0, n = str->n;
        for (int j = 0; j < n; j++) kept += s->keep[i][j] != 0;
        if (kept > s->target[i])
            return set_error(s->err, LETHE_ERR_BUDGET, "%s kept %d slots in stream %d, over its target %d", who, kept, i,
                             s->target[i]);
        if (s->cold) {
            kv_cold *cold = &s->cold[i];
            bool drop_cold = false;
            for (int j = 0; j < cold->n_slots; j++) drop_cold |= !s->cold_keep[i][j];
            if (drop_cold && (st = kv_cold_compact(cold, s->cold_keep[i]))) break;
            int nd = 0;
            for (int j = 0; j < n; j++) nd += !s->keep[i][j] && s->demote[i][j];
            if (nd) {
                if ((st = grow_idx(s, nd))) break;
                nd = 0;
                for (int j = 0; j < n; j++)
                    if (!s->keep[i][j] && s->demote[i][j]) {
                        s->idx[nd] = j;
                        s->score[nd++] = str->attn_acc ? str->attn_acc[j] : 0.0f;
                    }
                if ((st = kv_cold_add(cold, s->c->kv, str, s->idx, s->score, nd))) break;
            }
            if (s->cold_capacity >= 0 && cold->n_slots > s->cold_capacity) {
                seq_account_cold(s);
                return set_error(s->err, LETHE_ERR_BUDGET, "%s left %d cold slots in stream %d, over its capacity %d", who,
                                 cold->n_slots, i, s->cold_capacity);
            }
        }
        if (kept < n && (st = kv_stream_compact(s->c->kv, str, s->keep[i]))) break;
    }
    seq_account_cold(s);
    if (st) return set_error(s->err, st, "compacting the KV cache failed (%s)", lethe_status_name(st));
    return LETHE_OK;
}

/* Slots a re-indexing window frees beyond what a chunk needs, so that the
 * re-rotation of the window's keys happens once every `slack` tokens, not
 * every token. */
static int reindex_slack(const lethe_seq *s) {
    int w = s->min_budget - s->policy->params.sink;
    return w / 8 > 1 ? w / 8 : 1;
}

/* StreamingLLM's positions within the cache: after an eviction the cached
 * tokens are renumbered 0..n-1 in position order (one shift per run of
 * consecutive positions: the sinks stay, the window moves down), and the
 * next token goes to n. Every stream keeps the same positions (window). */
static int cmp_int(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

static lethe_status reindex(lethe_seq *s) {
    const kv_stream *st = &s->streams[0];
    const int n = st->n;
    if (grow_idx(s, n)) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    int *p = s->idx;
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

lethe_status seq_make_room(lethe_seq *s, int c) {
    bool over = false;
    const bool re = s->policy->params.reindex;
    /* how far below the budget an eviction goes: a plan costs a scan of the
     * stream, so a policy that may evict ahead does it once a page */
    const int slack = re ? reindex_slack(s) : s->policy->ops->evict_ahead ? kv_pool_page_slots(s->c->kv) : 0;
    for (int i = 0; i < s->n_streams; i++) {
        int n = s->streams[i].n;
        int ahead = slack < s->budget[i] / 4 ? slack : s->budget[i] / 4;
        s->target[i] = n + c > s->budget[i] ? s->budget[i] - c - ahead : n;
        if (s->target[i] < 0) s->target[i] = 0;
        over |= s->target[i] < n;
    }
    if (!over) return LETHE_OK;
    lethe_status st = prepare_masks(s);
    if (st) return st;
    policy_view v = seq_view(s, false);
    policy_plan plan = {s->keep, s->cold ? s->demote : NULL, s->cold ? s->cold_keep : NULL};
    st = s->policy->ops->plan(s->policy, &v, s->target, &plan);
    if (st) return set_error(s->err, st, "policy %s: %s", s->policy->ops->name, s->policy->err);
    char who[64];
    snprintf(who, sizeof who, "policy %s", s->policy->ops->name);
    if ((st = apply_plan(s, who))) return st;
    return re ? reindex(s) : LETHE_OK;
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
    if (s->cold) {
        /* cold slots go through the plan's masks (kv_cold_compact) */
        lethe_status st = prepare_masks(s);
        if (st) return st;
        for (int i = 0; i < s->n_streams; i++) {
            const kv_cold *cold = &s->cold[i];
            int f = 0;
            for (int pg = 0; pg < cold->n_pages; pg++)
                for (int j = 0; j < cold->pages[pg].n; j++, f++) {
                    int32_t q = cold->pages[pg].pos[j];
                    s->cold_keep[i][f] = q < p0 || q >= p1;
                }
        }
        for (int i = 0; i < s->n_streams; i++) {
            bool drop = false;
            for (int j = 0; j < s->cold[i].n_slots; j++) drop |= !s->cold_keep[i][j];
            if (drop && (st = kv_cold_compact(&s->cold[i], s->cold_keep[i]))) {
                seq_account_cold(s);
                return set_error(s->err, st, "remove: the cold tier failed (%s)", lethe_status_name(st));
            }
        }
        seq_account_cold(s);
    }
    for (int i = 0; i < s->n_streams; i++) {
        lethe_status st = kv_stream_remove(pool, &s->streams[i], p0, p1);
        if (st) return set_error(s->err, st, "remove: %s", lethe_status_name(st)); /* checked above: not expected */
    }
    return LETHE_OK;
}

lethe_status seq_shift_range(lethe_seq *s, int32_t p0, int32_t p1, int32_t delta) {
    kv_pool *pool = s->c->kv;
    const kv_rope rope = rope_of(s);
    if (s->cold) return set_error(s->err, LETHE_ERR_UNSUPPORTED, "shift: the cold tier cannot be re-rotated yet");
    size_t pages = 0;
    for (int i = 0; i < s->n_streams; i++) pages += kv_stream_shift_pages_needed(pool, &s->streams[i], p0, p1);
    if (pages > kv_pool_pages_free(pool))
        return set_error(s->err, LETHE_ERR_BUDGET, "shift: %zu KV pages needed for copy on write, %zu free", pages,
                         kv_pool_pages_free(pool));
    for (int i = 0; i < s->n_streams; i++) {
        lethe_status st = kv_stream_shift(pool, &s->streams[i], &rope, p0, p1, delta);
        if (st) return set_error(s->err, st, "shift: %s", lethe_status_name(st)); /* checked above: not expected */
    }
    return LETHE_OK;
}

void seq_stats_cfg(const lethe_seq *s, int n, attn_stats_cfg *cfg) {
    const kv_policy *p = s->policy;
    memset(cfg, 0, sizeof *cfg);
    if (s->calibrating) {
        cfg->enabled = 1;
        cfg->hit_threshold = 1.0f;
        cfg->step = s->n_tokens + n - 1;
        return;
    }
    if (!p->ops->needs_stats) return;
    cfg->enabled = 1;
    cfg->hit_threshold = p->params.hit_threshold;
    cfg->step = s->n_tokens + n - 1;
    cfg->from_query = p->ops->stats_from ? p->ops->stats_from(p, n) : 0;
}
