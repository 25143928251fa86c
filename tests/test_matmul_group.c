/* lt_matmul_group and the pool's dynamic runs: (1) a group of matrices that
 * read one input gives, for each, exactly (bit for bit) what lt_matmul gives
 * for it alone, over mixed weight types (one or several distinct
 * vec_dot_types), one token and batches, 1-3 threads and a pool larger than
 * the machine; (2) tp_run_dynamic finishes all the work with whichever
 * threads join, gives each participant its own index, and mixes with static
 * tp_run calls, including with workers that arrive late; (3) bad groups are
 * refused; (4) lt_matmul_group_rows, its rows made on the fly (by any
 * thread, once per token), gives the bits of making them first. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/matmul.h"
#include "tensor/quantize.h"
#include "tensor/threadpool.h"
#include "testutil.h"

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

enum { COLS = 512, MAX_TOK = 40 };

typedef struct {
    lt_type type;
    int rows;
} mat_spec;

/* Rows made on the fly: row t = src row t * 0.5 + t, each counted. */
typedef struct {
    const float *src;
    atomic_int made[MAX_TOK];
} row_maker;

static void make_row(const void *user, int64_t t, float *dst) {
    row_maker *m = (row_maker *)user;
    for (int i = 0; i < COLS; i++) dst[i] = m->src[t * COLS + i] * 0.5f + (float)t;
    atomic_fetch_add(&m->made[t], 1);
}

/* The group on rows made by make_row against making them first. */
static void check_rows(threadpool *tp, const lt_matmul_out *o, int k, const float *x, int n_tok, float *const *ref) {
    row_maker *mk = calloc(1, sizeof *mk);
    float *xr = malloc(sizeof(float) * (size_t)n_tok * COLS), *xm = malloc(sizeof(float) * (size_t)n_tok * COLS);
    float *got[LT_MATMUL_MAX_GROUP] = {0};
    lt_matmul_out om[LT_MATMUL_MAX_GROUP];
    lt_workspace ws = {0};
    int ok = mk && xr && xm;
    for (int m = 0; m < k; m++) {
        om[m] = o[m];
        ok &= (om[m].y = got[m] = malloc(sizeof(float) * (size_t)n_tok * o[m].n_rows)) != NULL;
    }
    if (CHECK(ok)) {
        mk->src = x;
        for (int t = 0; t < n_tok; t++)
            for (int i = 0; i < COLS; i++) xr[t * COLS + i] = x[t * COLS + i] * 0.5f + (float)t;
        lt_matmul_out oref[LT_MATMUL_MAX_GROUP];
        for (int m = 0; m < k; m++) oref[m] = o[m], oref[m].y = ref[m];
        CHECK(lt_matmul_group(tp, &ws, oref, k, COLS, xr, n_tok) == 0);
        const lt_matmul_rows src = {make_row, mk, xm};
        CHECK(lt_matmul_group_rows(tp, &ws, om, k, COLS, &src, n_tok) == 0);
        int once = 1;
        for (int t = 0; t < n_tok; t++) once &= atomic_load(&mk->made[t]) == 1;
        CHECKF(once, "%d tokens, %d threads: a row made other than once", n_tok, tp_n_threads(tp));
        CHECK(memcmp(xm, xr, sizeof(float) * (size_t)n_tok * COLS) == 0);
        for (int m = 0; m < k; m++)
            CHECKF(memcmp(got[m], ref[m], sizeof(float) * (size_t)n_tok * o[m].n_rows) == 0,
                   "matrix %d (%s), %d tokens, %d threads: rows made on the fly differ from rows made first", m,
                   lt_type_name(o[m].type), n_tok, tp_n_threads(tp));
        const lt_matmul_rows none = {NULL, mk, xm};
        CHECK(lt_matmul_group_rows(tp, &ws, om, k, COLS, &none, n_tok) == -1);
    }
    for (int m = 0; m < k; m++) free(got[m]);
    free(mk), free(xr), free(xm);
    lt_workspace_free(&ws);
}

/* One group: quantise random weights, run the group and each alone. */
static void check_group(threadpool *tp, const mat_spec *spec, int k, int n_tok, uint32_t seed) {
    void *W[LT_MATMUL_MAX_GROUP];
    float *y[LT_MATMUL_MAX_GROUP], *ref[LT_MATMUL_MAX_GROUP];
    float *x = malloc(sizeof(float) * (size_t)n_tok * COLS);
    lt_matmul_out o[LT_MATMUL_MAX_GROUP];
    lt_workspace ws = {0}, ws1 = {0};
    int ok = x != NULL;
    for (int i = 0; ok && i < n_tok * COLS; i++) x[i] = frand(&seed);
    for (int m = 0; m < k; m++) {
        float *wf = malloc(sizeof(float) * (size_t)spec[m].rows * COLS);
        W[m] = malloc(lt_row_bytes(spec[m].type, COLS) * (size_t)spec[m].rows);
        y[m] = malloc(sizeof(float) * (size_t)n_tok * spec[m].rows);
        ref[m] = malloc(sizeof(float) * (size_t)n_tok * spec[m].rows);
        ok &= wf && W[m] && y[m] && ref[m];
        for (int i = 0; ok && i < spec[m].rows * COLS; i++) wf[i] = frand(&seed);
        ok = ok && lt_quantize_rows(spec[m].type, wf, W[m], spec[m].rows, COLS) > 0;
        free(wf);
        o[m] = (lt_matmul_out){spec[m].type, W[m], spec[m].rows, y[m], false};
    }
    if (CHECK(ok)) {
        for (int m = 0; m < k; m++) {
            CHECK(lt_matmul(tp, &ws1, spec[m].type, W[m], spec[m].rows, COLS, x, n_tok, ref[m]) == 0);
            for (int i = 0; i < n_tok * spec[m].rows; i++) y[m][i] = -12345.0f;
        }
        CHECK(lt_matmul_group(tp, &ws, o, k, COLS, x, n_tok) == 0);
        for (int m = 0; m < k; m++)
            CHECKF(memcmp(y[m], ref[m], sizeof(float) * (size_t)n_tok * spec[m].rows) == 0,
                   "group of %d, matrix %d (%s, %d rows), %d tokens, %d threads: differs from lt_matmul alone", k, m,
                   lt_type_name(spec[m].type), spec[m].rows, n_tok, tp_n_threads(tp));
        check_rows(tp, o, k, x, n_tok, ref);
    }
    for (int m = 0; m < k; m++) free(W[m]), free(y[m]), free(ref[m]);
    free(x);
    lt_workspace_free(&ws);
    lt_workspace_free(&ws1);
}

static void test_groups(void) {
    /* Q/K/V-like (one vec_dot_type, odd row counts), a Q4_K_M-like mix
     * (Q4_K and Q6_K share Q8_K), and a group of three distinct
     * vec_dot_types (Q8_0, Q8_1, F32) with a k-quant (Q8_K): four copies */
    static const mat_spec qkv[] = {{LT_Q4_0, 67}, {LT_Q4_0, 13}, {LT_Q4_0, 13}};
    static const mat_spec mix[] = {{LT_Q4_K, 40}, {LT_Q6_K, 9}};
    static const mat_spec many[] = {{LT_Q8_0, 21}, {LT_Q4_1, 7}, {LT_F16, 5}, {LT_Q4_K, 3}};
    static const int toks[] = {1, 3, MAX_TOK};
    threadpool *pools[4] = {tp_create(1), tp_create(2), tp_create(3), tp_create(9)};
    for (int p = 0; p < 4; p++) {
        if (!CHECK(pools[p] != NULL)) continue;
        for (int t = 0; t < 3; t++) {
            check_group(pools[p], qkv, 3, toks[t], 11u + (uint32_t)t);
            check_group(pools[p], mix, 2, toks[t], 22u + (uint32_t)t);
            check_group(pools[p], many, 4, toks[t], 33u + (uint32_t)t);
        }
    }
    /* refused: no matrices, too many, a type without a dot product */
    float x[COLS] = {0}, y[8];
    lt_workspace ws = {0};
    lt_matmul_out o[LT_MATMUL_MAX_GROUP + 1];
    for (int i = 0; i <= LT_MATMUL_MAX_GROUP; i++) o[i] = (lt_matmul_out){LT_F32, x, 1, y, false};
    CHECK(lt_matmul_group(pools[1], &ws, o, 0, COLS, x, 1) == -1);
    CHECK(lt_matmul_group(pools[1], &ws, o, LT_MATMUL_MAX_GROUP + 1, COLS, x, 1) == -1);
    o[1].type = LT_Q8_K;
    CHECK(lt_matmul_group(pools[1], &ws, o, 2, COLS, x, 1) == -1);
    lt_workspace_free(&ws);
    for (int p = 0; p < 4; p++) tp_free(pools[p]);
}

/* A dynamic run's work: n items claimed one by one, each counted once; the
 * thread indices seen are recorded. */
typedef struct {
    atomic_int next, busy_mask_bad;
    int n;
    atomic_int done[257];
    atomic_uint seen; /* bit per ith */
    atomic_int active[16];
    int nap_us;
} dyn_job;

static void dyn_task(void *arg, int ith, int nth) {
    dyn_job *j = arg;
    if (ith < 0 || ith >= nth || ith >= 16 || atomic_fetch_add(&j->active[ith], 1) != 0)
        atomic_store(&j->busy_mask_bad, 1); /* two participants with one index */
    if (ith >= 0 && ith < 32) atomic_fetch_or(&j->seen, 1u << ith);
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        atomic_fetch_add(&j->done[i], 1);
        if (j->nap_us) usleep((useconds_t)j->nap_us);
    }
    if (ith >= 0 && ith < 16) atomic_fetch_sub(&j->active[ith], 1);
}

typedef struct {
    atomic_int hits[16];
} static_job;

static void static_task(void *arg, int ith, int nth) {
    static_job *j = arg;
    (void)nth;
    atomic_fetch_add(&j->hits[ith], 1);
}

static void test_dynamic(void) {
    static const int sizes[] = {1, 2, 3, 9};
    for (int p = 0; p < 4; p++) {
        threadpool *tp = tp_create(sizes[p]);
        if (!CHECK(tp != NULL)) continue;
        int bad_runs = 0, bad_static = 0;
        unsigned seen_any = 0;
        for (int run = 0; run < 300; run++) {
            dyn_job *j = calloc(1, sizeof *j);
            if (!j) break;
            j->n = 1 + run % 257;
            j->nap_us = run % 50 == 0 ? 200 : 0; /* slow items now and then: workers get to join */
            tp_run_dynamic(tp, dyn_task, j);
            for (int i = 0; i < j->n; i++) bad_runs += atomic_load(&j->done[i]) != 1;
            bad_runs += atomic_load(&j->busy_mask_bad) != 0;
            bad_runs += (atomic_load(&j->seen) & 1u) == 0; /* the caller always takes part */
            seen_any |= atomic_load(&j->seen);
            free(j); /* a late worker must not touch a finished run */
            if (run % 7 == 0) { /* static runs in between still reach every thread once */
                static_job s;
                memset(&s, 0, sizeof s);
                tp_run(tp, static_task, &s);
                for (int i = 0; i < sizes[p]; i++) bad_static += atomic_load(&s.hits[i]) != 1;
            }
        }
        CHECKF(bad_runs == 0, "tp_run_dynamic with %d threads: %d bad results", sizes[p], bad_runs);
        CHECKF(bad_static == 0, "tp_run between dynamic runs, %d threads: %d bad", sizes[p], bad_static);
        CHECKF(seen_any < (1u << sizes[p]), "thread indices stay below the pool size (%#x)", seen_any);
        if (sizes[p] > 1) printf("%d threads: participants seen %#x\n", sizes[p], seen_any);
        tp_free(tp);
    }
    dyn_job *j = calloc(1, sizeof *j);
    if (CHECK(j != NULL)) {
        j->n = 5;
        tp_run_dynamic(NULL, dyn_task, j); /* no pool: inline */
        CHECK(atomic_load(&j->done[4]) == 1 && atomic_load(&j->seen) == 1u);
        free(j);
    }
}

int main(void) {
    test_groups();
    test_dynamic();
    return tu_finish("test_matmul_group");
}
