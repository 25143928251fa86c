/* The transactional plan executor and failure atomicity of the kv layer.
 * Fault injection (util/alloc.h): for k = 1, 2, ... the k-th allocation of
 * an operation fails, until the operation runs without the failure firing;
 * every failing run must leave every stream and cold tier byte-identical
 * to a snapshot taken before (n, pos, K/V rows, statistics, aux, cold
 * pages, pool pages in use), and the operation must then succeed. Also:
 * the plan's checks refuse cleanly, its result is the plan, and a warm
 * steady state of append + plan + apply allocates nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_cold.h"
#include "kv/kv_plan.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "testutil.h"
#include "util/alloc.h"
#include "util/error.h"

#define NS 3
#define P 16
#define D 32

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

typedef struct {
    kv_pool *pool;
    kv_stream st[NS]; /* st[1] is a fork of st[0]: all its pages shared */
    kv_cold cold[NS];
    kv_stream extra;  /* destination of the fork operation */
} world;

static void append_n(kv_pool *pool, kv_stream *s, int32_t p0, int n) {
    float k[64 * D], v[64 * D];
    int32_t pos[64];
    for (int done = 0; done < n;) {
        int c = n - done < 64 ? n - done : 64;
        for (int i = 0; i < c * D; i++) k[i] = frand(), v[i] = frand();
        for (int i = 0; i < c; i++) pos[i] = p0 + done + i;
        CHECK(kv_stream_append(pool, s, k, v, D, D, pos, c) == LETHE_OK);
        done += c;
    }
}

/* A deterministic world: three streams with stats and aux, one a fork, and
 * cold tiers holding a few partly filled pages. */
static void world_make(world *w) {
    rng = 12345;
    char err[LETHE_ERR_MAX];
    kv_pool_params pp = {.page_slots = P, .head_dim = D, .dtype = LT_F16, .n_pages = 64};
    w->pool = kv_pool_create(&pp, err);
    for (int i = 0; i < NS; i++) {
        kv_stream_init(&w->st[i]);
        CHECK(kv_cold_init(&w->cold[i], LT_Q8_0, P, D, NULL) == LETHE_OK);
    }
    kv_stream_init(&w->extra);
    CHECK(kv_stream_enable_stats(&w->st[0], KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK && kv_stream_enable_aux(&w->st[0], 2) == LETHE_OK);
    append_n(w->pool, &w->st[0], 0, 128); /* slot arrays (128) and page table (8) full: the next append grows them */
    CHECK(kv_stream_fork(w->pool, &w->st[0], &w->st[1]) == LETHE_OK);
    CHECK(kv_stream_enable_stats(&w->st[2], KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
    append_n(w->pool, &w->st[2], 1000, 40);
    for (int i = 0; i < NS; i++) {
        kv_stream *s = &w->st[i];
        for (int j = 0; j < s->n; j++) {
            s->attn_acc[j] = (float)(j * 7 % 13);
            s->attn_last[j] = (float)j;
            s->attn_last_hit[j] = j % 5;
            if (s->aux) s->aux[2 * j] = (float)j, s->aux[2 * j + 1] = -(float)j;
        }
        int idx[64];
        int nc = 2 * P + 3 + i;
        for (int j = 0; j < nc; j++) idx[j] = j;
        CHECK(kv_cold_add(&w->cold[i], w->pool, s, idx, NULL, nc) == LETHE_OK);
    }
}

static void world_free(world *w) {
    for (int i = 0; i < NS; i++) {
        kv_stream_free(w->pool, &w->st[i]);
        kv_cold_free(&w->cold[i]);
    }
    kv_stream_free(w->pool, &w->extra);
    kv_pool_free(w->pool);
}

/* A flat byte image of everything observable. */
typedef struct {
    unsigned char *b;
    size_t n, cap;
} image;

static void put(image *im, const void *p, size_t n) {
    if (im->n + n > im->cap) {
        im->cap = (im->n + n) * 2;
        im->b = realloc(im->b, im->cap);
    }
    memcpy(im->b + im->n, p, n);
    im->n += n;
}

static void snap_stream(image *im, const kv_pool *pool, const kv_stream *s) {
    put(im, &s->n, sizeof s->n);
    int flags[2] = {s->attn_acc != NULL, s->aux_width};
    put(im, flags, sizeof flags);
    for (int j = 0; j < s->n; j++) {
        put(im, &s->pos[j], sizeof s->pos[j]);
        put(im, kv_stream_k(pool, s, j), kv_pool_row_bytes(pool));
        put(im, kv_stream_v(pool, s, j), kv_pool_row_bytes(pool));
        if (s->attn_acc) {
            put(im, &s->attn_acc[j], sizeof(float));
            put(im, &s->attn_last[j], sizeof(float));
            put(im, &s->attn_last_hit[j], sizeof(int32_t));
        }
        if (s->aux) put(im, s->aux + (size_t)j * s->aux_width, (size_t)s->aux_width * sizeof(float));
    }
}

static void snap_cold(image *im, const kv_cold *c) {
    put(im, &c->n_pages, sizeof c->n_pages);
    put(im, &c->n_slots, sizeof c->n_slots);
    for (int p = 0; p < c->n_pages; p++) {
        const kv_cold_page *pg = &c->pages[p];
        put(im, &pg->n, sizeof pg->n);
        put(im, pg->pos, (size_t)pg->n * sizeof *pg->pos);
        put(im, pg->score, (size_t)pg->n * sizeof *pg->score);
        put(im, pg->kmin, (size_t)c->head_dim * sizeof(float));
        put(im, pg->kmax, (size_t)c->head_dim * sizeof(float));
        put(im, pg->k, c->block_bytes);
        put(im, pg->v, c->block_bytes);
    }
}

static image snapshot(const world *w) {
    image im = {0};
    size_t used = kv_pool_pages_used(w->pool);
    put(&im, &used, sizeof used);
    for (int i = 0; i < NS; i++) {
        snap_stream(&im, w->pool, &w->st[i]);
        snap_cold(&im, &w->cold[i]);
    }
    snap_stream(&im, w->pool, &w->extra);
    return im;
}

static int same_image(const image *a, const image *b) { return a->n == b->n && memcmp(a->b, b->b, a->n) == 0; }

/* The operations under test; each runs on a fresh world (plan prepared
 * beforehand where it needs one). */
typedef enum { OP_APPEND, OP_APPEND_COW, OP_FORK, OP_SHIFT, OP_REMOVE, OP_PREPARE, OP_APPLY, OP_COUNT } op_kind;
static const char *op_names[OP_COUNT] = {"append", "append (COW)", "fork", "shift", "remove", "plan_prepare", "plan_apply"};

/* A plan touching everything: hot drops in every stream (in the fork: COW),
 * demotions, a partial cold drop (repack) and a whole cold page drop. */
static void make_plan(world *w, kv_plan *plan) {
    uint8_t **keep = kv_plan_keep(plan), **dem = kv_plan_demote(plan), **ck = kv_plan_cold_keep(plan);
    for (int i = 0; i < NS; i++) {
        for (int j = 0; j < w->st[i].n; j++) {
            if (j % 3 == 1) keep[i][j] = 0;
            if (j % 3 == 1 && i != 2) dem[i][j] = 1; /* stream 0 and the fork demote: new cold pages */
        }
        for (int j = 0; j < w->cold[i].n_slots; j++)
            if (i == 0 ? j < P : j % 4 == 0) ck[i][j] = 0; /* stream 0: a whole page; others: repack */
    }
}

static lethe_status run_op(op_kind op, world *w, kv_plan *plan, const int *target) {
    static const kv_rope rope = {D, D, 10000.0f, 0};
    float k[3 * D], v[3 * D];
    int32_t pos[3] = {500, 501, 502};
    for (int i = 0; i < 3 * D; i++) k[i] = (float)i / 64, v[i] = -(float)i / 64;
    char err[LETHE_ERR_MAX];
    switch (op) {
    case OP_APPEND: return kv_stream_append(w->pool, &w->st[0], k, v, D, D, pos, 3);
    case OP_APPEND_COW: return kv_stream_append(w->pool, &w->st[1], k, v, D, D, pos, 3);
    case OP_FORK: return kv_stream_fork(w->pool, &w->st[0], &w->extra);
    case OP_SHIFT: return kv_stream_shift(w->pool, &w->st[1], &rope, 10, 50, 1000);
    case OP_REMOVE: return kv_stream_remove(w->pool, &w->st[1], 10, 20);
    case OP_PREPARE: return kv_plan_prepare(plan, w->st, w->cold);
    case OP_APPLY: return kv_plan_apply(plan, w->pool, w->st, w->cold, target, -1, err);
    default: return LETHE_ERR_ARG;
    }
}

static void test_fault_injection(void) {
    int target[NS] = {1000, 1000, 1000};
    for (int op = 0; op < OP_COUNT; op++) {
        int failures = 0, bad_state = 0, bad_retry = 0;
        long k;
        for (k = 1; k < 1000; k++) {
            world w;
            world_make(&w);
            kv_plan *plan = kv_plan_create(NS, true);
            if (op == OP_APPLY) {
                CHECK(kv_plan_prepare(plan, w.st, w.cold) == LETHE_OK);
                make_plan(&w, plan);
            }
            image before = snapshot(&w);
            lt_alloc_fail_at(k);
            lethe_status st = run_op((op_kind)op, &w, plan, target);
            int fired = lt_alloc_failed();
            lt_alloc_fail_at(0);
            bool done = !fired;
            if (done) {
                CHECKF(st == LETHE_OK, "%s succeeds without an injected failure (%s)", op_names[op], lethe_status_name(st));
            } else if (st != LETHE_OK) {
                failures++;
                image after = snapshot(&w);
                if (!same_image(&before, &after)) bad_state++;
                free(after.b);
                if (run_op((op_kind)op, &w, plan, target) != LETHE_OK) bad_retry++;
            }
            free(before.b);
            kv_plan_free(plan);
            world_free(&w);
            if (done) break;
        }
        CHECKF(bad_state == 0, "%s: %d of %d failing runs changed the state", op_names[op], bad_state, failures);
        CHECKF(bad_retry == 0, "%s: %d of %d failing runs left it unusable", op_names[op], bad_retry, failures);
        CHECKF(k < 1000, "%s: finished", op_names[op]);
        printf("  %-14s %d allocation points failed cleanly\n", op_names[op], failures);
    }
}

/* The plan's result: each hot stream holds the kept slots, each cold tier
 * the kept cold slots followed by the demoted ones; refusals change nothing. */
static void test_plan_result(void) {
    world w;
    world_make(&w);
    kv_plan *plan = kv_plan_create(NS, true);
    char err[LETHE_ERR_MAX];
    if (!CHECK(plan != NULL)) return;
    CHECK(kv_plan_prepare(plan, w.st, w.cold) == LETHE_OK);
    make_plan(&w, plan);
    int kept[NS], target[NS], cold_after[NS];
    for (int i = 0; i < NS; i++) {
        kept[i] = 0;
        int dem = 0, ck = 0;
        for (int j = 0; j < w.st[i].n; j++) {
            kept[i] += kv_plan_keep(plan)[i][j];
            dem += !kv_plan_keep(plan)[i][j] && kv_plan_demote(plan)[i][j];
        }
        for (int j = 0; j < w.cold[i].n_slots; j++) ck += kv_plan_cold_keep(plan)[i][j];
        cold_after[i] = ck + dem;
        target[i] = kept[i];
    }
    image before = snapshot(&w);
    /* a plan never prepared for these streams is refused */
    kv_plan *unprepared = kv_plan_create(NS, true);
    CHECK(kv_plan_apply(unprepared, w.pool, w.st, w.cold, target, -1, err) == LETHE_ERR_ARG);
    kv_plan_free(unprepared);
    /* over a target */
    target[2]--;
    CHECK(kv_plan_apply(plan, w.pool, w.st, w.cold, target, -1, err) == LETHE_ERR_BUDGET);
    target[2]++;
    /* over the cold capacity */
    int cap = cold_after[0] > cold_after[1] ? cold_after[0] : cold_after[1];
    cap = cap > cold_after[2] ? cap : cold_after[2];
    CHECK(kv_plan_apply(plan, w.pool, w.st, w.cold, target, cap - 1, err) == LETHE_ERR_BUDGET);
    /* too few pages for the copy on write of the fork */
    int32_t hog[64];
    int nh = 0;
    while ((hog[nh] = kv_pool_alloc(w.pool)) >= 0) nh++;
    CHECK(kv_plan_apply(plan, w.pool, w.st, w.cold, target, -1, err) == LETHE_ERR_BUDGET);
    for (int i = 0; i < nh; i++) kv_pool_release(w.pool, hog[i]);
    image after = snapshot(&w);
    CHECKF(same_image(&before, &after), "refused plans change nothing");
    free(after.b);
    free(before.b);
    /* what the demoted slots were */
    int32_t want_cold[NS][128];
    int nwant[NS];
    for (int i = 0; i < NS; i++) {
        nwant[i] = 0;
        int f = 0;
        for (int p = 0; p < w.cold[i].n_pages; p++)
            for (int j = 0; j < w.cold[i].pages[p].n; j++, f++)
                if (kv_plan_cold_keep(plan)[i][f]) want_cold[i][nwant[i]++] = w.cold[i].pages[p].pos[j];
        for (int j = 0; j < w.st[i].n; j++)
            if (!kv_plan_keep(plan)[i][j] && kv_plan_demote(plan)[i][j]) want_cold[i][nwant[i]++] = w.st[i].pos[j];
    }
    int32_t want_hot[NS][128];
    for (int i = 0; i < NS; i++)
        for (int j = 0, m = 0; j < w.st[i].n; j++)
            if (kv_plan_keep(plan)[i][j]) want_hot[i][m++] = w.st[i].pos[j];
    CHECK(kv_plan_apply(plan, w.pool, w.st, w.cold, target, cap, err) == LETHE_OK);
    for (int i = 0; i < NS; i++) {
        int ok = w.st[i].n == kept[i] && w.cold[i].n_slots == nwant[i];
        for (int j = 0; ok && j < kept[i]; j++) {
            int found = 0;
            for (int t = 0; t < kept[i]; t++) found += w.st[i].pos[t] == want_hot[i][j];
            ok &= found == 1;
        }
        int f = 0;
        for (int p = 0; ok && p < w.cold[i].n_pages; p++)
            for (int j = 0; j < w.cold[i].pages[p].n; j++, f++) ok &= w.cold[i].pages[p].pos[j] == want_cold[i][f];
        CHECKF(ok, "stream %d: hot and cold tiers hold what the plan said", i);
    }
    kv_plan_free(plan);
    world_free(&w);
}

/* After warm-up, appends into existing capacity and plan + apply cycles
 * (drop the oldest hot slot to the cold tier, drop the oldest cold page
 * when the tier is over 4 pages) make no allocation at all. */
static void test_no_alloc_steady_state(void) {
    char err[LETHE_ERR_MAX];
    kv_pool_params pp = {.page_slots = P, .head_dim = D, .dtype = LT_Q8_0, .n_pages = 64};
    kv_pool *pool = kv_pool_create(&pp, err);
    kv_stream s[2];
    kv_cold c[2];
    for (int i = 0; i < 2; i++) {
        kv_stream_init(&s[i]);
        CHECK(kv_stream_enable_stats(&s[i], KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
        CHECK(kv_cold_init(&c[i], LT_Q8_0, P, D, NULL) == LETHE_OK);
    }
    kv_plan *plan = kv_plan_create(2, true);
    const int budget = 200;
    int target[2] = {budget - 1, budget - 1};
    float k[D], v[D];
    int32_t next = 0;
    long before = 0;
    int ok = 1;
    for (int step = 0; step < 1200; step++) {
        if (step == 600) before = lt_alloc_count();
        for (int i = 0; i < 2; i++) {
            if (s[i].n >= budget) {
                ok &= kv_plan_prepare(plan, s, c) == LETHE_OK;
                int oldest = 0;
                for (int j = 1; j < s[i].n; j++)
                    if (s[i].pos[j] < s[i].pos[oldest]) oldest = j;
                kv_plan_keep(plan)[i][oldest] = 0;
                kv_plan_demote(plan)[i][oldest] = 1;
                if (c[i].n_slots > 4 * P) memset(kv_plan_cold_keep(plan)[i], 0, (size_t)c[i].pages[0].n);
                int tg[2] = {s[0].n, s[1].n};
                tg[i] = target[i];
                ok &= kv_plan_apply(plan, pool, s, c, tg, -1, err) == LETHE_OK;
            }
            for (int e = 0; e < D; e++) k[e] = frand(), v[e] = frand();
            ok &= kv_stream_append(pool, &s[i], k, v, D, D, &next, 1) == LETHE_OK;
        }
        next++;
    }
    long made = lt_alloc_count() - before;
    CHECK(ok);
    CHECKF(made == 0, "600 warm steps of append + plan + apply made %ld allocations (want 0)", made);
    CHECK(s[0].n == budget && c[0].n_slots > 0 && c[0].n_slots <= 5 * P);
    kv_plan_free(plan);
    for (int i = 0; i < 2; i++) {
        kv_stream_free(pool, &s[i]);
        kv_cold_free(&c[i]);
    }
    kv_pool_free(pool);
}

int main(void) {
    test_fault_injection();
    test_plan_result();
    test_no_alloc_steady_state();
    return tu_finish("test_kv_plan");
}
