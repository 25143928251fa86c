/* AVX2 dot products and matmul tiles of the k-quants Q2_K..Q6_K and IQ4_XS
 * against Q8_K activations.
 *
 * A weight super-block is decoded into 8 vectors of 32 unsigned quants
 * (0..3, 0..7, 0..15, 0..31 or 0..63), one int16 scale vector per 32 quants
 * (lanes 0-7 carry the scale of the first 16 quants, lanes 8-15 that of the
 * other 16, matching the lanes of maddubs' output), and an int16 offset per
 * 16 quants that multiplies Q8_K's per-16 sums: the mins of Q2_K/Q4_K/Q5_K
 * (scaled by dmin), or 32*scale (Q6_K) and 4*scale (Q3_K), whose quants are
 * stored with that offset. IQ4_XS's table values are signed: its vectors
 * hold their magnitudes and the values themselves give the signs. Integer
 * sums are exact, so the result differs from the scalar code only by float
 * rounding. */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"

enum { K_Q4_K, K_Q5_K, K_Q6_K, K_Q2_K, K_Q3_K, K_IQ4_XS };

typedef struct {
    __m256i q[8];
    __m256i sgn[8]; /* IQ4_XS only */
    __m256i sc[8];  /* IQ4_XS: the scale of each sub-block */
    __m256i sc2[4]; /* the others: scales of sub-blocks 2i, 2i+1 (see kpair) */
    __m256i off;
    float d, dmin;
} kdec;

LT_INLINE size_t kblk_bytes(int kind) {
    switch (kind) {
    case K_Q4_K: return sizeof(blk_q4_K);
    case K_Q5_K: return sizeof(blk_q5_K);
    case K_Q6_K: return sizeof(blk_q6_K);
    case K_Q2_K: return sizeof(blk_q2_K);
    case K_Q3_K: return sizeof(blk_q3_K);
    default: return sizeof(blk_iq4_xs);
    }
}

/* Selects int16 lanes of s16 (the same 8 scales in both 128-bit lanes):
 * low lane [a x4, b x4], high lane [c x4, d x4]. */
LT_INLINE __m256i pick4(__m256i s16, int a, int b, int c, int d) {
    const short ia = (short)(0x0101 * 2 * a + 0x0100), ib = (short)(0x0101 * 2 * b + 0x0100);
    const short ic = (short)(0x0101 * 2 * c + 0x0100), id = (short)(0x0101 * 2 * d + 0x0100);
    return _mm256_shuffle_epi8(s16, _mm256_setr_epi16(ia, ia, ia, ia, ib, ib, ib, ib, ic, ic, ic, ic, id, id, id, id));
}

/* Pair scale vectors of the per-16 kinds from the 8 scales of half h: sub-
 * blocks 2i, 2i+1 of the half cover groups 4i..4i+3. */
LT_INLINE void pairs16(__m256i s16, __m256i *sc2) {
    sc2[0] = pick4(s16, 0, 2, 1, 3);
    sc2[1] = pick4(s16, 4, 6, 5, 7);
}

/* 8 bytes -> 8 int16 (sign- or zero-extended) in both 128-bit lanes */
LT_INLINE __m256i bcast8_epi16(const void *p, int is_signed) {
    uint64_t v;
    memcpy(&v, p, 8);
    const __m128i b = _mm_cvtsi64_si128((long long)v);
    return _mm256_broadcastsi128_si256(is_signed ? _mm_cvtepi8_epi16(b) : _mm_cvtepu8_epi16(b));
}

/* The 12-byte Q3_K scale field -> 16 signed scales (stored +32). Scale s
 * has its low nibble in nibble s/8 of byte s%8 and its top two bits at bit
 * 2(s/4) of byte 8 + s%4. */
LT_INLINE void q3k_scales(const uint8_t *p, int8_t out[16]) {
    uint32_t w[3], o[4];
    memcpy(w, p, 12);
    o[0] = (w[0] & 0x0f0f0f0fu) | (w[2] & 0x03030303u) << 4;
    o[1] = (w[1] & 0x0f0f0f0fu) | ((w[2] >> 2) & 0x03030303u) << 4;
    o[2] = ((w[0] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 4) & 0x03030303u) << 4;
    o[3] = ((w[1] >> 4) & 0x0f0f0f0fu) | ((w[2] >> 6) & 0x03030303u) << 4;
    _mm_storeu_si128((__m128i *)out, _mm_sub_epi8(loadu128(o), _mm_set1_epi8(32)));
}

/* The 12-byte Q4_K/Q5_K scale field -> 16 bytes: 8 scales, then 8 mins.
 * Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits;
 * bytes 8-11 hold scales 4-7 (low nibble) and mins 4-7 (high nibble) whose
 * top two bits are the top bits of bytes 0-3 and 4-7. */
LT_INLINE __m128i k4_scales_mins(const uint8_t *p) {
    uint32_t w[3], o[4];
    memcpy(w, p, 12);
    o[0] = w[0] & 0x3f3f3f3fu;
    o[1] = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 6) & 0x03030303u) << 4;
    o[2] = w[1] & 0x3f3f3f3fu;
    o[3] = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 6) & 0x03030303u) << 4;
    return loadu128(o);
}

LT_INLINE void kdecode(int kind, const char *p, kdec *k) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (kind == K_Q4_K || kind == K_Q5_K) {
        const uint16_t *dd = (const uint16_t *)p; /* d, dmin lead both layouts */
        const uint8_t *scales = (const uint8_t *)p + 4;
        const uint8_t *qs = kind == K_Q4_K ? ((const blk_q4_K *)p)->qs : ((const blk_q5_K *)p)->qs;
        k->d = h2f(dd[0]);
        k->dmin = h2f(dd[1]);
        const __m128i sm = k4_scales_mins(scales);
        const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const __m256i m16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)));
        /* mins per 16 quants: m0 m0 m1 m1 ... m7 m7 (int16) */
        k->off = _mm256_shuffle_epi8(m16, _mm256_setr_epi8(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7,
                                                           8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14,
                                                           15, 14, 15));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) k->sc2[i] = pick4(s16, 2 * i, 2 * i + 1, 2 * i, 2 * i + 1);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i v = loadu256(qs + 32 * c);
            k->q[2 * c] = _mm256_and_si256(v, m4);
            k->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        if (kind == K_Q5_K) {
            const __m256i qh = loadu256(((const blk_q5_K *)p)->qh);
            const __m256i one = _mm256_set1_epi8(1);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, j), one);
                k->q[j] = _mm256_or_si256(k->q[j], _mm256_slli_epi16(bit, 4));
            }
        }
    } else if (kind == K_Q2_K || kind == K_Q3_K) {
        const uint8_t *qs = kind == K_Q2_K ? ((const blk_q2_K *)p)->qs : ((const blk_q3_K *)p)->qs;
        const __m256i m3 = _mm256_set1_epi8(3);
        int8_t s8[16];
        if (kind == K_Q2_K) {
            const blk_q2_K *b = (const blk_q2_K *)p;
            k->d = h2f(b->d);
            k->dmin = h2f(b->dmin);
            const __m128i raw = loadu128(b->scales);
            _mm_storeu_si128((__m128i *)s8, _mm_and_si128(raw, _mm_set1_epi8(0x0F)));
            k->off = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
        } else {
            const blk_q3_K *b = (const blk_q3_K *)p;
            k->d = h2f(b->d);
            k->dmin = 0.0f;
            q3k_scales(b->scales, s8);
            k->off = _mm256_slli_epi16(_mm256_cvtepi8_epi16(loadu128(s8)), 2);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i v = loadu256(qs + 32 * h);
#pragma GCC unroll 4
            for (int kk = 0; kk < 4; kk++) k->q[4 * h + kk] = _mm256_and_si256(_mm256_srli_epi16(v, 2 * kk), m3);
            pairs16(bcast8_epi16(s8 + 8 * h, 1), &k->sc2[2 * h]);
        }
        if (kind == K_Q3_K) { /* the high bit of quant 32j + l is bit j of hmask[l] */
            const __m256i hm = loadu256(((const blk_q3_K *)p)->hmask);
            const __m256i one = _mm256_set1_epi8(1);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(hm, j), one);
                k->q[j] = _mm256_or_si256(k->q[j], _mm256_slli_epi16(bit, 2));
            }
        }
    } else if (kind == K_IQ4_XS) {
        const blk_iq4_xs *b = (const blk_iq4_xs *)p;
        const __m256i table = _mm256_broadcastsi128_si256(loadu128(lt_iq4nl_values));
        k->d = h2f(b->d);
        k->dmin = 0.0f;
        k->off = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const int ls = (((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3) << 4) - 32;
            const __m256i v = _mm256_shuffle_epi8(table, nibbles32(b->qs + 16 * j));
            k->sgn[j] = v;
            k->q[j] = _mm256_sign_epi8(v, v);
            k->sc[j] = _mm256_set1_epi16((short)ls);
        }
    } else {
        const blk_q6_K *b = (const blk_q6_K *)p;
        const __m256i m30 = _mm256_set1_epi8(0x30);
        k->d = h2f(b->d);
        k->dmin = 0.0f;
        k->off = _mm256_slli_epi16(_mm256_cvtepi8_epi16(loadu128(b->scales)), 5);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = loadu256(b->ql + 64 * h), l1 = loadu256(b->ql + 64 * h + 32);
            const __m256i qh = loadu256(b->qh + 32 * h);
            k->q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            k->q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            k->q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
            k->q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            /* 8 int16 scales of this half in both 128-bit lanes; quants
             * 32k..32k+15 take scale 2k (low lane), the next 16 scale 2k+1 */
            uint64_t s8;
            memcpy(&s8, b->scales + 8 * h, 8);
            const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_cvtsi64_si128((long long)s8)));
            pairs16(s16, &k->sc2[2 * h]);
        }
    }
}

/* acc += the dot product of one decoded super-block with one Q8_K block.
 * The maddubs sums of the unsigned kinds are small (|p| <= 2*63*127), so two
 * sub-blocks are added pairwise (hadd: per 128-bit lane, 4 sums of each)
 * before one madd with their scales, saving a quarter of the multiplies. */
LT_INLINE __m256 kpair(int kind, const kdec *k, const blk_q8_K *y, __m256 acc) {
    __m256i isum = _mm256_setzero_si256();
    if (kind == K_IQ4_XS) {
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i yq = _mm256_sign_epi8(loadu256(y->qs + 32 * j), k->sgn[j]);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(k->q[j], yq), k->sc[j]));
        }
    } else {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256i p0 = _mm256_maddubs_epi16(k->q[2 * i], loadu256(y->qs + 64 * i));
            const __m256i p1 = _mm256_maddubs_epi16(k->q[2 * i + 1], loadu256(y->qs + 64 * i + 32));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_hadd_epi16(p0, p1), k->sc2[i]));
        }
    }
    if (kind == K_IQ4_XS) return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    const __m256i moff = _mm256_madd_epi16(k->off, loadu256(y->bsums));
    if (kind == K_Q6_K || kind == K_Q3_K) {
        isum = _mm256_sub_epi32(isum, moff);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(k->d * y->d), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(moff), _mm256_set1_ps(k->dmin * y->d), acc);
}

/* RM rows x RN tokens; each super-block of a row is decoded once per tile. */
LT_INLINE void ktile(int kind, const int RM, const int RN, int64_t n, const char *x, size_t bx,
                     const char *y, size_t by, float *s, size_t ldc) {
    const int64_t nb = n / QK_K;
    const size_t xs = kblk_bytes(kind);
    __m256 acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 8
        for (int c = 0; c < RN; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            kdec k;
            kdecode(kind, x + r * bx + b * xs, &k);
#pragma GCC unroll 8
            for (int c = 0; c < RN; c++)
                acc[r][c] = kpair(kind, &k, (const blk_q8_K *)(y + c * by) + b, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        if (RN % 4 == 0) {
#pragma GCC unroll 2
            for (int c = 0; c < RN; c += 4)
                store4_strided(s + c * ldc + r, ldc, hsum4_ps(acc[r][c], acc[r][c + 1], acc[r][c + 2], acc[r][c + 3]));
        } else {
#pragma GCC unroll 8
            for (int c = 0; c < RN; c++) s[c * ldc + r] = hsum_ps(acc[r][c]);
        }
    }
}

#ifndef KT_RM
#define KT_RM 2
#endif
#ifndef KT_RN
#define KT_RN 8
#endif
#ifndef KT_RM1 /* rows per call for a single token */
#define KT_RM1 2
#endif

#define DEFINE_KTILES(name, kind)                                                                 \
    static void name##_full(int64_t n, const char *x, size_t bx, const char *y, size_t by,       \
                            float *s, size_t ldc) {                                               \
        ktile(kind, KT_RM, KT_RN, n, x, bx, y, by, s, ldc);                                       \
    }                                                                                             \
    static void name##_rows(int64_t n, const char *x, size_t bx, const char *y, float *s) {       \
        ktile(kind, KT_RM, 1, n, x, bx, y, 0, s, 1);                                              \
    }                                                                                             \
    static void name##_cols(int64_t n, const char *x, const char *y, size_t by, float *s,         \
                            size_t ldc) {                                                         \
        ktile(kind, 1, KT_RN, n, x, 0, y, by, s, ldc);                                            \
    }                                                                                             \
    static void name##_one(int64_t n, const char *x, const char *y, float *s) {                   \
        ktile(kind, 1, 1, n, x, 0, y, 0, s, 1);                                                   \
    }                                                                                             \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by,            \
                     const float *aux, size_t ld, float *s, size_t ldc, int nr, int nc) {         \
        const char *x = vx, *y = vy;                                                              \
        (void)aux;                                                                                \
        (void)ld;                                                                                 \
        if (nr == KT_RM && nc == KT_RN) {                                                         \
            name##_full(n, x, bx, y, by, s, ldc);                                                 \
        } else if (nr == KT_RM) {                                                                 \
            for (int c = 0; c < nc; c++) name##_rows(n, x, bx, y + c * by, s + c * ldc);          \
        } else if (nc == KT_RN) {                                                                 \
            for (int r = 0; r < nr; r++) name##_cols(n, x + r * bx, y, by, s + r, ldc);           \
        } else {                                                                                  \
            for (int r = 0; r < nr; r++)                                                          \
                for (int c = 0; c < nc; c++) name##_one(n, x + r * bx, y + c * by, s + c * ldc + r); \
        }                                                                                         \
    }                                                                                             \
    float lt_##name##_dot_avx2(int64_t n, const void *x, const void *y) {                         \
        float s;                                                                                  \
        name##_one(n, x, y, &s);                                                                  \
        return s;                                                                                 \
    }

DEFINE_KTILES(q4_K, K_Q4_K)
DEFINE_KTILES(q5_K, K_Q5_K)
DEFINE_KTILES(q6_K, K_Q6_K)
DEFINE_KTILES(q2_K, K_Q2_K)
DEFINE_KTILES(q3_K, K_Q3_K)
DEFINE_KTILES(iq4_xs, K_IQ4_XS)

void lt_tiles_k_avx2(lt_tile *t) {
    t[LT_Q4_K] = (lt_tile){q4_K, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    t[LT_Q5_K] = (lt_tile){q5_K, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    t[LT_Q6_K] = (lt_tile){q6_K, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    t[LT_Q2_K] = (lt_tile){q2_K, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    t[LT_Q3_K] = (lt_tile){q3_K, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
    t[LT_IQ4_XS] = (lt_tile){iq4_xs, KT_RM, KT_RN, KT_RM1, false, LT_PREFETCH_ROWS};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_kernels;
#endif
