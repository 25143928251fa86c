/* quant_x8_avx512.c compiled against emul512.h (see run.sh): on x8 weights
 * (Q4_0, Q8_0, Q4_K, Q6_K) its tiles must give the AVX2 x8 tiles' bits
 * exactly (the same integer sums, the same float steps per block and row),
 * and its F16 tiles the bits of their order written in scalar code
 * (tile_call.h), for single tokens and batches of 1..7 tokens, 8 to 56 rows
 * (a lone group at the end included), and for F16 also batches past one
 * call's tokens and rows past one column block. On a machine with AVX-512
 * tests/test_repack.c checks the compiled tiles the same way. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "tensor/quantize.h"
#include "tensor/repack.h"
#include "tensor/types.h"
#include "testutil.h"
#include "tile_call.h"

void em_tiles_x8_avx512(lt_tile *tiles);

static uint32_t rng = 0x1234567u;
static float rnd_f(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* ref: the scalar order (F16) or the AVX2 tile on the same x8 rows (the rest) */
static void check(const lt_tile *avx2, const lt_tile *emul, lt_type t, int rows, int cols, int n_tok) {
    const lt_type vdt = lt_type_traits(t)->vec_dot_type;
    const size_t rb = lt_row_bytes(t, cols), arb = lt_row_bytes(vdt, cols);
    const int64_t nb = cols / lt_type_traits(vdt)->block_size;
    float *wf = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)n_tok * cols);
    char *P = malloc(rb * (size_t)rows), *A = malloc(arb * (size_t)n_tok);
    float *tab = calloc((size_t)(2 * nb * n_tok + 4), sizeof(float));
    float *want = malloc(sizeof(float) * (size_t)n_tok * rows), *got = malloc(sizeof(float) * (size_t)n_tok * rows);
    const bool scalar_ref = t == LT_F16;
    char *R = NULL; /* F16: the rows as they were */
    if (!CHECK(wf && x && P && A && tab && want && got)) goto done;
    for (int i = 0; i < rows * cols; i++) wf[i] = rnd_f() * (i % 97 == 0 ? 4.0f : 1.0f);
    if (!CHECK(lt_quantize_rows(t, wf, P, rows, cols) > 0)) goto done;
    if (scalar_ref) {
        if (!CHECK((R = malloc(rb * (size_t)rows)) != NULL)) goto done;
        memcpy(R, P, rb * (size_t)rows);
    }
    if (!CHECK(lt_repack_x8(t, P, rows, cols) == 0)) goto done;
    if (t == LT_Q8_0) /* a weight of -128 in every group: |w| is then 128 as a byte */
        for (int g = 0; g < rows / 8; g++) P[(size_t)g * 8 * rb + 16 + 5] = (char)-128;
    for (int c = 0; c < n_tok; c++)
        for (int i = 0; i < cols; i++) x[(size_t)c * cols + i] = rnd_f() * (c == 2 ? 100.0f : 1.0f);
    tile_acts(vdt, x, cols, n_tok, avx2[t].aux, A, tab);
    if (scalar_ref) f16_x8_reference((const uint16_t *)R, rows, cols, x, n_tok, want);
    else tile_run(&avx2[t], cols, P, rb, rows, A, arb, tab, n_tok, want);
    tile_run(&emul[t], cols, P, rb, rows, A, arb, tab, n_tok, got);
    CHECKF(memcmp(want, got, sizeof(float) * (size_t)n_tok * rows) == 0,
           "%s %dx%d, %d tokens: emulated AVX-512 x8 tiles differ from their reference", lt_type_name(t), rows, cols, n_tok);
done:
    free(R);
    free(wf), free(x), free(P), free(A), free(tab), free(want), free(got);
}

int main(void) {
    static lt_tile avx2[LT_TYPE_COUNT], emul[LT_TYPE_COUNT];
    lt_tiles_x8_avx2(avx2);
    memcpy(emul, avx2, sizeof emul);
    em_tiles_x8_avx512(emul);
    static const lt_type types[] = {LT_Q4_0, LT_Q8_0, LT_Q4_K, LT_Q6_K, LT_F16};
    static const int rows[] = {8, 16, 24, 40, 56};
    static const int toks[] = {1, 2, 3, 4, 5, 7};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        CHECKF(emul[types[ti]].fn != avx2[types[ti]].fn, "%s: no AVX-512 x8 tile", lt_type_name(types[ti]));
        const int cols = lt_type_traits(types[ti])->block_size == 256 ? 512 : types[ti] == LT_F16 ? 112 : 96;
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) check(avx2, emul, types[ti], rows[r], cols, toks[k]);
    }
    /* F16 batches past one call's 96 tokens (and its 6-token tiles), rows of
     * several 256-column blocks and a part block */
    check(avx2, emul, LT_F16, 24, 784, 101);
    check(avx2, emul, LT_F16, 16, 528, 13);
    return tu_finish("x8 tiles (emulated AVX-512 vs AVX2 / F16's scalar order)");
}
