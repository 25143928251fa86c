/* Helpers the eval jobs share: timing, argmax, log-sum-exp, and measuring
 * the KV bytes a sequence held. */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "eval/eval.h"

double eval_now(void) {
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int eval_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

double eval_logsumexp(const float *x, int n) {
    double mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

double eval_cost_tok_s(const eval_cost *c) {
    return c->decode_seconds > 0 ? (double)c->decode_tokens / c->decode_seconds : 0.0;
}

void eval_cost_merge(eval_cost *a, const eval_cost *b) {
    if (b->kv_bytes_peak > a->kv_bytes_peak) a->kv_bytes_peak = b->kv_bytes_peak;
    if (b->kv_page_bytes) {
        a->kv_page_bytes = b->kv_page_bytes;
        a->kv_page_slots = b->kv_page_slots;
    }
    a->decode_tokens += b->decode_tokens;
    a->decode_seconds += b->decode_seconds;
}

lethe_seq *eval_seq_open(lethe_ctx *ctx, const lethe_seq_params *sp, char *err, size_t err_size) {
    /* creating may run a calibration pass (headwise) that borrows pages;
     * the peak restarts once it has given them back */
    lethe_seq *s = lethe_seq_create(ctx, sp, err, err_size);
    if (s) lethe_ctx_kv_reset_peak(ctx);
    return s;
}

void eval_cost_take_peak(lethe_ctx *ctx, eval_cost *c) {
    lethe_kv_usage u;
    lethe_ctx_kv_usage(ctx, &u);
    /* hot pool + cold tier (quest, mixed) */
    if (u.bytes_peak + u.cold_peak > c->kv_bytes_peak) c->kv_bytes_peak = u.bytes_peak + u.cold_peak;
    c->kv_page_bytes = u.page_bytes;
    c->kv_page_slots = u.page_slots;
}
