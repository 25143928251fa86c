/* Weights interleaved by 8 rows ("x8"), for the tile kernels that keep one
 * row per vector lane (quant_x8_*.c). A matrix is repacked in place, once,
 * at load: rows 8g..8g+7 stay where they were (8 row-bytes at row 8g) but
 * their blocks are interleaved, so a row can no longer be read on its own;
 * lt_matmul reads such a matrix when its lt_matmul_out says x8.
 *
 * Layout of one group block (8 rows x one block of columns), for the types
 * made of a half scale and quant bytes (Q4_0: 16, Q8_0: 32): the 8 scales,
 * then the quant bytes in 4-byte chunks, chunk j of row i at 16 + 32 j + 4 i.
 * Q4_K: the same chunks of its quants, after the 8 d, 8 dmin and the 8 x 8
 * six-bit scales and mins re-packed by row (repack.c). F16 (where the level
 * has x8 tiles for it, AVX2 and AVX-512; rows a multiple of 16 columns): for each
 * 4 columns the 8 rows' 8 bytes in row order, so one stream serves the
 * group (a 512-bit register: 4 rows x 4 columns, quant_x8_avx512.c; a
 * 128-bit load: 2 rows x 4 columns, quant_x8_avx2.c). */
#ifndef LETHE_REPACK_H
#define LETHE_REPACK_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/types.h"

/* True when the dispatched kernels have x8 tiles for t and the shape fits
 * (n_rows a multiple of 8). LETHE_REPACK=0 in the environment turns x8 off. */
bool lt_x8_usable(lt_type t, int64_t n_rows, int64_t n_cols);

/* Repacks n_rows x n_cols weights of type t in place; 0, or -1 when the
 * type or shape has no x8 layout or scratch cannot be allocated (the data
 * is then unchanged). */
int lt_repack_x8(lt_type t, void *data, int64_t n_rows, int64_t n_cols);

/* The inverse (tests, tools): back to row-major, same conditions. */
int lt_unpack_x8(lt_type t, void *data, int64_t n_rows, int64_t n_cols);

#endif
