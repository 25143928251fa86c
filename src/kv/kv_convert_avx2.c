/* AVX2 / F16C versions of the KV row conversions (bit-identical to the
 * scalar reference in kv_convert.c). */
#include "kv/kv_convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "util/fp16.h"

void kv_f32_to_f16_avx2(const float *src, uint16_t *dst, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = fp32_to_fp16(src[i]);
}

void kv_f16_to_f32_avx2(const uint16_t *src, float *dst, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = fp16_to_fp32(src[i]);
}

/* roundf semantics (halves away from zero): truncate, then step away from
 * zero when the dropped fraction is >= 0.5. */
static inline __m256 round_away(__m256 x) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(x, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(x, sign_mask), _mm256_set1_ps(1.0f));
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(ge, step));
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

void kv_f32_to_q8_0_avx2(const float *src, kv_block_q8_0 *dst, int n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int b = 0; b < n / KV_QK8_0; b++) {
        const float *x = src + (size_t)b * KV_QK8_0;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
        }
        uint16_t dh = fp32_to_fp16(hmax8(amax) / 127.0f);
        float d = fp16_to_fp32(dh);
        dst[b].d = dh;
        if (d == 0.0f) {
            memset(dst[b].qs, 0, sizeof dst[b].qs);
            continue;
        }
        const __m256 vd = _mm256_set1_ps(d);
        const __m256 lim = _mm256_set1_ps(127.0f);
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            __m256 r = round_away(_mm256_div_ps(v[j], vd));
            r = _mm256_max_ps(_mm256_min_ps(r, lim), _mm256_sub_ps(_mm256_setzero_ps(), lim));
            q[j] = _mm256_cvtps_epi32(r);
        }
        /* Pack 4 x 8 int32 into 32 int8 in order. */
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]); /* lanes: 0..3 8..11 | 4..7 12..15 */
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)dst[b].qs, p);
    }
}

void kv_q8_0_to_f32_avx2(const kv_block_q8_0 *src, float *dst, int n) {
    for (int b = 0; b < n / KV_QK8_0; b++) {
        __m256 d = _mm256_set1_ps(fp16_to_fp32(src[b].d));
        float *y = dst + (size_t)b * KV_QK8_0;
        for (int j = 0; j < 4; j++) {
            __m128i q8 = _mm_loadl_epi64((const __m128i *)(src[b].qs + 8 * j));
            __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
            _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(f, d));
        }
    }
}

#endif
