/* The online-softmax step of a score tile (FlashAttention-2), written once
 * and instantiated by each kernel level with its own row max and exp_sum,
 * which the compiler inlines (the calls per row and the scalar max were a
 * fifth of a decode step's attention on F16 keys). Max is exact in any
 * order, so every level's step equals the scalar one given the same
 * exp_sum. Internal to src/attn. */
#ifndef LETHE_ATTN_SOFTMAX_H
#define LETHE_ATTN_SOFTMAX_H

#include <math.h>

#if defined(__GNUC__)
#define ATTN_SOFTMAX_INLINE static inline __attribute__((always_inline))
#else
#define ATTN_SOFTMAX_INLINE static inline
#endif

/* For rows r < nr of s (s_stride apart, nk scores each): m_new = max(m[r],
 * the row's max); s = exp(s - m_new) in place; l[r] = l[r] * alpha[r] + the
 * row's sum, alpha[r] = exp(m[r] - m_new) (0 when m[r] was -inf, 1 when
 * unchanged). A row with nothing visible yet (m_new -inf) becomes zeros,
 * alpha 1, m and l untouched. */
ATTN_SOFTMAX_INLINE void attn_softmax_rows(float (*row_max)(const float *, int), float (*exp_sum)(float *, int, float),
                                           float *s, int s_stride, int nr, int nk, float *m, float *l, float *alpha) {
    for (int r = 0; r < nr; r++) {
        float *sr = s + (long)r * s_stride;
        const float mx = row_max(sr, nk);
        const float m_new = mx > m[r] ? mx : m[r];
        if (m_new == -INFINITY) {
            alpha[r] = 1.0f;
            for (int j = 0; j < nk; j++) sr[j] = 0.0f;
            continue;
        }
        alpha[r] = m[r] == -INFINITY ? 0.0f : m[r] == m_new ? 1.0f : expf(m[r] - m_new);
        l[r] = l[r] * alpha[r] + exp_sum(sr, nk, m_new);
        m[r] = m_new;
    }
}

#endif
