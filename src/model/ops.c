#include "model/ops.h"

#include <math.h>

void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void op_rope_table(float *cs, const int32_t *pos, int n_tok, int n_rot, float base) {
    /* theta advances by a constant factor, as llama.cpp computes it, so the
     * angles agree with the reference to the last bit */
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    for (int t = 0; t < n_tok; t++) {
        float theta = (float)pos[t];
        float *row = cs + (long)t * n_rot;
        for (int i = 0; i < n_rot / 2; i++) {
            row[2 * i] = cosf(theta);
            row[2 * i + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

void op_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs, rope_style style) {
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (long)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int a = style == ROPE_NORM ? 2 * i : i;
            const int b = style == ROPE_NORM ? 2 * i + 1 : i + half;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void op_swiglu(float *a, const float *b, long n) {
    for (long i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void op_add(float *a, const float *b, long n) {
    for (long i = 0; i < n; i++) a[i] += b[i];
}
