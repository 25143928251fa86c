/* AVX-512 kernels of the float weight types F32, F16 and BF16 (activations
 * F32): 16 weights per step, converted once (vcvtph2ps, or a shift for
 * BF16) and used for every token of the tile.
 *
 * Batch invariance, as in the AVX2 tiles: each (row, token) product is one
 * accumulator over k in steps of 16, the tail a masked step of the same
 * accumulator, reduced in one fixed order, for every tile shape and for
 * vec_dot, so a token's outputs do not depend on the other tokens of the
 * call. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "tensor/avx512_util.h"
#include "tensor/quant_impl.h"

enum { K_F32, K_F16, K_BF16 };

/* Weights k..k+15 of a row (only the lanes of m; the others are zero and
 * not read). */
LT_INLINE __m512 load16(int kind, const void *p, int64_t k, __mmask16 m, const int full) {
    const uint16_t *h = (const uint16_t *)p + k;
    switch (kind) {
    case K_F16:
        return _mm512_cvtph_ps(full ? loadu256(h) : _mm256_maskz_loadu_epi16(m, h));
    case K_BF16: {
        const __m256i v = full ? loadu256(h) : _mm256_maskz_loadu_epi16(m, h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    }
    default:
        return full ? _mm512_loadu_ps((const float *)p + k) : _mm512_maskz_loadu_ps(m, (const float *)p + k);
    }
}

LT_INLINE void fstep(int kind, const int RM, const int RN, const int full, int64_t k, __mmask16 m, const char *x,
                     size_t bx, const char *y, size_t by, __m512 acc[8][4]) {
    __m512 w[8];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) w[r] = load16(kind, x + r * bx, k, m, full);
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        const float *yc = (const float *)(y + c * by) + k;
        const __m512 v = full ? _mm512_loadu_ps(yc) : _mm512_maskz_loadu_ps(m, yc);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) acc[r][c] = _mm512_fmadd_ps(w[r], v, acc[r][c]);
    }
}

/* RM rows x RN tokens (RN <= 4; RM <= 4, or 8 for one token). */
LT_INLINE void ftile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx, const char *y,
                     size_t by, float *s, size_t ldc) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) fstep(kind, RM, RN, 1, k, 0xFFFF, x, bx, y, by, acc);
    if (k < n) fstep(kind, RM, RN, 0, k, first_lanes16(n - k), x, bx, y, by, acc);
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) s[c * ldc + r] = _mm512_reduce_add_ps(acc[r][c]);
}

#ifndef FT_RM
#define FT_RM 4
#endif
#ifndef FT_RN
#define FT_RN 4
#endif
#ifndef FT_RM1 /* rows per call for a single token */
#define FT_RM1 8
#endif

#define DEFINE_FTILES(name, kind)                                                                     \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by,                \
                     const float *aux, size_t ld, float *s, size_t ldc, int nr, int nc) {             \
        (void)aux;                                                                                    \
        (void)ld;                                                                                     \
        const char *x = vx, *y = vy;                                                                  \
        if (nc == 1 && nr == FT_RM1) {                                                                \
            ftile(kind, FT_RM1, 1, n, x, bx, y, by, s, ldc);                                          \
        } else if (nr == FT_RM && nc == FT_RN) {                                                      \
            ftile(kind, FT_RM, FT_RN, n, x, bx, y, by, s, ldc);                                       \
        } else if (nr == FT_RM) {                                                                     \
            for (int c = 0; c < nc; c++) ftile(kind, FT_RM, 1, n, x, bx, y + c * by, by, s + c * ldc, ldc); \
        } else if (nc == FT_RN) {                                                                     \
            for (int r = 0; r < nr; r++) ftile(kind, 1, FT_RN, n, x + r * bx, bx, y, by, s + r, ldc); \
        } else {                                                                                      \
            for (int r = 0; r < nr; r++)                                                              \
                for (int c = 0; c < nc; c++)                                                          \
                    ftile(kind, 1, 1, n, x + r * bx, bx, y + c * by, by, s + c * ldc + r, ldc);       \
        }                                                                                             \
    }

DEFINE_FTILES(tile_f32, K_F32)
DEFINE_FTILES(tile_f16, K_F16)
DEFINE_FTILES(tile_bf16, K_BF16)

#define DEFINE_FDOT(name, kind)                                  \
    static float name(int64_t n, const void *x, const void *y) { \
        float s;                                                 \
        ftile(kind, 1, 1, n, x, 0, y, 0, &s, 1);                 \
        return s;                                                \
    }

DEFINE_FDOT(dot_f32, K_F32)
DEFINE_FDOT(dot_f16, K_F16)
DEFINE_FDOT(dot_bf16, K_BF16)

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(dst + k, _mm512_cvtph_ps(loadu256(h + k)));
    if (k < n) {
        const __mmask16 m = first_lanes16(n - k);
        _mm512_mask_storeu_ps(dst + k, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + k)));
    }
}

void lt_kernels_float_avx512(lt_traits *traits, lt_tile *tiles) {
    traits[LT_F32].vec_dot = dot_f32;
    traits[LT_F16].vec_dot = dot_f16;
    traits[LT_BF16].vec_dot = dot_bf16;
    traits[LT_F16].to_float = f16_to_float;
    /* no lt_matmul prefetch: 2 or 4 KiB ahead measured slower on F16 decode */
    tiles[LT_F32] = (lt_tile){tile_f32, FT_RM, FT_RN, FT_RM1, false, 0};
    tiles[LT_F16] = (lt_tile){tile_f16, FT_RM, FT_RN, FT_RM1, false, 0};
    tiles[LT_BF16] = (lt_tile){tile_bf16, FT_RM, FT_RN, FT_RM1, false, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_float_kernels;
#endif
