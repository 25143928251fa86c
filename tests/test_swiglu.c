/* lt_swiglu: every level the machine has against the scalar expf formula
 * (within 1e-6 relative, plus 1e-30 for the tiny tail of large negative
 * inputs, where the polynomial exp clamps at 88), the AVX2 and AVX-512
 * kernels bit-identical to each other (one exp polynomial), over lengths
 * 1..70 (tails of both widths), extremes (+-100, 0, -0, 1e-30) and the
 * dispatched entry point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/swiglu.h"
#include "testutil.h"

static uint32_t rng = 12345u;
static float rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

int main(void) {
    enum { N = 70 };
    float a0[N], b[N], ref[N], got[LT_SIMD_AVX512 + 1][N];
    int levels = 0;
    for (int n = 1; n <= N; n++) {
        for (int i = 0; i < n; i++) {
            a0[i] = 12.0f * rnd(), b[i] = rnd();
            if (i % 11 == 3) a0[i] = i % 2 ? 100.0f : -100.0f;
            if (i % 13 == 5) a0[i] = i % 2 ? 0.0f : -0.0f;
            if (i % 17 == 7) a0[i] = 1e-30f;
        }
        memcpy(ref, a0, sizeof(float) * n);
        lt_swiglu_scalar(ref, b, n);
        for (int lv = LT_SIMD_AVX2; lv <= LT_SIMD_AVX512; lv++) {
            lt_swiglu_fn f = lt_swiglu_kernel(lv);
            memcpy(got[lv], a0, sizeof(float) * n);
            if (!f) continue;
            levels |= 1 << lv;
            f(got[lv], b, n);
            int bad = 0;
            for (int i = 0; i < n; i++)
                if (!(fabsf(got[lv][i] - ref[i]) <= 1e-6f * fabsf(ref[i]) + 1e-30f)) bad++;
            CHECKF(bad == 0, "%s, n = %d: %d elements off the scalar formula", lt_simd_level_name(lv), n, bad);
        }
        if ((levels & 6) == 6)
            CHECKF(memcmp(got[LT_SIMD_AVX2], got[LT_SIMD_AVX512], sizeof(float) * n) == 0, "n = %d: AVX2 and AVX-512 differ", n);
        float d[N];
        memcpy(d, a0, sizeof(float) * n);
        lt_swiglu(d, b, n);
        lt_swiglu_fn f = lt_swiglu_kernel(lt_simd_level());
        CHECK(f != NULL && memcmp(d, lt_simd_level() == LT_SIMD_SCALAR ? ref : got[lt_simd_level()], sizeof(float) * n) == 0);
    }
    CHECK(lt_swiglu_kernel(LT_SIMD_SCALAR) == lt_swiglu_scalar);
    printf("swiglu: levels checked %s%s (dispatched: %s)\n", levels & 2 ? "avx2 " : "", levels & 4 ? "avx512" : "",
           lt_simd_level_name(lt_simd_level()));
    return tu_finish("test_swiglu");
}
