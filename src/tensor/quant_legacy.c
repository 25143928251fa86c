/* Portable kernels of the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q8_1 and IQ4_NL.
 *
 * Element j of a 4/5-bit block lives in the low nibble of qs[j] for j < 16
 * and in the high nibble of qs[j-16] otherwise; the fifth bit of element j is
 * bit j of the little-endian 32-bit qh. Q4_0: x = d*(q-8); Q4_1: x = d*q + m;
 * Q5_0: x = d*(q-16); Q5_1: x = d*q + m; Q8_0: x = d*q.
 *
 * The quantisers follow ggml's reference rounding, and the dot products sum
 * exact integer products per block and scale once per block, as ggml's CPU
 * path does, so results match llama.cpp's to float rounding. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "util/fp16.h"

#define F16(h) fp16_to_fp32(h)

const int8_t lt_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

static uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* ---- dequantisation ---- */

void lt_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * ((b[i].qs[j] & 15) - 8);
            dst[j + 16] = d * ((b[i].qs[j] >> 4) - 8);
        }
    }
}

void lt_q4_1_to_float(const void *src, float *dst, int64_t n) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = F16(b[i].d), m = F16(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (b[i].qs[j] & 15) + m;
            dst[j + 16] = d * (b[i].qs[j] >> 4) + m;
        }
    }
}

void lt_q5_0_to_float(const void *src, float *dst, int64_t n) {
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = F16(b[i].d);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const int lo = (b[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (lo - 16);
            dst[j + 16] = d * (hi - 16);
        }
    }
}

void lt_q5_1_to_float(const void *src, float *dst, int64_t n) {
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = F16(b[i].d), m = F16(b[i].m);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const int lo = (b[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * lo + m;
            dst[j + 16] = d * hi + m;
        }
    }
}

void lt_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = F16(b[i].d);
        for (int j = 0; j < 32; j++) dst[j] = d * b[i].qs[j];
    }
}

void lt_q8_1_to_float(const void *src, float *dst, int64_t n) {
    const blk_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = F16(b[i].d);
        for (int j = 0; j < 32; j++) dst[j] = d * b[i].qs[j];
    }
}

void lt_iq4_nl_to_float(const void *src, float *dst, int64_t n) {
    const blk_iq4_nl *b = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, dst += QK4_NL) {
        const float d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * lt_iq4nl_values[b[i].qs[j] & 15];
            dst[j + 16] = d * lt_iq4nl_values[b[i].qs[j] >> 4];
        }
    }
}

/* ---- quantisation (ggml's reference schemes) ---- */

/* The element of largest magnitude, with its sign (the first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Truncation toward zero after adding the offset, as ggml's (int8_t) casts. */
static int trunc_clamp(float v, int hi) {
    int q = (int)v;
    if (q < 0) q = 0;
    return q > hi ? hi : q;
}

void lt_q4_0_from_float(const float *x, void *dst, int64_t n) {
    blk_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float d = signed_absmax(x, 32) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            const int lo = trunc_clamp(x[j] * id + 8.5f, 15);
            const int hi = trunc_clamp(x[j + 16] * id + 8.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void lt_q4_1_from_float(const float *x, void *dst, int64_t n) {
    blk_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float mn, mx;
        minmax(x, 32, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < 16; j++) {
            const int lo = trunc_clamp((x[j] - mn) * id + 0.5f, 15);
            const int hi = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

static void store_qh(uint8_t out[4], uint32_t qh) {
    for (int k = 0; k < 4; k++) out[k] = (uint8_t)(qh >> (8 * k));
}

void lt_q5_0_from_float(const float *x, void *dst, int64_t n) {
    blk_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float d = signed_absmax(x, 32) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            const int lo = trunc_clamp(x[j] * id + 16.5f, 31);
            const int hi = trunc_clamp(x[j + 16] * id + 16.5f, 31);
            b[i].qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        store_qh(b[i].qh, qh);
    }
}

void lt_q5_1_from_float(const float *x, void *dst, int64_t n) {
    blk_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float mn, mx;
        minmax(x, 32, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < 16; j++) {
            const int lo = trunc_clamp((x[j] - mn) * id + 0.5f, 31);
            const int hi = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 31);
            b[i].qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        store_qh(b[i].qh, qh);
    }
}

/* Q8_0 / Q8_1: d = amax/127, q = roundf(x/d) (halves away from zero). */
static float q8_block(const float *x, int8_t *q, int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int s = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (int8_t)roundf(x[j] * id);
        s += q[j];
    }
    *sum = s;
    return d;
}

void lt_q8_0_from_float(const float *x, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        int sum;
        b[i].d = fp32_to_fp16(q8_block(x, b[i].qs, &sum));
    }
}

void lt_q8_1_from_float(const float *x, void *dst, int64_t n) {
    blk_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        int sum;
        const float d = q8_block(x, b[i].qs, &sum);
        b[i].d = fp32_to_fp16(d);
        b[i].s = fp32_to_fp16((float)sum * d);
    }
}

/* ---- dot products ---- */

float lt_q4_0_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q4_0 *x = vx;
    const blk_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += ((x[i].qs[j] & 15) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    return sum;
}

float lt_q4_1_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q4_1 *x = vx;
    const blk_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += (x[i].qs[j] & 15) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        /* sum_j (d q_j + m) y_j = d*dy*isum + m*s with s = dy * sum(y q) */
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d)) + F16(x[i].m) * F16(y[i].s);
    }
    return sum;
}

float lt_q5_0_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q5_0 *x = vx;
    const blk_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = ((x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            const int hi = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            isum += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    return sum;
}

float lt_q5_1_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q5_1 *x = vx;
    const blk_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = (x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d)) + F16(x[i].m) * F16(y[i].s);
    }
    return sum;
}

float lt_q8_0_dot(int64_t n, const void *vx, const void *vy) {
    const blk_q8_0 *x = vx;
    const blk_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    return sum;
}

float lt_iq4_nl_dot(int64_t n, const void *vx, const void *vy) {
    const blk_iq4_nl *x = vx;
    const blk_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += lt_iq4nl_values[x[i].qs[j] & 15] * y[i].qs[j] +
                    lt_iq4nl_values[x[i].qs[j] >> 4] * y[i].qs[j + 16];
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    return sum;
}

/* ---- activation tables for the matmul tiles ---- */

void lt_act_tables(lt_type vdt, const void *row, int64_t b0, int64_t cnt, float *d, float *s, size_t ld) {
    for (int64_t b = b0; b < b0 + cnt; b++) {
        if (vdt == LT_Q8_1) {
            const blk_q8_1 *q = (const blk_q8_1 *)row + b;
            d[(size_t)b * ld] = F16(q->d);
            s[(size_t)b * ld] = F16(q->s);
        } else {
            const blk_q8_0 *q = (const blk_q8_0 *)row + b;
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += q->qs[j];
            d[(size_t)b * ld] = F16(q->d);
            s[(size_t)b * ld] = F16(q->d) * (float)sum;
        }
    }
}
