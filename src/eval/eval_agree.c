/* Agreement with the full cache: on each prompt the full cache generates
 * greedily while the policy's sequence is teacher-forced on the same
 * tokens. At every step we compare the policy's argmax with the full
 * cache's token and add up KL(full || policy) of the two next-token
 * distributions.
 *
 * The two sequences run in lockstep, so no distributions are stored (a
 * reference of n_gen x n_vocab floats per prompt would be gigabytes for a
 * large vocabulary and context). They share the model's pool; the policy's
 * KV bytes are its own: the pool's peak is restarted before each of its
 * steps, and the reference's bytes (unchanged during that step) are
 * subtracted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static const char *const DEFAULT_PROMPTS[] = {
    "Once upon a time, there was a little cat",
    "One day, Tom went to the park",
    "Lily had a big red ball",
    "The sun was hot and the dog",
    "Ben and Mia found a box",
    "There was a tiny bird in a tree",
    "Sam wanted to bake a cake",
    "The little boat was on the lake",
    NULL,
};

const char *const *eval_agree_default_prompts(void) { return DEFAULT_PROMPTS; }

/* KL(p || q) of the softmaxes of two logit rows. */
static double kl_logits(const float *p, const float *q, int n) {
    double lp = eval_logsumexp(p, n), lq = eval_logsumexp(q, n), kl = 0.0;
    for (int i = 0; i < n; i++) {
        double a = (double)p[i] - lp, b = (double)q[i] - lq;
        kl += exp(a) * (a - b);
    }
    return kl;
}

static size_t used_bytes(const lethe_ctx *ctx) {
    lethe_kv_usage u;
    lethe_ctx_kv_usage(ctx, &u);
    return u.bytes_used;
}

/* Runs one policy step (append ids) with the pool's peak restarted; *ref is
 * the reference's bytes during it, *pol the policy's afterwards. */
static lethe_status policy_step(lethe_ctx *ctx, lethe_seq *s, const lethe_token *ids, int n, float *logits, size_t ref,
                                size_t *pol, eval_cost *cost) {
    lethe_ctx_kv_reset_peak(ctx);
    lethe_status st = lethe_seq_append(s, ids, n, logits);
    lethe_kv_usage u;
    lethe_ctx_kv_usage(ctx, &u);
    (void)ref; /* the policy sequence's own bytes, whatever the reference holds */
    lethe_seq_bytes b;
    lethe_seq_get_bytes(s, &b);
    if (b.ram_peak > cost->kv_bytes_peak) cost->kv_bytes_peak = b.ram_peak;
    if (b.disk_bytes > cost->disk_bytes_peak) cost->disk_bytes_peak = b.disk_bytes;
    cost->kv_page_bytes = u.page_bytes;
    cost->kv_page_slots = u.page_slots;
    *pol = u.bytes_used > ref ? u.bytes_used - ref : 0;
    return st;
}

static lethe_status run_prompt(lethe_ctx *ctx, const lethe_seq_params *sp, const char *prompt, const eval_agree_cfg *cfg,
                               int n_vocab, eval_agree_result *r, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    int n_prompt = lethe_tokenize(m, prompt, strlen(prompt), NULL, 0, true, false);
    if (n_prompt < 1) {
        snprintf(err, err_size, "cannot tokenize the prompt \"%.60s\"", prompt);
        return LETHE_ERR_ARG;
    }
    lethe_token *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *lr = malloc((size_t)n_vocab * sizeof *lr), *lp = malloc((size_t)n_vocab * sizeof *lp);
    lethe_seq *pol = NULL, *ref = NULL;
    lethe_status st = LETHE_OK;
    if (!ids || !lr || !lp) {
        snprintf(err, err_size, "out of memory");
        st = LETHE_ERR_NOMEM;
        goto out;
    }
    lethe_tokenize(m, prompt, strlen(prompt), ids, n_prompt, true, false);
    int n_gen = cfg->n_gen > 0 ? cfg->n_gen : cfg->fill_to - n_prompt;
    if (n_gen < 1) n_gen = 1;

    /* the policy's sequence first: a calibration pass (headwise) needs the free pool */
    if (!(pol = eval_seq_open(ctx, sp, err, err_size))) {
        st = LETHE_ERR_BUDGET;
        goto out;
    }
    lethe_seq_params full = *sp;
    full.kv.name = "full";
    full.kv.budget = 0;
    char ref_err[256];
    if (!(ref = lethe_seq_create(ctx, &full, ref_err, sizeof ref_err))) {
        snprintf(err, err_size, "full-cache reference: %s", ref_err);
        st = LETHE_ERR_BUDGET;
        goto out;
    }
    size_t q = 0, rb; /* the policy's and the reference's bytes */
    if ((st = lethe_seq_append(ref, ids, n_prompt, lr))) {
        snprintf(err, err_size, "full-cache reference, prompt: %s", lethe_seq_error(ref));
        goto out;
    }
    rb = used_bytes(ctx) - q;
    if ((st = policy_step(ctx, pol, ids, n_prompt, lp, rb, &q, &r->cost))) {
        snprintf(err, err_size, "prompt of %d tokens: %s", n_prompt, lethe_seq_error(pol));
        goto out;
    }
    for (int i = 0; i < n_gen; i++) {
        lethe_token t = eval_argmax(lr, n_vocab);
        r->n_match += eval_argmax(lp, n_vocab) == t;
        r->kl += kl_logits(lr, lp, n_vocab);
        r->n_steps++;
        if (i + 1 == n_gen) break;
        if ((st = lethe_seq_decode(ref, t, lr))) {
            snprintf(err, err_size, "full-cache reference, step %d: %s", i, lethe_seq_error(ref));
            goto out;
        }
        rb = used_bytes(ctx) - q;
        double t0 = eval_now();
        st = policy_step(ctx, pol, &t, 1, lp, rb, &q, &r->cost);
        r->cost.decode_seconds += eval_now() - t0;
        r->cost.decode_tokens++;
        if (st) {
            snprintf(err, err_size, "step %d: %s", i, lethe_seq_error(pol));
            goto out;
        }
    }
out:
    lethe_seq_free(ref);
    lethe_seq_free(pol);
    free(lr);
    free(lp);
    free(ids);
    return st;
}

lethe_status eval_agree(lethe_ctx *ctx, const lethe_seq_params *sp, const eval_agree_cfg *cfg, eval_progress *pg,
                        eval_agree_result *r, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    memset(r, 0, sizeof *r);
    if (cfg->n_prompts < 1) {
        snprintf(err, err_size, "no prompts");
        return LETHE_ERR_ARG;
    }
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    for (int p = 0; p < cfg->n_prompts; p++) {
        char msg[400];
        lethe_status st = run_prompt(ctx, sp, cfg->prompts[p], cfg, info.n_vocab, r, msg, sizeof msg);
        if (st) {
            snprintf(err, err_size, "prompt %d: %s", p + 1, msg);
            return st;
        }
        eval_progress_step(pg, 1);
    }
    r->agree = r->n_steps ? (double)r->n_match / (double)r->n_steps : 0.0;
    r->kl = r->n_steps ? r->kl / (double)r->n_steps : 0.0; /* the sum so far */
    return LETHE_OK;
}
