/* AVX2 matmul tiles on weights interleaved by 8 rows (tensor/repack.h):
 * one vector lane per row, so a block of 8 rows needs no horizontal sums,
 * one scale conversion and one FMA, and the activation bytes are broadcast
 * once for the 8 rows. Per row-block this is about half the instructions
 * of the row-major tiles, which bound 4-bit decode on AVX2.
 *
 * Group block (8 rows, 32 columns): 8 half scales, then the quants in
 * 4-byte chunks, chunk j of row i at byte 16 + 32 j + 4 i. Chunk j holds a
 * row's elements 4j..4j+3 (Q8_0), or for Q4_0 its packed bytes 4j..4j+3:
 * low nibbles = elements 4j..4j+3, high nibbles = 16+4j..16+4j+3.
 *
 * Q4_0 uses its quants unsigned (q + 8) and subtracts 8 d_x sT per block
 * (sT = d_y * sum(q_y), from the activation tables); its maddubs sums stay
 * in int16 across a block (8 x 2 x 15 x 127 < 2^15). Q8_0 multiplies |x|
 * with sign(y, x) (a weight may be -128) and widens every product pair. */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"
#include "tensor/x8_k_util.h"

#define GROUP_Q4 (8 * sizeof(blk_q4_0))
#define GROUP_Q8 (8 * sizeof(blk_q8_0))

/* Each group is one stream, which the hardware prefetcher follows, but on
 * one thread it does not run far enough ahead of these kernels; a software
 * prefetch of the bytes X8_AHEAD beyond the block being read closes most of
 * the gap (Zen 4: Q4_0 decode on one thread about 10% faster). */
#ifndef X8_AHEAD
#define X8_AHEAD 1024
#endif
LT_INLINE void x8_prefetch(const char *block, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(block + X8_AHEAD + o, _MM_HINT_T0);
}

LT_INLINE __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Q4_0 in plain variables, not arrays: gcc kept its arrays of vectors on
 * the stack, which put a store and a load into every accumulation. */

/* acc + d_x (d_y sum - 8 sT) for one token of one block: dy = d_y and
 * corr = -8 sT broadcast (q4_tok_scales), which the groups of a tile share. */
LT_INLINE void q4_tok_scales(const float *d, const float *sT, __m256 *dy, __m256 *corr) {
    *dy = _mm256_broadcast_ss(d);
    *corr = _mm256_mul_ps(_mm256_broadcast_ss(sT), _mm256_set1_ps(-8.0f));
}
LT_INLINE __m256 q4_acc(__m256 acc, __m256 dx, __m256i sum16, __m256 dy, __m256 corr) {
    const __m256i sum = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(dx, _mm256_fmadd_ps(dy, _mm256_cvtepi32_ps(sum), corr), acc);
}

/* One token's int16 products with one chunk's low and high nibbles. */
LT_INLINE __m256i q4_chunk(__m256i lo, __m256i hi, const int8_t *qy) {
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(qy)), _mm256_maddubs_epi16(hi, bcast4(qy + 16)));
}

/* One group of 8 rows x RN <= 4 tokens, chunk-outer: one chunk's nibbles
 * serve every token, so only the RN int16 sums and RN accumulators stay
 * live (all eight nibble vectors at once made gcc spill the accumulators,
 * and every block paid a store-to-load round trip on them). Plain
 * variables again: gcc keeps arrays of vectors here on the stack. */
LT_INLINE void q4_0_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, const float *aux,
                       size_t ld, float *s, size_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const float *sT = aux + nb * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q4;
        const int8_t *y0 = (const int8_t *)(y + (size_t)b * sizeof(blk_q8_0) + 2);
        const int8_t *y1 = y0 + by, *y2 = y0 + 2 * by, *y3 = y0 + 3 * by;
        x8_prefetch(blk, GROUP_Q4);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i w = loadu256(blk + 16 + 32 * j);
            const __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            s0 = _mm256_add_epi16(s0, q4_chunk(lo, hi, y0 + 4 * j));
            if (RN > 1) s1 = _mm256_add_epi16(s1, q4_chunk(lo, hi, y1 + 4 * j));
            if (RN > 2) s2 = _mm256_add_epi16(s2, q4_chunk(lo, hi, y2 + 4 * j));
            if (RN > 3) s3 = _mm256_add_epi16(s3, q4_chunk(lo, hi, y3 + 4 * j));
        }
        const __m256 dx = _mm256_cvtph_ps(loadu128(blk));
        const float *d = aux + b * ld, *t = sT + b * ld;
        __m256 dy, corr;
        q4_tok_scales(d, t, &dy, &corr);
        a0 = q4_acc(a0, dx, s0, dy, corr);
        if (RN > 1) q4_tok_scales(d + 1, t + 1, &dy, &corr), a1 = q4_acc(a1, dx, s1, dy, corr);
        if (RN > 2) q4_tok_scales(d + 2, t + 2, &dy, &corr), a2 = q4_acc(a2, dx, s2, dy, corr);
        if (RN > 3) q4_tok_scales(d + 3, t + 3, &dy, &corr), a3 = q4_acc(a3, dx, s3, dy, corr);
    }
    _mm256_storeu_ps(s, a0);
    if (RN > 1) _mm256_storeu_ps(s + ldc, a1);
    if (RN > 2) _mm256_storeu_ps(s + 2 * ldc, a2);
    if (RN > 3) _mm256_storeu_ps(s + 3 * ldc, a3);
}

/* Two groups (x, x + gs) x 4 tokens: each activation broadcast serves 16
 * rows, so a maddubs needs half a broadcast load instead of one (the FP
 * load path, about 1.5 broadcasts per cycle on Zen 3, bounded the one-group
 * tile). The 8 int16 sums and the nibbles fill the register file; the 8
 * float accumulators live in acc[] and are touched once per block.
 * Q4G2_TOK: one token's products with the two groups' low (or high: off
 * 16) nibbles. */
#define Q4G2_TOK(t, yt, a0, a1, off)                                                                 \
    do {                                                                                             \
        const __m256i yv = bcast4((yt) + (off) + 4 * j);                                             \
        s0##t = _mm256_add_epi16(s0##t, _mm256_maddubs_epi16(a0, yv));                               \
        s1##t = _mm256_add_epi16(s1##t, _mm256_maddubs_epi16(a1, yv));                               \
        __asm__("" : "+x"(s0##t), "+x"(s1##t)); /* no reassociation: it spilled the sums */           \
    } while (0)
static LT_NOINLINE void q4_0_x8_g2(int64_t nb, const char *x, size_t gs, const char *y, size_t by, const float *aux,
                                   size_t ld, float *s, size_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk0 = x + (size_t)b * GROUP_Q4, *blk1 = blk0 + gs;
        const int8_t *y0 = (const int8_t *)(y + (size_t)b * sizeof(blk_q8_0) + 2);
        const int8_t *y1 = y0 + by, *y2 = y0 + 2 * by, *y3 = y0 + 3 * by;
        __m256i s00 = _mm256_setzero_si256(), s01 = s00, s02 = s00, s03 = s00;
        __m256i s10 = s00, s11 = s00, s12 = s00, s13 = s00;
#pragma GCC unroll 1
        for (int j = 0; j < 4; j++) {
            /* the low nibbles for all 4 tokens, then the high: fewer live vectors */
            const __m256i w0 = loadu256(blk0 + 16 + 32 * j), w1 = loadu256(blk1 + 16 + 32 * j);
            const __m256i l0 = _mm256_and_si256(w0, m4), l1 = _mm256_and_si256(w1, m4);
            Q4G2_TOK(0, y0, l0, l1, 0);
            Q4G2_TOK(1, y1, l0, l1, 0);
            Q4G2_TOK(2, y2, l0, l1, 0);
            Q4G2_TOK(3, y3, l0, l1, 0);
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), m4);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), m4);
            Q4G2_TOK(0, y0, h0, h1, 16);
            Q4G2_TOK(1, y1, h0, h1, 16);
            Q4G2_TOK(2, y2, h0, h1, 16);
            Q4G2_TOK(3, y3, h0, h1, 16);
        }
        const __m256 dx0 = _mm256_cvtph_ps(loadu128(blk0)), dx1 = _mm256_cvtph_ps(loadu128(blk1));
        const float *d = aux + b * ld, *sT = aux + nb * ld + b * ld;
        __m256 dy, corr;
        q4_tok_scales(d, sT, &dy, &corr);
        acc[0] = q4_acc(acc[0], dx0, s00, dy, corr), acc[4] = q4_acc(acc[4], dx1, s10, dy, corr);
        q4_tok_scales(d + 1, sT + 1, &dy, &corr);
        acc[1] = q4_acc(acc[1], dx0, s01, dy, corr), acc[5] = q4_acc(acc[5], dx1, s11, dy, corr);
        q4_tok_scales(d + 2, sT + 2, &dy, &corr);
        acc[2] = q4_acc(acc[2], dx0, s02, dy, corr), acc[6] = q4_acc(acc[6], dx1, s12, dy, corr);
        q4_tok_scales(d + 3, sT + 3, &dy, &corr);
        acc[3] = q4_acc(acc[3], dx0, s03, dy, corr), acc[7] = q4_acc(acc[7], dx1, s13, dy, corr);
    }
    for (int t = 0; t < 4; t++) {
        _mm256_storeu_ps(s + t * ldc, acc[t]);
        _mm256_storeu_ps(s + t * ldc + 8, acc[4 + t]);
    }
}
#undef Q4G2_TOK

/* Q8_0: RG groups of 8 rows (group g at x + g*gs) x RN tokens; j-outer, so
 * that |x| and the chunk serve every token (here gcc keeps the arrays in
 * registers). */
LT_INLINE void q8_0_x8_groups(const int RG, const int RN, int64_t nb, const char *x, size_t gs, const char *y, size_t by,
                       const float *aux, size_t ld, float *s, size_t ldc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) acc[g][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = x + (size_t)b * GROUP_Q8;
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++) x8_prefetch(blk + g * gs, GROUP_Q8);
        __m256i sum[2][4];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) sum[g][c] = _mm256_setzero_si256();
#pragma GCC unroll 2 /* not 8: gcc then reassociates the sums and spills the products */
        for (int j = 0; j < 8; j++) {
            __m256i w[2], a[2];
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++) {
                w[g] = loadu256(blk + g * gs + 16 + 32 * j);
                a[g] = _mm256_sign_epi8(w[g], w[g]);
            }
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const __m256i qy = bcast4((const int8_t *)(y + c * by + (size_t)b * sizeof(blk_q8_0) + 2) + 4 * j);
#pragma GCC unroll 2
                for (int g = 0; g < RG; g++)
                    sum[g][c] = _mm256_add_epi32(
                        sum[g][c], _mm256_madd_epi16(_mm256_maddubs_epi16(a[g], _mm256_sign_epi8(qy, w[g])), ones));
            }
        }
        __m256 dx[2];
#pragma GCC unroll 2
        for (int g = 0; g < RG; g++) dx[g] = _mm256_cvtph_ps(loadu128(blk + g * gs));
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256 dy = _mm256_broadcast_ss(aux + b * ld + c);
#pragma GCC unroll 2
            for (int g = 0; g < RG; g++)
                acc[g][c] = _mm256_fmadd_ps(_mm256_mul_ps(dx[g], dy), _mm256_cvtepi32_ps(sum[g][c]), acc[g][c]);
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < RG; g++)
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) _mm256_storeu_ps(s + c * ldc + 8 * g, acc[g][c]);
}

LT_INLINE void q8_0_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, const float *aux,
                       size_t ld, float *s, size_t ldc) {
    q8_0_x8_groups(1, RN, nb, x, 0, y, by, aux, ld, s, ldc);
}

static LT_NOINLINE void q8_0_x8_pair(int64_t nb, const char *x, size_t gs, const char *y, const float *aux, float *s) {
    q8_0_x8_groups(2, 1, nb, x, gs, y, 0, aux, 1, s, 0);
}

/* ---- Q4_K (tensor/repack.c gives the group layout) ---- */
#define GROUP_Q4K (8 * sizeof(blk_q4_K))

/* 8 bytes (one value per row) -> each row's lane holds it in both int16 halves. */
LT_INLINE __m256i k4x8_scale16(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return _mm256_shuffle_epi8(_mm256_set1_epi64x(v),
                               _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1, 4, -1, 4, -1,
                                                5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7, -1));
}

/* The scaled int32 sums sum_j sc_j q.y_j of NT <= 2 tokens (quants qy0,
 * qy1) against a group super-block, chunk-outer: one chunk's nibbles
 * serve both tokens. The int16 sums of a sub-block stay below
 * 8 x 2 x 15 x 127 < 2^15. */
LT_INLINE void k4x8_isums(const int NT, const char *g, const uint8_t *scv, const int8_t *qy0, const int8_t *qy1,
                          __m256i *is0, __m256i *is1) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i i0 = _mm256_setzero_si256(), i1 = i0;
#pragma GCC unroll 1
    for (int k = 0; k < 4; k++) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, b0 = a0, b1 = a0;
#pragma GCC unroll 2
        for (int c = 0; c < 8; c++) {
            const __m256i w = loadu256(g + 128 + 32 * (8 * k + c));
            const __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            const int o = 64 * k + 4 * c;
            a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(lo, bcast4(qy0 + o)));
            a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(hi, bcast4(qy0 + o + 32)));
            if (NT > 1) {
                b0 = _mm256_add_epi16(b0, _mm256_maddubs_epi16(lo, bcast4(qy1 + o)));
                b1 = _mm256_add_epi16(b1, _mm256_maddubs_epi16(hi, bcast4(qy1 + o + 32)));
            }
        }
        const __m256i sl = k4x8_scale16(scv + 16 * k), sh = k4x8_scale16(scv + 16 * k + 8);
        i0 = _mm256_add_epi32(i0, _mm256_add_epi32(_mm256_madd_epi16(a0, sl), _mm256_madd_epi16(a1, sh)));
        if (NT > 1) i1 = _mm256_add_epi32(i1, _mm256_add_epi32(_mm256_madd_epi16(b0, sl), _mm256_madd_epi16(b1, sh)));
    }
    *is0 = i0;
    if (NT > 1) *is1 = i1;
}

/* Two groups (g0, g1) x two tokens: k4x8_isums with each broadcast
 * serving 16 rows (see q4_0_x8_g2). Integer sums, so any order gives the
 * same result; the int16 sums are pinned by an empty asm (gcc spilled them). */
#define K4G2_TOK(t, qy)                                                                              \
    do {                                                                                             \
        const __m256i yl = bcast4((qy) + o), yh = bcast4((qy) + o + 32);                             \
        a0##t = _mm256_add_epi16(a0##t, _mm256_maddubs_epi16(l0, yl));                               \
        a1##t = _mm256_add_epi16(a1##t, _mm256_maddubs_epi16(l1, yl));                               \
        b0##t = _mm256_add_epi16(b0##t, _mm256_maddubs_epi16(h0, yh));                               \
        b1##t = _mm256_add_epi16(b1##t, _mm256_maddubs_epi16(h1, yh));                               \
        __asm__("" : "+x"(a0##t), "+x"(a1##t), "+x"(b0##t), "+x"(b1##t));                            \
    } while (0)
static LT_NOINLINE void k4x8_isums_g2(const char *g0, const char *g1, const uint8_t *scv0, const uint8_t *scv1,
                                      const int8_t *qy0, const int8_t *qy1, __m256i is[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    is[0] = is[1] = is[2] = is[3] = _mm256_setzero_si256(); /* (group, token): 00 10 01 11 */
#pragma GCC unroll 1
    for (int k = 0; k < 4; k++) {
        __m256i a00 = _mm256_setzero_si256(), a10 = a00, b00 = a00, b10 = a00;
        __m256i a01 = a00, a11 = a00, b01 = a00, b11 = a00;
#pragma GCC unroll 1
        for (int c = 0; c < 8; c++) {
            const __m256i w0 = loadu256(g0 + 128 + 32 * (8 * k + c)), w1 = loadu256(g1 + 128 + 32 * (8 * k + c));
            const __m256i l0 = _mm256_and_si256(w0, m4), h0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), m4);
            const __m256i l1 = _mm256_and_si256(w1, m4), h1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), m4);
            const int o = 64 * k + 4 * c;
            K4G2_TOK(0, qy0);
            K4G2_TOK(1, qy1);
        }
        const __m256i sl0 = k4x8_scale16(scv0 + 16 * k), sh0 = k4x8_scale16(scv0 + 16 * k + 8);
        const __m256i sl1 = k4x8_scale16(scv1 + 16 * k), sh1 = k4x8_scale16(scv1 + 16 * k + 8);
        is[0] = _mm256_add_epi32(is[0], _mm256_add_epi32(_mm256_madd_epi16(a00, sl0), _mm256_madd_epi16(b00, sh0)));
        is[1] = _mm256_add_epi32(is[1], _mm256_add_epi32(_mm256_madd_epi16(a10, sl1), _mm256_madd_epi16(b10, sh1)));
        is[2] = _mm256_add_epi32(is[2], _mm256_add_epi32(_mm256_madd_epi16(a01, sl0), _mm256_madd_epi16(b01, sh0)));
        is[3] = _mm256_add_epi32(is[3], _mm256_add_epi32(_mm256_madd_epi16(a11, sl1), _mm256_madd_epi16(b11, sh1)));
    }
}
#undef K4G2_TOK

/* Two groups (x, x + gs) x 4 tokens: the same finish as q4_K_x8, so the same bits. */
static LT_NOINLINE void q4_K_x8_g2(int64_t nb, const char *x, size_t gs, const char *y, size_t by, float *s, size_t ldc) {
    __m256 acc[8]; /* group g, token t at 4 g + t */
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    uint8_t scv[2][64] __attribute__((aligned(32))), mnv[2][64] __attribute__((aligned(32)));
    for (int64_t b = 0; b < nb; b++) {
        const char *g[2] = {x + (size_t)b * GROUP_Q4K, x + (size_t)b * GROUP_Q4K + gs};
        for (int e = 0; e < 2; e++) k4_group_values(g[e], scv[e], mnv[e]);
        for (int tp = 0; tp < 4; tp += 2) {
            const blk_q8_K *ya = (const blk_q8_K *)(y + (size_t)tp * by) + b;
            const blk_q8_K *yb = (const blk_q8_K *)((const char *)ya + by);
            __m256i is[4];
            k4x8_isums_g2(g[0], g[1], scv[0], scv[1], ya->qs, yb->qs, is);
            acc[tp] = k4x8_finish(acc[tp], g[0], mnv[0], ya, is[0]);
            acc[4 + tp] = k4x8_finish(acc[4 + tp], g[1], mnv[1], ya, is[1]);
            acc[tp + 1] = k4x8_finish(acc[tp + 1], g[0], mnv[0], yb, is[2]);
            acc[5 + tp] = k4x8_finish(acc[5 + tp], g[1], mnv[1], yb, is[3]);
        }
    }
    for (int t = 0; t < 4; t++) {
        _mm256_storeu_ps(s + t * ldc, acc[t]);
        _mm256_storeu_ps(s + t * ldc + 8, acc[4 + t]);
    }
}

/* One group of 8 rows x RN <= 4 tokens; the scales are unpacked once per
 * super-block for all the tokens, the quants once per pair of tokens. */
LT_INLINE void q4_K_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, float *s, size_t ldc) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint8_t scv[64] __attribute__((aligned(32))), mnv[64] __attribute__((aligned(32)));
    for (int64_t b = 0; b < nb; b++) {
        const char *g = x + (size_t)b * GROUP_Q4K;
        x8_prefetch(g, GROUP_Q4K);
        k4_group_values(g, scv, mnv);
        const blk_q8_K *y0 = (const blk_q8_K *)y + b, *y1 = (const blk_q8_K *)((const char *)y0 + by);
        const blk_q8_K *y2 = (const blk_q8_K *)((const char *)y0 + 2 * by), *y3 = (const blk_q8_K *)((const char *)y0 + 3 * by);
        __m256i i0, i1, i2, i3;
        k4x8_isums(RN > 1 ? 2 : 1, g, scv, y0->qs, y1->qs, &i0, &i1);
        a0 = k4x8_finish(a0, g, mnv, y0, i0);
        if (RN > 1) a1 = k4x8_finish(a1, g, mnv, y1, i1);
        if (RN > 2) {
            /* The second pair decodes the quants again: kept from the first
             * (gcc's common-subexpression pass), 64 vectors would spill. */
            __asm__ volatile("" ::: "memory");
            k4x8_isums(RN > 3 ? 2 : 1, g, scv, y2->qs, y3->qs, &i2, &i3);
            a2 = k4x8_finish(a2, g, mnv, y2, i2);
            if (RN > 3) a3 = k4x8_finish(a3, g, mnv, y3, i3);
        }
    }
    _mm256_storeu_ps(s, a0);
    if (RN > 1) _mm256_storeu_ps(s + ldc, a1);
    if (RN > 2) _mm256_storeu_ps(s + 2 * ldc, a2);
    if (RN > 3) _mm256_storeu_ps(s + 3 * ldc, a3);
}

/* ---- Q6_K (tensor/repack.c gives the group layout) ----
 * Quants are used unsigned (q + 32, 0..63): two maddubs of a 16-element
 * sub-block fit int16 (2 x 2 x 63 x 127 < 2^15), then the scale multiplies
 * in the widening madd; the offset 32 sum_j sc_j bsum_j is taken back in
 * integers, so the only float step is the final d * d_y. */
#define GROUP_Q6K (8 * sizeof(blk_q6_K))

/* The int32 sums of NT <= 2 tokens (yb0, yb1) against a group
 * super-block, chunk-outer: each piece's quants are decoded once for both. */
LT_INLINE void k6x8_isums(const int NT, const char *g, const __m256i *sc16, const blk_q8_K *yb0, const blk_q8_K *yb1,
                          __m256i *is0, __m256i *is1) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i i0 = _mm256_setzero_si256(), i1 = i0;
#pragma GCC unroll 1
    for (int n = 0; n < 2; n++) {
#pragma GCC unroll 1
        for (int l4 = 0; l4 < 8; l4 += 2) {
            __m256i v[2][4];
#pragma GCC unroll 2
            for (int e = 0; e < 2; e++) {
                const char *piece = g + 144 + 96 * (8 * n + l4 + e);
                const __m256i A = loadu256(piece), B = loadu256(piece + 32), H = loadu256(piece + 64);
                v[e][0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
                v[e][1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
                v[e][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
                v[e][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            }
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const int o = 128 * n + 32 * t + 4 * l4;
                const __m256i sc = sc16[8 * n + 2 * t + l4 / 4]; /* sub-block 8n + 2t + l4/4 */
                const __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(v[0][t], bcast4(yb0->qs + o)),
                                                    _mm256_maddubs_epi16(v[1][t], bcast4(yb0->qs + o + 4)));
                i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(s0, sc));
                if (NT > 1) {
                    const __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(v[0][t], bcast4(yb1->qs + o)),
                                                        _mm256_maddubs_epi16(v[1][t], bcast4(yb1->qs + o + 4)));
                    i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(s1, sc));
                }
            }
        }
    }
    *is0 = i0;
    if (NT > 1) *is1 = i1;
}

LT_INLINE void q6_K_x8(const int RN, int64_t nb, const char *x, const char *y, size_t by, float *s, size_t ldc) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256i sc16[16]; /* sub-block j's scale in both int16 halves of each row's lane */
    const __m256i even = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8,
                                          9, 8, 9, 12, 13, 12, 13);
    const __m256i odd = _mm256_add_epi8(even, _mm256_set1_epi8(2));
    for (int64_t b = 0; b < nb; b++) {
        const char *g = x + (size_t)b * GROUP_Q6K;
        x8_prefetch(g, GROUP_Q6K);
        for (int p = 0; p < 8; p++) {
            const __m256i P = _mm256_cvtepi8_epi16(loadu128(g + 16 + 16 * p)); /* (sc[2p], sc[2p+1]) per row */
            sc16[2 * p] = _mm256_shuffle_epi8(P, even);
            sc16[2 * p + 1] = _mm256_shuffle_epi8(P, odd);
        }
        const __m256 dx = _mm256_cvtph_ps(loadu128(g));
        const blk_q8_K *y0 = (const blk_q8_K *)y + b, *y1 = (const blk_q8_K *)((const char *)y0 + by);
        const blk_q8_K *y2 = (const blk_q8_K *)((const char *)y0 + 2 * by), *y3 = (const blk_q8_K *)((const char *)y0 + 3 * by);
        __m256i i0, i1, i2, i3;
#define K6_ACC(a, yc, is) a = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps((yc)->d)), _mm256_cvtepi32_ps(k6x8_offset(g, yc, is)), a)
        k6x8_isums(RN > 1 ? 2 : 1, g, sc16, y0, y1, &i0, &i1);
        K6_ACC(a0, y0, i0);
        if (RN > 1) K6_ACC(a1, y1, i1);
        if (RN > 2) {
            __asm__ volatile("" ::: "memory"); /* decode again: see q4_K_x8 */
            k6x8_isums(RN > 3 ? 2 : 1, g, sc16, y2, y3, &i2, &i3);
            K6_ACC(a2, y2, i2);
            if (RN > 3) K6_ACC(a3, y3, i3);
        }
#undef K6_ACC
    }
    _mm256_storeu_ps(s, a0);
    if (RN > 1) _mm256_storeu_ps(s + ldc, a1);
    if (RN > 2) _mm256_storeu_ps(s + 2 * ldc, a2);
    if (RN > 3) _mm256_storeu_ps(s + 3 * ldc, a3);
}

/* The k-quant tiles: one group at a time, nc <= 4 tokens. */
#define KX8_VARIANT(kern, RN)                                                                            \
    static LT_NOINLINE void kern##_##RN(int64_t nb, const char *x, const char *y, size_t by, float *s, size_t ldc) { \
        kern(RN, nb, x, y, by, s, ldc);                                                                  \
    }
typedef void (*kx8_g2_fn)(int64_t nb, const char *x, size_t gs, const char *y, size_t by, float *s, size_t ldc);
/* g2: the two-group kernel for 4 tokens, or NULL. */
#define DEFINE_KX8_TILE(name, kern, g2)                                                                  \
    KX8_VARIANT(kern, 1)                                                                                 \
    KX8_VARIANT(kern, 2)                                                                                 \
    KX8_VARIANT(kern, 3)                                                                                 \
    KX8_VARIANT(kern, 4)                                                                                 \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                  \
        (void)aux, (void)ld;                                                                             \
        const char *x = vx, *y = vy;                                                                     \
        const int64_t nb = n / QK_K;                                                                     \
        int r = 0;                                                                                       \
        const kx8_g2_fn two = (g2);                                                                      \
        if (nc == 4 && two)                                                                              \
            for (; r + 16 <= nr; r += 16) two(nb, x + (size_t)r * bx, 8 * bx, y, by, s + r, ldc);         \
        for (; r < nr; r += 8) {                                                                         \
            const char *xr = x + (size_t)r * bx;                                                         \
            switch (nc) {                                                                                \
            case 1: kern##_1(nb, xr, y, by, s + r, ldc); break;                                          \
            case 2: kern##_2(nb, xr, y, by, s + r, ldc); break;                                          \
            case 3: kern##_3(nb, xr, y, by, s + r, ldc); break;                                          \
            default: kern##_4(nb, xr, y, by, s + r, ldc); break;                                         \
            }                                                                                            \
        }                                                                                                \
    }

DEFINE_KX8_TILE(tile_q4_K_x8, q4_K_x8, q4_K_x8_g2)
DEFINE_KX8_TILE(tile_q6_K_x8, q6_K_x8, NULL)

/* One function per token count, so that each loop gets the whole register
 * file (inlined into one tile, gcc spilled accumulators of every variant). */
#define X8_VARIANT(kern, RN)                                                                                \
    static LT_NOINLINE void kern##_##RN(int64_t nb, const char *x, const char *y, size_t by, const float *aux, \
                                        size_t ld, float *s, size_t ldc) {                                  \
        kern(RN, nb, x, y, by, aux, ld, s, ldc);                                                            \
    }

/* nr: a multiple of 8; nc <= 4. Four tokens take two groups per pass with
 * g2_fn, fewer tokens one group. A single token takes two groups per pass
 * with pair_fn (Q8_0), else one: on one thread Q4_0 read one stream from
 * memory about 10% faster than two side by side, though two run faster in
 * cache. Either may be NULL. */
typedef void (*x8_g2_fn)(int64_t nb, const char *x, size_t gs, const char *y, size_t by, const float *aux, size_t ld,
                         float *s, size_t ldc);
typedef void (*x8_pair_fn)(int64_t nb, const char *x, size_t gs, const char *y, const float *aux, float *s);
#define DEFINE_X8_TILE(name, kern, g2_fn, pair_fn)                                                          \
    X8_VARIANT(kern, 1)                                                                                     \
    X8_VARIANT(kern, 2)                                                                                     \
    X8_VARIANT(kern, 3)                                                                                     \
    X8_VARIANT(kern, 4)                                                                                     \
    static void name(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux,    \
                     size_t ld, float *s, size_t ldc, int nr, int nc) {                                     \
        const char *x = vx, *y = vy;                                                                        \
        const int64_t nb = n / 32;                                                                          \
        const x8_g2_fn two = (g2_fn);                                                                       \
        const x8_pair_fn pair = (pair_fn);                                                                  \
        int r = 0;                                                                                          \
        if (pair && nc == 1 && ld == 1)                                                                     \
            for (; r + 16 <= nr; r += 16) pair(nb, x + (size_t)r * bx, 8 * bx, y, aux, s + r);              \
        if (two && nc == 4)                                                                                 \
            for (; r + 16 <= nr; r += 16) two(nb, x + (size_t)r * bx, 8 * bx, y, by, aux, ld, s + r, ldc);  \
        for (; r < nr; r += 8) {                                                                            \
            const char *xr = x + (size_t)r * bx;                                                            \
            switch (nc) {                                                                                   \
            case 1: kern##_1(nb, xr, y, by, aux, ld, s + r, ldc); break;                                    \
            case 2: kern##_2(nb, xr, y, by, aux, ld, s + r, ldc); break;                                    \
            case 3: kern##_3(nb, xr, y, by, aux, ld, s + r, ldc); break;                                    \
            default: kern##_4(nb, xr, y, by, aux, ld, s + r, ldc); break;                                   \
            }                                                                                               \
        }                                                                                                   \
    }

DEFINE_X8_TILE(tile_q4_0_x8, q4_0_x8, q4_0_x8_g2, NULL)
DEFINE_X8_TILE(tile_q8_0_x8, q8_0_x8, NULL, q8_0_x8_pair)

/* ---- F16 (x8: per 4 columns the 8 rows' 8 bytes, tensor/repack.h) ----
 * A 128-bit load holds rows 2p and 2p + 1 x 4 columns; converted, lane
 * 4i + q sums columns 4c + q of its row against the token's 4 activations
 * broadcast to both halves, and the 4 lanes of a row are added at the end
 * as (p0 + p1) + (p2 + p3): the order of tests/tile_call.h's
 * f16_x8_reference (and of the AVX-512 tiles), so a (row, token) sum does
 * not depend on the tile or level that computed it. */
#define GROUP_F16_CHUNK 64 /* bytes of a group per 4 columns */

LT_INLINE void f16_row_sums(__m256 a, float *s, size_t ld) {
    float t[8];
    _mm256_storeu_ps(t, a);
    s[0] = (t[0] + t[1]) + (t[2] + t[3]);
    s[ld] = (t[4] + t[5]) + (t[6] + t[7]);
}

/* One token, one group: a single stream (on Zen 3 about 18-21 GB/s of F16
 * from memory on one thread, against 13-15 for 8 row-major rows at once),
 * a line (one chunk) fetched X8_AHEAD ahead. */
static LT_NOINLINE void f16_x8_single(int64_t nch, const char *g, const float *y, float *s) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < nch; c++) {
        const char *blk = g + (size_t)c * GROUP_F16_CHUNK;
        _mm_prefetch(blk + X8_AHEAD, _MM_HINT_T0);
        const __m256 v = _mm256_broadcast_ps((const __m128 *)(y + 4 * c));
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(blk)), v, a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(blk + 16)), v, a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(blk + 32)), v, a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(loadu128(blk + 48)), v, a3);
    }
    f16_row_sums(a0, s, 1);
    f16_row_sums(a1, s + 2, 1);
    f16_row_sums(a2, s + 4, 1);
    f16_row_sums(a3, s + 6, 1);
}

/* Half a group (its rows 4h..4h+3: g is the group + 32 h) x RN <= 6 tokens:
 * 12 accumulators, and each conversion serves 6 tokens (the row-major tile
 * converts once per 4). */
#define F16_RN 6
LT_INLINE void f16_x8_half(const int RN, int64_t nch, const char *g, const char *y, size_t by, float *s, size_t ldc) {
    __m256 a[2][F16_RN];
#pragma GCC unroll 6
    for (int t = 0; t < RN; t++) a[0][t] = a[1][t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nch; c++) {
        const char *blk = g + (size_t)c * GROUP_F16_CHUNK;
        const __m256 w0 = _mm256_cvtph_ps(loadu128(blk)), w1 = _mm256_cvtph_ps(loadu128(blk + 16));
#pragma GCC unroll 6
        for (int t = 0; t < RN; t++) {
            const __m256 v = _mm256_broadcast_ps((const __m128 *)((const float *)(y + (size_t)t * by) + 4 * c));
            a[0][t] = _mm256_fmadd_ps(w0, v, a[0][t]);
            a[1][t] = _mm256_fmadd_ps(w1, v, a[1][t]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < RN; t++) {
        f16_row_sums(a[0][t], s + (size_t)t * ldc, 1);
        f16_row_sums(a[1][t], s + (size_t)t * ldc + 2, 1);
    }
}
#define F16_HALF(RN)                                                                                     \
    static LT_NOINLINE void f16_x8_half_##RN(int64_t nch, const char *g, const char *y, size_t by, float *s, \
                                             size_t ldc) {                                               \
        f16_x8_half(RN, nch, g, y, by, s, ldc);                                                          \
    }
F16_HALF(2)
F16_HALF(3)
F16_HALF(4)
F16_HALF(5)
F16_HALF(6)

/* nr a multiple of 8, nc <= F16_RN. */
static void tile_f16_x8(int64_t n, const void *vx, size_t bx, const void *vy, size_t by, const float *aux, size_t ld,
                        float *s, size_t ldc, int nr, int nc) {
    (void)aux, (void)ld;
    const char *x = vx, *y = vy;
    const int64_t nch = n / 4;
    for (int r = 0; r < nr; r += 8) {
        const char *g = x + (size_t)r * bx;
        if (nc == 1) {
            f16_x8_single(nch, g, (const float *)y, s + r);
            continue;
        }
        for (int h = 0; h < 2; h++) {
            const char *gh = g + 32 * h;
            float *sh = s + r + 4 * h;
            switch (nc) {
            case 2: f16_x8_half_2(nch, gh, y, by, sh, ldc); break;
            case 3: f16_x8_half_3(nch, gh, y, by, sh, ldc); break;
            case 4: f16_x8_half_4(nch, gh, y, by, sh, ldc); break;
            case 5: f16_x8_half_5(nch, gh, y, by, sh, ldc); break;
            default: f16_x8_half_6(nch, gh, y, by, sh, ldc); break;
            }
        }
    }
}

void lt_tiles_x8_avx2(lt_tile *t) {
    t[LT_Q4_0] = (lt_tile){tile_q4_0_x8, 16, 4, 16, true, 0};
    t[LT_Q8_0] = (lt_tile){tile_q8_0_x8, 8, 4, 16, true, 0};
    t[LT_Q4_K] = (lt_tile){tile_q4_K_x8, 16, 4, 8, false, 0};
    t[LT_Q6_K] = (lt_tile){tile_q6_K_x8, 8, 4, 8, false, 0};
    t[LT_F16] = (lt_tile){tile_f16_x8, 8, F16_RN, 16, false, 0};
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_x8_kernels;
#endif
