/* Internal to src/tensor: the block layouts (byte-exact with GGUF / ggml),
 * the scalar and AVX2 kernels that types.c puts into the type tables, and the
 * tile kernels that lt_matmul uses for several rows x several tokens. */
#ifndef LETHE_QUANT_IMPL_H
#define LETHE_QUANT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/types.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32

/* Half-precision fields are stored as raw IEEE half bits. */
typedef struct { uint16_t d; uint8_t qs[16]; } blk_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } blk_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } blk_q8_0;
typedef struct { uint16_t d, s; int8_t qs[32]; } blk_q8_1; /* s = d * sum(qs) */
typedef struct { uint16_t d; uint8_t qs[16]; } blk_iq4_nl;

typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } blk_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } blk_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } blk_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } blk_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } blk_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } blk_q8_K;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } blk_iq4_xs;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl layout");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K layout");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs layout");

/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t lt_iq4nl_values[16];

/* Unpacks the 12-byte Q4_K / Q5_K scale field into 8 six-bit scales and 8
 * six-bit mins (one pair per 32 elements). */
void lt_unpack_k4_scales(const uint8_t packed[12], uint8_t sc[8], uint8_t mn[8]);
/* The inverse (quantize.c). */
void lt_pack_k4_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t packed[12]);
/* Unpacks the 12-byte Q3_K scale field into 16 signed scales (-32..31). */
void lt_unpack_q3k_scales(const uint8_t packed[12], int8_t sc[16]);

/* ---- portable kernels (quant_float.c, quant_legacy.c, quant_k.c) ---- */
void lt_f32_to_float(const void *src, float *dst, int64_t n);
void lt_f32_from_float(const float *src, void *dst, int64_t n);
float lt_f32_dot(int64_t n, const void *x, const void *y);
void lt_f16_to_float(const void *src, float *dst, int64_t n);
void lt_f16_from_float(const float *src, void *dst, int64_t n);
float lt_f16_dot(int64_t n, const void *x, const void *y);
void lt_bf16_to_float(const void *src, float *dst, int64_t n);
void lt_bf16_from_float(const float *src, void *dst, int64_t n);
float lt_bf16_dot(int64_t n, const void *x, const void *y);

void lt_q4_0_to_float(const void *src, float *dst, int64_t n);
void lt_q4_1_to_float(const void *src, float *dst, int64_t n);
void lt_q5_0_to_float(const void *src, float *dst, int64_t n);
void lt_q5_1_to_float(const void *src, float *dst, int64_t n);
void lt_q8_0_to_float(const void *src, float *dst, int64_t n);
void lt_q8_1_to_float(const void *src, float *dst, int64_t n);
void lt_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void lt_q4_0_from_float(const float *src, void *dst, int64_t n);
void lt_q4_1_from_float(const float *src, void *dst, int64_t n);
void lt_q5_0_from_float(const float *src, void *dst, int64_t n);
void lt_q5_1_from_float(const float *src, void *dst, int64_t n);
void lt_q8_0_from_float(const float *src, void *dst, int64_t n);
void lt_q8_1_from_float(const float *src, void *dst, int64_t n);
float lt_q4_0_dot(int64_t n, const void *x, const void *y);
float lt_q4_1_dot(int64_t n, const void *x, const void *y);
float lt_q5_0_dot(int64_t n, const void *x, const void *y);
float lt_q5_1_dot(int64_t n, const void *x, const void *y);
float lt_q8_0_dot(int64_t n, const void *x, const void *y);
float lt_iq4_nl_dot(int64_t n, const void *x, const void *y);

void lt_q2_K_to_float(const void *src, float *dst, int64_t n);
void lt_q3_K_to_float(const void *src, float *dst, int64_t n);
void lt_q4_K_to_float(const void *src, float *dst, int64_t n);
void lt_q5_K_to_float(const void *src, float *dst, int64_t n);
void lt_q6_K_to_float(const void *src, float *dst, int64_t n);
void lt_q8_K_to_float(const void *src, float *dst, int64_t n);
void lt_iq4_xs_to_float(const void *src, float *dst, int64_t n);
void lt_q8_K_from_float(const float *src, void *dst, int64_t n);
float lt_q2_K_dot(int64_t n, const void *x, const void *y);
float lt_q3_K_dot(int64_t n, const void *x, const void *y);
float lt_q4_K_dot(int64_t n, const void *x, const void *y);
float lt_q5_K_dot(int64_t n, const void *x, const void *y);
float lt_q6_K_dot(int64_t n, const void *x, const void *y);
float lt_iq4_xs_dot(int64_t n, const void *x, const void *y);

/* ---- AVX2 kernels (*_avx2.c; call only when the CPU has AVX2+FMA+F16C) ---- */
float lt_f32_dot_avx2(int64_t n, const void *x, const void *y);
float lt_f16_dot_avx2(int64_t n, const void *x, const void *y);
float lt_bf16_dot_avx2(int64_t n, const void *x, const void *y);
void lt_f16_to_float_avx2(const void *src, float *dst, int64_t n);
float lt_q4_0_dot_avx2(int64_t n, const void *x, const void *y);
void lt_q4_0_to_float_avx2(const void *src, float *dst, int64_t n);
void lt_q8_0_to_float_avx2(const void *src, float *dst, int64_t n);
float lt_q4_1_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q5_0_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q5_1_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q8_0_dot_avx2(int64_t n, const void *x, const void *y);
float lt_iq4_nl_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q4_K_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q5_K_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q6_K_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q2_K_dot_avx2(int64_t n, const void *x, const void *y);
float lt_q3_K_dot_avx2(int64_t n, const void *x, const void *y);
float lt_iq4_xs_dot_avx2(int64_t n, const void *x, const void *y);
void lt_q8_0_from_float_avx2(const float *src, void *dst, int64_t n);
void lt_q8_1_from_float_avx2(const float *src, void *dst, int64_t n);
void lt_q8_K_from_float_avx2(const float *src, void *dst, int64_t n);

/* ---- tile kernels for lt_matmul ----
 * s[c*ldc + r] = dot(row r of x, row c of y) for r < nr, c < nc, where row r
 * of x starts at x + r*bx and row c of y (activations of vec_dot_type) at
 * y + c*by. nr <= rows and nc <= cols of the lt_tile entry. When the entry
 * asks for aux, aux points to the tables of lt_act_tables for token 0 of
 * the tile (aux[b*ld + c] is block b of token c); otherwise it is unused. */
typedef void (*lt_tile_fn)(int64_t n, const void *x, size_t bx, const void *y, size_t by,
                           const float *aux, size_t ld, float *s, size_t ldc, int nr, int nc);
typedef struct {
    lt_tile_fn fn; /* NULL: lt_matmul loops over vec_dot */
    int rows;      /* largest nr the kernel takes */
    int cols;      /* largest nc the kernel takes */
    int rows1;     /* rows per call when there is a single token */
    bool aux;      /* wants the activation tables */
    int prefetch;  /* single token: bytes ahead that lt_matmul prefetches the
                    * weights, 0 to leave it to the hardware (better for
                    * streams it follows: F16 rows, x8 groups) */
} lt_tile;
/* The row-major quantised tiles read several rows at once from far apart;
 * on Zen 4 a software prefetch this far ahead keeps them fed. */
#define LT_PREFETCH_ROWS 4096

/* Tables of Q8_0 / Q8_1 activation rows, block-major across the batch:
 * for blocks [b0, b0+cnt) of one token, d[b*ld] = the block's scale and
 * s[b*ld] = d * sum(q) (Q8_0) or the stored s (Q8_1); d and s point at the
 * token's column. The tables need 4 floats of padding after their end. */
void lt_act_tables(lt_type vdt, const void *row, int64_t b0, int64_t cnt, float *d, float *s, size_t ld);

/* Tile kernel of the dispatched (fastest) implementation; never NULL for an
 * id in the table, but fn may be NULL. */
const lt_tile *lt_type_tile(lt_type t);
/* Set the AVX2 tile kernels of their types in tiles[LT_TYPE_COUNT]. */
void lt_tiles_float_avx2(lt_tile *tiles);
void lt_tiles_legacy_avx2(lt_tile *tiles);
void lt_tiles_k_avx2(lt_tile *tiles);
/* Tile kernels on weights in the x8 layout (tensor/repack.h), same contract
 * except that x points at a group of 8 rows (row r, r a multiple of 8, at
 * x + r*bx) and nr is a multiple of 8; fn NULL where a type has none. */
const lt_tile *lt_type_tile_x8(lt_type t);
void lt_tiles_x8_avx2(lt_tile *tiles);

/* ---- AVX-512 kernels (*_avx512.c; call only at LT_SIMD_AVX512: F, BW, VL,
 * VNNI, with AVX2/FMA/F16C) ----
 * Each overwrites, in the dispatched traits and tile tables (both of
 * LT_TYPE_COUNT entries, already holding the AVX2 kernels), the entries of
 * the types it has AVX-512 kernels for, and leaves the others alone. */
void lt_kernels_float_avx512(lt_traits *traits, lt_tile *tiles);
void lt_kernels_legacy_avx512(lt_traits *traits, lt_tile *tiles);
void lt_kernels_k_avx512(lt_traits *traits, lt_tile *tiles);
/* The x8 tiles (quant_x8_avx512.c) of the types it has, over the AVX2 ones. */
void lt_tiles_x8_avx512(lt_tile *tiles);

#endif
