/* RoPE tables and rotation. */
#include "tensor/rope.h"

#include <math.h>

void lt_rope_table(float *cs, const int32_t *pos, int n, int n_rot, float base) {
    /* theta advances by a constant factor (as llama.cpp computes it), so the
     * angles agree with the reference implementation to the last bit */
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    for (int t = 0; t < n; t++) {
        float theta = (float)pos[t];
        float *row = cs + (long)t * n_rot;
        for (int i = 0; i < n_rot / 2; i++) {
            row[2 * i] = cosf(theta);
            row[2 * i + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

void lt_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cs, int neox) {
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (long)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int a = neox ? i : 2 * i;
            const int b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}
