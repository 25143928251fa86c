/* Dispatch: one query per head goes to split-KV decode, more to prefill. */
#include "attn/attn.h"

int attn_forward(threadpool *tp, attn_scratch *scr, const attn_layer *L, const float *q, const int32_t *q_pos,
                 int n_tok, float *out, const attn_stats_cfg *stats) {
    if (n_tok == 1 && q_pos) return attn_decode(tp, scr, L, q, q_pos[0], out, stats);
    return attn_prefill(tp, scr, L, q, q_pos, n_tok, out, stats);
}
