#include "model/forward.h"

#include <math.h>
#include <string.h>

#include "model/ops.h"
#include "tensor/rope.h"
#include "tensor/swiglu.h"
#include "util/error.h"

/* Activation buffers for one chunk of c rows, carved from the scratch. */
typedef struct {
    float *x, *xb, *q, *k, *v, *att, *gate, *up, *rope;
} acts;

static size_t per_row_floats(const hparams *hp) {
    size_t d = (size_t)hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    return d * 2 + qd * 2 + kvd * 2 + (size_t)hp->n_ff * 2 + (size_t)hp->n_rot;
}

size_t forward_scratch_floats(const lethe_model *m, int n) {
    return per_row_floats(&m->hp) * (size_t)(n < 1 ? 1 : n > FWD_CHUNK ? FWD_CHUNK : n);
}

static void carve(const hparams *hp, float *p, int c, acts *a) {
    size_t d = (size_t)hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    a->x = p; p += d * c;
    a->xb = p; p += d * c;
    a->q = p; p += qd * c;
    a->att = p; p += qd * c;
    a->k = p; p += kvd * c;
    a->v = p; p += kvd * c;
    a->gate = p; p += (size_t)hp->n_ff * c;
    a->up = p; p += (size_t)hp->n_ff * c;
    a->rope = p;
}

static lethe_status matmul(const fwd_engine *e, const weight *w, const float *x, int n, float *y, char *err) {
    const lt_matmul_out o = {w->type, w->data, w->n_rows, y, w->x8};
    if (lt_matmul_group(e->tp, e->ws, &o, 1, w->n_cols, x, n) != 0)
        return set_error(err, LETHE_ERR_NOMEM, "forward: matmul failed (out of memory)");
    return LETHE_OK;
}

/* RMSNorm rows made inside the matmul that reads them (lt_matmul_group_rows:
 * each row normalised by whichever thread quantises it, while it is in L1). */
typedef struct {
    const float *x, *w;
    int d;
    float eps;
} norm_rows;

static void norm_row(const void *user, int64_t t, float *dst) {
    const norm_rows *n = user;
    op_rmsnorm(dst, n->x + t * n->d, n->w, n->d, n->eps);
}

/* y_i = W_i rmsnorm(x) for several matrices of one input (Q/K/V,
 * gate/up; n_cols = the weights' columns): the rows are normalised and
 * quantised once for all of them, and left normalised in xb. */
static lethe_status matmul_group_normed(const fwd_engine *e, const weight *const *w, float *const *y, int k,
                                        const norm_rows *nr, float *xb, int n, char *err) {
    lt_matmul_out o[3];
    for (int i = 0; i < k; i++) o[i] = (lt_matmul_out){w[i]->type, w[i]->data, w[i]->n_rows, y[i], w[i]->x8};
    const lt_matmul_rows src = {norm_row, nr, xb};
    if (lt_matmul_group_rows(e->tp, e->ws, o, k, w[0]->n_cols, &src, n) != 0)
        return set_error(err, LETHE_ERR_NOMEM, "forward: matmul failed (out of memory)");
    return LETHE_OK;
}

typedef struct {
    float *a;
    const float *b;
    long n;
} swiglu_job;

static void swiglu_task(void *arg, int ith, int nth) {
    swiglu_job *j = arg;
    long lo, hi;
    tp_split(j->n, ith, nth, &lo, &hi);
    lt_swiglu(j->a + lo, j->b + lo, hi - lo);
}

/* SwiGLU is the one element-wise op with real work per element (an exp):
 * split it across the pool for prompt chunks, so the workers do not idle. */
static void swiglu(const fwd_engine *e, float *a, const float *b, long n) {
    swiglu_job j = {a, b, n};
    tp_run(n >= 8192 ? e->tp : NULL, swiglu_task, &j);
}

static void add_bias(float *y, const float *b, int n_tok, int dim) {
    if (!b) return;
    for (int t = 0; t < n_tok; t++) op_add(y + (long)t * dim, b, dim);
}

/* Rows [r0, r0 + c) of the batch, through layer l. */
static lethe_status run_layer(const lethe_model *m, const fwd_engine *e, int r0, int c, int l, const acts *a, char *err) {
    const hparams *hp = &m->hp;
    const layer_weights *L = &m->layers[l];
    const int d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    lethe_status st;

    const weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {a->q, a->k, a->v};
    const norm_rows attn_norm = {a->x, L->attn_norm, d, hp->rms_eps};
    if ((st = matmul_group_normed(e, qkv, qkv_out, 3, &attn_norm, a->xb, c, err))) return st;
    add_bias(a->q, L->bq, c, qd);
    add_bias(a->k, L->bk, c, kvd);
    add_bias(a->v, L->bv, c, kvd);
    for (int t = 0; t < c; t++) {
        const float *cs = a->rope + (long)t * hp->n_rot;
        lt_rope_apply(a->q + (long)t * qd, hp->n_head, hd, hp->n_rot, cs, m->arch->rope == ROPE_NEOX);
        lt_rope_apply(a->k + (long)t * kvd, hp->n_head_kv, hd, hp->n_rot, cs, m->arch->rope == ROPE_NEOX);
    }
    if ((st = e->attend(e->user, l, r0, c, a->q, a->k, a->v, a->att, err))) return st;
    if ((st = matmul(e, &L->wo, a->att, c, a->xb, err))) return st;
    op_add(a->x, a->xb, (long)c * d);

    const weight *gu[2] = {&L->w_gate, &L->w_up};
    float *gu_out[2] = {a->gate, a->up};
    const norm_rows ffn_norm = {a->x, L->ffn_norm, d, hp->rms_eps};
    if ((st = matmul_group_normed(e, gu, gu_out, 2, &ffn_norm, a->xb, c, err))) return st;
    swiglu(e, a->gate, a->up, (long)c * hp->n_ff);
    if ((st = matmul(e, &L->w_down, a->gate, c, a->xb, err))) return st;
    op_add(a->x, a->xb, (long)c * d);
    return LETHE_OK;
}

/* Rows [r0, r0 + c); out_first: index into out_rows of the first wanted row
 * at or after r0. */
static lethe_status run_chunk(const lethe_model *m, const fwd_engine *e, const fwd_batch *b, int r0, int c, int *out_i,
                              float *logits, char *err) {
    const hparams *hp = &m->hp;
    const int d = hp->n_embd;
    acts a;
    carve(hp, e->scratch, c, &a);
    lethe_status st;

    const lt_traits *et = lt_type_traits(m->tok_embd.type);
    const size_t row_bytes = lt_row_bytes(m->tok_embd.type, d);
    for (int t = 0; t < c; t++)
        et->to_float((const uint8_t *)m->tok_embd.data + (size_t)b->ids[r0 + t] * row_bytes, a.x + (long)t * d, d);
    lt_rope_table(a.rope, b->pos + r0, c, hp->n_rot, hp->rope_base);

    for (int l = 0; l < hp->n_layer; l++)
        if ((st = run_layer(m, e, r0, c, l, &a, err))) return st;

    /* the wanted rows, normalised and packed at the front of xb */
    int first = *out_i, n_out = 0;
    while (*out_i < b->n_out && b->out_rows[*out_i] < r0 + c) {
        int t = b->out_rows[(*out_i)++] - r0;
        op_rmsnorm(a.xb + (long)n_out++ * d, a.x + (long)t * d, m->output_norm, d, hp->rms_eps);
    }
    if (n_out == 0) return LETHE_OK;
    return matmul(e, &m->output, a.xb, n_out, logits + (size_t)first * hp->n_vocab, err);
}

lethe_status forward_run(const lethe_model *m, const fwd_engine *e, const fwd_batch *b, float *logits, char *err) {
    if (b->n <= 0) return set_error(err, LETHE_ERR_ARG, "forward: no tokens");
    if (b->n_out > 0 && !logits) return set_error(err, LETHE_ERR_ARG, "forward: no logits buffer");
    for (int t = 0; t < b->n; t++)
        if (b->ids[t] < 0 || b->ids[t] >= m->hp.n_vocab)
            return set_error(err, LETHE_ERR_ARG, "forward: token id %d out of range [0, %d)", b->ids[t], m->hp.n_vocab);
    int out_i = 0;
    for (int done = 0; done < b->n;) {
        int c = b->n - done < FWD_CHUNK ? b->n - done : FWD_CHUNK;
        lethe_status st = run_chunk(m, e, b, done, c, &out_i, logits, err);
        if (st) return st;
        done += c;
    }
    return LETHE_OK;
}
