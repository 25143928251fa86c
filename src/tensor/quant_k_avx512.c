/* AVX-512 (F, BW, VL, VNNI) dot products and matmul tiles of the k-quants
 * Q2_K..Q6_K and IQ4_XS against Q8_K activations.
 *
 * A weight super-block is decoded into 4 registers of 64 unsigned quants in
 * element order (so the activations are plain loads), 4 registers of int16
 * scales, one per int16 lane of vpmaddubsw's output, and an int16 offset per
 * 16 quants that multiplies Q8_K's per-16 sums: the mins of Q2_K/Q4_K/Q5_K
 * (scaled by dmin), or 32*scale (Q6_K) and 4*scale (Q3_K), whose quants are
 * stored with that offset. IQ4_XS's table values are signed: the registers
 * hold their magnitudes and a mask of the negative ones flips the
 * activations. Per 64 quants the product is vpmaddubsw (u8 x s8, pairs to
 * int16: |sum| <= 2*127*127 fits) then VNNI's vpdpwssd, which multiplies
 * by the scales and accumulates in int32 in one instruction (vpdpbusd would
 * leave the per-4 sums in int32, where the scales cost a vpmulld more).
 * Integer sums are exact per super-block, so the result differs from the
 * scalar code only by float rounding.
 *
 * One call decodes each super-block of a row once and runs it against the
 * tile's tokens while it sits in registers; a single token takes K512_ROWS1
 * rows per call, so that several independent chains hide the multiply latency
 * while the rows stream from memory once. */
#if defined(LT_K512_EMULATE) ||                                                                  \
    (defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__))
#include "tensor/avx512_k_util.h"
#include "tensor/quant_impl.h"

enum { K_Q4_K, K_Q5_K, K_Q6_K, K_Q2_K, K_Q3_K, K_IQ4_XS };

typedef struct {
    __m512i q[4];     /* quants 64i..64i+63 (IQ4_XS: their magnitudes) */
    __m512i sc[4];    /* int16 scale of each int16 lane of maddubs(q[i], y) */
    k512_mask64 neg[4];/* IQ4_XS: the negative values */
    __m256i off;      /* int16 per 16 quants, times Q8_K's bsums */
    float d, dmin;
} kd;

#define X8(v) v, v, v, v, v, v, v, v
#define X16(v) X8(v), X8(v)
#define X32(v) X16(v), X16(v)

/* vpshufb controls over k4_scales_mins' bytes: one byte of each 128-bit
 * lane zero-extended to int16 (-1 gives a zero byte). Register i of
 * Q4_K/Q5_K takes scale 2i in its lower 256 bits and 2i+1 in the upper; the
 * offsets are the mins, one per 16 quants. */
#define ZX8(s) s, -1, s, -1, s, -1, s, -1, s, -1, s, -1, s, -1, s, -1
#define ZX2(s) s, -1, s, -1
static const _Alignas(64) int8_t zx_scale[4][64] = {{ZX8(0), ZX8(0), ZX8(1), ZX8(1)},
                                                    {ZX8(2), ZX8(2), ZX8(3), ZX8(3)},
                                                    {ZX8(8), ZX8(8), ZX8(9), ZX8(9)},
                                                    {ZX8(10), ZX8(10), ZX8(11), ZX8(11)}};
/* Q2_K: scale 4i + L (one per 16 quants) in 128-bit lane L of register i */
static const _Alignas(64) int8_t zx_per16[4][64] = {{ZX8(0), ZX8(1), ZX8(2), ZX8(3)},
                                                    {ZX8(4), ZX8(5), ZX8(6), ZX8(7)},
                                                    {ZX8(8), ZX8(9), ZX8(10), ZX8(11)},
                                                    {ZX8(12), ZX8(13), ZX8(14), ZX8(15)}};
/* Q6_K/Q3_K: the same with the byte in the high half of each int16, to be
 * sign-extended by an arithmetic shift */
#define HX8(s) -1, s, -1, s, -1, s, -1, s, -1, s, -1, s, -1, s, -1, s
static const _Alignas(64) int8_t hx_per16[4][64] = {{HX8(0), HX8(1), HX8(2), HX8(3)},
                                                    {HX8(4), HX8(5), HX8(6), HX8(7)},
                                                    {HX8(8), HX8(9), HX8(10), HX8(11)},
                                                    {HX8(12), HX8(13), HX8(14), HX8(15)}};
/* IQ4_XS: scale 2i in the lower 256 bits of register i, 2i+1 in the upper */
static const _Alignas(64) int8_t hx_per32[4][64] = {{HX8(0), HX8(0), HX8(1), HX8(1)},
                                                    {HX8(2), HX8(2), HX8(3), HX8(3)},
                                                    {HX8(4), HX8(4), HX8(5), HX8(5)},
                                                    {HX8(6), HX8(6), HX8(7), HX8(7)}};
static const _Alignas(32) int8_t zx_mins[32] = {ZX2(4), ZX2(5), ZX2(6), ZX2(7), ZX2(12), ZX2(13), ZX2(14), ZX2(15)};
/* per-int16 shift counts for the two 256-bit halves */
static const _Alignas(64) int16_t cnt_0_4[32] = {X16(0), X16(4)};
static const _Alignas(64) int16_t cnt_4_2[32] = {X16(4), X16(2)};
static const _Alignas(64) int16_t cnt_0_2[32] = {X16(0), X16(2)};
static const _Alignas(64) int16_t cnt_4_6[32] = {X16(4), X16(6)};
static const _Alignas(64) int16_t cnt_iq4[32] = {X8(0), X8(4), X8(0), X8(4)};
/* the bit of sub-blocks 2i (bytes 0-31) and 2i+1 (bytes 32-63) in Q5_K's
 * qh and Q3_K's hmask */
static const _Alignas(64) uint8_t bit_pair[4][64] = {
    {X32(0x01), X32(0x02)}, {X32(0x04), X32(0x08)}, {X32(0x10), X32(0x20)}, {X32(0x40), X32(0x80)}};

K512_INLINE size_t kblk_bytes(int kind) {
    switch (kind) {
    case K_Q4_K: return sizeof(blk_q4_K);
    case K_Q5_K: return sizeof(blk_q5_K);
    case K_Q6_K: return sizeof(blk_q6_K);
    case K_Q2_K: return sizeof(blk_q2_K);
    case K_Q3_K: return sizeof(blk_q3_K);
    default: return sizeof(blk_iq4_xs);
    }
}

/* The 12-byte Q4_K/Q5_K scale field at p -> 16 bytes: scales 0-3, mins 0-3,
 * scales 4-7, mins 4-7.
 * Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits;
 * bytes 8-11 hold scales 4-7 (low nibble) and mins 4-7 (high nibble), whose
 * top two bits are the top bits of bytes 0-3 and 4-7. Reads 16 bytes (the
 * field is followed by at least 4 more bytes of the block). */
K512_INLINE __m128i k4_scales_mins(const uint8_t *p) {
    const __m128i v = k512_load128(p);
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11));
    /* bytes 12-15 (int16 lanes 6, 7) take the high nibbles of bytes 8-11 */
    __m128i lo = _mm_blend_epi16(a, _mm_srli_epi16(a, 4), 0xC0);
    lo = _mm_and_si128(lo, _mm_setr_epi8(63, 63, 63, 63, 63, 63, 63, 63, 15, 15, 15, 15, 15, 15, 15, 15));
    /* bits 4-5 of bytes 8-15: the top bits of bytes 0-7 */
    const __m128i top = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7));
    return _mm_or_si128(lo, _mm_and_si128(_mm_srli_epi16(top, 2), _mm_set1_epi8(0x30)));
}

/* The 12-byte Q3_K scale field -> 16 signed scales (stored +32): scale s has
 * its low nibble in nibble s/8 of byte s%8 and its top two bits at bits
 * 2(s/4) of byte 8 + s%4. */
K512_INLINE __m128i q3k_scales(const uint8_t *p) {
    uint32_t w[3];
    memcpy(w, p, 12);
    const __m128i v = _mm_setr_epi32((int)((w[0] & 0x0f0f0f0fu) | (w[2] & 0x03030303u) << 4),
                                     (int)((w[1] & 0x0f0f0f0fu) | ((w[2] >> 2) & 0x03030303u) << 4),
                                     (int)(((w[0] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 4) & 0x03030303u) << 4),
                                     (int)(((w[1] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 6) & 0x03030303u) << 4));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* Signed scale bytes (16 in s8) -> the 4 scale registers, via one of the
 * hx_ tables: each byte is put in the high half of an int16, then shifted
 * down with its sign. */
K512_INLINE void signed_scales(__m128i s8, const int8_t (*hx)[64], kd *k) {
    const __m512i sb = _mm512_broadcast_i32x4(s8);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) k->sc[i] = _mm512_srai_epi16(_mm512_shuffle_epi8(sb, k512_load(hx[i])), 8);
}

/* Low bits of Q2_K / Q3_K: quant 128h + 32j + l is bits 2j..2j+1 of qs[32h + l]. */
K512_INLINE void two_bit_quants(const uint8_t *qs, kd *k) {
    const __m512i m3 = _mm512_set1_epi8(3);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i v = k512_bcast256(qs + 32 * h);
        k->q[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(v, k512_load(cnt_0_2)), m3);
        k->q[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(v, k512_load(cnt_4_6)), m3);
    }
}

/* adds `add` to the quants of sub-block j whose bit j is set in bits[l] */
K512_INLINE void high_bit(const uint8_t *bits, int add, kd *k) {
    const __m512i v = k512_bcast256(bits), a = _mm512_set1_epi8((char)add);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const k512_mask64 m = _mm512_test_epi8_mask(v, k512_load(bit_pair[i]));
        k->q[i] = _mm512_mask_add_epi8(k->q[i], m, k->q[i], a);
    }
}

K512_INLINE void kdecode(int kind, const char *p, kd *k) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (kind == K_Q4_K || kind == K_Q5_K) {
        const uint16_t *dd = (const uint16_t *)p; /* d, dmin lead both layouts */
        const uint8_t *qs = kind == K_Q4_K ? ((const blk_q4_K *)p)->qs : ((const blk_q5_K *)p)->qs;
        k->d = k512_h2f(dd[0]);
        k->dmin = k512_h2f(dd[1]);
        const __m512i sm = _mm512_broadcast_i32x4(k4_scales_mins((const uint8_t *)p + 4));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) k->sc[i] = _mm512_shuffle_epi8(sm, k512_load(zx_scale[i]));
        k->off = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm), k512_load256(zx_mins));
        /* qs[32i + l]: low nibble quant 64i + l, high nibble 64i + 32 + l */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            k->q[i] = _mm512_and_si512(_mm512_srlv_epi16(k512_bcast256(qs + 32 * i), k512_load(cnt_0_4)), m4);
        if (kind == K_Q5_K) high_bit(((const blk_q5_K *)p)->qh, 16, k);
    } else if (kind == K_Q6_K) {
        const blk_q6_K *b = (const blk_q6_K *)p;
        const __m512i m30 = _mm512_set1_epi8(0x30);
        k->d = k512_h2f(b->d);
        k->dmin = 0.0f;
        const __m128i s8 = k512_load128(b->scales);
        k->off = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 5);
        signed_scales(s8, hx_per16, k);
        /* quant 128h + 32j + l: nibble j/2 of ql[64h + 32(j%2) + l], high
         * bits 2j..2j+1 of qh[32h + l] */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i lo = k512_load(b->ql + 64 * h), qh = k512_bcast256(b->qh + 32 * h);
            k->q[2 * h] = _mm512_or_si512(_mm512_and_si512(lo, m4),
                                          _mm512_and_si512(_mm512_sllv_epi16(qh, k512_load(cnt_4_2)), m30));
            k->q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lo, 4), m4),
                                              _mm512_and_si512(_mm512_srlv_epi16(qh, k512_load(cnt_0_2)), m30));
        }
    } else if (kind == K_Q2_K) {
        const blk_q2_K *b = (const blk_q2_K *)p;
        k->d = k512_h2f(b->d);
        k->dmin = k512_h2f(b->dmin);
        const __m128i s8 = k512_load128(b->scales); /* scale: low nibble, min: high nibble */
        const __m128i n4 = _mm_set1_epi8(0x0F);
        k->off = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), n4));
        const __m512i s = _mm512_broadcast_i32x4(_mm_and_si128(s8, n4));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) k->sc[i] = _mm512_shuffle_epi8(s, k512_load(zx_per16[i]));
        two_bit_quants(b->qs, k);
    } else if (kind == K_Q3_K) {
        const blk_q3_K *b = (const blk_q3_K *)p;
        k->d = k512_h2f(b->d);
        k->dmin = 0.0f;
        const __m128i s8 = q3k_scales(b->scales);
        k->off = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2);
        signed_scales(s8, hx_per16, k);
        two_bit_quants(b->qs, k);
        high_bit(b->hmask, 4, k);
    } else {
        const blk_iq4_xs *b = (const blk_iq4_xs *)p;
        k->d = k512_h2f(b->d);
        k->dmin = 0.0f;
        k->off = _mm256_setzero_si256();
        int8_t ls[16] = {0};
        for (int j = 0; j < 8; j++)
            ls[j] = (int8_t)((((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3) << 4) - 32);
        signed_scales(k512_load128(ls), hx_per32, k);
        const __m512i table = _mm512_broadcast_i32x4(k512_load128(lt_iq4nl_values));
        /* sub-block j: qs[16j + l] low nibble quant 32j + l, high 32j + 16 + l;
         * register i takes bytes 32i..32i+15 twice, then 32i+16..32i+31 twice */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m512i raw = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                                         k512_widen(k512_load256(b->qs + 32 * i)));
            const __m512i v = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srlv_epi16(raw, k512_load(cnt_iq4)), m4));
            k->neg[i] = _mm512_movepi8_mask(v);
            k->q[i] = _mm512_abs_epi8(v);
        }
    }
}

/* acc += the dot product of one decoded super-block with one Q8_K block */
K512_INLINE __m256 kdot(int kind, const kd *k, const blk_q8_K *y, __m256 acc) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512(); /* two chains */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i yq = k512_load(y->qs + 64 * i);
        if (kind == K_IQ4_XS) yq = _mm512_mask_sub_epi8(yq, k->neg[i], _mm512_setzero_si512(), yq);
        const __m512i p = _mm512_maddubs_epi16(k->q[i], yq);
        if (i % 2 == 0)
            s0 = _mm512_dpwssd_epi32(s0, p, k->sc[i]);
        else
            s1 = _mm512_dpwssd_epi32(s1, p, k->sc[i]);
    }
    const __m512i s = _mm512_add_epi32(s0, s1);
    __m256i isum = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    if (kind == K_IQ4_XS) return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    const __m256i moff = _mm256_madd_epi16(k->off, k512_load256(y->bsums));
    if (kind == K_Q6_K || kind == K_Q3_K) {
        isum = _mm256_sub_epi32(isum, moff);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(moff), _mm256_set1_ps(k->dmin * y->d), acc);
}

/* RM rows x RN tokens (both <= 4); each super-block of a row is decoded
 * once and used for every token while it is in registers. */
K512_INLINE void ktile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx, const char *y,
                       size_t by, float *s, size_t ldc) {
    const int64_t nb = n / QK_K;
    const size_t xs = kblk_bytes(kind);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            kd k;
            kdecode(kind, x + r * bx + b * xs, &k);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) acc[r][c] = kdot(kind, &k, (const blk_q8_K *)(y + c * by) + b, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        if (RM == 4) {
            _mm_storeu_ps(s + c * ldc, k512_hsum4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
        } else {
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) s[c * ldc + r] = k512_hsum(acc[r][c]);
        }
    }
}

#ifndef K512_RM
#define K512_RM 4 /* rows of a batch tile */
#endif
#ifndef K512_RN
#define K512_RN 4 /* tokens of a batch tile */
#endif
#ifndef K512_ROWS1
#define K512_ROWS1 4 /* rows per call for a single token */
#endif
_Static_assert(K512_RM == 4 && K512_ROWS1 == 4 && K512_RN <= 4, "ktile stores 4 rows at once");

#define DEFINE_K512(name, kind)                                                                    \
    static void name##_full(int64_t n, const char *x, size_t bx, const char *y, size_t by, float *s, \
                            size_t ldc) {                                                          \
        ktile(kind, K512_RM, K512_RN, n, x, bx, y, by, s, ldc);                                    \
    }                                                                                              \
    static void name##_rows(int64_t n, const char *x, size_t bx, const char *y, float *s) {        \
        ktile(kind, K512_RM, 1, n, x, bx, y, 0, s, 1);                                             \
    }                                                                                              \
    static void name##_cols(int64_t n, const char *x, const char *y, size_t by, float *s, size_t ldc) { \
        ktile(kind, 1, K512_RN, n, x, 0, y, by, s, ldc);                                           \
    }                                                                                              \
    static void name##_one(int64_t n, const char *x, const char *y, float *s) {                    \
        ktile(kind, 1, 1, n, x, 0, y, 0, s, 1);                                                    \
    }                                                                                              \
    static void name##_tile(int64_t n, const void *vx, size_t bx, const void *vy, size_t by,       \
                            const float *aux, size_t ld, float *s, size_t ldc, int nr, int nc) {   \
        const char *x = vx, *y = vy;                                                               \
        (void)aux;                                                                                 \
        (void)ld;                                                                                  \
        if (nr == K512_RM && nc == K512_RN) {                                                      \
            name##_full(n, x, bx, y, by, s, ldc);                                                  \
        } else if (nr == K512_RM) {                                                                \
            for (int c = 0; c < nc; c++) name##_rows(n, x, bx, y + c * by, s + c * ldc);           \
        } else if (nc == K512_RN) {                                                                \
            for (int r = 0; r < nr; r++) name##_cols(n, x + r * bx, y, by, s + r, ldc);            \
        } else {                                                                                   \
            for (int r = 0; r < nr; r++)                                                           \
                for (int c = 0; c < nc; c++) name##_one(n, x + r * bx, y + c * by, s + c * ldc + r); \
        }                                                                                          \
    }                                                                                              \
    static float name##_dot(int64_t n, const void *x, const void *y) {                             \
        float s;                                                                                   \
        name##_one(n, x, y, &s);                                                                   \
        return s;                                                                                  \
    }

DEFINE_K512(q4_K, K_Q4_K)
DEFINE_K512(q5_K, K_Q5_K)
DEFINE_K512(q6_K, K_Q6_K)
DEFINE_K512(q2_K, K_Q2_K)
DEFINE_K512(q3_K, K_Q3_K)
DEFINE_K512(iq4_xs, K_IQ4_XS)

#define SET_K512(T, name)                                                                          \
    do {                                                                                           \
        traits[T].vec_dot = name##_dot;                                                            \
        tiles[T] = (lt_tile){name##_tile, K512_RM, K512_RN, K512_ROWS1, false, LT_PREFETCH_ROWS};                    \
    } while (0)

/* The emulated build (see avx512_k_util.h) has its own name. */
#ifdef LT_K512_EMULATE
static void lt_kernels_k_avx512_emulated(lt_traits *traits, lt_tile *tiles)
#else
void lt_kernels_k_avx512(lt_traits *traits, lt_tile *tiles)
#endif
{
    SET_K512(LT_Q4_K, q4_K);
    SET_K512(LT_Q5_K, q5_K);
    SET_K512(LT_Q6_K, q6_K);
    SET_K512(LT_Q2_K, q2_K);
    SET_K512(LT_Q3_K, q3_K);
    SET_K512(LT_IQ4_XS, iq4_xs);
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_k_kernels;
#endif
