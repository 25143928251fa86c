/* Position edits and O(1) eviction: tensor/rope equals the model's RoPE to
 * the bit; swap-fill compaction keeps exactly the kept slots and moves one
 * row per dropped slot at most; shifting a cached key by d equals the key
 * computed at p + d (F32 within 1e-5, F16 / Q8_0 within the bounds stated
 * in kv_stream.h); remove drops a position range; the same for the cold
 * tier, whose Quest bounds stay upper bounds after a shift. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_cold.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "tensor/rope.h"
#include "testutil.h"
#include "util/error.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static int irand(int n) { return (int)((frand() + 1.0f) * 0.5f * (float)n) % n; }

static kv_pool *make_pool(int P, int D, lt_type t, size_t n_pages) {
    char err[LETHE_ERR_MAX];
    kv_pool_params p = {.page_slots = P, .head_dim = D, .dtype = t, .n_pages = n_pages};
    kv_pool *pool = kv_pool_create(&p, err);
    if (!pool) fprintf(stderr, "kv_pool_create: %s\n", err);
    return pool;
}

/* lt_rope_* is the model's RoPE (model/forward.c calls it; the reference
 * tests against llama.cpp cover that). Here: its table is llama.cpp's float
 * recurrence theta_{i+1} = theta_i * base^(-2/n_rot), to the bit, and its
 * rotation is the 2-D rotation of the right pairs for both styles. */
static void test_rope_bits(void) {
    const int n_rots[3] = {128, 64, 32};
    const float bases[2] = {10000.0f, 500000.0f};
    float a[128], x[2 * 128], y[2 * 128];
    int same = 1;
    for (int r = 0; r < 3; r++)
        for (int bi = 0; bi < 2; bi++)
            for (int t = 0; t < 50; t++) {
                const int nr = n_rots[r];
                int32_t pos = t == 0 ? 0 : t * 997 + irand(100000);
                lt_rope_table(a, &pos, 1, nr, bases[bi]);
                const float scale = powf(bases[bi], -2.0f / (float)nr);
                float theta = (float)pos;
                for (int i = 0; i < nr / 2; i++, theta *= scale) same &= a[2 * i] == cosf(theta) && a[2 * i + 1] == sinf(theta);
                for (int style = 0; style < 2; style++) {
                    for (int i = 0; i < 256; i++) x[i] = y[i] = frand() * 3.0f;
                    lt_rope_apply(x, 2, 128, nr, a, style);
                    for (int h = 0; h < 2; h++)
                        for (int i = 0; i < nr / 2; i++) {
                            float *v = y + h * 128;
                            int p0 = style ? i : 2 * i, p1 = style ? i + nr / 2 : 2 * i + 1;
                            float x0 = v[p0], x1 = v[p1], c = a[2 * i], sn = a[2 * i + 1];
                            v[p0] = x0 * c - x1 * sn;
                            v[p1] = x0 * sn + x1 * c;
                        }
                    same &= memcmp(x, y, sizeof x) == 0;
                }
            }
    CHECKF(same, "lt_rope_table follows llama.cpp's float recurrence and lt_rope_apply rotates the right pairs");
}

/* K at position p: raw[p] rotated by the table of p. */
static void key_at(const kv_rope *r, const float *raw, int32_t p, float *out) {
    float cs[256];
    memcpy(out, raw, (size_t)r->head_dim * sizeof *out);
    lt_rope_table(cs, &p, 1, r->n_rot, r->base);
    lt_rope_apply(out, 1, r->head_dim, r->n_rot, cs, r->neox);
}

/* A stream of n slots at positions pos[], K = raw (row per slot) rotated. */
static void fill_stream(kv_pool *pool, kv_stream *s, const kv_rope *r, const float *raw, const float *v,
                        const int32_t *pos, int n) {
    const int D = r->head_dim;
    float *k = malloc((size_t)n * D * sizeof *k);
    for (int i = 0; i < n; i++) key_at(r, raw + (size_t)i * D, pos[i], k + (size_t)i * D);
    CHECK(kv_stream_append(pool, s, k, v, D, D, pos, n) == LETHE_OK);
    free(k);
}

/* Shift [p0, p1) by d and compare every slot with the key computed at its
 * new position. Returns the worst error over the bound's scale. */
static void test_shift(lt_type dtype, int neox, int n_rot) {
    const int D = 128, P = 16, n = 300;
    kv_rope r = {D, n_rot, 10000.0f, neox};
    kv_pool *pool = make_pool(P, D, dtype, 64);
    if (!CHECK(pool != NULL)) return;
    float *raw = malloc((size_t)n * D * sizeof *raw), *v = malloc((size_t)n * D * sizeof *v);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    for (int i = 0; i < n * D; i++) raw[i] = frand(), v[i] = frand();
    for (int i = 0; i < n; i++) pos[i] = 2000 + 10 * i; /* 2000 .. 4990 */
    kv_stream s, f;
    kv_stream_init(&s);
    kv_stream_init(&f);
    fill_stream(pool, &s, &r, raw, v, pos, n);
    CHECK(kv_stream_fork(pool, &s, &f) == LETHE_OK); /* shifting f copies the pages it writes */
    const int32_t p0 = 2500, p1 = 4000, d = -1999;
    unsigned char *v_before = malloc(kv_pool_row_bytes(pool));
    memcpy(v_before, kv_stream_v(pool, &f, 100), kv_pool_row_bytes(pool));
    CHECK(kv_stream_shift(pool, &f, &r, p0, p1, d) == LETHE_OK);
    CHECK(memcmp(v_before, kv_stream_v(pool, &f, 100), kv_pool_row_bytes(pool)) == 0); /* V untouched */
    double worst = 0, worst_rel = 0;
    float want[128], got[128], orig[128];
    int pos_ok = 1;
    for (int i = 0; i < n; i++) {
        int32_t np = pos[i] >= p0 && pos[i] < p1 ? pos[i] + d : pos[i];
        pos_ok &= f.pos[i] == np && s.pos[i] == pos[i];
        key_at(&r, raw + (size_t)i * D, np, want);
        kv_load_row(pool, kv_stream_k(pool, &f, i), got);
        kv_load_row(pool, kv_stream_k(pool, &s, i), orig);
        float amax = 0;
        for (int e = 0; e < D; e++) amax = fmaxf(amax, fabsf(want[e]));
        for (int e = 0; e < D; e++) {
            double err = fabs(got[e] - want[e]);
            worst = fmax(worst, err);
            worst_rel = fmax(worst_rel, (err - 1e-5) / amax);
        }
        if (np == pos[i]) pos_ok &= memcmp(got, orig, sizeof got) == 0; /* outside the range: unchanged */
    }
    CHECK(pos_ok);
    /* the stated bounds (kv_stream.h): F32 1e-5; F16 1.25 * 2^-10 * max|k|;
     * Q8_0 1.5 * max|k| / 127 (+1e-5 for the rotation itself) */
    const char *name = dtype == LT_F32 ? "F32" : dtype == LT_F16 ? "F16" : "Q8_0";
    if (dtype == LT_F32)
        CHECKF(worst <= 1e-5, "%s shift (neox %d, n_rot %d): worst %.3g <= 1e-5", name, neox, n_rot, worst);
    else {
        double bound = dtype == LT_F16 ? 1.25 / 1024 : 1.5 / 127;
        CHECKF(worst_rel <= bound, "%s shift (neox %d, n_rot %d): worst %.3g x max|k| <= %.3g", name, neox, n_rot,
               worst_rel, bound);
    }
    printf("  %s shift neox=%d n_rot=%d: worst abs %.3g, worst rel %.3g\n", name, neox, n_rot, worst, worst_rel);
    /* the parent's pages were not written */
    int parent_ok = 1;
    for (int i = 0; i < n; i++) {
        key_at(&r, raw + (size_t)i * D, pos[i], want);
        kv_load_row(pool, kv_stream_k(pool, &s, i), got);
        for (int e = 0; e < D; e++) parent_ok &= fabsf(got[e] - want[e]) <= (dtype == LT_F32 ? 0.0f : 0.02f);
    }
    CHECK(parent_ok);
    /* a new position < 0 is refused, nothing changed */
    int32_t p_first = f.pos[0];
    CHECK(kv_stream_shift(pool, &f, &r, 0, 100000, -p_first - 1) == LETHE_ERR_ARG && f.pos[0] == p_first);
    kv_rope bad = r;
    bad.n_rot = 3;
    CHECK(kv_stream_shift(pool, &f, &bad, 0, 100000, 1) == LETHE_ERR_ARG);
    kv_stream_free(pool, &s);
    kv_stream_free(pool, &f);
    kv_pool_free(pool);
    free(raw);
    free(v);
    free(pos);
    free(v_before);
}

/* Shifting a shared stream with no free page for the copy: refused, unchanged. */
static void test_shift_budget(void) {
    const int D = 32, P = 8;
    kv_rope r = {D, D, 10000.0f, 0};
    kv_pool *pool = make_pool(P, D, LT_F32, 2);
    if (!CHECK(pool != NULL)) return;
    float raw[16 * 32], v[16 * 32];
    int32_t pos[16];
    for (int i = 0; i < 16 * D; i++) raw[i] = frand(), v[i] = frand();
    for (int i = 0; i < 16; i++) pos[i] = i;
    kv_stream s, f;
    kv_stream_init(&s);
    kv_stream_init(&f);
    fill_stream(pool, &s, &r, raw, v, pos, 16);
    CHECK(kv_stream_fork(pool, &s, &f) == LETHE_OK);
    CHECK(kv_stream_shift_pages_needed(pool, &f, 3, 12) == 2);
    float before[32];
    memcpy(before, kv_stream_k(pool, &f, 5), sizeof before);
    CHECK(kv_stream_shift(pool, &f, &r, 3, 12, 7) == LETHE_ERR_BUDGET);
    CHECK(f.pos[5] == 5 && memcmp(before, kv_stream_k(pool, &f, 5), sizeof before) == 0);
    CHECK(kv_stream_remove(pool, &f, 3, 4) == LETHE_ERR_BUDGET && f.n == 16);
    kv_stream_free(pool, &s);
    CHECK(kv_stream_shift(pool, &f, &r, 3, 12, 7) == LETHE_OK && f.pos[5] == 12);
    kv_stream_free(pool, &f);
    kv_pool_free(pool);
}

/* Remove a range; the result holds exactly the other (pos, K, V, stats,
 * aux) tuples; a single drop from an 8192-slot stream moves one row. */
static void test_remove_and_single_drop(void) {
    const int D = 32, P = 32, n = 8192;
    kv_pool *pool = make_pool(P, D, LT_F32, n / P + 4);
    if (!CHECK(pool != NULL)) return;
    float *k = malloc((size_t)n * D * sizeof *k), *v = malloc((size_t)n * D * sizeof *v);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    for (int i = 0; i < n; i++) {
        pos[i] = 7 * i;
        for (int e = 0; e < D; e++) k[(size_t)i * D + e] = (float)i + e / 64.0f, v[(size_t)i * D + e] = -(float)i - e / 64.0f;
    }
    kv_stream s;
    kv_stream_init(&s);
    CHECK(kv_stream_append(pool, &s, k, v, D, D, pos, n) == LETHE_OK);
    CHECK(kv_stream_enable_stats(&s, KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK && kv_stream_enable_aux(&s, 2) == LETHE_OK);
    for (int i = 0; i < n; i++) {
        s.attn_acc[i] = (float)i;
        s.attn_last[i] = (float)i * 0.5f;
        s.attn_last_hit[i] = i;
        s.aux[2 * i] = (float)-i;
        s.aux[2 * i + 1] = (float)i * 2;
    }
    /* every row's bytes before, to see which ones moved */
    const size_t rb = kv_pool_row_bytes(pool);
    unsigned char *snap = malloc((size_t)n * 2 * rb);
    for (int i = 0; i < n; i++) {
        memcpy(snap + (size_t)i * 2 * rb, kv_stream_k(pool, &s, i), rb);
        memcpy(snap + (size_t)i * 2 * rb + rb, kv_stream_v(pool, &s, i), rb);
    }
    uint8_t *keep = malloc((size_t)n);
    memset(keep, 1, (size_t)n);
    keep[100] = 0;
    CHECK(kv_stream_compact(pool, &s, keep) == LETHE_OK && s.n == n - 1);
    int changed = 0;
    for (int i = 0; i < n - 1; i++)
        changed += memcmp(snap + (size_t)i * 2 * rb, kv_stream_k(pool, &s, i), rb) != 0 ||
                   memcmp(snap + (size_t)i * 2 * rb + rb, kv_stream_v(pool, &s, i), rb) != 0;
    CHECKF(changed == 1, "a single drop from %d slots moved %d rows (want 1)", n, changed);
    CHECK(s.pos[100] == 7 * (n - 1));
    /* remove a range; then check every slot is one of the expected tuples, each once */
    const int32_t p0 = 7 * 3000, p1 = 7 * 5000 + 3;
    CHECK(kv_stream_remove_pages_needed(pool, &s, p0, p1) == 0);
    CHECK(kv_stream_remove(pool, &s, p0, p1) == LETHE_OK);
    int expect_n = 0;
    for (int i = 0; i < n; i++) expect_n += i != 100 && !(pos[i] >= p0 && pos[i] < p1);
    CHECK(s.n == expect_n && kv_pool_pages_used(pool) == (size_t)((expect_n + P - 1) / P));
    uint8_t *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int j = 0; j < s.n; j++) {
        int i = s.pos[j] / 7;
        ok &= s.pos[j] % 7 == 0 && i >= 0 && i < n && i != 100 && !(pos[i] >= p0 && pos[i] < p1) && !seen[i];
        if (!ok) break;
        seen[i] = 1;
        ok &= memcmp(kv_stream_k(pool, &s, j), k + (size_t)i * D, rb) == 0 && memcmp(kv_stream_v(pool, &s, j), v + (size_t)i * D, rb) == 0;
        ok &= s.attn_acc[j] == (float)i && s.attn_last[j] == (float)i * 0.5f && s.attn_last_hit[j] == i;
        ok &= s.aux[2 * j] == (float)-i && s.aux[2 * j + 1] == (float)i * 2;
    }
    CHECKF(ok, "after drop + remove the stream holds exactly the kept (pos, K, V, stats, aux) tuples");
    CHECK(kv_stream_remove(pool, &s, 5, 5) == LETHE_OK && s.n == expect_n);
    kv_stream_free(pool, &s);
    kv_pool_free(pool);
    free(k);
    free(v);
    free(pos);
    free(snap);
    free(keep);
    free(seen);
}

/* Cold tier: shifted equals built-at-shifted-positions within the cold
 * rounding; bounds stay upper bounds; remove drops the range. */
static void test_cold_shift(lt_type dtype) {
    const int D = 64, P = 32, n = 5 * P + 7;
    kv_rope r = {D, D, 10000.0f, 1};
    kv_pool *pool = make_pool(P, D, LT_F32, 64), *vpool = make_pool(P, D, LT_F32, 64);
    if (!CHECK(pool && vpool)) return;
    float *raw = malloc((size_t)n * D * sizeof *raw), *v = malloc((size_t)n * D * sizeof *v);
    int32_t *pos = malloc((size_t)n * sizeof *pos), *npos = malloc((size_t)n * sizeof *npos);
    int *idx = malloc((size_t)n * sizeof *idx);
    const int32_t p0 = 300, p1 = 900, d = 4321;
    for (int i = 0; i < n * D; i++) raw[i] = 2.0f * frand(), v[i] = frand();
    for (int i = 0; i < n; i++) {
        pos[i] = 100 + 5 * i;
        npos[i] = pos[i] >= p0 && pos[i] < p1 ? pos[i] + d : pos[i];
        idx[i] = i;
    }
    kv_stream a, b;
    kv_stream_init(&a);
    kv_stream_init(&b);
    fill_stream(pool, &a, &r, raw, v, pos, n);
    fill_stream(pool, &b, &r, raw, v, npos, n);
    kv_cold ca, cb;
    CHECK(kv_cold_init(&ca, dtype, P, D, NULL) == LETHE_OK && kv_cold_init(&cb, dtype, P, D, NULL) == LETHE_OK);
    CHECK(kv_cold_add(&ca, pool, &a, idx, NULL, n) == LETHE_OK && kv_cold_add(&cb, pool, &b, idx, NULL, n) == LETHE_OK);
    uint8_t *v_before = malloc(ca.block_bytes);
    memcpy(v_before, ca.pages[2].v, ca.block_bytes);
    CHECK(kv_cold_shift(&ca, &r, p0, p1, d) == LETHE_OK);
    CHECK(memcmp(v_before, ca.pages[2].v, ca.block_bytes) == 0);
    kv_stream va, vb;
    kv_stream_init(&va);
    kv_stream_init(&vb);
    int *pages = malloc((size_t)ca.n_pages * sizeof *pages);
    for (int p = 0; p < ca.n_pages; p++) pages[p] = p;
    CHECK(kv_cold_load(&ca, pages, ca.n_pages, vpool, &va) == LETHE_OK);
    CHECK(kv_cold_load(&cb, pages, cb.n_pages, vpool, &vb) == LETHE_OK);
    /* error over the page's largest |k| (per-channel blocks span a page) */
    double worst = 0;
    int pos_ok = va.n == n && vb.n == n, bound_ok = 1;
    for (int p = 0; pos_ok && p < ca.n_pages; p++) {
        float amax = 0;
        for (int j = 0; j < ca.pages[p].n; j++) {
            const float *kb = kv_stream_k(vpool, &vb, p * P + j);
            for (int e = 0; e < D; e++) amax = fmaxf(amax, fabsf(kb[e]));
        }
        for (int j = 0; j < ca.pages[p].n; j++) {
            int i = p * P + j;
            pos_ok &= va.pos[i] == npos[i] && vb.pos[i] == npos[i];
            const float *ka = kv_stream_k(vpool, &va, i), *kb = kv_stream_k(vpool, &vb, i);
            for (int e = 0; e < D; e++) worst = fmax(worst, (fabs(ka[e] - kb[e]) - 1e-6) / amax);
        }
        /* Quest bound >= every actual q.k */
        float q[64];
        for (int t = 0; t < 30; t++) {
            for (int e = 0; e < D; e++) q[e] = frand();
            float bnd = kv_cold_bound(&ca, p, q, 1.0f);
            for (int j = 0; j < ca.pages[p].n; j++) {
                const float *ka = kv_stream_k(vpool, &va, p * P + j);
                double dot = 0;
                for (int e = 0; e < D; e++) dot += (double)q[e] * ka[e];
                bound_ok &= dot <= bnd + 1e-4;
            }
        }
    }
    CHECK(pos_ok);
    CHECKF(bound_ok, "%s: Quest bounds hold after a shift", lt_type_name(dtype));
    /* stated in kv_cold.h: Q8_0 2.5 / 127, Q4_0 2.5 / 8, F16 2.5 * 2^-11 (x the page's max |k|) */
    double bound = dtype == LT_Q8_0 ? 2.5 / 127 : dtype == LT_Q4_0 ? 2.5 / 8 : 2.5 / 2048;
    CHECKF(worst <= bound, "%s cold shift: worst %.3g x max|k| <= %.3g", lt_type_name(dtype), worst, bound);
    printf("  %s cold shift: worst %.3g x max|k|\n", lt_type_name(dtype), worst);
    /* shifting to a negative position is refused */
    CHECK(kv_cold_shift(&ca, &r, 0, 200, -101) == LETHE_ERR_ARG && ca.pages[0].pos[0] == 100);
    /* remove a range: the rest stay, in order */
    int before = ca.n_slots;
    CHECK(kv_cold_remove(&ca, 200, 260) == LETHE_OK);
    int removed = 0;
    for (int i = 0; i < n; i++) removed += npos[i] >= 200 && npos[i] < 260;
    CHECK(ca.n_slots == before - removed && removed > 0);
    int order_ok = 1, w = 0;
    for (int p = 0; p < ca.n_pages; p++)
        for (int j = 0; j < ca.pages[p].n; j++) {
            while (npos[w] >= 200 && npos[w] < 260) w++;
            order_ok &= ca.pages[p].pos[j] == npos[w++];
        }
    CHECK(order_ok && w == n);
    kv_stream_free(vpool, &va);
    kv_stream_free(vpool, &vb);
    kv_stream_free(pool, &a);
    kv_stream_free(pool, &b);
    kv_cold_free(&ca);
    kv_cold_free(&cb);
    kv_pool_free(pool);
    kv_pool_free(vpool);
    free(raw);
    free(v);
    free(pos);
    free(npos);
    free(idx);
    free(v_before);
    free(pages);
}

int main(void) {
    test_rope_bits();
    const lt_type types[3] = {LT_F32, LT_F16, LT_Q8_0};
    for (int t = 0; t < 3; t++) {
        test_shift(types[t], 0, 128);
        test_shift(types[t], 1, 128);
        test_shift(types[t], 1, 64);
    }
    test_shift_budget();
    test_remove_and_single_drop();
    test_cold_shift(LT_Q8_0);
    test_cold_shift(LT_Q4_0);
    test_cold_shift(LT_F16);
    return tu_finish("test_kv_edit");
}
