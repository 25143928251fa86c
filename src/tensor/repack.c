/* In-place conversion between row-major weights and the x8 layout
 * (tensor/repack.h): one group of 8 rows at a time through a scratch copy. */
#include <stdlib.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "tensor/repack.h"

#define X8 8
#define SCALE_BYTES 2 /* the block's half scale comes first */
#define CHUNK 4

/* Quant bytes per block of a type that has an x8 layout, else 0. */
static size_t quant_bytes(lt_type t) {
    switch (t) {
    case LT_Q4_0: return sizeof(((blk_q4_0 *)0)->qs);
    case LT_Q8_0: return sizeof(((blk_q8_0 *)0)->qs);
    default: return 0;
    }
}

bool lt_x8_usable(lt_type t, int64_t n_rows, int64_t n_cols) {
    const char *env = getenv("LETHE_REPACK");
    if (env && !strcmp(env, "0")) return false;
    return quant_bytes(t) && n_rows > 0 && n_rows % X8 == 0 && lt_row_bytes(t, n_cols) > 0 &&
           lt_type_tile_x8(t)->fn != NULL;
}

/* One group: rows (row-major, 8 x rb bytes) <-> group (x8). */
static void convert_group(lt_type t, const char *src, char *dst, size_t rb, bool to_x8) {
    const size_t q = quant_bytes(t), bb = SCALE_BYTES + q, nb = rb / bb;
    for (size_t b = 0; b < nb; b++) {
        char *grp = (to_x8 ? dst : (char *)src) + b * X8 * bb;
        for (int i = 0; i < X8; i++) {
            char *row = (to_x8 ? (char *)src : dst) + (size_t)i * rb + b * bb;
            if (to_x8) memcpy(grp + SCALE_BYTES * i, row, SCALE_BYTES);
            else memcpy(row, grp + SCALE_BYTES * i, SCALE_BYTES);
            for (size_t j = 0; j < q / CHUNK; j++) {
                char *chunk = grp + SCALE_BYTES * X8 + (j * X8 + (size_t)i) * CHUNK;
                if (to_x8) memcpy(chunk, row + SCALE_BYTES + j * CHUNK, CHUNK);
                else memcpy(row + SCALE_BYTES + j * CHUNK, chunk, CHUNK);
            }
        }
    }
}

static int convert(lt_type t, void *data, int64_t n_rows, int64_t n_cols, bool to_x8) {
    const size_t rb = lt_row_bytes(t, n_cols);
    if (!quant_bytes(t) || rb == 0 || n_rows <= 0 || n_rows % X8 != 0) return -1;
    char *tmp = malloc(X8 * rb);
    if (!tmp) return -1;
    for (int64_t g = 0; g < n_rows / X8; g++) {
        char *p = (char *)data + (size_t)g * X8 * rb;
        memcpy(tmp, p, X8 * rb);
        convert_group(t, tmp, p, rb, to_x8);
    }
    free(tmp);
    return 0;
}

int lt_repack_x8(lt_type t, void *data, int64_t n_rows, int64_t n_cols) {
    return convert(t, data, n_rows, n_cols, true);
}

int lt_unpack_x8(lt_type t, void *data, int64_t n_rows, int64_t n_cols) {
    return convert(t, data, n_rows, n_cols, false);
}
