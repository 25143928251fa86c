/* Weights in the x8 layout (tensor/repack.h): (1) repack then unpack gives
 * back the bytes; (2) lt_matmul on x8 weights equals the row-major product
 * within float reordering (the integer sums are exact; only the order of
 * the per-block float terms differs), for one token and batches that do
 * and do not fill the 4-token tiles, 8 to 56 rows (odd and even numbers of
 * groups), several column counts, on 1 and 2 threads (bit-identical to each
 * other); (3) extreme quants (Q8_0 -128, Q4_0 0 and 15, large activations)
 * stay exact in the integer part; (4) where it does not apply it says so:
 * rows not a multiple of 8, types without an x8 layout, LETHE_REPACK=0, a
 * level without x8 kernels (lt_matmul refuses x8 there); (5) a Q4_0 and a
 * Q8_0 model give the same logits loaded with and without repacking, within
 * the shared references' tolerance for quantised weights; (6) F16 on x8
 * gives its scalar order's bits (tile_call.h) for any batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/quant_impl.h"
#include "tensor/quantize.h"
#include "tensor/repack.h"
#include "testutil.h"
#include "tile_call.h"

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* At the AVX-512 level, the x8 tiles must give the AVX2 x8 tiles' bits (the
 * same integer sums and the same float steps per block, tensor/quant_x8_avx512.c):
 * the AVX2 tiles called the way lt_matmul calls them, on its activation
 * rows and tables, against y (lt_matmul's output with the dispatched tiles). */
static void check_same_as_avx2(lt_type t, const char *P, int rows, int cols, const float *x, int n_tok, const float *y) {
#if defined(__x86_64__)
    static lt_tile avx2[LT_TYPE_COUNT];
    if (!lt_simd_avx512()) return;
    lt_tiles_x8_avx2(avx2);
    const lt_tile *tl = &avx2[t];
    if (!tl->fn || lt_type_tile_x8(t)->fn == tl->fn) return;
    const lt_type vdt = lt_type_traits(t)->vec_dot_type;
    const size_t arb = lt_row_bytes(vdt, cols), rb = lt_row_bytes(t, cols);
    const int64_t nb = cols / lt_type_traits(vdt)->block_size;
    char *A = malloc(arb * (size_t)n_tok);
    float *tab = calloc((size_t)(2 * nb * n_tok + 4), sizeof(float)), *out = malloc(sizeof(float) * (size_t)n_tok * rows);
    if (!CHECK(A && tab && out)) goto done;
    tile_acts(vdt, x, cols, n_tok, tl->aux, A, tab);
    tile_run(tl, cols, P, rb, rows, A, arb, tab, n_tok, out);
    CHECKF(memcmp(out, y, sizeof(float) * (size_t)n_tok * rows) == 0, "%s %dx%d, %d tokens: AVX-512 x8 tiles differ from AVX2's",
           lt_type_name(t), rows, cols, n_tok);
done:
    free(A), free(tab), free(out);
#else
    (void)t, (void)P, (void)rows, (void)cols, (void)x, (void)n_tok, (void)y;
#endif
}

static void check_product(threadpool *tp1, threadpool *tp2, lt_type t, int rows, int cols, int n_tok, int extreme,
                          uint32_t seed) {
    const size_t rb = lt_row_bytes(t, cols), wb = rb * (size_t)rows;
    float *wf = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)n_tok * cols);
    float *ref = malloc(sizeof(float) * (size_t)n_tok * rows), *y1 = malloc(sizeof(float) * (size_t)n_tok * rows);
    float *y2 = malloc(sizeof(float) * (size_t)n_tok * rows);
    char *W = malloc(wb), *P = malloc(wb);
    lt_workspace ws = {0};
    if (!CHECK(wf && x && ref && y1 && y2 && W && P)) goto done;
    for (int i = 0; i < rows * cols; i++) {
        wf[i] = frand(&seed);
        if (extreme && i % 32 == 0) wf[i] = -1.0f; /* the block's extreme: Q8_0 -127/-128 region, Q4_0 level 0 */
        if (extreme && i % 32 == 1) wf[i] = 0.99f;
    }
    for (int i = 0; i < n_tok * cols; i++) x[i] = extreme ? (i % 2 ? 1000.0f : -1000.0f) : frand(&seed);
    if (!CHECK(lt_quantize_rows(t, wf, W, rows, cols) > 0)) goto done;
    if (extreme && t == LT_Q8_0)
        for (int r = 0; r < rows; r++) ((blk_q8_0 *)(W + (size_t)r * rb))->qs[5] = -128;
    memcpy(P, W, wb);
    CHECK(lt_repack_x8(t, P, rows, cols) == 0);
    CHECK(rows <= 8 || memcmp(P, W, wb) != 0);
    const lt_matmul_out o_row = {t, W, rows, ref, false}, o1 = {t, P, rows, y1, true}, o2 = {t, P, rows, y2, true};
    CHECK(lt_matmul_group(tp1, &ws, &o_row, 1, cols, x, n_tok) == 0);
    CHECK(lt_matmul_group(tp1, &ws, &o1, 1, cols, x, n_tok) == 0);
    CHECK(lt_matmul_group(tp2, &ws, &o2, 1, cols, x, n_tok) == 0);
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < n_tok * rows; i++) {
        /* scale of the terms: sum |w||x| bounds each partial sum */
        const int tk = i / rows, r = i % rows;
        double mag = 0;
        for (int k = 0; k < cols; k++) mag += fabs(wf[(size_t)r * cols + k] * x[(size_t)tk * cols + k]);
        const double err = fabs((double)y1[i] - ref[i]) / (mag + 1e-30);
        if (err > worst) worst = err;
        if (err > 2e-6 || !isfinite(y1[i])) bad++;
    }
    CHECKF(bad == 0, "%s %dx%d, %d tokens%s: %d outputs off (worst %.2g of sum|wx|)", lt_type_name(t), rows, cols,
           n_tok, extreme ? " (extreme)" : "", bad, worst);
    CHECKF(memcmp(y1, y2, sizeof(float) * (size_t)n_tok * rows) == 0, "%s: 1 and 2 threads differ", lt_type_name(t));
    check_same_as_avx2(t, P, rows, cols, x, n_tok, y1);
    if (t == LT_F16) { /* its tiles' order, bit for bit, whatever the batch */
        f16_x8_reference((const uint16_t *)W, rows, cols, x, n_tok, ref);
        CHECKF(memcmp(ref, y1, sizeof(float) * (size_t)n_tok * rows) == 0,
               "F16 %dx%d, %d tokens: x8 tiles differ from their scalar order", rows, cols, n_tok);
    }
    CHECK(lt_unpack_x8(t, P, rows, cols) == 0);
    CHECKF(memcmp(P, W, wb) == 0, "%s %dx%d: unpack(repack(W)) != W", lt_type_name(t), rows, cols);
done:
    lt_workspace_free(&ws);
    free(wf), free(x), free(ref), free(y1), free(y2), free(W), free(P);
}

/* Greedy logits of a short prompt, model loaded as the environment says. */
static int logits_of(const char *path, float *out, int n_vocab_max, int *n_vocab) {
    char err[256];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!CHECKF(m != NULL, "load %s: %s", path, err)) return -1;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    lethe_ctx *c = lethe_ctx_create(m, &cp, err, sizeof err);
    lethe_seq *s = c ? lethe_seq_create(c, NULL, err, sizeof err) : NULL;
    float *lg = malloc(sizeof(float) * (size_t)info.n_vocab);
    int rc = -1;
    const lethe_token ids[] = {1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203};
    if (CHECKF(s && lg, "context: %s", err) && CHECK(info.n_vocab > 17366) &&
        CHECK(lethe_seq_append(s, ids, 11, lg) == LETHE_OK)) {
        *n_vocab = info.n_vocab < n_vocab_max ? info.n_vocab : n_vocab_max;
        memcpy(out, lg, sizeof(float) * (size_t)*n_vocab);
        rc = 0;
    }
    free(lg);
    lethe_seq_free(s);
    lethe_ctx_free(c);
    lethe_model_free(m);
    return rc;
}

static void check_model(const char *rel) {
    const char *path = tu_optional_model(rel);
    if (!path) return;
    enum { MAXV = 40000 };
    float *a = malloc(sizeof(float) * MAXV), *b = malloc(sizeof(float) * MAXV);
    int na = 0, nb = 0;
    if (CHECK(a && b)) {
        setenv("LETHE_REPACK", "0", 1);
        const int ra = logits_of(path, a, MAXV, &na);
        unsetenv("LETHE_REPACK");
        const int rb = logits_of(path, b, MAXV, &nb);
        if (ra == 0 && rb == 0 && CHECK(na == nb)) {
            /* The products differ only by float reordering, but that can flip
             * the rounding of a quantised activation of the next layer (one
             * step of its block's scale): the shared references' tolerance
             * for quantised weights (max 0.05, rms 0.01) is what applies. */
            double worst = 0, ss = 0;
            for (int i = 0; i < na; i++) {
                const double d = fabs(a[i] - b[i]);
                if (d > worst) worst = d;
                ss += d * d;
            }
            const double rms = sqrt(ss / na);
            printf("%s: repacked vs row-major logits max|d| %.2e rms %.2e\n", rel, worst, rms);
            CHECKF(worst <= 0.05 && rms <= 0.01, "%s: logits with and without repacking differ by %.3g (rms %.3g)", rel,
                   worst, rms);
        }
    }
    free(a), free(b);
}

int main(void) {
    const lt_type types[] = {LT_Q4_0, LT_Q8_0, LT_Q4_K, LT_Q6_K, LT_F16}; /* F16: where the level has x8 tiles for it */
    if (!lt_type_tile_x8(LT_Q4_0)->fn) {
        /* this level has no x8 kernels: nothing is repacked, x8 is refused */
        CHECK(!lt_x8_usable(LT_Q4_0, 64, 256));
        float y[8] = {0}, x[32] = {0};
        char W[8 * 18] = {0};
        lt_workspace ws = {0};
        const lt_matmul_out o = {LT_Q4_0, W, 8, y, true};
        CHECK(lt_matmul_group(NULL, &ws, &o, 1, 32, x, 1) == -1);
        lt_workspace_free(&ws);
        check_model("synthetic/randllama-d256-L2.Q4_0.gguf");
        return tu_finish("test_repack (no x8 kernels at this level)");
    }
    threadpool *tp1 = tp_create(1), *tp2 = tp_create(2);
    if (!CHECK(tp1 && tp2)) return tu_finish("test_repack");
    static const int shapes[][2] = {{8, 256}, {16, 512}, {24, 256}, {56, 768}, {40, 1024}};
    static const int small[][2] = {{8, 32}, {16, 64}, {56, 96}}; /* 32-element types only */
    static const int toks[] = {1, 2, 3, 4, 5, 7, 9, 17};
    uint32_t seed = 7;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        if (!lt_type_tile_x8(types[ti])->fn) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
                check_product(tp1, tp2, types[ti], shapes[s][0], shapes[s][1], toks[k], 0, seed++);
        for (size_t s = 0; lt_type_traits(types[ti])->block_size == 32 && s < sizeof small / sizeof small[0]; s++)
            check_product(tp1, tp2, types[ti], small[s][0], small[s][1], 1 + (int)s * 3, 0, seed++);
        check_product(tp1, tp2, types[ti], 16, 256, 1, 1, seed++);
        check_product(tp1, tp2, types[ti], 16, 256, 6, 1, seed++);
    }
    if (lt_type_tile_x8(LT_F16)->fn) { /* past one call's 96 tokens, several 256-column blocks and a part one */
        check_product(tp1, tp2, LT_F16, 40, 784, 101, 0, seed++);
        check_product(tp1, tp2, LT_F16, 24, 528, 200, 0, seed++);
    }

    /* where x8 does not apply */
    CHECK(lt_x8_usable(LT_Q4_0, 64, 256) && lt_x8_usable(LT_Q8_0, 8, 32));
    CHECK(!lt_x8_usable(LT_Q4_0, 60, 256));
    CHECK(!lt_x8_usable(LT_Q4_0, 64, 100));
    CHECK(!lt_x8_usable(LT_Q5_K, 64, 256) && !lt_x8_usable(LT_Q4_K, 64, 128));
    CHECK(lt_x8_usable(LT_F16, 64, 256) == (lt_type_tile_x8(LT_F16)->fn != NULL) && !lt_x8_usable(LT_F16, 64, 120));
    char buf[8 * 18] = {0};
    CHECK(lt_repack_x8(LT_Q4_0, buf, 4, 32) == -1 && lt_repack_x8(LT_F16, buf, 8, 8) == -1 &&
          lt_repack_x8(LT_F32, buf, 8, 16) == -1);
    setenv("LETHE_REPACK", "0", 1);
    CHECK(!lt_x8_usable(LT_Q4_0, 64, 256));
    unsetenv("LETHE_REPACK");

    check_model("synthetic/randllama-d256-L2.Q4_0.gguf");
    check_model("synthetic/randllama-d256-L2.Q8_0.gguf");
    check_model("synthetic/randllama-d256-L2.Q4_K_M.gguf");
    check_model("synthetic/randllama-d256-L2.F16.gguf");
    tp_free(tp1);
    tp_free(tp2);
    return tu_finish("test_repack");
}
