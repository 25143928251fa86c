/* Portable kernels of the 256-element super-block types ("k-quants") Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, the activation type Q8_K, and IQ4_XS.
 *
 * In every k-quant, element e of a super-block belongs to sub-block e/16
 * (Q2_K, Q3_K, Q6_K) or e/32 (Q4_K, Q5_K), and the packed low bits of
 * element e = 128*h + 32*k + l (h < 2, k < 4, l < 32) sit at
 *   Q2_K/Q3_K: bits 2k..2k+1 of qs[32h + l];   Q3_K high bit: bit 4h+k of hmask[l]
 *   Q4_K/Q5_K: nibble k%2 of qs[64h + 32(k/2) + l]; Q5_K fifth bit: bit 4h+k of qh[l]
 *   Q6_K: nibble k/2 of ql[64h + 32(k%2) + l]; high two bits: bits 2k..2k+1 of qh[32h + l]
 * The dot products against Q8_K sum exact integer products per sub-block,
 * weight them by the integer sub-block scales, and fold the offsets (mins, or
 * the -32 / -4 of the signed types) in through Q8_K's per-16 sums, as ggml's
 * CPU path does. */
#include <math.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "util/fp16.h"

#define F16(h) fp16_to_fp32(h)

void lt_unpack_k4_scales(const uint8_t b[12], uint8_t sc[8], uint8_t mn[8]) {
    /* bytes 0-3: scales 0-3 (low 6 bits), bytes 4-7: mins 0-3 (low 6 bits);
     * bytes 8-11: low nibble = scale 4-7, high nibble = min 4-7, whose top two
     * bits are the top bits of bytes 0-3 (scales) and 4-7 (mins). */
    for (int j = 0; j < 4; j++) {
        sc[j] = b[j] & 63;
        mn[j] = b[j + 4] & 63;
        sc[j + 4] = (uint8_t)((b[j + 8] & 15) | (b[j] >> 6) << 4);
        mn[j + 4] = (uint8_t)((b[j + 8] >> 4) | (b[j + 4] >> 6) << 4);
    }
}

void lt_unpack_q3k_scales(const uint8_t b[12], int8_t sc[16]) {
    /* scale s: low 4 bits = nibble s/8 of b[s%8], high 2 bits = bits
     * 2(s/4)..2(s/4)+1 of b[8 + s%4]; stored with an offset of 32. */
    for (int s = 0; s < 16; s++) {
        const int lo = (b[s % 8] >> (4 * (s / 8))) & 15;
        const int hi = (b[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (int8_t)((lo | hi << 4) - 32);
    }
}

/* Element values of one super-block (before scaling), as small integers. */
static void q2k_values(const blk_q2_K *b, int8_t v[256]) {
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e / 32) % 4, l = e % 32;
        v[e] = (int8_t)((b->qs[32 * h + l] >> (2 * k)) & 3);
    }
}

static void q3k_values(const blk_q3_K *b, int8_t v[256]) {
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e / 32) % 4, l = e % 32;
        const int lo = (b->qs[32 * h + l] >> (2 * k)) & 3;
        const int hbit = (b->hmask[l] >> (4 * h + k)) & 1;
        v[e] = (int8_t)(lo - (hbit ? 0 : 4));
    }
}

static void q4k_values(const uint8_t qs[128], int8_t v[256]) {
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e / 32) % 4, l = e % 32;
        const uint8_t byte = qs[64 * h + 32 * (k / 2) + l];
        v[e] = (int8_t)((k % 2) ? byte >> 4 : byte & 15);
    }
}

static void q5k_values(const blk_q5_K *b, int8_t v[256]) {
    q4k_values(b->qs, v);
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e / 32) % 4, l = e % 32;
        v[e] = (int8_t)(v[e] | ((b->qh[l] >> (4 * h + k)) & 1) << 4);
    }
}

static void q6k_values(const blk_q6_K *b, int8_t v[256]) {
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e / 32) % 4, l = e % 32;
        const uint8_t byte = b->ql[64 * h + 32 * (k % 2) + l];
        const int lo = (k / 2) ? byte >> 4 : byte & 15;
        const int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
        v[e] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void iq4xs_scales(const blk_iq4_xs *b, int sc[8]) {
    for (int j = 0; j < 8; j++) {
        const int lo = (b->scales_l[j / 2] >> (4 * (j % 2))) & 15;
        const int hi = (b->scales_h >> (2 * j)) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

static void iq4xs_values(const blk_iq4_xs *b, int8_t v[256]) {
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 16; l++) {
            v[32 * j + l] = lt_iq4nl_values[b->qs[16 * j + l] & 15];
            v[32 * j + 16 + l] = lt_iq4nl_values[b->qs[16 * j + l] >> 4];
        }
}

/* ---- dequantisation ---- */

void lt_q2_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q2_K *b = src;
    int8_t v[256];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        q2k_values(&b[i], v);
        for (int e = 0; e < 256; e++) {
            const uint8_t s = b[i].scales[e / 16];
            dst[e] = d * (s & 15) * v[e] - dmin * (s >> 4);
        }
    }
}

void lt_q3_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q3_K *b = src;
    int8_t v[256], sc[16];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d);
        q3k_values(&b[i], v);
        lt_unpack_q3k_scales(b[i].scales, sc);
        for (int e = 0; e < 256; e++) dst[e] = d * sc[e / 16] * v[e];
    }
}

void lt_q4_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q4_K *b = src;
    int8_t v[256];
    uint8_t sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        q4k_values(b[i].qs, v);
        lt_unpack_k4_scales(b[i].scales, sc, mn);
        for (int e = 0; e < 256; e++) dst[e] = d * sc[e / 32] * v[e] - dmin * mn[e / 32];
    }
}

void lt_q5_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q5_K *b = src;
    int8_t v[256];
    uint8_t sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        q5k_values(&b[i], v);
        lt_unpack_k4_scales(b[i].scales, sc, mn);
        for (int e = 0; e < 256; e++) dst[e] = d * sc[e / 32] * v[e] - dmin * mn[e / 32];
    }
}

void lt_q6_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q6_K *b = src;
    int8_t v[256];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d);
        q6k_values(&b[i], v);
        for (int e = 0; e < 256; e++) dst[e] = d * b[i].scales[e / 16] * v[e];
    }
}

void lt_q8_K_to_float(const void *src, float *dst, int64_t n) {
    const blk_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int e = 0; e < 256; e++) dst[e] = b[i].d * b[i].qs[e];
}

void lt_iq4_xs_to_float(const void *src, float *dst, int64_t n) {
    const blk_iq4_xs *b = src;
    int8_t v[256];
    int sc[8];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d);
        iq4xs_values(&b[i], v);
        iq4xs_scales(&b[i], sc);
        for (int e = 0; e < 256; e++) dst[e] = d * sc[e / 32] * v[e];
    }
}

/* ---- Q8_K quantisation (ggml's reference scheme) ---- */

/* Round half to even, as ggml's nearest_int (|v| <= 127 here). */
static int round_even(float v) { return (int)rintf(v); }

void lt_q8_K_from_float(const float *x, void *dst, int64_t n) {
    blk_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int e = 0; e < 256; e++)
            if (fabsf(x[e]) > amax) {
                amax = fabsf(x[e]);
                max = x[e];
            }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        /* The element of largest magnitude maps to -127 (it is -128/max in
         * older ggml); +127 caps the opposite end. */
        const float iscale = -127.0f / max;
        for (int e = 0; e < 256; e++) {
            const int q = round_even(iscale * x[e]);
            b[i].qs[e] = (int8_t)(q > 127 ? 127 : q);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b[i].qs[16 * g + l];
            b[i].bsums[g] = (int16_t)s;
        }
        b[i].d = 1.0f / iscale;
    }
}

/* ---- dot products against Q8_K ---- */

/* sum over sub-blocks of sc[g] * dot(v, y) over group g of size gs */
static int scaled_dot(const int8_t *v, const int8_t *y, const int *sc, int gs) {
    int total = 0;
    for (int g = 0; g < 256 / gs; g++) {
        int s = 0;
        for (int l = 0; l < gs; l++) s += v[g * gs + l] * y[g * gs + l];
        total += sc[g] * s;
    }
    return total;
}

float lt_q2_K_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q2_K *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256];
    int sc[16];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int msum = 0;
        q2k_values(&x[i], v);
        for (int g = 0; g < 16; g++) {
            sc[g] = x[i].scales[g] & 15;
            msum += (x[i].scales[g] >> 4) * y[i].bsums[g];
        }
        const int isum = scaled_dot(v, y[i].qs, sc, 16);
        sum += F16(x[i].d) * y[i].d * (float)isum - F16(x[i].dmin) * y[i].d * (float)msum;
    }
    return sum;
}

float lt_q3_K_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q3_K *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256], sc8[16];
    int sc[16];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q3k_values(&x[i], v);
        lt_unpack_q3k_scales(x[i].scales, sc8);
        for (int g = 0; g < 16; g++) sc[g] = sc8[g];
        sum += F16(x[i].d) * y[i].d * (float)scaled_dot(v, y[i].qs, sc, 16);
    }
    return sum;
}

/* One super-block of Q4_K or Q5_K (their values v already unpacked) against
 * Q8_K: 8 sub-blocks of 32 with 6-bit scales and mins; the mins meet the
 * activations through Q8_K's per-16 sums. */
static float k45_block_dot(const int8_t *v, const uint8_t *scales, uint16_t d, uint16_t dmin, const blk_q8_K *y) {
    uint8_t sc8[8], mn[8];
    int sc[8], msum = 0;
    lt_unpack_k4_scales(scales, sc8, mn);
    for (int j = 0; j < 8; j++) {
        sc[j] = sc8[j];
        msum += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    const int isum = scaled_dot(v, y->qs, sc, 32);
    return F16(d) * y->d * (float)isum - F16(dmin) * y->d * (float)msum;
}

float lt_q4_K_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q4_K *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q4k_values(x[i].qs, v);
        sum += k45_block_dot(v, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return sum;
}

float lt_q5_K_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q5_K *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q5k_values(&x[i], v);
        sum += k45_block_dot(v, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return sum;
}

float lt_q6_K_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q6_K *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256];
    int sc[16];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6k_values(&x[i], v);
        for (int g = 0; g < 16; g++) sc[g] = x[i].scales[g];
        sum += F16(x[i].d) * y[i].d * (float)scaled_dot(v, y[i].qs, sc, 16);
    }
    return sum;
}

float lt_iq4_xs_dot(int64_t n, const void *vx, const void *vy) {
    const blk_iq4_xs *x = vx;
    const blk_q8_K *y = vy;
    int8_t v[256];
    int sc[8];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        iq4xs_values(&x[i], v);
        iq4xs_scales(&x[i], sc);
        sum += F16(x[i].d) * y[i].d * (float)scaled_dot(v, y[i].qs, sc, 32);
    }
    return sum;
}
