/* Calling a matmul tile kernel directly, the way lt_matmul does, for the
 * tests that hold one tile table's bits to another's (test_repack.c,
 * avx512_emul/driver_x8.c). */
#ifndef LETHE_TEST_TILE_CALL_H
#define LETHE_TEST_TILE_CALL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/quant_impl.h"
#include "util/fp16.h"

/* n_tok activation rows x (cols floats each) as type vdt in A (rows of
 * lt_row_bytes(vdt, cols)), and with aux the tiles' tables in tab (2 * nb
 * * n_tok + 4 floats, nb = cols / the type's block size). */
static inline void tile_acts(lt_type vdt, const float *x, int cols, int n_tok, bool aux, char *A, float *tab) {
    const size_t arb = lt_row_bytes(vdt, cols);
    const int64_t nb = cols / lt_type_traits(vdt)->block_size;
    for (int c = 0; c < n_tok; c++) {
        lt_type_traits(vdt)->from_float(x + (size_t)c * cols, A + (size_t)c * arb, cols);
        if (aux) lt_act_tables(vdt, A + (size_t)c * arb, 0, nb, tab + c, tab + nb * n_tok + c, (size_t)n_tok);
    }
}

/* tile over rows x n_tok, as lt_matmul calls it: rows in steps of rows
 * (rows1 for one token), tokens in steps of cols; W of row bytes rb, A of
 * row bytes arb, out token-major (out[c * rows + r]). */
static inline void tile_run(const lt_tile *tl, int cols, const char *W, size_t rb, int rows, const char *A, size_t arb,
                            const float *tab, int n_tok, float *out) {
    const int step_r = n_tok == 1 ? tl->rows1 : tl->rows, step_c = n_tok == 1 ? 1 : tl->cols;
    for (int r = 0; r < rows; r += step_r)
        for (int c = 0; c < n_tok; c += step_c) {
            const int nr = rows - r < step_r ? rows - r : step_r, nc = n_tok - c < step_c ? n_tok - c : step_c;
            tl->fn(cols, W + (size_t)r * rb, rb, A + (size_t)c * arb, arb, tl->aux ? tab + c : NULL, (size_t)n_tok,
                   out + (size_t)c * rows + r, (size_t)rows, nr, nc);
        }
}

/* The F16 x8 tiles' sums (tensor/quant_x8_avx512.c) in scalar code: per
 * row and token, four chains of FMAs over the columns 4c + p in order,
 * added as (p0 + p1) + (p2 + p3). W: row-major F16 rows of cols halves. */
static inline void f16_x8_reference(const uint16_t *W, int rows, int cols, const float *x, int n_tok, float *out) {
    for (int c = 0; c < n_tok; c++)
        for (int r = 0; r < rows; r++) {
            float p[4] = {0, 0, 0, 0};
            for (int k = 0; k < cols; k++)
                p[k % 4] = fmaf(fp16_to_fp32(W[(size_t)r * cols + k]), x[(size_t)c * cols + k], p[k % 4]);
            out[(size_t)c * rows + r] = (p[0] + p[1]) + (p[2] + p[3]);
        }
}

#endif
