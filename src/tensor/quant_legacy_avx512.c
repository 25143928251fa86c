/* AVX-512 (VNNI) dot products and matmul tiles of the 32-element block
 * types: Q4_0, Q5_0, Q8_0, IQ4_NL (against Q8_0 activations) and Q4_1, Q5_1
 * (against Q8_1).
 *
 * A 512-bit register holds two consecutive blocks of a row. The weights are
 * made unsigned (Q4_0 as q, i.e. value + 8; Q5_0 value + 16; Q8_0 and IQ4_NL
 * value + 128) so that vpdpbusd (u8 x s8) applies directly; the offset is
 * taken back in integers, by starting each row's vpdpbusd from
 * -offset * sum(q_y), one vpdpbusd per token against the offset vector. So
 * every block's integer dot product is exact; its four int32 partial lanes
 * are converted and scaled by d_x * d_y, as in the AVX2 code, and summed in
 * float. The scale products of all rows of a step are one multiply: the
 * rows' half scales are packed into one vector and converted together. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "tensor/avx512_util.h"
#include "tensor/quant_impl.h"

enum { K_Q4_0, K_Q5_0, K_Q8_0, K_IQ4_NL, K_Q4_1, K_Q5_1 };

LT_INLINE size_t blk_bytes(int kind) {
    switch (kind) {
    case K_Q4_0: return sizeof(blk_q4_0);
    case K_Q5_0: return sizeof(blk_q5_0);
    case K_Q8_0: return sizeof(blk_q8_0);
    case K_IQ4_NL: return sizeof(blk_iq4_nl);
    case K_Q4_1: return sizeof(blk_q4_1);
    default: return sizeof(blk_q5_1);
    }
}

LT_INLINE int uses_q8_1(int kind) { return kind == K_Q4_1 || kind == K_Q5_1; }
/* The 4-bit kinds hold [b lo16 | b1 lo16 | b hi16 | b1 hi16] per register
 * (low nibbles, then high nibbles); Q8_0 holds [b | b1]. */
LT_INLINE int nibble_layout(int kind) { return kind != K_Q8_0; }
/* What was added to make the weights unsigned. */
LT_INLINE int weight_offset(int kind) {
    switch (kind) {
    case K_Q4_0: return 8;
    case K_Q5_0: return 16;
    case K_Q8_0: case K_IQ4_NL: return 128;
    default: return 0;
    }
}

LT_INLINE uint32_t ld16(const char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
LT_INLINE uint32_t ld32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The packed nibbles of blocks b (at p) and b1 (at p1; none when one). */
LT_INLINE __m512i nibbles64(const char *p, const char *p1, int one) {
    const __m128i a = loadu128(p);
    const __m256i t = one ? _mm256_zextsi128_si256(a) : _mm256_inserti128_si256(_mm256_castsi128_si256(a), loadu128(p1), 1);
    return _mm512_and_si512(join256(t, _mm256_srli_epi16(t, 4)), _mm512_set1_epi8(0x0F));
}

/* The fifth bits of blocks b and b1 as a byte mask in nibble layout. */
LT_INLINE __mmask64 fifth_bits(uint32_t h0, uint32_t h1) {
    return (__mmask64)((h0 & 0xFFFFu) | (uint64_t)(h1 & 0xFFFFu) << 16 | (uint64_t)(h0 >> 16) << 32 |
                       (uint64_t)(h1 >> 16) << 48);
}

/* Blocks b, b+1 of a weight row at p (only b when one) as unsigned bytes;
 * *dh gets their half scales (b's in the low 16 bits), *mh their mins. */
LT_INLINE __m512i weights2(int kind, const char *p, int one, uint32_t *dh, uint32_t *mh) {
    const size_t xs = blk_bytes(kind);
    const char *p1 = p + xs;
    *dh = ld16(p) | (one ? 0u : ld16(p1) << 16);
    if (uses_q8_1(kind)) *mh = ld16(p + 2) | (one ? 0u : ld16(p1 + 2) << 16);
    switch (kind) {
    case K_Q4_0:
        return nibbles64(p + 2, p1 + 2, one);
    case K_Q4_1:
        return nibbles64(p + 4, p1 + 4, one);
    case K_Q5_0:
    case K_Q5_1: {
        const size_t qh = kind == K_Q5_0 ? 2 : 4;
        const __m512i q = nibbles64(p + qh + 4, p1 + qh + 4, one);
        const __mmask64 k = fifth_bits(ld32(p + qh), one ? 0u : ld32(p1 + qh));
        return _mm512_mask_add_epi8(q, k, q, _mm512_set1_epi8(16));
    }
    case K_IQ4_NL: {
        /* the table of levels + 128 (as bytes: the sign bit flipped) */
        const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(loadu128(lt_iq4nl_values), _mm_set1_epi8((char)0x80)));
        return _mm512_shuffle_epi8(table, nibbles64(p + 2, p1 + 2, one));
    }
    default: { /* K_Q8_0 */
        const __m256i a = loadu256(p + 2);
        const __m512i q = one ? _mm512_zextsi256_si512(a) : join256(a, loadu256(p1 + 2));
        return _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
    }
    }
}

/* Blocks b, b+1 of an activation row at p in the weights' layout; *dh gets
 * their half scales, *sh (Q8_1) their s fields. */
LT_INLINE __m512i acts2(int kind, const char *p, int one, uint32_t *dh, uint32_t *sh) {
    const size_t ys = uses_q8_1(kind) ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const size_t qoff = uses_q8_1(kind) ? 4 : 2;
    *dh = ld16(p) | (one ? 0u : ld16(p + ys) << 16);
    if (uses_q8_1(kind)) *sh = ld16(p + 2) | (one ? 0u : ld16(p + ys + 2) << 16);
    const __m256i a = loadu256(p + qoff);
    const __m512i v = one ? _mm512_zextsi256_si512(a) : join256(a, loadu256(p + ys + qoff));
    return nibble_layout(kind) ? swap_mid_lanes(v) : v;
}

/* Up to 8 rows' packed half pairs -> 16 floats [r0 b, r0 b1, r1 b, ...]. */
LT_INLINE __m512 halves_to_ps(const uint32_t *h, const int RM) {
    uint64_t p[4] = {0, 0, 0, 0};
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) p[r / 2] |= (uint64_t)h[r] << (32 * (r % 2));
    if (RM <= 4)
        return _mm512_zextps256_ps512(_mm256_cvtph_ps(_mm_set_epi64x((long long)p[1], (long long)p[0])));
    return _mm512_cvtph_ps(_mm256_set_epi64x((long long)p[3], (long long)p[2], (long long)p[1], (long long)p[0]));
}

/* One half pair [b, b1] as floats repeated over the 16 lanes. */
LT_INLINE __m512 pair_bcast(uint32_t h) {
    return _mm512_castpd_ps(_mm512_broadcastsd_pd(_mm_castps_pd(_mm_cvtph_ps(_mm_cvtsi32_si128((int)h)))));
}

/* The permutation that spreads lanes 2r (block b) and 2r+1 (block b1) of
 * a scale vector over row r's lanes. */
LT_INLINE __m512i scale_index(int kind, int r) {
    const __m512i base = nibble_layout(kind) ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                                             : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_add_epi32(base, _mm512_set1_epi32(2 * r));
}

/* One step of ktile: blocks b, b+1 (only b when one) of RM rows x RN tokens. */
LT_INLINE void kstep(int kind, const int RM, const int RN, const int one, int64_t b, const char *x, size_t bx,
                     const char *y, size_t by, __m512 acc[8][4], __m512 corr[4]) {
    const size_t xs = blk_bytes(kind);
    const size_t ys = uses_q8_1(kind) ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const int off = weight_offset(kind);
    __m512i w[8];
    uint32_t dh[8], mh[8];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) w[r] = weights2(kind, x + r * bx + b * xs, one, &dh[r], &mh[r]);
    const __m512 dx = halves_to_ps(dh, RM);
    const __m512 mx = uses_q8_1(kind) ? halves_to_ps(mh, RM) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        uint32_t ydh, ysh = 0;
        const __m512i q = acts2(kind, y + c * by + b * ys, one, &ydh, &ysh);
        const __m512i zero = _mm512_setzero_si512();
        const __m512i start =
            off ? _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8((char)off), q)) : zero;
        const __m512 sc = _mm512_mul_ps(dx, pair_bcast(ydh));
        if (uses_q8_1(kind)) corr[c] = _mm512_fmadd_ps(mx, pair_bcast(ysh), corr[c]);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            const __m512i i = _mm512_dpbusd_epi32(start, w[r], q);
            acc[r][c] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_permutexvar_ps(scale_index(kind, r), sc), acc[r][c]);
        }
    }
}

/* RM weight rows (RM <= 8) x RN tokens (RN <= 4). */
LT_INLINE void ktile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx, const char *y,
                     size_t by, float *s, size_t ldc) {
    const int64_t nb = n / 32;
    __m512 acc[8][4], corr[4];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[r][c] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) corr[c] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) kstep(kind, RM, RN, 0, b, x, bx, y, by, acc, corr);
    if (b < nb) kstep(kind, RM, RN, 1, b, x, bx, y, by, acc, corr);
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        float cr[16];
        if (uses_q8_1(kind)) _mm512_storeu_ps(cr, corr[c]);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++)
            s[c * ldc + r] = _mm512_reduce_add_ps(acc[r][c]) + (uses_q8_1(kind) ? cr[2 * r] + cr[2 * r + 1] : 0.0f);
    }
}

#ifndef KT_RM /* rows of a batch tile */
#define KT_RM 4
#endif
#ifndef KT_RN /* tokens of a batch tile */
#define KT_RN 4
#endif
#ifndef KT_RM1 /* rows per call for a single token */
#define KT_RM1 8
#endif

#define DEFINE_KTILES(name, kind)                                                                        \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                  \
        (void)aux;                                                                                       \
        (void)ld;                                                                                        \
        const char *x = vx, *y = vy;                                                                     \
        if (nc == 1 && nr == KT_RM1) {                                                                   \
            ktile(kind, KT_RM1, 1, n, x, bx, y, by, s, ldc);                                             \
        } else if (nr == KT_RM && nc == KT_RN) {                                                         \
            ktile(kind, KT_RM, KT_RN, n, x, bx, y, by, s, ldc);                                          \
        } else if (nr == KT_RM) {                                                                        \
            for (int c = 0; c < nc; c++) ktile(kind, KT_RM, 1, n, x, bx, y + c * by, by, s + c * ldc, ldc); \
        } else if (nc == KT_RN) {                                                                        \
            for (int r = 0; r < nr; r++) ktile(kind, 1, KT_RN, n, x + r * bx, bx, y, by, s + r, ldc);    \
        } else {                                                                                         \
            for (int r = 0; r < nr; r++)                                                                 \
                for (int c = 0; c < nc; c++)                                                             \
                    ktile(kind, 1, 1, n, x + r * bx, bx, y + c * by, by, s + c * ldc + r, ldc);          \
        }                                                                                                \
    }

DEFINE_KTILES(tile_q4_0, K_Q4_0)
DEFINE_KTILES(tile_q5_0, K_Q5_0)
DEFINE_KTILES(tile_q8_0, K_Q8_0)
DEFINE_KTILES(tile_iq4_nl, K_IQ4_NL)
DEFINE_KTILES(tile_q4_1, K_Q4_1)
DEFINE_KTILES(tile_q5_1, K_Q5_1)

#define DEFINE_KDOT(name, kind)                                       \
    static float name(int64_t n, const void *x, const void *y) {      \
        float s;                                                      \
        ktile(kind, 1, 1, n, x, 0, y, 0, &s, 1);                      \
        return s;                                                     \
    }

DEFINE_KDOT(dot_q4_0, K_Q4_0)
DEFINE_KDOT(dot_q5_0, K_Q5_0)
DEFINE_KDOT(dot_q8_0, K_Q8_0)
DEFINE_KDOT(dot_iq4_nl, K_IQ4_NL)
DEFINE_KDOT(dot_q4_1, K_Q4_1)
DEFINE_KDOT(dot_q5_1, K_Q5_1)

/* 16 int8 values times d, as floats: the products of the scalar
 * dequantisers (d * q with q a small integer), so bit-identical. */
LT_INLINE void scale16(__m128i q, __m512 d, float *dst) {
    _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
}

/* Dequantisers of the cold KV tier's types (read every step). */
static void q4_0_to_float(const void *src, float *dst, int64_t n) {
    const blk_q4_0 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        const __m128i q = loadu128(b[i].qs);
        scale16(_mm_sub_epi8(_mm_and_si128(q, lo4), eight), d, dst);
        scale16(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), eight), d, dst + 16);
    }
}

static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        scale16(loadu128(b[i].qs), d, dst);
        scale16(loadu128(b[i].qs + 16), d, dst + 16);
    }
}

void lt_kernels_legacy_avx512(lt_traits *traits, lt_tile *tiles) {
    static const struct {
        lt_type t;
        lt_tile_fn tile;
        float (*dot)(int64_t, const void *, const void *);
    } k[] = {
        {LT_Q4_0, tile_q4_0, dot_q4_0},       {LT_Q5_0, tile_q5_0, dot_q5_0}, {LT_Q8_0, tile_q8_0, dot_q8_0},
        {LT_IQ4_NL, tile_iq4_nl, dot_iq4_nl}, {LT_Q4_1, tile_q4_1, dot_q4_1}, {LT_Q5_1, tile_q5_1, dot_q5_1},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        traits[k[i].t].vec_dot = k[i].dot;
        tiles[k[i].t] = (lt_tile){k[i].tile, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    }
    traits[LT_Q4_0].to_float = q4_0_to_float;
    traits[LT_Q8_0].to_float = q8_0_to_float;
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_legacy_kernels;
#endif
