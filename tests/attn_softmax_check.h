/* A kernel table's online-softmax step (attn_kernels.softmax) against the
 * steps it replaced, written out here with the table's own exp_sum: the
 * same s, m, l and alpha, bit for bit, on tiles with masked (-inf) scores,
 * rows with nothing visible and running maxima below, equal to and above
 * the tile's (test_attn.c on the compiled tables, avx512_emul/driver_attn.c
 * on the emulated AVX-512 one). */
#ifndef LETHE_TEST_ATTN_SOFTMAX_CHECK_H
#define LETHE_TEST_ATTN_SOFTMAX_CHECK_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attn/attn_kernels.h"
#include "testutil.h"

static void softmax_reference(const attn_kernels *k, float *s, int ss, int nr, int nk, float *m, float *l, float *alpha) {
    for (int r = 0; r < nr; r++) {
        float *sr = s + (long)r * ss;
        float mx = sr[0];
        for (int j = 1; j < nk; j++) mx = sr[j] > mx ? sr[j] : mx;
        float m_new = mx > m[r] ? mx : m[r];
        if (m_new == -INFINITY) {
            alpha[r] = 1.0f;
            for (int j = 0; j < nk; j++) sr[j] = 0.0f;
            continue;
        }
        alpha[r] = m[r] == -INFINITY ? 0.0f : m[r] == m_new ? 1.0f : expf(m[r] - m_new);
        l[r] = l[r] * alpha[r] + k->exp_sum(sr, nk, m_new);
        m[r] = m_new;
    }
}

static void check_softmax_table(const attn_kernels *k) {
    enum { NR = 11, SS = 40 };
    uint32_t x = 0x9e3779b9u;
    int bad = 0;
    for (int nk = 1; nk <= 37; nk += 3)
        for (int nr = 1; nr <= NR; nr += 5) {
            float s1[NR * SS], s2[NR * SS], m1[NR], m2[NR], l1[NR], l2[NR], a1[NR], a2[NR];
            for (int i = 0; i < NR * SS; i++) {
                x = x * 1664525u + 1013904223u;
                s1[i] = (float)((x >> 8) & 0xffff) / 4096.0f - 8.0f;
                if ((x >> 28) == 3) s1[i] = -INFINITY; /* a masked slot */
            }
            for (int r = 0; r < nr; r++) {
                if (r == 2)
                    for (int j = 0; j < nk; j++) s1[r * SS + j] = -INFINITY; /* nothing visible */
                const int kind = r % 4; /* running max: none, below, the tile's own, above */
                m1[r] = kind == 0 ? -INFINITY : kind == 1 ? -9.0f : kind == 2 ? s1[r * SS] : 9.0f;
                l1[r] = kind == 0 ? 0.0f : 1.5f + r;
                a1[r] = -1.0f;
            }
            memcpy(s2, s1, sizeof s1), memcpy(m2, m1, sizeof m1), memcpy(l2, l1, sizeof l1), memcpy(a2, a1, sizeof a1);
            softmax_reference(k, s1, SS, nr, nk, m1, l1, a1);
            k->softmax(s2, SS, nr, nk, m2, l2, a2);
            bad += memcmp(s1, s2, sizeof s1) || memcmp(m1, m2, sizeof(float) * nr) || memcmp(l1, l2, sizeof(float) * nr) ||
                   memcmp(a1, a2, sizeof(float) * nr);
        }
    CHECKF(bad == 0, "%s softmax: %d tiles off the row-by-row steps", k->name, bad);
}

#endif
