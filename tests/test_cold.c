/* The cold tier and the log-sum-exp merge that lets attention span two
 * tiers: (1) a cold page's key bound is a true upper bound of q.k for every
 * key it holds (Quest's guarantee), its values come back within the
 * quantisation error, and compaction keeps the right positions; (2)
 * attention over a stream split into two disjoint streams, merged by
 * attn_merge_lse, equals attention over the whole stream (prefill and
 * decode), including rows that see nothing in one part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_kernels.h"
#include "kv/kv_cold.h"
#include "testutil.h"
#include "util/alloc.h"
#include "util/error.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void test_cold_pages(lt_type dtype, int P, int hd) {
    char err[LETHE_ERR_MAX];
    kv_pool_params pp = {P, hd, LT_F32, 64};
    kv_pool *pool = kv_pool_create(&pp, err);
    kv_stream s;
    kv_stream_init(&s);
    const int n = 5 * P + 3;
    float *k = malloc(sizeof(float) * n * hd), *v = malloc(sizeof(float) * n * hd);
    int32_t *pos = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n * hd; i++) k[i] = 3 * frand(), v[i] = frand();
    for (int i = 0; i < n; i++) pos[i] = 10 + 2 * i;
    CHECK(kv_stream_append(pool, &s, k, v, hd, hd, pos, n) == LETHE_OK);
    kv_cold c;
    CHECK(kv_cold_init(&c, dtype, P, hd, NULL) == LETHE_OK);
    /* add in two uneven batches: the partial last page is re-quantised */
    int *idx = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) idx[i] = i;
    CHECK(kv_cold_add(&c, pool, &s, idx, NULL, P + 5) == LETHE_OK);
    CHECK(kv_cold_add(&c, pool, &s, idx + P + 5, NULL, n - P - 5) == LETHE_OK);
    CHECK(c.n_slots == n && c.n_pages == (n + P - 1) / P);

    /* load everything back */
    kv_pool_params vp = {P, hd, LT_F32, 64};
    kv_pool *view_pool = kv_pool_create(&vp, err);
    kv_stream view;
    kv_stream_init(&view);
    int *pages = malloc(sizeof(int) * c.n_pages);
    for (int p = 0; p < c.n_pages; p++) pages[p] = p;
    CHECK(kv_cold_load(&c, pages, c.n_pages, view_pool, &view) == LETHE_OK);
    CHECK(view.n == n);
    /* |x| < 3. Q8_0: d = amax/127, error d/2 plus 127 x the fp16 rounding of d
     * (2^-11 relative); Q4_0: d = amax/8 and the top code clamps at 7, so up
     * to a whole step; F16: half an ulp at 3 (2^-10). The page that was
     * partly filled by the first add is quantised twice: two roundings. */
    double tol = 2 * (dtype == LT_Q4_0 ? 3.0 / 8 + 1e-3 : dtype == LT_Q8_0 ? 3.0 / 127 * (0.5 + 127.0 / 2048) + 1e-5 : 3.0 / 1024);
    double worst = 0;
    float row[256];
    for (int i = 0; i < n; i++) {
        CHECK(view.pos[i] == pos[i]);
        kv_load_row(view_pool, kv_stream_k(view_pool, &view, i), row);
        for (int e = 0; e < hd; e++) worst = fmax(worst, fabs(row[e] - k[(long)i * hd + e]));
    }
    CHECKF(worst <= tol, "%s: cold keys within %.3g of the originals (worst %.3g)", lt_type_name(dtype), tol, worst);

    /* the bound holds for every stored key */
    int bound_ok = 1;
    float q[256];
    for (int trial = 0; trial < 50; trial++) {
        for (int e = 0; e < hd; e++) q[e] = frand();
        for (int p = 0; p < c.n_pages; p++) {
            float b = kv_cold_bound(&c, p, q, 1.0f);
            for (int j = 0; j < c.pages[p].n; j++) {
                int i = p * P + j;
                kv_load_row(view_pool, kv_stream_k(view_pool, &view, i), row);
                double dot = 0;
                for (int e = 0; e < hd; e++) dot += (double)q[e] * row[e];
                if (dot > b + 1e-4) bound_ok = 0;
            }
        }
    }
    CHECKF(bound_ok, "%s: page bound >= q.k for every key", lt_type_name(dtype));

    /* compaction: drop every third slot (in page order) */
    uint8_t *keep = malloc((size_t)n);
    int kept = 0;
    for (int i = 0; i < n; i++) kept += keep[i] = i % 3 != 0;
    CHECK(kv_cold_compact(&c, keep) == LETHE_OK && c.n_slots == kept);
    int order_ok = 1, w = 0;
    for (int p = 0; p < c.n_pages; p++)
        for (int t = 0; t < c.pages[p].n; t++) {
            while (w < n && !keep[w]) w++;
            if (w >= n || c.pages[p].pos[t] != pos[w]) order_ok = 0;
            w++;
        }
    CHECK(order_ok);
    CHECK(kv_cold_bytes(&c) > 0);
    /* dropping whole pages leaves the other pages' blocks untouched */
    {
        uint8_t *kp = malloc((size_t)c.n_slots);
        memset(kp, 1, (size_t)c.n_slots);
        memset(kp, 0, (size_t)c.pages[0].n); /* drop the first page */
        unsigned char *before = malloc(c.block_bytes);
        memcpy(before, c.pages[1].k, c.block_bytes);
        int32_t first_pos = c.pages[1].pos[0];
        int n_before = c.n_slots, p0 = c.pages[0].n;
        CHECK(kv_cold_compact(&c, kp) == LETHE_OK);
        CHECK(c.n_slots == n_before - p0 && c.pages[0].pos[0] == first_pos);
        CHECK(memcmp(before, c.pages[0].k, c.block_bytes) == 0);
        free(kp);
        free(before);
    }
    /* a dropped page's storage stays for reuse: counted as reserved, and
     * the next add that fits in it allocates nothing; trim returns it */
    {
        size_t live = kv_cold_bytes(&c), held = kv_cold_bytes_reserved(&c);
        CHECK(held > live && c.n_alloc > c.n_pages);
        long allocs = lt_alloc_count();
        int room = c.n_alloc * P - c.n_slots, before_slots = c.n_slots;
        CHECK(kv_cold_add(&c, pool, &s, idx, NULL, room) == LETHE_OK && c.n_slots == before_slots + room);
        CHECK(lt_alloc_count() == allocs);
        CHECK(kv_cold_bytes_reserved(&c) == held && kv_cold_bytes(&c) > live);
        uint8_t *kp = malloc((size_t)c.n_slots);
        memset(kp, 1, (size_t)c.n_slots);
        memset(kp + c.n_slots - P, 0, (size_t)P); /* the last (full) page */
        CHECK(kv_cold_compact(&c, kp) == LETHE_OK);
        kv_cold_trim(&c);
        CHECK(c.n_alloc == c.n_pages && kv_cold_bytes_reserved(&c) < held);
        free(kp);
    }

    kv_stream_free(view_pool, &view);
    kv_stream_free(pool, &s);
    kv_cold_free(&c);
    kv_pool_free(view_pool);
    kv_pool_free(pool);
    free(k);
    free(v);
    free(pos);
    free(idx);
    free(pages);
    free(keep);
}

/* whole vs split-and-merged attention */
static void test_merge(int n, int n_tok, int n_head, int n_kv, int hd, threadpool *tp) {
    char err[LETHE_ERR_MAX];
    kv_pool_params pp = {16, hd, LT_F32, 4096};
    kv_pool *pool = kv_pool_create(&pp, err);
    kv_stream *whole = calloc((size_t)n_kv, sizeof *whole), *a = calloc((size_t)n_kv, sizeof *a),
              *b = calloc((size_t)n_kv, sizeof *b);
    float *k = malloc(sizeof(float) * hd), *v = malloc(sizeof(float) * hd);
    for (int h = 0; h < n_kv; h++) {
        kv_stream_init(&whole[h]);
        kv_stream_init(&a[h]);
        kv_stream_init(&b[h]);
        for (int i = 0; i < n; i++) {
            for (int e = 0; e < hd; e++) k[e] = frand(), v[e] = frand();
            int32_t p = i;
            CHECK(kv_stream_append(pool, &whole[h], k, v, hd, hd, &p, 1) == LETHE_OK);
            /* part b holds only late positions, so early queries see nothing there */
            kv_stream *part = i < n / 2 ? &a[h] : (i % 2 ? &a[h] : &b[h]);
            CHECK(kv_stream_append(pool, part, k, v, hd, hd, &p, 1) == LETHE_OK);
        }
    }
    const long rows = (long)n_tok * n_head;
    float *q = malloc(sizeof(float) * rows * hd), *o1 = malloc(sizeof(float) * rows * hd), *o2 = malloc(sizeof(float) * rows * hd),
          *o3 = malloc(sizeof(float) * rows * hd), *l2 = malloc(sizeof(float) * rows), *l3 = malloc(sizeof(float) * rows),
          *l1 = malloc(sizeof(float) * rows);
    int32_t *qpos = malloc(sizeof(int32_t) * n_tok);
    for (long i = 0; i < rows * hd; i++) q[i] = frand();
    for (int t = 0; t < n_tok; t++) qpos[t] = n - n_tok + t;
    if (n_tok > 1) qpos[0] = n / 4; /* sees nothing of part b */
    attn_scratch *scr = attn_scratch_create();
    float scale = 1.0f / sqrtf((float)hd);
    attn_layer Lw = {pool, whole, n_head, n_kv, hd, scale, NULL}, La = {pool, a, n_head, n_kv, hd, scale, NULL}, Lb = {pool, b, n_head, n_kv, hd, scale, NULL};
    CHECK(attn_forward_lse(tp, scr, &Lw, q, qpos, n_tok, o1, l1, NULL) == 0);
    CHECK(attn_forward_lse(tp, scr, &La, q, qpos, n_tok, o2, l2, NULL) == 0);
    CHECK(attn_forward_lse(tp, scr, &Lb, q, qpos, n_tok, o3, l3, NULL) == 0);
    attn_merge_lse(o2, l2, o3, l3, (int)rows, hd);
    double worst = 0, worst_l = 0;
    for (long i = 0; i < rows * hd; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
    for (long i = 0; i < rows; i++) worst_l = fmax(worst_l, fabs(l1[i] - l2[i]));
    CHECKF(worst < 1e-5 && worst_l < 1e-4, "merge n=%d tok=%d: max|d| out %.3g lse %.3g", n, n_tok, worst, worst_l);
    for (int h = 0; h < n_kv; h++) {
        kv_stream_free(pool, &whole[h]);
        kv_stream_free(pool, &a[h]);
        kv_stream_free(pool, &b[h]);
    }
    attn_scratch_free(scr);
    kv_pool_free(pool);
    free(whole); free(a); free(b); free(k); free(v); free(q); free(o1); free(o2); free(o3); free(l1); free(l2); free(l3); free(qpos);
}

/* Attention over cold pages read in place (attn_layer.cold, what the
 * runtime does) equals attention over the same pages loaded into an F32
 * view (kv_cold_load): the same values, so to float rounding. With 32-slot
 * pages and head_dim % 32 == 0 the cold kernels read the quantised blocks
 * directly (scores on the per-channel layout, values in registers); with
 * 16-slot pages the keys go through the dequantising tile reader, also
 * when the hot pool is F16 (whose pages the kernels would otherwise read
 * in place: a cold page's index is not a pool page). */
static void test_in_place(lt_type dtype, int P, int n, int n_tok, int hd, threadpool *tp, lt_type hot_dt) {
    char err[LETHE_ERR_MAX];
    const int n_head = 4, n_kv = 2;
    kv_pool_params pp = {P, hd, hot_dt, 4096}, vp = {P, hd, LT_F32, 4096};
    kv_pool *pool = kv_pool_create(&pp, err), *view_pool = kv_pool_create(&vp, err);
    kv_cold cold[2];
    kv_stream hot[2], loaded[2], inplace[2];
    float *k = malloc(sizeof(float) * hd), *v = malloc(sizeof(float) * hd);
    int *idx = malloc(sizeof(int) * n), *sel = malloc(sizeof(int) * n);
    for (int h = 0; h < n_kv; h++) {
        kv_stream_init(&hot[h]);
        kv_stream_init(&loaded[h]);
        kv_stream_init(&inplace[h]);
        CHECK(kv_cold_init(&cold[h], dtype, P, hd, NULL) == LETHE_OK);
        for (int i = 0; i < n; i++) {
            for (int e = 0; e < hd; e++) k[e] = frand(), v[e] = frand();
            int32_t p = i;
            CHECK(kv_stream_append(pool, &hot[h], k, v, hd, hd, &p, 1) == LETHE_OK);
            idx[i] = i;
        }
        CHECK(kv_cold_add(&cold[h], pool, &hot[h], idx, NULL, n) == LETHE_OK);
        /* every page, the last (partial) one last, as the runtime lists them */
        int np = cold[h].n_pages;
        for (int pg = 0; pg < np; pg++) sel[pg] = np - 1 - pg; /* any order of the full pages */
        int last = sel[0];
        for (int pg = 0; pg + 1 < np; pg++) sel[pg] = sel[pg + 1];
        sel[np - 1] = last;
        CHECK(kv_cold_load(&cold[h], sel, np, view_pool, &loaded[h]) == LETHE_OK);
        CHECK(kv_stream_reserve(pool, &inplace[h], n) == LETHE_OK);
        for (int pg = 0; pg < np; pg++) {
            inplace[h].pages[pg] = sel[pg];
            memcpy(inplace[h].pos + inplace[h].n, cold[h].pages[sel[pg]].pos, sizeof(int32_t) * (size_t)cold[h].pages[sel[pg]].n);
            inplace[h].n += cold[h].pages[sel[pg]].n;
        }
    }
    const long rows = (long)n_tok * n_head;
    float *q = malloc(sizeof(float) * rows * hd), *o1 = malloc(sizeof(float) * rows * hd), *o2 = malloc(sizeof(float) * rows * hd);
    int32_t *qpos = malloc(sizeof(int32_t) * n_tok);
    for (long i = 0; i < rows * hd; i++) q[i] = frand();
    for (int t = 0; t < n_tok; t++) qpos[t] = n - n_tok + t;
    attn_scratch *scr = attn_scratch_create();
    float scale = 1.0f / sqrtf((float)hd);
    attn_layer Ll = {view_pool, loaded, n_head, n_kv, hd, scale, NULL}, Li = {pool, inplace, n_head, n_kv, hd, scale, cold};
    CHECK(attn_forward_lse(tp, scr, &Ll, q, qpos, n_tok, o1, NULL, NULL) == 0);
    CHECK(attn_forward_lse(tp, scr, &Li, q, qpos, n_tok, o2, NULL, NULL) == 0);
    double worst = 0;
    for (long i = 0; i < rows * hd; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
    CHECKF(worst < 1e-5, "cold pages in place vs loaded (%s, %s kernels, P=%d, n=%d, tok=%d, hd=%d, hot %s): max|d| %.3g",
           lt_type_name(dtype), attn_kernels_get()->name, P, n, n_tok, hd, lt_type_name(hot_dt), worst);
    for (int h = 0; h < n_kv; h++) {
        inplace[h].n = 0; /* owns no pool pages */
        kv_stream_free(NULL, &inplace[h]);
        kv_stream_free(view_pool, &loaded[h]);
        kv_stream_free(pool, &hot[h]);
        kv_cold_free(&cold[h]);
    }
    attn_scratch_free(scr);
    kv_pool_free(pool);
    kv_pool_free(view_pool);
    free(k); free(v); free(idx); free(sel); free(q); free(o1); free(o2); free(qpos);
}

int main(void) {
    test_cold_pages(LT_Q8_0, 16, 8);
    test_cold_pages(LT_Q8_0, 32, 64);
    test_cold_pages(LT_Q4_0, 32, 64);
    test_cold_pages(LT_F16, 16, 8);
    threadpool *tp = tp_create(2);
    test_merge(100, 1, 8, 2, 32, tp);
    test_merge(333, 1, 4, 4, 64, NULL);
    test_merge(200, 7, 8, 2, 32, tp);
    test_merge(64, 16, 4, 1, 16, NULL);
    for (int scalar = 0; scalar < 2; scalar++) {
        attn_force_scalar(scalar);
        test_in_place(LT_Q8_0, 16, 200, 1, 32, tp, LT_F32);
        test_in_place(LT_Q4_0, 16, 101, 1, 64, NULL, LT_F32);
        test_in_place(LT_Q8_0, 16, 150, 9, 16, tp, LT_F32);
        test_in_place(LT_Q4_0, 16, 77, 5, 32, tp, LT_F32);
        test_in_place(LT_Q4_0, 32, 300, 1, 32, tp, LT_F32);
        test_in_place(LT_Q4_0, 32, 201, 1, 64, NULL, LT_F32);
        test_in_place(LT_Q8_0, 32, 250, 1, 128, tp, LT_F32);
        test_in_place(LT_Q4_0, 64, 333, 3, 32, tp, LT_F32);
        test_in_place(LT_Q8_0, 32, 99, 7, 48, NULL, LT_F32); /* values through the tile reader */
        test_in_place(LT_Q4_0, 32, 140, 17, 64, tp, LT_F32);
        test_in_place(LT_Q8_0, 16, 150, 9, 32, tp, LT_F16);  /* 18 rows a block: the many-row path */
        test_in_place(LT_Q4_0, 16, 101, 1, 64, NULL, LT_F16); /* decode */
    }
    attn_force_scalar(false);
    tp_free(tp);
    return tu_finish("test_cold");
}
