/* The weight bytes one decode step reads (model.h, model_decode_bytes). */
#include "model/model.h"

static uint64_t weight_bytes(const weight *w) {
    if (!w->data) return 0;
    return (uint64_t)lt_row_bytes(w->type, w->n_cols) * (uint64_t)w->n_rows;
}

static uint64_t row_bytes(const weight *w) { return w->data ? (uint64_t)lt_row_bytes(w->type, w->n_cols) : 0; }

/* Norms and biases are held as F32 (converted at load when stored
 * otherwise), so that is what a step reads. */
static uint64_t vec_bytes(const float *v, int64_t n) { return v ? (uint64_t)n * sizeof(float) : 0; }

uint64_t model_decode_bytes(const lethe_model *m) {
    const hparams *hp = &m->hp;
    uint64_t b = row_bytes(&m->tok_embd) + weight_bytes(&m->output) + vec_bytes(m->output_norm, hp->n_embd);
    for (int l = 0; l < hp->n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        b += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv) + weight_bytes(&L->wo);
        b += weight_bytes(&L->w_gate) + weight_bytes(&L->w_up) + weight_bytes(&L->w_down);
        b += vec_bytes(L->attn_norm, hp->n_embd) + vec_bytes(L->ffn_norm, hp->n_embd);
        b += vec_bytes(L->bq, L->wq.n_rows) + vec_bytes(L->bk, L->wk.n_rows) + vec_bytes(L->bv, L->wv.n_rows);
    }
    return b;
}
