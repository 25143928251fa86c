/* In-place conversion between row-major weights and the x8 layout
 * (tensor/repack.h): one group of 8 rows at a time through a scratch copy. */
#include <stdlib.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "tensor/repack.h"

#define X8 8
#define SCALE_BYTES 2 /* the block's half scale comes first */
#define CHUNK 4

/* Quant bytes per block of a 32-element type that has an x8 layout, else 0. */
static size_t quant_bytes(lt_type t) {
    switch (t) {
    case LT_Q4_0: return sizeof(((blk_q4_0 *)0)->qs);
    case LT_Q8_0: return sizeof(((blk_q8_0 *)0)->qs);
    default: return 0;
    }
}

#define F16_CHUNK 4 /* F16: columns per chunk (8 bytes of a row) */
#define F16_COLS 16 /* F16: the layout takes rows of whole 16-column steps */

static bool has_layout(lt_type t) { return quant_bytes(t) || t == LT_Q4_K || t == LT_Q6_K || t == LT_F16; }

/* The row length a layout takes (F16: whole chunks). */
static bool cols_fit(lt_type t, int64_t n_cols) {
    return lt_row_bytes(t, n_cols) > 0 && (t != LT_F16 || n_cols % F16_COLS == 0);
}

bool lt_x8_usable(lt_type t, int64_t n_rows, int64_t n_cols) {
    const char *env = getenv("LETHE_REPACK");
    if (env && !strcmp(env, "0")) return false;
    return has_layout(t) && n_rows > 0 && n_rows % X8 == 0 && cols_fit(t, n_cols) && lt_type_tile_x8(t)->fn != NULL;
}

/* One group of F16 rows: for each chunk of 4 columns, the 8 rows' 8 bytes
 * in row order. */
static void convert_f16(const char *src, char *dst, size_t rb, bool to_x8) {
    const size_t cb = 2 * F16_CHUNK, nc = rb / cb;
    for (size_t c = 0; c < nc; c++)
        for (int i = 0; i < X8; i++) {
            char *grp = (to_x8 ? dst : (char *)src) + (c * X8 + (size_t)i) * cb;
            char *row = (to_x8 ? (char *)src : dst) + (size_t)i * rb + c * cb;
            if (to_x8) memcpy(grp, row, cb);
            else memcpy(row, grp, cb);
        }
}

/* One group of a scale + quants type: rows (row-major, 8 x rb bytes) <->
 * group (x8). */
static void convert_legacy(lt_type t, const char *src, char *dst, size_t rb, bool to_x8) {
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

/* Q4_K group super-block (8 x 144 bytes): d[8] at 0, dmin[8] at 16, the 64
 * six-bit scales and 64 mins at 32 (value v = 8 * sub-block + row; low
 * nibbles: byte b of the 32 at 32 (scales) / 64 (mins) holds v = b and, in
 * its high nibble, v = b + 32; top two bits: byte b of the 16 at 96 (scales)
 * / 112 (mins) holds v = 16 s + b at bits 2s), then the quants at 128 in
 * the 4-byte chunks of the 32-element types: pair k of sub-blocks, chunk c,
 * row i at 128 + 32 (8k + c) + 4i = bytes 32k + 4c.. of the row's qs. */
enum { K4_D = 0, K4_DMIN = 16, K4_SC = 32, K4_MN = 64, K4_HI = 96, K4_QS = 128 };

static void k4_scales_to_x8(const uint8_t v[64], uint8_t *lo, uint8_t *hi) {
    for (int b = 0; b < 32; b++) lo[b] = (uint8_t)((v[b] & 15) | (v[b + 32] & 15) << 4);
    for (int b = 0; b < 16; b++) {
        hi[b] = 0;
        for (int s = 0; s < 4; s++) hi[b] |= (uint8_t)((v[16 * s + b] >> 4) << (2 * s));
    }
}

static void k4_scales_from_x8(const uint8_t *lo, const uint8_t *hi, uint8_t v[64]) {
    for (int b = 0; b < 32; b++) {
        v[b] = lo[b] & 15;
        v[b + 32] = lo[b] >> 4;
    }
    for (int b = 0; b < 16; b++)
        for (int s = 0; s < 4; s++) v[16 * s + b] |= (uint8_t)(((hi[b] >> (2 * s)) & 3) << 4);
}

static void convert_q4_K(const char *src, char *dst, size_t rb, bool to_x8) {
    const size_t nb = rb / sizeof(blk_q4_K);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *grp = (uint8_t *)(to_x8 ? dst : src) + b * X8 * sizeof(blk_q4_K);
        uint8_t sc[64], mn[64];
        if (!to_x8) {
            k4_scales_from_x8(grp + K4_SC, grp + K4_HI, sc);
            k4_scales_from_x8(grp + K4_MN, grp + K4_HI + 16, mn);
        }
        for (int i = 0; i < X8; i++) {
            blk_q4_K *row = (blk_q4_K *)((to_x8 ? src : dst) + (size_t)i * rb) + b;
            uint8_t rs[8], rm[8];
            if (to_x8) {
                memcpy(grp + K4_D + 2 * i, &row->d, 2);
                memcpy(grp + K4_DMIN + 2 * i, &row->dmin, 2);
                lt_unpack_k4_scales(row->scales, rs, rm);
                for (int j = 0; j < 8; j++) sc[8 * j + i] = rs[j], mn[8 * j + i] = rm[j];
            } else {
                memcpy(&row->d, grp + K4_D + 2 * i, 2);
                memcpy(&row->dmin, grp + K4_DMIN + 2 * i, 2);
                for (int j = 0; j < 8; j++) rs[j] = sc[8 * j + i], rm[j] = mn[8 * j + i];
                lt_pack_k4_scales(rs, rm, row->scales);
            }
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 8; c++) {
                    uint8_t *chunk = grp + K4_QS + 32 * (8 * k + c) + CHUNK * i;
                    if (to_x8) memcpy(chunk, row->qs + 32 * k + CHUNK * c, CHUNK);
                    else memcpy(row->qs + 32 * k + CHUNK * c, chunk, CHUNK);
                }
        }
        if (to_x8) {
            k4_scales_to_x8(sc, grp + K4_SC, grp + K4_HI);
            k4_scales_to_x8(mn, grp + K4_MN, grp + K4_HI + 16);
        }
    }
}

/* Q6_K group super-block (8 x 210 bytes): d[8] at 0; the 16 signed scales
 * by pairs of sub-blocks at 16: for pair p, 16 bytes sc[2p] and sc[2p+1]
 * of row 0, then of row 1, ...; then, in the order the kernel reads them
 * (a prefetcher follows one stream better than three), for each half n and
 * chunk position l (0..7) three 32-byte pieces of 4 bytes per row: ql
 * bytes 64n + 4l.., ql bytes 64n + 32 + 4l.. and qh bytes 32n + 4l.. */
enum { K6_D = 0, K6_SC = 16, K6_Q = 144 };

static void convert_q6_K(const char *src, char *dst, size_t rb, bool to_x8) {
    const size_t nb = rb / sizeof(blk_q6_K);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *grp = (uint8_t *)(to_x8 ? dst : src) + b * X8 * sizeof(blk_q6_K);
        for (int i = 0; i < X8; i++) {
            blk_q6_K *row = (blk_q6_K *)((to_x8 ? src : dst) + (size_t)i * rb) + b;
#define MOVE(x8p, rowp, n)                  \
    do {                                    \
        if (to_x8) memcpy(x8p, rowp, n);    \
        else memcpy(rowp, x8p, n);          \
    } while (0)
            MOVE(grp + K6_D + 2 * i, &row->d, 2);
            for (int p = 0; p < 8; p++) MOVE(grp + K6_SC + 16 * p + 2 * i, row->scales + 2 * p, 2);
            for (int n = 0; n < 2; n++)
                for (int l = 0; l < 8; l++) {
                    uint8_t *piece = grp + K6_Q + 96 * (8 * n + l) + CHUNK * i;
                    MOVE(piece, row->ql + 64 * n + CHUNK * l, CHUNK);
                    MOVE(piece + 32, row->ql + 64 * n + 32 + CHUNK * l, CHUNK);
                    MOVE(piece + 64, row->qh + 32 * n + CHUNK * l, CHUNK);
                }
#undef MOVE
        }
    }
}

static int convert(lt_type t, void *data, int64_t n_rows, int64_t n_cols, bool to_x8) {
    const size_t rb = lt_row_bytes(t, n_cols);
    if (!has_layout(t) || !cols_fit(t, n_cols) || n_rows <= 0 || n_rows % X8 != 0) return -1;
    char *tmp = malloc(X8 * rb);
    if (!tmp) return -1;
    for (int64_t g = 0; g < n_rows / X8; g++) {
        char *p = (char *)data + (size_t)g * X8 * rb;
        memcpy(tmp, p, X8 * rb);
        if (t == LT_Q4_K) convert_q4_K(tmp, p, rb, to_x8);
        else if (t == LT_Q6_K) convert_q6_K(tmp, p, rb, to_x8);
        else if (t == LT_F16) convert_f16(tmp, p, rb, to_x8);
        else convert_legacy(t, tmp, p, rb, to_x8);
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
