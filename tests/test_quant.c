/* Tensor types, quantisation, dot products and lt_matmul.
 *
 * (1) dequantisation of hand-built blocks against values computed here from
 *     the format definitions; (2) quantise -> dequantise error bounds and the
 *     reference rounding rules; (3) dispatched (SIMD) vs scalar dot products,
 *     and both vs a double-precision dot of the dequantised operands;
 *     (4) lt_matmul vs a naive loop for several batch sizes and thread
 *     counts; (5) the type table, lt_row_bytes and unknown types. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/matmul.h"
#include "tensor/threadpool.h"
#include "tensor/types.h"
#include "testutil.h"
#include "util/fp16.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd_u32(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* uniform in [-1, 1) */
static float rnd_f(void) { return (float)((double)rnd_u32() / 2147483648.0 - 1.0); }

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void putf(uint8_t *p, float f) { memcpy(p, &f, 4); }

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

/* Dequantises through the traits and compares with the expected values. */
static void check_deq(lt_type t, const uint8_t *blk, int64_t n, const float *want) {
    float got[512];
    const lt_traits *sc = lt_type_traits_scalar(t), *tr = lt_type_traits(t);
    CHECKF(sc && sc->to_float, "%s has a dequantiser", lt_type_name(t));
    if (!sc || !sc->to_float) return;
    sc->to_float(blk, got, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!close_to(got[i], want[i], 1e-6 * fabs(want[i]) + 1e-7)) {
            if (bad++ < 4)
                fprintf(stderr, "  %s[%lld]: got %.8g want %.8g\n", lt_type_name(t), (long long)i, got[i], want[i]);
        }
    CHECKF(bad == 0, "%s scalar dequantisation: %d wrong values", lt_type_name(t), bad);
    tr->to_float(blk, got, n);
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !close_to(got[i], want[i], 1e-6 * fabs(want[i]) + 1e-7);
    CHECKF(bad == 0, "%s dispatched dequantisation: %d wrong values", lt_type_name(t), bad);
}

/* ------------------------------------------------ (1) hand-built blocks */

static void test_deq_float(void) {
    const float f32[4] = {1.5f, -2.0f, 0.0f, 3.25e-5f};
    check_deq(LT_F32, (const uint8_t *)f32, 4, f32);

    /* F16: 1, -2, 1/3 rounded, smallest subnormal, largest finite, -0 */
    uint8_t h[6 * 2 + 20];
    const uint16_t hb[6] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF, 0x8000};
    const float hw[6] = {1.0f, -2.0f, 0.333251953125f, 5.9604644775390625e-8f, 65504.0f, -0.0f};
    for (int i = 0; i < 6; i++) put16(h + 2 * i, hb[i]);
    check_deq(LT_F16, h, 6, hw);
    /* 16 values so that the SIMD F16 path runs too */
    float w16[16];
    for (int i = 0; i < 16; i++) {
        put16(h + 2 * (i % 6), hb[i % 6]);
        w16[i] = hw[i % 6];
    }
    uint8_t h16[32];
    for (int i = 0; i < 16; i++) put16(h16 + 2 * i, hb[i % 6]);
    check_deq(LT_F16, h16, 16, w16);

    /* BF16: the top half of a float */
    uint8_t b[3 * 2];
    put16(b, 0x3F80);
    put16(b + 2, 0xC0A0);
    put16(b + 4, 0x3EAA);
    const float bw[3] = {1.0f, -5.0f, 0.33203125f};
    check_deq(LT_BF16, b, 3, bw);
}

/* 32-element blocks: element j < 16 in the low nibble of qs[j], element
 * j + 16 in its high nibble; the fifth bit of element j is bit j of qh. */
static void test_deq_legacy(void) {
    uint8_t blk[64];
    float want[64];

    /* Q4_0: d = 2.5, qs[j] = j | (15-j) << 4; x = d * (q - 8) */
    put16(blk, 0x4100);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) {
        want[j] = 2.5f * (j - 8);
        want[j + 16] = 2.5f * ((15 - j) - 8);
    }
    check_deq(LT_Q4_0, blk, 32, want);

    /* Q4_1: d = 0.5, m = -1; x = d * q + m */
    put16(blk, 0x3800);
    put16(blk + 2, 0xBC00);
    for (int j = 0; j < 16; j++) blk[4 + j] = (uint8_t)((3 * j) % 16 | (j / 2) << 4);
    for (int j = 0; j < 16; j++) {
        want[j] = 0.5f * ((3 * j) % 16) - 1.0f;
        want[j + 16] = 0.5f * (j / 2) - 1.0f;
    }
    check_deq(LT_Q4_1, blk, 32, want);

    /* Q5_0: d = 0.25, qh = A5 0F F0 3C (bit j of the little-endian word) */
    const uint8_t qh[4] = {0xA5, 0x0F, 0xF0, 0x3C};
    const uint32_t qhw = 0x3CF00FA5u;
    put16(blk, 0x3400);
    memcpy(blk + 2, qh, 4);
    for (int j = 0; j < 16; j++) blk[6 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) {
        const int lo = j | (int)((qhw >> j) & 1) * 16;
        const int hi = (15 - j) | (int)((qhw >> (j + 16)) & 1) * 16;
        want[j] = 0.25f * (lo - 16);
        want[j + 16] = 0.25f * (hi - 16);
    }
    /* spot values written out: element 0 has bit 1 (0xA5 bit 0): 0|16 -> 0 */
    CHECK(want[0] == 0.0f);
    /* element 1: bit 0 -> (1 - 16) * 0.25 */
    CHECK(want[1] == -3.75f);
    check_deq(LT_Q5_0, blk, 32, want);

    /* Q5_1: d = 0.5, m = 1.5; x = d * q + m */
    put16(blk, 0x3800);
    put16(blk + 2, 0x3E00);
    memcpy(blk + 4, qh, 4);
    for (int j = 0; j < 16; j++) blk[8 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) {
        const int lo = j | (int)((qhw >> j) & 1) * 16;
        const int hi = (15 - j) | (int)((qhw >> (j + 16)) & 1) * 16;
        want[j] = 0.5f * lo + 1.5f;
        want[j + 16] = 0.5f * hi + 1.5f;
    }
    CHECK(want[31] == 0.5f * 0 + 1.5f); /* element 31: nibble 0, bit 31 of 0x3C.. is 0 */
    check_deq(LT_Q5_1, blk, 32, want);

    /* Q8_0: d = 0.5, q = 8j - 124 */
    put16(blk, 0x3800);
    for (int j = 0; j < 32; j++) {
        blk[2 + j] = (uint8_t)(int8_t)(8 * j - 124);
        want[j] = 0.5f * (8 * j - 124);
    }
    check_deq(LT_Q8_0, blk, 32, want);

    /* Q8_1: d = 0.25, s (ignored by dequantisation), q = 127 - 8j */
    put16(blk, 0x3400);
    put16(blk + 2, 0x4000);
    for (int j = 0; j < 32; j++) {
        blk[4 + j] = (uint8_t)(int8_t)(127 - 8 * j);
        want[j] = 0.25f * (127 - 8 * j);
    }
    check_deq(LT_Q8_1, blk, 32, want);

    /* IQ4_NL: d = 0.5, value = d * table[q] */
    static const int8_t table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    put16(blk, 0x3800);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) {
        want[j] = 0.5f * table[j];
        want[j + 16] = 0.5f * table[15 - j];
    }
    check_deq(LT_IQ4_NL, blk, 32, want);
}

/* The k-quant expectations are written in the loop order of the format
 * description: walk the 256 values in order, advancing through the packed
 * bytes as they are consumed. */
static void test_deq_q2_k(void) {
    uint8_t blk[84];
    float want[256];
    /* scales[16] (low nibble scale, high nibble min), qs[64], d, dmin */
    for (int g = 0; g < 16; g++) blk[g] = (uint8_t)((g + 1) % 16 | (15 - g) << 4);
    for (int i = 0; i < 64; i++) blk[16 + i] = (uint8_t)(i * 37 + 11);
    put16(blk + 80, 0x3800); /* d = 0.5 */
    put16(blk + 82, 0x3400); /* dmin = 0.25 */
    const uint8_t *q = blk + 16;
    float *y = want;
    int is = 0;
    for (int half = 0; half < 2; half++) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++) { /* 16 values from q[0..15], then q[16..31] */
                const uint8_t sc = blk[is++];
                for (int l = 0; l < 16; l++) *y++ = 0.5f * (sc & 15) * ((q[16 * part + l] >> shift) & 3) - 0.25f * (sc >> 4);
            }
        }
        q += 32;
    }
    check_deq(LT_Q2_K, blk, 256, want);
}

static void test_deq_q3_k(void) {
    uint8_t blk[110];
    float want[256];
    /* hmask[32], qs[64], scales[12], d. The 16 six-bit scales (stored +32)
     * 32 33 31 0 63 40 20 45 1 62 16 48 35 29 10 55 pack as: byte i < 8 =
     * low nibbles of scales i and i+8; byte 8+i = the top two bits of scales
     * i, i+4, i+8, i+12 (from bit 0 up). */
    static const uint8_t packed[12] = {0x10, 0xE1, 0x0F, 0x00, 0x3F, 0xD8, 0xA4, 0x7D, 0x8E, 0x7A, 0x15, 0xF8};
    static const int scales[16] = {0, 1, -1, -32, 31, 8, -12, 13, -31, 30, -16, 16, 3, -3, -22, 23};
    for (int i = 0; i < 32; i++) blk[i] = (uint8_t)(i * 73 + 5);
    for (int i = 0; i < 64; i++) blk[32 + i] = (uint8_t)(i * 29 + 201);
    memcpy(blk + 96, packed, 12);
    put16(blk + 108, 0x3A00); /* d = 0.75 */
    const uint8_t *q = blk + 32, *hm = blk;
    float *y = want;
    int is = 0;
    uint8_t m = 1;
    for (int half = 0; half < 2; half++) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++) {
                const float dl = 0.75f * scales[is++];
                for (int l = 0; l < 16; l++) {
                    const int lo = (q[16 * part + l] >> shift) & 3;
                    const int v = lo - ((hm[16 * part + l] & m) ? 0 : 4);
                    *y++ = dl * v;
                }
            }
            m <<= 1;
        }
        q += 32;
    }
    check_deq(LT_Q3_K, blk, 256, want);
}

/* Q4_K / Q5_K scales: 8 scales 1 2 3 4 50 61 33 17 and 8 mins
 * 5 6 7 8 40 63 2 19. Bytes 0-3: scale j | (top 2 bits of scale j+4) << 6;
 * bytes 4-7: min j | (top 2 bits of min j+4) << 6; bytes 8-11: low nibble
 * of scale j+4 | low nibble of min j+4 << 4. */
static const uint8_t k4_packed[12] = {0xC1, 0xC2, 0x83, 0x44, 0x85, 0xC6, 0x07, 0x48, 0x82, 0xFD, 0x21, 0x31};
static const int k4_sc[8] = {1, 2, 3, 4, 50, 61, 33, 17};
static const int k4_mn[8] = {5, 6, 7, 8, 40, 63, 2, 19};

static void test_deq_q4_k(void) {
    uint8_t blk[144];
    float want[256];
    put16(blk, 0x3000);     /* d = 0.125 */
    put16(blk + 2, 0x2C00); /* dmin = 0.0625 */
    memcpy(blk + 4, k4_packed, 12);
    for (int i = 0; i < 128; i++) blk[16 + i] = (uint8_t)(i * 53 + 7);
    const uint8_t *q = blk + 16;
    float *y = want;
    for (int c = 0; c < 4; c++) { /* 64 values: 32 low nibbles, then 32 high */
        for (int l = 0; l < 32; l++) *y++ = 0.125f * k4_sc[2 * c] * (q[l] & 15) - 0.0625f * k4_mn[2 * c];
        for (int l = 0; l < 32; l++) *y++ = 0.125f * k4_sc[2 * c + 1] * (q[l] >> 4) - 0.0625f * k4_mn[2 * c + 1];
        q += 32;
    }
    check_deq(LT_Q4_K, blk, 256, want);
}

static void test_deq_q5_k(void) {
    uint8_t blk[176];
    float want[256];
    put16(blk, 0x3000);
    put16(blk + 2, 0x2C00);
    memcpy(blk + 4, k4_packed, 12);
    for (int i = 0; i < 32; i++) blk[16 + i] = (uint8_t)(i * 97 + 3); /* qh */
    for (int i = 0; i < 128; i++) blk[48 + i] = (uint8_t)(i * 53 + 7);
    const uint8_t *q = blk + 48, *qh = blk + 16;
    float *y = want;
    uint8_t u1 = 1, u2 = 2;
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++)
            *y++ = 0.125f * k4_sc[2 * c] * ((q[l] & 15) + ((qh[l] & u1) ? 16 : 0)) - 0.0625f * k4_mn[2 * c];
        for (int l = 0; l < 32; l++)
            *y++ = 0.125f * k4_sc[2 * c + 1] * ((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - 0.0625f * k4_mn[2 * c + 1];
        q += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
    check_deq(LT_Q5_K, blk, 256, want);
}

static void test_deq_q6_k(void) {
    uint8_t blk[210];
    float want[256];
    static const int8_t sc[16] = {1, -2, 3, -4, 5, -6, 7, -8, 100, -100, 127, -128, 0, 17, -33, 64};
    for (int i = 0; i < 128; i++) blk[i] = (uint8_t)(i * 61 + 17);      /* ql */
    for (int i = 0; i < 64; i++) blk[128 + i] = (uint8_t)(i * 45 + 90); /* qh */
    memcpy(blk + 192, sc, 16);
    put16(blk + 208, 0x2400); /* d = 2^-6 */
    const float d = 0.015625f;
    const uint8_t *ql = blk, *qh = blk + 128;
    const int8_t *s = sc;
    float *y = want;
    for (int half = 0; half < 2; half++) {
        for (int l = 0; l < 32; l++) {
            const int g = l / 16;
            const int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * s[g] * q1;
            y[l + 32] = d * s[g + 2] * q2;
            y[l + 64] = d * s[g + 4] * q3;
            y[l + 96] = d * s[g + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        s += 8;
    }
    check_deq(LT_Q6_K, blk, 256, want);
}

static void test_deq_q8_k_iq4_xs(void) {
    uint8_t blk[292];
    float want[256];
    putf(blk, 0.375f);
    for (int i = 0; i < 256; i++) {
        blk[4 + i] = (uint8_t)(int8_t)(i - 128);
        want[i] = 0.375f * (i - 128);
    }
    memset(blk + 260, 0, 32);
    check_deq(LT_Q8_K, blk, 256, want);

    /* IQ4_XS: d, scales_h, scales_l[4], qs[128]; sub-block j's six-bit scale
     * (stored +32) has its low nibble in nibble j%2 of scales_l[j/2] and its
     * top two bits at bit 2j of scales_h. Stored 0 63 32 17 40 5 50 31. */
    static const int8_t table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    static const int ls[8] = {-32, 31, 0, -15, 8, -27, 18, -1};
    uint8_t x[136];
    put16(x, 0x3800); /* d = 0.5 */
    put16(x + 2, 0x726C);
    x[4] = 0xF0;
    x[5] = 0x10;
    x[6] = 0x58;
    x[7] = 0xF2;
    for (int i = 0; i < 128; i++) x[8 + i] = (uint8_t)(i * 71 + 9);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 16; l++) {
            want[32 * j + l] = 0.5f * ls[j] * table[x[8 + 16 * j + l] & 15];
            want[32 * j + 16 + l] = 0.5f * ls[j] * table[x[8 + 16 * j + l] >> 4];
        }
    check_deq(LT_IQ4_XS, x, 256, want);
}

/* --------------------------------------------------- (2) round trips */

static void roundtrip(lt_type t, int64_t n, double rel_rms_max) {
    const lt_traits *sc = lt_type_traits_scalar(t), *tr = lt_type_traits(t);
    float *x = malloc(sizeof(float) * (size_t)n), *back = malloc(sizeof(float) * (size_t)n);
    size_t rb = lt_row_bytes(t, n);
    uint8_t *q = malloc(rb), *q2 = malloc(rb);
    for (int64_t i = 0; i < n; i++) x[i] = rnd_f() * (i % 64 < 32 ? 1.0f : 0.01f) + (i % 97 == 0 ? 3.0f : 0.0f);
    sc->from_float(x, q, n);
    tr->from_float(x, q2, n);
    CHECKF(memcmp(q, q2, rb) == 0, "%s: dispatched quantiser gives the same bytes as the scalar one", lt_type_name(t));
    sc->to_float(q, back, n);
    const int64_t bs = sc->block_size > 1 ? sc->block_size : 32;
    double se = 0, sx = 0;
    int bad = 0;
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        float amax = 0, mn = x[b0], mx = x[b0];
        for (int64_t i = b0; i < b0 + bs; i++) {
            amax = fmaxf(amax, fabsf(x[i]));
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
        }
        /* worst case per element, from each scheme's definition */
        double bound;
        switch (t) {
        case LT_Q4_0: bound = amax / 8.0 * 1.002; break;   /* clamp at +7 */
        case LT_Q5_0: bound = amax / 16.0 * 1.002; break;  /* clamp at +15 */
        case LT_Q4_1: bound = (mx - mn) / 15.0 * 0.502 + fabs(mn) * 1e-3; break;
        case LT_Q5_1: bound = (mx - mn) / 31.0 * 0.502 + fabs(mn) * 1e-3; break;
        case LT_Q8_0:
        case LT_Q8_1: bound = amax / 127.0 * 0.5 + amax / 1024.0; break;
        case LT_Q8_K: bound = amax / 127.0 * 0.5 * 1.001; break;
        case LT_F16: bound = amax / 1024.0; break;
        case LT_BF16: bound = amax / 128.0; break;
        default: bound = 0; break;
        }
        for (int64_t i = b0; i < b0 + bs; i++) {
            const double e = fabs((double)back[i] - x[i]);
            if (e > bound + 1e-12) bad++;
            se += e * e;
            sx += (double)x[i] * x[i];
        }
    }
    CHECKF(bad == 0, "%s round trip: %d values beyond the per-block bound", lt_type_name(t), bad);
    const double rel = sqrt(se / sx);
    CHECKF(rel <= rel_rms_max, "%s round trip: relative rms error %.4g > %.4g", lt_type_name(t), rel, rel_rms_max);
    free(x);
    free(back);
    free(q);
    free(q2);
}

static void test_rounding_rules(void) {
    /* Q8_0/Q8_1: d = amax/127, q = roundf(x/d): halves go away from zero. */
    float x[256];
    uint8_t q[292], q2[292];
    for (int i = 0; i < 32; i++) x[i] = 0;
    x[0] = 127.0f; /* d = 1 */
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 3.5f;
    x[4] = -0.5f;
    x[5] = 0.49f;
    for (int k = 0; k < 2; k++) {
        const lt_traits *tr = k ? lt_type_traits(LT_Q8_0) : lt_type_traits_scalar(LT_Q8_0);
        tr->from_float(x, q, 32);
        CHECK(q[0] == 0x00 && q[1] == 0x3C); /* d = 1.0 as half */
        const int8_t *qs = (const int8_t *)q + 2;
        CHECKF(qs[0] == 127 && qs[1] == 3 && qs[2] == -3 && qs[3] == 4 && qs[4] == -1 && qs[5] == 0,
               "Q8_0 rounding (%s): %d %d %d %d %d %d", k ? "dispatched" : "scalar", qs[0], qs[1], qs[2], qs[3],
               qs[4], qs[5]);
        const lt_traits *t1 = k ? lt_type_traits(LT_Q8_1) : lt_type_traits_scalar(LT_Q8_1);
        t1->from_float(x, q2, 32);
        /* s = d * sum(q) = 127 + 3 - 3 + 4 - 1 = 130 */
        CHECKF(fp16_to_fp32((uint16_t)(q2[2] | q2[3] << 8)) == 130.0f, "Q8_1 s = d*sum(q)");
        CHECK(memcmp(q2 + 4, q + 2, 32) == 0);
    }
    /* Q8_K: iscale = -127/max (max = the signed value of largest magnitude),
     * q = nearest (halves to even), capped at 127; d = 1/iscale. */
    for (int i = 0; i < 256; i++) x[i] = 0;
    x[7] = -127.0f; /* iscale = 1 */
    x[0] = 2.5f;
    x[1] = -2.5f;
    x[2] = 3.5f;
    x[3] = 1.5f;
    x[200] = 100.25f;
    for (int k = 0; k < 2; k++) {
        const lt_traits *tr = k ? lt_type_traits(LT_Q8_K) : lt_type_traits_scalar(LT_Q8_K);
        tr->from_float(x, q, 256);
        float d;
        memcpy(&d, q, 4);
        const int8_t *qs = (const int8_t *)q + 4;
        int16_t bs[16];
        memcpy(bs, q + 260, 32);
        CHECKF(d == 1.0f, "Q8_K d = %g", d);
        CHECKF(qs[0] == 2 && qs[1] == -2 && qs[2] == 4 && qs[3] == 2 && qs[7] == -127 && qs[200] == 100,
               "Q8_K rounding (%s)", k ? "dispatched" : "scalar");
        CHECKF(bs[0] == 2 - 2 + 4 + 2 - 127 && bs[12] == 100 && bs[1] == 0, "Q8_K bsums (%s)", k ? "dispatched" : "scalar");
    }
    /* the largest positive value maps to -127: d is negative */
    for (int i = 0; i < 256; i++) x[i] = 0;
    x[3] = 2.0f;
    x[4] = -1.0f;
    lt_type_traits_scalar(LT_Q8_K)->from_float(x, q, 256);
    float d;
    memcpy(&d, q, 4);
    CHECKF(close_to(d, -2.0 / 127.0, 1e-9) && (int8_t)q[4 + 3] == -127 && (int8_t)q[4 + 4] == 64,
           "Q8_K sign convention: d %g q %d %d", d, (int8_t)q[7], (int8_t)q[8]);

    /* Q4_0 reference: d = max/-8, q = min(15, trunc(x/d + 8.5)) */
    for (int i = 0; i < 32; i++) x[i] = 0;
    x[0] = -8.0f; /* d = 1 */
    x[1] = 7.9f;  /* 16.4 -> clamp 15 */
    x[2] = 0.5f;  /* 9 */
    x[3] = -0.6f; /* 7.9 -> 7 */
    lt_type_traits(LT_Q4_0)->from_float(x, q, 32);
    CHECK(q[0] == 0x00 && q[1] == 0x3C);
    CHECKF((q[2] & 15) == 0 && (q[3] & 15) == 15 && (q[4] & 15) == 9 && (q[5] & 15) == 7 && (q[6] & 15) == 8,
           "Q4_0 reference rounding");
}

/* --------------------------------------------- (3) dot products */

/* Weight types with a dot product, and whether lethe can quantise to them. */
static const lt_type dot_types[] = {LT_F32,  LT_F16,  LT_BF16, LT_Q4_0, LT_Q4_1, LT_Q5_0,   LT_Q5_1,
                                    LT_Q8_0, LT_Q2_K, LT_Q3_K, LT_Q4_K, LT_Q5_K, LT_Q6_K,   LT_IQ4_NL,
                                    LT_IQ4_XS};
#define N_DOT_TYPES (int)(sizeof dot_types / sizeof dot_types[0])

/* Offset of the half-precision scale fields that must be sane in random
 * blocks (random bytes elsewhere are valid data for every layout). */
static void sane_block(lt_type t, uint8_t *b) {
    const uint16_t small = fp32_to_fp16(0.002f + 0.01f * (float)(rnd_u32() % 100) / 100.0f);
    const uint16_t neg = fp32_to_fp16(-0.001f - 0.01f * (float)(rnd_u32() % 100) / 100.0f);
    switch (t) {
    case LT_Q4_0: case LT_Q5_0: case LT_Q8_0: case LT_IQ4_NL: case LT_IQ4_XS: put16(b, small); break;
    case LT_Q4_1: case LT_Q5_1: put16(b, small); put16(b + 2, neg); break;
    case LT_Q2_K: put16(b + 80, small); put16(b + 82, small); break;
    case LT_Q3_K: put16(b + 108, small); break;
    case LT_Q4_K: case LT_Q5_K: put16(b, small); put16(b + 2, small); break;
    case LT_Q6_K: put16(b + 208, small); break;
    default: break;
    }
}

/* A random weight row of n elements of type t. */
static void random_row(lt_type t, int64_t n, uint8_t *row) {
    const lt_traits *tr = lt_type_traits_scalar(t);
    if (tr->block_size == 1) { /* float types: via the quantiser */
        float tmp[4096];
        for (int64_t i = 0; i < n; i++) tmp[i] = rnd_f();
        tr->from_float(tmp, row, n);
        return;
    }
    const size_t rb = lt_row_bytes(t, n);
    for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)rnd_u32();
    for (int64_t b = 0; b < n / tr->block_size; b++) sane_block(t, row + (size_t)b * tr->block_bytes);
}

/* Double-precision reference: dequantised weights . dequantised activations.
 * *mag gets sum |w_i a_i|, the scale of the rounding error. */
static double ref_dot(lt_type t, int64_t n, const void *w, const void *act, double *mag) {
    static float wf[4096], af[4096]; /* n <= 4096 */
    const lt_traits *tr = lt_type_traits_scalar(t);
    const lt_traits *vt = lt_type_traits_scalar(tr->vec_dot_type);
    tr->to_float(w, wf, n);
    vt->to_float(act, af, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * af[i];
        m += fabs((double)wf[i] * af[i]);
    }
    *mag = m;
    return s;
}

/* Extra tolerance of the _1 types: they use Q8_1's s = d*sum(q) rounded to
 * half precision, as llama.cpp does, instead of the exact sum. */
static double s_rounding(lt_type t, int64_t n, const uint8_t *w, const uint8_t *act) {
    if (t != LT_Q4_1 && t != LT_Q5_1) return 0;
    const size_t wb = lt_row_bytes(t, 32);
    double tol = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const float m = fp16_to_fp32((uint16_t)(w[b * wb + 2] | w[b * wb + 3] << 8));
        const float s = fp16_to_fp32((uint16_t)(act[b * 36 + 2] | act[b * 36 + 3] << 8));
        tol += fabs((double)m * s) / 1024.0;
    }
    return tol;
}

static void test_vec_dot(void) {
    static const int64_t lens[] = {256, 512, 768, 4096};
    static uint8_t w[4096 * 4], act[4096 * 4];
    static float x[4096];
    for (int ti = 0; ti < N_DOT_TYPES; ti++) {
        const lt_type t = dot_types[ti];
        const lt_traits *sc = lt_type_traits_scalar(t), *tr = lt_type_traits(t);
        CHECKF(sc->vec_dot && tr->vec_dot && lt_type_supported(t), "%s has a dot product", lt_type_name(t));
        const lt_traits *vt = lt_type_traits_scalar(sc->vec_dot_type);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            for (int rep = 0; rep < 3; rep++) {
                random_row(t, n, w);
                for (int64_t i = 0; i < n; i++) x[i] = rnd_f() * (rep == 2 ? 100.0f : 1.0f);
                vt->from_float(x, act, n);
                const float a = sc->vec_dot(n, w, act), b = tr->vec_dot(n, w, act);
                double mag;
                const double r = ref_dot(t, n, w, act, &mag);
                const double extra = s_rounding(t, n, w, act);
                CHECKF(close_to(a, b, 1e-5 * mag + 1e-30), "%s n=%lld: scalar %.9g vs dispatched %.9g (mag %.3g)",
                       lt_type_name(t), (long long)n, a, b, mag);
                CHECKF(close_to(a, r, 2e-5 * mag + extra + 1e-30), "%s n=%lld: scalar %.9g vs double %.9g (mag %.3g)",
                       lt_type_name(t), (long long)n, a, r, mag);
                CHECKF(close_to(b, r, 2e-5 * mag + extra + 1e-30), "%s n=%lld: dispatched %.9g vs double %.9g",
                       lt_type_name(t), (long long)n, b, r);
            }
        }
        /* short rows for the 32-element types (a single block, three blocks) */
        if (sc->block_size == 32 || sc->block_size == 1) {
            for (int64_t n = 32; n <= 96; n += 64) {
                random_row(t, n, w);
                for (int64_t i = 0; i < n; i++) x[i] = rnd_f();
                vt->from_float(x, act, n);
                double mag;
                const double r = ref_dot(t, n, w, act, &mag);
                const double extra = s_rounding(t, n, w, act);
                CHECKF(close_to(tr->vec_dot(n, w, act), r, 2e-5 * mag + extra + 1e-30), "%s n=%lld short row",
                       lt_type_name(t), (long long)n);
            }
        }
    }
    /* float types take any length: odd tails */
    const lt_type ft[3] = {LT_F32, LT_F16, LT_BF16};
    for (int k = 0; k < 3; k++)
        for (int64_t n = 1; n < 40; n += 3) {
            random_row(ft[k], n, w);
            for (int64_t i = 0; i < n; i++) x[i] = rnd_f();
            double mag;
            const double r = ref_dot(ft[k], n, w, x, &mag);
            CHECKF(close_to(lt_type_traits(ft[k])->vec_dot(n, w, x), r, 1e-5 * mag + 1e-30), "%s n=%lld tail",
                   lt_type_name(ft[k]), (long long)n);
        }
}

/* ------------------------------------------------- (4) lt_matmul */

static void test_matmul(void) {
    const int64_t n_rows = 37, n_cols = 512;
    static const int64_t toks[] = {1, 3, 17, 64};
    threadpool *pools[3] = {tp_create(1), tp_create(2), tp_create(3)};
    CHECK(pools[0] && pools[1] && pools[2]);
    lt_workspace ws = {0};
    const size_t max_rb = 4 * (size_t)n_cols;
    uint8_t *W = malloc((size_t)n_rows * max_rb);
    uint8_t *act = malloc(64 * max_rb);
    float *x = malloc(sizeof(float) * 64 * (size_t)n_cols);
    float *y = malloc(sizeof(float) * 64 * (size_t)n_rows), *yref = malloc(sizeof(float) * 64 * (size_t)n_rows);
    double *mag = malloc(sizeof(double) * 64 * (size_t)n_rows);
    for (int ti = 0; ti < N_DOT_TYPES; ti++) {
        const lt_type t = dot_types[ti];
        const lt_traits *sc = lt_type_traits_scalar(t);
        const lt_traits *vt = lt_type_traits_scalar(sc->vec_dot_type);
        const size_t wrb = lt_row_bytes(t, n_cols), arb = lt_row_bytes(sc->vec_dot_type, n_cols);
        for (int64_t r = 0; r < n_rows; r++) random_row(t, n_cols, W + (size_t)r * wrb);
        for (int64_t i = 0; i < 64 * n_cols; i++) x[i] = rnd_f();
        for (int64_t tk = 0; tk < 64; tk++) vt->from_float(x + tk * n_cols, act + (size_t)tk * arb, n_cols);
        /* naive reference: the scalar dot of every row with every token */
        for (int64_t tk = 0; tk < 64; tk++)
            for (int64_t r = 0; r < n_rows; r++) {
                yref[tk * n_rows + r] = sc->vec_dot(n_cols, W + (size_t)r * wrb, act + (size_t)tk * arb);
                ref_dot(t, n_cols, W + (size_t)r * wrb, act + (size_t)tk * arb, &mag[tk * n_rows + r]);
            }
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
            for (int p = 0; p < 3; p++) {
                const int64_t nt = toks[k];
                for (int64_t i = 0; i < nt * n_rows; i++) y[i] = NAN;
                const int rc = lt_matmul(pools[p], &ws, t, W, n_rows, n_cols, x, nt, y);
                int bad = 0;
                for (int64_t i = 0; i < nt * n_rows; i++)
                    if (!close_to(y[i], yref[i], 1e-5 * mag[i] + 1e-30)) {
                        if (bad++ < 3)
                            fprintf(stderr, "  %s tok %lld row %lld: %.9g vs %.9g\n", lt_type_name(t),
                                    (long long)(i / n_rows), (long long)(i % n_rows), y[i], yref[i]);
                    }
                CHECKF(rc == 0 && bad == 0, "lt_matmul %s n_tok=%lld threads=%d: rc %d, %d wrong", lt_type_name(t),
                       (long long)nt, p + 1, rc, bad);
            }
    }
    /* a long F32 row: the token chunks of the batch path */
    {
        const int64_t nc = 4096, nr = 5, nt = 40;
        float *w32 = malloc(sizeof(float) * (size_t)(nr * nc)), *x32 = malloc(sizeof(float) * (size_t)(nt * nc));
        float *y32 = malloc(sizeof(float) * (size_t)(nt * nr));
        for (int64_t i = 0; i < nr * nc; i++) w32[i] = rnd_f();
        for (int64_t i = 0; i < nt * nc; i++) x32[i] = rnd_f();
        CHECK(lt_matmul(pools[1], &ws, LT_F32, w32, nr, nc, x32, nt, y32) == 0);
        int bad = 0;
        for (int64_t tk = 0; tk < nt; tk++)
            for (int64_t r = 0; r < nr; r++) {
                double s = 0, m = 0;
                for (int64_t i = 0; i < nc; i++) {
                    s += (double)w32[r * nc + i] * x32[tk * nc + i];
                    m += fabs((double)w32[r * nc + i] * x32[tk * nc + i]);
                }
                bad += !close_to(y32[tk * nr + r], s, 1e-5 * m);
            }
        CHECKF(bad == 0, "lt_matmul F32 4096 columns: %d wrong", bad);
        free(w32);
        free(x32);
        free(y32);
    }
    /* long quantised rows: the batch is walked in several token chunks */
    {
        const lt_type lt[2] = {LT_Q8_0, LT_Q4_K};
        const int64_t nc = 4096, nr = 9, nt = 50;
        uint8_t *wq = malloc(lt_row_bytes(LT_Q8_0, nc) * (size_t)nr);
        uint8_t *aq = malloc(lt_row_bytes(LT_Q8_K, nc) * (size_t)nt);
        float *xl = malloc(sizeof(float) * (size_t)(nt * nc)), *yl = malloc(sizeof(float) * (size_t)(nt * nr));
        for (int k = 0; k < 2; k++) {
            const lt_traits *sc = lt_type_traits_scalar(lt[k]), *vt = lt_type_traits_scalar(sc->vec_dot_type);
            const size_t wrb = lt_row_bytes(lt[k], nc), arb = lt_row_bytes(sc->vec_dot_type, nc);
            for (int64_t r = 0; r < nr; r++) random_row(lt[k], nc, wq + (size_t)r * wrb);
            for (int64_t i = 0; i < nt * nc; i++) xl[i] = rnd_f();
            for (int64_t tk = 0; tk < nt; tk++) vt->from_float(xl + tk * nc, aq + (size_t)tk * arb, nc);
            CHECK(lt_matmul(pools[1], &ws, lt[k], wq, nr, nc, xl, nt, yl) == 0);
            int bad = 0;
            for (int64_t tk = 0; tk < nt; tk++)
                for (int64_t r = 0; r < nr; r++) {
                    double m;
                    ref_dot(lt[k], nc, wq + (size_t)r * wrb, aq + (size_t)tk * arb, &m);
                    const float want = sc->vec_dot(nc, wq + (size_t)r * wrb, aq + (size_t)tk * arb);
                    bad += !close_to(yl[tk * nr + r], want, 1e-5 * m + 1e-30);
                }
            CHECKF(bad == 0, "lt_matmul %s 4096 columns x 50 tokens: %d wrong", lt_type_name(lt[k]), bad);
        }
        free(wq);
        free(aq);
        free(xl);
        free(yl);
    }
    /* errors: no dot product, a row length that is not whole blocks */
    CHECK(lt_matmul(pools[0], &ws, LT_IQ2_XXS, W, 1, 256, x, 1, y) == -1);
    CHECK(lt_matmul(pools[0], &ws, LT_Q8_K, W, 1, 256, x, 1, y) == -1);
    CHECK(lt_matmul(pools[0], &ws, LT_Q4_0, W, 1, 48, x, 1, y) == -1);
    CHECK(lt_matmul(pools[0], &ws, LT_Q4_K, W, 1, 128, x, 1, y) == -1);
    CHECK(lt_matmul(pools[0], &ws, (lt_type)77, W, 1, 256, x, 1, y) == -1);
    CHECK(lt_matmul(NULL, &ws, LT_Q8_0, W, n_rows, n_cols, x, 0, y) == 0);
    lt_workspace_free(&ws);
    CHECK(ws.buf == NULL && ws.cap == 0);
    for (int p = 0; p < 3; p++) tp_free(pools[p]);
    free(W);
    free(act);
    free(x);
    free(y);
    free(yref);
    free(mag);
}

/* ------------------------------------------- (5) the type table */

static void test_table(void) {
    static const struct { int id; const char *name; int64_t bs; size_t bytes; } want[] = {
        {0, "F32", 1, 4},           {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},       {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},        {7, "Q5_1", 32, 24},       {8, "Q8_0", 32, 34},       {9, "Q8_1", 32, 36},
        {10, "Q2_K", 256, 84},      {11, "Q3_K", 256, 110},    {12, "Q4_K", 256, 144},    {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210},     {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66},  {17, "IQ2_XS", 256, 74},
        {18, "IQ3_XXS", 256, 98},   {19, "IQ1_S", 256, 50},    {20, "IQ4_NL", 32, 18},    {21, "IQ3_S", 256, 110},
        {22, "IQ2_S", 256, 82},     {23, "IQ4_XS", 256, 136},  {24, "I8", 1, 1},          {25, "I16", 1, 2},
        {26, "I32", 1, 4},          {27, "I64", 1, 8},         {28, "F64", 1, 8},         {29, "IQ1_M", 256, 56},
        {30, "BF16", 1, 2},         {34, "TQ1_0", 256, 54},    {35, "TQ2_0", 256, 66},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const lt_traits *tr = lt_type_traits((lt_type)want[i].id);
        CHECKF(tr && tr->known && strcmp(tr->name, want[i].name) == 0 && tr->block_size == want[i].bs &&
                   tr->block_bytes == want[i].bytes,
               "type %d is %s, %lld elements in %zu bytes", want[i].id, want[i].name, (long long)want[i].bs,
               want[i].bytes);
        CHECK(strcmp(lt_type_name(want[i].id), want[i].name) == 0);
        CHECK(lt_row_bytes((lt_type)want[i].id, want[i].bs * 3) == 3 * want[i].bytes);
    }
    static const int removed[] = {4, 5, 31, 32, 33};
    for (int i = 0; i < 5; i++) {
        const lt_traits *tr = lt_type_traits((lt_type)removed[i]);
        char nm[32];
        snprintf(nm, sizeof nm, "unknown(%d)", removed[i]);
        CHECKF(tr && !tr->known && !tr->to_float && !tr->vec_dot, "type %d is unknown", removed[i]);
        CHECKF(strcmp(lt_type_name(removed[i]), nm) == 0, "name of %d", removed[i]);
        CHECK(!lt_type_supported(removed[i]));
        CHECK(lt_row_bytes((lt_type)removed[i], 256) == 0);
    }
    CHECK(lt_type_traits(LT_TYPE_COUNT) == NULL && lt_type_traits_scalar(LT_TYPE_COUNT) == NULL);
    CHECK(lt_type_traits((lt_type)-1) == NULL);
    CHECK(strcmp(lt_type_name(36), "unknown(36)") == 0 && strcmp(lt_type_name(-3), "unknown(-3)") == 0);
    CHECK(lt_row_bytes(LT_Q4_0, 64) == 36 && lt_row_bytes(LT_Q4_0, 33) == 0 && lt_row_bytes(LT_Q4_0, -32) == 0);
    CHECK(lt_row_bytes(LT_Q4_K, 512) == 288 && lt_row_bytes(LT_Q4_K, 100) == 0);
    CHECK(lt_row_bytes(LT_F32, 3) == 12 && lt_row_bytes(LT_F16, 7) == 14 && lt_row_bytes(LT_I8, 5) == 5);
    CHECK(lt_row_bytes((lt_type)40, 32) == 0);
    CHECK(lt_row_bytes(LT_F32, INT64_MAX) == 0); /* overflow */
    /* vec_dot types as llama.cpp pairs them */
    CHECK(lt_type_traits(LT_Q4_0)->vec_dot_type == LT_Q8_0 && lt_type_traits(LT_Q5_0)->vec_dot_type == LT_Q8_0);
    CHECK(lt_type_traits(LT_Q8_0)->vec_dot_type == LT_Q8_0);
    CHECK(lt_type_traits(LT_Q4_1)->vec_dot_type == LT_Q8_1 && lt_type_traits(LT_Q5_1)->vec_dot_type == LT_Q8_1);
    CHECK(lt_type_traits(LT_Q4_K)->vec_dot_type == LT_Q8_K && lt_type_traits(LT_Q6_K)->vec_dot_type == LT_Q8_K);
    CHECK(lt_type_traits(LT_F16)->vec_dot_type == LT_F32 && lt_type_traits(LT_BF16)->vec_dot_type == LT_F32);
    /* supported = loadable as weights */
    static const int sup[] = {LT_F32, LT_F16, LT_BF16, LT_Q4_0, LT_Q4_1, LT_Q5_0, LT_Q5_1, LT_Q8_0,
                              LT_Q2_K, LT_Q3_K, LT_Q4_K, LT_Q5_K, LT_Q6_K};
    for (size_t i = 0; i < sizeof sup / sizeof sup[0]; i++) CHECKF(lt_type_supported(sup[i]), "%s supported", lt_type_name(sup[i]));
    static const int unsup[] = {LT_Q8_1, LT_Q8_K, LT_IQ2_XXS, LT_IQ1_S, LT_I8, LT_F64, LT_TQ1_0, 99, -1};
    for (size_t i = 0; i < sizeof unsup / sizeof unsup[0]; i++)
        CHECKF(!lt_type_supported(unsup[i]), "%s not supported", lt_type_name(unsup[i]));
    /* quantisers that the header promises */
    static const lt_type qz[] = {LT_F32, LT_F16, LT_BF16, LT_Q8_0, LT_Q8_1, LT_Q8_K, LT_Q4_0, LT_Q4_1, LT_Q5_0, LT_Q5_1};
    for (size_t i = 0; i < sizeof qz / sizeof qz[0]; i++)
        CHECKF(lt_type_traits(qz[i])->from_float && lt_type_traits_scalar(qz[i])->from_float, "%s quantiser",
               lt_type_name(qz[i]));
    const char *simd = lt_simd_name();
    CHECK(strcmp(simd, "avx512") == 0 || strcmp(simd, "avx2") == 0 || strcmp(simd, "scalar") == 0);
    printf("simd: %s\n", simd);
}

int main(void) {
    test_table();
    test_deq_float();
    test_deq_legacy();
    test_deq_q2_k();
    test_deq_q3_k();
    test_deq_q4_k();
    test_deq_q5_k();
    test_deq_q6_k();
    test_deq_q8_k_iq4_xs();
    roundtrip(LT_Q4_0, 4096, 0.12);
    roundtrip(LT_Q4_1, 4096, 0.08);
    roundtrip(LT_Q5_0, 4096, 0.06);
    roundtrip(LT_Q5_1, 4096, 0.04);
    roundtrip(LT_Q8_0, 4096, 0.01);
    roundtrip(LT_Q8_1, 4096, 0.01);
    roundtrip(LT_Q8_K, 4096, 0.02);
    roundtrip(LT_F16, 4096, 0.001);
    roundtrip(LT_BF16, 4096, 0.004);
    test_rounding_rules();
    test_vec_dot();
    test_matmul();
    return tu_finish("test_quant");
}
