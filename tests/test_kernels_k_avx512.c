/* The k-quant kernels (vec_dot and the lt_matmul tiles of Q2_K..Q6_K and
 * IQ4_XS) against the scalar reference, over odd shapes: row lengths of 256
 * to 4096, every nr <= rows and nc <= cols of the tile entry, single-token
 * calls of up to rows1 rows, strides that are not the tile's, and blocks
 * that push the integer sums to their extremes.
 *
 * Part 1 checks the dispatched kernels (the AVX-512 ones where the CPU has
 * them, else AVX2 or scalar). Part 2 checks src/tensor/quant_k_avx512.c
 * compiled here against SIMDe's portable AVX-512 intrinsics, so the AVX-512
 * code is verified even on a CPU without AVX-512; it is left out, with a
 * message, where SIMDe's headers are not installed (libsimde-dev). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/quant_impl.h"
#include "tensor/types.h"
#include "testutil.h"
#include "util/fp16.h"

#if defined(__has_include)
#if __has_include(<simde/x86/avx512.h>)
#define HAVE_EMULATION 1
#endif
#endif

#ifdef HAVE_EMULATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#define LT_K512_EMULATE 1
#include "tensor/quant_k_avx512.c"
#pragma GCC diagnostic pop
#endif

static uint32_t rng = 0x9e3779b9u;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}
static float rnd_f(void) { return (float)((double)rnd_u32() / 2147483648.0 - 1.0); }

static const lt_type k_types[] = {LT_Q4_K, LT_Q5_K, LT_Q6_K, LT_Q2_K, LT_Q3_K, LT_IQ4_XS};
#define N_K_TYPES (int)(sizeof k_types / sizeof k_types[0])

#define MAX_N 4096
#define N_ROWS 11 /* not a multiple of any tile's rows */
#define N_TOK 10

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* One random super-block (random bytes are valid quants and scales); its
 * half-precision scales small, or, with extreme set, every quant and scale
 * at its largest magnitude. */
static void random_block(lt_type t, uint8_t *b, int extreme) {
    const size_t bytes = lt_type_traits_scalar(t)->block_bytes;
    for (size_t i = 0; i < bytes; i++) b[i] = extreme ? 0xFF : (uint8_t)rnd_u32();
    const uint16_t d = fp32_to_fp16(0.002f + 0.01f * (float)(rnd_u32() % 100) / 100.0f);
    const uint16_t dmin = fp32_to_fp16(0.001f + 0.01f * (float)(rnd_u32() % 100) / 100.0f);
    switch (t) {
    case LT_Q2_K: put16(b + 80, d); put16(b + 82, dmin); break;
    case LT_Q3_K: put16(b + 108, d); break;
    case LT_Q4_K: case LT_Q5_K: put16(b, d); put16(b + 2, dmin); break;
    case LT_Q6_K: put16(b + 208, d); break;
    case LT_IQ4_XS:
        put16(b, d);
        if (extreme) b[2] = b[3] = 0; /* scales_h: scale -32, the largest magnitude */
        break;
    default: break;
    }
}

/* Activation rows as Q8_K; with extreme set all of one sign and equal, so
 * every quant is -127. */
static void random_act(int64_t n, uint8_t *act, int extreme) {
    static float x[MAX_N];
    for (int64_t i = 0; i < n; i++) x[i] = extreme ? 3.0f : rnd_f() * (rnd_u32() % 4 == 0 ? 50.0f : 1.0f);
    lt_type_traits_scalar(LT_Q8_K)->from_float(x, act, n);
}

/* sum |w_i a_i| of the dequantised row and activations: the error scale */
static double magnitude(lt_type t, int64_t n, const void *w, const void *act) {
    static float wf[MAX_N], af[MAX_N];
    lt_type_traits_scalar(t)->to_float(w, wf, n);
    lt_type_traits_scalar(LT_Q8_K)->to_float(act, af, n);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += fabs((double)wf[i] * af[i]);
    return m;
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

/* Checks traits[t].vec_dot and tiles[t] against the scalar vec_dot. */
static void check_type(const char *label, lt_type t, const lt_traits *traits, const lt_tile *tiles) {
    static const int64_t lens[] = {256, 512, 768, 1280, 4096};
    static uint8_t W[N_ROWS * (MAX_N / 256) * 210], A[N_TOK * (MAX_N / 256) * 292];
    static float ref[N_TOK][N_ROWS], out[N_TOK * N_ROWS + 8];
    static double mag[N_TOK][N_ROWS];
    const lt_tile tl = tiles[t];
    const lt_traits *sc = lt_type_traits_scalar(t);
    CHECKF(traits[t].vec_dot != NULL, "%s %s: a vec_dot", label, lt_type_name(t));
    if (!traits[t].vec_dot) return;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        const size_t wrb = lt_row_bytes(t, n), arb = lt_row_bytes(LT_Q8_K, n);
        for (int extreme = 0; extreme < 2; extreme++) {
            for (int r = 0; r < N_ROWS; r++)
                for (int64_t b = 0; b < n / QK_K; b++)
                    random_block(t, W + r * wrb + (size_t)b * sc->block_bytes, extreme && r % 2 == 0);
            for (int c = 0; c < N_TOK; c++) random_act(n, A + c * arb, extreme && c % 2 == 0);
            for (int c = 0; c < N_TOK; c++)
                for (int r = 0; r < N_ROWS; r++) {
                    ref[c][r] = sc->vec_dot(n, W + r * wrb, A + c * arb);
                    mag[c][r] = magnitude(t, n, W + r * wrb, A + c * arb);
                }
            int bad = 0;
            for (int c = 0; c < N_TOK; c++)
                for (int r = 0; r < N_ROWS; r++) {
                    const float got = traits[t].vec_dot(n, W + r * wrb, A + c * arb);
                    if (!close_to(got, ref[c][r], 1e-5 * mag[c][r] + 1e-30) && bad++ < 3)
                        fprintf(stderr, "  %s %s n=%lld row %d tok %d: vec_dot %.9g, scalar %.9g\n", label,
                                lt_type_name(t), (long long)n, r, c, got, ref[c][r]);
                }
            CHECKF(bad == 0, "%s %s n=%lld extreme=%d: %d vec_dot results off", label, lt_type_name(t), (long long)n,
                   extreme, bad);
            if (!tl.fn) continue;
            CHECKF(tl.rows >= 1 && tl.cols >= 1 && tl.rows1 >= 1 && tl.rows <= N_ROWS && tl.cols <= N_TOK &&
                       tl.rows1 <= N_ROWS && !tl.aux,
                   "%s %s: tile %dx%d rows1 %d", label, lt_type_name(t), tl.rows, tl.cols, tl.rows1);
            if (tl.rows > N_ROWS || tl.cols > N_TOK || tl.rows1 > N_ROWS || tl.aux) continue;
            /* every nr x nc, at an offset, into an output laid out as
             * lt_matmul's (ldc = the row count); untouched cells stay NaN */
            bad = 0;
            for (int nr = 1; nr <= tl.rows; nr++)
                for (int nc = 1; nc <= tl.cols; nc++) {
                    const int r0 = (nr + nc) % (N_ROWS - nr + 1), c0 = (nr * nc) % (N_TOK - nc + 1);
                    for (int i = 0; i < N_TOK * N_ROWS; i++) out[i] = NAN;
                    tl.fn(n, W + r0 * wrb, wrb, A + c0 * arb, arb, NULL, 0, out + c0 * N_ROWS + r0, N_ROWS, nr, nc);
                    for (int c = 0; c < N_TOK; c++)
                        for (int r = 0; r < N_ROWS; r++) {
                            const float got = out[c * N_ROWS + r];
                            const int inside = r >= r0 && r < r0 + nr && c >= c0 && c < c0 + nc;
                            const int ok = inside ? close_to(got, ref[c][r], 1e-5 * mag[c][r] + 1e-30) : isnan(got);
                            if (!ok && bad++ < 3)
                                fprintf(stderr, "  %s %s n=%lld tile %dx%d at %d,%d: cell %d,%d = %.9g, want %.9g\n",
                                        label, lt_type_name(t), (long long)n, nr, nc, r0, c0, r, c, got,
                                        inside ? ref[c][r] : NAN);
                        }
                }
            CHECKF(bad == 0, "%s %s n=%lld extreme=%d: %d tile cells off", label, lt_type_name(t), (long long)n,
                   extreme, bad);
            /* a single token as lt_matmul calls it: nc = 1, by = 0, ldc = 1 */
            bad = 0;
            for (int c = 0; c < N_TOK; c++)
                for (int nr = 1; nr <= tl.rows1; nr++) {
                    const int r0 = (c + nr) % (N_ROWS - nr + 1);
                    for (int i = 0; i < N_ROWS + 1; i++) out[i] = NAN;
                    tl.fn(n, W + r0 * wrb, wrb, A + c * arb, 0, NULL, 0, out + r0, 1, nr, 1);
                    for (int r = 0; r < N_ROWS + 1; r++) {
                        const int inside = r >= r0 && r < r0 + nr;
                        const int ok = inside ? close_to(out[r], ref[c][r], 1e-5 * mag[c][r] + 1e-30) : isnan(out[r]);
                        if (!ok && bad++ < 3)
                            fprintf(stderr, "  %s %s n=%lld one token, %d rows at %d: row %d = %.9g\n", label,
                                    lt_type_name(t), (long long)n, nr, r0, r, out[r]);
                    }
                }
            CHECKF(bad == 0, "%s %s n=%lld extreme=%d: %d single-token results off", label, lt_type_name(t),
                   (long long)n, extreme, bad);
        }
    }
}

static void check_all(const char *label, const lt_traits *traits, const lt_tile *tiles) {
    for (int i = 0; i < N_K_TYPES; i++) check_type(label, k_types[i], traits, tiles);
    printf("%s: vec_dot and tiles of Q4_K Q5_K Q6_K Q2_K Q3_K IQ4_XS checked (%d failures so far)\n", label, tu_failures);
}

/* The dispatched tables, copied out of the library's. */
static void dispatched(lt_traits *traits, lt_tile *tiles) {
    for (int t = 0; t < LT_TYPE_COUNT; t++) {
        traits[t] = *lt_type_traits((lt_type)t);
        tiles[t] = *lt_type_tile((lt_type)t);
    }
}

int main(void) {
    static lt_traits traits[LT_TYPE_COUNT];
    static lt_tile tiles[LT_TYPE_COUNT];
    char label[64];
    dispatched(traits, tiles);
    snprintf(label, sizeof label, "dispatched (%s)", lt_simd_name());
    check_all(label, traits, tiles);
    /* at the AVX-512 level every k type has its own tile kernel */
    if (strcmp(lt_simd_name(), "avx512") == 0)
        for (int i = 0; i < N_K_TYPES; i++)
            CHECKF(tiles[k_types[i]].fn != NULL && tiles[k_types[i]].rows1 == 4, "avx512 tile of %s",
                   lt_type_name(k_types[i]));
#ifdef HAVE_EMULATION
    lt_kernels_k_avx512_emulated(traits, tiles);
    check_all("AVX-512 code on SIMDe", traits, tiles);
#else
    printf("AVX-512 code on SIMDe: left out (no <simde/x86/avx512.h>; libsimde-dev has it)\n");
#endif
    return tu_finish("kernels_k_avx512");
}
