/* Scalar reference kernels for the tiled attention and the run-time choice
 * between them and the AVX2 ones. */
#include "attn/attn_kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

#include "tensor/cpu.h"

static void scores_scalar(const float *q, int q_stride, int nr, const float *k, int nk, int d, float *S,
                          int s_stride) {
    for (int r = 0; r < nr; r++) {
        const float *qr = q + (long)r * q_stride;
        for (int j = 0; j < nk; j++) {
            const float *kj = k + (long)j * d;
            float acc = 0.0f;
            for (int e = 0; e < d; e++) acc += qr[e] * kj[e];
            S[(long)r * s_stride + j] = acc;
        }
    }
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

static void pv_scalar(float *o, int nr, const float *alpha, const float *p, int p_stride, const float *v, int nk,
                      int d) {
    for (int r = 0; r < nr; r++) {
        float *orow = o + (long)r * d;
        const float *prow = p + (long)r * p_stride;
        if (alpha[r] != 1.0f)
            for (int e = 0; e < d; e++) orow[e] *= alpha[r];
        for (int j = 0; j < nk; j++) {
            float pj = prow[j];
            if (pj == 0.0f) continue;
            const float *vj = v + (long)j * d;
            for (int e = 0; e < d; e++) orow[e] += pj * vj[e];
        }
    }
}

static const attn_kernels scalar_table = {"scalar", scores_scalar, exp_sum_scalar, pv_scalar};

const attn_kernels *attn_kernels_scalar(void) { return &scalar_table; }

static atomic_bool force_scalar;

void attn_force_scalar(bool on) { atomic_store(&force_scalar, on); }

const attn_kernels *attn_kernels_get(void) {
    if (atomic_load(&force_scalar)) return &scalar_table;
    const attn_kernels *k = attn_kernels_avx2();
    return k ? k : &scalar_table;
}

#if defined(__x86_64__) || defined(__i386__)
extern const attn_kernels attn_kernels_avx2_table; /* attn_kernels_avx2.c */

const attn_kernels *attn_kernels_avx2(void) { return lt_cpu_has_avx2() ? &attn_kernels_avx2_table : NULL; }
#else
const attn_kernels *attn_kernels_avx2(void) { return NULL; }
#endif
