/* Plain reference attention: the full masked score row of every query,
 * softmax, weighted sum of V. For tests and the bench. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"

size_t attn_naive_scratch_bytes(const attn_layer *L, int n_tok) {
    size_t n_max = 0;
    for (int g = 0; g < L->n_head_kv; g++)
        if ((size_t)L->streams[g].n > n_max) n_max = (size_t)L->streams[g].n;
    return ((size_t)n_tok * n_max + 2 * (size_t)L->head_dim) * sizeof(float);
}

int attn_naive(const attn_layer *L, const float *q, const int32_t *q_pos, int n_tok, float *out) {
    if (!L || !q || !q_pos || !out || n_tok < 1 || L->n_head_kv < 1 || L->n_head % L->n_head_kv != 0) return -1;
    const int D = L->head_dim, G = L->n_head / L->n_head_kv;
    size_t n_max = 0;
    for (int g = 0; g < L->n_head_kv; g++)
        if ((size_t)L->streams[g].n > n_max) n_max = (size_t)L->streams[g].n;
    float *scores = malloc(((size_t)n_tok * (n_max ? n_max : 1)) * sizeof *scores);
    float *row = malloc((size_t)D * sizeof *row);
    if (!scores || !row) {
        free(scores);
        free(row);
        return -1;
    }
    for (int h = 0; h < L->n_head; h++) {
        const kv_stream *st = &L->streams[h / G];
        const int n = st->n;
        /* scores[t][i] = scale * q_t . k_i, -inf where slot i is in t's future */
        for (int i = 0; i < n; i++) {
            kv_load_row(L->pool, kv_stream_k(L->pool, st, i), row);
            for (int t = 0; t < n_tok; t++) {
                const float *qt = q + ((size_t)t * L->n_head + h) * D;
                float dot = 0.0f;
                for (int e = 0; e < D; e++) dot += qt[e] * row[e];
                scores[(size_t)t * n + i] = st->pos[i] <= q_pos[t] ? dot * L->scale : -INFINITY;
            }
        }
        /* softmax per query */
        for (int t = 0; t < n_tok; t++) {
            float *s = scores + (size_t)t * n;
            float mx = -INFINITY, sum = 0.0f;
            for (int i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
            for (int i = 0; i < n; i++) {
                s[i] = mx == -INFINITY ? 0.0f : expf(s[i] - mx);
                sum += s[i];
            }
            for (int i = 0; i < n; i++) s[i] = sum > 0.0f ? s[i] / sum : 0.0f;
            memset(out + ((size_t)t * L->n_head + h) * D, 0, (size_t)D * sizeof(float));
        }
        /* out_t = sum_i p[t][i] v_i */
        for (int i = 0; i < n; i++) {
            kv_load_row(L->pool, kv_stream_v(L->pool, st, i), row);
            for (int t = 0; t < n_tok; t++) {
                float p = scores[(size_t)t * n + i];
                if (p == 0.0f) continue;
                float *o = out + ((size_t)t * L->n_head + h) * D;
                for (int e = 0; e < D; e++) o[e] += p * row[e];
            }
        }
    }
    free(scores);
    free(row);
    return 0;
}
