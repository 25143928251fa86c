/* Dispatch: one query per head goes to split-KV decode, more to prefill. */
#include "attn/attn.h"

#include <math.h>
#include <string.h>

int attn_forward(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                 int n_tok, float *out, const attn_stats_cfg *stats) {
    if (n_tok == 1 && q_pos) return attn_decode(tp, scr, L, q, q_pos[0], out, stats);
    return attn_prefill(tp, scr, L, q, q_pos, n_tok, out, stats);
}

int attn_forward_lse(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                     int n_tok, float *out, float *lse, const attn_stats_cfg *stats) {
    if (n_tok == 1 && q_pos) return attn_decode_lse(tp, scr, L, q, q_pos[0], out, lse, stats);
    return attn_prefill_lse(tp, scr, L, q, q_pos, n_tok, out, lse, stats);
}

/* softmax over A u B = (o_A e^{lse_A} + o_B e^{lse_B}) / (e^{lse_A} + e^{lse_B}) */
void attn_merge_lse(float *out, float *lse, const float *out2, const float *lse2, int n_rows, int head_dim) {
    for (int r = 0; r < n_rows; r++) {
        float a = lse[r], b = lse2[r];
        if (b == -INFINITY) continue;
        float *o = out + (long)r * head_dim;
        const float *o2 = out2 + (long)r * head_dim;
        if (a == -INFINITY) {
            memcpy(o, o2, (size_t)head_dim * sizeof *o);
            lse[r] = b;
            continue;
        }
        float m = a > b ? a : b;
        float wa = expf(a - m), wb = expf(b - m), inv = 1.0f / (wa + wb);
        for (int e = 0; e < head_dim; e++) o[e] = (o[e] * wa + o2[e] * wb) * inv;
        lse[r] = m + logf(wa + wb);
    }
}
