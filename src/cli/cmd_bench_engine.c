/* `lethe bench batch` and `lethe bench kv`: figures for the engine above one
 * sequence. batch: aggregate decode tokens/s of 1, 4 and 16 sequences
 * stepping together in one batch. kv: decode cost per token of the evicting
 * policies against the full cache at the same context (process CPU time, so
 * a loaded host skews both sides alike). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static lethe_token rnd_token(uint64_t *x, int n_vocab) {
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (lethe_token)(1 + (*x >> 33) % (uint64_t)(n_vocab - 1));
}

/* n_seq sequences, each a prompt of n_prompt random tokens, then n_gen steps
 * of one batch with a token of every sequence. Returns aggregate tok/s. */
static double batch_tok_s(const model_opts *o, const lethe_model *m, int n_seq, int n_prompt, int n_gen) {
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_ctx *c = model_opts_context(o, m, n_prompt + n_gen + 1, n_seq);
    if (!c) return -1;
    lethe_seq **seqs = calloc((size_t)n_seq, sizeof *seqs);
    lethe_token *toks = malloc(sizeof *toks * (size_t)(n_prompt > n_seq ? n_prompt : n_seq));
    float *logits = malloc(sizeof *logits * (size_t)info.n_vocab * n_seq);
    double rate = -1;
    uint64_t x = 7;
    char err[512];
    if (!seqs || !toks || !logits) goto out;
    for (int i = 0; i < n_seq; i++) {
        if (!(seqs[i] = lethe_seq_create(c, NULL, err, sizeof err))) {
            fprintf(stderr, "lethe bench: %s\n", err);
            goto out;
        }
        for (int t = 0; t < n_prompt; t++) toks[t] = rnd_token(&x, info.n_vocab);
        if (lethe_seq_append(seqs[i], toks, n_prompt, logits)) goto out;
    }
    double t0 = now_seconds();
    for (int step = 0; step < n_gen; step++) {
        for (int i = 0; i < n_seq; i++) toks[i] = rnd_token(&x, info.n_vocab);
        lethe_batch b = {n_seq, toks, seqs, NULL};
        if (lethe_ctx_decode(c, &b, logits)) {
            fprintf(stderr, "lethe bench: %s\n", lethe_ctx_error(c));
            goto out;
        }
    }
    rate = (double)n_seq * n_gen / (now_seconds() - t0);
out:
    free(seqs);
    free(toks);
    free(logits);
    lethe_ctx_free(c);
    return rate;
}

int bench_batch(const model_opts *o, int n_gen) {
    lethe_model *m = model_opts_load(o);
    if (!m) return 1;
    printf("aggregate decode, one batch per step (%d steps after a 32-token prompt each):\n", n_gen);
    printf("| sequences | tok/s (all) | tok/s per sequence | x one sequence |\n| --: | --: | --: | --: |\n");
    double one = 0;
    const int counts[] = {1, 4, 16};
    for (int k = 0; k < 3; k++) {
        double r = batch_tok_s(o, m, counts[k], 32, n_gen);
        if (r < 0) {
            lethe_model_free(m);
            return 1;
        }
        if (k == 0) one = r;
        printf("| %d | %.1f | %.1f | %.2f |\n", counts[k], r, r / counts[k], r / one);
        fflush(stdout);
    }
    lethe_model_free(m);
    return 0;
}

/* CPU seconds per decode token of policy at budget after a prompt of ctx
 * tokens (the cache is at its budget for every measured token). */
static double decode_cost(const model_opts *o, const lethe_model *m, const char *policy, int budget, int ctx, int n_gen) {
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_ctx *c = model_opts_context(o, m, ctx + n_gen + 1, 1);
    if (!c) return -1;
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv = o->kv;
    sp.kv.name = policy;
    sp.kv.budget = budget;
    char err[512];
    lethe_seq *s = lethe_seq_create(c, &sp, err, sizeof err);
    lethe_token *toks = malloc(sizeof *toks * (size_t)(ctx + n_gen));
    float *logits = malloc(sizeof *logits * (size_t)info.n_vocab);
    double cost = -1;
    uint64_t x = 11;
    if (!s || !toks || !logits) {
        fprintf(stderr, "lethe bench: %s\n", s ? "out of memory" : err);
        goto out;
    }
    for (int t = 0; t < ctx + n_gen; t++) toks[t] = rnd_token(&x, info.n_vocab);
    if (lethe_seq_append(s, toks, ctx, logits)) {
        fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(s));
        goto out;
    }
    double t0 = cpu_seconds();
    for (int t = 0; t < n_gen; t++)
        if (lethe_seq_decode(s, toks[ctx + t], logits)) {
            fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(s));
            goto out;
        }
    cost = (cpu_seconds() - t0) / n_gen;
out:
    free(toks);
    free(logits);
    lethe_ctx_free(c);
    return cost;
}

int bench_kv(const model_opts *o, int n_gen) {
    lethe_model *m = model_opts_load(o);
    if (!m) return 1;
    const int budgets[] = {2048, 8192};
    const char *policies[] = {"window", "h2o", "mixed", "quest"};
    printf("decode CPU time per token at the budget, against the full cache at the same context (%d tokens):\n", n_gen);
    printf("| budget | policy | ms/token | x full |\n| --: | --- | --: | --: |\n");
    int rc = 0;
    for (int b = 0; b < 2 && !rc; b++) {
        double full = decode_cost(o, m, "full", 0, budgets[b], n_gen);
        if (full < 0) { rc = 1; break; }
        printf("| %d | full | %.3f | 1.00 |\n", budgets[b], full * 1e3);
        for (int p = 0; p < 4; p++) {
            double d = decode_cost(o, m, policies[p], budgets[b], budgets[b], n_gen);
            if (d < 0) { rc = 1; break; }
            printf("| %d | %s | %.3f | %.2f |\n", budgets[b], policies[p], d * 1e3, d / full);
            fflush(stdout);
        }
    }
    lethe_model_free(m);
    return rc;
}
