/* Sequences: a KV page table per layer and KV head, the next position, and
 * the KV policy that keeps the cache inside its budget. Several sequences
 * share the model's pool; a fork shares its parent's pages until one of
 * them writes (copy on write in kv_stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/model.h"
#include "policy/policy.h"
#include "runtime/calibrate.h"

struct lethe_seq {
    lethe_model *m;
    kv_stream *streams;
    int n_streams;
    int n_past;
    int n_ctx;
    kv_policy *policy;
    float *head_reach; /* calibration, for policies that need it */
    kv_cold *cold;     /* cold tier per stream, for policies that have one */
    int cold_capacity; /* slots per stream's cold tier; -1 unbounded */
    size_t cold_bytes; /* this sequence's share of m->cold_bytes */
    uint8_t **demote, **cold_keep; /* plan scratch for the cold tier */
    int *cold_keep_cap;
    int *budget;       /* slot budget of each stream */
    int min_budget;
    int *target;       /* plan scratch */
    uint8_t **keep;    /* plan scratch: one mask per stream */
    int *keep_cap;
    int32_t *pos;      /* position scratch for one append */
    int pos_cap;
    char err[LETHE_ERR_MAX];
};

lethe_seq_params lethe_seq_default_params(void) {
    lethe_seq_params p;
    memset(&p, 0, sizeof p);
    p.kv = policy_default_params();
    return p;
}

static lethe_seq *seq_alloc(lethe_model *m, int n_ctx) {
    lethe_seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->n_streams = m->hp.n_layer * m->hp.n_head_kv;
    s->n_ctx = n_ctx;
    s->streams = calloc((size_t)s->n_streams, sizeof *s->streams);
    s->budget = calloc((size_t)s->n_streams, sizeof *s->budget);
    s->target = calloc((size_t)s->n_streams, sizeof *s->target);
    s->keep = calloc((size_t)s->n_streams, sizeof *s->keep);
    s->keep_cap = calloc((size_t)s->n_streams, sizeof *s->keep_cap);
    if (!s->streams || !s->budget || !s->target || !s->keep || !s->keep_cap) {
        lethe_seq_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n_streams; i++) kv_stream_init(&s->streams[i]);
    return s;
}

static policy_view view_of(lethe_seq *s, bool prefill) {
    const hparams *hp = &s->m->hp;
    policy_view v = {
        .n_layer = hp->n_layer, .n_head_kv = hp->n_head_kv, .n_head = hp->n_head, .head_dim = hp->head_dim,
        .pool = s->m->kv, .streams = s->streams, .n_past = s->n_past, .step = s->n_past - 1, .in_prefill = prefill,
        .head_reach = s->head_reach, .cold = s->cold, .cold_capacity = s->cold_capacity, .n_ctx = s->n_ctx,
    };
    return v;
}

/* Keeps the model-wide count of cold-tier bytes in step with this sequence. */
static void account_cold(lethe_seq *s) {
    size_t b = 0;
    if (s->cold)
        for (int i = 0; i < s->n_streams; i++) b += kv_cold_bytes(&s->cold[i]);
    s->m->cold_bytes = s->m->cold_bytes - s->cold_bytes + b;
    if (s->m->cold_bytes > s->m->cold_peak) s->m->cold_peak = s->m->cold_bytes;
    s->cold_bytes = b;
}

/* Cold tier set-up: one store per stream, and its capacity when the cold
 * bytes count against the budget (what the hot pages leave over). */
static lethe_status setup_cold(lethe_seq *s, int budget) {
    const kv_policy_ops *ops = s->policy->ops;
    s->cold_capacity = -1;
    if (!ops->cold_tier) return LETHE_OK;
    const int P = kv_pool_page_slots(s->m->kv), hd = s->m->hp.head_dim;
    s->cold = calloc((size_t)s->n_streams, sizeof *s->cold);
    s->demote = calloc((size_t)s->n_streams, sizeof *s->demote);
    s->cold_keep = calloc((size_t)s->n_streams, sizeof *s->cold_keep);
    s->cold_keep_cap = calloc((size_t)s->n_streams, sizeof *s->cold_keep_cap);
    if (!s->cold || !s->demote || !s->cold_keep || !s->cold_keep_cap) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->n_streams; i++)
        if (kv_cold_init(&s->cold[i], ops->cold_dtype, P, hd) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_ARG, "cannot set up the cold tier");
    if (ops->cold_in_budget) {
        /* whole cold pages that fit in the bytes the hot budget leaves over */
        size_t page_bytes = kv_pool_page_bytes(s->m->kv);
        size_t total_pages = ((size_t)budget + P - 1) / P, hot_pages = ((size_t)s->min_budget + P - 1) / P;
        double cold_page_bytes = kv_cold_slot_bytes(&s->cold[0]) * P;
        size_t cold_pages = (size_t)((double)((total_pages - hot_pages) * page_bytes) / cold_page_bytes);
        s->cold_capacity = (int)(cold_pages * (size_t)P);
    }
    return LETHE_OK;
}

/* Sets up the policy and the per-stream budgets. */
static lethe_status seq_setup_policy(lethe_seq *s, const lethe_kv_policy_params *kp) {
    lethe_model *m = s->m;
    const char *name = kp->name ? kp->name : "full";
    const kv_policy_ops *ops = policy_find(name);
    if (!ops) return set_error(s->err, LETHE_ERR_ARG, "unknown KV policy '%s'", name);
    const size_t P = (size_t)kv_pool_page_slots(m->kv);
    /* the share of the pool one sequence may hold */
    size_t share = kv_pool_n_pages(m->kv) / (size_t)m->params.n_seq_max / (size_t)s->n_streams * P;
    int budget = kp->budget > 0 ? kp->budget : (int)(share < (size_t)s->n_ctx ? share : (size_t)s->n_ctx);
    if (budget < 1) return set_error(s->err, LETHE_ERR_BUDGET, "KV budget of %d slots is too small", budget);
    if ((size_t)budget > share)
        return set_error(s->err, LETHE_ERR_BUDGET,
                         "a budget of %d slots per layer and KV head needs %zu pages per stream, but the pool gives each of "
                         "%d sequences %zu (raise --kv-budget-mib or lower --kv-budget)",
                         budget, ((size_t)budget + P - 1) / P, m->params.n_seq_max, share / P);
    s->policy = policy_create(ops, kp);
    if (!s->policy) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    s->policy->params.budget = budget;
    if (ops->needs_calibration) {
        s->head_reach = malloc((size_t)s->n_streams * sizeof *s->head_reach);
        if (!s->head_reach) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        lethe_status st = calibrate_load_or_run(m, &s->policy->params, s->head_reach, s->err);
        if (st) return st;
    }
    policy_view v = view_of(s, false);
    for (int i = 0; i < s->n_streams; i++) s->budget[i] = budget;
    if (ops->budgets) {
        lethe_status st = ops->budgets(s->policy, &v, budget, s->budget);
        if (st) return set_error(s->err, st, "policy %s: %s", name, s->policy->err);
        size_t pages = 0;
        for (int i = 0; i < s->n_streams; i++) pages += ((size_t)s->budget[i] + P - 1) / P;
        if (pages > (share / P) * (size_t)s->n_streams)
            return set_error(s->err, LETHE_ERR_BUDGET, "policy %s: per-head budgets exceed the sequence's pages", name);
    }
    s->min_budget = s->budget[0];
    for (int i = 0; i < s->n_streams; i++) {
        if (s->budget[i] < s->min_budget) s->min_budget = s->budget[i];
        if (ops->needs_stats && kv_stream_enable_stats(&s->streams[i]) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
        if (ops->aux_width > 0 && kv_stream_enable_aux(&s->streams[i], ops->aux_width) != LETHE_OK)
            return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
    }
    if (s->min_budget < 1) return set_error(s->err, LETHE_ERR_BUDGET, "policy %s gave a stream no slots", name);
    return setup_cold(s, budget);
}

lethe_seq *lethe_seq_create(lethe_model *m, const lethe_seq_params *params, char *err, size_t err_size) {
    lethe_seq_params p = params ? *params : lethe_seq_default_params();
    int n_ctx = p.n_ctx > 0 ? p.n_ctx : m->params.n_ctx;
    if (n_ctx > m->params.n_ctx) {
        if (err && err_size) snprintf(err, err_size, "sequence context %d exceeds the model's n_ctx %d", n_ctx, m->params.n_ctx);
        return NULL;
    }
    lethe_seq *s = seq_alloc(m, n_ctx);
    if (!s) {
        if (err && err_size) snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (seq_setup_policy(s, &p.kv) != LETHE_OK) {
        if (err && err_size) snprintf(err, err_size, "%s", s->err);
        lethe_seq_free(s);
        return NULL;
    }
    return s;
}

lethe_seq *lethe_seq_fork(lethe_seq *src, char *err, size_t err_size) {
    lethe_seq *s = seq_alloc(src->m, src->n_ctx);
    if (!s || seq_setup_policy(s, &src->policy->params) != LETHE_OK) {
        if (err && err_size) snprintf(err, err_size, "%s", s ? s->err : "out of memory");
        lethe_seq_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n_streams; i++) {
        kv_stream_free(src->m->kv, &s->streams[i]);
        if (kv_stream_fork(src->m->kv, &src->streams[i], &s->streams[i]) != LETHE_OK) {
            if (err && err_size) snprintf(err, err_size, "out of memory while forking");
            lethe_seq_free(s);
            return NULL;
        }
    }
    for (int i = 0; s->cold && i < s->n_streams; i++) {
        if (kv_cold_copy(&s->cold[i], &src->cold[i]) != LETHE_OK) {
            if (err && err_size) snprintf(err, err_size, "out of memory while forking the cold tier");
            lethe_seq_free(s);
            return NULL;
        }
    }
    if (s->cold) account_cold(s);
    s->n_past = src->n_past;
    return s;
}

void lethe_seq_free(lethe_seq *s) {
    if (!s) return;
    if (s->streams)
        for (int i = 0; i < s->n_streams; i++) kv_stream_free(s->m->kv, &s->streams[i]);
    if (s->keep)
        for (int i = 0; i < s->n_streams; i++) free(s->keep[i]);
    if (s->cold) {
        for (int i = 0; i < s->n_streams; i++) {
            kv_cold_free(&s->cold[i]);
            free(s->demote[i]);
            free(s->cold_keep[i]);
        }
        account_cold(s);
    }
    free(s->cold);
    free(s->demote);
    free(s->cold_keep);
    free(s->cold_keep_cap);
    policy_free(s->policy);
    free(s->head_reach);
    free(s->streams);
    free(s->budget);
    free(s->target);
    free(s->keep);
    free(s->keep_cap);
    free(s->pos);
    free(s);
}

int lethe_seq_n_past(const lethe_seq *s) { return s->n_past; }
const char *lethe_seq_error(const lethe_seq *s) { return s->err; }

/* Asks the policy to free room for c more tokens in every stream, then
 * carries out its plan. */
static lethe_status make_room(lethe_seq *s, int c) {
    bool over = false;
    for (int i = 0; i < s->n_streams; i++) {
        int n = s->streams[i].n;
        s->target[i] = n + c > s->budget[i] ? s->budget[i] - c : n;
        if (s->target[i] < 0) s->target[i] = 0;
        over |= s->target[i] < n;
    }
    if (!over) return LETHE_OK;
    for (int i = 0; i < s->n_streams; i++) {
        int n = s->streams[i].n;
        if (n > s->keep_cap[i]) {
            uint8_t *k = realloc(s->keep[i], (size_t)n);
            uint8_t *d = s->cold ? realloc(s->demote[i], (size_t)n) : NULL;
            if (k) s->keep[i] = k;
            if (d) s->demote[i] = d;
            if (!k || (s->cold && !d)) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
            s->keep_cap[i] = n;
        }
        memset(s->keep[i], 1, (size_t)n);
        if (s->cold) {
            int nc = s->cold[i].n_slots;
            if (nc > s->cold_keep_cap[i]) {
                uint8_t *k = realloc(s->cold_keep[i], (size_t)nc);
                if (!k) return set_error(s->err, LETHE_ERR_NOMEM, "out of memory");
                s->cold_keep[i] = k;
                s->cold_keep_cap[i] = nc;
            }
            if (n) memset(s->demote[i], 0, (size_t)n);
            if (nc) memset(s->cold_keep[i], 1, (size_t)nc);
        }
    }
    policy_view v = view_of(s, false);
    policy_plan plan = {s->keep, s->cold ? s->demote : NULL, s->cold ? s->cold_keep : NULL};
    lethe_status st = s->policy->ops->plan(s->policy, &v, s->target, &plan);
    if (st) return set_error(s->err, st, "policy %s: %s", s->policy->ops->name, s->policy->err);
    int *idx = NULL;
    float *score = NULL;
    for (int i = 0; i < s->n_streams && !st; i++) {
        kv_stream *str = &s->streams[i];
        int kept = 0, n = str->n;
        for (int j = 0; j < n; j++) kept += s->keep[i][j] != 0;
        if (kept > s->target[i])
            return set_error(s->err, LETHE_ERR_BUDGET, "policy %s kept %d slots in stream %d, over its target %d",
                             s->policy->ops->name, kept, i, s->target[i]);
        if (s->cold) {
            kv_cold *cold = &s->cold[i];
            bool drop_cold = false;
            for (int j = 0; j < cold->n_slots; j++) drop_cold |= !s->cold_keep[i][j];
            if (drop_cold && (st = kv_cold_compact(cold, s->cold_keep[i]))) break;
            int nd = 0;
            for (int j = 0; j < n; j++) nd += !s->keep[i][j] && s->demote[i][j];
            if (nd) {
                int *ni = realloc(idx, (size_t)nd * sizeof *idx);
                float *ns = realloc(score, (size_t)nd * sizeof *score);
                if (ni) idx = ni;
                if (ns) score = ns;
                if (!ni || !ns) { st = LETHE_ERR_NOMEM; break; }
                nd = 0;
                for (int j = 0; j < n; j++)
                    if (!s->keep[i][j] && s->demote[i][j]) {
                        idx[nd] = j;
                        score[nd++] = str->attn_acc ? str->attn_acc[j] : 0.0f;
                    }
                if ((st = kv_cold_add(cold, s->m->kv, str, idx, score, nd))) break;
            }
            if (s->cold_capacity >= 0 && cold->n_slots > s->cold_capacity) {
                free(idx);
                free(score);
                return set_error(s->err, LETHE_ERR_BUDGET, "policy %s left %d cold slots in stream %d, over its capacity %d",
                                 s->policy->ops->name, cold->n_slots, i, s->cold_capacity);
            }
        }
        if (kept < n && (st = kv_stream_compact(s->m->kv, str, s->keep[i]))) break;
    }
    free(idx);
    free(score);
    account_cold(s);
    if (st) return set_error(s->err, st, "compacting the KV cache failed (%s)", lethe_status_name(st));
    return LETHE_OK;
}

static lethe_status run(lethe_seq *s, const lethe_token *ids, int n, float *logits, bool all, bool stats) {
    if (n > s->pos_cap) {
        int32_t *p = realloc(s->pos, (size_t)n * sizeof *p);
        if (!p) return set_error(s->err, LETHE_ERR_NOMEM, "append: out of memory");
        s->pos = p;
        s->pos_cap = n;
    }
    for (int i = 0; i < n; i++) s->pos[i] = s->n_past + i;
    const policy_params *pp = &s->policy->params;
    attn_stats_cfg cfg = {stats, pp->hit_threshold, s->n_past + n - 1};
    forward_state fs = {s->streams, stats ? &cfg : NULL, s->cold, 0};
    if (s->cold && s->policy->ops->cold_select) {
        int P = kv_pool_page_slots(s->m->kv);
        fs.cold_pages = pp->quest_pages > 0 ? pp->quest_pages : (pp->budget + P - 1) / P;
    }
    lethe_status st = forward_batch(s->m, &fs, ids, s->pos, n, logits, all, s->err);
    if (st) return st;
    s->n_past += n;
    if (s->policy->ops->observe) {
        policy_view v = view_of(s, n > 1);
        s->policy->ops->observe(s->policy, &v);
    }
    return LETHE_OK;
}

static lethe_status append(lethe_seq *s, const lethe_token *ids, int n, float *logits, bool all) {
    if (n <= 0 || !ids) return set_error(s->err, LETHE_ERR_ARG, "append: no tokens");
    const kv_policy_ops *ops = s->policy->ops;
    const int V = s->m->hp.n_vocab;
    if (!ops->may_evict) {
        int cap = s->min_budget < s->n_ctx ? s->min_budget : s->n_ctx;
        if (n > cap - s->n_past)
            return set_error(s->err, LETHE_ERR_BUDGET, "append: %d tokens after %d would exceed the %s of %d tokens", n,
                             s->n_past, cap == s->n_ctx ? "context" : "KV budget", cap);
        return run(s, ids, n, logits, all, ops->needs_stats);
    }
    /* Chunks of at most half the smallest budget, so that a prompt longer
     * than the budget streams through and the policy always keeps at
     * least half of its budget from before each chunk. */
    int chunk = s->min_budget / 2 > 0 ? s->min_budget / 2 : 1;
    for (int done = 0; done < n;) {
        int c = n - done < chunk ? n - done : chunk;
        bool last = done + c == n;
        float *out = all ? logits + (size_t)done * V : last ? logits : NULL;
        lethe_status st = make_room(s, c);
        if (st) return st;
        int obs = ops->obs_window_only ? s->policy->params.obs_window : 0;
        if (ops->needs_stats && obs > 0 && c > obs) {
            /* SnapKV scores slots by the attention of the last obs queries only */
            st = run(s, ids + done, c - obs, all ? out : NULL, all, false);
            if (!st) st = run(s, ids + done + c - obs, obs, all ? out + (size_t)(c - obs) * V : out, all, true);
        } else {
            st = run(s, ids + done, c, out, all, ops->needs_stats);
        }
        if (st) return st;
        done += c;
    }
    return LETHE_OK;
}

lethe_status lethe_seq_append(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    return append(s, ids, n, logits, false);
}

lethe_status lethe_seq_append_all_logits(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    return append(s, ids, n, logits, true);
}

lethe_status lethe_seq_decode(lethe_seq *s, lethe_token id, float *logits) { return append(s, &id, 1, logits, false); }
