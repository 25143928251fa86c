/* Micro-benchmark of lt_matmul per weight type (`lethe bench kernels`):
 * decode-shaped (1 token) and prefill-shaped (64 tokens) products with the
 * shapes of a small model's FFN (768 x 256) and vocabulary (32000 x 256). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/repack.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t next_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Weights: quantised from random floats when lethe has a quantiser, else
 * random bytes with small half-precision scales (any bytes are valid quants). */
static void fill_weights(lt_type t, void *w, int64_t rows, int64_t cols, float *tmp, uint32_t *seed) {
    const lt_traits *tr = lt_type_traits(t);
    const size_t rb = lt_row_bytes(t, cols);
    unsigned char *p = w;
    for (int64_t r = 0; r < rows; r++) {
        if (tr->from_float) {
            for (int64_t i = 0; i < cols; i++) tmp[i] = (float)((int)(next_rand(seed) % 2001) - 1000) * 2e-5f;
            tr->from_float(tmp, p + (size_t)r * rb, cols);
        } else {
            for (size_t i = 0; i < rb; i++) p[(size_t)r * rb + i] = (unsigned char)next_rand(seed);
            /* every half in the row set to a small scale: harmless for the
             * timing, and keeps the float sums finite */
            for (size_t i = 0; i + 1 < rb; i += 2) {
                if (next_rand(seed) % 8 == 0) {
                    p[(size_t)r * rb + i] = 0x00;
                    p[(size_t)r * rb + i + 1] = 0x20;
                }
            }
        }
    }
}

/* Seconds per call: the best of several ~10 ms batches, so that a moment
 * of competition for the cores does not count. */
static double bench_one(threadpool *tp, lt_workspace *ws, lt_type t, bool x8, const void *w, int64_t rows,
                        int64_t cols, const float *x, int64_t n_tok, float *y) {
    const lt_matmul_out o = {t, w, rows, y, x8};
    if (lt_matmul_group(tp, ws, &o, 1, cols, x, n_tok) != 0) return -1.0; /* warm-up */
    double best = 1e30;
    const double start = now_s();
    do {
        int reps = 0;
        const double t0 = now_s();
        double t1 = t0;
        while (t1 - t0 < 0.01) {
            lt_matmul_group(tp, ws, &o, 1, cols, x, n_tok);
            reps++;
            t1 = now_s();
        }
        if ((t1 - t0) / reps < best) best = (t1 - t0) / reps;
    } while (now_s() - start < 0.2);
    return best;
}

void lt_matmul_bench(FILE *out, int n_threads) {
    static const lt_type types[] = {LT_F32,  LT_F16,  LT_BF16, LT_Q8_0, LT_Q4_0, LT_Q4_1, LT_Q5_0, LT_Q5_1,
                                    LT_Q2_K, LT_Q3_K, LT_Q4_K, LT_Q5_K, LT_Q6_K, LT_IQ4_NL, LT_IQ4_XS};
    static const int64_t shapes[][2] = {{768, 256}, {32000, 256}};
    static const int64_t toks[] = {1, 64};
    threadpool *tp = tp_create(n_threads);
    if (!tp) {
        fprintf(out, "bench: cannot create the thread pool\n");
        return;
    }
    const int64_t max_rows = 32000, max_cols = 256, max_tok = 64;
    void *w = malloc((size_t)max_rows * (size_t)max_cols * 4);
    float *x = malloc(sizeof(float) * (size_t)(max_tok * max_cols));
    float *y = malloc(sizeof(float) * (size_t)(max_tok * max_rows));
    float *tmp = malloc(sizeof(float) * (size_t)max_cols);
    lt_workspace ws = {0};
    if (!w || !x || !y || !tmp) {
        fprintf(out, "bench: out of memory\n");
        goto done;
    }
    uint32_t seed = 12345;
    for (int64_t i = 0; i < max_tok * max_cols; i++) x[i] = (float)((int)(next_rand(&seed) % 2001) - 1000) * 1e-3f;
    fprintf(out, "lt_matmul, %d thread(s), simd %s; GFLOP/s (2*rows*cols*tokens / time) and time per call, best of 10 ms batches\n",
            tp_n_threads(tp), lt_simd_path());
    fprintf(out, "%-8s", "type");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
            fprintf(out, "  %5lldx%-3lld tok=%-3lld     ", (long long)shapes[s][0], (long long)shapes[s][1],
                    (long long)toks[k]);
    fprintf(out, "\n");
    /* each type, then again repacked (x8, tensor/repack.h) where it can be */
    for (size_t i = 0; i < 2 * sizeof types / sizeof types[0]; i++) {
        const lt_type t = types[i % (sizeof types / sizeof types[0])];
        const bool x8 = i >= sizeof types / sizeof types[0];
        if (!lt_type_supported(t) || (x8 && !lt_x8_usable(t, shapes[0][0], shapes[0][1]))) continue;
        char name[16];
        snprintf(name, sizeof name, "%s%s", lt_type_name(t), x8 ? "x8" : "");
        fprintf(out, "%-8s", name);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            fill_weights(t, w, shapes[s][0], shapes[s][1], tmp, &seed);
            if (x8) lt_repack_x8(t, w, shapes[s][0], shapes[s][1]);
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                const double sec = bench_one(tp, &ws, t, x8, w, shapes[s][0], shapes[s][1], x, toks[k], y);
                const double flop = 2.0 * (double)shapes[s][0] * (double)shapes[s][1] * (double)toks[k];
                if (sec <= 0)
                    fprintf(out, "  %-24s", "failed");
                else
                    fprintf(out, "  %7.1f GF %9.1f us  ", flop / sec * 1e-9, sec * 1e6);
            }
        }
        fprintf(out, "\n");
        fflush(out);
    }
done:
    lt_workspace_free(&ws);
    free(w);
    free(x);
    free(y);
    free(tmp);
    tp_free(tp);
}
