/* Tiled prefill and split-KV decode against a plain double-precision
 * attention written here, over randomised shapes, page sizes, GQA ratios,
 * thread counts, position layouts and KV dtypes; the statistics hook; the
 * scalar and AVX2 kernels; scratch size independent of the context. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_kernels.h"
#include "kv/kv_convert.h"
#include "kv/kv_pool.h"
#include "kv/kv_stream.h"
#include "attn_softmax_check.h"
#include "testutil.h"
#include "util/error.h"
#include "util/fp16.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next_u64(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static double urand(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); } /* [0, 1) */
static float frand(void) { return (float)(2.0 * urand() - 1.0); }                            /* [-1, 1) */
static int irand(int n) { return (int)(next_u64() % (uint64_t)n); }

enum { POS_SEQ, POS_GAPS, POS_SHUFFLED };

typedef struct {
    int n_head, n_head_kv, d, p, n;
    lt_type dtype;
    kv_pool *pool;
    kv_stream *streams;
    float *k, *v;   /* [n_head_kv][n][d] the values appended */
    float *kd, *vd; /* the same read back from the pool (dequantised) */
    float *ek, *ev; /* per-element bound of the storage error |kd - k| */
    int32_t *pos;   /* [n], shared by the streams */
    attn_layer L;
} fixture;

/* Bound on |dequant(quant(x)) - x| for every element of one row. */
static void error_bound(lt_type t, const float *x, float *e, int d) {
    for (int i = 0; i < d; i++) e[i] = 0.0f;
    if (t == LT_F16) {
        for (int i = 0; i < d; i++) e[i] = fmaxf(fabsf(x[i]) * 0x1p-11f, 0x1p-25f);
    } else if (t == LT_Q8_0) {
        /* d_stored / 2 with d_stored within 2^-11 of amax / 127 (see test_kv). */
        for (int b = 0; b < d / 32; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            float bound = fmaxf(amax / 254.0f * (1.0f + 0x1p-11f), 127.0f * 0x1p-25f) + amax * 0x1p-22f;
            for (int j = 0; j < 32; j++) e[b * 32 + j] = bound;
        }
    } else if (t == LT_Q4_0) {
        /* d = the signed extreme / -8 (as half), q = round(x / d) + 8 clamped
         * to 0..15: at most |d| off (the far side clamps at 7 |d|). */
        for (int b = 0; b < d / 32; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            for (int j = 0; j < 32; j++) e[b * 32 + j] = amax / 8.0f * (1.0f + 0x1p-10f) + 0x1p-24f;
        }
    }
}

static int fixture_make(fixture *f, int n_head, int n_head_kv, int d, int p, lt_type dtype, int n, int pos_mode) {
    memset(f, 0, sizeof *f);
    f->n_head = n_head, f->n_head_kv = n_head_kv, f->d = d, f->p = p, f->n = n, f->dtype = dtype;
    char err[LETHE_ERR_MAX];
    kv_pool_params pp = {.page_slots = p, .head_dim = d, .dtype = dtype,
                         .n_pages = (size_t)n_head_kv * ((size_t)(n + p - 1) / p + 1) + 1};
    f->pool = kv_pool_create(&pp, err);
    size_t sz = (size_t)n_head_kv * (n > 0 ? n : 1) * d;
    f->streams = calloc((size_t)n_head_kv, sizeof *f->streams);
    f->k = malloc(sz * sizeof(float)), f->v = malloc(sz * sizeof(float));
    f->kd = malloc(sz * sizeof(float)), f->vd = malloc(sz * sizeof(float));
    f->ek = malloc(sz * sizeof(float)), f->ev = malloc(sz * sizeof(float));
    f->pos = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!f->pool || !f->streams || !f->k || !f->v || !f->kd || !f->vd || !f->ek || !f->ev || !f->pos) {
        fprintf(stderr, "fixture: allocation failed (%s)\n", f->pool ? "" : err);
        return 0;
    }
    /* Positions: 0..n-1, increasing with gaps (as after compaction), or shuffled. */
    int32_t at = irand(5);
    for (int i = 0; i < n; i++) {
        f->pos[i] = pos_mode == POS_SEQ ? i : at;
        at += 1 + (pos_mode != POS_SEQ ? irand(3) : 0);
    }
    if (pos_mode == POS_SHUFFLED)
        for (int i = n - 1; i > 0; i--) {
            int j = irand(i + 1);
            int32_t t = f->pos[i];
            f->pos[i] = f->pos[j], f->pos[j] = t;
        }
    for (size_t i = 0; i < sz; i++) f->k[i] = frand(), f->v[i] = frand();
    for (int g = 0; g < n_head_kv; g++) {
        kv_stream_init(&f->streams[g]);
        const float *kg = f->k + (size_t)g * n * d, *vg = f->v + (size_t)g * n * d;
        /* Two appends, split at a random point, to cross page boundaries mid-call. */
        int cut = n > 0 ? irand(n + 1) : 0;
        if (kv_stream_append(f->pool, &f->streams[g], kg, vg, d, d, f->pos, cut) != LETHE_OK ||
            kv_stream_append(f->pool, &f->streams[g], kg + (size_t)cut * d, vg + (size_t)cut * d, d, d,
                             f->pos + cut, n - cut) != LETHE_OK) {
            fprintf(stderr, "fixture: append failed\n");
            return 0;
        }
        for (int i = 0; i < n; i++) {
            size_t o = ((size_t)g * n + i) * d;
            kv_load_row(f->pool, kv_stream_k(f->pool, &f->streams[g], i), f->kd + o);
            kv_load_row(f->pool, kv_stream_v(f->pool, &f->streams[g], i), f->vd + o);
            error_bound(dtype, f->k + o, f->ek + o, d);
            error_bound(dtype, f->v + o, f->ev + o, d);
        }
    }
    f->L = (attn_layer){f->pool, f->streams, n_head, n_head_kv, d, 1.0f / sqrtf((float)d), NULL};
    return 1;
}

static void fixture_free(fixture *f) {
    if (f->streams)
        for (int g = 0; g < f->n_head_kv; g++) kv_stream_free(f->pool, &f->streams[g]);
    kv_pool_free(f->pool);
    free(f->streams);
    free(f->k), free(f->v), free(f->kd), free(f->vd), free(f->ek), free(f->ev), free(f->pos);
}

/* Plain attention in double over the given K / V values ([n_head_kv][n][d]).
 * out: outputs; wabs: sum_j p_j |v_j| per element (the scale of the weighted
 * sum, used for relative tolerances). Optional: probs [t][h][n]; for the
 * loose (quantisation) bound, valt / ev / ek give bound terms in lbound. */
typedef struct {
    const float *K, *V;
    double *out, *wabs, *probs;
    const float *valt, *ev, *ek;
    double *lbound;
} ref_io;

static void reference(const fixture *f, const float *q, const int32_t *q_pos, int n_tok, ref_io *io) {
    const int n = f->n, d = f->d, G = f->n_head / f->n_head_kv;
    const double scale = 1.0 / sqrt((double)d);
    double *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < f->n_head; h++) {
            const int g = h / G;
            const float *qt = q + ((size_t)t * f->n_head + h) * d;
            double mx = -INFINITY, delta = 0.0;
            for (int i = 0; i < n; i++) {
                if (f->pos[i] > q_pos[t]) { s[i] = -INFINITY; continue; }
                const float *ki = io->K + ((size_t)g * n + i) * d;
                double acc = 0.0, dev = 0.0;
                for (int e = 0; e < d; e++) acc += (double)qt[e] * ki[e];
                s[i] = acc * scale;
                if (s[i] > mx) mx = s[i];
                if (io->ek) {
                    const float *eki = io->ek + ((size_t)g * n + i) * d;
                    for (int e = 0; e < d; e++) dev += fabs((double)qt[e]) * eki[e];
                    if (dev * scale > delta) delta = dev * scale;
                }
            }
            double sum = 0.0;
            for (int i = 0; i < n; i++) {
                s[i] = mx == -INFINITY ? 0.0 : exp(s[i] - mx);
                sum += s[i];
            }
            double *o = io->out + ((size_t)t * f->n_head + h) * d;
            double *w = io->wabs + ((size_t)t * f->n_head + h) * d;
            double *lb = io->lbound ? io->lbound + ((size_t)t * f->n_head + h) * d : NULL;
            for (int e = 0; e < d; e++) {
                o[e] = w[e] = 0.0;
                if (lb) lb[e] = 0.0;
            }
            for (int i = 0; i < n; i++) {
                double p = sum > 0.0 ? s[i] / sum : 0.0;
                if (io->probs) io->probs[((size_t)t * f->n_head + h) * n + i] = p;
                if (p == 0.0) continue;
                size_t row = ((size_t)g * n + i) * d;
                for (int e = 0; e < d; e++) {
                    o[e] += p * io->V[row + e];
                    w[e] += p * fabs((double)io->V[row + e]);
                    if (lb) lb[e] += (expm1(2.0 * delta) * fabs((double)io->valt[row + e]) + io->ev[row + e]) * p;
                }
            }
        }
    free(s);
}

/* Largest |out - ref| / (wabs + floor) over all elements; the floor keeps
 * rows with nothing visible (all zero) meaningful. */
static double rel_err(const float *out, const double *ref, const double *wabs, size_t count) {
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)out[i] - ref[i]) / (wabs[i] + 1e-30);
        if (out[i] != out[i]) e = INFINITY;
        if (e > worst) worst = e;
    }
    return worst;
}

typedef struct {
    threadpool *tp[4]; /* index = threads */
    attn_scratch *scr;
} env;

static float *make_queries(int n_tok, int n_head, int d, float sharp) {
    float *q = malloc((size_t)n_tok * n_head * d * sizeof *q);
    for (size_t i = 0; i < (size_t)n_tok * n_head * d; i++) q[i] = frand() * sharp;
    return q;
}

/* One case: runs the dispatched kernels (decode when n_tok == 1, and prefill
 * too) against the reference on the pool's values (1e-5), and for F16 / Q8_0
 * against the reference on the original values within the derived bound. */
static void run_case(env *E, fixture *f, int threads, int n_tok, const int32_t *q_pos, float sharp, const char *what) {
    const size_t count = (size_t)n_tok * f->n_head * f->d;
    float *q = make_queries(n_tok, f->n_head, f->d, sharp);
    float *out = malloc(count * sizeof *out);
    double *ref = malloc(count * sizeof *ref), *wabs = malloc(count * sizeof *wabs);
    threadpool *tp = E->tp[threads];
    ref_io io = {.K = f->kd, .V = f->vd, .out = ref, .wabs = wabs};
    reference(f, q, q_pos, n_tok, &io);

    CHECK(attn_forward(tp, E->scr, &f->L, q, q_pos, n_tok, out, NULL) == 0);
    double e1 = rel_err(out, ref, wabs, count);
    if (getenv("ATTN_TEST_VERBOSE"))
        printf("%-15s n=%-5d n_tok=%-3d d=%-3d heads=%d/%d P=%d thr=%d dtype=%d err=%.3g\n", what, f->n, n_tok, f->d,
               f->n_head, f->n_head_kv, f->p, threads, f->dtype, e1);
    CHECKF(e1 <= 1e-5, "%s: forward n=%d n_tok=%d d=%d heads=%d/%d P=%d threads=%d dtype=%d: rel err %.3g",
           what, f->n, n_tok, f->d, f->n_head, f->n_head_kv, f->p, threads, f->dtype, e1);
    if (n_tok == 1) { /* the prefill path must agree on single queries too */
        CHECK(attn_prefill(tp, E->scr, &f->L, q, q_pos, 1, out, NULL) == 0);
        double e2 = rel_err(out, ref, wabs, count);
        CHECKF(e2 <= 1e-5, "%s: prefill(1) n=%d d=%d P=%d threads=%d: rel err %.3g", what, f->n, f->d, f->p,
               threads, e2);
        CHECK(attn_forward(tp, E->scr, &f->L, q, q_pos, 1, out, NULL) == 0);
    }
    if (f->dtype != LT_F32) {
        /* Against the unquantised values: |K err| <= ek gives every score an
         * error <= delta = scale * sum |q| ek, so each probability moves by a
         * factor within exp(+-2 delta); with |V err| <= ev the output error is
         * <= sum_j p_j ((e^{2 delta} - 1) |v'_j| + ev_j), plus rounding. */
        double *lb = malloc(count * sizeof *lb), *ref2 = malloc(count * sizeof *ref2);
        double *w2 = malloc(count * sizeof *w2);
        ref_io io2 = {.K = f->k, .V = f->v, .out = ref2, .wabs = w2, .valt = f->vd, .ev = f->ev, .ek = f->ek,
                      .lbound = lb};
        reference(f, q, q_pos, n_tok, &io2);
        size_t bad = 0;
        double worst = 0.0, worst_bound = 0.0;
        for (size_t i = 0; i < count; i++) {
            double err = fabs((double)out[i] - ref2[i]);
            double bound = lb[i] * 1.001 + 2e-5 * wabs[i] + 1e-30;
            if (err > bound) bad++;
            if (err / bound > worst) worst = err / bound, worst_bound = bound;
        }
        CHECKF(bad == 0, "%s: dtype %d vs F32 values: %zu elements over the quantisation bound (worst %.3g of %.3g)",
               what, f->dtype, bad, worst, worst_bound);
        free(lb), free(ref2), free(w2);
    }
    free(q), free(out), free(ref), free(wabs);
}

static int32_t max_pos(const fixture *f) {
    int32_t m = -1;
    for (int i = 0; i < f->n; i++) m = f->pos[i] > m ? f->pos[i] : m;
    return m;
}

/* Decode and prefill on randomised shapes, with the page-boundary lengths. */
static void test_shapes(env *E) {
    /* 20 slots: rows of scores not a whole number of 8-key vectors */
    const int dims[3] = {64, 80, 128}, ratios[3] = {1, 4, 8}, pages[3] = {16, 32, 20};
    int lengths[64], nl = 0;
    for (int pi = 0; pi < 3; pi++) {
        int P = pages[pi];
        int l[] = {1, 2, P - 1, P, P + 1, 2 * P - 1, 2 * P, 2 * P + 1, 5 * P + 3};
        for (size_t i = 0; i < sizeof l / sizeof l[0]; i++) lengths[nl++] = l[i];
    }
    int big[] = {100, 255, 256, 257, 700, 1023, 1024, 1025, 2048, 4095, 4096, 4097};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) lengths[nl++] = big[i];
    for (int li = 0; li < nl; li++) {
        int n = lengths[li];
        int d = dims[irand(3)], ratio = ratios[irand(3)], P = pages[li < 9 ? 0 : li < 18 ? 1 : li < 27 ? 2 : irand(3)];
        int n_head_kv = n > 1500 ? 1 + irand(2) : 1 + irand(3);
        int threads = 1 + irand(3);
        int pos_mode = li % 3 == 2 ? POS_GAPS : POS_SEQ;
        fixture f;
        if (!CHECK(fixture_make(&f, n_head_kv * ratio, n_head_kv, d, P, LT_F32, n, pos_mode))) {
            fixture_free(&f);
            continue;
        }
        float sharp = li % 2 ? 1.0f : 4.0f;
        /* decode: the newest position sees every slot */
        int32_t qp = max_pos(&f);
        run_case(E, &f, threads, 1, &qp, sharp, "decode");
        /* decode with some slots in the query's future (masked) */
        if (n > 1) {
            qp = f.pos[irand(n)];
            run_case(E, &f, threads, 1, &qp, sharp, "decode-masked");
        }
        /* prefill: the queries are the last n_tok slots (causal within the chunk) */
        int n_tok = n < 70 ? n : (n > 1500 ? 1 + irand(24) : 1 + irand(70));
        if (n_tok >= 1 && pos_mode != POS_SHUFFLED) {
            int32_t *q_pos = malloc((size_t)n_tok * sizeof *q_pos);
            for (int t = 0; t < n_tok; t++) q_pos[t] = f.pos[n - n_tok + t];
            run_case(E, &f, threads, n_tok, q_pos, sharp, "prefill-chunk");
            free(q_pos);
        }
        fixture_free(&f);
    }
}

/* Prefill with arbitrary query positions over shuffled slot positions: some
 * rows see a few slots, some none (those output zeros). */
static void test_masking(env *E) {
    for (int rep = 0; rep < 8; rep++) {
        int P = rep % 2 ? 16 : 32, n = 1 + irand(300), d = rep % 3 == 0 ? 80 : 64, ratio = 1 << irand(3);
        fixture f;
        if (!CHECK(fixture_make(&f, 2 * ratio, 2, d, P, LT_F32, n, POS_SHUFFLED))) {
            fixture_free(&f);
            continue;
        }
        int n_tok = 1 + irand(40);
        int32_t *q_pos = malloc((size_t)n_tok * sizeof *q_pos);
        int32_t hi = max_pos(&f);
        for (int t = 0; t < n_tok; t++) q_pos[t] = -3 + irand(hi + 6);
        q_pos[0] = -1; /* sees nothing */
        run_case(E, &f, 1 + rep % 3, n_tok, q_pos, 2.0f, "prefill-masked");
        if (rep == 0) { /* no thread pool at all: everything inline */
            threadpool *keep = E->tp[1];
            E->tp[1] = NULL;
            run_case(E, &f, 1, n_tok, q_pos, 2.0f, "prefill-no-pool");
            int32_t qp = max_pos(&f);
            run_case(E, &f, 1, 1, &qp, 2.0f, "decode-no-pool");
            E->tp[1] = keep;
        }
        /* rows with nothing visible come out as zeros */
        float *q = make_queries(n_tok, f.n_head, d, 1.0f);
        float *out = malloc((size_t)n_tok * f.n_head * d * sizeof *out);
        CHECK(attn_prefill(E->tp[2], E->scr, &f.L, q, q_pos, n_tok, out, NULL) == 0);
        int zeros = 1;
        for (int i = 0; i < f.n_head * d; i++) zeros &= out[i] == 0.0f;
        CHECK(zeros);
        int32_t none = -1;
        CHECK(attn_decode(E->tp[3], E->scr, &f.L, q, none, out, NULL) == 0);
        zeros = 1;
        for (int i = 0; i < f.n_head * d; i++) zeros &= out[i] == 0.0f;
        CHECK(zeros);
        free(q), free(out), free(q_pos);
        fixture_free(&f);
    }
    /* Empty streams: zeros, no crash. */
    fixture f;
    if (CHECK(fixture_make(&f, 4, 2, 64, 16, LT_F32, 0, POS_SEQ))) {
        float q[2 * 4 * 64], out[2 * 4 * 64];
        for (int i = 0; i < 2 * 4 * 64; i++) q[i] = frand(), out[i] = 1.0f;
        int32_t q_pos[2] = {0, 1};
        CHECK(attn_forward(E->tp[2], E->scr, &f.L, q, q_pos, 1, out, NULL) == 0);
        CHECK(attn_forward(E->tp[2], E->scr, &f.L, q, q_pos, 2, out, NULL) == 0);
        int zeros = 1;
        for (int i = 0; i < 2 * 4 * 64; i++) zeros &= out[i] == 0.0f;
        CHECK(zeros);
    }
    fixture_free(&f);
}

/* F16, Q8_0 and Q4_0 caches: tight against the dequantised values, within
 * the derived bound against the originals. */
static void test_dtypes(env *E) {
    lt_type types[3] = {LT_F16, LT_Q8_0, LT_Q4_0};
    int lengths[] = {1, 31, 33, 64, 200, 1000, 2049};
    for (int ti = 0; ti < 3; ti++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            int n = lengths[li], d = li % 2 ? 128 : 64, ratio = 1 << (li % 4 == 3 ? 3 : li % 3 == 1 ? 2 : 0);
            int P = li % 2 ? 32 : 16;
            fixture f;
            if (!CHECK(fixture_make(&f, 2 * ratio, 2, d, P, types[ti], n, li % 3 == 2 ? POS_GAPS : POS_SEQ))) {
                fixture_free(&f);
                continue;
            }
            int32_t qp = max_pos(&f);
            run_case(E, &f, 1 + (int)li % 3, 1, &qp, li % 2 ? 1.0f : 3.0f, "dtype-decode");
            int n_tok = n < 20 ? n : 20;
            int32_t q_pos[20];
            for (int t = 0; t < n_tok; t++) q_pos[t] = f.pos[n - n_tok + t];
            run_case(E, &f, 1 + (int)(li + 1) % 3, n_tok, q_pos, 2.0f, "dtype-prefill");
            fixture_free(&f);
        }
}

/* The statistics hook, decode and prefill, against the reference probabilities. */
/* Returns the number of slots checked to keep their step-7 hit at step 8. */
static int check_stats(env *E, fixture *f, int threads, int n_tok, const int32_t *q_pos, float thr) {
    const int n = f->n, G = f->n_head / f->n_head_kv;
    int kept_total = 0;
    const size_t count = (size_t)n_tok * f->n_head * f->d;
    for (int g = 0; g < f->n_head_kv; g++) {
        kv_stream_free(f->pool, &f->streams[g]); /* fresh streams with stats on */
        CHECK(kv_stream_enable_stats(&f->streams[g], KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
        CHECK(kv_stream_append(f->pool, &f->streams[g], f->k + (size_t)g * n * f->d, f->v + (size_t)g * n * f->d,
                               f->d, f->d, f->pos, n) == LETHE_OK);
    }
    float *q = make_queries(n_tok, f->n_head, f->d, 4.0f);
    float *out = malloc(count * sizeof *out), *out_plain = malloc(count * sizeof *out);
    double *ref = malloc(count * sizeof *ref), *wabs = malloc(count * sizeof *wabs);
    double *probs = malloc((size_t)n_tok * f->n_head * n * sizeof *probs);
    ref_io io = {.K = f->kd, .V = f->vd, .out = ref, .wabs = wabs, .probs = probs};
    reference(f, q, q_pos, n_tok, &io);

    /* Off: nothing touched. */
    for (int g = 0; g < f->n_head_kv; g++)
        for (int i = 0; i < n; i++) f->streams[g].attn_last[i] = -5.0f;
    attn_stats_cfg off = {.enabled = 0, .hit_threshold = thr, .step = 3};
    CHECK(attn_forward(E->tp[threads], E->scr, &f->L, q, q_pos, n_tok, out_plain, &off) == 0);
    int untouched = 1;
    for (int g = 0; g < f->n_head_kv; g++)
        for (int i = 0; i < n; i++)
            untouched &= f->streams[g].attn_last[i] == -5.0f && f->streams[g].attn_acc[i] == 0.0f &&
                         f->streams[g].attn_last_hit[i] == -1;
    CHECK(untouched);

    /* Step 7 at thr, step 8 at twice thr with the same queries: a slot over
     * 2 thr is hit at step 8; one between thr and 2 thr keeps step 7 (the
     * last hit is remembered); one under thr was never hit (-1). */
    for (int step = 7; step <= 8; step++) {
        const float thr_step = step == 7 ? thr : 2 * thr;
        attn_stats_cfg on = {.enabled = 1, .hit_threshold = thr_step, .step = step};
        CHECK(attn_forward(E->tp[threads], E->scr, &f->L, q, q_pos, n_tok, out, &on) == 0);
        CHECK(memcmp(out, out_plain, count * sizeof *out) == 0); /* statistics do not change the output */
        CHECK(rel_err(out, ref, wabs, count) <= 1e-5);
        int rows_seeing = 0;
        for (int t = 0; t < n_tok; t++)
            for (int i = 0; i < n; i++)
                if (f->pos[i] <= q_pos[t]) { rows_seeing++; break; }
        int bad_mass = 0, bad_hit = 0, checked_hits = 0, checked_kept = 0;
        for (int g = 0; g < f->n_head_kv; g++) {
            const kv_stream *st = &f->streams[g];
            double total = 0.0;
            for (int i = 0; i < n; i++) {
                double mass = 0.0, pmax = 0.0;
                for (int t = 0; t < n_tok; t++)
                    for (int h = g * G; h < (g + 1) * G; h++) {
                        double p = probs[((size_t)t * f->n_head + h) * n + i];
                        mass += p;
                        if (p > pmax) pmax = p;
                    }
                total += st->attn_last[i];
                if (fabs(st->attn_last[i] - mass) > 2e-5 * mass + 1e-12) bad_mass++;
                if (fabs(st->attn_acc[i] - (step - 6) * mass) > 4e-5 * mass + 1e-12) bad_mass++;
                if (fabs(pmax - thr) > 1e-5 && fabs(pmax - thr_step) > 1e-5) {
                    int32_t want = pmax >= thr_step ? step : pmax >= thr ? 7 : -1;
                    checked_hits += pmax >= thr_step;
                    checked_kept += step == 8 && want == 7;
                    if (st->attn_last_hit[i] != want) bad_hit++;
                }
            }
            /* every query head of the group, every query that sees a slot, contributes mass 1 */
            CHECKF(fabs(total - (double)G * rows_seeing) <= 1e-4 * G * rows_seeing,
                   "stats: mass sums to %.6f, want %d x %d", total, G, rows_seeing);
        }
        CHECKF(bad_mass == 0, "stats: %d slots with wrong mass (n=%d n_tok=%d threads=%d)", bad_mass, n, n_tok, threads);
        CHECKF(bad_hit == 0, "stats: %d slots with wrong hit step", bad_hit);
        CHECK(checked_hits > 0 || n > 1000);
        if (step == 8) kept_total += checked_kept;
    }
    free(q), free(out), free(out_plain), free(ref), free(wabs), free(probs);
    return kept_total;
}

static void test_stats(env *E) {
    struct { int n, d, ratio, P, threads, n_tok; lt_type t; } cases[] = {
        {1, 64, 1, 16, 1, 1, LT_F32},     {40, 64, 4, 16, 2, 1, LT_F32},  {513, 128, 8, 32, 3, 1, LT_F32},
        {2000, 64, 4, 16, 2, 1, LT_F32},  {33, 80, 1, 16, 2, 5, LT_F32},  {300, 64, 4, 32, 3, 17, LT_F32},
        {700, 128, 8, 16, 2, 40, LT_F32}, {100, 64, 4, 16, 2, 1, LT_Q8_0}, {150, 64, 2, 32, 3, 9, LT_F16},
    };
    int kept = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        fixture f;
        if (!CHECK(fixture_make(&f, 2 * cases[ci].ratio, 2, cases[ci].d, cases[ci].P, cases[ci].t, cases[ci].n,
                                ci % 3 == 1 ? POS_GAPS : POS_SEQ))) {
            fixture_free(&f);
            continue;
        }
        int n_tok = cases[ci].n_tok < cases[ci].n ? cases[ci].n_tok : cases[ci].n;
        int32_t *q_pos = malloc((size_t)n_tok * sizeof *q_pos);
        for (int t = 0; t < n_tok; t++) q_pos[t] = f.pos[f.n - n_tok + t];
        if (ci == 1) q_pos[0] = f.pos[f.n / 2]; /* decode with masked slots */
        kept += check_stats(E, &f, cases[ci].threads, n_tok, q_pos, ci % 2 ? 0.05f : 0.02f);
        free(q_pos);
        fixture_free(&f);
    }
    CHECKF(kept > 0, "stats: no slot was checked to keep its earlier hit step (%d)", kept);
}

/* kv's scores, exp_sum and pv against the scalar ones on odd shapes. */
static void kernels_match_scalar(const attn_kernels *kv) {
    const attn_kernels *ks = attn_kernels_scalar();
    /* exp_sum accuracy on a wide range, -inf giving 0 */
    float a[67], b[67];
    for (int i = 0; i < 67; i++) a[i] = b[i] = (float)(-100.0 + 101.0 * urand());
    a[5] = b[5] = -INFINITY;
    float sa = ks->exp_sum(a, 67, 0.5f), sb = kv->exp_sum(b, 67, 0.5f);
    int ok = fabsf(sa - sb) <= 1e-6f * sa && b[5] == 0.0f;
    for (int i = 0; i < 67; i++) ok &= fabsf(a[i] - b[i]) <= 4e-7f * a[i] + 1e-37f;
    CHECKF(ok, "%s exp_sum", kv->name);
    /* scores and pv on odd shapes */
    for (int rep = 0; rep < 40; rep++) {
        int d = 8 * (1 + irand(20)), nr = 1 + irand(11), nk = 1 + irand(35);
        float *q = malloc((size_t)nr * d * 4), *k = malloc((size_t)nk * d * 4), *s1 = malloc((size_t)nr * 40 * 4);
        float *s2 = malloc((size_t)nr * 40 * 4), *o1 = malloc((size_t)nr * d * 4), *o2 = malloc((size_t)nr * d * 4);
        float alpha[12];
        for (int i = 0; i < nr * d; i++) q[i] = frand(), o1[i] = o2[i] = frand();
        for (int i = 0; i < nk * d; i++) k[i] = frand();
        for (int r = 0; r < nr; r++) alpha[r] = r % 3 ? (float)urand() : 1.0f;
        ks->scores(q, d, nr, k, nk, d, s1, 40);
        kv->scores(q, d, nr, k, nk, d, s2, 40);
        int same = 1;
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < nk; j++) same &= fabsf(s1[r * 40 + j] - s2[r * 40 + j]) <= 2e-6f * d;
        CHECKF(same, "%s scores differ d=%d nr=%d nk=%d", kv->name, d, nr, nk);
        for (int i = 0; i < nr * 40; i++) s1[i] = fabsf(s1[i]);
        ks->pv(o1, nr, alpha, s1, 40, k, nk, d);
        kv->pv(o2, nr, alpha, s1, 40, k, nk, d);
        same = 1;
        for (int i = 0; i < nr * d; i++) same &= fabsf(o1[i] - o2[i]) <= 1e-5f * (1.0f + fabsf(o1[i]));
        CHECKF(same, "%s pv differs d=%d nr=%d nk=%d", kv->name, d, nr, nk);
        free(q), free(k), free(s1), free(s2), free(o1), free(o2);
    }
}

/* scores_many: each score is its d products summed in order, one fused
 * multiply-add each (fmaf here) on the SIMD tables, on F32 and F16 keys,
 * for odd shapes (rows past a block of 6, keys past a vector of 8); the
 * scalar table's to rounding. */
static void scores_many_in_order(const attn_kernels *k) {
    const bool fused = k != attn_kernels_scalar();
    int bad = 0;
    for (int rep = 0; rep < 40; rep++) {
        const int d = 8 * (1 + irand(20)), nr = 1 + irand(40), nk = 1 + irand(40), ss = rep % 2 ? nk : 48; /* rows nk apart too */
        float *q = malloc(sizeof(float) * nr * d), *kf = malloc(sizeof(float) * nk * d), *kt = malloc(sizeof(float) * d * 48);
        float *S = malloc(sizeof(float) * nr * ss);
        uint16_t *kh = malloc(sizeof(uint16_t) * nk * d);
        if (!CHECK(q && kf && kt && S && kh)) {
            free(q), free(kf), free(kt), free(S), free(kh);
            return;
        }
        for (int i = 0; i < nr * d; i++) q[i] = frand();
        for (int i = 0; i < nk * d; i++) kh[i] = fp32_to_fp16(2 * frand()), kf[i] = fp16_to_fp32(kh[i]);
        for (int half = 0; half < 2; half++) {
            k->scores_many(q, d, nr, half ? (const void *)kh : (const void *)kf, half, nk, d, S, ss, kt);
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nk; j++) {
                    float want = 0.0f;
                    for (int e = 0; e < d; e++)
                        want = fused ? fmaf(q[r * d + e], kf[j * d + e], want) : want + q[r * d + e] * kf[j * d + e];
                    const float got = S[r * ss + j];
                    bad += fused ? memcmp(&got, &want, sizeof got) != 0 : !(fabsf(got - want) <= 2e-6f * d);
                }
        }
        free(q), free(kf), free(kt), free(S), free(kh);
    }
    CHECKF(bad == 0, "%s scores_many: %d scores off the in-order sums", k->name, bad);
}

/* AVX-512: a (row, key) score takes the same steps in any block (rows and
 * keys one at a time equal the whole call, bit for bit), and pv gives the
 * AVX2 kernel's bits (the same steps per element). */
static void avx512_invariants(const attn_kernels *k5) {
    enum { NR = 11, NK = 37, D = 80 };
    float *q = malloc(sizeof(float) * NR * D), *kk = malloc(sizeof(float) * NK * D);
    float *all = malloc(sizeof(float) * NR * NK), *one = malloc(sizeof(float) * NR * NK);
    float *o1 = malloc(sizeof(float) * NR * D), *o2 = malloc(sizeof(float) * NR * D), alpha[NR];
    if (!CHECK(q && kk && all && one && o1 && o2)) goto done;
    for (int i = 0; i < NR * D; i++) q[i] = frand(), o1[i] = o2[i] = frand();
    for (int i = 0; i < NK * D; i++) kk[i] = frand();
    for (int r = 0; r < NR; r++) alpha[r] = r % 3 ? (float)urand() : 1.0f;
    k5->scores(q, D, NR, kk, NK, D, all, NK);
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < NK; j += 3) /* one row x up to 3 keys */
            k5->scores(q + r * D, D, 1, kk + j * D, NK - j < 3 ? NK - j : 3, D, one + r * NK + j, NK);
    CHECK(memcmp(all, one, sizeof(float) * NR * NK) == 0);
    for (int i = 0; i < NR * NK; i++) all[i] = fabsf(all[i]);
    k5->pv(o1, NR, alpha, all, NK, kk, NK, D);
    attn_kernels_avx2()->pv(o2, NR, alpha, all, NK, kk, NK, D);
    CHECK(memcmp(o1, o2, sizeof(float) * NR * D) == 0);
done:
    free(q), free(kk), free(all), free(one), free(o1), free(o2);
}

/* The AVX2 (and AVX-512) kernels equal the scalar ones (to rounding), and
 * all the reference. */
static void test_kernels(env *E) {
    check_softmax_table(attn_kernels_scalar());
    scores_many_in_order(attn_kernels_scalar());
    if (!attn_kernels_avx2()) {
        printf("no AVX2: kernel comparison skipped\n");
        return;
    }
    const attn_kernels *simd[2] = {attn_kernels_avx2(), attn_kernels_avx512()};
    for (int t = 0; t < 2; t++)
        if (simd[t]) kernels_match_scalar(simd[t]), check_softmax_table(simd[t]), scores_many_in_order(simd[t]);
    if (simd[1]) avx512_invariants(simd[1]);
    const attn_kernels *ks = attn_kernels_scalar(), *kv = attn_kernels_get();
    /* Whole kernels with the scalar table forced: same reference, same result to rounding. */
    attn_force_scalar(true);
    CHECK(attn_kernels_get() == ks);
    fixture f;
    if (CHECK(fixture_make(&f, 8, 2, 80, 16, LT_F32, 777, POS_GAPS))) {
        int32_t qp = max_pos(&f);
        run_case(E, &f, 2, 1, &qp, 3.0f, "scalar-decode");
        int32_t q_pos[9];
        for (int t = 0; t < 9; t++) q_pos[t] = f.pos[f.n - 9 + t];
        run_case(E, &f, 3, 9, q_pos, 3.0f, "scalar-prefill");
    }
    fixture_free(&f);
    attn_force_scalar(false);
    CHECK(attn_kernels_get() == kv);
}

/* The cold kernels (quantised pages read in place) equal the float kernels
 * on the dequantised page, scalar and AVX2 alike, for Q4_0 and Q8_0: keys
 * per channel ([d][P] in blocks), values per token ([P][d] in blocks). */
static void test_cold_kernels(void) {
    const attn_kernels *tabs[3] = {attn_kernels_scalar(), attn_kernels_avx2(), attn_kernels_avx512()};
    const lt_type types[2] = {LT_Q4_0, LT_Q8_0};
    for (int rep = 0; rep < 48; rep++) {
        const lt_type ty = types[rep % 2];
        const lt_traits *tr = lt_type_traits(ty);
        int P = 32 * (1 + irand(2)), d = 32 * (1 + irand(4)), nr = 1 + irand(9), nk = 1 + irand(P);
        long nv = (long)P * d;
        float *kt = malloc(sizeof(float) * nv), *k = malloc(sizeof(float) * nv), *v = malloc(sizeof(float) * nv);
        float *q = malloc(sizeof(float) * nr * d), *s1 = malloc(sizeof(float) * nr * P), *s2 = malloc(sizeof(float) * nr * P);
        float *o1 = malloc(sizeof(float) * nr * d), *o2 = malloc(sizeof(float) * nr * d), alpha[9];
        unsigned char *kq = malloc(lt_row_bytes(ty, nv)), *vq = malloc(lt_row_bytes(ty, nv));
        float *stage = malloc(sizeof(float) * 33 * (P > d ? P : d));
        for (long i = 0; i < nv; i++) kt[i] = 3 * frand(), v[i] = frand();
        tr->from_float(kt, kq, nv);
        tr->to_float(kq, kt, nv);
        for (int j = 0; j < P; j++) /* rows of keys from the per-channel layout */
            for (int e = 0; e < d; e++) k[(long)j * d + e] = kt[(long)e * P + j];
        tr->from_float(v, vq, nv);
        tr->to_float(vq, v, nv);
        for (int i = 0; i < nr * d; i++) q[i] = frand();
        for (int r = 0; r < nr; r++) alpha[r] = r % 3 ? (float)urand() : 1.0f;
        attn_kernels_scalar()->scores(q, d, nr, k, nk, d, s1, P);
        for (int t = 0; t < 3; t++) {
            if (!tabs[t]) continue;
            tabs[t]->scores_cold(ty, q, d, nr, kq, P, nk, d, s2, P, rep % 4 < 2 ? stage : NULL);
            int same = 1;
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nk; j++) same &= fabsf(s1[r * P + j] - s2[r * P + j]) <= 2e-6f * d;
            CHECKF(same, "%s scores_cold (%s) differ P=%d d=%d nr=%d nk=%d", tabs[t]->name, lt_type_name(ty), P, d, nr, nk);
        }
        for (int i = 0; i < nr * P; i++) s1[i] = i % 7 == 3 ? 0.0f : fabsf(s1[i]); /* some masked slots */
        for (int t = 0; t < 3; t++) {
            if (!tabs[t]) continue;
            for (int i = 0; i < nr * d; i++) o1[i] = o2[i] = (float)i / (nr * d) - 0.5f;
            attn_kernels_scalar()->pv(o1, nr, alpha, s1, P, v, nk, d);
            tabs[t]->pv_cold(ty, o2, nr, alpha, s1, P, vq, nk, d, rep % 4 < 2 ? stage : NULL);
            int same = 1;
            for (int i = 0; i < nr * d; i++) same &= fabsf(o1[i] - o2[i]) <= 1e-5f * (1.0f + fabsf(o1[i]));
            CHECKF(same, "%s pv_cold (%s) differs P=%d d=%d nr=%d nk=%d", tabs[t]->name, lt_type_name(ty), P, d, nr, nk);
        }
        free(kt), free(k), free(v), free(q), free(s1), free(s2), free(o1), free(o2), free(kq), free(vq), free(stage);
    }
}

/* The in-place kernels (F16 and Q8_0 keys / values) equal converting the
 * rows to F32 (kv_row_to_f32) and calling scores / pv of the same table, bit
 * for bit, head dims with and without the vector width (Q8_0: multiples of
 * 32, any int8 including -128, scales of mixed size). */
static void test_inplace_kernels(void) {
    const attn_kernels *tabs[3] = {attn_kernels_scalar(), attn_kernels_avx2(), attn_kernels_avx512()};
    static const int dims[] = {64, 40, 36, 128, 48}; /* F16; Q8_0 takes 32..128 */
    for (int rep = 0; rep < 60; rep++) {
        const int q8 = rep % 2, d = q8 ? 32 * (1 + irand(4)) : dims[rep % 5], nr = 1 + irand(9), nk = 1 + irand(40);
        const size_t rb = q8 ? kv_row_size(LT_Q8_0, d) : sizeof(uint16_t) * (size_t)d;
        float *q = malloc(sizeof(float) * nr * d), *kf = malloc(sizeof(float) * nk * d), *vf = malloc(sizeof(float) * nk * d);
        unsigned char *kr = malloc(rb * nk), *vr = malloc(rb * nk);
        float *s1 = malloc(sizeof(float) * nr * nk), *s2 = malloc(sizeof(float) * nr * nk);
        float *o1 = malloc(sizeof(float) * nr * d), *o2 = malloc(sizeof(float) * nr * d), alpha[9];
        if (q8) {
            for (size_t i = 0; i < rb * nk; i++) kr[i] = (unsigned char)irand(256), vr[i] = (unsigned char)irand(256);
            for (size_t b = 0; b < (size_t)nk * d / 32; b++) { /* sane scales: 2^-12 .. 2^3 */
                uint16_t hk = fp32_to_fp16(ldexpf(0.5f + urand(), irand(15) - 12)), hv = fp32_to_fp16(0.01f + urand());
                memcpy(kr + b * 34, &hk, 2), memcpy(vr + b * 34, &hv, 2);
            }
        } else {
            for (int i = 0; i < nk * d; i++) {
                uint16_t hk = fp32_to_fp16(3 * frand()), hv = fp32_to_fp16(frand());
                memcpy(kr + 2 * (size_t)i, &hk, 2), memcpy(vr + 2 * (size_t)i, &hv, 2);
            }
        }
        const lt_type ty = q8 ? LT_Q8_0 : LT_F16;
        kv_row_to_f32_scalar(ty, kr, kf, nk * d);
        kv_row_to_f32_scalar(ty, vr, vf, nk * d);
        for (int i = 0; i < nr * d; i++) q[i] = frand();
        for (int r = 0; r < nr; r++) alpha[r] = r % 3 ? (float)urand() : 1.0f;
        for (int t = 0; t < 3; t++) {
            if (!tabs[t]) continue;
            tabs[t]->scores(q, d, nr, kf, nk, d, s1, nk);
            if (q8) tabs[t]->scores_q8(q, d, nr, kr, nk, d, s2, nk);
            else tabs[t]->scores_f16(q, d, nr, (const uint16_t *)(const void *)kr, nk, d, s2, nk);
            CHECKF(memcmp(s1, s2, sizeof(float) * nr * nk) == 0, "%s scores_%s d=%d nr=%d nk=%d", tabs[t]->name,
                   q8 ? "q8" : "f16", d, nr, nk);
            for (int i = 0; i < nr * nk; i++) s1[i] = i % 5 == 2 ? 0.0f : fabsf(s1[i]) / (1.0f + fabsf(s1[i]));
            for (int i = 0; i < nr * d; i++) o1[i] = o2[i] = (float)i / (nr * d) - 0.5f;
            tabs[t]->pv(o1, nr, alpha, s1, nk, vf, nk, d);
            if (q8) tabs[t]->pv_q8(o2, nr, alpha, s1, nk, vr, nk, d);
            else tabs[t]->pv_f16(o2, nr, alpha, s1, nk, (const uint16_t *)(const void *)vr, nk, d);
            CHECKF(memcmp(o1, o2, sizeof(float) * nr * d) == 0, "%s pv_%s d=%d nr=%d nk=%d", tabs[t]->name,
                   q8 ? "q8" : "f16", d, nr, nk);
        }
        free(q), free(kf), free(vf), free(kr), free(vr), free(s1), free(s2), free(o1), free(o2);
    }
}

/* Prefill scratch does not grow with the context; decode scratch is small. */
static void test_scratch(env *E) {
    size_t peak[2];
    int lens[2] = {300, 3000};
    for (int i = 0; i < 2; i++) {
        fixture f;
        if (!CHECK(fixture_make(&f, 8, 2, 64, 16, LT_F16, lens[i], POS_SEQ))) {
            fixture_free(&f);
            return;
        }
        attn_scratch *scr = attn_scratch_create();
        int n_tok = 48;
        int32_t q_pos[48];
        for (int t = 0; t < n_tok; t++) q_pos[t] = f.pos[f.n - n_tok + t];
        float *q = make_queries(n_tok, 8, 64, 1.0f), *out = malloc((size_t)n_tok * 8 * 64 * sizeof *out);
        CHECK(attn_prefill(E->tp[2], scr, &f.L, q, q_pos, n_tok, out, NULL) == 0);
        peak[i] = attn_scratch_peak_bytes(scr);
        attn_scratch_free(scr);
        scr = attn_scratch_create();
        CHECK(attn_decode(E->tp[2], scr, &f.L, q, q_pos[n_tok - 1], out, NULL) == 0);
        /* partials: items x group x (d + 2) plus per-thread tiles */
        CHECKF(attn_scratch_peak_bytes(scr) < 64 * 1024, "decode scratch %zu bytes", attn_scratch_peak_bytes(scr));
        attn_scratch_free(scr);
        free(q), free(out);
        fixture_free(&f);
    }
    CHECKF(peak[0] == peak[1] && peak[0] > 0, "prefill scratch %zu (n=300) vs %zu (n=3000)", peak[0], peak[1]);
}

int main(void) {
    env E;
    memset(&E, 0, sizeof E);
    E.tp[1] = tp_create(1);
    E.tp[2] = tp_create(2);
    E.tp[3] = tp_create(3);
    E.scr = attn_scratch_create();
    if (!E.tp[1] || !E.tp[2] || !E.tp[3] || !E.scr) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    printf("kernels: %s\n", attn_kernels_get()->name);
    test_kernels(&E);
    test_cold_kernels();
    test_inplace_kernels();
    test_shapes(&E);
    test_masking(&E);
    test_dtypes(&E);
    test_stats(&E);
    test_scratch(&E);
    for (int i = 1; i <= 3; i++) tp_free(E.tp[i]);
    attn_scratch_free(E.scr);
    return tu_finish("test_attn");
}
