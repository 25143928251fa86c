/* FlashAttention-2 (Dao 2023): tiled prefill over paged KV streams. Work
 * items are (KV head, block of queries); a block holds every query head of
 * the GQA group for up to ATTN_BLOCK_ROWS / group tokens, so each K/V page is
 * read once per block. Scratch is O(tile), independent of the context. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_flash.h"
#include "attn/attn_scratch.h"

/* Pages per statistics work item (second pass). */
#define STATS_CHUNK_PAGES 16
/* Blocks of at least this many rows take scores_many: transposing a page's
 * keys once costs about what its horizontal sums cost 16 rows. */
#define MANY_ROWS_MIN 16

typedef struct {
    const attn_layer *L;
    const float *q;
    const int32_t *q_pos;
    int n_tok;
    float *out;
    const attn_kernels *kern;
    int group;   /* query heads per KV head */
    int bt;      /* tokens per block */
    int rows;    /* bt * group */
    int n_qb;    /* blocks per KV head */
    int n_items;
    atomic_int next;
    unsigned char *thread_mem;
    size_t thread_stride;
    int chunk_slots;
    /* statistics */
    const attn_stats_cfg *stats;
    float *row_m, *row_l; /* [n_tok][n_head] final max and sum */
} prefill_ctx;

/* Gathers block b of KV head g: rows (token, head) token-major, scaled. */
static int load_block(const prefill_ctx *c, int g, int b, attn_tile_mem *mem) {
    const attn_layer *L = c->L;
    const int D = L->head_dim, G = c->group;
    int t0 = b * c->bt, t1 = t0 + c->bt < c->n_tok ? t0 + c->bt : c->n_tok;
    int r = 0;
    for (int t = t0; t < t1; t++)
        for (int hh = 0; hh < G; hh++, r++) {
            const float *src = c->q + ((long)t * L->n_head + (long)g * G + hh) * D;
            float *dst = mem->q + (long)r * D;
            for (int e = 0; e < D; e++) dst[e] = src[e] * L->scale;
            mem->qpos[r] = c->q_pos[t];
        }
    return r;
}

static void thread_tile(prefill_ctx *c, int ith, attn_tile *t, attn_tile_mem *mem) {
    attn_tile_init(t, mem, c->L->pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride),
                   c->rows, c->chunk_slots);
    t->rd.many = c->rows >= MANY_ROWS_MIN; /* both passes: the statistics see the scores the softmax saw */
}

static void prefill_task(void *arg, int ith, int nth) {
    prefill_ctx *c = arg;
    const attn_layer *L = c->L;
    const int D = L->head_dim, G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    thread_tile(c, ith, &t, &mem);
    (void)nth;
    for (;;) {
        int item = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (item >= c->n_items) break;
        int g = item / c->n_qb, b = item % c->n_qb;
        const kv_stream *st = &L->streams[g];
        int nr = load_block(c, g, b, &mem);
        for (int r = 0; r < nr; r++) mem.m[r] = -INFINITY, mem.l[r] = 0.0f;
        memset(mem.o, 0, (size_t)nr * D * sizeof(float));
        int n_pages = (st->n + t.p - 1) / t.p;
        t.rd.cold = L->cold ? &L->cold[g] : NULL;
        attn_tile_rows(&t, st, mem.q, mem.qpos, nr, 0, n_pages, mem.m, mem.l, mem.o, NULL, 0);
        int t0 = b * c->bt;
        for (int r = 0; r < nr; r++) {
            int tok = t0 + r / G, h = g * G + r % G;
            float *dst = c->out + ((long)tok * L->n_head + h) * D;
            const float *o = mem.o + (long)r * D;
            float inv = mem.l[r] > 0.0f ? 1.0f / mem.l[r] : 0.0f;
            for (int e = 0; e < D; e++) dst[e] = o[e] * inv;
            if (c->row_m) {
                c->row_m[(long)tok * L->n_head + h] = mem.m[r];
                c->row_l[(long)tok * L->n_head + h] = mem.l[r];
            }
        }
    }
}

/* Statistics pass: items are (KV head, chunk of pages), so each slot's
 * counters are written by one thread. Scores are recomputed with the final
 * row max and sum, giving exact probabilities. */
static void stats_task(void *arg, int ith, int nth) {
    prefill_ctx *c = arg;
    const attn_layer *L = c->L;
    const int G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    thread_tile(c, ith, &t, &mem);
    (void)nth;
    for (;;) {
        int item = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (item >= c->n_items) break;
        int g = 0;
        for (;; g++) { /* find the KV head of this item */
            int pages = (L->streams[g].n + t.p - 1) / t.p;
            int chunks = (pages + STATS_CHUNK_PAGES - 1) / STATS_CHUNK_PAGES;
            if (item < chunks) break;
            item -= chunks;
        }
        const kv_stream *st = &L->streams[g];
        t.rd.cold = L->cold ? &L->cold[g] : NULL;
        int pg0 = item * STATS_CHUNK_PAGES, pg1 = pg0 + STATS_CHUNK_PAGES;
        int slot0 = pg0 * t.p, slot1 = pg1 * t.p < st->n ? pg1 * t.p : st->n;
        if (pg1 * t.p > st->n) pg1 = (st->n + t.p - 1) / t.p;
        for (int i = 0; i < slot1 - slot0; i++) mem.mass[i] = 0.0f, mem.hit[i] = 0;
        for (int b = 0; b < c->n_qb; b++) {
            int nr = load_block(c, g, b, &mem);
            int t0 = b * c->bt;
            for (int pi = pg0; pi < pg1; pi++) {
                int nk = attn_tile_scores(&t, st, mem.q, mem.qpos, nr, pi);
                int off = pi * t.p - slot0;
                for (int r = 0; r < nr && nk > 0; r++) {
                    if (t0 + r / G < c->stats->from_query) continue; /* outside the observation window */
                    long ri = (long)(t0 + r / G) * L->n_head + g * G + r % G;
                    float l = c->row_l[ri];
                    if (!(l > 0.0f)) continue;
                    float *sr = t.s + (long)r * t.p;
                    t.kern->exp_sum(sr, nk, c->row_m[ri]);
                    float inv = 1.0f / l;
                    for (int j = 0; j < nk; j++) {
                        float p = sr[j] * inv;
                        mem.mass[off + j] += p;
                        if (p > 0.0f && p >= c->stats->hit_threshold) mem.hit[off + j] = 1;
                    }
                }
            }
        }
        for (int i = 0; i < slot1 - slot0; i++)
            attn_stats_store(st, slot0 + i, mem.mass[i], mem.hit[i], c->stats->step);
    }
}

int attn_prefill_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                     int n_tok, float *out, float *lse, const attn_stats_cfg *stats) {
    if (!scr || !L || !L->pool || !L->streams || !q || !q_pos || !out || n_tok < 1 || L->n_head_kv < 1 ||
        L->n_head % L->n_head_kv != 0 || L->head_dim != kv_pool_head_dim(L->pool))
        return -1;
    const int nth = tp_n_threads(tp);
    prefill_ctx c;
    memset(&c, 0, sizeof c);
    c.L = L;
    c.q = q;
    c.q_pos = q_pos;
    c.n_tok = n_tok;
    c.out = out;
    c.kern = attn_kernels_get();
    c.group = L->n_head / L->n_head_kv;
    c.bt = ATTN_BLOCK_ROWS / c.group > 0 ? ATTN_BLOCK_ROWS / c.group : 1;
    if (c.bt > n_tok) c.bt = n_tok;
    c.rows = c.bt * c.group;
    c.n_qb = (n_tok + c.bt - 1) / c.bt;
    c.n_items = c.n_qb * L->n_head_kv;
    const bool want_stats = stats && stats->enabled;
    const int P = kv_pool_page_slots(L->pool);
    c.chunk_slots = want_stats ? STATS_CHUNK_PAGES * P : 0;
    c.thread_stride = ((size_t)attn_tile_floats(L->pool, c.rows, c.chunk_slots) * sizeof(float) + 63) / 64 * 64;
    c.thread_mem = attn_scratch_get(scr, ATTN_SCR_THREADS, c.thread_stride * (size_t)nth);
    if (!c.thread_mem) return -1;
    if (want_stats)
        for (int g = 0; g < L->n_head_kv; g++)
            if (L->streams[g].n > 0 && !L->streams[g].attn_last) return -1;
    if (want_stats || lse) {
        float *rows = attn_scratch_get(scr, ATTN_SCR_ROWS, 2 * (size_t)n_tok * L->n_head * sizeof(float));
        if (!rows) return -1;
        c.row_m = rows;
        c.row_l = rows + (size_t)n_tok * L->n_head;
    }
    atomic_init(&c.next, 0);
    tp_run_dynamic(tp, prefill_task, &c);
    if (lse)
        for (long i = 0; i < (long)n_tok * L->n_head; i++)
            lse[i] = c.row_l[i] > 0.0f ? c.row_m[i] + logf(c.row_l[i]) : -INFINITY;

    if (want_stats) {
        c.stats = stats;
        int items = 0;
        for (int g = 0; g < L->n_head_kv; g++) {
            int pages = (L->streams[g].n + P - 1) / P;
            items += (pages + STATS_CHUNK_PAGES - 1) / STATS_CHUNK_PAGES;
        }
        c.n_items = items;
        atomic_store(&c.next, 0);
        tp_run_dynamic(tp, stats_task, &c);
    }
    return 0;
}

int attn_prefill(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                 int n_tok, float *out, const attn_stats_cfg *stats) {
    return attn_prefill_lse(tp, scr, L, q, q_pos, n_tok, out, NULL, stats);
}
