#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"

/* Tokens per pass through the layers: bounds the activation scratch while
 * keeping the batched matmuls efficient. */
#define FWD_CHUNK 256

/* Activation buffers for one chunk of c tokens, carved from m->scratch. */
typedef struct {
    float *x, *xb, *q, *k, *v, *att, *gate, *up, *rope;
} acts;

static lethe_status ensure_scratch(lethe_model *m, int c, acts *a, char *err) {
    const hparams *hp = &m->hp;
    size_t d = (size_t)hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t per_tok = d * 2 + qd * 2 + kvd * 2 + (size_t)hp->n_ff * 2 + (size_t)hp->n_rot;
    size_t need = per_tok * (size_t)c;
    if (need > m->scratch_floats) {
        float *p = realloc(m->scratch, need * sizeof(float));
        if (!p) return set_error(err, LETHE_ERR_NOMEM, "forward: out of memory for %zu activation floats", need);
        m->scratch = p;
        m->scratch_floats = need;
    }
    float *p = m->scratch;
    a->x = p; p += d * c;
    a->xb = p; p += d * c;
    a->q = p; p += qd * c;
    a->att = p; p += qd * c;
    a->k = p; p += kvd * c;
    a->v = p; p += kvd * c;
    a->gate = p; p += (size_t)hp->n_ff * c;
    a->up = p; p += (size_t)hp->n_ff * c;
    a->rope = p;
    return LETHE_OK;
}

size_t forward_pages_needed(const lethe_model *m, const kv_stream *streams, int n) {
    const int P = kv_pool_page_slots(m->kv);
    const int n_streams = m->hp.n_layer * m->hp.n_head_kv;
    size_t pages = 0;
    for (int i = 0; i < n_streams; i++) {
        const kv_stream *s = &streams[i];
        long have = (s->n + P - 1) / P, want = (s->n + n + P - 1) / P;
        pages += (size_t)(want - have);
        /* a partly filled last page that is shared gets copied on write */
        if (n > 0 && s->n % P != 0 && kv_pool_refcount(m->kv, s->pages[have - 1]) > 1) pages++;
    }
    return pages;
}

static lethe_status matmul(lethe_model *m, const weight *w, const float *x, int n, float *y, char *err) {
    if (lt_matmul(m->tp, &m->ws, w->type, w->data, w->n_rows, w->n_cols, x, n, y) != 0)
        return set_error(err, LETHE_ERR_NOMEM, "forward: matmul failed (out of memory)");
    return LETHE_OK;
}

static void add_bias(float *y, const float *b, int n_tok, int dim) {
    if (!b) return;
    for (int t = 0; t < n_tok; t++) op_add(y + (long)t * dim, b, dim);
}

static lethe_status run_layer(lethe_model *m, forward_state *fs, int l, const acts *a, const int32_t *pos, int c, char *err) {
    const hparams *hp = &m->hp;
    const layer_weights *L = &m->layers[l];
    const int d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    lethe_status st;

    for (int t = 0; t < c; t++) op_rmsnorm(a->xb + (long)t * d, a->x + (long)t * d, L->attn_norm, d, hp->rms_eps);
    if ((st = matmul(m, &L->wq, a->xb, c, a->q, err))) return st;
    if ((st = matmul(m, &L->wk, a->xb, c, a->k, err))) return st;
    if ((st = matmul(m, &L->wv, a->xb, c, a->v, err))) return st;
    add_bias(a->q, L->bq, c, qd);
    add_bias(a->k, L->bk, c, kvd);
    add_bias(a->v, L->bv, c, kvd);
    for (int t = 0; t < c; t++) {
        const float *cs = a->rope + (long)t * hp->n_rot;
        op_rope(a->q + (long)t * qd, hp->n_head, hd, hp->n_rot, cs, m->arch->rope);
        op_rope(a->k + (long)t * kvd, hp->n_head_kv, hd, hp->n_rot, cs, m->arch->rope);
    }
    kv_stream *streams = fs->streams + (long)l * hp->n_head_kv;
    for (int h = 0; h < hp->n_head_kv; h++) {
        st = kv_stream_append(m->kv, &streams[h], a->k + (long)h * hd, a->v + (long)h * hd, kvd, kvd, pos, c);
        if (st) return set_error(err, st, "forward: cannot append to the KV cache (%s)", lethe_status_name(st));
    }
    attn_layer al = {m->kv, streams, hp->n_head, hp->n_head_kv, hd, 1.0f / sqrtf((float)hd)};
    if (attn_forward(m->tp, m->attn, &al, a->q, pos, c, a->att, fs->stats) != 0)
        return set_error(err, LETHE_ERR_NOMEM, "forward: attention scratch allocation failed");
    if ((st = matmul(m, &L->wo, a->att, c, a->xb, err))) return st;
    op_add(a->x, a->xb, (long)c * d);

    for (int t = 0; t < c; t++) op_rmsnorm(a->xb + (long)t * d, a->x + (long)t * d, L->ffn_norm, d, hp->rms_eps);
    if ((st = matmul(m, &L->w_gate, a->xb, c, a->gate, err))) return st;
    if ((st = matmul(m, &L->w_up, a->xb, c, a->up, err))) return st;
    op_swiglu(a->gate, a->up, (long)c * hp->n_ff);
    if ((st = matmul(m, &L->w_down, a->gate, c, a->xb, err))) return st;
    op_add(a->x, a->xb, (long)c * d);
    return LETHE_OK;
}

static lethe_status run_chunk(lethe_model *m, forward_state *fs, const lethe_token *ids, const int32_t *pos, int c,
                              float *logits, bool all_logits, char *err) {
    const hparams *hp = &m->hp;
    const int d = hp->n_embd;
    acts a = {0};
    lethe_status st;
    if ((st = ensure_scratch(m, c, &a, err))) return st;

    const lt_traits *et = lt_type_traits(m->tok_embd.type);
    const size_t row_bytes = lt_row_bytes(m->tok_embd.type, d);
    for (int t = 0; t < c; t++)
        et->to_float((const uint8_t *)m->tok_embd.data + (size_t)ids[t] * row_bytes, a.x + (long)t * d, d);
    op_rope_table(a.rope, pos, c, hp->n_rot, hp->rope_base);

    for (int l = 0; l < hp->n_layer; l++)
        if ((st = run_layer(m, fs, l, &a, pos, c, err))) return st;

    if (!logits) return LETHE_OK;
    const int first = all_logits ? 0 : c - 1;
    const int n_out = c - first;
    for (int t = first; t < c; t++) op_rmsnorm(a.xb + (long)t * d, a.x + (long)t * d, m->output_norm, d, hp->rms_eps);
    return matmul(m, &m->output, a.xb + (long)first * d, n_out, logits, err);
}

lethe_status forward_batch(lethe_model *m, forward_state *fs, const lethe_token *ids, const int32_t *pos, int n,
                           float *logits, bool all_logits, char *err) {
    if (n <= 0) return set_error(err, LETHE_ERR_ARG, "forward: no tokens");
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= m->hp.n_vocab)
            return set_error(err, LETHE_ERR_ARG, "forward: token id %d out of range [0, %d)", ids[t], m->hp.n_vocab);
    size_t need = forward_pages_needed(m, fs->streams, n);
    size_t free_pages = kv_pool_n_pages(m->kv) - kv_pool_pages_used(m->kv);
    if (need > free_pages)
        return set_error(err, LETHE_ERR_BUDGET, "forward: %d more tokens need %zu KV pages but only %zu of %zu are free", n,
                         need, free_pages, kv_pool_n_pages(m->kv));
    for (int done = 0; done < n;) {
        int c = n - done < FWD_CHUNK ? n - done : FWD_CHUNK;
        bool last = done + c == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + (size_t)done * m->hp.n_vocab;
        else if (logits && last) out = logits;
        lethe_status st = run_chunk(m, fs, ids + done, pos + done, c, out, all_logits, err);
        if (st) return st;
        done += c;
    }
    return LETHE_OK;
}
