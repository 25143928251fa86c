/* Portable kernels of the float types F32, F16 and BF16. Their dot products
 * take F32 activations (vec_dot_type F32). */
#include <string.h>

#include "tensor/quant_impl.h"
#include "util/fp16.h"

void lt_f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void lt_f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

/* Four partial sums keep the rounding error of long rows small. */
float lt_f32_dot(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) s[k] += x[i + k] * y[i + k];
    for (; i < n; i++) s[0] += x[i] * y[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void lt_f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(h[i]);
}

void lt_f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = fp32_to_fp16(src[i]);
}

float lt_f16_dot(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) s[k] += fp16_to_fp32(x[i + k]) * y[i + k];
    for (; i < n; i++) s[0] += fp16_to_fp32(x[i]) * y[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void lt_bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(h[i]);
}

void lt_bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = fp32_to_bf16(src[i]);
}

float lt_bf16_dot(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) s[k] += bf16_to_fp32(x[i + k]) * y[i + k];
    for (; i < n; i++) s[0] += bf16_to_fp32(x[i]) * y[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}
