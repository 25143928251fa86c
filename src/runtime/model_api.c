/* lethe.h entry points for models and tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_kernels.h"
#include "kv/kv_convert.h"
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

const char *lethe_version(void) { return LETHE_VERSION_STRING; }

lethe_model_params lethe_model_default_params(void) {
    lethe_model_params p = {0};
    return p;
}

/* The CPU dispatch tables are filled once here, so that contexts on many
 * threads only ever read them. */
static void warm_dispatch(void) {
    for (int t = 0; t < LT_TYPE_COUNT; t++) (void)lt_type_traits((lt_type)t);
    (void)kv_convert_simd();
    (void)attn_kernels_get();
}

lethe_model *lethe_model_load(const char *path, const lethe_model_params *params, char *err, size_t err_size) {
    if (!path) {
        copy_error(err, err_size, "lethe_model_load: no path");
        return NULL;
    }
    lethe_model *m = calloc(1, sizeof *m);
    if (!m) {
        copy_error(err, err_size, "out of memory");
        return NULL;
    }
    warm_dispatch();
    const char *tok_path = params ? params->tokenizer_path : NULL;
    lethe_status st = lt_gguf_has_magic(path) ? model_load_gguf(m, path) : model_load_llama2c(m, path, tok_path);
    if (st) {
        copy_error(err, err_size, m->err[0] ? m->err : lethe_status_name(st));
        lethe_model_free(m); /* frees whatever part was made */
        return NULL;
    }
    return m;
}

void lethe_model_free(lethe_model *m) {
    if (!m) return;
    model_destroy(m);
    free(m);
}

lethe_status lethe_model_get_info(const lethe_model *m, lethe_model_info *info) {
    if (!info) return LETHE_ERR_ARG;
    memset(info, 0, sizeof *info);
    if (!m) return LETHE_ERR_ARG;
    const hparams *hp = &m->hp;
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
    char piece[8];
    for (int id = 0; id < hp->n_vocab; id++) {
        int n = tokenizer_piece(m->tok, id, piece, 0, true);
        if (n > info->max_piece_bytes) info->max_piece_bytes = n;
    }
    return LETHE_OK;
}

int lethe_tokenize(const lethe_model *m, const char *text, size_t len, lethe_token *ids, int cap, bool add_special,
                   bool parse_special) {
    if (!m || (!text && len > 0) || (!ids && cap > 0) || cap < 0) return -1;
    return tokenizer_encode(m->tok, text, len, ids, cap, add_special, parse_special);
}

int lethe_token_piece(const lethe_model *m, lethe_token id, char *buf, int cap, bool render_special) {
    if (!m || (!buf && cap > 0) || cap < 0) return -1;
    return tokenizer_piece(m->tok, id, buf, cap, render_special);
}

bool lethe_token_is_eog(const lethe_model *m, lethe_token id) { return m && tokenizer_is_eog(m->tok, id); }

const char *lethe_model_chat_template(const lethe_model *m) { return m ? m->chat_template : NULL; }

struct lethe_detok {
    const lethe_model *m;
    bool render_special;
    detok_stream st;
};

lethe_detok *lethe_detok_create(const lethe_model *m, bool render_special) {
    if (!m) return NULL;
    lethe_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->m = m;
    d->render_special = render_special;
    detok_stream_init(&d->st);
    return d;
}

int lethe_detok_push(lethe_detok *d, lethe_token id, char *out, int cap) {
    if (!d || (!out && cap > 0) || cap < 0) return -1;
    return detok_stream_push(&d->st, d->m->tok, id, out, cap, d->render_special);
}

int lethe_detok_flush(lethe_detok *d, char *out, int cap) {
    if (!d || (!out && cap > 0) || cap < 0) return -1;
    return detok_stream_flush(&d->st, out, cap);
}

void lethe_detok_free(lethe_detok *d) { free(d); }
