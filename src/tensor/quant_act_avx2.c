/* AVX2 quantisers of the activation types Q8_0, Q8_1 and Q8_K, bit-exact
 * with the portable ones (same scale, same rounding of every element). */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include <math.h>

#include "tensor/avx2_util.h"
#include "tensor/quant_impl.h"
#include "util/fp16.h"

/* roundf: halves away from zero (_mm256_round_ps rounds them to even). */
LT_INLINE __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_sub_ps(v, t); /* exact */
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 ge_half = _mm256_cmp_ps(_mm256_and_ps(frac, absmask), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_andnot_ps(absmask, v)); /* copysign(1, v) */
    return _mm256_add_ps(t, _mm256_and_ps(ge_half, one));
}

/* 32 floats -> 32 int8 (in order) with d = amax/127; returns d, *sum = sum(q). */
LT_INLINE float q8_block_avx2(const float *x, int8_t *q, int *sum) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], absmask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v[k], idv)));
    /* pack 32-bit -> 16 -> 8; packs work per 128-bit lane, so fix the order */
    __m256i p16a = _mm256_packs_epi32(i[0], i[1]);
    __m256i p16b = _mm256_packs_epi32(i[2], i[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p8);
    const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    *sum = hsum_epi32(s32);
    return d;
}

void lt_q8_0_from_float_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum;
        b[i].d = fp32_to_fp16(q8_block_avx2(x + 32 * i, b[i].qs, &sum));
    }
}

void lt_q8_1_from_float_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum;
        const float d = q8_block_avx2(x + 32 * i, b[i].qs, &sum);
        b[i].d = fp32_to_fp16(d);
        b[i].s = fp32_to_fp16((float)sum * d);
    }
}

/* Q8_K: the element of largest magnitude maps to -127, as in
 * lt_q8_K_from_float. */
void lt_q8_K_from_float_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_K *out = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        blk_q8_K *b = &out[i];
        __m256 vmax = _mm256_setzero_ps();
        for (int e = 0; e < QK_K; e += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + e), absmask));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            memset(b, 0, sizeof *b);
            continue;
        }
        float max = 0.0f; /* the first element of largest magnitude, signed */
        for (int e = 0; e < QK_K; e++)
            if (fabsf(x[e]) == amax) {
                max = x[e];
                break;
            }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < QK_K / 32; g++) {
            __m256i v[4];
            for (int k = 0; k < 4; k++) /* rounds half to even, as ggml's nearest_int */
                v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * k), is));
            /* packs saturate 128 to 127, as the scalar MIN(127, q) */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(b->qs + 32 * g), p);
            /* lane k of w: the sum of quants 4k..4k+3 */
            const __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
            const __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
            b->bsums[2 * g] = (int16_t)(_mm_extract_epi32(lo, 0) + _mm_extract_epi32(lo, 1) +
                                        _mm_extract_epi32(lo, 2) + _mm_extract_epi32(lo, 3));
            b->bsums[2 * g + 1] = (int16_t)(_mm_extract_epi32(hi, 0) + _mm_extract_epi32(hi, 1) +
                                            _mm_extract_epi32(hi, 2) + _mm_extract_epi32(hi, 3));
        }
        b->d = 1.0f / iscale;
    }
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx2_kernels;
#endif
