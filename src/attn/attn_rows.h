/* The row kinds of the attention kernels (internal to src/attn): how a
 * pool page stores its key / value rows, F32, F16 or Q8_0, packed (rows
 * kv_row_size apart, as the pool lays them out). The scalar, AVX2 and
 * AVX-512 kernels take the kind as a constant and convert a row to exactly
 * the floats of kv_row_to_f32, so a kernel gives the same bits on every
 * kind. */
#ifndef LETHE_ATTN_ROWS_H
#define LETHE_ATTN_ROWS_H

#include <stddef.h>

#include "tensor/quant_impl.h"

enum { ROW_F32, ROW_F16, ROW_Q8_0 };

/* Row j of a block of rows of d elements. */
static inline __attribute__((always_inline)) const char *row_at(const int kind, const void *base, long j, int d) {
    const size_t bytes = kind == ROW_F32   ? (size_t)d * sizeof(float)
                         : kind == ROW_F16 ? (size_t)d * sizeof(uint16_t)
                                           : (size_t)d / 32 * sizeof(blk_q8_0);
    return (const char *)base + (size_t)j * bytes;
}

#endif
