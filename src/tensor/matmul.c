/* lt_matmul: y = W x for a batch of tokens, on the thread pool.
 *
 * One tp_run does everything. Phase 1 quantises the activations to the
 * weight type's vec_dot_type: usually every thread quantises the whole batch
 * into its own copy (cheaper than a barrier, and robust when a thread gets
 * descheduled); only when there are few rows per thread is the work split,
 * and the threads meet at a spin barrier. Phase 2 splits the weight
 * rows across the threads. A single token runs the tile kernel over groups
 * of rows (weight bandwidth bound); a batch walks tiles of rows x tokens so
 * that each weight block is decoded once per tile and stays in L1 while the
 * tokens of a chunk (sized to stay in L2) stream past it. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/matmul.h"
#include "tensor/quant_impl.h"
#include "util/alloc.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Quantised activations of at most this many bytes are made by each thread. */
#define PRIVATE_QUANT_BYTES 8192
/* ... and so are larger ones while each thread has at least this many rows
 * per token to compute: quantising costs about one row's work per token,
 * far less than a barrier when the cores are shared with other programs. */
#define PRIVATE_QUANT_ROWS 16
/* ... as long as all the copies together stay below this. */
#define PRIVATE_QUANT_MAX (8u << 20)
/* Token chunk: its activations should stay in L2 while a thread walks its rows. */
#define CHUNK_BYTES (192 * 1024)
/* Single token: weights are prefetched this far ahead of the kernel. */
#ifndef PF_DIST
#define PF_DIST 4096
#endif
#ifndef PF_LOCALITY
#define PF_LOCALITY 3 /* keep: on Zen the L3 only holds lines evicted from L2 */
#endif

typedef struct {
    const lt_traits *tr, *vt;
    const lt_tile *tile;
    const char *W;
    size_t wrb;        /* bytes per weight row */
    int64_t n_rows, n_cols, n_tok;
    const float *x;
    float *y;
    char *qbuf;        /* quantised activations, NULL when vec_dot_type is F32 */
    size_t arb;        /* bytes per activation row */
    size_t tab_off;    /* offset of the activation tables in a copy (0: none) */
    size_t copy_bytes; /* bytes of one copy of rows + tables */
    bool private_quant;
    atomic_int arrived;
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

static void quantize_range(const mm_ctx *c, char *dst, int64_t lo, int64_t hi) {
    /* [lo, hi) counts vec_dot_type blocks over all tokens */
    const int64_t bs = c->vt->block_size, bpr = c->n_cols / bs;
    float *dtab = c->tab_off ? (float *)(dst + c->tab_off) : NULL;
    float *stab = dtab ? dtab + bpr * c->n_tok : NULL;
    while (lo < hi) {
        const int64_t t = lo / bpr, b0 = lo % bpr;
        int64_t cnt = bpr - b0;
        if (cnt > hi - lo) cnt = hi - lo;
        char *row = dst + (size_t)t * c->arb;
        c->vt->from_float(c->x + t * c->n_cols + b0 * bs, row + (size_t)b0 * c->vt->block_bytes, cnt * bs);
        if (dtab) lt_act_tables(c->tr->vec_dot_type, row, b0, cnt, dtab + t, stab + t, (size_t)c->n_tok);
        lo += cnt;
    }
}

static void barrier(atomic_int *arrived, int nth) {
    atomic_fetch_add_explicit(arrived, 1, memory_order_acq_rel);
    int spins = 0;
    while (atomic_load_explicit(arrived, memory_order_acquire) < nth) {
        if (++spins < 4096) {
            cpu_relax();
        } else {
            sched_yield(); /* more threads than cores */
            spins = 0;
        }
    }
}

static void rows_loop(const mm_ctx *c, const char *act, int64_t r0, int64_t r1) {
    const lt_tile *tl = c->tile;
    const int64_t n = c->n_cols;
    const float *tab = c->tab_off ? (const float *)(act + c->tab_off) : NULL;
    const size_t ld = (size_t)c->n_tok;
    if (c->n_tok == 1) {
        if (tl->fn) {
            const char *end = c->W + (size_t)r1 * c->wrb;
            for (int64_t r = r0; r < r1; r += tl->rows1) {
                const int nr = (int)(r1 - r < tl->rows1 ? r1 - r : tl->rows1);
                const char *w = c->W + (size_t)r * c->wrb;
                /* one pass over the weights: fetch ahead of the kernel */
                if (PF_DIST > 0)
                    for (const char *p = w + PF_DIST; p < w + PF_DIST + (size_t)nr * c->wrb && p < end; p += 64)
                        __builtin_prefetch(p, 0, PF_LOCALITY);
                tl->fn(n, w, c->wrb, act, 0, tab, ld, c->y + r, 1, nr, 1);
            }
        } else {
            for (int64_t r = r0; r < r1; r++) c->y[r] = c->tr->vec_dot(n, c->W + (size_t)r * c->wrb, act);
        }
        return;
    }
    int64_t chunk = (int64_t)(CHUNK_BYTES / c->arb);
    if (chunk < tl->cols) chunk = tl->cols;
    chunk -= chunk % tl->cols;
    for (int64_t t0 = 0; t0 < c->n_tok; t0 += chunk) {
        const int64_t t1 = t0 + chunk < c->n_tok ? t0 + chunk : c->n_tok;
        for (int64_t r = r0; r < r1; r += tl->rows) {
            const int nr = (int)(r1 - r < tl->rows ? r1 - r : tl->rows);
            const char *w = c->W + (size_t)r * c->wrb;
            for (int64_t t = t0; t < t1; t += tl->cols) {
                const int nc = (int)(t1 - t < tl->cols ? t1 - t : tl->cols);
                float *out = c->y + t * c->n_rows + r;
                const char *a = act + (size_t)t * c->arb;
                if (tl->fn) {
                    tl->fn(n, w, c->wrb, a, c->arb, tab ? tab + t : NULL, ld, out, (size_t)c->n_rows, nr, nc);
                } else {
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < nc; j++)
                            out[j * c->n_rows + i] = c->tr->vec_dot(n, w + (size_t)i * c->wrb, a + (size_t)j * c->arb);
                }
            }
        }
    }
}

static void mm_task(void *vctx, int ith, int nth) {
    mm_ctx *c = vctx;
    const char *act = (const char *)c->x;
    if (c->qbuf) {
        const int64_t total = c->n_tok * (c->n_cols / c->vt->block_size);
        if (c->private_quant) {
            char *mine = c->qbuf + (size_t)ith * c->copy_bytes;
            quantize_range(c, mine, 0, total);
            act = mine;
        } else {
            long lo, hi;
            tp_split((long)total, ith, nth, &lo, &hi);
            quantize_range(c, c->qbuf, lo, hi);
            barrier(&c->arrived, nth);
            act = c->qbuf;
        }
    }
    const int unit = c->n_tok == 1 ? c->tile->rows1 : c->tile->rows;
    const int64_t units = (c->n_rows + unit - 1) / unit;
    long lo, hi;
    tp_split((long)units, ith, nth, &lo, &hi);
    const int64_t r0 = (int64_t)lo * unit;
    const int64_t r1 = (int64_t)hi * unit < c->n_rows ? (int64_t)hi * unit : c->n_rows;
    if (r0 < r1) rows_loop(c, act, r0, r1);
}

int lt_matmul(threadpool *tp, lt_workspace *ws, lt_type wtype, const void *W, int64_t n_rows,
              int64_t n_cols, const float *x, int64_t n_tok, float *y) {
    const lt_traits *tr = lt_type_traits(wtype);
    if (!tr || !tr->vec_dot || n_rows < 0 || n_cols <= 0 || n_tok < 0) return -1;
    const lt_traits *vt = lt_type_traits(tr->vec_dot_type);
    const size_t wrb = lt_row_bytes(wtype, n_cols);
    const size_t arb = lt_row_bytes(tr->vec_dot_type, n_cols);
    if (!vt || wrb == 0 || arb == 0) return -1;
    if (n_rows == 0 || n_tok == 0) return 0;

    mm_ctx c = {
        .tr = tr, .vt = vt, .tile = lt_type_tile(wtype), .W = W, .wrb = wrb,
        .n_rows = n_rows, .n_cols = n_cols, .n_tok = n_tok, .x = x, .y = y,
        .qbuf = NULL, .arb = arb, .tab_off = 0, .copy_bytes = 0, .private_quant = false,
    };
    atomic_init(&c.arrived, 0);
    const int nth = tp_n_threads(tp);
    if (tr->vec_dot_type != LT_F32) {
        if (!vt->from_float) return -1;
        /* sizes: n_tok rows of arb bytes, then (for tiles that want them)
         * two float tables of n_blocks x n_tok, padded by 4 floats */
        const size_t nb = (size_t)(n_cols / vt->block_size);
        if ((size_t)n_tok > SIZE_MAX / 4 / (arb + 8 * nb) / (size_t)nth) return -1;
        size_t one = (arb * (size_t)n_tok + 63) & ~(size_t)63;
        if (c.tile->fn && c.tile->aux) {
            c.tab_off = one;
            one += ((2 * nb * (size_t)n_tok + 4) * sizeof(float) + 63) & ~(size_t)63;
        }
        c.copy_bytes = one;
        c.private_quant = nth > 1 && (arb * (size_t)n_tok <= PRIVATE_QUANT_BYTES ||
                                      (n_rows >= (int64_t)PRIVATE_QUANT_ROWS * nth &&
                                       one * (size_t)nth <= PRIVATE_QUANT_MAX));
        if (ws_reserve(ws, c.private_quant ? one * (size_t)nth : one) != 0) return -1;
        c.qbuf = ws->buf;
    }
    tp_run(nth > 1 ? tp : NULL, mm_task, &c);
    return 0;
}
