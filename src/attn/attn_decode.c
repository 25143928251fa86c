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
    int job, g, pg0, pg1;
} decode_item;

typedef struct {
    const attn_decode_job *jobs;
    int n_jobs;
    const attn_kernels *kern;
    int group, head_dim, n_head;
    const decode_item *items;
    int n_items;
    atomic_int next;
    unsigned char *thread_mem;
    size_t thread_stride;
    float *part; /* per item: m[group], l[group], o[group][d] */
    long part_stride;
    /* statistics */
    float *scores;       /* per job: [n_head][n_max] masked scores of its query */
    const long *score_off, *n_max;
    const float *head_m, *head_l; /* merged max / sum per (job, query head) */
} decode_ctx;

/* Statistics need one page of per-slot counters per thread. */
static int t_chunk_slots(const kv_pool *pool) { return kv_pool_page_slots(pool); }

static void decode_task(void *arg, int ith, int nth) {
    decode_ctx *c = arg;
    const int D = c->head_dim, G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    const kv_pool *pool = c->jobs[0].L->pool;
    attn_tile_init(&t, &mem, pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride), G,
                   t_chunk_slots(pool));
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->n_items) break;
        const decode_item *it = &c->items[i];
        const attn_decode_job *j = &c->jobs[it->job];
        const float *src = j->q + (long)it->g * G * D;
        for (long e = 0; e < (long)G * D; e++) mem.q[e] = src[e] * j->L->scale;
        for (int r = 0; r < G; r++) mem.qpos[r] = j->q_pos;
        float *m = c->part + i * c->part_stride, *l = m + G, *o = l + G;
        for (int r = 0; r < G; r++) m[r] = -INFINITY, l[r] = 0.0f;
        memset(o, 0, (size_t)G * D * sizeof(float));
        float *sink = c->scores && j->stats ? c->scores + c->score_off[it->job] + (long)it->g * G * c->n_max[it->job] : NULL;
        t.rd.cold = j->L->cold ? &j->L->cold[it->g] : NULL;
        attn_tile_rows(&t, &j->L->streams[it->g], mem.q, mem.qpos, G, it->pg0, it->pg1, m, l, o, sink,
                       sink ? c->n_max[it->job] : 0);
    }
}

/* Probabilities from the stored scores and the merged max / sum. */
static void stats_task(void *arg, int ith, int nth) {
    decode_ctx *c = arg;
    const int G = c->group;
    attn_tile t;
    attn_tile_mem mem;
    const kv_pool *pool = c->jobs[0].L->pool;
    attn_tile_init(&t, &mem, pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride), G,
                   t_chunk_slots(pool));
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->n_items) break;
        const decode_item *it = &c->items[i];
        const attn_decode_job *j = &c->jobs[it->job];
        if (!j->stats) continue;
        const kv_stream *st = &j->L->streams[it->g];
        float *scores = c->scores + c->score_off[it->job]; /* this item's slots are its own: exp in place */
        const long n_max = c->n_max[it->job];
        const float thr = j->stats->hit_threshold;
        for (int pi = it->pg0; pi < it->pg1; pi++) {
            int first = pi * t.p;
            int nk = st->n - first < t.p ? st->n - first : t.p;
            for (int k = 0; k < nk; k++) mem.mass[k] = 0.0f, mem.hit[k] = 0;
            for (int r = 0; r < G; r++) {
                long h = (long)it->job * c->n_head + it->g * G + r;
                float lh = c->head_l[h];
                if (!(lh > 0.0f)) continue;
                float *e = scores + (long)(it->g * G + r) * n_max + first;
                c->kern->exp_sum(e, nk, c->head_m[h]);
                float inv = 1.0f / lh;
                for (int k = 0; k < nk; k++) {
                    float p = e[k] * inv;
                    mem.mass[k] += p;
                    mem.hit[k] |= p > 0.0f && p >= thr; /* a masked slot never hits */
                }
            }
            float *last = st->attn_last + first;
            for (int k = 0; k < nk; k++) last[k] = mem.mass[k];
            if (st->attn_acc)
                for (int k = 0; k < nk; k++) st->attn_acc[first + k] += mem.mass[k];
            if (st->attn_last_hit)
                for (int k = 0; k < nk; k++)
                    if (mem.hit[k]) st->attn_last_hit[first + k] = j->stats->step;
        }
    }
}

/* Pages per work item of one job. */
static long job_chunk(const attn_layer *L, int nth) {
    const int P = kv_pool_page_slots(L->pool);
    long total = 0, max_pages = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        long pages = (L->streams[g].n + P - 1) / P;
        total += pages;
        if (pages > max_pages) max_pages = pages;
    }
    if (nth <= 1) return max_pages > 0 ? max_pages : 1;
    long target = (long)nth * ITEMS_PER_THREAD, min_chunk = (MIN_CHUNK_SLOTS + P - 1) / P;
    long chunk = (total + target - 1) / target;
    return chunk < min_chunk ? min_chunk : chunk;
}

static bool job_ok(const attn_decode_job *j, const attn_decode_job *j0) {
    const attn_layer *L = j->L;
    if (!L || !L->pool || !L->streams || !j->q || !j->out || L->n_head_kv < 1 || L->n_head % L->n_head_kv != 0 ||
        L->head_dim != kv_pool_head_dim(L->pool))
        return false;
    /* one work list: every job has the shape and pool of the first */
    return L->pool == j0->L->pool && L->n_head == j0->L->n_head && L->n_head_kv == j0->L->n_head_kv;
}

int attn_decode_multi(threadpool *tp, attn_scratch *scr, const attn_decode_job *jobs, int n_jobs) {
    if (!scr || !jobs || n_jobs < 1 || !jobs[0].L) return -1;
    for (int k = 0; k < n_jobs; k++)
        if (!job_ok(&jobs[k], &jobs[0])) return -1;
    const attn_layer *L0 = jobs[0].L;
    const int nth = tp_n_threads(tp);
    const int D = L0->head_dim, G = L0->n_head / L0->n_head_kv, P = kv_pool_page_slots(L0->pool), H = L0->n_head_kv;
    bool want_stats = false;

    /* Chunking, per job as if it ran alone (so its result does not depend
     * on the others): with one thread, one item per KV head; with more,
     * about ITEMS_PER_THREAD items per thread, never under MIN_CHUNK_SLOTS. */
    long score_floats = 0;
    int n_items = 0;
    for (int k = 0; k < n_jobs; k++) {
        const attn_layer *L = jobs[k].L;
        const bool st = jobs[k].stats && jobs[k].stats->enabled;
        long n_max = 0;
        for (int g = 0; g < H; g++) {
            if (L->streams[g].n > n_max) n_max = L->streams[g].n;
            if (st && L->streams[g].n > 0 && !L->streams[g].attn_last) return -1;
        }
        if (st) score_floats += (long)L->n_head * n_max;
        want_stats |= st;
        long chunk = job_chunk(L, nth);
        for (int g = 0; g < H; g++) n_items += (int)(((L->streams[g].n + P - 1) / P + chunk - 1) / chunk);
    }

    decode_ctx c;
    memset(&c, 0, sizeof c);
    c.jobs = jobs;
    c.n_jobs = n_jobs;
    c.kern = attn_kernels_get();
    c.group = G;
    c.head_dim = D;
    c.n_head = L0->n_head;
    c.n_items = n_items;
    c.part_stride = 2L * G + (long)G * D;
    c.thread_stride = ((size_t)attn_tile_floats(L0->pool, G, t_chunk_slots(L0->pool)) * sizeof(float) + 63) / 64 * 64;
    c.thread_mem = attn_scratch_get(scr, ATTN_SCR_THREADS, c.thread_stride * (size_t)nth);
    decode_item *items = attn_scratch_get(scr, ATTN_SCR_ITEMS, (size_t)(n_items > 0 ? n_items : 1) * sizeof *items);
    c.part = attn_scratch_get(scr, ATTN_SCR_PARTIAL,
                              (size_t)(n_items > 0 ? n_items : 1) * (size_t)c.part_stride * sizeof(float));
    /* merged max / sum per (job, head), then per job: score offset and n_max */
    size_t head_floats = 2 * (size_t)n_jobs * L0->n_head;
    float *head = attn_scratch_get(scr, ATTN_SCR_ROWS, head_floats * sizeof(float) + 2 * (size_t)n_jobs * sizeof(long));
    if (!c.thread_mem || !items || !c.part || !head) return -1;
    long *score_off = (long *)(void *)(head + head_floats), *n_max = score_off + n_jobs;
    long off = 0;
    for (int k = 0; k < n_jobs; k++) {
        long nm = 0;
        for (int g = 0; g < H; g++)
            if (jobs[k].L->streams[g].n > nm) nm = jobs[k].L->streams[g].n;
        n_max[k] = nm;
        score_off[k] = off;
        if (jobs[k].stats && jobs[k].stats->enabled) off += (long)L0->n_head * nm;
    }
    c.score_off = score_off;
    c.n_max = n_max;
    if (want_stats && score_floats > 0) {
        c.scores = attn_scratch_get(scr, ATTN_SCR_SCORES, (size_t)score_floats * sizeof(float));
        if (!c.scores) return -1;
    }
    int it_n = 0;
    for (int k = 0; k < n_jobs; k++)
        for (int g = 0; g < H; g++) {
            int pages = (jobs[k].L->streams[g].n + P - 1) / P;
            long chunk = job_chunk(jobs[k].L, nth);
            for (int p0 = 0; p0 < pages; p0 += (int)chunk) {
                items[it_n].job = k;
                items[it_n].g = g;
                items[it_n].pg0 = p0;
                items[it_n].pg1 = p0 + chunk < pages ? p0 + (int)chunk : pages;
                it_n++;
            }
        }
    c.items = items;
    atomic_init(&c.next, 0);
    if (n_items > 0) tp_run_dynamic(tp, decode_task, &c);

    /* Log-sum-exp merge of each query head's partials (items of one job and
     * KV head are contiguous). */
    float *head_m = head, *head_l = head + (size_t)n_jobs * L0->n_head;
    int i0 = 0;
    for (int k = 0; k < n_jobs; k++)
        for (int g = 0; g < H; g++) {
            int i1 = i0;
            while (i1 < n_items && items[i1].job == k && items[i1].g == g) i1++;
            for (int r = 0; r < G; r++) {
                int h = g * G + r;
                float M = -INFINITY;
                for (int i = i0; i < i1; i++) {
                    float mi = c.part[i * c.part_stride + r];
                    if (mi > M) M = mi;
                }
                float *dst = jobs[k].out + (long)h * D;
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
                head_m[(long)k * L0->n_head + h] = M;
                head_l[(long)k * L0->n_head + h] = Lsum;
                if (jobs[k].lse) jobs[k].lse[h] = Lsum > 0.0f ? M + logf(Lsum) : -INFINITY;
            }
            i0 = i1;
        }

    if (want_stats && n_items > 0) {
        c.head_m = head_m;
        c.head_l = head_l;
        atomic_store(&c.next, 0);
        tp_run_dynamic(tp, stats_task, &c);
    }
    return 0;
}

int attn_decode_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, int32_t q_pos, float *out,
                    float *lse, const attn_stats_cfg *stats) {
    attn_decode_job j = {L, q, q_pos, out, lse, stats && stats->enabled ? stats : NULL};
    return attn_decode_multi(tp, scr, &j, 1);
}

int attn_decode(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, int32_t q_pos, float *out,
                const attn_stats_cfg *stats) {
    return attn_decode_lse(tp, scr, L, q, q_pos, out, NULL, stats);
}
