/* Scalar reference kernels for the tiled attention and the run-time choice
 * between them and the AVX2 ones. */
#include "attn/attn_kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

#include "attn/attn_rows.h"
#include "attn/attn_softmax.h"
#include "tensor/cpu.h"
#include "tensor/quant_impl.h"
#include "util/fp16.h"

/* Element e of row j of a key / value row block: F32 as stored, F16
 * converted (exactly), Q8_0 as integer x scale (one rounding, as
 * kv_row_to_f32), so the kernels on every kind equal converting the page to
 * F32 first and calling the F32 ones, bit for bit: same arithmetic, same
 * order. */
static inline float elem(int kind, const void *base, long j, int d, int e) {
    const char *row = row_at(kind, base, j, d);
    if (kind == ROW_F32) return ((const float *)(const void *)row)[e];
    if (kind == ROW_F16) return fp16_to_fp32(((const uint16_t *)(const void *)row)[e]);
    const blk_q8_0 *b = (const blk_q8_0 *)(const void *)row + e / 32;
    return (float)b->qs[e % 32] * fp16_to_fp32(b->d);
}

static inline void scores_body(int kind, const float *q, int q_stride, int nr, const void *k, int nk, int d, float *S,
                               int s_stride) {
    for (int r = 0; r < nr; r++) {
        const float *qr = q + (long)r * q_stride;
        for (int j = 0; j < nk; j++) {
            float acc = 0.0f;
            for (int e = 0; e < d; e++) acc += qr[e] * elem(kind, k, j, d, e);
            S[(long)r * s_stride + j] = acc;
        }
    }
}

static void scores_scalar(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S,
                          int s_stride) {
    scores_body(ROW_F32, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void scores_f16_scalar(const float *q, int q_stride, int nr, const uint16_t *k, int nk, int d, float *S,
                              int s_stride) {
    scores_body(ROW_F16, q, q_stride, nr, k, nk, d, S, s_stride);
}

static float exp_sum_scalar(float *s, int n, float m) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    return sum;
}

static float row_max_scalar(const float *s, int n) {
    float mx = s[0];
    for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    return mx;
}

static void softmax_scalar(float *s, int s_stride, int nr, int nk, float *m, float *l, float *alpha) {
    attn_softmax_rows(row_max_scalar, exp_sum_scalar, s, s_stride, nr, nk, m, l, alpha);
}

static void scores_many_scalar(const float *q, int q_stride, int nr, const void *k, int half, int nk, int d, float *S,
                               int s_stride, float *kt) {
    (void)kt;
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nk; j++) {
            const float *qr = q + (long)r * q_stride;
            float acc = 0.0f;
            for (int e = 0; e < d; e++) acc += qr[e] * elem(half ? ROW_F16 : ROW_F32, k, j, d, e);
            S[(long)r * s_stride + j] = acc;
        }
}

static inline void pv_body(int kind, float *o, int nr, const float *alpha, const float *p, int p_stride,
                           const void *v, int nk, int d) {
    for (int r = 0; r < nr; r++) {
        float *orow = o + (long)r * d;
        const float *prow = p + (long)r * p_stride;
        if (alpha[r] != 1.0f)
            for (int e = 0; e < d; e++) orow[e] *= alpha[r];
        for (int j = 0; j < nk; j++) {
            float pj = prow[j];
            if (pj == 0.0f) continue;
            for (int e = 0; e < d; e++) orow[e] += pj * elem(kind, v, j, d, e);
        }
    }
}

static void pv_scalar(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk,
                      int d) {
    pv_body(ROW_F32, o, nr, alpha, p, p_stride, v, nk, d);
}

static void pv_f16_scalar(float *o, int nr, const float *alpha, const float *p, int p_stride, const uint16_t *v,
                          int nk, int d) {
    pv_body(ROW_F16, o, nr, alpha, p, p_stride, v, nk, d);
}

/* Block bi of a cold page as 32 signed integers (Q4_0: q - 8; Q8_0: q);
 * returns its scale. The value is scale * x[i], exactly as dequantised. */
static float cold_block(lt_type ty, const void *base, long bi, int x[32]) {
    if (ty == LT_Q4_0) {
        const blk_q4_0 *b = (const blk_q4_0 *)base + bi;
        for (int i = 0; i < 16; i++) {
            x[i] = (b->qs[i] & 15) - 8;
            x[i + 16] = (b->qs[i] >> 4) - 8;
        }
        return fp16_to_fp32(b->d);
    }
    const blk_q8_0 *b = (const blk_q8_0 *)base + bi;
    for (int i = 0; i < 32; i++) x[i] = b->qs[i];
    return fp16_to_fp32(b->d);
}

/* Per slot, dims in order: acc += (q_e * scale) * x, one channel block at a time. */
static void scores_cold_scalar(lt_type ty, const float *q, int q_stride, int nr, const void *k, int P, int nk, int d,
                               float *S, int s_stride, float *stage) {
    (void)stage;
    const int nb = P / 32, nbk = (nk + 31) / 32;
    int x[32];
    for (int r = 0; r < nr; r++) {
        const float *qr = q + (long)r * q_stride;
        float *sr = S + (long)r * s_stride;
        for (int j = 0; j < nbk * 32; j++) sr[j] = 0.0f;
        for (int e = 0; e < d; e++)
            for (int b = 0; b < nbk; b++) {
                float c = qr[e] * cold_block(ty, k, (long)e * nb + b, x);
                for (int i = 0; i < 32; i++) sr[32 * b + i] += c * (float)x[i];
            }
    }
}

static void pv_cold_scalar(lt_type ty, float *o, int nr, const float *alpha, const float *p, int p_stride,
                           const void *v, int nk, int d, float *stage) {
    (void)stage;
    const int nb = d / 32;
    int x[32];
    for (int r = 0; r < nr; r++) {
        float *orow = o + (long)r * d;
        const float *prow = p + (long)r * p_stride;
        if (alpha[r] != 1.0f)
            for (int e = 0; e < d; e++) orow[e] *= alpha[r];
        for (int j = 0; j < nk; j++) {
            if (prow[j] == 0.0f) continue;
            for (int b = 0; b < nb; b++) {
                float w = prow[j] * cold_block(ty, v, (long)j * nb + b, x);
                for (int i = 0; i < 32; i++) orow[32 * b + i] += w * (float)x[i];
            }
        }
    }
}

static void scores_q8_scalar(const float *q, int q_stride, int nr, const void *k, int nk, int d, float *S,
                             int s_stride) {
    scores_body(ROW_Q8_0, q, q_stride, nr, k, nk, d, S, s_stride);
}

static void pv_q8_scalar(float *o, int nr, const float *alpha, const float *p, int p_stride, const void *v, int nk,
                         int d) {
    pv_body(ROW_Q8_0, o, nr, alpha, p, p_stride, v, nk, d);
}

static const attn_kernels scalar_table = {"scalar",           scores_scalar,      exp_sum_scalar,  pv_scalar,
                                          scores_cold_scalar, pv_cold_scalar,     scores_f16_scalar, pv_f16_scalar,
                                          softmax_scalar,     scores_many_scalar, scores_q8_scalar, pv_q8_scalar};

const attn_kernels *attn_kernels_scalar(void) { return &scalar_table; }

static atomic_bool force_scalar;

void attn_force_scalar(bool on) { atomic_store(&force_scalar, on); }

const attn_kernels *attn_kernels_get(void) {
    if (atomic_load(&force_scalar)) return &scalar_table;
    const attn_kernels *k = attn_kernels_avx512();
    if (!k) k = attn_kernels_avx2();
    return k ? k : &scalar_table;
}

#if defined(__x86_64__) || defined(__i386__)
extern const attn_kernels attn_kernels_avx2_table; /* attn_kernels_avx2.c */

/* NULL under LETHE_SIMD=scalar too: the one level (tensor/cpu.h) decides. */
const attn_kernels *attn_kernels_avx2(void) { return lt_simd_avx2() ? &attn_kernels_avx2_table : NULL; }
#else
const attn_kernels *attn_kernels_avx2(void) { return NULL; }
#endif

#if defined(LETHE_HAVE_AVX512) && LETHE_HAVE_AVX512
extern const attn_kernels attn_kernels_avx512_table; /* attn_kernels_avx512.c */

const attn_kernels *attn_kernels_avx512(void) { return lt_simd_avx512() ? &attn_kernels_avx512_table : NULL; }
#else
const attn_kernels *attn_kernels_avx512(void) { return NULL; }
#endif
