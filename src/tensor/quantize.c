/* The reference quantisers (see quantize.h). The 32-element types use the
 * portable from_float kernels of quant_legacy.c, which already follow
 * ggml's reference rounding; the k-quants are here.
 *
 * Bit identity with llama.cpp needs the same float operations in the same
 * order (each one rounded, no fused multiply-adds: lethe builds as ISO C,
 * where GCC does not contract, and ggml builds this code without FMA
 * flags), so the expressions below keep ggml's evaluation order:
 * a*b*c means (a*b)*c, sums run in index order. */
#include "tensor/quantize.h"

#include <math.h>
#include <string.h>

#include "tensor/quant_impl.h"
#include "util/fp16.h"

#define GROUP_EPS 1e-15f

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves
 * the integer in the low mantissa bits. Exact, and much faster than rintf
 * on baseline x86-64. */
static inline int round_int(float v) {
    const float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- Q4_K / Q5_K: sub-blocks of 32 with a 6-bit scale and min each ---- */

/* Weighted least-squares fit x ~ scale*L + m with L in [0, nmax] and m <= 0:
 * a first guess from the range, then nstep+1 candidate scales
 * (rmin + rdelta*k + nmax) / (max - m), m the best offset so far, each refined by solving for scale and m,
 * keeping the lowest weighted squared error. Returns the scale; *neg_m = -m.
 * (ggml's make_qkx2_quants with use_mad false.) */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_m, uint8_t *cand,
                           float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_m = -lo;
        return 0.0f;
    }
    float iscale = nmax / (hi - lo);
    float scale = 1 / iscale;
    float m = lo;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(round_int(iscale * (x[i] - m)), 0, nmax);
        float diff = scale * L[i] + m - x[i];
        diff = diff * diff;
        best += w[i] * diff;
    }
    for (int k = 0; k <= nstep; k++) {
        /* relative to the best offset so far, as ggml does */
        iscale = (rmin + rdelta * k + nmax) / (hi - m);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_int(iscale * (x[i] - m)), 0, nmax);
            cand[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0)) continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / det;
        float mm = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (mm > 0) {
            mm = 0;
            s = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = s * cand[i] + mm - x[i];
            diff = diff * diff;
            err += w[i] * diff;
        }
        if (err < best) {
            memcpy(L, cand, (size_t)n);
            best = err;
            scale = s;
            m = mm;
        }
    }
    *neg_m = -m;
    return scale;
}

/* The 12-byte scale field of Q4_K / Q5_K from 8 scales and 8 mins (6 bits
 * each), the inverse of lt_unpack_k4_scales. */
void lt_pack_k4_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = sc[j];
        out[j + 4] = mn[j];
    }
    for (int j = 4; j < 8; j++) {
        out[j + 4] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
        out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        out[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
}

/* One super-block of Q4_K (nmax 15) or Q5_K (nmax 31): fits each sub-block,
 * quantises the scales and mins to 6 bits against the largest of each, and
 * requantises the elements with the rounded scales. L gets the levels. */
static void k45_block(const float *x, int nmax, float rmin, float rdelta, int nstep, uint16_t *d, uint16_t *dmin,
                      uint8_t scales[12], uint8_t L[QK_K]) {
    float w[32], sc[8], mn[8];
    uint8_t cand[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], cand, rmin, rdelta, nstep);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* stored through uint8_t first, as ggml does (a negative value wraps and then saturates at 63) */
        const uint8_t a = (uint8_t)round_int(inv_scale * sc[j]);
        const uint8_t b = (uint8_t)round_int(inv_min * mn[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    lt_pack_k4_scales(ls, lm, scales);
    *d = fp32_to_fp16(max_scale / 63.f);
    *dmin = fp32_to_fp16(max_min / 63.f);
    uint8_t usc[8], umn[8];
    lt_unpack_k4_scales(scales, usc, umn);
    for (int j = 0; j < 8; j++) {
        const float dd = fp16_to_fp32(*d) * usc[j];
        if (!dd) continue;
        const float dm = fp16_to_fp32(*dmin) * umn[j];
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clampi(round_int((x[32 * j + i] + dm) / dd), 0, nmax);
    }
}

static void quantize_q4_K(const float *x, void *dst, int64_t n) {
    blk_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        k45_block(x, 15, -1.f, 0.1f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* element 64h + 32k + l: nibble k of qs[32h + l] */
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * h + l] = (uint8_t)(L[64 * h + l] | L[64 * h + 32 + l] << 4);
    }
}

static void quantize_q5_K(const float *x, void *dst, int64_t n) {
    blk_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        k45_block(x, 31, -0.5f, 0.1f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        /* low nibbles as Q4_K; the fifth bit of element 64h + 32k + l is bit 2h + k of qh[l] */
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) {
                const int a = L[64 * h + l], b = L[64 * h + 32 + l];
                y[i].qs[32 * h + l] = (uint8_t)((a & 15) | (b & 15) << 4);
                y[i].qh[l] |= (uint8_t)((a >> 4) << (2 * h) | (b >> 4) << (2 * h + 1));
            }
    }
}

/* ---- Q6_K: sub-blocks of 16 with a signed 8-bit scale each ---- */

/* Symmetric fit x ~ scale*(L - nmax) with L - nmax in [-nmax, nmax-1],
 * weights x^2: the scale that maps the largest magnitude to -nmax, then 18
 * nearby scales, keeping the best weighted fit. (ggml's make_qx_quants with
 * rmse_type 1 and no importance weights.) */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(round_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        iscale = -(nmax + 0.1f * k) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(round_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quantize_q6_K(const float *x, void *dst, int64_t n) {
    blk_q6_K *y = dst;
    int8_t L[QK_K];
    float sc[16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int g = 0; g < 16; g++) {
            sc[g] = fit_scale_sym(16, 32, x + 16 * g, L + 16 * g);
            if (fabsf(sc[g]) > max_abs) {
                max_abs = fabsf(sc[g]);
                max_scale = sc[g];
            }
        }
        if (max_abs < GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = fp32_to_fp16(1 / iscale);
        for (int g = 0; g < 16; g++) {
            const int s = round_int(iscale * sc[g]);
            y[i].scales[g] = (int8_t)(s < 127 ? s : 127);
        }
        for (int g = 0; g < 16; g++) {
            const float d = fp16_to_fp32(y[i].d) * y[i].scales[g];
            if (!d) continue;
            for (int l = 0; l < 16; l++) L[16 * g + l] = (int8_t)(clampi(round_int(x[16 * g + l] / d), -32, 31) + 32);
        }
        /* element 128h + 32k + l: nibble k/2 of ql[64h + 32(k%2) + l], high
         * two bits at bits 2k of qh[32h + l] */
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *q = L + 128 * h + l;
                y[i].ql[64 * h + l] = (uint8_t)((q[0] & 15) | (q[64] & 15) << 4);
                y[i].ql[64 * h + 32 + l] = (uint8_t)((q[32] & 15) | (q[96] & 15) << 4);
                y[i].qh[32 * h + l] = (uint8_t)((q[0] >> 4) | (q[32] >> 4) << 2 | (q[64] >> 4) << 4 | (q[96] >> 4) << 6);
            }
    }
}

/* ---- dispatch ---- */

static lt_from_float_fn quantizer(lt_type t) {
    switch (t) {
    case LT_F32: case LT_F16: case LT_BF16:
    case LT_Q4_0: case LT_Q4_1: case LT_Q5_0: case LT_Q5_1: case LT_Q8_0:
        return lt_type_traits_scalar(t)->from_float; /* the portable reference kernels */
    case LT_Q4_K: return quantize_q4_K;
    case LT_Q5_K: return quantize_q5_K;
    case LT_Q6_K: return quantize_q6_K;
    default: return NULL;
    }
}

bool lt_quantize_supported(lt_type t) { return quantizer(t) != NULL; }

size_t lt_quantize_rows(lt_type t, const float *src, void *dst, int64_t nrows, int64_t n_per_row) {
    lt_from_float_fn fn = quantizer(t);
    const size_t row = lt_row_bytes(t, n_per_row);
    if (!fn || !row || nrows < 0) return 0;
    for (int64_t r = 0; r < nrows; r++) fn(src + r * n_per_row, (uint8_t *)dst + (size_t)r * row, n_per_row);
    return row * (size_t)nrows;
}
