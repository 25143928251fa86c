/* The transactional plan executor: every check and reservation first, then
 * the edits, none of which can fail once those passed. */
#include "kv/kv_plan.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

struct kv_plan {
    int n_streams;
    bool with_cold;
    uint8_t **keep, **demote, **cold_keep;
    int *keep_cap, *cold_cap;
    int *idx;    /* demotion scratch: slot indices and their scores */
    float *score;
    int idx_cap;
};

kv_plan *kv_plan_create(int n_streams, bool with_cold) {
    if (n_streams < 1) return NULL;
    kv_plan *p = lt_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_streams = n_streams;
    p->with_cold = with_cold;
    const size_t n = (size_t)n_streams;
    p->keep = lt_calloc(n, sizeof *p->keep);
    p->keep_cap = lt_calloc(n, sizeof *p->keep_cap);
    bool ok = p->keep && p->keep_cap;
    if (ok && with_cold) {
        p->demote = lt_calloc(n, sizeof *p->demote);
        p->cold_keep = lt_calloc(n, sizeof *p->cold_keep);
        p->cold_cap = lt_calloc(n, sizeof *p->cold_cap);
        ok = p->demote && p->cold_keep && p->cold_cap;
    }
    if (!ok) {
        kv_plan_free(p);
        return NULL;
    }
    return p;
}

void kv_plan_free(kv_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_streams; i++) {
        if (p->keep) lt_free(p->keep[i]);
        if (p->demote) lt_free(p->demote[i]);
        if (p->cold_keep) lt_free(p->cold_keep[i]);
    }
    lt_free(p->keep);
    lt_free(p->demote);
    lt_free(p->cold_keep);
    lt_free(p->keep_cap);
    lt_free(p->cold_cap);
    lt_free(p->idx);
    lt_free(p->score);
    lt_free(p);
}

size_t kv_plan_fixed_bytes(int n_streams, bool with_cold) {
    const kv_plan *p = NULL;
    size_t b = sizeof *p + (size_t)n_streams * (sizeof *p->keep + sizeof *p->keep_cap);
    if (with_cold) b += (size_t)n_streams * (sizeof *p->demote + sizeof *p->cold_keep + sizeof *p->cold_cap);
    return b;
}

size_t kv_plan_bytes(const kv_plan *p) {
    if (!p) return 0;
    size_t b = kv_plan_fixed_bytes(p->n_streams, p->with_cold);
    for (int i = 0; i < p->n_streams; i++) {
        b += (size_t)p->keep_cap[i] * (p->with_cold ? 2 : 1); /* demote grows with keep */
        if (p->with_cold) b += (size_t)p->cold_cap[i];
    }
    return b + (size_t)p->idx_cap * (sizeof *p->idx + sizeof *p->score);
}

uint8_t **kv_plan_keep(kv_plan *p) { return p->keep; }
uint8_t **kv_plan_demote(kv_plan *p) { return p->with_cold ? p->demote : NULL; }
uint8_t **kv_plan_cold_keep(kv_plan *p) { return p->with_cold ? p->cold_keep : NULL; }

/* Grows *buf to at least n bytes (keeping the larger block on success). */
static bool grow(uint8_t **buf, int *cap, int n) {
    if (n <= *cap) return true;
    uint8_t *b = lt_realloc(*buf, (size_t)n);
    if (!b) return false;
    *buf = b;
    *cap = n;
    return true;
}

lethe_status kv_plan_prepare(kv_plan *p, const kv_stream *streams, const kv_cold *cold) {
    const bool with_cold = p->with_cold && cold;
    int max_n = 0;
    for (int i = 0; i < p->n_streams; i++) {
        const int n = streams[i].n;
        if (n > max_n) max_n = n;
        int dcap = p->keep_cap[i]; /* demote grows with keep */
        if (n > p->keep_cap[i]) {
            if (p->with_cold && !grow(&p->demote[i], &dcap, n)) return LETHE_ERR_NOMEM;
            if (!grow(&p->keep[i], &p->keep_cap[i], n)) return LETHE_ERR_NOMEM;
        }
        if (with_cold && !grow(&p->cold_keep[i], &p->cold_cap[i], cold[i].n_slots)) return LETHE_ERR_NOMEM;
    }
    if (with_cold && max_n > p->idx_cap) { /* the demotion scratch */
        int *idx = lt_realloc(p->idx, (size_t)max_n * sizeof *idx);
        if (!idx) return LETHE_ERR_NOMEM;
        p->idx = idx;
        float *score = lt_realloc(p->score, (size_t)max_n * sizeof *score);
        if (!score) return LETHE_ERR_NOMEM;
        p->score = score;
        p->idx_cap = max_n;
    }
    for (int i = 0; i < p->n_streams; i++) {
        if (streams[i].n) memset(p->keep[i], 1, (size_t)streams[i].n);
        if (p->with_cold && streams[i].n) memset(p->demote[i], 0, (size_t)streams[i].n);
        if (with_cold && cold[i].n_slots) memset(p->cold_keep[i], 1, (size_t)cold[i].n_slots);
    }
    return LETHE_OK;
}

static bool any_zero(const uint8_t *m, int n) {
    for (int i = 0; i < n; i++)
        if (!m[i]) return true;
    return false;
}

/* Everything that can refuse: sizes, targets, capacities, pages, storage. */
static lethe_status check_and_reserve(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold, const int *target,
                                      int cold_capacity, size_t *pages_out, char *err) {
    size_t pages = 0;
    for (int i = 0; i < p->n_streams; i++) {
        const kv_stream *s = &streams[i];
        if (s->n > p->keep_cap[i] || (cold && (s->n > p->idx_cap || cold[i].n_slots > p->cold_cap[i])))
            return set_error(err, LETHE_ERR_ARG, "kv plan: stream %d changed size since kv_plan_prepare", i);
        int kept = 0, demoted = 0;
        for (int j = 0; j < s->n; j++) {
            kept += p->keep[i][j] != 0;
            demoted += cold && !p->keep[i][j] && p->demote[i][j];
        }
        if (kept > target[i])
            return set_error(err, LETHE_ERR_BUDGET, "kv plan keeps %d slots in stream %d, over its target %d", kept, i,
                             target[i]);
        if (cold) {
            int cold_kept = 0;
            for (int j = 0; j < cold[i].n_slots; j++) cold_kept += p->cold_keep[i][j] != 0;
            if (cold_capacity >= 0 && cold_kept + demoted > cold_capacity)
                return set_error(err, LETHE_ERR_BUDGET, "kv plan leaves %d cold slots in stream %d, over its capacity %d",
                                 cold_kept + demoted, i, cold_capacity);
        }
        if (kept < s->n) pages += kv_stream_compact_pages_needed(pool, s, p->keep[i]);
    }
    if (pages_out) *pages_out = pages;
    if (pages > kv_pool_pages_free(pool))
        return set_error(err, LETHE_ERR_BUDGET, "kv plan needs %zu free pages for copy on write, the pool has %zu", pages,
                         kv_pool_pages_free(pool));
    for (int i = 0; cold && i < p->n_streams; i++) {
        int demoted = 0;
        for (int j = 0; j < streams[i].n; j++) demoted += !p->keep[i][j] && p->demote[i][j];
        const uint8_t *ck = any_zero(p->cold_keep[i], cold[i].n_slots) ? p->cold_keep[i] : NULL;
        if (kv_cold_reserve(&cold[i], kv_cold_pages_after(&cold[i], ck, demoted)))
            return set_error(err, LETHE_ERR_NOMEM, "kv plan: out of memory for the cold tier of stream %d", i);
    }
    return LETHE_OK;
}

lethe_status kv_plan_check(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold, const int *target,
                           int cold_capacity, size_t *pages, char *err) {
    if (pages) *pages = 0;
    if (!p || !pool || !streams || !target) return set_error(err, LETHE_ERR_ARG, "kv plan: missing argument");
    return check_and_reserve(p, pool, streams, p->with_cold ? cold : NULL, target, cold_capacity, pages, err);
}

void kv_plan_commit(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold) {
    if (!p->with_cold) cold = NULL;
    /* Nothing here can fail: pages counted, cold storage reserved. */
    for (int i = 0; i < p->n_streams; i++) {
        kv_stream *s = &streams[i];
        if (cold) {
            if (any_zero(p->cold_keep[i], cold[i].n_slots)) kv_cold_compact(&cold[i], p->cold_keep[i]);
            int nd = 0;
            for (int j = 0; j < s->n; j++)
                if (!p->keep[i][j] && p->demote[i][j]) {
                    p->idx[nd] = j;
                    p->score[nd++] = s->attn_acc ? s->attn_acc[j] : 0.0f;
                }
            if (nd) kv_cold_add(&cold[i], pool, s, p->idx, p->score, nd);
        }
        if (any_zero(p->keep[i], s->n)) kv_stream_compact(pool, s, p->keep[i]);
    }
}

lethe_status kv_plan_apply(kv_plan *p, kv_pool *pool, kv_stream *streams, kv_cold *cold, const int *target,
                           int cold_capacity, char *err) {
    lethe_status st = kv_plan_check(p, pool, streams, cold, target, cold_capacity, NULL, err);
    if (!st) kv_plan_commit(p, pool, streams, cold);
    return st;
}
