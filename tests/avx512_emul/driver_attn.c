/* attn_kernels_avx512.c and swiglu_avx512.c compiled against emul512.h (see
 * run.sh): SwiGLU gives the AVX2 kernel's bits; the attention table
 * against the scalar kernels (to rounding), its own invariants (a score
 * takes the same steps in any block; F16 and Q8_0 keys / values give the
 * bits of their F32 conversion) and the AVX2 kernels' bits where it shares their
 * steps (pv; exp_sum's values); its softmax step equals the row-by-row
 * one (attn_softmax_check.h). On a machine with AVX-512 tests/test_attn.c
 * checks the compiled table the same way. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_kernels.h"
#include "attn_softmax_check.h"
#include "kv/kv_convert.h"
#include "tensor/swiglu.h"
#include "testutil.h"
#include "util/fp16.h"

extern const attn_kernels em_attn_kernels_avx512_table;
void em_swiglu_avx512(float *a, const float *b, int64_t n);

static uint32_t rng = 0x2545f491u;
static float rnd_f(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check_shape(const attn_kernels *em, int d, int nr, int nk) {
    const attn_kernels *ks = attn_kernels_scalar(), *k2 = attn_kernels_avx2();
    float *q = malloc(sizeof(float) * nr * d), *k = malloc(sizeof(float) * nk * d);
    float *s1 = malloc(sizeof(float) * nr * nk), *s2 = malloc(sizeof(float) * nr * nk), *s3 = malloc(sizeof(float) * nr * nk);
    float *o1 = malloc(sizeof(float) * nr * d), *o2 = malloc(sizeof(float) * nr * d), *alpha = malloc(sizeof(float) * nr);
    uint16_t *kh = malloc(sizeof(uint16_t) * nk * d);
    if (!CHECK(q && k && s1 && s2 && s3 && o1 && o2 && alpha && kh)) goto done;
    for (int i = 0; i < nk * d; i++) kh[i] = fp32_to_fp16(2 * rnd_f()), k[i] = fp16_to_fp32(kh[i]);
    for (int i = 0; i < nr * d; i++) q[i] = rnd_f(), o1[i] = o2[i] = rnd_f();
    for (int r = 0; r < nr; r++) alpha[r] = r % 3 ? 0.5f + 0.4f * rnd_f() : 1.0f;
    ks->scores(q, d, nr, k, nk, d, s1, nk);
    em->scores(q, d, nr, k, nk, d, s2, nk);
    int close = 1;
    for (int i = 0; i < nr * nk; i++) close &= fabsf(s1[i] - s2[i]) <= 4e-6f * d;
    CHECKF(close, "scores d=%d nr=%d nk=%d: off the scalar kernel", d, nr, nk);
    em->scores_f16(q, d, nr, kh, nk, d, s3, nk);
    CHECKF(memcmp(s2, s3, sizeof(float) * nr * nk) == 0, "scores_f16 d=%d nr=%d nk=%d", d, nr, nk);
    for (int r = 0; r < nr; r++) /* row by row, a key at a time */
        for (int j = 0; j < nk; j++) em->scores(q + r * d, d, 1, k + j * d, 1, d, s3 + r * nk + j, nk);
    CHECKF(memcmp(s2, s3, sizeof(float) * nr * nk) == 0, "scores d=%d nr=%d nk=%d: depend on the block", d, nr, nk);
    for (int i = 0; i < nr * nk; i++) s2[i] = fabsf(s2[i]);
    k2->pv(o1, nr, alpha, s2, nk, k, nk, d);
    em->pv(o2, nr, alpha, s2, nk, k, nk, d);
    CHECKF(memcmp(o1, o2, sizeof(float) * nr * d) == 0, "pv d=%d nr=%d nk=%d: not the AVX2 bits", d, nr, nk);
    memcpy(o1, o2, sizeof(float) * nr * d);
    em->pv(o1, nr, alpha, s2, nk, k, nk, d);
    em->pv_f16(o2, nr, alpha, s2, nk, kh, nk, d);
    CHECKF(memcmp(o1, o2, sizeof(float) * nr * d) == 0, "pv_f16 d=%d nr=%d nk=%d", d, nr, nk);
    if (d % 32 == 0) { /* Q8_0 rows in place: the bits of their F32 conversion (any int8, -128 too) */
        const size_t rb = kv_row_size(LT_Q8_0, d);
        unsigned char *kq = malloc(rb * nk);
        if (!CHECK(kq)) goto done;
        for (size_t i = 0; i < rb * nk; i++) kq[i] = (unsigned char)((int)(rnd_f() * 128.0f) & 0xff); /* via int: a negative float to unsigned char is undefined */
        for (size_t b = 0; b < (size_t)nk * d / 32; b++) {
            const uint16_t h = fp32_to_fp16(0.002f + 0.05f * (1.0f + rnd_f()));
            memcpy(kq + 34 * b, &h, 2);
        }
        kv_row_to_f32_scalar(LT_Q8_0, kq, k, nk * d);
        em->scores(q, d, nr, k, nk, d, s1, nk);
        em->scores_q8(q, d, nr, kq, nk, d, s3, nk);
        CHECKF(memcmp(s1, s3, sizeof(float) * nr * nk) == 0, "scores_q8 d=%d nr=%d nk=%d", d, nr, nk);
        em->pv(o1, nr, alpha, s2, nk, k, nk, d);
        memcpy(o2, o1, sizeof(float) * nr * d);
        em->pv(o1, nr, alpha, s2, nk, k, nk, d);
        em->pv_q8(o2, nr, alpha, s2, nk, kq, nk, d);
        CHECKF(memcmp(o1, o2, sizeof(float) * nr * d) == 0, "pv_q8 d=%d nr=%d nk=%d", d, nr, nk);
        free(kq);
    }
done:
    free(q), free(k), free(s1), free(s2), free(s3), free(o1), free(o2), free(alpha), free(kh);
}

int main(void) {
    const attn_kernels *em = &em_attn_kernels_avx512_table;
    if (!attn_kernels_avx2()) {
        tu_skip_part("no AVX2 here: the emulated AVX-512 attention kernels are compared with it");
        return tu_finish("attention kernels and SwiGLU (emulated AVX-512)");
    }
    static const int dims[] = {16, 32, 64, 80, 128};
    for (int di = 0; di < 5; di++)
        for (int nr = 1; nr <= 9; nr += 4)
            for (int nk = 1; nk <= 37; nk += 9) check_shape(em, dims[di], nr, nk);
    /* exp_sum: exp256's values where the AVX2 kernel used it (whole groups of 8), the sum to rounding */
    float a[67], b[67];
    for (int i = 0; i < 67; i++) a[i] = b[i] = -100.0f + 101.0f * (0.5f + 0.5f * rnd_f());
    a[5] = b[5] = -INFINITY;
    const float sa = attn_kernels_avx2()->exp_sum(a, 67, 0.5f), sb = em->exp_sum(b, 67, 0.5f);
    CHECK(memcmp(a, b, sizeof(float) * 64) == 0 && b[5] == 0.0f && fabsf(sa - sb) <= 1e-6f * sa);
    for (int i = 64; i < 67; i++) CHECK(fabsf(a[i] - b[i]) <= 4e-7f * a[i] + 1e-37f);
    check_softmax_table(em);
    /* SwiGLU: every length up to two registers and a tail, extremes included */
    for (int n = 1; n <= 37; n++) {
        float x1[37], x2[37], y[37];
        for (int i = 0; i < n; i++) x1[i] = x2[i] = i % 9 == 4 ? -100.0f : 12.0f * rnd_f(), y[i] = rnd_f();
        lt_swiglu_avx2(x1, y, n);
        em_swiglu_avx512(x2, y, n);
        CHECKF(memcmp(x1, x2, sizeof(float) * n) == 0, "swiglu n=%d: not the AVX2 bits", n);
    }
    return tu_finish("attention kernels and SwiGLU (emulated AVX-512)");
}
