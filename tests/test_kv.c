/* KV page pool and streams: allocation, refcounts, accounting, append,
 * fork / copy on write, compaction, and dtype round trips. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_convert.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "testutil.h"
#include "util/error.h"
#include "util/fp16.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static kv_pool *make_pool(int P, int D, lt_type t, size_t n_pages) {
    char err[LETHE_ERR_MAX];
    kv_pool_params p = {.page_slots = P, .head_dim = D, .dtype = t, .n_pages = n_pages};
    kv_pool *pool = kv_pool_create(&p, err);
    if (!pool) fprintf(stderr, "kv_pool_create: %s\n", err);
    return pool;
}

/* Deterministic K/V contents for position p, element e. */
static float kval(int p, int e) { return (float)p + (float)e / 1024.0f; }
static float vval(int p, int e) { return -(float)p - (float)e / 512.0f; }

static void fill_rows(float *k, float *v, const int32_t *pos, int n, int D) {
    for (int t = 0; t < n; t++)
        for (int e = 0; e < D; e++) {
            k[(size_t)t * D + e] = kval(pos[t], e);
            v[(size_t)t * D + e] = vval(pos[t], e);
        }
}

/* Checks that stream slot i holds the rows of position expect_pos[i]. */
static int stream_matches(const kv_pool *pool, const kv_stream *s, const int32_t *expect_pos, int n) {
    int D = kv_pool_head_dim(pool);
    if (s->n != n) return 0;
    for (int i = 0; i < n; i++) {
        if (s->pos[i] != expect_pos[i]) return 0;
        const float *k = kv_stream_k(pool, s, i), *v = kv_stream_v(pool, s, i);
        for (int e = 0; e < D; e++)
            if (k[e] != kval(expect_pos[i], e) || v[e] != vval(expect_pos[i], e)) return 0;
    }
    return 1;
}

/* Compaction does not keep slot order: checks that the stream holds exactly
 * the positions expect[0..n) (each once, any order), each slot with its own
 * rows. */
static int stream_holds(const kv_pool *pool, const kv_stream *s, const int32_t *expect, int n) {
    int D = kv_pool_head_dim(pool);
    if (s->n != n) return 0;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n; j++) found += s->pos[j] == expect[i];
        if (found != 1) return 0;
        const float *k = kv_stream_k(pool, s, i), *v = kv_stream_v(pool, s, i);
        for (int e = 0; e < D; e++)
            if (k[e] != kval(s->pos[i], e) || v[e] != vval(s->pos[i], e)) return 0;
    }
    return 1;
}

static lethe_status append_range(kv_pool *pool, kv_stream *s, int p0, int n) {
    int D = kv_pool_head_dim(pool);
    float *k = malloc((size_t)n * D * sizeof *k), *v = malloc((size_t)n * D * sizeof *v);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!k || !v || !pos) { free(k); free(v); free(pos); return LETHE_ERR_NOMEM; }
    for (int t = 0; t < n; t++) pos[t] = p0 + t;
    fill_rows(k, v, pos, n, D);
    lethe_status st = kv_stream_append(pool, s, k, v, D, D, pos, n);
    free(k); free(v); free(pos);
    return st;
}

static void test_bad_params(void) {
    char err[LETHE_ERR_MAX];
    kv_pool_params p = {.page_slots = 16, .head_dim = 48, .dtype = LT_Q8_0, .n_pages = 4};
    CHECK(kv_pool_create(&p, err) == NULL); /* Q8_0 needs head_dim % 32 == 0 */
    p.dtype = LT_Q4_0; /* so does Q4_0 */
    CHECK(kv_pool_create(&p, err) == NULL);
    p.dtype = LT_Q4_K; /* a weight type, not a KV type */
    p.head_dim = 256;
    CHECK(kv_pool_create(&p, err) == NULL);
    p.head_dim = 64;
    p.dtype = LT_F32;
    p.page_slots = 0;
    CHECK(kv_pool_create(&p, err) == NULL);
    p.page_slots = 16;
    p.n_pages = 0;
    CHECK(kv_pool_create(&p, err) == NULL);
}

static void test_pool(void) {
    const int P = 16, D = 64;
    kv_pool *pool = make_pool(P, D, LT_F32, 8);
    if (!CHECK(pool != NULL)) return;
    size_t page_bytes = kv_pool_page_bytes(pool);
    CHECK(kv_pool_row_bytes(pool) == D * sizeof(float));
    CHECK(page_bytes == 2u * P * D * sizeof(float));
    CHECK(kv_pool_n_pages(pool) == 8);
    CHECK(kv_pool_bytes_used(pool) == 0);
    CHECK(kv_pool_bytes_free(pool) == 8 * page_bytes);
    CHECK(((uintptr_t)kv_page_k_row(pool, 0, 0) & 63) == 0);

    int32_t ids[8];
    for (int i = 0; i < 8; i++) {
        ids[i] = kv_pool_alloc(pool);
        CHECK(ids[i] >= 0 && ids[i] < 8);
        CHECK(kv_pool_refcount(pool, ids[i]) == 1);
    }
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < i; j++) CHECK(ids[i] != ids[j]);
    CHECK(kv_pool_pages_used(pool) == 8);
    CHECK(kv_pool_bytes_used(pool) == 8 * page_bytes);
    CHECK(kv_pool_bytes_free(pool) == 0);
    CHECK(kv_pool_alloc(pool) == -1); /* exhausted, cleanly */
    CHECK(kv_pool_alloc(pool) == -1);

    /* Rows of different pages do not overlap; K and V blocks are disjoint. */
    unsigned char *k0 = kv_page_k_row(pool, ids[0], 0), *v0 = kv_page_v_row(pool, ids[0], 0);
    CHECK((size_t)(v0 - k0) == (size_t)P * D * sizeof(float));
    CHECK((unsigned char *)kv_page_k_row(pool, ids[0], 1) - k0 == (long)(D * sizeof(float)));

    /* Refcounts: retain twice, release three times frees the page. */
    kv_pool_retain(pool, ids[3]);
    kv_pool_retain(pool, ids[3]);
    CHECK(kv_pool_refcount(pool, ids[3]) == 3);
    kv_pool_release(pool, ids[3]);
    kv_pool_release(pool, ids[3]);
    CHECK(kv_pool_refcount(pool, ids[3]) == 1);
    CHECK(kv_pool_pages_used(pool) == 8);
    kv_pool_release(pool, ids[3]);
    CHECK(kv_pool_refcount(pool, ids[3]) == 0);
    CHECK(kv_pool_pages_used(pool) == 7);
    CHECK(kv_pool_bytes_free(pool) == page_bytes);
    /* O(1) reuse: the page just freed comes straight back. */
    CHECK(kv_pool_alloc(pool) == ids[3]);
    CHECK(kv_pool_alloc(pool) == -1);
    kv_pool_release(pool, ids[5]);
    kv_pool_release(pool, ids[1]);
    CHECK(kv_pool_alloc(pool) == ids[1]); /* LIFO */
    CHECK(kv_pool_alloc(pool) == ids[5]);
    for (int i = 0; i < 8; i++) kv_pool_release(pool, ids[i]);
    CHECK(kv_pool_pages_used(pool) == 0);
    CHECK(kv_pool_bytes_used(pool) == 0);
    CHECK(kv_pool_peak_pages_used(pool) == 8);
    kv_pool_free(pool);
}

/* A pool large enough for the huge-page path: every page usable end to end. */
static void test_big_pool(void) {
    const int P = 16, D = 128;
    kv_pool *pool = make_pool(P, D, LT_F32, 700); /* 700 x 16 KiB */
    if (!CHECK(pool != NULL)) return;
    CHECK(((uintptr_t)kv_page_k_row(pool, 0, 0) & 63) == 0);
    int ok = 1;
    for (int i = 0; i < 700; i++) {
        int32_t id = kv_pool_alloc(pool);
        ok &= id == i;
        float *k = kv_page_k_row(pool, id, 0), *v = kv_page_v_row(pool, id, P - 1);
        k[0] = (float)i;
        v[D - 1] = (float)-i;
    }
    CHECK(ok);
    CHECK(kv_pool_alloc(pool) == -1);
    for (int i = 0; i < 700; i++) {
        ok &= ((float *)kv_page_k_row(pool, i, 0))[0] == (float)i;
        ok &= ((float *)kv_page_v_row(pool, i, P - 1))[D - 1] == (float)-i;
    }
    CHECK(ok);
    CHECK(kv_pool_bytes_used(pool) == 700 * kv_pool_page_bytes(pool));
    kv_pool_free(pool);
}

static void test_append(int P) {
    const int D = 32;
    kv_pool *pool = make_pool(P, D, LT_F32, 64);
    if (!CHECK(pool != NULL)) return;
    kv_stream s;
    kv_stream_init(&s);
    /* Appends of assorted sizes crossing page boundaries. */
    int sizes[] = {1, P - 2, 1, P, P + 1, 3, 2 * P, 1};
    int total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] <= 0) continue;
        CHECK(append_range(pool, &s, 100 + total, sizes[i]) == LETHE_OK);
        total += sizes[i];
        CHECK(kv_pool_pages_used(pool) == (size_t)((total + P - 1) / P));
    }
    int32_t *expect = malloc((size_t)total * sizeof *expect);
    for (int i = 0; i < total; i++) expect[i] = 100 + i;
    CHECK(stream_matches(pool, &s, expect, total));
    /* Strided input: rows taken every 3 * D floats. */
    {
        float buf[3 * 3 * 32];
        int32_t pos[3] = {7000, 7001, 7002};
        for (int t = 0; t < 3; t++)
            for (int e = 0; e < D; e++) {
                buf[t * 3 * D + e] = kval(pos[t], e);
                buf[t * 3 * D + D + e] = vval(pos[t], e);
            }
        CHECK(kv_stream_append(pool, &s, buf, buf + D, 3 * D, 3 * D, pos, 3) == LETHE_OK);
        CHECK(s.n == total + 3);
        CHECK(s.pos[total + 2] == 7002);
        CHECK(((float *)kv_stream_v(pool, &s, total + 1))[5] == vval(7001, 5));
    }
    free(expect);
    kv_stream_free(pool, &s);
    CHECK(s.n == 0 && s.pages == NULL);
    CHECK(kv_pool_pages_used(pool) == 0);
    kv_pool_free(pool);
}

static void test_budget(void) {
    const int P = 16, D = 32;
    kv_pool *pool = make_pool(P, D, LT_F32, 4);
    if (!CHECK(pool != NULL)) return;
    kv_stream s;
    kv_stream_init(&s);
    CHECK(append_range(pool, &s, 0, 3 * P + 5) == LETHE_OK); /* 4 pages */
    CHECK(kv_pool_pages_used(pool) == 4);
    /* Fits in the last page's free rows. */
    CHECK(append_range(pool, &s, 3 * P + 5, P - 5) == LETHE_OK);
    CHECK(s.n == 4 * P);
    /* Needs a fifth page: refused, nothing appended. */
    CHECK(append_range(pool, &s, 4 * P, 1) == LETHE_ERR_BUDGET);
    CHECK(s.n == 4 * P);
    CHECK(kv_pool_pages_used(pool) == 4);
    int32_t expect[64];
    for (int i = 0; i < 4 * P; i++) expect[i] = i;
    CHECK(stream_matches(pool, &s, expect, 4 * P));
    /* A too-large append refuses before taking any page. */
    uint8_t keep[64];
    for (int i = 0; i < 4 * P; i++) keep[i] = i < 2 * P;
    CHECK(kv_stream_compact(pool, &s, keep) == LETHE_OK);
    CHECK(kv_pool_pages_used(pool) == 2);
    CHECK(append_range(pool, &s, 2 * P, 2 * P + 1) == LETHE_ERR_BUDGET);
    CHECK(kv_pool_pages_used(pool) == 2 && s.n == 2 * P);
    CHECK(append_range(pool, &s, 2 * P, 2 * P) == LETHE_OK);
    CHECK(stream_matches(pool, &s, expect, 4 * P));
    kv_stream_free(pool, &s);
    kv_pool_free(pool);
}

static void test_fork(void) {
    const int P = 16, D = 32;
    kv_pool *pool = make_pool(P, D, LT_F32, 16);
    if (!CHECK(pool != NULL)) return;
    kv_stream a, b;
    kv_stream_init(&a);
    kv_stream_init(&b);
    CHECK(append_range(pool, &a, 0, 2 * P + 3) == LETHE_OK); /* 3 pages, last partial */
    CHECK(kv_stream_enable_stats(&a, KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
    a.attn_acc[5] = 2.5f;
    a.attn_last_hit[5] = 9;
    CHECK(kv_stream_fork(pool, &a, &b) == LETHE_OK);
    CHECK(b.n == a.n);
    CHECK(kv_pool_pages_used(pool) == 3); /* shared pages counted once */
    CHECK(kv_pool_bytes_used(pool) == 3 * kv_pool_page_bytes(pool));
    for (int i = 0; i < 3; i++) {
        CHECK(b.pages[i] == a.pages[i]);
        CHECK(kv_pool_refcount(pool, a.pages[i]) == 2);
    }
    CHECK(b.attn_acc && b.attn_acc[5] == 2.5f && b.attn_last_hit[5] == 9);
    int32_t expect[128];
    for (int i = 0; i < 128; i++) expect[i] = i;
    CHECK(stream_matches(pool, &b, expect, 2 * P + 3));

    /* Appending to the fork copies the shared last page only. */
    int32_t a_last = a.pages[2];
    CHECK(append_range(pool, &b, 1000, 2) == LETHE_OK);
    CHECK(b.pages[2] != a_last);
    CHECK(b.pages[0] == a.pages[0] && b.pages[1] == a.pages[1]);
    CHECK(kv_pool_refcount(pool, a_last) == 1);
    CHECK(kv_pool_refcount(pool, b.pages[2]) == 1);
    CHECK(kv_pool_pages_used(pool) == 4);
    CHECK(stream_matches(pool, &a, expect, 2 * P + 3)); /* parent intact */
    int32_t expect_b[128];
    for (int i = 0; i < 2 * P + 3; i++) expect_b[i] = i;
    expect_b[2 * P + 3] = 1000;
    expect_b[2 * P + 4] = 1001;
    CHECK(stream_matches(pool, &b, expect_b, 2 * P + 5));
    /* Appending to the parent now writes its own (no longer shared) page. */
    CHECK(append_range(pool, &a, 2 * P + 3, 1) == LETHE_OK);
    CHECK(a.pages[2] == a_last);
    CHECK(stream_matches(pool, &a, expect, 2 * P + 4));
    CHECK(stream_matches(pool, &b, expect_b, 2 * P + 5));

    /* A fork whose last page is full appends into a fresh page, no copy. */
    kv_stream c;
    kv_stream_init(&c);
    kv_stream d;
    kv_stream_init(&d);
    CHECK(append_range(pool, &c, 0, 2 * P) == LETHE_OK);
    CHECK(kv_stream_fork(pool, &c, &d) == LETHE_OK);
    size_t used = kv_pool_pages_used(pool);
    CHECK(append_range(pool, &d, 2 * P, 1) == LETHE_OK);
    CHECK(kv_pool_pages_used(pool) == used + 1);
    CHECK(d.pages[0] == c.pages[0] && d.pages[1] == c.pages[1]);
    CHECK(stream_matches(pool, &c, expect, 2 * P));
    CHECK(stream_matches(pool, &d, expect, 2 * P + 1));

    /* Freeing the parent leaves the fork's pages alive. */
    kv_stream_free(pool, &a);
    CHECK(stream_matches(pool, &b, expect_b, 2 * P + 5));
    CHECK(kv_pool_refcount(pool, b.pages[0]) == 1);
    kv_stream_free(pool, &b);
    kv_stream_free(pool, &c);
    kv_stream_free(pool, &d);
    CHECK(kv_pool_pages_used(pool) == 0);

    /* Copy on write with a full pool: the append is refused cleanly. */
    kv_pool *small = make_pool(P, D, LT_F32, 1);
    kv_stream_init(&a);
    kv_stream_init(&b);
    CHECK(append_range(small, &a, 0, 3) == LETHE_OK);
    CHECK(kv_stream_fork(small, &a, &b) == LETHE_OK);
    CHECK(append_range(small, &b, 3, 1) == LETHE_ERR_BUDGET);
    CHECK(b.n == 3 && stream_matches(small, &a, expect, 3));
    kv_stream_free(small, &a);
    CHECK(append_range(small, &b, 3, 1) == LETHE_OK); /* sole owner now: no copy */
    CHECK(stream_matches(small, &b, expect, 4));
    kv_stream_free(small, &b);
    kv_pool_free(small);
    kv_pool_free(pool);
}

static void test_compact(void) {
    const int P = 16, D = 32;
    kv_pool *pool = make_pool(P, D, LT_F32, 32);
    if (!CHECK(pool != NULL)) return;
    for (int trial = 0; trial < 40; trial++) {
        kv_stream s;
        kv_stream_init(&s);
        int n = 1 + (int)((frand() + 1.0f) * 0.5f * 5 * P);
        CHECK(append_range(pool, &s, 0, n) == LETHE_OK);
        CHECK(kv_stream_enable_stats(&s, KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
        for (int i = 0; i < n; i++) {
            s.attn_acc[i] = (float)i;
            s.attn_last[i] = (float)(2 * i);
            s.attn_last_hit[i] = i;
        }
        uint8_t keep[5 * 16 + 1];
        int32_t expect[5 * 16 + 1];
        int m = 0;
        float density = (float)(trial % 4) / 4.0f;
        for (int i = 0; i < n; i++) {
            keep[i] = (frand() + 1.0f) * 0.5f > density;
            if (trial == 0) keep[i] = 0;
            if (keep[i]) expect[m++] = i;
        }
        /* Half the trials compact a fork that shares all pages. */
        kv_stream f;
        kv_stream_init(&f);
        bool fork = trial % 2;
        if (fork) CHECK(kv_stream_fork(pool, &s, &f) == LETHE_OK);
        kv_stream *t = fork ? &f : &s;
        CHECK(kv_stream_compact(pool, t, keep) == LETHE_OK);
        CHECK(stream_holds(pool, t, expect, m));
        for (int i = 0; i < m; i++) { /* statistics moved with their slots */
            CHECK(t->attn_acc[i] == (float)t->pos[i]);
            CHECK(t->attn_last[i] == (float)(2 * t->pos[i]));
            CHECK(t->attn_last_hit[i] == t->pos[i]);
        }
        int32_t all[5 * 16 + 1];
        for (int i = 0; i < n; i++) all[i] = i;
        if (fork) {
            CHECK(stream_matches(pool, &s, all, n)); /* the original is untouched */
            kv_stream_free(pool, &f);
        }
        CHECK(kv_pool_pages_used(pool) == (size_t)((s.n + P - 1) / P));
        if (!fork) CHECK(kv_pool_pages_used(pool) == (size_t)((m + P - 1) / P));
        /* The compacted stream keeps accepting appends. */
        kv_stream_free(pool, &s);
        CHECK(kv_pool_pages_used(pool) == 0);
    }
    /* Keeping everything changes nothing; dropping only the tail releases pages. */
    kv_stream s;
    kv_stream_init(&s);
    CHECK(append_range(pool, &s, 0, 3 * P) == LETHE_OK);
    uint8_t keep[48];
    memset(keep, 1, sizeof keep);
    int32_t p1 = s.pages[1];
    CHECK(kv_stream_compact(pool, &s, keep) == LETHE_OK && s.n == 3 * P && s.pages[1] == p1);
    for (int i = P + 1; i < 3 * P; i++) keep[i] = 0;
    CHECK(kv_stream_compact(pool, &s, keep) == LETHE_OK);
    CHECK(s.n == P + 1 && kv_pool_pages_used(pool) == 2 && s.pages[1] == p1);
    int32_t expect[48];
    for (int i = 0; i < 48; i++) expect[i] = i;
    CHECK(stream_matches(pool, &s, expect, P + 1));
    CHECK(append_range(pool, &s, P + 1, 2) == LETHE_OK);
    CHECK(stream_matches(pool, &s, expect, P + 3));
    kv_stream_free(pool, &s);

    /* Compacting a shared stream with no free page for the copy: refused, unchanged. */
    kv_pool *small = make_pool(P, D, LT_F32, 2);
    kv_stream a, b;
    kv_stream_init(&a);
    kv_stream_init(&b);
    CHECK(append_range(small, &a, 0, 2 * P) == LETHE_OK);
    CHECK(kv_stream_fork(small, &a, &b) == LETHE_OK);
    for (int i = 0; i < 2 * P; i++) keep[i] = i != 3;
    CHECK(kv_stream_compact(small, &b, keep) == LETHE_ERR_BUDGET);
    CHECK(stream_matches(small, &b, expect, 2 * P));
    kv_stream_free(small, &a);
    CHECK(kv_stream_compact(small, &b, keep) == LETHE_OK);
    int32_t e2[32];
    for (int i = 0, j = 0; i < 2 * P; i++)
        if (keep[i]) e2[j++] = i;
    CHECK(stream_holds(small, &b, e2, 2 * P - 1));
    CHECK(b.pos[3] == 2 * P - 1); /* the hole was filled from the tail */
    kv_stream_free(small, &b);
    kv_pool_free(small);
    kv_pool_free(pool);
}

/* A quantised round trip x -> y, per block of 32: every element within
 * max(amax / div * (1 + rel), floor) + float rounding of what was stored. */
static void check_blocks(const char *name, const float *x, const float *y, int D, float div, float rel, float floor) {
    for (int b = 0; b < D / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const float tol = fmaxf(amax / div * (1.0f + rel), floor) + amax * 0x1p-22f;
        for (int j = 0; j < 32; j++) {
            const float e = fabsf(y[b * 32 + j] - x[b * 32 + j]);
            CHECKF(e <= tol, "%s round trip %g -> %g (amax %g)", name, x[b * 32 + j], y[b * 32 + j], amax);
        }
    }
}

static void test_dtypes(void) {
    const int D = 128, P = 16;
    /* Scalar conversions on awkward values, and SIMD == scalar bit for bit. */
    float x[128], y[128], z[128];
    unsigned char buf_a[512], buf_b[512];
    for (int rep = 0; rep < 200; rep++) {
        float mag = rep % 5 == 0 ? 1e-6f : rep % 5 == 1 ? 1000.0f : 1.0f;
        for (int i = 0; i < D; i++) x[i] = frand() * mag;
        if (rep % 7 == 0) x[rep % D] = 0.0f;
        if (rep % 11 == 0) /* an all-zero Q8_0 block */
            for (int i = 0; i < 32; i++) x[i] = 0.0f;
        if (rep % 13 == 0) x[3] = 0.5f * mag, x[4] = -0.5f * mag, x[5] = 127.0f / 254.0f * mag;
        lt_type types[3] = {LT_F16, LT_Q8_0, LT_Q4_0};
        for (int ti = 0; ti < 3; ti++) {
            lt_type t = types[ti];
            size_t rb = kv_row_size(t, D);
            kv_row_from_f32_scalar(t, x, buf_a, D);
            kv_row_from_f32(t, x, buf_b, D);
            CHECKF(memcmp(buf_a, buf_b, rb) == 0, "dtype %d: SIMD store differs from scalar (rep %d)", t, rep);
            kv_row_to_f32_scalar(t, buf_a, y, D);
            kv_row_to_f32(t, buf_a, z, D);
            CHECKF(memcmp(y, z, D * sizeof(float)) == 0, "dtype %d: SIMD load differs from scalar", t);
            if (t == LT_F16) {
                /* Round to nearest: relative error <= 2^-11 for normal halves,
                 * absolute <= 2^-25 in the subnormal range. */
                for (int i = 0; i < D; i++)
                    CHECKF(fabsf(y[i] - x[i]) <= fmaxf(fabsf(x[i]) * 0x1p-11f, 0x1p-25f),
                           "F16 round trip %g -> %g", x[i], y[i]);
            } else if (t == LT_Q4_0) {
                /* Per block d = m / -8 (m the value of largest magnitude):
                 * |x - (q - 8) d| <= |d| / 2, but -m rounds to +8, clamped
                 * to 7, so the bound is |d| = amax / 8 (scale rounding and
                 * the half-precision floor as for Q8_0). */
                check_blocks("Q4_0", x, y, D, 8.0f, 0x1p-10f, 8.0f * 0x1p-24f);
            } else {
                /* Per block: |x - q d| <= d_stored / 2, and d_stored is within
                 * 2^-11 (relative) of amax / 127, so the bound is
                 * amax / 254 * (1 + 2^-11) (plus float rounding). When
                 * amax / 127 falls below the half-precision normal range the
                 * stored scale has absolute error up to 2^-25, which allows
                 * an element error up to 127 * 2^-25. */
                check_blocks("Q8_0", x, y, D, 254.0f, 0x1p-11f, 127.0f * 0x1p-25f);
            }
        }
    }
    /* Q8_0 block layout: d (half) then 32 int8, 34 bytes a block. */
    {
        float v[32];
        for (int j = 0; j < 32; j++) v[j] = (float)(j - 16) / 16.0f;
        kv_block_q8_0 b;
        kv_row_from_f32_scalar(LT_Q8_0, v, &b, 32);
        unsigned char raw[34];
        memcpy(raw, &b, 34);
        uint16_t d;
        memcpy(&d, raw, 2);
        CHECK(fabsf(fp16_to_fp32(d) - 1.0f / 127.0f) < 1e-5f);
        CHECK((int8_t)raw[2] == -127 && (int8_t)raw[2 + 16] == 0 && (int8_t)raw[2 + 24] == 64);
        CHECK(kv_row_size(LT_Q8_0, 128) == 4 * 34);
    }
    /* Through the pool and a stream, every dtype. */
    lt_type types[4] = {LT_F32, LT_F16, LT_Q8_0, LT_Q4_0};
    for (int ti = 0; ti < 4; ti++) {
        kv_pool *pool = make_pool(P, D, types[ti], 8);
        if (!CHECK(pool != NULL)) continue;
        CHECK(kv_pool_row_bytes(pool) == kv_row_size(types[ti], D));
        CHECK(kv_pool_page_bytes(pool) == 2 * P * kv_row_size(types[ti], D));
        kv_stream s;
        kv_stream_init(&s);
        enum { N = 40 };
        static float k[N * 128], v[N * 128];
        int32_t pos[N];
        for (int i = 0; i < N * D; i++) k[i] = frand() * 3.0f, v[i] = frand();
        for (int i = 0; i < N; i++) pos[i] = i;
        CHECK(kv_stream_append(pool, &s, k, v, D, D, pos, N) == LETHE_OK);
        float row[128];
        double max_err = 0;
        for (int i = 0; i < N; i++) {
            kv_load_row(pool, kv_stream_k(pool, &s, i), row);
            for (int e = 0; e < D; e++) max_err = fmax(max_err, fabs(row[e] - k[i * D + e]));
            kv_load_row(pool, kv_stream_v(pool, &s, i), row);
            for (int e = 0; e < D; e++) max_err = fmax(max_err, fabs(row[e] - v[i * D + e]) * 3.0);
        }
        /* |k| < 3: F16 error <= 3 * 2^-11; Q8_0 <= 3 / 254, Q4_0 <= 3 / 8 (+ scale rounding). */
        double tol = types[ti] == LT_F32 ? 0.0 : types[ti] == LT_F16 ? 3.0 * 0x1p-11 : types[ti] == LT_Q8_0 ? 3.0 / 254.0 * 1.001 : 3.0 / 8.0 * 1.002;
        CHECKF(max_err <= tol, "dtype %d: stream round trip error %g > %g", types[ti], max_err, tol);
        kv_stream_free(pool, &s);
        kv_pool_free(pool);
    }
}

int main(void) {
    test_bad_params();
    test_pool();
    test_big_pool();
    test_append(16);
    test_append(32);
    test_append(1);
    test_budget();
    test_fork();
    test_compact();
    test_dtypes();
    return tu_finish("test_kv");
}
