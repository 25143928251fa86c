/* Contexts: the engine state that used to live in the model. */
#include <stdio.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/alloc.h"

lethe_ctx_params lethe_ctx_default_params(void) {
    lethe_ctx_params p;
    memset(&p, 0, sizeof p);
    p.n_seq_max = 1;
    p.kv_type = LETHE_KV_F16;
    p.kv_page_slots = 32;
    p.shared_prefix_attn = true;
    return p;
}

lt_type ctx_kv_dtype(lethe_kv_type t) {
    return t == LETHE_KV_F32 ? LT_F32 : t == LETHE_KV_F16 ? LT_F16 : t == LETHE_KV_Q4_0 ? LT_Q4_0 : LT_Q8_0;
}

/* Pages of the pool: n_ctx slots per stream for n_seq_max sequences, or
 * what kv_budget_mib holds. */
static lethe_status pool_params(const lethe_ctx *c, kv_pool_params *kp, char *err) {
    const lethe_ctx_params *p = &c->params;
    const hparams *hp = &c->m->hp;
    const lt_type dtype = ctx_kv_dtype(p->kv_type);
    if ((dtype == LT_Q8_0 || dtype == LT_Q4_0) && hp->head_dim % 32 != 0)
        return set_error(err, LETHE_ERR_UNSUPPORTED, "a %s KV cache needs a head dimension divisible by 32 (this model: %d)",
                         dtype == LT_Q8_0 ? "Q8_0" : "Q4_0", hp->head_dim);
    size_t P = (size_t)p->kv_page_slots;
    size_t n_streams = (size_t)hp->n_layer * (size_t)hp->n_head_kv;
    size_t pages_per_stream = ((size_t)p->n_ctx + P - 1) / P;
    *kp = (kv_pool_params){p->kv_page_slots, hp->head_dim, dtype, pages_per_stream * n_streams * (size_t)p->n_seq_max};
    if (p->kv_budget_mib > 0) {
        /* the pool is the budget: sequences share it, each stream at most its fair share */
        size_t page_bytes = lt_row_bytes(dtype, hp->head_dim) * 2 * P;
        double pages = p->kv_budget_mib * 1048576.0 / (double)page_bytes;
        kp->n_pages = pages < 1e15 ? (size_t)pages : (size_t)1e15;
        if (kp->n_pages < n_streams * (size_t)p->n_seq_max)
            return set_error(err, LETHE_ERR_BUDGET,
                             "a KV budget of %.3f MiB holds %zu pages of %zu bytes, fewer than one per layer and KV head (%zu)",
                             p->kv_budget_mib, kp->n_pages, page_bytes, n_streams * (size_t)p->n_seq_max);
    }
    return LETHE_OK;
}

static lethe_status check_params(const lethe_ctx_params *p, char *err) {
    if (p->n_threads > 1024) return set_error(err, LETHE_ERR_ARG, "n_threads %d is out of range [1, 1024]", p->n_threads);
    if (p->n_ctx > (1 << 24)) return set_error(err, LETHE_ERR_ARG, "n_ctx %d is out of range [1, 16777216]", p->n_ctx);
    if (p->n_seq_max > 65536) return set_error(err, LETHE_ERR_ARG, "n_seq_max %d is out of range [1, 65536]", p->n_seq_max);
    if ((unsigned)p->kv_type > LETHE_KV_Q4_0) return set_error(err, LETHE_ERR_ARG, "unknown KV type %d", (int)p->kv_type);
    if (p->kv_page_slots > 4096) return set_error(err, LETHE_ERR_ARG, "kv_page_slots %d is out of range [1, 4096]", p->kv_page_slots);
    if (!(p->kv_budget_mib >= 0 && p->kv_budget_mib <= 1e9))
        return set_error(err, LETHE_ERR_ARG, "kv_budget_mib must be in [0, 1e9] MiB");
    return LETHE_OK;
}

lethe_ctx *lethe_ctx_create(const lethe_model *m, const lethe_ctx_params *params, char *err, size_t err_size) {
    char e[LETHE_ERR_MAX] = "";
    if (!m) {
        copy_error(err, err_size, "lethe_ctx_create: no model");
        return NULL;
    }
    lethe_ctx_params p = params ? *params : lethe_ctx_default_params();
    if (check_params(&p, e)) {
        copy_error(err, err_size, e);
        return NULL;
    }
    lethe_ctx *c = lt_calloc(1, sizeof *c);
    if (!c) {
        copy_error(err, err_size, "out of memory");
        return NULL;
    }
    c->m = m;
    const hparams *hp = &m->hp;
    if (p.n_ctx <= 0) p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_seq_max <= 0) p.n_seq_max = 1;
    if (p.kv_page_slots <= 0) p.kv_page_slots = 32;
    c->params = p;
    kv_pool_params kp;
    lethe_status st = pool_params(c, &kp, e);
    if (!st) {
        c->tp = tp_create(p.n_threads);
        c->attn = attn_scratch_create();
        c->views = lt_calloc((size_t)hp->n_head_kv, sizeof *c->views);
        if (!c->tp || !c->attn || !c->views) st = set_error(e, LETHE_ERR_NOMEM, "cannot start threads / scratch");
    }
    if (!st) {
        for (int h = 0; h < hp->n_head_kv; h++) kv_stream_init(&c->views[h]);
        char perr[LETHE_ERR_MAX];
        c->kv = kv_pool_create(&kp, perr);
        if (!c->kv) st = set_error(e, LETHE_ERR_NOMEM, "cannot create the KV pool: %s", perr);
    }
    if (st) {
        copy_error(err, err_size, e);
        lethe_ctx_free(c);
        return NULL;
    }
    return c;
}

void lethe_ctx_free(lethe_ctx *c) {
    if (!c) return;
    while (c->n_seqs > 0) lethe_seq_free(c->seqs[c->n_seqs - 1]);
    lt_free(c->seqs);
    if (c->views)
        for (int h = 0; h < c->m->hp.n_head_kv; h++) kv_stream_free(NULL, &c->views[h]); /* arrays only: views own no pages */
    lt_free(c->views);
    kv_pool_free(c->kv);
    attn_scratch_free(c->attn);
    tp_free(c->tp);
    lt_workspace_free(&c->ws);
    lt_free(c->act);
    lt_free(c->att2);
    lt_free(c->lse);
    lt_free(c->lse2);
    lt_free(c->rank);
    lt_free(c->retrieval);
    lt_free(c->sh_jobs);
    step_scratch_free(c->step);
    lt_free(c);
}

const lethe_model *lethe_ctx_model(const lethe_ctx *c) { return c ? c->m : NULL; }
int lethe_ctx_n_threads(const lethe_ctx *c) { return c ? tp_n_threads(c->tp) : 0; }
int lethe_ctx_n_ctx(const lethe_ctx *c) { return c ? c->params.n_ctx : 0; }
const char *lethe_ctx_error(const lethe_ctx *c) { return c ? c->err : "no context"; }

static size_t staging_bytes(const lethe_ctx *c) {
    /* cold pages are attended in place: the staging is the views' page lists
     * and positions, and the ranking scratch */
    size_t b = c->rank_bytes;
    for (int h = 0; c->views && h < c->m->hp.n_head_kv; h++)
        b += (size_t)c->views[h].cap * sizeof(int32_t) + (size_t)c->views[h].pages_cap * sizeof(int32_t);
    return b;
}

lethe_status lethe_ctx_kv_usage(const lethe_ctx *c, lethe_kv_usage *u) {
    if (!c || !u) return LETHE_ERR_ARG;
    memset(u, 0, sizeof *u);
    u->bytes_used = kv_pool_bytes_used(c->kv);
    u->bytes_total = kv_pool_n_pages(c->kv) * kv_pool_page_bytes(c->kv);
    u->bytes_peak = kv_pool_peak_pages_used(c->kv) * kv_pool_page_bytes(c->kv);
    u->page_bytes = kv_pool_page_bytes(c->kv);
    u->page_slots = kv_pool_page_slots(c->kv);
    u->cold_bytes = c->cold_bytes;
    u->cold_peak = c->cold_peak;
    u->staging_bytes = staging_bytes(c);
    return LETHE_OK;
}

void lethe_ctx_kv_reset_peak(lethe_ctx *c) {
    if (!c) return;
    kv_pool_reset_peak(c->kv);
    c->cold_peak = c->cold_bytes;
}
