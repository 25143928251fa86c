/* The dispatched dequantisers, dot products and tile kernels of the 32-element block
 * types and the float types (AVX-512 ones at the best level, AVX2 or scalar
 * under LETHE_SIMD) against the scalar reference, over odd shapes: row
 * lengths of 1..128 blocks (odd block counts), every nr <= rows, nc <= cols
 * and nr <= rows1 for a single token, called the way lt_matmul calls them.
 * The float tiles must also be batch invariant: a (row, token) product is the
 * same bits whatever the tile shape. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "tensor/types.h"
#include "testutil.h"
#include "util/fp16.h"

/* The kernels under test (overridable, to test another table). */
#ifndef KT_TRAITS
#define KT_TRAITS(t) lt_type_traits(t)
#define KT_TILE(t) lt_type_tile(t)
#endif

#define MAX_N 4096
#define MAX_R 11 /* weight rows */
#define MAX_T 7  /* tokens */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd_f(void) { return (float)((double)rnd_u32() / 2147483648.0 - 1.0); }

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

/* A random weight row: random bytes with sane half scales (and negative
 * mins for the _1 types); float types through their quantiser. */
static void random_row(lt_type t, int64_t n, uint8_t *row) {
    const lt_traits *tr = lt_type_traits_scalar(t);
    if (tr->block_size == 1) {
        static float tmp[MAX_N];
        for (int64_t i = 0; i < n; i++) tmp[i] = rnd_f();
        tr->from_float(tmp, row, n);
        return;
    }
    const size_t rb = lt_row_bytes(t, n);
    for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)rnd_u32();
    /* Q8_0 weights keep -128 sometimes: the kernels must take it */
    for (int64_t b = 0; b < n / 32; b++) {
        uint8_t *blk = row + (size_t)b * tr->block_bytes;
        put16(blk, fp32_to_fp16(0.002f + 0.01f * (float)(rnd_u32() % 100) / 100.0f));
        if (t == LT_Q4_1 || t == LT_Q5_1) put16(blk + 2, fp32_to_fp16(-0.001f - 0.01f * (float)(rnd_u32() % 100) / 100.0f));
    }
}

/* sum |w_i a_i| of the dequantised operands: the scale of the rounding error. */
static double magnitude(lt_type t, int64_t n, const void *w, const void *act) {
    static float wf[MAX_N], af[MAX_N];
    const lt_traits *tr = lt_type_traits_scalar(t);
    const lt_traits *vt = lt_type_traits_scalar(tr->vec_dot_type);
    tr->to_float(w, wf, n);
    vt->to_float(act, af, n);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += fabs((double)wf[i] * af[i]);
    return m;
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void check_type(lt_type t, int64_t n) {
    static uint8_t W[MAX_R * MAX_N * 4], A[MAX_T * MAX_N * 4];
    static float x[MAX_N], tab[2 * (MAX_N / 32) * MAX_T + 4], tab1[MAX_T][2 * (MAX_N / 32) + 4];
    static float want[MAX_T][MAX_R], out[MAX_T * MAX_R];
    static double mag[MAX_T][MAX_R];
    const lt_traits *sc = lt_type_traits_scalar(t), *tr = KT_TRAITS(t);
    const lt_traits *vs = lt_type_traits_scalar(sc->vec_dot_type);
    const lt_tile *tl = KT_TILE(t);
    const size_t wrb = lt_row_bytes(t, n), arb = lt_row_bytes(sc->vec_dot_type, n);
    const int64_t nb = vs->block_size > 1 ? n / vs->block_size : 0;
    for (int r = 0; r < MAX_R; r++) random_row(t, n, W + r * wrb);
    for (int c = 0; c < MAX_T; c++) {
        for (int64_t i = 0; i < n; i++) x[i] = rnd_f() * (c == 3 ? 50.0f : 1.0f);
        vs->from_float(x, A + c * arb, n);
        if (nb) {
            lt_act_tables(sc->vec_dot_type, A + c * arb, 0, nb, tab + c, tab + nb * MAX_T + c, MAX_T);
            lt_act_tables(sc->vec_dot_type, A + c * arb, 0, nb, tab1[c], tab1[c] + nb, 1);
        }
    }
    for (int c = 0; c < MAX_T; c++)
        for (int r = 0; r < MAX_R; r++) {
            want[c][r] = sc->vec_dot(n, W + r * wrb, A + c * arb);
            mag[c][r] = magnitude(t, n, W + r * wrb, A + c * arb);
        }
    /* to_float: the same bits as the scalar dequantiser */
    static float f_sc[MAX_N], f_tr[MAX_N];
    sc->to_float(W + wrb, f_sc, n);
    tr->to_float(W + wrb, f_tr, n);
    CHECKF(memcmp(f_sc, f_tr, sizeof(float) * (size_t)n) == 0, "%s n=%lld to_float", lt_type_name(t), (long long)n);
    /* vec_dot */
    int bad = 0;
    for (int c = 0; c < MAX_T; c++)
        for (int r = 0; r < MAX_R; r++)
            bad += !close_to(tr->vec_dot(n, W + r * wrb, A + c * arb), want[c][r], 1e-5 * mag[c][r] + 1e-30);
    CHECKF(bad == 0, "%s n=%lld vec_dot: %d of %d wrong", lt_type_name(t), (long long)n, bad, MAX_T * MAX_R);
    if (!tl->fn) return;
    /* a single token: nr <= rows1 rows per call, as lt_matmul's decode */
    bad = 0;
    for (int nr = 1; nr <= tl->rows1 && nr <= MAX_R; nr++)
        for (int c = 0; c < MAX_T; c++) {
            for (int r = 0; r < nr; r++) out[r] = NAN;
            const int r0 = (nr * 3 + c) % (MAX_R - nr + 1); /* any row offset */
            tl->fn(n, W + r0 * wrb, wrb, A + c * arb, 0, tl->aux ? tab1[c] : NULL, 1, out, 1, nr, 1);
            for (int r = 0; r < nr; r++) {
                if (close_to(out[r], want[c][r0 + r], 1e-5 * mag[c][r0 + r] + 1e-30)) continue;
                if (bad++ < 3)
                    fprintf(stderr, "  %s n=%lld decode nr=%d row %d tok %d: %.9g vs %.9g\n", lt_type_name(t),
                            (long long)n, nr, r0 + r, c, out[r], want[c][r0 + r]);
            }
        }
    CHECKF(bad == 0, "%s n=%lld single-token tiles: %d wrong", lt_type_name(t), (long long)n, bad);
    /* a batch: every nr x nc the walk can hand over, at an offset token */
    bad = 0;
    const size_t ldc = MAX_R + 2;
    for (int nr = 1; nr <= tl->rows && nr <= MAX_R; nr++)
        for (int nc = 1; nc <= tl->cols && nc < MAX_T; nc++) {
            const int r0 = (nr + nc) % (MAX_R - nr + 1), c0 = (nr * 2 + nc) % (MAX_T - nc + 1);
            for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) out[i] = NAN;
            tl->fn(n, W + r0 * wrb, wrb, A + c0 * arb, arb, tl->aux ? tab + c0 : NULL, MAX_T, out, ldc, nr, nc);
            for (int c = 0; c < nc; c++)
                for (int r = 0; r < nr; r++) {
                    const float got = out[c * ldc + r], w = want[c0 + c][r0 + r];
                    if (close_to(got, w, 1e-5 * mag[c0 + c][r0 + r] + 1e-30)) continue;
                    if (bad++ < 3)
                        fprintf(stderr, "  %s n=%lld tile %dx%d row %d tok %d: %.9g vs %.9g\n", lt_type_name(t),
                                (long long)n, nr, nc, r0 + r, c0 + c, got, w);
                }
        }
    CHECKF(bad == 0, "%s n=%lld batch tiles: %d wrong", lt_type_name(t), (long long)n, bad);
    /* float types: the same bits from a single-token call (rows1 rows) and
     * full tiles (rows rows each) */
    if (sc->block_size == 1 && tl->rows1 <= MAX_R && tl->cols <= MAX_T) {
        static float one[MAX_R], full[MAX_T * MAX_R];
        const int n1 = tl->rows1;
        for (int r0 = 0; r0 < n1; r0 += tl->rows) {
            const int nr = n1 - r0 < tl->rows ? n1 - r0 : tl->rows;
            tl->fn(n, W + (size_t)r0 * wrb, wrb, A, arb, NULL, 0, full + r0, (size_t)n1, nr, tl->cols);
        }
        int diff = 0;
        for (int c = 0; c < tl->cols; c++) {
            tl->fn(n, W, wrb, A + c * arb, 0, NULL, 0, one, 1, n1, 1);
            for (int r = 0; r < n1; r++) diff += memcmp(&one[r], &full[c * n1 + r], sizeof(float)) != 0;
        }
        CHECKF(diff == 0, "%s n=%lld: single-token and batch tiles differ in %d results", lt_type_name(t),
               (long long)n, diff);
    }
}

int main(void) {
    static const lt_type block_types[] = {LT_Q4_0, LT_Q8_0, LT_Q4_1, LT_Q5_0, LT_Q5_1, LT_IQ4_NL};
    static const int64_t block_lens[] = {32, 64, 96, 160, 288, 512, 800, 2048, 4096};
    static const lt_type float_types[] = {LT_F32, LT_F16, LT_BF16};
    static const int64_t float_lens[] = {1, 7, 15, 16, 17, 33, 100, 256, 1000, 4096};
    printf("simd: %s\n", lt_simd_name());
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++)
        for (size_t k = 0; k < sizeof block_lens / sizeof block_lens[0]; k++) check_type(block_types[t], block_lens[k]);
    for (size_t t = 0; t < sizeof float_types / sizeof float_types[0]; t++)
        for (size_t k = 0; k < sizeof float_lens / sizeof float_lens[0]; k++) check_type(float_types[t], float_lens[k]);
    return tu_finish("test_kernels_avx512");
}
