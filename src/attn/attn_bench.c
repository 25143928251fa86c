/* `lethe bench attn`: time per decode step and per prefill chunk, tiled
 * (FlashAttention-2 prefill, Flash-Decoding split-KV decode) versus the
 * naive kernel, with peak scratch bytes, at contexts 1K..64K, on a KV pool
 * of the given type (--kv-type, F16 by default as in the engine). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "attn/attn_kernels.h"
#include "tensor/cpu.h"
#include "util/error.h"

#define BENCH_HEADS 32
#define BENCH_HEADS_KV 8 /* the default: GQA 4, as Llama 3 */
#define BENCH_PAGE 32
#define BENCH_CHUNK 256                          /* prefill queries */
#define BENCH_FILL 256                           /* slots appended per stream in turn */
#define NAIVE_SCRATCH_LIMIT ((size_t)1 << 30)    /* run naive only below this */
#define NAIVE_TIME_LIMIT 4.0                     /* ... and when expected under this (s) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t lcg = 12345u;
static float brand(void) {
    lcg = lcg * 1664525u + 1013904223u;
    return (float)(lcg >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

typedef struct {
    kv_pool *pool;
    kv_stream streams[BENCH_HEADS];
    int n_kv; /* KV heads */
    attn_layer L;
    float *q_dec, *q_pre, *o;
    int32_t q_pos[BENCH_CHUNK];
} bench_setup;

static void setup_free(bench_setup *b) {
    for (int g = 0; g < b->n_kv; g++) kv_stream_free(b->pool, &b->streams[g]);
    kv_pool_free(b->pool);
    free(b->q_dec), free(b->q_pre), free(b->o);
}

static int setup(bench_setup *b, int ctx, int d, lt_type kv_dtype, int n_kv, char *err) {
    memset(b, 0, sizeof *b);
    b->n_kv = n_kv;
    kv_pool_params pp = {.page_slots = BENCH_PAGE, .head_dim = d, .dtype = kv_dtype,
                         .n_pages = (size_t)n_kv * ((size_t)ctx / BENCH_PAGE + 1)};
    b->pool = kv_pool_create(&pp, err);
    float *k = malloc((size_t)BENCH_FILL * d * sizeof *k), *v = malloc((size_t)BENCH_FILL * d * sizeof *v);
    int32_t *pos = malloc((size_t)BENCH_FILL * sizeof *pos);
    b->q_dec = malloc((size_t)BENCH_HEADS * d * sizeof(float));
    b->q_pre = malloc((size_t)BENCH_CHUNK * BENCH_HEADS * d * sizeof(float));
    b->o = malloc((size_t)BENCH_CHUNK * BENCH_HEADS * d * sizeof(float));
    int ok = b->pool && k && v && pos && b->q_dec && b->q_pre && b->o;
    for (int g = 0; g < n_kv; g++) kv_stream_init(&b->streams[g]);
    /* Streams grow side by side, BENCH_FILL slots at a time, as a model's
     * chunked prefill lays them out: a stream's pages are not adjacent. */
    for (int at = 0; at < ctx && ok; at += BENCH_FILL)
        for (int g = 0; g < n_kv && ok; g++) {
            int n = ctx - at < BENCH_FILL ? ctx - at : BENCH_FILL;
            for (long i = 0; i < (long)n * d; i++) k[i] = brand(), v[i] = brand();
            for (int i = 0; i < n; i++) pos[i] = at + i;
            ok = kv_stream_append(b->pool, &b->streams[g], k, v, d, d, pos, n) == LETHE_OK;
        }
    free(k), free(v), free(pos);
    if (!ok) {
        if (b->pool) snprintf(err, LETHE_ERR_MAX, "out of memory for a %d-slot context", ctx);
        setup_free(b);
        return 0;
    }
    for (long i = 0; i < (long)BENCH_HEADS * d; i++) b->q_dec[i] = brand();
    for (long i = 0; i < (long)BENCH_CHUNK * BENCH_HEADS * d; i++) b->q_pre[i] = brand();
    for (int t = 0; t < BENCH_CHUNK; t++) b->q_pos[t] = ctx - BENCH_CHUNK + t; /* the last slots */
    b->L = (attn_layer){b->pool, b->streams, BENCH_HEADS, n_kv, d, 1.0f / sqrtf((float)d), NULL};
    return 1;
}

typedef struct {
    double ms;       /* per call, NAN when not run */
    size_t scratch;  /* peak bytes */
} bench_result;

enum { K_PRE, K_NAIVE_DEC, K_NAIVE_PRE };

/* Runs one kernel reps times (after one warm-up call) and returns ms per call. */
static bench_result run(bench_setup *b, int kind, threadpool *tp, int reps) {
    bench_result r = {NAN, 0};
    attn_scratch *scr = attn_scratch_create();
    if (!scr) return r;
    const int ctx = b->streams[0].n;
    int32_t qp = ctx - 1;
    double best = INFINITY;
    for (int i = 0; i <= reps; i++) {
        double t0 = now_s();
        int rc = 0;
        switch (kind) {
        case K_PRE: rc = attn_prefill(tp, scr, &b->L, b->q_pre, b->q_pos, BENCH_CHUNK, b->o, NULL); break;
        case K_NAIVE_DEC: rc = attn_naive(&b->L, b->q_dec, &qp, 1, b->o); break;
        default: rc = attn_naive(&b->L, b->q_pre, b->q_pos, BENCH_CHUNK, b->o); break;
        }
        double dt = now_s() - t0;
        if (rc != 0) {
            attn_scratch_free(scr);
            return r;
        }
        if (i > 0 || reps == 0) best = dt < best ? dt : best; /* the first call warms up */
    }
    r.ms = best * 1e3;
    r.scratch = kind == K_NAIVE_DEC ? attn_naive_scratch_bytes(&b->L, 1)
                : kind == K_NAIVE_PRE ? attn_naive_scratch_bytes(&b->L, BENCH_CHUNK)
                                      : attn_scratch_peak_bytes(scr);
    attn_scratch_free(scr);
    return r;
}

static void noop_task(void *ctx, int ith, int nth) { (void)ctx, (void)ith, (void)nth; }

/* Decode on the pool's threads and on one thread, alternating repeats so
 * both see the same machine; the pool is woken (untimed) before its repeats,
 * as the matrix products before attention leave it in a real step. */
static void run_decode_pair(bench_setup *b, threadpool *tp, int reps, bench_result *multi, bench_result *single) {
    attn_scratch *scr[2] = {attn_scratch_create(), attn_scratch_create()};
    double best[2] = {INFINITY, INFINITY};
    int32_t qp = b->streams[0].n - 1;
    int ok = scr[0] && scr[1];
    for (int i = 0; i <= reps && ok; i++)
        for (int w = 0; w < 2 && ok; w++) {
            threadpool *use = w == 0 ? tp : NULL;
            if (use) tp_run(use, noop_task, NULL);
            double t0 = now_s();
            ok = attn_decode(use, scr[w], &b->L, b->q_dec, qp, b->o, NULL) == 0;
            double dt = now_s() - t0;
            if (i > 0 && dt < best[w]) best[w] = dt; /* the first round warms up */
        }
    multi->ms = ok ? best[0] * 1e3 : NAN;
    single->ms = ok ? best[1] * 1e3 : NAN;
    multi->scratch = attn_scratch_peak_bytes(scr[0]);
    single->scratch = attn_scratch_peak_bytes(scr[1]);
    attn_scratch_free(scr[0]);
    attn_scratch_free(scr[1]);
}

static void fmt_ms(char *buf, size_t n, double ms) {
    if (isnan(ms)) snprintf(buf, n, "-");
    else if (ms < 10) snprintf(buf, n, "%.3f", ms);
    else snprintf(buf, n, "%.1f", ms);
}

static void fmt_bytes(char *buf, size_t n, size_t b) {
    if (b >= (size_t)1 << 20) snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
    else snprintf(buf, n, "%.1f KiB", (double)b / 1024);
}

void attn_bench(FILE *out, int n_threads, lt_type kv_dtype, int n_kv) {
    if (n_kv < 1 || n_kv > BENCH_HEADS || BENCH_HEADS % n_kv) n_kv = BENCH_HEADS_KV; /* 0: the default */
    threadpool *tp = tp_create(n_threads);
    if (!tp) {
        fprintf(out, "bench attn: cannot create the thread pool\n");
        return;
    }
    const int nth = tp_n_threads(tp);
    fprintf(out, "attention bench: %d query heads, %d KV heads (GQA %d), %s KV, %d-slot pages, %d thread%s, %s kernels (simd %s)\n",
            BENCH_HEADS, n_kv, BENCH_HEADS / n_kv, lt_type_name(kv_dtype), BENCH_PAGE, nth, nth == 1 ? "" : "s",
            attn_kernels_get()->name, lt_simd_path());
    fprintf(out, "decode: one query per head against the whole context (tiled on %d thread%s, and on 1: x is the\n"
                 "speed-up); prefill: a chunk of %d new queries (the last %d slots, causal) against the context.\n"
                 "Times in ms, best of the repeats; naive is single-threaded. Scratch: peak attention scratch\n"
                 "bytes (tiled: measured; naive: its score matrix).\n\n",
            nth, nth == 1 ? "" : "s", BENCH_CHUNK, BENCH_CHUNK);
    fprintf(out, "%6s %4s | %9s %9s %6s %9s | %9s %9s | %10s %10s %12s %12s\n", "ctx", "hd", "dec tiled",
            "dec 1thr", "x", "dec naive", "pre tiled", "pre naive", "scr dec", "scr pre", "scr naive dec",
            "scr naive pre");
    const int ctxs[4] = {1024, 4096, 16384, 65536};
    const int dims[2] = {64, 128};
    int skipped_time = 0;
    for (int di = 0; di < 2; di++)
        for (int ci = 0; ci < 4; ci++) {
            int ctx = ctxs[ci], d = dims[di];
            bench_setup b;
            char err[LETHE_ERR_MAX] = "";
            if (!setup(&b, ctx, d, kv_dtype, n_kv, err)) {
                fprintf(out, "%6d %4d | setup failed: %s\n", ctx, d, err);
                continue;
            }
            int dec_reps = ctx <= 4096 ? 40 : ctx <= 16384 ? 15 : 5;
            int pre_reps = ctx <= 1024 ? 3 : ctx <= 4096 ? 2 : ctx <= 16384 ? 1 : 0;
            bench_result dec, dec1;
            run_decode_pair(&b, tp, dec_reps, &dec, &dec1);
            bench_result pre = run(&b, K_PRE, tp, pre_reps);
            /* Naive: only where its scratch fits and the expected time is short
             * (estimated from its decode time: prefill does BENCH_CHUNK x the work). */
            bench_result ndec = {NAN, attn_naive_scratch_bytes(&b.L, 1)};
            bench_result npre = {NAN, attn_naive_scratch_bytes(&b.L, BENCH_CHUNK)};
            if (ndec.scratch <= NAIVE_SCRATCH_LIMIT) ndec = run(&b, K_NAIVE_DEC, NULL, ctx <= 4096 ? 3 : 1);
            if (npre.scratch <= NAIVE_SCRATCH_LIMIT && !isnan(ndec.ms) &&
                ndec.ms * BENCH_CHUNK * 1e-3 <= NAIVE_TIME_LIMIT)
                npre = run(&b, K_NAIVE_PRE, NULL, 0);
            else
                skipped_time += npre.scratch <= NAIVE_SCRATCH_LIMIT;
            char s[10][32];
            fmt_ms(s[0], 32, dec.ms);
            fmt_ms(s[1], 32, dec1.ms);
            fmt_ms(s[2], 32, ndec.ms);
            fmt_ms(s[3], 32, pre.ms);
            fmt_ms(s[4], 32, npre.ms);
            fmt_bytes(s[5], 32, dec.scratch);
            fmt_bytes(s[6], 32, pre.scratch);
            fmt_bytes(s[7], 32, ndec.scratch);
            fmt_bytes(s[8], 32, npre.scratch);
            snprintf(s[9], 32, "%.2f", dec1.ms / dec.ms);
            fprintf(out, "%6d %4d | %9s %9s %6s %9s | %9s %9s | %10s %10s %12s %12s\n", ctx, d, s[0], s[1], s[9],
                    s[2], s[3], s[4], s[5], s[6], s[7], s[8]);
            fflush(out);
            setup_free(&b);
        }
    if (skipped_time)
        fprintf(out, "\n\"-\" for naive prefill: skipped, estimated over %.0f s a call (naive is single-threaded "
                     "scalar); naive runs only below %zu MiB of scratch.\n",
                NAIVE_TIME_LIMIT, NAIVE_SCRATCH_LIMIT >> 20);
    tp_free(tp);
}
