/* F32 <-> KV dtype row conversions: scalar reference and run-time dispatch. */
#include "kv/kv_convert.h"

#include <math.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/types.h"
#include "util/fp16.h"

bool kv_dtype_supported(lt_type t) { return t == LT_F32 || t == LT_F16 || t == LT_Q8_0 || t == LT_Q4_0; }

size_t kv_row_size(lt_type t, int n) {
    if (n <= 0) return 0;
    switch (t) {
    case LT_F32: return (size_t)n * sizeof(float);
    case LT_F16: return (size_t)n * sizeof(uint16_t);
    case LT_Q8_0: return n % KV_QK8_0 ? 0 : (size_t)(n / KV_QK8_0) * sizeof(kv_block_q8_0);
    case LT_Q4_0: return n % KV_QK8_0 ? 0 : lt_row_bytes(LT_Q4_0, n);
    default: return 0;
    }
}

/* One Q8_0 block: d = amax / 127 stored as half; q = round(x / d) computed
 * with the stored (rounded) scale so the error is at most d / 2. */
static void q8_0_block_from_f32(const float *x, kv_block_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < KV_QK8_0; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    uint16_t dh = fp32_to_fp16(amax / 127.0f);
    float d = fp16_to_fp32(dh);
    b->d = dh;
    for (int j = 0; j < KV_QK8_0; j++) {
        float v = d != 0.0f ? roundf(x[j] / d) : 0.0f;
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        b->qs[j] = (int8_t)v;
    }
}

void kv_row_from_f32_scalar(lt_type t, const float *src, void *dst, int n) {
    switch (t) {
    case LT_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case LT_F16: {
        uint16_t *h = dst;
        for (int i = 0; i < n; i++) h[i] = fp32_to_fp16(src[i]);
        break;
    }
    case LT_Q8_0: {
        kv_block_q8_0 *b = dst;
        for (int i = 0; i < n / KV_QK8_0; i++) q8_0_block_from_f32(src + (size_t)i * KV_QK8_0, &b[i]);
        break;
    }
    case LT_Q4_0: /* the weights' quantiser: per 32 values d = max / -8 */
        lt_type_traits_scalar(LT_Q4_0)->from_float(src, dst, n);
        break;
    default:
        break;
    }
}

void kv_row_to_f32_scalar(lt_type t, const void *src, float *dst, int n) {
    switch (t) {
    case LT_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case LT_F16: {
        const uint16_t *h = src;
        for (int i = 0; i < n; i++) dst[i] = fp16_to_fp32(h[i]);
        break;
    }
    case LT_Q8_0: {
        const kv_block_q8_0 *b = src;
        for (int i = 0; i < n / KV_QK8_0; i++) {
            float d = fp16_to_fp32(b[i].d);
            for (int j = 0; j < KV_QK8_0; j++) dst[(size_t)i * KV_QK8_0 + j] = (float)b[i].qs[j] * d;
        }
        break;
    }
    case LT_Q4_0:
        lt_type_traits_scalar(LT_Q4_0)->to_float(src, dst, n);
        break;
    default:
        break;
    }
}

/* The one dispatch level (tensor/cpu.h, resolved once under pthread_once). */
bool kv_convert_simd(void) { return lt_simd_avx2(); }

void kv_row_from_f32(lt_type t, const float *src, void *dst, int n) {
#if defined(__x86_64__) || defined(__i386__)
    if (kv_convert_simd()) {
        if (t == LT_F16) { kv_f32_to_f16_avx2(src, dst, n); return; }
        if (t == LT_Q8_0) { kv_f32_to_q8_0_avx2(src, dst, n); return; }
    }
#endif
    if (t == LT_Q4_0) { lt_type_traits(LT_Q4_0)->from_float(src, dst, n); return; }
    kv_row_from_f32_scalar(t, src, dst, n);
}

void kv_row_to_f32(lt_type t, const void *src, float *dst, int n) {
#if defined(__x86_64__) || defined(__i386__)
    if (kv_convert_simd()) {
        if (t == LT_F16) { kv_f16_to_f32_avx2(src, dst, n); return; }
        if (t == LT_Q8_0) { kv_q8_0_to_f32_avx2(src, dst, n); return; }
    }
#endif
    if (t == LT_Q4_0) { lt_type_traits(LT_Q4_0)->to_float(src, dst, n); return; }
    kv_row_to_f32_scalar(t, src, dst, n);
}
