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
    float *att2, *lse, *lse2; /* cold-tier attention and the log-sum-exps that merge it */
} acts;

static lethe_status ensure_scratch(lethe_model *m, int c, acts *a, char *err) {
    const hparams *hp = &m->hp;
    size_t d = (size_t)hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t per_tok = d * 2 + qd * 3 + kvd * 2 + (size_t)hp->n_ff * 2 + (size_t)hp->n_rot + (size_t)hp->n_head * 2;
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
    a->rope = p; p += (size_t)hp->n_rot * c;
    a->att2 = p; p += qd * c;
    a->lse = p; p += (size_t)hp->n_head * c;
    a->lse2 = p;
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

typedef struct {
    float bound;
    int page;
} page_rank;

static int cmp_rank_desc(const void *a, const void *b) {
    const page_rank *x = a, *y = b;
    return (x->bound < y->bound) - (x->bound > y->bound);
}

/* Loads the cold pages stream h of layer l should attend (all, or the top
 * fs->cold_pages by Quest's bound max_d(q_d kmin_d, q_d kmax_d), maximised
 * over the chunk's queries of the group) into view. */
static lethe_status load_cold_view(lethe_model *m, const forward_state *fs, int l, int h, const float *q, int c,
                                   kv_stream *view) {
    const hparams *hp = &m->hp;
    const kv_cold *cold = &fs->cold[(long)l * hp->n_head_kv + h];
    const int G = hp->n_head / hp->n_head_kv, hd = hp->head_dim, np = cold->n_pages;
    if (np == 0) return LETHE_OK;
    int n_sel = fs->cold_pages > 0 && fs->cold_pages < np ? fs->cold_pages : np;
    page_rank *r = malloc((size_t)np * sizeof *r);
    int *sel = malloc((size_t)np * sizeof *sel);
    lethe_status st = r && sel ? LETHE_OK : LETHE_ERR_NOMEM;
    if (!st) {
        for (int p = 0; p < np; p++) {
            r[p].page = p;
            r[p].bound = -INFINITY;
            if (n_sel == np) continue;
            for (int t = 0; t < c; t++)
                for (int g = 0; g < G; g++) {
                    const float *qh = q + ((long)t * hp->n_head + (long)h * G + g) * hd;
                    float b = kv_cold_bound(cold, p, qh, 1.0f);
                    if (b > r[p].bound) r[p].bound = b;
                }
        }
        if (n_sel < np) qsort(r, (size_t)np, sizeof *r, cmp_rank_desc);
        for (int i = 0; i < n_sel; i++) sel[i] = r[i].page;
        st = kv_cold_load(cold, sel, n_sel, m->cold_view, view);
    }
    free(r);
    free(sel);
    return st;
}

/* Attention over the cold tier of layer l, merged into a->att by
 * log-sum-exp with the hot result (whose lse is in a->lse). */
static lethe_status attend_cold(lethe_model *m, const forward_state *fs, int l, const acts *a, const int32_t *pos, int c,
                                char *err) {
    const hparams *hp = &m->hp;
    const int H = hp->n_head_kv, hd = hp->head_dim;
    size_t want = 0;
    for (int h = 0; h < H; h++) {
        const kv_cold *cold = &fs->cold[(long)l * H + h];
        int n_sel = fs->cold_pages > 0 && fs->cold_pages < cold->n_pages ? fs->cold_pages : cold->n_pages;
        want += (size_t)n_sel + 1;
    }
    if (want == (size_t)H) return LETHE_OK; /* nothing cold in this layer */
    if (!m->cold_view || kv_pool_n_pages(m->cold_view) < want) {
        kv_pool_free(m->cold_view);
        kv_pool_params kp = {kv_pool_page_slots(m->kv), hd, LT_F32, want * 2};
        char perr[LETHE_ERR_MAX];
        m->cold_view = kv_pool_create(&kp, perr);
        if (!m->cold_view) return set_error(err, LETHE_ERR_NOMEM, "forward: cold-tier view pool: %s", perr);
    }
    kv_stream *views = calloc((size_t)H, sizeof *views);
    if (!views) return set_error(err, LETHE_ERR_NOMEM, "forward: out of memory");
    lethe_status st = LETHE_OK;
    for (int h = 0; h < H && !st; h++) {
        kv_stream_init(&views[h]);
        st = load_cold_view(m, fs, l, h, a->q, c, &views[h]);
    }
    if (!st) {
        attn_layer al = {m->cold_view, views, hp->n_head, H, hd, 1.0f / sqrtf((float)hd)};
        if (attn_forward_lse(m->tp, m->attn, &al, a->q, pos, c, a->att2, a->lse2, NULL) != 0) st = LETHE_ERR_NOMEM;
        else attn_merge_lse(a->att, a->lse, a->att2, a->lse2, c * hp->n_head, hd);
    }
    for (int h = 0; h < H; h++) kv_stream_free(m->cold_view, &views[h]);
    free(views);
    return st ? set_error(err, st, "forward: cold-tier attention failed (%s)", lethe_status_name(st)) : LETHE_OK;
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
    op_swiglu(j->a + lo, j->b + lo, hi - lo);
}

/* SwiGLU is the one element-wise op with real work per element (an exp):
 * split it across the pool for prompt chunks, so the workers do not idle. */
static void swiglu(lethe_model *m, float *a, const float *b, long n) {
    swiglu_job j = {a, b, n};
    tp_run(n >= 8192 ? m->tp : NULL, swiglu_task, &j);
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
    if (attn_forward_lse(m->tp, m->attn, &al, a->q, pos, c, a->att, fs->cold ? a->lse : NULL, fs->stats) != 0)
        return set_error(err, LETHE_ERR_NOMEM, "forward: attention scratch allocation failed");
    if (fs->cold && (st = attend_cold(m, fs, l, a, pos, c, err))) return st;
    if ((st = matmul(m, &L->wo, a->att, c, a->xb, err))) return st;
    op_add(a->x, a->xb, (long)c * d);

    for (int t = 0; t < c; t++) op_rmsnorm(a->xb + (long)t * d, a->x + (long)t * d, L->ffn_norm, d, hp->rms_eps);
    if ((st = matmul(m, &L->w_gate, a->xb, c, a->gate, err))) return st;
    if ((st = matmul(m, &L->w_up, a->xb, c, a->up, err))) return st;
    swiglu(m, a->gate, a->up, (long)c * hp->n_ff);
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
