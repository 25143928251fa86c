/* Shared-prefix decode attention (Hydragen, Juravsky et al. 2024).
 *
 * Sequences forked from one prompt hold the same physical pages at the
 * start of their page tables (copy on write keeps a shared page's rows, and
 * the positions that came with them, identical for every holder). For every
 * KV head, the decode queries of all sequences sharing a run of full pages
 * (query heads of the group x sequences: one block of rows) go through
 * those pages once: each page is read (and converted from F16 / Q8_0) once
 * per block instead of once per sequence, and the scores are one
 * matrix-matrix product per page.
 *
 * Each sequence's attention is split into the same chunks of pages as
 * attn_decode_multi splits it (one per KV head with one thread), so its
 * result is the same arithmetic: the chunks inside the shared pages are
 * computed once for the whole block of rows; the chunk that straddles the
 * end of the shared pages is begun there and carried on over the
 * sequence's own pages from that online-softmax state (max, sum,
 * unnormalised weighted V); the chunks past it are the sequence's own. The
 * partials are then merged by log-sum-exp in page order as
 * attn_decode_multi merges them. Sequences share in one unit only when
 * their chunk boundaries inside the shared pages agree. Per row, the score,
 * exp and P x V kernels do the same operations whatever the block (for
 * full pages of a multiple of 4 slots), so the result is bit-identical to
 * attn_decode_multi's; a kernel whose sums depended on the blocking would
 * make it differ by rounding. Masking stays by position, per row.
 *
 * Two passes on the thread pool: items (unit, block of rows, chunk of
 * shared pages), then items (sequence, KV head, chunk of its own pages).
 * Partials are merged in item order, so the result does not depend on the
 * scheduling. Jobs that share nothing go to attn_decode_multi unchanged. */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_flash.h"
#include "attn/attn_scratch.h"

#define ITEMS_PER_THREAD 8
#define MIN_CHUNK_SLOTS 256

/* Sequences sharing the first sp pages of their stream of KV head g. */
typedef struct {
    int g, sp, m, m0;          /* m members, their job indices at members[m0 ..] */
    int cu, nb, bs, nch, it0;  /* chunk pages; blocks of at most bs rows over the m x G rows, nch chunks each; first item */
} share_unit;

typedef struct {
    int a, b;     /* pass 1: unit, block; pass 2: job, KV head */
    int pg0, pg1; /* pages */
    int init;     /* -1: pass 1; pass 2: 1 starts empty, 0 goes on from the state the shared chunk left */
    long off;     /* floats into the partials: m[nr], l[nr], o[nr][D] */
} share_item;

typedef struct {
    const attn_decode_job *jobs;
    const share_unit *units;
    const int *members;
    const share_item *items;
    int i1, G, D;
    const attn_kernels *kern;
    const kv_pool *pool;
    atomic_int next;
    unsigned char *thread_mem;
    size_t thread_stride;
    float *part;
} share_ctx;

static void unit_block(const share_unit *u, int G, int b, int *r0, int *r1) {
    *r0 = b * u->bs;
    *r1 = *r0 + u->bs < u->m * G ? *r0 + u->bs : u->m * G;
}

static void share_task(void *arg, int ith, int nth) {
    share_ctx *c = arg;
    const int G = c->G, D = c->D;
    attn_tile t;
    attn_tile_mem mem;
    attn_tile_init(&t, &mem, c->pool, c->kern, (float *)(void *)(c->thread_mem + (size_t)ith * c->thread_stride),
                   ATTN_BLOCK_ROWS, kv_pool_page_slots(c->pool));
    t.rd.cold = NULL;
    (void)nth;
    for (;;) {
        int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->i1) break;
        const share_item *it = &c->items[i];
        const kv_stream *st;
        int nr;
        if (it->init < 0) { /* pass 1: a block of the unit's rows, member-major */
            const share_unit *u = &c->units[it->a];
            int r0, r1;
            unit_block(u, G, it->b, &r0, &r1);
            nr = r1 - r0;
            for (int r = 0; r < nr; r++) {
                const attn_decode_job *j = &c->jobs[c->members[u->m0 + (r0 + r) / G]];
                const float *src = j->q + ((long)u->g * G + (r0 + r) % G) * D;
                float *dst = mem.q + (long)r * D;
                for (int e = 0; e < D; e++) dst[e] = src[e] * j->L->scale;
                mem.qpos[r] = j->q_pos;
            }
            /* the first member's stream: every member holds these pages, with the same positions */
            st = &c->jobs[c->members[u->m0]].L->streams[u->g];
        } else { /* pass 2: one job's query heads of KV head b */
            const attn_decode_job *j = &c->jobs[it->a];
            const float *src = j->q + (long)it->b * G * D;
            nr = G;
            for (long e = 0; e < (long)G * D; e++) mem.q[e] = src[e] * j->L->scale;
            for (int r = 0; r < G; r++) mem.qpos[r] = j->q_pos;
            st = &j->L->streams[it->b];
        }
        float *m = c->part + it->off, *l = m + nr, *o = l + nr;
        if (it->init != 0) {
            for (int r = 0; r < nr; r++) m[r] = -INFINITY, l[r] = 0.0f;
            memset(o, 0, (size_t)nr * D * sizeof(float));
        }
        attn_tile_rows(&t, st, mem.q, mem.qpos, nr, it->pg0, it->pg1, m, l, o, NULL, 0);
    }
}

static void run_items(threadpool *tp, share_ctx *c, int i0, int i1) {
    if (i0 >= i1) return;
    atomic_store(&c->next, i0);
    c->i1 = i1;
    tp_run_dynamic(tp, share_task, c);
}

/* attn_decode_multi's chunk (pages per work item) of a job. */
static int job_chunk(const attn_layer *L, int nth) {
    const int P = kv_pool_page_slots(L->pool);
    long total = 0, max_pages = 0;
    for (int g = 0; g < L->n_head_kv; g++) {
        long pages = (L->streams[g].n + P - 1) / P;
        total += pages;
        if (pages > max_pages) max_pages = pages;
    }
    if (nth <= 1) return max_pages > 0 ? (int)max_pages : 1;
    long target = (long)nth * ITEMS_PER_THREAD, min_chunk = (MIN_CHUNK_SLOTS + P - 1) / P;
    long chunk = (total + target - 1) / target;
    return (int)(chunk < min_chunk ? min_chunk : chunk);
}

/* Full pages at the start of a's and b's tables that are the same pages
 * with the same positions, at most lim. */
static int common_pages(const kv_stream *a, const kv_stream *b, int P, int lim) {
    int n = 0;
    while (n < lim && a->pages[n] == b->pages[n] &&
           !memcmp(a->pos + (long)n * P, b->pos + (long)n * P, (size_t)P * sizeof *a->pos))
        n++;
    return n;
}

static bool shareable(const attn_decode_job *j) { return !(j->stats && j->stats->enabled) && !j->L->cold; }

/* Per (job, KV head) of the participants. */
typedef struct {
    int sp;       /* shared pages (0: none) */
    int unit, row; /* its unit and its first row there */
    int first, n2; /* its pass-2 items */
} share_row;

/* The units of KV head g among the shareable jobs: a leader (the first job
 * not yet in a unit), and of the jobs after it that share its first page
 * and split it into chunks alike, the set that saves the most page reads
 * ((members - 1) x shared pages). */
static int find_units(const attn_decode_job *jobs, int n_jobs, int g, int H, int G, int P, const int *ck, unsigned char *taken,
                      int *cand, share_unit *units, int n_units, int *members, int *n_members, share_row *rows) {
    for (int k = 0; k < n_jobs; k++) taken[k] = !shareable(&jobs[k]);
    for (int k0 = 0; k0 < n_jobs; k0++) {
        if (taken[k0]) continue;
        taken[k0] = 1;
        const kv_stream *s0 = &jobs[k0].L->streams[g];
        const int full0 = s0->n / P;
        if (full0 < 1) continue;
        int nc = 0; /* cand: pairs (job, common pages), most pages first */
        for (int k = k0 + 1; k < n_jobs; k++) {
            const kv_stream *s = &jobs[k].L->streams[g];
            if (taken[k] || s->n < P || s->pages[0] != s0->pages[0]) continue;
            int cp = common_pages(s0, s, P, s->n / P < full0 ? s->n / P : full0);
            if (cp < 1 || !(ck[k] == ck[k0] || (ck[k] >= cp && ck[k0] >= cp))) continue; /* chunk starts must agree */
            int at = nc++;
            for (; at > 0 && cand[2 * (at - 1) + 1] < cp; at--) {
                cand[2 * at] = cand[2 * (at - 1)];
                cand[2 * at + 1] = cand[2 * (at - 1) + 1];
            }
            cand[2 * at] = k;
            cand[2 * at + 1] = cp;
        }
        if (nc == 0) continue;
        int best = 1;
        for (int c = 2; c <= nc; c++)
            if ((long)c * cand[2 * (c - 1) + 1] > (long)best * cand[2 * (best - 1) + 1]) best = c;
        share_unit *u = &units[n_units];
        memset(u, 0, sizeof *u);
        u->g = g;
        u->sp = cand[2 * (best - 1) + 1];
        u->cu = ck[k0];
        u->m = best + 1;
        u->m0 = *n_members;
        for (int c = -1; c < best; c++) {
            int k = c < 0 ? k0 : cand[2 * c];
            share_row *sr = &rows[(long)k * H + g];
            sr->sp = u->sp;
            sr->unit = n_units;
            sr->row = (*n_members - u->m0) * G;
            members[(*n_members)++] = k;
            taken[k] = 1;
        }
        n_units++;
    }
    return n_units;
}
/* Partial (m, l, o) of row r of item i (nr rows). */
static inline const float *part_of(const share_item *items, const float *part, int i) { return part + items[i].off; }

/* dst (d floats) = the normalised merge of row ra of pass-1 items [a0, a0
 * + na) (nra rows each), then row rb of pass-2 items [b0, b0 + nb) (nrb
 * rows), in that (page) order: attn_decode_multi's merge. Returns the
 * log-sum-exp. */
static float merge_row(const share_item *items, const float *part, int a0, int na, int nra, int ra, int b0, int nb,
                       int nrb, int rb, int d, float *dst) {
    float M = -INFINITY;
    for (int x = 0; x < na + nb; x++) {
        const int i = x < na ? a0 + x : b0 + x - na, r = x < na ? ra : rb;
        const float mi = part_of(items, part, i)[r];
        if (mi > M) M = mi;
    }
    memset(dst, 0, (size_t)d * sizeof(float));
    if (M == -INFINITY) return -INFINITY;
    float Lsum = 0.0f;
    for (int x = 0; x < na + nb; x++) {
        const int i = x < na ? a0 + x : b0 + x - na, r = x < na ? ra : rb, nr = x < na ? nra : nrb;
        const float *pm = part_of(items, part, i);
        if (pm[r] == -INFINITY) continue;
        float w = expf(pm[r] - M);
        Lsum += pm[nr + r] * w;
        const float *po = pm + 2 * nr + (long)r * d;
        for (int e = 0; e < d; e++) dst[e] += po[e] * w;
    }
    float inv = 1.0f / Lsum;
    for (int e = 0; e < d; e++) dst[e] *= inv;
    return Lsum > 0.0f ? M + logf(Lsum) : -INFINITY;
}

int attn_decode_shared(threadpool *tp, attn_scratch *scr, const attn_decode_job *jobs, int n_jobs, attn_decode_job *rest) {
    if (!scr || !jobs || n_jobs < 1 || !jobs[0].L || !rest) return -1;
    if (n_jobs < 2) return attn_decode_multi(tp, scr, jobs, n_jobs) != 0 ? -1 : 0;
    const attn_layer *L0 = jobs[0].L;
    for (int k = 0; k < n_jobs; k++) {
        const attn_layer *L = jobs[k].L;
        if (!L || !L->streams || !jobs[k].q || !jobs[k].out || L->pool != L0->pool || L->n_head != L0->n_head ||
            L->n_head_kv != L0->n_head_kv || L->n_head_kv < 1 || L->n_head % L->n_head_kv != 0 ||
            L->head_dim != kv_pool_head_dim(L0->pool))
            return -1;
    }
    const kv_pool *pool = L0->pool;
    const int H = L0->n_head_kv, G = L0->n_head / H, D = L0->head_dim, P = kv_pool_page_slots(pool);
    const int nth = tp_n_threads(tp);
    if (G > ATTN_BLOCK_ROWS) return attn_decode_multi(tp, scr, jobs, n_jobs) != 0 ? -1 : 0;

    /* the table: at most n_jobs / 2 units and n_jobs members per KV head */
    const size_t max_units = (size_t)H * (size_t)(n_jobs / 2), nkh = (size_t)H * (size_t)n_jobs;
    size_t bytes = max_units * sizeof(share_unit) + nkh * sizeof(share_row) + (nkh + 3 * (size_t)n_jobs) * sizeof(int) +
                   2 * (size_t)n_jobs;
    unsigned char *tab = attn_scratch_get(scr, ATTN_SCR_SHARED, bytes);
    if (!tab) return -1;
    share_unit *units = (share_unit *)(void *)tab;
    share_row *rows = (share_row *)(void *)(units + max_units);
    int *members = (int *)(void *)(rows + nkh), *ck = members + nkh, *cand = ck + n_jobs;
    unsigned char *taken = (unsigned char *)(cand + 2 * n_jobs), *part = taken + n_jobs;
    memset(rows, 0, nkh * sizeof *rows);
    for (int k = 0; k < n_jobs; k++) ck[k] = job_chunk(jobs[k].L, nth);
    int n_units = 0, n_members = 0;
    for (int g = 0; g < H; g++)
        n_units = find_units(jobs, n_jobs, g, H, G, P, ck, taken, cand, units, n_units, members, &n_members, rows);
    if (n_units == 0) return attn_decode_multi(tp, scr, jobs, n_jobs) != 0 ? -1 : 0;
    memset(part, 0, (size_t)n_jobs);
    int n_part = 0;
    for (int i = 0; i < n_members; i++) part[members[i]] = 1;
    for (int k = 0; k < n_jobs; k++) n_part += part[k];

    /* Scratch asked for is a bound that depends only on who shares (stable
     * from step to step): a participant's items (its share of the pass-1
     * items, and its pass-2 items) number at most 2 target + 3 H, of G rows
     * each, where target is attn_decode_multi's items per job. */
    const long target = nth > 1 ? (long)nth * ITEMS_PER_THREAD : 0;
    const size_t cap_items = (size_t)n_part * (size_t)(2 * target + 3 * H);
    const size_t cap_rows = (size_t)G * cap_items;
    share_item *items = attn_scratch_get(scr, ATTN_SCR_ITEMS, cap_items * sizeof *items);
    share_ctx c;
    memset(&c, 0, sizeof c);
    c.thread_stride = ((size_t)attn_tile_floats(pool, ATTN_BLOCK_ROWS, P) * sizeof(float) + 63) / 64 * 64;
    c.thread_mem = attn_scratch_get(scr, ATTN_SCR_THREADS, c.thread_stride * (size_t)nth);
    c.part = attn_scratch_get(scr, ATTN_SCR_PARTIAL, cap_rows * (size_t)(2 + D) * sizeof(float));
    if (!items || !c.thread_mem || !c.part) return -1;

    /* pass 1: per unit and block of rows, the chunks of the shared pages */
    int n_items = 0;
    long off = 0;
    for (int ui = 0; ui < n_units; ui++) {
        share_unit *u = &units[ui];
        const int R = u->m * G;
        u->nb = (R + ATTN_BLOCK_ROWS - 1) / ATTN_BLOCK_ROWS;
        u->bs = (R + u->nb - 1) / u->nb;
        u->nch = (u->sp + u->cu - 1) / u->cu;
        u->it0 = n_items;
        for (int b = 0; b < u->nb; b++) {
            int r0, r1;
            unit_block(u, G, b, &r0, &r1);
            for (int p0 = 0; p0 < u->sp; p0 += u->cu) {
                share_item *it = &items[n_items++];
                *it = (share_item){ui, b, p0, p0 + u->cu < u->sp ? p0 + u->cu : u->sp, -1, off};
                off += (long)(r1 - r0) * (2 + D);
            }
        }
    }
    const int n_pass1 = n_items;
    /* pass 2: per participant and KV head, its chunks past the shared pages
     * (the first going on from the chunk that straddles their end) */
    for (int k = 0; k < n_jobs; k++) {
        if (!part[k]) continue;
        for (int g = 0; g < H; g++) {
            share_row *sr = &rows[(long)k * H + g];
            const int pages = (jobs[k].L->streams[g].n + P - 1) / P, C = ck[k];
            sr->first = n_items;
            int p0 = sr->sp;
            if (sr->sp % C != 0) { /* the straddling chunk goes on */
                int p1 = (sr->sp / C + 1) * C;
                items[n_items++] = (share_item){k, g, p0, p1 < pages ? p1 : pages, 0, off};
                off += (long)G * (2 + D);
                p0 = p1;
            }
            for (; p0 < pages; p0 += C) {
                items[n_items++] = (share_item){k, g, p0, p0 + C < pages ? p0 + C : pages, 1, off};
                off += (long)G * (2 + D);
            }
            sr->n2 = n_items - sr->first;
        }
    }
    c.jobs = jobs;
    c.units = units;
    c.members = members;
    c.items = items;
    c.G = G;
    c.D = D;
    c.kern = attn_kernels_get();
    c.pool = pool;
    atomic_init(&c.next, 0);
    run_items(tp, &c, 0, n_pass1);

    /* the straddling chunk's state, per row, to the pass-2 item that goes on from it */
    for (int ui = 0; ui < n_units; ui++) {
        const share_unit *u = &units[ui];
        for (int b = 0; b < u->nb; b++) {
            int r0, r1;
            unit_block(u, G, b, &r0, &r1);
            const int nr = r1 - r0;
            const float *pm = c.part + items[u->it0 + b * u->nch + u->nch - 1].off;
            for (int r = 0; r < nr; r++) {
                const int k = members[u->m0 + (r0 + r) / G], hr = (r0 + r) % G;
                const share_row *sr = &rows[(long)k * H + u->g];
                if (sr->sp % ck[k] == 0) continue; /* its last shared chunk is whole */
                float *dm = c.part + items[sr->first].off, *dl = dm + G;
                dm[hr] = pm[r];
                dl[hr] = pm[nr + r];
                memcpy(dl + G + (long)hr * D, pm + 2 * nr + (long)r * D, (size_t)D * sizeof(float));
            }
        }
    }
    run_items(tp, &c, n_pass1, n_items);

    /* every participant's rows: its whole shared chunks, then its own */
    for (int k = 0; k < n_jobs; k++) {
        if (!part[k]) continue;
        for (int g = 0; g < H; g++) {
            const share_row *sr = &rows[(long)k * H + g];
            const share_unit *u = sr->sp > 0 ? &units[sr->unit] : NULL;
            const int whole = u ? sr->sp / ck[k] : 0;
            for (int r = 0; r < G; r++) {
                int a0 = 0, nra = 0, ra = 0;
                if (u) {
                    const int row = sr->row + r, b = row / u->bs;
                    int r0, r1;
                    unit_block(u, G, b, &r0, &r1);
                    a0 = u->it0 + b * u->nch;
                    nra = r1 - r0;
                    ra = row - r0;
                }
                float lse = merge_row(items, c.part, a0, whole, nra, ra, sr->first, sr->n2, G, r, D,
                                      jobs[k].out + ((long)g * G + r) * D);
                if (jobs[k].lse) jobs[k].lse[g * G + r] = lse;
            }
        }
    }

    /* the jobs that share nothing, as they would have run (after the merge:
     * attn_decode_multi reuses the items and partials) */
    int n_rest = 0;
    for (int k = 0; k < n_jobs; k++)
        if (!part[k]) rest[n_rest++] = jobs[k];
    if (n_rest > 0 && attn_decode_multi(tp, scr, rest, n_rest) != 0) return -1;
    return n_part;
}
