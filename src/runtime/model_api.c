/* lethe.h entry points for models and tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

const char *lethe_status_name(lethe_status s) {
    switch (s) {
    case LETHE_OK: return "ok";
    case LETHE_ERR_IO: return "io";
    case LETHE_ERR_FORMAT: return "format";
    case LETHE_ERR_UNSUPPORTED: return "unsupported";
    case LETHE_ERR_NOMEM: return "out of memory";
    case LETHE_ERR_ARG: return "bad argument";
    case LETHE_ERR_BUDGET: return "budget exceeded";
    }
    return "unknown";
}

lethe_model_params lethe_model_default_params(void) {
    lethe_model_params p = {0};
    p.n_threads = 0;
    p.n_ctx = 0;
    p.n_seq_max = 1;
    p.kv_type = LETHE_KV_F16;
    p.kv_page_slots = 32;
    return p;
}

static lethe_status create_engine(lethe_model *m) {
    const lethe_model_params *p = &m->params;
    hparams *hp = &m->hp;
    m->tp = tp_create(p->n_threads);
    m->attn = attn_scratch_create();
    if (!m->tp || !m->attn) return set_error(m->err, LETHE_ERR_NOMEM, "cannot start threads / scratch");
    if (m->params.n_ctx <= 0) m->params.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (m->params.n_seq_max <= 0) m->params.n_seq_max = 1;
    if (m->params.kv_page_slots <= 0) m->params.kv_page_slots = 32;
    lt_type dtype = p->kv_type == LETHE_KV_F32 ? LT_F32 : p->kv_type == LETHE_KV_F16 ? LT_F16 : LT_Q8_0;
    if (p->kv_type > LETHE_KV_Q8_0) return set_error(m->err, LETHE_ERR_ARG, "unknown KV type %d", (int)p->kv_type);
    if (dtype == LT_Q8_0 && hp->head_dim % 32 != 0)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "a Q8_0 KV cache needs a head dimension divisible by 32 (this model: %d)",
                         hp->head_dim);
    size_t P = (size_t)m->params.kv_page_slots;
    size_t n_streams = (size_t)hp->n_layer * (size_t)hp->n_head_kv;
    size_t pages_per_stream = ((size_t)m->params.n_ctx + P - 1) / P;
    kv_pool_params kp = {m->params.kv_page_slots, hp->head_dim, dtype, pages_per_stream * n_streams * (size_t)m->params.n_seq_max};
    if (p->kv_budget_mib > 0) {
        /* the pool is the budget: sequences share it, each stream at most its fair share */
        size_t page_bytes = lt_row_bytes(dtype, hp->head_dim) * 2 * P;
        kp.n_pages = (size_t)(p->kv_budget_mib * 1048576.0) / page_bytes;
        if (kp.n_pages < n_streams * (size_t)m->params.n_seq_max)
            return set_error(m->err, LETHE_ERR_BUDGET,
                             "a KV budget of %.3f MiB holds %zu pages of %zu bytes, fewer than one per layer and KV head (%zu)",
                             p->kv_budget_mib, kp.n_pages, page_bytes, n_streams * (size_t)m->params.n_seq_max);
    }
    char err[LETHE_ERR_MAX];
    m->kv = kv_pool_create(&kp, err);
    if (!m->kv) return set_error(m->err, LETHE_ERR_NOMEM, "cannot create the KV pool: %s", err);
    return LETHE_OK;
}

lethe_model *lethe_model_load(const char *path, const lethe_model_params *params, char *err, size_t err_size) {
    lethe_model *m = calloc(1, sizeof *m);
    if (!m) {
        if (err && err_size) snprintf(err, err_size, "out of memory");
        return NULL;
    }
    m->params = params ? *params : lethe_model_default_params();
    lethe_status st = gguf_has_magic(path) ? model_load_gguf(m, path) : model_load_llama2c(m, path, m->params.tokenizer_path);
    if (!st) st = create_engine(m);
    if (st) {
        if (err && err_size) snprintf(err, err_size, "%s", m->err[0] ? m->err : lethe_status_name(st));
        lethe_model_free(m); /* frees whatever part was made */
        return NULL;
    }
    return m;
}

void lethe_model_free(lethe_model *m) {
    if (!m) return;
    kv_pool_free(m->kv);
    kv_pool_free(m->cold_view);
    attn_scratch_free(m->attn);
    free(m->scratch);
    model_destroy(m);
    free(m);
}

void lethe_model_get_info(const lethe_model *m, lethe_model_info *info) {
    const hparams *hp = &m->hp;
    memset(info, 0, sizeof *info);
    info->arch = m->arch->name;
    info->name = m->name;
    info->n_vocab = hp->n_vocab;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->n_ff = hp->n_ff;
    info->n_ctx_train = hp->n_ctx_train;
    info->rope_freq_base = hp->rope_base;
    info->rms_eps = hp->rms_eps;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
    info->bos = tokenizer_bos(m->tok);
    info->eos = tokenizer_eos(m->tok);
}

int lethe_model_n_threads(const lethe_model *m) { return tp_n_threads(m->tp); }

void lethe_model_kv_usage(const lethe_model *m, lethe_kv_usage *u) {
    u->bytes_used = kv_pool_bytes_used(m->kv);
    u->bytes_total = kv_pool_n_pages(m->kv) * kv_pool_page_bytes(m->kv);
    u->bytes_peak = kv_pool_peak_pages_used(m->kv) * kv_pool_page_bytes(m->kv);
    u->page_bytes = kv_pool_page_bytes(m->kv);
    u->page_slots = kv_pool_page_slots(m->kv);
    u->cold_bytes = m->cold_bytes;
    u->cold_peak = m->cold_peak;
}

void lethe_model_kv_reset_peak(lethe_model *m) {
    kv_pool_reset_peak(m->kv);
    m->cold_peak = m->cold_bytes;
}

int lethe_tokenize(const lethe_model *m, const char *text, size_t len, lethe_token *ids, int cap, bool add_special,
                   bool parse_special) {
    return tokenizer_encode(m->tok, text, len, ids, cap, add_special, parse_special);
}

int lethe_token_piece(const lethe_model *m, lethe_token id, char *buf, int cap, bool render_special) {
    return tokenizer_piece(m->tok, id, buf, cap, render_special);
}

bool lethe_token_is_eog(const lethe_model *m, lethe_token id) { return tokenizer_is_eog(m->tok, id); }

struct lethe_detok {
    const lethe_model *m;
    bool render_special;
    detok_stream st;
};

lethe_detok *lethe_detok_create(const lethe_model *m, bool render_special) {
    lethe_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->m = m;
    d->render_special = render_special;
    detok_stream_init(&d->st);
    return d;
}

int lethe_detok_push(lethe_detok *d, lethe_token id, char *out, int cap) {
    return detok_stream_push(&d->st, d->m->tok, id, out, cap, d->render_special);
}

int lethe_detok_flush(lethe_detok *d, char *out, int cap) { return detok_stream_flush(&d->st, out, cap); }

void lethe_detok_free(lethe_detok *d) { free(d); }
