/* Shared-prefix attention (Hydragen) in batched decode: the decode rows of
 * forks sharing cached pages attend the shared pages once, together, and
 * merge that by log-sum-exp with their own pages. It must change nothing
 * beyond float rounding.
 *
 * 16 sequences from four roots of different policies ("full", "window"
 * that evicts during the run, "h2o" that needs attention statistics and
 * so never shares, "mixed" with a cold tier, never shares): forks at
 * different depths, some with distinct suffixes of their own, one with a
 * span removed from the shared prefix (its pages copied on write, slot
 * order no longer position order). The same schedule of batched steps
 * (prompt chunks and decode rows mixed, sequences skipping some steps)
 * runs with shared_prefix_attn on and off: every step's logits within
 * 1e-5 (F32 KV), greedy tokens identical, and the shared path must have
 * run. For 1, 2 and 3 threads, on stories260K and the synthetic GQA model.
 *
 * Also: a warm shared step allocates nothing, and a failed allocation at
 * any point of a shared step leaves every sequence as it was (the retry
 * gives the logits of a run that never failed, bit for bit); and at the
 * kernel level, attn_decode_shared equals attn_decode_multi bit for bit on
 * 40 forks (blocks of more than 64 rows), shuffled positions some of which
 * lie past some queries, F32 / F16 / Q8_0 pages, a job with statistics and
 * one sharing nothing, scalar and AVX2 kernels, 1-3 threads, short and
 * long (chunked) prefixes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_kernels.h"
#include "lethe.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "testutil.h"
#include "util/alloc.h"

#define N_SEQ 16
#define N_STEPS 28

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static lethe_token tok_at(int i, int V) { return (lethe_token)(1 + (i * 7919 + 13) % (V - 1)); }

/* What each sequence is: root (-1) or parent, when it forks (the parent's
 * length then), its own suffix appended right after the fork. */
typedef struct {
    const char *policy;
    int budget;
    int parent;
    int fork_at;   /* fork once the parent holds this many tokens */
    int n_suffix;  /* own tokens appended in the first steps */
    int remove_p0; /* > 0: remove positions [remove_p0, remove_p0 + 4) after the fork */
} spec;

static const spec SPECS[N_SEQ] = {
    /* root 0 (full) and seven forks: five at 37 tokens, two at 49 (the root goes on), different suffixes */
    {"full", 0, -1, 0, 0, 0},    {"full", 0, 0, 37, 0, 0},     {"full", 0, 0, 37, 3, 0},
    {"full", 0, 0, 37, 9, 0},    {"full", 0, 0, 37, 1, 10},    {"full", 0, 0, 37, 0, 0},
    {"full", 0, 0, 49, 0, 0},    {"full", 0, 0, 49, 5, 0},
    /* window: evicts during the run, pages change under the forks */
    {"window", 64, -1, 0, 0, 0}, {"window", 64, 8, 40, 0, 0}, {"window", 64, 8, 40, 6, 0},
    /* h2o needs statistics: never shares */
    {"h2o", 48, -1, 0, 0, 0},    {"h2o", 48, 11, 30, 0, 0},    {"h2o", 48, 11, 30, 2, 0},
    /* mixed has a cold tier: never shares */
    {"mixed", 64, -1, 0, 0, 0},  {"mixed", 64, 14, 30, 0, 0},
};

/* Tokens added to the depth of root 0's forks: 0, or a long prefix whose
 * shared pages the threads split into several chunks. */
static int extra;

#ifdef LETHE_TEST_SANITIZED
#define SANITIZED_THREAD_STEP 2
#else
#define SANITIZED_THREAD_STEP 1
#endif

static lethe_ctx_params ctx_params(int threads, bool shared) {
    lethe_ctx_params p = lethe_ctx_default_params();
    p.kv_type = LETHE_KV_F32;
    p.n_ctx = 160 + extra;
    p.n_seq_max = N_SEQ;
    p.n_threads = threads;
    p.kv_page_slots = 8;
    p.shared_prefix_attn = shared;
    return p;
}

typedef struct {
    float *logits;    /* N_STEPS x N_SEQ x V (NaN where the sequence did not run) */
    lethe_token *toks; /* N_STEPS x N_SEQ */
    long shared;      /* rows that took the shared path */
} run_out;

/* Builds the 16 sequences and runs the schedule. Returns 0 on failure. */
static int run(const char *path, int threads, bool shared, int V, run_out *out) {
    lethe_ctx_params cp = ctx_params(threads, shared);
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(c != NULL, "ctx: %s", err)) return 0;
    lethe_seq *s[N_SEQ] = {0};
    float *lg = malloc(sizeof(float) * (size_t)V * N_SEQ);
    int ok = 1;
    /* roots: prompts of their own, grown until every fork depth is reached */
    for (int i = 0; i < N_SEQ && ok; i++) {
        const spec *x = &SPECS[i];
        if (x->parent >= 0) continue;
        lethe_seq_params sp = lethe_seq_default_params();
        sp.kv.name = x->policy;
        sp.kv.budget = x->budget;
        s[i] = lethe_seq_create(c, &sp, err, sizeof err);
        if (!CHECKF(s[i] != NULL, "seq %d: %s", i, err)) { ok = 0; break; }
        lethe_token pr[1024];
        int done = 0;
        for (int j = 0; j < N_SEQ && ok; j++) { /* forks in order of depth */
            if (SPECS[j].parent != i) continue;
            int n = SPECS[j].fork_at + (i == 0 ? extra : 0) - done;
            for (int t = 0; t < n; t++) pr[t] = tok_at(100 * i + done + t, V);
            if (n > 0 && !CHECK(lethe_seq_append(s[i], pr, n, NULL) == LETHE_OK)) ok = 0;
            done += n > 0 ? n : 0;
            s[j] = lethe_seq_fork(s[i], err, sizeof err);
            if (!CHECKF(s[j] != NULL, "fork %d: %s", j, err)) ok = 0;
            if (ok && SPECS[j].remove_p0 > 0)
                ok = CHECK(lethe_seq_remove(s[j], SPECS[j].remove_p0, SPECS[j].remove_p0 + 4) == LETHE_OK);
        }
        if (done == 0) { /* a root without forks still gets a prompt */
            for (int t = 0; t < 20; t++) pr[t] = tok_at(100 * i + t, V);
            ok = ok && CHECK(lethe_seq_append(s[i], pr, 20, NULL) == LETHE_OK);
        }
    }
    /* the steps: suffix tokens first (up to 4 a step), then greedy decode; some sequences skip some steps */
    int suffix_done[N_SEQ] = {0};
    lethe_token next[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) next[i] = tok_at(5000 + i, V);
    for (int step = 0; step < N_STEPS && ok; step++) {
        lethe_token rows_tok[N_SEQ * 4];
        lethe_seq *rows_seq[N_SEQ * 4];
        int n_rows = 0, order[N_SEQ], n_in = 0;
        for (int i = 0; i < N_SEQ; i++) {
            bool skip = (i * 7 + step) % 5 == 0 && step > 2;
            if (skip) continue;
            order[n_in++] = i;
            int left = SPECS[i].n_suffix - suffix_done[i];
            if (left > 0) {
                int n = left < 4 ? left : 4;
                for (int t = 0; t < n; t++) {
                    rows_tok[n_rows] = tok_at(3000 + 50 * i + suffix_done[i] + t, V);
                    rows_seq[n_rows++] = s[i];
                }
                suffix_done[i] += n;
            } else {
                rows_tok[n_rows] = next[i];
                rows_seq[n_rows++] = s[i];
            }
        }
        lethe_batch b = {n_rows, rows_tok, rows_seq, NULL};
        if (!CHECKF(lethe_ctx_decode(c, &b, lg) == LETHE_OK, "step %d: %s", step, lethe_ctx_error(c))) { ok = 0; break; }
        /* one logits row per sequence, in order of each one's last row: here order[] */
        for (int i = 0; i < N_SEQ; i++) {
            float *dst = out->logits + ((size_t)step * N_SEQ + i) * V;
            for (int v = 0; v < V; v++) dst[v] = NAN;
            out->toks[step * N_SEQ + i] = -1;
        }
        for (int k = 0; k < n_in; k++) {
            int i = order[k];
            memcpy(out->logits + ((size_t)step * N_SEQ + i) * V, lg + (size_t)k * V, sizeof(float) * (size_t)V);
            next[i] = argmax(lg + (size_t)k * V, V);
            out->toks[step * N_SEQ + i] = next[i];
        }
    }
    out->shared = c->sh_shared;
    free(lg);
    tu_close_ctx(c);
    return ok;
}

static void on_equals_off(const char *rel, int extra_tokens) {
    extra = extra_tokens;
    const char *path = tu_model_path(rel);
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    char err[512];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_model_free(m);
    const int V = info.n_vocab;
    /* under the sanitizers (10x slower) 1 and 3 threads: one split even, one not */
    for (int threads = 1; threads <= 3; threads += SANITIZED_THREAD_STEP) {
        run_out on, off;
        size_t nl = (size_t)N_STEPS * N_SEQ * V;
        on.logits = malloc(nl * sizeof(float));
        off.logits = malloc(nl * sizeof(float));
        on.toks = malloc(sizeof(lethe_token) * N_STEPS * N_SEQ);
        off.toks = malloc(sizeof(lethe_token) * N_STEPS * N_SEQ);
        if (run(path, threads, true, V, &on) && run(path, threads, false, V, &off)) {
            double worst = 0;
            int same = 1, differ = 0;
            for (int st = 0; st < N_STEPS; st++)
                for (int i = 0; i < N_SEQ; i++) {
                    same &= on.toks[st * N_SEQ + i] == off.toks[st * N_SEQ + i];
                    const float *a = on.logits + ((size_t)st * N_SEQ + i) * V, *b = off.logits + ((size_t)st * N_SEQ + i) * V;
                    for (int v = 0; v < V; v++) {
                        if (isnan(a[v]) || isnan(b[v])) {
                            same &= isnan(a[v]) && isnan(b[v]);
                            continue;
                        }
                        double d = fabs((double)a[v] - b[v]);
                        differ |= a[v] != b[v];
                        if (d > worst) worst = d;
                    }
                    /* sequences that never share give bit-identical logits */
                    if (!strcmp(SPECS[i].policy, "h2o") || !strcmp(SPECS[i].policy, "mixed"))
                        CHECKF(!memcmp(a, b, sizeof(float) * (size_t)V) || isnan(a[0]),
                               "%s, %d threads: sequence %d (%s) changed at step %d though it cannot share", rel, threads, i,
                               SPECS[i].policy, st);
                }
            CHECKF(same, "%s, %d threads: greedy tokens differ with shared-prefix attention", rel, threads);
            CHECKF(worst <= 1e-5, "%s, %d threads: logits differ by %.3g with shared-prefix attention", rel, threads, worst);
            CHECKF(on.shared > 0 && off.shared == 0, "%s, %d threads: shared path ran for %ld / %ld rows", rel, threads,
                   on.shared, off.shared);
            printf("%s, prefix +%d, %d threads: %d sequences x %d steps, %ld rows x layers shared, greedy %s, max|d| "
                   "logits %.3g (%s)\n",
                   rel, extra, threads, N_SEQ, N_STEPS, on.shared, same ? "identical" : "DIFFERENT", worst,
                   differ ? "not bit-identical" : "bit-identical");
        }
        free(on.logits);
        free(off.logits);
        free(on.toks);
        free(off.toks);
    }
}

/* ---- allocation: none in a warm shared step; failure atomicity ---- */

typedef struct {
    lethe_ctx *c;
    lethe_seq *s[5];
    int V;
} world;

/* A root (full) of 21 tokens and four forks, then `warm` batched steps. */
static int open_world(world *w, lethe_model *m, int threads, int warm) {
    lethe_ctx_params cp = ctx_params(threads, true);
    char err[512];
    memset(w, 0, sizeof *w);
    w->c = lethe_ctx_create(m, &cp, err, sizeof err);
    if (!CHECKF(w->c != NULL, "ctx: %s", err)) return 0;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    w->V = info.n_vocab;
    w->s[0] = lethe_seq_create(w->c, NULL, err, sizeof err);
    lethe_token pr[21];
    for (int t = 0; t < 21; t++) pr[t] = tok_at(t, w->V);
    if (!CHECK(w->s[0] && lethe_seq_append(w->s[0], pr, 21, NULL) == LETHE_OK)) return 0;
    for (int i = 1; i < 5; i++) {
        w->s[i] = lethe_seq_fork(w->s[0], err, sizeof err);
        if (!CHECKF(w->s[i] != NULL, "fork: %s", err)) return 0;
    }
    float *lg = malloc(sizeof(float) * 5 * (size_t)w->V);
    int ok = 1;
    for (int step = 0; step < warm && ok; step++) {
        lethe_token t[5];
        for (int i = 0; i < 5; i++) t[i] = tok_at(200 + 10 * step + i, w->V);
        lethe_batch b = {5, t, w->s, NULL};
        ok = CHECK(lethe_ctx_decode(w->c, &b, lg) == LETHE_OK);
    }
    free(lg);
    return ok;
}

static lethe_status world_step(world *w, int k, float *lg) {
    lethe_token t[5];
    for (int i = 0; i < 5; i++) t[i] = tok_at(400 + 10 * k + i, w->V);
    lethe_batch b = {5, t, w->s, NULL};
    return lethe_ctx_decode(w->c, &b, lg);
}

static void allocation(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) return;
    char err[512];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    for (int threads = 1; threads <= 2; threads++) {
        world w;
        if (!open_world(&w, m, threads, 6)) {
            lethe_ctx_free(w.c);
            break;
        }
        float *lg = malloc(sizeof(float) * 5 * (size_t)w.V);
        long before = w.c->sh_shared;
        CHECK(world_step(&w, 0, lg) == LETHE_OK);
        long a0 = lt_alloc_count();
        for (int k = 1; k <= 8; k++) CHECK(world_step(&w, k, lg) == LETHE_OK);
        long a1 = lt_alloc_count();
        CHECKF(a1 == a0, "%d threads: %ld allocations in 8 warm shared steps", threads, a1 - a0);
        CHECKF(w.c->sh_shared > before, "%d threads: the warm steps did not share", threads);
        free(lg);
        lethe_ctx_free(w.c);
    }
    /* failure atomicity of a shared step: fail the k-th allocation of a step on a fresh world */
    world ref;
    if (open_world(&ref, m, 2, 0)) {
        const int V = ref.V;
        float *want = malloc(sizeof(float) * 10 * V), *got = malloc(sizeof(float) * 10 * V);
        CHECK(world_step(&ref, 0, want) == LETHE_OK && world_step(&ref, 1, want + 5 * (size_t)V) == LETHE_OK);
        int k, failures = 0;
        for (k = 1; k < 10000; k++) {
            world w;
            if (!open_world(&w, m, 2, 0)) {
                lethe_ctx_free(w.c);
                break;
            }
            /* a first step that grows the shared scratch for a larger batch */
            int past = lethe_seq_n_past(w.s[0]);
            lt_alloc_fail_at(k);
            lethe_status st = world_step(&w, 0, got);
            int fired = lt_alloc_failed();
            lt_alloc_fail_at(0);
            if (st != LETHE_OK) {
                failures++;
                CHECKF(lethe_seq_n_past(w.s[0]) == past, "failure at allocation %d moved a sequence", k);
                st = world_step(&w, 0, got);
            }
            CHECK(st == LETHE_OK && world_step(&w, 1, got + 5 * (size_t)V) == LETHE_OK);
            CHECKF(!memcmp(want, got, sizeof(float) * 10 * V), "logits differ after a failure at allocation %d", k);
            lethe_ctx_free(w.c);
            if (!fired) break;
        }
        printf("shared step: %d allocation points, %d failures handled\n", k - 1, failures);
        free(want);
        free(got);
    }
    lethe_ctx_free(ref.c);
    lethe_model_free(m);
}


/* ---- kernel level: attn_decode_shared against attn_decode_multi ---- */

static uint64_t krng = 0x2545f4914f6cdd1dull;
static float kfrand(void) {
    krng = krng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((krng >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

#define K_JOBS 40

static void kernel_case(threadpool *tp, lt_type dtype, int n_prefix, int P, int n_head, int n_head_kv, int d) {
    char err[256];
    const int H = n_head_kv, NJ = K_JOBS + 2;
    kv_pool_params pp = {P, d, dtype, (size_t)H * (size_t)((n_prefix + P - 1) / P + 4) * (NJ + 1)};
    kv_pool *pool = kv_pool_create(&pp, err);
    if (!CHECKF(pool != NULL, "pool: %s", err)) return;
    const int n_rows = n_prefix + 40;
    float *k = malloc(sizeof(float) * (size_t)d * n_rows), *v = malloc(sizeof(float) * (size_t)d * n_rows);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_rows);
    for (long i = 0; i < (long)d * n_rows; i++) k[i] = kfrand(), v[i] = kfrand();
    for (int i = 0; i < n_prefix; i++) pos[i] = i;
    for (int i = n_prefix - 1; i > 0; i--) { /* slot order is not position order */
        int j = (int)((krng = krng * 6364136223846793005ull + 1) >> 33) % (i + 1), t = pos[i];
        pos[i] = pos[j];
        pos[j] = t;
    }
    for (int i = n_prefix; i < n_rows; i++) pos[i] = i;
    kv_stream *root = calloc((size_t)H, sizeof *root), *st = calloc((size_t)NJ * H, sizeof *st);
    for (int h = 0; h < H; h++) {
        kv_stream_init(&root[h]);
        CHECK(kv_stream_append(pool, &root[h], k, v, d, d, pos, n_prefix) == LETHE_OK);
    }
    attn_layer *L = calloc((size_t)NJ, sizeof *L);
    attn_decode_job *jobs = calloc((size_t)NJ, sizeof *jobs), *rest = calloc((size_t)NJ, sizeof *rest);
    float *q = malloc(sizeof(float) * (size_t)NJ * n_head * d);
    float *o1 = malloc(sizeof(float) * (size_t)NJ * n_head * d), *o2 = malloc(sizeof(float) * (size_t)NJ * n_head * d);
    float *l1 = malloc(sizeof(float) * (size_t)NJ * n_head), *l2 = malloc(sizeof(float) * (size_t)NJ * n_head);
    for (long i = 0; i < (long)NJ * n_head * d; i++) q[i] = 2.0f * kfrand();
    attn_stats_cfg stats = {1, 0.02f, 7, 0};
    for (int j = 0; j < NJ; j++) {
        kv_stream *s = st + (long)j * H;
        const int own = j % 7 == 3 ? 0 : 1 + j % 23; /* own slots after the fork (some none) */
        for (int h = 0; h < H; h++) {
            kv_stream_init(&s[h]);
            if (j == NJ - 1) { /* shares nothing: its own copy of the rows */
                CHECK(kv_stream_append(pool, &s[h], k, v, d, d, pos, n_prefix + own) == LETHE_OK);
                continue;
            }
            CHECK(kv_stream_fork(pool, &root[h], &s[h]) == LETHE_OK);
            if (j == NJ - 2) CHECK(kv_stream_enable_stats(&s[h], KV_STATS_ACC | KV_STATS_HIT) == LETHE_OK);
            const long o = (long)n_prefix * d;
            if (own) CHECK(kv_stream_append(pool, &s[h], k + o, v + o, d, d, pos + n_prefix, own) == LETHE_OK);
        }
        L[j] = (attn_layer){pool, s, n_head, H, d, 1.0f / sqrtf((float)d), NULL};
        /* most queries see everything; some stop inside the prefix (masking inside shared pages) */
        int32_t qp = j % 5 == 1 ? n_prefix / 2 + j : n_prefix + own;
        jobs[j] = (attn_decode_job){&L[j], q + (long)j * n_head * d, qp, o1 + (long)j * n_head * d, l1 + (long)j * n_head,
                                    j == NJ - 2 ? &stats : NULL};
    }
    attn_scratch *scr = attn_scratch_create();
    CHECK(attn_decode_multi(tp, scr, jobs, NJ) == 0);
    for (int j = 0; j < NJ; j++) jobs[j].out = o2 + (long)j * n_head * d, jobs[j].lse = l2 + (long)j * n_head;
    int shared = attn_decode_shared(tp, scr, jobs, NJ, rest);
    CHECKF(shared == NJ - 2, "%d of %d jobs shared", shared, NJ - 2);
    bool same = !memcmp(o1, o2, sizeof(float) * (size_t)NJ * n_head * d) && !memcmp(l1, l2, sizeof(float) * (size_t)NJ * n_head);
    double worst = 0;
    for (long i = 0; i < (long)NJ * n_head * d; i++) worst = fmax(worst, fabs((double)o1[i] - o2[i]));
    CHECKF(same, "kernel, dtype %d, prefix %d, P %d, heads %d/%d, %d threads, %s: shared differs from multi by %.3g",
           (int)dtype, n_prefix, P, n_head, n_head_kv, tp_n_threads(tp), attn_kernels_get()->name, worst);
    attn_scratch_free(scr);
    for (long i = 0; i < (long)NJ * H; i++) kv_stream_free(pool, &st[i]);
    for (int h = 0; h < H; h++) kv_stream_free(pool, &root[h]);
    CHECK(kv_pool_pages_used(pool) == 0);
    kv_pool_free(pool);
    free(k), free(v), free(pos), free(root), free(st), free(L), free(jobs), free(rest), free(q), free(o1), free(o2), free(l1),
        free(l2);
}

static void kernel_level(void) {
    int cases = 0;
    for (int scalar = 0; scalar <= 1; scalar++) {
        attn_force_scalar(scalar);
        for (int nth = 1; nth <= 3; nth++) {
            threadpool *tp = tp_create(nth);
            kernel_case(tp, LT_F32, 200, 8, 8, 2, 32);     /* G 4: 40 forks x 4 = 160 rows, 3 blocks */
            kernel_case(tp, LT_F16, 1500, 16, 4, 2, 64);   /* long: several chunks with 2-3 threads */
            kernel_case(tp, LT_Q8_0, 700, 32, 8, 8, 32);   /* no GQA */
            kernel_case(tp, LT_F32, 37, 4, 6, 3, 16);      /* short pages, a partly filled one shared */
            cases += 4;
            tp_free(tp);
        }
    }
    attn_force_scalar(false);
    printf("kernel level: %d cases, attn_decode_shared == attn_decode_multi bit for bit\n", cases);
}

int main(void) {
    kernel_level();
    allocation();
    on_equals_off("stories260K.gguf", 0);
    on_equals_off("synthetic/randllama-d256-L2.F16.gguf", 0);
    on_equals_off("stories260K.gguf", 700);
    on_equals_off("synthetic/randllama-d256-L2.F16.gguf", 700);
    return tu_finish("test_hydragen");
}
