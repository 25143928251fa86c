/* AVX2 kernels of the float weight types F32, F16 and BF16 (activations F32). */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"
#include "util/fp16.h"

enum { K_F32, K_F16, K_BF16 };

LT_INLINE __m256 load8(int kind, const void *p, int64_t k) {
    switch (kind) {
    case K_F16:
        return _mm256_cvtph_ps(loadu128((const uint16_t *)p + k));
    case K_BF16:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128((const uint16_t *)p + k)), 16));
    default:
        return _mm256_loadu_ps((const float *)p + k);
    }
}

LT_INLINE float load1(int kind, const void *p, int64_t k) {
    switch (kind) {
    case K_F16: return fp16_to_fp32(((const uint16_t *)p)[k]);
    case K_BF16: return bf16_to_fp32(((const uint16_t *)p)[k]);
    default: return ((const float *)p)[k];
    }
}

/* One row, four accumulators to hide the FMA latency. */
LT_INLINE float dot1(int kind, int64_t n, const void *x, const float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 = _mm256_fmadd_ps(load8(kind, x, k), _mm256_loadu_ps(y + k), a0);
        a1 = _mm256_fmadd_ps(load8(kind, x, k + 8), _mm256_loadu_ps(y + k + 8), a1);
        a2 = _mm256_fmadd_ps(load8(kind, x, k + 16), _mm256_loadu_ps(y + k + 16), a2);
        a3 = _mm256_fmadd_ps(load8(kind, x, k + 24), _mm256_loadu_ps(y + k + 24), a3);
    }
    for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(load8(kind, x, k), _mm256_loadu_ps(y + k), a0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < n; k++) s += load1(kind, x, k) * y[k];
    return s;
}

float lt_f32_dot_avx2(int64_t n, const void *x, const void *y) { return dot1(K_F32, n, x, y); }
float lt_f16_dot_avx2(int64_t n, const void *x, const void *y) { return dot1(K_F16, n, x, y); }
float lt_bf16_dot_avx2(int64_t n, const void *x, const void *y) { return dot1(K_BF16, n, x, y); }

void lt_f16_to_float_avx2(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(loadu128(h + k)));
    for (; k < n; k++) dst[k] = fp16_to_fp32(h[k]);
}

/* The sum of v's lanes in the order hsum4_ps sums each of its vectors, so
 * that a (row, token) product ends the same whichever tile computed it. */
LT_INLINE float hsum_as4(__m256 v) { return _mm_cvtss_f32(hsum4_ps(v, v, v, v)); }

/* RM rows x RN tokens: each 8 weights are converted once and used RN times.
 * Batch invariance: every product is one accumulator over k in steps of 8,
 * reduced by hsum4_ps's order, then the scalar tail, for every tile shape,
 * so a token's outputs do not depend on which other tokens share the call
 * (the batched step's promise). */
#ifndef FT_AHEAD
#define FT_AHEAD 1024
#endif

LT_INLINE void ftile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx,
                     const char *y, size_t by, float *s, size_t ldc) {
    __m256 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t k = 0;
    const size_t esz = kind == K_F32 ? 4 : 2;
    for (; k + 8 <= n; k += 8) {
        /* a single token streams the rows once: fetch ahead of the loads
         * (the hardware prefetcher alone leaves one thread short) */
        if (RN == 1 && (k * esz) % 64 == 0)
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) _mm_prefetch(x + r * bx + k * esz + FT_AHEAD, _MM_HINT_T0);
        __m256 w[8];
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) w[r] = load8(kind, x + r * bx, k);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256 v = _mm256_loadu_ps((const float *)(y + c * by) + k);
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) acc[r][c] = _mm256_fmadd_ps(w[r], v, acc[r][c]);
        }
    }
    if (RN == 4 && k == n) {
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) store4_strided(s + r, ldc, hsum4_ps(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        return;
    }
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            float t = hsum_as4(acc[r][c]);
            for (int64_t j = k; j < n; j++)
                t += load1(kind, x + r * bx, j) * ((const float *)(y + c * by))[j];
            s[c * ldc + r] = t;
        }
}

#ifndef FT_RM
#define FT_RM 3
#endif
#ifndef FT_RN
#define FT_RN 4
#endif
/* A single token: more rows per call, so that more independent FMA chains
 * hide the FMA latency (3 rows: one FMA per 4/3 cycles, below what memory
 * delivers); a row's sum is the same whatever the rows beside it. */
#ifndef FT_RM1
#define FT_RM1 8
#endif

#define DEFINE_FTILES(name, kind)                                                                 \
    static void name##_full(int64_t n, const char *x, size_t bx, const char *y, size_t by,       \
                            float *s, size_t ldc) {                                               \
        ftile(kind, FT_RM, FT_RN, n, x, bx, y, by, s, ldc);                                       \
    }                                                                                             \
    static void name##_rows(int64_t n, const char *x, size_t bx, const char *y, size_t by,       \
                            float *s, size_t ldc) {                                               \
        ftile(kind, FT_RM, 1, n, x, bx, y, by, s, ldc);                                           \
    }                                                                                             \
    static void name##_rows1(int64_t n, const char *x, size_t bx, const char *y, size_t by,      \
                             float *s, size_t ldc) {                                              \
        ftile(kind, FT_RM1, 1, n, x, bx, y, by, s, ldc);                                          \
    }                                                                                             \
    static void name##_cols(int64_t n, const char *x, size_t bx, const char *y, size_t by,       \
                            float *s, size_t ldc) {                                               \
        ftile(kind, 1, FT_RN, n, x, bx, y, by, s, ldc);                                           \
    }                                                                                             \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by,            \
                     const float *aux, size_t ld, float *s, size_t ldc, int nr, int nc) {         \
        (void)aux;                                                                                \
        (void)ld;                                                                                 \
        const char *x = vx, *y = vy;                                                              \
        if (nc == 1 && nr == FT_RM1) {                                                            \
            name##_rows1(n, x, bx, y, by, s, ldc);                                                \
            return;                                                                               \
        }                                                                                         \
        for (; nc == 1 && nr > FT_RM; nr -= FT_RM, x += FT_RM * bx, s += FT_RM)                   \
            name##_rows(n, x, bx, y, by, s, ldc);                                                 \
        if (nr == FT_RM && nc == FT_RN) {                                                         \
            name##_full(n, x, bx, y, by, s, ldc);                                                 \
        } else if (nr == FT_RM) {                                                                 \
            for (int c = 0; c < nc; c++) name##_rows(n, x, bx, y + c * by, by, s + c * ldc, ldc); \
        } else if (nc == FT_RN) {                                                                 \
            for (int r = 0; r < nr; r++) name##_cols(n, x + r * bx, bx, y, by, s + r, ldc);       \
        } else {                                                                                  \
            for (int r = 0; r < nr; r++)                                                          \
                for (int c = 0; c < nc; c++)                                                      \
                    ftile(kind, 1, 1, n, x + r * bx, bx, y + c * by, by, s + c * ldc + r, ldc);   \
        }                                                                                         \
    }

DEFINE_FTILES(tile_f32, K_F32)
DEFINE_FTILES(tile_f16, K_F16)
DEFINE_FTILES(tile_bf16, K_BF16)

void lt_tiles_float_avx2(lt_tile *t) {
    t[LT_F32] = (lt_tile){tile_f32, FT_RM, FT_RN, FT_RM1, false, 0};
    t[LT_F16] = (lt_tile){tile_f16, FT_RM, FT_RN, FT_RM1, false, 0};
    t[LT_BF16] = (lt_tile){tile_bf16, FT_RM, FT_RN, FT_RM1, false, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_kernels;
#endif
