/* Flash-Decoding (Dao et al. 2023): split-KV decode. Work items are (KV
 * head, chunk of pages); each computes, for every query head of the group,
 * a partial max m, sum l and unnormalised output o with the online softmax
 * of attn_flash.c; the partials are merged exactly by log-sum-exp. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_flash.h"
#include "attn/attn_scratch.h"

/* Items aim at this many per thread (dynamic scheduling evens them out)... */
#define ITEMS_PER_THREAD 8
/* ...but hold at least this many slots, to amortise the merge. */
#define MIN_CHUNK_SLOTS 256

typedef struct {
    int g, pg0, pg1;
} decode_item;

typedef struct {
    const attn_layer *L;
    const float *q;
    int32_t q_pos;
    const attn_kernels *kern;
    int group;
    const decode_item *items;
    int n_items;
    atomic_int next;
    unsigned char *thread_mem;
    size_t thread_stride;
    float *part; /* per item: m[group], l[group], o[group][d] */
    long part_stride;
    /* statistics */
    const attn_stats_cfg *stats;
    float *scores;  /* [n_head][n_max] masked scores of this query */
    long n_max;
    const float *head_m, *head_l; /* merged max / sum per query head */
} decode_ctx;

/* Statistics need one page of per-slot counters per thread. */
static int t_chunk_slots(const attn_layer *L) { return kv_pool_page_slots(L->pool); }

static void decode_task(void *arg, int ith, int nth) {
    decode_ctx *c = arg;
    const attn_layer *L = c->L;
    const int D = L->head_dim, G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    attn_tile_init(&t, &mem, L->pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride),
                   G, t_chunk_slots(L));
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->n_items) break;
        const decode_item *it = &c->items[i];
        const float *src = c->q + (long)it->g * G * D;
        for (long e = 0; e < (long)G * D; e++) mem.q[e] = src[e] * L->scale;
        for (int r = 0; r < G; r++) mem.qpos[r] = c->q_pos;
        float *m = c->part + i * c->part_stride, *l = m + G, *o = l + G;
        for (int r = 0; r < G; r++) m[r] = -INFINITY, l[r] = 0.0f;
        memset(o, 0, (size_t)G * D * sizeof(float));
        float *sink = c->scores ? c->scores + (long)it->g * G * c->n_max : NULL;
        attn_tile_rows(&t, &L->streams[it->g], mem.q, mem.qpos, G, it->pg0, it->pg1, m, l, o, sink, c->n_max);
    }
}

/* Probabilities from the stored scores and the merged max / sum. */
static void stats_task(void *arg, int ith, int nth) {
    decode_ctx *c = arg;
    const attn_layer *L = c->L;
    const int G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    attn_tile_init(&t, &mem, L->pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride),
                   G, t_chunk_slots(L));
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->n_items) break;
        const decode_item *it = &c->items[i];
        const kv_stream *st = &L->streams[it->g];
        for (int pi = it->pg0; pi < it->pg1; pi++) {
            int first = pi * t.p;
            int nk = st->n - first < t.p ? st->n - first : t.p;
            for (int j = 0; j < nk; j++) mem.mass[j] = 0.0f, mem.hit[j] = 0;
            for (int r = 0; r < G; r++) {
                int h = it->g * G + r;
                float lh = c->head_l[h];
                if (!(lh > 0.0f)) continue;
                memcpy(mem.tmp, c->scores + (long)h * c->n_max + first, (size_t)nk * sizeof(float));
                c->kern->exp_sum(mem.tmp, nk, c->head_m[h]);
                float inv = 1.0f / lh;
                for (int j = 0; j < nk; j++) {
                    float p = mem.tmp[j] * inv;
                    mem.mass[j] += p;
                    if (p > 0.0f && p >= c->stats->hit_threshold) mem.hit[j] = 1; /* a masked slot never hits */
                }
            }
            for (int j = 0; j < nk; j++) attn_stats_store(st, first + j, mem.mass[j], mem.hit[j], c->stats->step);
        }
    }
}

int attn_decode_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, int32_t q_pos, float *out,
                    float *lse, const attn_stats_cfg *stats) {
    if (!scr || !L || !L->pool || !L->streams || !q || !out || L->n_head_kv < 1 || L->n_head % L->n_head_kv != 0 ||
        L->head_dim != kv_pool_head_dim(L->pool))
        return -1;
    const int nth = tp_n_threads(tp);
    const int D = L->head_dim, G = L->n_head / L->n_head_kv, P = kv_pool_page_slots(L->pool);
    const bool want_stats = stats && stats->enabled;

    /* Chunking: one item per KV head on one thread; with more threads, about
     * ITEMS_PER_THREAD items per thread but never under MIN_CHUNK_SLOTS. */
    long total_pages = 0, max_pages = 0, n_max = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        long pages = (L->streams[g].n + P - 1) / P;
        total_pages += pages;
        if (pages > max_pages) max_pages = pages;
        if (L->streams[g].n > n_max) n_max = L->streams[g].n;
        if (want_stats && L->streams[g].n > 0 && !L->streams[g].attn_acc) return -1;
    }
    long chunk = max_pages > 0 ? max_pages : 1;
    if (nth > 1) {
        long target = (long)nth * ITEMS_PER_THREAD;
        long min_chunk = (MIN_CHUNK_SLOTS + P - 1) / P;
        chunk = (total_pages + target - 1) / target;
        if (chunk < min_chunk) chunk = min_chunk;
    }
    int n_items = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        long pages = (L->streams[g].n + P - 1) / P;
        n_items += (int)((pages + chunk - 1) / chunk);
    }

    decode_ctx c;
    memset(&c, 0, sizeof c);
    c.L = L;
    c.q = q;
    c.q_pos = q_pos;
    c.kern = attn_kernels_get();
    c.group = G;
    c.n_items = n_items;
    c.part_stride = 2L * G + (long)G * D;
    c.thread_stride = ((size_t)attn_tile_floats(L->pool, G, t_chunk_slots(L)) * sizeof(float) + 63) / 64 * 64;
    c.thread_mem = attn_scratch_get(scr, ATTN_SCR_THREADS, c.thread_stride * (size_t)nth);
    decode_item *items = attn_scratch_get(scr, ATTN_SCR_ITEMS, (size_t)(n_items > 0 ? n_items : 1) * sizeof *items);
    c.part = attn_scratch_get(scr, ATTN_SCR_PARTIAL,
                              (size_t)(n_items > 0 ? n_items : 1) * (size_t)c.part_stride * sizeof(float));
    float *head = attn_scratch_get(scr, ATTN_SCR_ROWS, 2 * (size_t)L->n_head * sizeof(float));
    if (!c.thread_mem || !items || !c.part || !head) return -1;
    if (want_stats && n_max > 0) {
        c.n_max = n_max;
        c.scores = attn_scratch_get(scr, ATTN_SCR_SCORES, (size_t)L->n_head * (size_t)n_max * sizeof(float));
        if (!c.scores) return -1;
    }
    int k = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        int pages = (L->streams[g].n + P - 1) / P;
        for (int p0 = 0; p0 < pages; p0 += (int)chunk) {
            items[k].g = g;
            items[k].pg0 = p0;
            items[k].pg1 = p0 + chunk < pages ? p0 + (int)chunk : pages;
            k++;
        }
    }
    c.items = items;
    atomic_init(&c.next, 0);
    if (n_items > 0) tp_run(tp, decode_task, &c);

    /* Log-sum-exp merge of each query head's partials (items of one KV head
     * are contiguous). */
    float *head_m = head, *head_l = head + L->n_head;
    int i0 = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        int i1 = i0;
        while (i1 < n_items && items[i1].g == g) i1++;
        for (int r = 0; r < G; r++) {
            int h = g * G + r;
            float M = -INFINITY;
            for (int i = i0; i < i1; i++) {
                float mi = c.part[i * c.part_stride + r];
                if (mi > M) M = mi;
            }
            float *dst = out + (long)h * D;
            memset(dst, 0, (size_t)D * sizeof(float));
            float Lsum = 0.0f;
            if (M != -INFINITY) {
                for (int i = i0; i < i1; i++) {
                    const float *pm = c.part + i * c.part_stride;
                    if (pm[r] == -INFINITY) continue;
                    float w = expf(pm[r] - M);
                    Lsum += pm[G + r] * w;
                    const float *po = pm + 2 * G + (long)r * D;
                    for (int e = 0; e < D; e++) dst[e] += po[e] * w;
                }
                float inv = 1.0f / Lsum;
                for (int e = 0; e < D; e++) dst[e] *= inv;
            }
            head_m[h] = M;
            head_l[h] = Lsum;
            if (lse) lse[h] = Lsum > 0.0f ? M + logf(Lsum) : -INFINITY;
        }
        i0 = i1;
    }

    if (want_stats && n_items > 0) {
        c.stats = stats;
        c.head_m = head_m;
        c.head_l = head_l;
        atomic_store(&c.next, 0);
        tp_run(tp, stats_task, &c);
    }
    return 0;
}

int attn_decode(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, int32_t q_pos, float *out,
                const attn_stats_cfg *stats) {
    return attn_decode_lse(tp, scr, L, q, q_pos, out, NULL, stats);
}
