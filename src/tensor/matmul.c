/* lt_matmul_group: y_i = W_i x for several weight matrices that read the
 * same activations (Q/K/V, gate/up), for a batch of tokens, on the pool.
 *
 * The activations are quantised once per distinct vec_dot_type of the
 * group (usually one), in place by the caller when they are few (a decode
 * step: cheaper than waking anyone), else split across the pool; with
 * lt_matmul_group_rows each token's row is made there too (its RMSNorm),
 * right before it is quantised. Then the
 * rows of all the matrices form one list of units (a tile's rows) that the
 * threads claim a few at a time from a shared counter, so that a thread the
 * host has descheduled leaves its share to the others instead of stalling
 * the step (tp_run_dynamic). A single token runs the tile kernel over groups
 * of rows (weight bandwidth bound); a batch walks tiles of rows x tokens so
 * that each weight block is decoded once per tile and stays in L1 while the
 * tokens of a chunk (sized to stay in L2) stream past it. Every output
 * element is computed by one kernel call whatever thread runs it, so the
 * results do not depend on the thread count or timing. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/matmul.h"
#include "tensor/quant_impl.h"
#include "util/alloc.h"

/* Activations of at most this many floats (per distinct vec_dot_type) are
 * quantised by the caller alone. */
#define INLINE_QUANT_FLOATS 16384
/* Token chunk: its activations should stay in L2 while a thread walks its rows. */
#define CHUNK_BYTES (192 * 1024)
/* Claims per thread and run: enough to even out a busy host, few enough
 * that the shared counter costs nothing. */
#define CLAIMS_PER_THREAD 8
#ifndef PF_LOCALITY
#define PF_LOCALITY 3 /* keep: on Zen the L3 only holds lines evicted from L2 */
#endif
#define MAX_ACTS 4 /* distinct vec_dot_types in one group */

/* One quantised copy of the activations. */
typedef struct {
    lt_type vdt;
    const lt_traits *vt;
    char *buf;      /* NULL: F32, the activations themselves */
    size_t arb;     /* bytes per activation row */
    size_t tab_off; /* offset of the activation tables (0: none) */
} mm_act;

/* One matrix of the group. */
typedef struct {
    const lt_traits *tr;
    const lt_tile *tile;
    const char *W;
    size_t wrb; /* bytes per weight row */
    int64_t n_rows;
    float *y;
    int act;       /* index into mm_ctx.acts */
    int unit;      /* rows per claimable unit */
    int64_t first; /* its first unit in the group's list */
} mm_op;

typedef struct {
    mm_op ops[LT_MATMUL_MAX_GROUP];
    int n_ops;
    mm_act acts[MAX_ACTS];
    int n_acts;
    int64_t n_cols, n_tok;
    const float *x;
    const lt_matmul_rows *src; /* NULL: x is given */
    int64_t n_units, grain, quant_chunk;
    atomic_llong next; /* next unclaimed unit (or token, while quantising) */
} mm_ctx;

void lt_workspace_free(lt_workspace *ws) {
    if (!ws) return;
    lt_free(ws->buf);
    ws->buf = NULL;
    ws->cap = 0;
}

static int ws_reserve(lt_workspace *ws, size_t need) {
    if (need <= ws->cap) return 0;
    size_t cap = need + need / 4 + 64;
    cap = (cap + 63) & ~(size_t)63;
    void *p = lt_aligned_alloc(64, cap);
    if (!p) return -1;
    lt_free(ws->buf);
    ws->buf = p;
    ws->cap = cap;
    return 0;
}

/* Tokens [t0, t1) of copy a. */
static void quantize_tokens(const mm_ctx *c, const mm_act *a, int64_t t0, int64_t t1) {
    const int64_t bpr = c->n_cols / a->vt->block_size;
    float *dtab = a->tab_off ? (float *)(a->buf + a->tab_off) : NULL;
    float *stab = dtab ? dtab + bpr * c->n_tok : NULL;
    for (int64_t t = t0; t < t1; t++) {
        char *row = a->buf + (size_t)t * a->arb;
        a->vt->from_float(c->x + t * c->n_cols, row, c->n_cols);
        if (dtab) lt_act_tables(a->vdt, row, 0, bpr, dtab + t, stab + t, (size_t)c->n_tok);
    }
}

/* Tokens [t0, t1) of src: each row made, then quantised for every copy. */
static void make_tokens(const mm_ctx *c, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
        c->src->row(c->src->user, t, c->src->x + t * c->n_cols);
        for (int a = 0; a < c->n_acts; a++)
            if (c->acts[a].buf) quantize_tokens(c, &c->acts[a], t, t + 1);
    }
}

static void quant_task(void *vctx, int ith, int nth) {
    mm_ctx *c = vctx;
    (void)ith, (void)nth;
    if (c->src) {
        for (;;) {
            const int64_t t0 = atomic_fetch_add_explicit(&c->next, c->quant_chunk, memory_order_relaxed);
            if (t0 >= c->n_tok) break;
            make_tokens(c, t0, t0 + c->quant_chunk < c->n_tok ? t0 + c->quant_chunk : c->n_tok);
        }
        return;
    }
    const int64_t total = c->n_tok * c->n_acts; /* (copy, token) pairs */
    for (;;) {
        const int64_t i0 = atomic_fetch_add_explicit(&c->next, c->quant_chunk, memory_order_relaxed);
        if (i0 >= total) break;
        const int64_t i1 = i0 + c->quant_chunk < total ? i0 + c->quant_chunk : total;
        for (int64_t i = i0; i < i1;) { /* split at copy boundaries */
            const int k = (int)(i / c->n_tok);
            const int64_t t0 = i % c->n_tok, t1 = t0 + (i1 - i) < c->n_tok ? t0 + (i1 - i) : c->n_tok;
            if (c->acts[k].buf) quantize_tokens(c, &c->acts[k], t0, t1);
            i += t1 - t0;
        }
    }
}

static void rows_loop(const mm_ctx *c, const mm_op *o, int64_t r0, int64_t r1) {
    const mm_act *a = &c->acts[o->act];
    const char *act = a->buf ? a->buf : (const char *)c->x;
    const lt_tile *tl = o->tile;
    const int64_t n = c->n_cols;
    const float *tab = a->tab_off ? (const float *)(act + a->tab_off) : NULL;
    const size_t ld = (size_t)c->n_tok, arb = a->arb;
    if (c->n_tok == 1) {
        if (tl->fn) {
            const char *end = o->W + (size_t)r1 * o->wrb;
            for (int64_t r = r0; r < r1; r += tl->rows1) {
                const int nr = (int)(r1 - r < tl->rows1 ? r1 - r : tl->rows1);
                const char *w = o->W + (size_t)r * o->wrb;
                /* one pass over the weights: fetch ahead of the kernel */
                if (tl->prefetch > 0)
                    for (const char *p = w + tl->prefetch; p < w + tl->prefetch + (size_t)nr * o->wrb && p < end; p += 64)
                        __builtin_prefetch(p, 0, PF_LOCALITY);
                tl->fn(n, w, o->wrb, act, 0, tab, ld, o->y + r, 1, nr, 1);
            }
        } else {
            for (int64_t r = r0; r < r1; r++) o->y[r] = o->tr->vec_dot(n, o->W + (size_t)r * o->wrb, act);
        }
        return;
    }
    int64_t chunk = (int64_t)(CHUNK_BYTES / arb);
    if (chunk < tl->cols) chunk = tl->cols;
    chunk -= chunk % tl->cols;
    for (int64_t t0 = 0; t0 < c->n_tok; t0 += chunk) {
        const int64_t t1 = t0 + chunk < c->n_tok ? t0 + chunk : c->n_tok;
        for (int64_t r = r0; r < r1; r += tl->rows) {
            const int nr = (int)(r1 - r < tl->rows ? r1 - r : tl->rows);
            const char *w = o->W + (size_t)r * o->wrb;
            for (int64_t t = t0; t < t1; t += tl->cols) {
                const int nc = (int)(t1 - t < tl->cols ? t1 - t : tl->cols);
                float *out = o->y + t * o->n_rows + r;
                const char *x = act + (size_t)t * arb;
                if (tl->fn) {
                    tl->fn(n, w, o->wrb, x, arb, tab ? tab + t : NULL, ld, out, (size_t)o->n_rows, nr, nc);
                } else {
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < nc; j++)
                            out[j * o->n_rows + i] = o->tr->vec_dot(n, w + (size_t)i * o->wrb, x + (size_t)j * arb);
                }
            }
        }
    }
}

static void mm_task(void *vctx, int ith, int nth) {
    mm_ctx *c = vctx;
    (void)ith, (void)nth;
    for (;;) {
        int64_t u0 = atomic_fetch_add_explicit(&c->next, c->grain, memory_order_relaxed);
        if (u0 >= c->n_units) break;
        const int64_t u1 = u0 + c->grain < c->n_units ? u0 + c->grain : c->n_units;
        for (int k = 0; k < c->n_ops && u0 < u1; k++) { /* a claim may span two matrices */
            const mm_op *o = &c->ops[k];
            const int64_t end = k + 1 < c->n_ops ? c->ops[k + 1].first : c->n_units;
            if (u0 >= end) continue;
            const int64_t v1 = u1 < end ? u1 : end;
            const int64_t r0 = (u0 - o->first) * o->unit, r1 = (v1 - o->first) * o->unit;
            rows_loop(c, o, r0, r1 < o->n_rows ? r1 : o->n_rows);
            u0 = v1;
        }
    }
}

static int group_run(threadpool *tp, lt_workspace *ws, const lt_matmul_out *outs, int n_out, int64_t n_cols,
                     const float *x, const lt_matmul_rows *src, int64_t n_tok) {
    if (n_out < 1 || n_out > LT_MATMUL_MAX_GROUP || n_cols <= 0 || n_tok < 0) return -1;
    mm_ctx *c = &(mm_ctx){.n_ops = n_out, .n_cols = n_cols, .n_tok = n_tok, .x = x, .src = src};
    int64_t units = 0;
    for (int k = 0; k < n_out; k++) {
        const lt_traits *tr = lt_type_traits(outs[k].type);
        if (!tr || !tr->vec_dot || outs[k].n_rows < 0) return -1;
        mm_op *o = &c->ops[k];
        o->tr = tr;
        o->tile = outs[k].x8 ? lt_type_tile_x8(outs[k].type) : lt_type_tile(outs[k].type);
        if (outs[k].x8 && (!o->tile->fn || outs[k].n_rows % 8 != 0)) return -1;
        o->W = outs[k].W;
        o->wrb = lt_row_bytes(outs[k].type, n_cols);
        o->n_rows = outs[k].n_rows;
        o->y = outs[k].y;
        if (o->wrb == 0) return -1;
        int a = 0;
        while (a < c->n_acts && c->acts[a].vdt != tr->vec_dot_type) a++;
        if (a == c->n_acts) {
            if (a == MAX_ACTS) return -1;
            const lt_traits *vt = lt_type_traits(tr->vec_dot_type);
            c->acts[a] = (mm_act){.vdt = tr->vec_dot_type, .vt = vt, .arb = lt_row_bytes(tr->vec_dot_type, n_cols)};
            if (!vt || c->acts[a].arb == 0 || (tr->vec_dot_type != LT_F32 && !vt->from_float)) return -1;
            c->n_acts++;
        }
        if (o->tile->fn && o->tile->aux) c->acts[a].tab_off = 1; /* sized below */
        o->act = a;
        o->unit = n_tok == 1 ? o->tile->rows1 : o->tile->rows;
        o->first = units;
        units += (o->n_rows + o->unit - 1) / o->unit;
    }
    if (units == 0 || n_tok == 0) return 0;

    /* one buffer: per non-F32 copy, n_tok rows of arb bytes, then (for tiles
     * that want them) two float tables of n_blocks x n_tok, padded by 4 floats */
    size_t need = 0, off[MAX_ACTS];
    for (int a = 0; a < c->n_acts; a++) {
        mm_act *m = &c->acts[a];
        off[a] = need;
        if (m->vdt == LT_F32) continue;
        const size_t nb = (size_t)(n_cols / m->vt->block_size);
        if ((size_t)n_tok > SIZE_MAX / 4 / (m->arb + 8 * nb) / MAX_ACTS) return -1;
        size_t one = (m->arb * (size_t)n_tok + 63) & ~(size_t)63;
        if (m->tab_off) {
            m->tab_off = one;
            one += ((2 * nb * (size_t)n_tok + 4) * sizeof(float) + 63) & ~(size_t)63;
        }
        need += one;
    }
    if (need && ws_reserve(ws, need) != 0) return -1;
    int64_t quant_floats = 0;
    for (int a = 0; a < c->n_acts; a++)
        if (c->acts[a].vdt != LT_F32) {
            c->acts[a].buf = (char *)ws->buf + off[a];
            quant_floats += n_tok * n_cols;
        }

    const int nth = tp_n_threads(tp);
    threadpool *pool = nth > 1 ? tp : NULL;
    if (src) {
        c->quant_chunk = 1 + n_tok / ((int64_t)nth * CLAIMS_PER_THREAD);
        atomic_init(&c->next, 0);
        tp_run_dynamic(n_tok * n_cols > INLINE_QUANT_FLOATS ? pool : NULL, quant_task, c);
    } else if (quant_floats > 0) {
        c->quant_chunk = 1 + n_tok * c->n_acts / ((int64_t)nth * CLAIMS_PER_THREAD);
        atomic_init(&c->next, 0);
        tp_run_dynamic(quant_floats > INLINE_QUANT_FLOATS ? pool : NULL, quant_task, c);
    }
    c->n_units = units;
    c->grain = 1 + units / ((int64_t)nth * CLAIMS_PER_THREAD);
    atomic_init(&c->next, 0);
    tp_run_dynamic(pool, mm_task, c);
    return 0;
}

int lt_matmul_group(threadpool *tp, lt_workspace *ws, const lt_matmul_out *outs, int n_out, int64_t n_cols,
                    const float *x, int64_t n_tok) {
    return group_run(tp, ws, outs, n_out, n_cols, x, NULL, n_tok);
}

int lt_matmul_group_rows(threadpool *tp, lt_workspace *ws, const lt_matmul_out *outs, int n_out, int64_t n_cols,
                         const lt_matmul_rows *src, int64_t n_tok) {
    if (!src || !src->row || !src->x) return -1;
    return group_run(tp, ws, outs, n_out, n_cols, src->x, src, n_tok);
}

int lt_matmul(threadpool *tp, lt_workspace *ws, lt_type wtype, const void *W, int64_t n_rows,
              int64_t n_cols, const float *x, int64_t n_tok, float *y) {
    const lt_matmul_out o = {wtype, W, n_rows, y, false};
    return lt_matmul_group(tp, ws, &o, 1, n_cols, x, n_tok);
}
