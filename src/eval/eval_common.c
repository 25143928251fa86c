/* Helpers the eval jobs share: timing, argmax, log-sum-exp, and measuring
 * the KV bytes a sequence held. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    if (b->disk_bytes_peak > a->disk_bytes_peak) a->disk_bytes_peak = b->disk_bytes_peak;
    a->disk_read_bytes += b->disk_read_bytes;
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

void eval_cost_take_peak(lethe_ctx *ctx, const lethe_seq *s, eval_cost *c) {
    lethe_kv_usage u;
    lethe_ctx_kv_usage(ctx, &u);
    lethe_seq_bytes b;
    lethe_seq_get_bytes(s, &b); /* everything the sequence held in RAM, at its peak */
    if (b.ram_peak > c->kv_bytes_peak) c->kv_bytes_peak = b.ram_peak;
    if (b.disk_bytes > c->disk_bytes_peak) c->disk_bytes_peak = b.disk_bytes;
    c->disk_read_bytes += b.disk_read_bytes;
    c->kv_page_bytes = u.page_bytes;
    c->kv_page_slots = u.page_slots;
}

lethe_status eval_greedy_answer(lethe_ctx *ctx, const lethe_seq_params *sp, const char *prompt, int n_prompt, int n_gen,
                                char *answer, size_t cap, eval_cost *cost, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_token *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    lethe_detok *dt = lethe_detok_create(m, false);
    size_t alen = 0;
    lethe_seq *s = NULL;
    lethe_status st = LETHE_OK;
    answer[0] = 0;
    if (!ids || !logits || !dt) {
        snprintf(err, err_size, "out of memory");
        st = LETHE_ERR_NOMEM;
        goto out;
    }
    lethe_tokenize(m, prompt, strlen(prompt), ids, n_prompt, true, false);
    if (!(s = eval_seq_open(ctx, sp, err, err_size))) {
        st = LETHE_ERR_BUDGET;
        goto out;
    }
    if ((st = lethe_seq_append(s, ids, n_prompt, logits))) {
        snprintf(err, err_size, "prompt of %d tokens: %s", n_prompt, lethe_seq_error(s));
        goto out;
    }
    double t0 = eval_now();
    for (int g = 0; g < n_gen; g++) {
        lethe_token t = eval_argmax(logits, info.n_vocab);
        if (lethe_token_is_eog(m, t)) break;
        char piece[512];
        int k = lethe_detok_push(dt, t, piece, sizeof piece);
        if (k > 0 && k <= (int)sizeof piece && alen + (size_t)k < cap) { /* a longer piece is left out */
            memcpy(answer + alen, piece, (size_t)k);
            alen += (size_t)k;
        }
        if (g + 1 == n_gen) break;
        if ((st = lethe_seq_decode(s, t, logits))) {
            snprintf(err, err_size, "answer token %d: %s", g, lethe_seq_error(s));
            goto out;
        }
        cost->decode_tokens++;
    }
    cost->decode_seconds += eval_now() - t0;
out:
    answer[alen] = 0;
    if (s) eval_cost_take_peak(ctx, s, cost);
    lethe_seq_free(s);
    lethe_detok_free(dt);
    free(logits);
    free(ids);
    return st;
}
