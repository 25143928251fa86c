/* Quantised formats end to end: each random-weight synthetic model (F16 and
 * every quantised type, made by llama.cpp's quantiser) evaluates the fixed
 * 19-token prompt, and the logits at positions 15..18 are compared with
 * llama.cpp's (reference/randllama-d256-L2.<TYPE>.logits.f32) and with an
 * exact float64 pass over the same dequantised weights (.exactdeq).
 *
 * Tolerances (logits have rms ~0.32):
 *  - F16: lethe computes in F32 with F32 activations, like the exact pass:
 *    max|d| <= 1e-3 against both (README: llama.cpp is 3.7e-7 from exactdeq).
 *  - Q8_0, Q4_1, Q5_K, Q6_K: lethe quantises activations to Q8_0 / Q8_1 /
 *    Q8_K exactly as llama.cpp's plain CPU dot products do, and the logits
 *    agree to ~5e-7 (float summation order only). We demand max|d| <= 1e-4.
 *    That agreement also rests on the float summation order: a dot product
 *    3e-7 off can round one activation of the next matrix to the other
 *    int8, and on this 2-layer model one such flip moves the logits by
 *    ~0.02. The scalar and AVX2 kernels stay clear of a flip here; the
 *    AVX-512 Q4_1 kernel, which sums blocks b and b+1 in separate lanes,
 *    does not (its dots are within 4e-7 of the scalar ones, measured; the
 *    logits land 0.017 from llama.cpp's), so on that path Q4_1 is held to
 *    the bound of the next item.
 *  - Q4_0, Q5_0, Q5_1, Q4_K: lethe uses the same activation scheme, but
 *    the llama.cpp build that made the references takes other kernels for
 *    some of these types on AVX2 (repacked / tiled GEMMs), and the two land
 *    0.015-0.025 apart, the same distance each has from the exact pass. For
 *    these we hold the README's bound for an engine that quantises
 *    activations differently: max|d| <= 0.05, rms <= 0.01.
 *  - every quantised type against the exact float64 pass on the same
 *    weights: max|d| <= 0.035, rms <= 0.007 (llama.cpp itself: up to 0.0254 /
 *    0.0052; activation quantisation alone explains that much). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "tensor/cpu.h"
#include "testengine.h"
#include "testutil.h"

static const int PROMPT[19] = {1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889, 2296, 18012, 304, 1708};
#define N_VOCAB 32000

static void compare(const float *got, const float *ref, double *max_d, double *rms_d) {
    double mx = 0, ss = 0;
    for (int i = 0; i < 4 * N_VOCAB; i++) {
        double d = fabs((double)got[i] - ref[i]);
        mx = fmax(mx, d);
        ss += d * d;
    }
    *max_d = mx;
    *rms_d = sqrt(ss / (4 * N_VOCAB));
}

int main(void) {
    static const char *types[] = {"F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"};
    int found = 0;
    float *all = malloc(sizeof(float) * 19 * N_VOCAB);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        char rel[128], ref_rel[128], deq_rel[128];
        snprintf(rel, sizeof rel, "synthetic/randllama-d256-L2.%s.gguf", types[ti]);
        snprintf(ref_rel, sizeof ref_rel, "randllama-d256-L2.%s.logits.f32", types[ti]);
        snprintf(deq_rel, sizeof deq_rel, "randllama-d256-L2.%s.exactdeq.logits.f32", types[ti]);
        const char *path = tu_model_path(rel);
        if (!tu_file_exists(path)) {
            tu_skip_part("%s not found", path);
            continue;
        }
        found++;
        size_t n_ref = 0, n_deq = 0;
        float *ref = (float *)tu_read_file(tu_require_reference(ref_rel), &n_ref);
        float *deq = (float *)tu_read_file(tu_require_reference(deq_rel), &n_deq);
        CHECK(ref && deq && n_ref == 4 * N_VOCAB * sizeof(float) && n_deq == n_ref);

        lethe_ctx_params p = lethe_ctx_default_params();
        p.kv_type = LETHE_KV_F32;
        p.n_ctx = 64;
        p.n_threads = 2;
        char err[512];
        lethe_ctx *m = tu_open_ctx(path, &p, err, sizeof err);
        if (CHECKF(m != NULL, "%s: %s", rel, err) && ref && deq) {
            lethe_seq *s = lethe_seq_create(m, NULL, err, sizeof err);
            CHECK(s && lethe_seq_append_all_logits(s, PROMPT, 19, all) == LETHE_OK);
            const float *got = all + 15 * N_VOCAB;
            double mx, rms, mx_deq, rms_deq;
            compare(got, ref, &mx, &rms);
            compare(got, deq, &mx_deq, &rms_deq);
            printf("%-7s vs llama.cpp max|d| %.2e rms %.2e | vs exactdeq max|d| %.2e rms %.2e\n", types[ti], mx, rms, mx_deq, rms_deq);
            if (!strcmp(types[ti], "F16")) {
                CHECKF(mx <= 1e-3 && mx_deq <= 1e-3, "F16 logits: max|d| %.3g / %.3g > 1e-3", mx, mx_deq);
            } else {
                bool same_kernels = !strcmp(types[ti], "Q8_0") || (!strcmp(types[ti], "Q4_1") && !lt_simd_avx512()) ||
                                    !strcmp(types[ti], "Q5_K_M") || !strcmp(types[ti], "Q6_K");
                if (same_kernels) CHECKF(mx <= 1e-4, "%s vs llama.cpp: max|d| %.3g > 1e-4", types[ti], mx);
                else CHECKF(mx <= 0.05 && rms <= 0.01, "%s vs llama.cpp: max|d| %.3g rms %.3g", types[ti], mx, rms);
                CHECKF(mx_deq <= 0.035 && rms_deq <= 0.007, "%s vs exactdeq: max|d| %.3g rms %.3g", types[ti], mx_deq, rms_deq);
            }
            /* argmax at positions 16..18 (15 is a near-tie, README) */
            static const int top[3] = {18012, 31485, 1708};
            for (int r = 1; r < 4; r++) {
                const float *row = all + (size_t)(15 + r) * N_VOCAB;
                int b = 0;
                for (int i = 1; i < N_VOCAB; i++)
                    if (row[i] > row[b]) b = i;
                CHECKF(b == top[r - 1], "%s: argmax at position %d is %d, llama.cpp %d", types[ti], 15 + r, b, top[r - 1]);
            }
            lethe_seq_free(s);
            /* the same prompt with an F16 and a Q8_0 KV cache (head dim 32
             * allows Q8_0 rows): logits move by the cache's rounding only
             * (measured 0.018 / 0.026 max; llama.cpp's own F16 cache moves the
             * stories260K logits by up to 0.013): bound 0.05, and nonzero so
             * the cache type really changed. */
            for (int kvt = 1; kvt <= 2 && !strcmp(types[ti], "Q8_0"); kvt++) {
                lethe_ctx_params p2 = p;
                p2.kv_type = kvt == 1 ? LETHE_KV_F16 : LETHE_KV_Q8_0;
                lethe_ctx *m2 = tu_open_ctx(path, &p2, err, sizeof err);
                float *all2 = malloc(sizeof(float) * 19 * N_VOCAB);
                lethe_seq *s2 = m2 ? lethe_seq_create(m2, NULL, err, sizeof err) : NULL;
                if (CHECKF(s2 && lethe_seq_append_all_logits(s2, PROMPT, 19, all2) == LETHE_OK, "KV type %d: %s", kvt, err)) {
                    double mx2, rms2;
                    compare(all2 + 15 * N_VOCAB, all + 15 * N_VOCAB, &mx2, &rms2);
                    printf("Q8_0 weights, %s KV vs F32 KV: max|d| %.2e rms %.2e\n", kvt == 1 ? "F16" : "Q8_0", mx2, rms2);
                    CHECKF(mx2 <= 0.05 && mx2 > 0, "%s KV logits: max|d| %.3g", kvt == 1 ? "F16" : "Q8_0", mx2);
                }
                lethe_seq_free(s2);
                tu_close_ctx(m2);
                free(all2);
            }
        }
        tu_close_ctx(m);
        free(ref);
        free(deq);
    }
    free(all);
    if (!found) tu_skip("no synthetic models under %s", tu_model_path("synthetic"));
    return tu_finish("test_synthetic");
}
