/* Model life cycle shared by both loaders: validation and teardown. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

float *model_own(lethe_model *m, size_t n_floats) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 16;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    float *buf = malloc((n_floats ? n_floats : 1) * sizeof(float));
    if (!buf) return NULL;
    m->owned[m->n_owned++] = buf;
    return buf;
}

void model_destroy(lethe_model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    free(m->chat_template);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    lt_gguf_close(m->gguf);
    if (m->map) munmap(m->map, m->map_size);
}

static lethe_status check_weight(lethe_model *m, const weight *w, const char *what, int layer, int64_t cols, int64_t rows) {
    char name[64];
    if (layer >= 0) snprintf(name, sizeof name, "blk.%d.%s", layer, what);
    else snprintf(name, sizeof name, "%s", what);
    if (!w->data) return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' is missing", name);
    if (w->n_cols != cols || w->n_rows != rows)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                         (long long)w->n_cols, (long long)w->n_rows, (long long)cols, (long long)rows);
    const lt_traits *tr = lt_type_traits(w->type);
    if (!lt_type_supported(w->type) || !tr)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: tensor '%s' has type %s, which lethe does not support", name,
                         lt_type_name(w->type));
    const lt_traits *act = lt_type_traits(tr->vec_dot_type);
    if (!act || cols % act->block_size != 0)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: tensor '%s' (%s) has rows of %lld, not a multiple of %lld", name,
                         tr->name, (long long)cols, (long long)(act ? act->block_size : 0));
    return LETHE_OK;
}

lethe_status model_validate(lethe_model *m) {
    hparams *hp = &m->hp;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: bad hyper-parameters (embd %d, layers %d, heads %d/%d, ff %d, vocab %d)",
                         hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab);
    if (hp->n_head % hp->n_head_kv != 0)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: %d heads are not a multiple of %d KV heads", hp->n_head, hp->n_head_kv);
    if (hp->head_dim <= 0 || hp->head_dim % 2 != 0)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: head dimension %d must be positive and even", hp->head_dim);
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: rope dimension %d invalid for head dimension %d", hp->n_rot, hp->head_dim);
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_base > 0.0f))
        return set_error(m->err, LETHE_ERR_FORMAT, "model: rms epsilon and rope base must be positive");
    if (hp->n_ctx_train <= 0) hp->n_ctx_train = 2048;

    int64_t d = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    lethe_status st;
    if (!m->tok_embd.data || m->tok_embd.n_cols != d || m->tok_embd.n_rows != hp->n_vocab)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: token embedding missing or not [%lld, %d]", (long long)d, hp->n_vocab);
    const lt_traits *et = lt_type_traits(m->tok_embd.type);
    if (!et || !et->to_float)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: tensor 'token_embd.weight' has type %s, which lethe does not support",
                         lt_type_name(m->tok_embd.type));
    if ((st = check_weight(m, &m->output, "output.weight", -1, d, hp->n_vocab))) return st;
    if (!m->output_norm) return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor 'output_norm.weight' is missing");
    for (int l = 0; l < hp->n_layer; l++) {
        layer_weights *L = &m->layers[l];
        if (!L->attn_norm || !L->ffn_norm) return set_error(m->err, LETHE_ERR_FORMAT, "model: layer %d lacks a norm weight", l);
        if ((st = check_weight(m, &L->wq, "attn_q.weight", l, d, q_dim))) return st;
        if ((st = check_weight(m, &L->wk, "attn_k.weight", l, d, kv_dim))) return st;
        if ((st = check_weight(m, &L->wv, "attn_v.weight", l, d, kv_dim))) return st;
        if ((st = check_weight(m, &L->wo, "attn_output.weight", l, q_dim, d))) return st;
        if ((st = check_weight(m, &L->w_gate, "ffn_gate.weight", l, d, hp->n_ff))) return st;
        if ((st = check_weight(m, &L->w_up, "ffn_up.weight", l, d, hp->n_ff))) return st;
        if ((st = check_weight(m, &L->w_down, "ffn_down.weight", l, hp->n_ff, d))) return st;
        if (m->arch->qkv_bias && (!L->bq || !L->bk || !L->bv))
            return set_error(m->err, LETHE_ERR_FORMAT, "model: layer %d lacks the q/k/v biases %s needs", l, m->arch->name);
    }
    return LETHE_OK;
}
