/* Perplexity of a text streamed through the model under a KV budget.
 *
 * The text's ids are cut into windows of ctx tokens; each window runs in a
 * fresh sequence and starts from BOS (EOS for vocabularies without BOS,
 * as GPT-style models separate documents; with neither, the window's first
 * text token is the start). We score EVERY token after that start token,
 * not only the second half of the window as llama.cpp's perplexity does:
 * the point here is the cache, not the model, and scoring every token
 * (a) scores each text token exactly once, so every policy and budget is
 * measured on the same tokens and the same count, and (b) keeps the early
 * tokens, which every policy handles alike (the cache is under budget), as
 * a common floor; the differences between policies come from the tokens
 * after the budget is reached, which is where a window of ctx tokens with a
 * budget of a fraction of ctx spends most of its length.
 *
 * The window may exceed the KV budget many times over: with batch 1 every
 * token is one decode step, and the policy evicts between steps exactly as
 * during generation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval/eval.h"

static lethe_token start_token(const lethe_model *m) {
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    return info.bos >= 0 ? info.bos : info.eos;
}

/* Text tokens per window. */
static int window_text(const lethe_model *m, int ctx) { return start_token(m) >= 0 ? ctx - 1 : ctx; }

int eval_ppl_n_windows(const lethe_model *m, int n_text, int ctx) {
    int per = window_text(m, ctx);
    if (per < 1) per = 1;
    return (n_text + per - 1) / per;
}

lethe_status eval_ppl(lethe_ctx *ctx, const lethe_seq_params *sp, const lethe_token *text, int n_text,
                      const eval_ppl_cfg *cfg, eval_progress *pg, eval_ppl_result *r, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    *r = (eval_ppl_result){0};
    if (cfg->ctx < 2 || cfg->batch < 1 || n_text < 1) {
        snprintf(err, err_size, "perplexity needs a window of at least 2 tokens and some text");
        return LETHE_ERR_ARG;
    }
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    const int V = info.n_vocab;
    const lethe_token start = start_token(m);
    const int per = window_text(m, cfg->ctx);
    lethe_token *win = malloc((size_t)cfg->ctx * sizeof *win);
    float *logits = malloc((size_t)cfg->batch * (size_t)V * sizeof *logits);
    if (!win || !logits) {
        free(win);
        free(logits);
        snprintf(err, err_size, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    lethe_status st = LETHE_OK;
    double nll = 0.0;
    for (int off = 0; off < n_text && !st; off += per) {
        int n_win = 0;
        if (start >= 0) win[n_win++] = start;
        for (int i = off; i < n_text && i < off + per; i++) win[n_win++] = text[i];
        r->n_windows++;
        if (n_win < 2) { /* a lone start token scores nothing */
            eval_progress_step(pg, 1);
            continue;
        }
        lethe_seq *s = eval_seq_open(ctx, sp, err, err_size);
        if (!s) {
            st = LETHE_ERR_BUDGET;
            break;
        }
        /* feed win[0 .. n_win-2]; the logits after win[i] score win[i+1] */
        double t0 = eval_now();
        for (int i = 0; i < n_win - 1 && !st;) {
            int c = n_win - 1 - i < cfg->batch ? n_win - 1 - i : cfg->batch;
            st = c == 1 ? lethe_seq_decode(s, win[i], logits) : lethe_seq_append_all_logits(s, win + i, c, logits);
            if (st) {
                snprintf(err, err_size, "window %d, token %d: %s", r->n_windows, i, lethe_seq_error(s));
                break;
            }
            for (int j = 0; j < c; j++) {
                const float *row = logits + (size_t)j * V;
                nll += eval_logsumexp(row, V) - (double)row[win[i + j + 1]];
                r->n_scored++;
            }
            i += c;
        }
        r->cost.decode_seconds += eval_now() - t0;
        r->cost.decode_tokens += n_win - 1;
        eval_cost_take_peak(ctx, s, &r->cost);
        lethe_seq_free(s);
        eval_progress_step(pg, 1);
    }
    free(win);
    free(logits);
    if (st) return st;
    r->nll = nll;
    r->ppl = r->n_scored > 0 ? exp(nll / (double)r->n_scored) : NAN;
    return LETHE_OK;
}
