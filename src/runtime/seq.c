/* Sequences: a KV page table per layer and KV head, the next position, the
 * statistics clock, and the KV policy that keeps the cache inside its
 * budget. The sequences of a context share its pool; a fork shares its
 * parent's pages until one of them writes (copy on write in kv_stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/calibrate.h"
#include "runtime/engine.h"
#include "util/alloc.h"

lethe_seq_params lethe_seq_default_params(void) {
    lethe_seq_params p;
    memset(&p, 0, sizeof p);
    p.kv = policy_default_params();
    return p;
}

static char *copy_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = lt_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static lethe_seq *seq_alloc(lethe_ctx *c, int n_ctx) {
    if (c->n_seqs == c->cap_seqs) {
        int cap = c->cap_seqs ? c->cap_seqs * 2 : 8;
        lethe_seq **p = lt_realloc(c->seqs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        c->seqs = p;
        c->cap_seqs = cap;
    }
    lethe_seq *s = lt_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->c = c;
    s->n_streams = c->m->hp.n_layer * c->m->hp.n_head_kv;
    s->n_ctx = n_ctx;
    s->streams = lt_calloc((size_t)s->n_streams, sizeof *s->streams);
    s->budget = lt_calloc((size_t)s->n_streams, sizeof *s->budget);
    s->target = lt_calloc((size_t)s->n_streams, sizeof *s->target);
    s->n_before = lt_calloc((size_t)s->n_streams, sizeof *s->n_before);
    c->seqs[c->n_seqs++] = s; /* registered first, so lethe_seq_free always finds it */
    if (!s->streams || !s->budget || !s->target || !s->n_before) {
        lethe_seq_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n_streams; i++) kv_stream_init(&s->streams[i]);
    return s;
}

policy_view seq_view(const lethe_seq *s, bool prefill) {
    const hparams *hp = &s->c->m->hp;
    policy_view v = {
        .n_layer = hp->n_layer, .n_head_kv = hp->n_head_kv, .n_head = hp->n_head, .head_dim = hp->head_dim,
        .pool = s->c->kv, .streams = s->streams, .n_past = s->pos_next, .step = s->n_tokens - 1, .in_prefill = prefill,
        .head_reach = s->head_reach, .cold = s->cold, .cold_capacity = s->cold_capacity, .n_ctx = s->n_ctx,
        .protect = s->protect, .n_protect = s->n_protect,
    };
    return v;
}

static int cmp_range(const void *x, const void *y) {
    const int32_t *a = x, *b = y;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

lethe_status seq_protect_set(lethe_seq *s, const int *ranges, int n) {
    if (!s || n < 0 || (n > 0 && !ranges)) return LETHE_ERR_ARG;
    int m = 0;
    for (int k = 0; k < n; k++) {
        if (ranges[2 * k] < 0) return set_error(s->err, LETHE_ERR_ARG, "protect: range %d starts at %d", k, ranges[2 * k]);
        m += ranges[2 * k + 1] > ranges[2 * k];
    }
    int32_t *dst = s->protect_small;
    const int small = (int)(sizeof s->protect_small / sizeof s->protect_small[0] / 2);
    if (m > small) {
        if (m > s->cap_protect) {
            int32_t *p = lt_realloc(s->protect_heap, (size_t)m * 2 * sizeof *p);
            if (!p) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory for protected ranges");
            s->protect_heap = p;
            s->cap_protect = m;
        }
        dst = s->protect_heap;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ranges[2 * i + 1] > ranges[2 * i]) dst[2 * k] = ranges[2 * i], dst[2 * k + 1] = ranges[2 * i + 1], k++;
    qsort(dst, (size_t)k, 2 * sizeof *dst, cmp_range);
    int w = 0; /* merge overlapping and touching ranges */
    for (int i = 0; i < k; i++) {
        if (w > 0 && dst[2 * i] <= dst[2 * w - 1]) {
            if (dst[2 * i + 1] > dst[2 * w - 1]) dst[2 * w - 1] = dst[2 * i + 1];
        } else {
            dst[2 * w] = dst[2 * i], dst[2 * w + 1] = dst[2 * i + 1];
            w++;
        }
    }
    s->protect = dst;
    s->n_protect = w;
    return LETHE_OK;
}

bool seq_protected(const lethe_seq *s, int32_t pos) { return policy_pos_protected(s->protect, s->n_protect, pos); }

int seq_protected_slots(const lethe_seq *s, const kv_stream *st) {
    policy_view v = {.protect = s->protect, .n_protect = s->n_protect};
    return policy_protected_slots(&v, st, NULL);
}

void seq_account_cold(lethe_seq *s) {
    size_t b = 0;
    if (s->cold)
        for (int i = 0; i < s->n_streams; i++) b += kv_cold_bytes_reserved(&s->cold[i]); /* everything held */
    s->c->cold_bytes = s->c->cold_bytes - s->cold_bytes + b;
    if (s->c->cold_bytes > s->c->cold_peak) s->c->cold_peak = s->c->cold_bytes;
    s->cold_bytes = b;
}

/* Cold tier set-up: one store per stream, and its capacity when the cold
 * bytes count against the budget (what the hot pages leave over). */
lethe_status seq_cold_kind(const kv_policy_ops *ops, const char *kind, lt_type *dtype, bool *disk) {
    *dtype = ops->cold_dtype;
    *disk = false;
    if (!kind || !*kind) return LETHE_OK;
    if (!ops->cold_pages) return LETHE_ERR_ARG; /* only a policy that picks pages (quest) chooses its storage */
    *disk = strncmp(kind, "disk-", 5) == 0;
    const char *t = *disk ? kind + 5 : kind;
    if (!strcmp(t, "q8_0")) *dtype = LT_Q8_0;
    else if (!strcmp(t, "q4") || !strcmp(t, "q4_0")) *dtype = LT_Q4_0;
    else return LETHE_ERR_ARG;
    return LETHE_OK;
}

/* A disk tier is attended through RAM copies of the pages chosen per
 * step: one stage tier per KV head (a layer at a time), with room for the
 * policy's pages. */
static lethe_status setup_stage(lethe_seq *s, lt_type dt, int pages) {
    const int H = s->c->m->hp.n_head_kv, P = kv_pool_page_slots(s->c->kv), hd = s->c->m->hp.head_dim;
    s->stage = lt_calloc((size_t)H, sizeof *s->stage);
    if (!s->stage) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    for (int h = 0; h < H; h++) s->stage[h].fd = -1;
    s->stage_pages = pages;
    for (int h = 0; h < H; h++) {
        if (kv_cold_init(&s->stage[h], dt, P, hd, &s->cold[0]) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        if (kv_cold_reserve(&s->stage[h], pages) != LETHE_OK) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    }
    return LETHE_OK;
}

static int quest_pages_of(const lethe_seq *s) {
    const int P = kv_pool_page_slots(s->c->kv);
    const policy_params *pp = &s->policy->params;
    return pp->quest_pages > 0 ? pp->quest_pages : (pp->budget + P - 1) / P;
}

static lethe_status setup_cold(lethe_seq *s, int budget, int cold_slots) {
    const kv_policy_ops *ops = s->policy->ops;
    s->cold_capacity = -1;
    if (!ops->cold_tier) return LETHE_OK;
    const int P = kv_pool_page_slots(s->c->kv), hd = s->c->m->hp.head_dim;
    lt_type dt;
    bool disk;
    if (seq_cold_kind(ops, s->cold_kind, &dt, &disk))
        return set_error(s->err, LETHE_ERR_ARG, "unknown cold storage '%s' for %s (q8_0, q4, disk-q8_0, disk-q4)", s->cold_kind,
                         ops->name);
    s->cold = lt_calloc((size_t)s->n_streams, sizeof *s->cold);
    if (!s->cold) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->n_streams; i++) s->cold[i].fd = -1; /* not on disk until set up */
    for (int i = 0; i < s->n_streams; i++) {
        const kv_cold *owner = i > 0 ? &s->cold[0] : NULL; /* one scratch for the sequence */
        if (disk) {
            char e[LETHE_ERR_MAX];
            lethe_status st = kv_cold_init_disk(&s->cold[i], dt, P, hd, owner, s->cold_dir, e);
            if (st) return set_error(s->err, st, "%s", e);
        } else if (kv_cold_init(&s->cold[i], dt, P, hd, owner) != LETHE_OK) {
            return set_error(s->err, LETHE_ERR_NOMEM, "cannot set up the cold tier");
        }
        /* a disk tier can hold the whole context: its page array is sized once */
        if (disk && kv_cold_reserve_array(&s->cold[i], (s->n_ctx + P - 1) / P + 1) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    }
    if (disk) {
        lethe_status st = setup_stage(s, dt, quest_pages_of(s));
        if (st) return st;
    }
    if (cold_slots >= 0 && !ops->cold_in_budget) s->cold_capacity = cold_slots;
    if (ops->cold_in_budget) {
        /* whole cold pages that fit in the bytes the hot budget leaves over */
        size_t page_bytes = kv_pool_page_bytes(s->c->kv);
        size_t total_pages = ((size_t)budget + P - 1) / P, hot_pages = ((size_t)s->min_budget + P - 1) / P;
        double cold_page_bytes = kv_cold_slot_bytes(&s->cold[0]) * P;
        /* the sequence's cold scratch is held too: each stream pays its share */
        double room = (double)((total_pages - hot_pages) * page_bytes) -
                      (double)kv_cold_bytes_reserved(&s->cold[0]) / s->n_streams;
        size_t cold_pages = room > 0 ? (size_t)(room / cold_page_bytes) : 0;
        s->cold_capacity = (int)(cold_pages * (size_t)P);
    }
    return LETHE_OK;
}

/* Range checks on the policy parameters a caller may set freely. */
static lethe_status check_policy_params(lethe_seq *s, const lethe_kv_policy_params *kp) {
    const int big = 1 << 24;
    if (kp->budget < 0 || kp->budget > big) return set_error(s->err, LETHE_ERR_ARG, "KV budget %d is out of range [0, %d]", kp->budget, big);
    if (kp->sink < 0 || kp->sink > big) return set_error(s->err, LETHE_ERR_ARG, "sink %d is out of range [0, %d]", kp->sink, big);
    if (kp->window > big) return set_error(s->err, LETHE_ERR_ARG, "window %d is out of range [-1, %d]", kp->window, big);
    if (kp->lag < 0 || kp->lag > big || kp->obs_window < 0 || kp->obs_window > big || kp->pool_kernel < 0 ||
        kp->pool_kernel > big || kp->quest_pages < 0 || kp->quest_pages > big)
        return set_error(s->err, LETHE_ERR_ARG, "lag, obs_window, pool_kernel and quest_pages must be in [0, %d]", big);
    if (!(kp->hit_threshold >= 0.0f && kp->hit_threshold <= 1.0f))
        return set_error(s->err, LETHE_ERR_ARG, "hit threshold must be in [0, 1]");
    if (!(kp->hot_fraction >= 0.0f && kp->hot_fraction <= 1.0f))
        return set_error(s->err, LETHE_ERR_ARG, "hot fraction must be in [0, 1]");
    if (kp->snap_votes < LETHE_SNAP_PROBE || kp->snap_votes > LETHE_SNAP_CHUNK || kp->snap_alloc < LETHE_SNAP_UNIFORM ||
        kp->snap_alloc > LETHE_SNAP_RETRIEVAL || !(kp->pyramid_ratio == 0.0f || (kp->pyramid_ratio >= 0.001f && kp->pyramid_ratio <= 1000.0f)))
        return set_error(s->err, LETHE_ERR_ARG, "snapkv: unknown votes or budget allocation, or pyramid ratio not 0 or in [0.001, 1000]");
    if (!(kp->keyformer_tau > 0.0f && kp->keyformer_tau < 1e6f))
        return set_error(s->err, LETHE_ERR_ARG, "Keyformer temperature must be in (0, 1e6)");
    return LETHE_OK;
}

/* The byte model of budgets, with Ada's caps when the layers share their room. */
static size_t model_with_caps(lethe_seq *s, const kv_policy_ops *ops, const int *budgets) {
    if (!s->stream_cap) return seq_bytes_model_streams(s, ops, &s->policy->params, budgets, NULL);
    seq_layer_caps(s, budgets, s->stream_floor, s->stream_cap);
    return seq_bytes_model_streams(s, ops, &s->policy->params, budgets, s->stream_cap);
}

/* The policy's per-stream budgets into s->budget. Under a byte budget the
 * uniform model that chose `budget` cannot see how the policy shares the
 * slots out (a pyramid puts more in some streams, whose arrays and pages
 * then cost more, and often fewer pages in all), so the budget moves, a
 * page at a time, to the largest (below limit) whose streams the model of
 * the same per-stream sizes says fit. */
static lethe_status stream_budgets(lethe_seq *s, const kv_policy_ops *ops, const policy_view *v, int limit, int *budget) {
    if (ops->shares_layer && ops->shares_layer(s->policy)) {
        s->stream_floor = lt_malloc((size_t)s->n_streams * sizeof *s->stream_floor);
        s->stream_cap = lt_malloc((size_t)s->n_streams * sizeof *s->stream_cap);
        if (!s->stream_floor || !s->stream_cap) return policy_oom(s->policy);
    }
    lethe_status st = ops->budgets(s->policy, v, *budget, s->budget);
    if (!st && s->budget_bytes && !ops->cold_tier) {
        const int P = kv_pool_page_slots(s->c->kv);
        int *next = s->target; /* scratch until the first step */
        while (*budget + P < limit) {
            if ((st = ops->budgets(s->policy, v, *budget + P, next))) return st;
            if (model_with_caps(s, ops, next) > s->budget_bytes) break;
            *budget += P;
            memcpy(s->budget, next, (size_t)s->n_streams * sizeof *next);
        }
        while (*budget > P && model_with_caps(s, ops, s->budget) > s->budget_bytes) {
            *budget -= P;
            if ((st = ops->budgets(s->policy, v, *budget, s->budget))) return st;
        }
        memset(next, 0, (size_t)s->n_streams * sizeof *next);
    }
    if (!st && s->stream_cap) seq_layer_caps(s, s->budget, s->stream_floor, s->stream_cap);
    return st;
}

/* Sets up the policy (with its own copies of the caller's strings) and the
 * per-stream budgets. */
static lethe_status seq_setup_policy(lethe_seq *s, const lethe_kv_policy_params *kp) {
    lethe_ctx *c = s->c;
    lethe_status st = check_policy_params(s, kp);
    if (st) return st;
    const char *name = kp->name ? kp->name : "full";
    const kv_policy_ops *ops = policy_find(name);
    if (!ops) {
        char list[256] = "";
        for (const char *const *n = lethe_kv_policy_names(); *n; n++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", *n);
        return set_error(s->err, LETHE_ERR_ARG, "unknown KV policy '%s' (one of: %s)", name, list);
    }
    s->policy_name = copy_str(ops->name);
    s->calib_path = copy_str(kp->calib_path);
    s->cold_kind = copy_str(kp->cold);
    s->cold_dir = copy_str(kp->cold_dir);
    if (!s->policy_name || (kp->calib_path && !s->calib_path) || (kp->cold && !s->cold_kind) || (kp->cold_dir && !s->cold_dir))
        return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    lt_type cold_dt;
    bool cold_disk;
    if (seq_cold_kind(ops, kp->cold, &cold_dt, &cold_disk))
        return set_error(s->err, LETHE_ERR_ARG, "cold storage '%s' is not one %s takes (quest: q8_0, q4, disk-q8_0, disk-q4)",
                         kp->cold, ops->name);
    const size_t P = (size_t)kv_pool_page_slots(c->kv);
    /* the share of the pool one sequence may hold */
    size_t share = kv_pool_n_pages(c->kv) / (size_t)c->params.n_seq_max / (size_t)s->n_streams * P;
    size_t cap = share < (size_t)s->n_ctx ? share : (size_t)s->n_ctx;
    /* a budget is a cap: one above what the sequence can hold never evicts */
    int budget = kp->budget > 0 && (size_t)kp->budget < cap ? kp->budget : (int)cap;
    int quest_pages = kp->quest_pages, cold_slots = -1;
    if (kp->budget_bytes > 0) {
        int b;
        if ((st = seq_budget_from_bytes(s, ops, kp, cold_dt, cold_disk, kp->budget_bytes, &b, &quest_pages, &cold_slots)))
            return st;
        if ((size_t)b < cap) budget = b;
        s->budget_bytes = kp->budget_bytes;
    }
    if (budget < 1) return set_error(s->err, LETHE_ERR_BUDGET, "KV budget of %d slots is too small", budget);
    if (kp->budget > 0 && (size_t)kp->budget > share && share < (size_t)s->n_ctx)
        return set_error(s->err, LETHE_ERR_BUDGET,
                         "a budget of %d slots per layer and KV head needs %zu pages per stream, but the pool gives each of "
                         "%d sequences %zu (raise the pool's MiB or lower the budget)",
                         kp->budget, ((size_t)kp->budget + P - 1) / P, c->params.n_seq_max, share / P);
    if (kp->reindex && strcmp(ops->name, "window"))
        return set_error(s->err, LETHE_ERR_ARG, "re-indexed positions are a window policy mode, not %s's", ops->name);
    s->policy = policy_create(ops, kp);
    if (!s->policy) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    s->policy->params.name = s->policy_name;
    s->policy->params.calib_path = s->calib_path;
    s->policy->params.cold = s->cold_kind;
    s->policy->params.cold_dir = s->cold_dir;
    s->policy->params.budget = budget;
    s->policy->params.quest_pages = quest_pages;
    if (ops->needs_calibration) {
        s->head_reach = lt_malloc((size_t)s->n_streams * sizeof *s->head_reach);
        if (!s->head_reach) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        if ((st = calibrate_load_or_run(c, &s->policy->params, s->head_reach, s->err))) return st;
    } else if (ops->wants_retrieval && ops->wants_retrieval(s->policy) && budget < s->n_ctx) {
        s->head_reach = lt_malloc((size_t)s->n_streams * sizeof *s->head_reach);
        if (!s->head_reach) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        if ((st = calibrate_retrieval(c, s->head_reach, s->err))) return st;
    }
    policy_view v = seq_view(s, false);
    for (int i = 0; i < s->n_streams; i++) s->budget[i] = budget;
    if (ops->budgets) {
        if ((st = stream_budgets(s, ops, &v, (int)cap, &budget))) return set_error(s->err, st, "policy %s: %s", name, s->policy->err);
        s->policy->params.budget = budget;
        size_t pages = 0;
        for (int i = 0; i < s->n_streams; i++) pages += ((size_t)s->budget[i] + P - 1) / P;
        if (pages > (share / P) * (size_t)s->n_streams)
            return set_error(s->err, LETHE_ERR_BUDGET, "policy %s: per-head budgets exceed the sequence's pages", name);
    }
    s->min_budget = s->budget[0];
    for (int i = 0; i < s->n_streams; i++) {
        if (s->budget[i] < s->min_budget) s->min_budget = s->budget[i];
        if (ops->needs_stats && kv_stream_enable_stats(&s->streams[i], ops->stats) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        if (ops->aux_width > 0 && kv_stream_enable_aux(&s->streams[i], ops->aux_width) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        /* under a byte budget the per-slot arrays are sized once, to the budget */
        if (s->budget_bytes && kv_stream_reserve_exact(c->kv, &s->streams[i], s->stream_cap ? s->stream_cap[i] : s->budget[i]) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    }
    if (s->min_budget < 1) return set_error(s->err, LETHE_ERR_BUDGET, "policy %s gave a stream no slots", name);
    if (!(s->plan = kv_plan_create(s->n_streams, ops->cold_tier))) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    return setup_cold(s, budget, cold_slots);
}

lethe_seq *lethe_seq_create(lethe_ctx *c, const lethe_seq_params *params, char *err, size_t err_size) {
    if (!c) {
        copy_error(err, err_size, "lethe_seq_create: no context");
        return NULL;
    }
    lethe_seq_params p = params ? *params : lethe_seq_default_params();
    int n_ctx = p.n_ctx > 0 ? p.n_ctx : c->params.n_ctx;
    if (n_ctx > c->params.n_ctx) {
        if (err && err_size) snprintf(err, err_size, "sequence context %d exceeds the context's n_ctx %d", n_ctx, c->params.n_ctx);
        return NULL;
    }
    lethe_seq *s = seq_alloc(c, n_ctx);
    if (!s) {
        copy_error(err, err_size, "out of memory");
        return NULL;
    }
    if (seq_setup_policy(s, &p.kv) != LETHE_OK) {
        copy_error(err, err_size, s->err);
        lethe_seq_free(s);
        return NULL;
    }
    s->err[0] = 0;
    return s;
}

lethe_seq *lethe_seq_fork(lethe_seq *src, char *err, size_t err_size) {
    if (!src) {
        copy_error(err, err_size, "lethe_seq_fork: no sequence");
        return NULL;
    }
    lethe_seq *s = seq_alloc(src->c, src->n_ctx);
    if (!s || seq_setup_policy(s, &src->policy->params) != LETHE_OK) {
        copy_error(err, err_size, s ? s->err : "out of memory");
        lethe_seq_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n_streams; i++) {
        kv_stream_free(src->c->kv, &s->streams[i]);
        if (kv_stream_fork(src->c->kv, &src->streams[i], &s->streams[i]) != LETHE_OK) {
            copy_error(err, err_size, "out of memory while forking");
            lethe_seq_free(s);
            return NULL;
        }
    }
    for (int i = 0; s->cold && i < s->n_streams; i++) {
        if (kv_cold_copy(&s->cold[i], &src->cold[i]) != LETHE_OK) {
            copy_error(err, err_size, "out of memory while forking the cold tier");
            lethe_seq_free(s);
            return NULL;
        }
    }
    if (s->cold) seq_account_cold(s);
    s->pos_next = src->pos_next;
    s->n_tokens = src->n_tokens;
    s->err[0] = 0;
    return s;
}

void lethe_seq_free(lethe_seq *s) {
    if (!s) return;
    lethe_ctx *c = s->c;
    for (int i = 0; i < c->n_seqs; i++)
        if (c->seqs[i] == s) {
            c->seqs[i] = c->seqs[--c->n_seqs];
            break;
        }
    if (s->streams)
        for (int i = 0; i < s->n_streams; i++) kv_stream_free(c->kv, &s->streams[i]);
    if (s->cold) {
        for (int i = 0; i < s->n_streams; i++) kv_cold_free(&s->cold[i]);
        seq_account_cold(s);
    }
    lt_free(s->cold);
    for (int h = 0; s->stage && h < c->m->hp.n_head_kv; h++) kv_cold_free(&s->stage[h]);
    lt_free(s->stage);
    lt_free(s->cold_kind);
    lt_free(s->cold_dir);
    kv_plan_free(s->plan);
    policy_free(s->policy);
    lt_free(s->policy_name);
    lt_free(s->calib_path);
    lt_free(s->head_reach);
    lt_free(s->streams);
    lt_free(s->budget);
    lt_free(s->stream_floor);
    lt_free(s->stream_cap);
    lt_free(s->target);
    lt_free(s->order);
    lt_free(s->n_before);
    lt_free(s->protect_heap);
    lt_free(s);
}

int lethe_seq_n_past(const lethe_seq *s) { return s ? s->pos_next : 0; }
int lethe_seq_n_tokens(const lethe_seq *s) { return s ? s->n_tokens : 0; }

int lethe_seq_n_cached(const lethe_seq *s) {
    int n = 0;
    for (int i = 0; s && i < s->n_streams; i++)
        if (s->streams[i].n > n) n = s->streams[i].n;
    return n;
}

int lethe_seq_max_batch(const lethe_seq *s) {
    if (!s) return 0;
    if (s->policy->ops->may_evict) {
        int n = s->min_budget / 2 > 0 ? s->min_budget / 2 : 1;
        /* protected positions stay cached: a chunk gets at most the room
         * they leave (a bound: the protected positions before pos_next) */
        long held = 0;
        for (int k = 0; k < s->n_protect; k++) {
            int32_t a = s->protect[2 * k], b = s->protect[2 * k + 1] < s->pos_next ? s->protect[2 * k + 1] : s->pos_next;
            held += b > a ? b - a : 0;
        }
        if (held > 0 && s->min_budget - held < n) n = s->min_budget - held > 1 ? (int)(s->min_budget - held) : 1;
        return n;
    }
    int cap = s->min_budget < s->n_ctx ? s->min_budget : s->n_ctx;
    int n = cap - lethe_seq_n_cached(s);
    return n > 0 ? n : 0;
}

const char *lethe_seq_error(const lethe_seq *s) { return s ? s->err : "no sequence"; }
