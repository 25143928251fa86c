/* `lethe bench batch`, `lethe bench kv` and `lethe bench prefix`: figures
 * for the engine above one sequence. batch: aggregate decode tokens/s of 1,
 * 4 and 16 sequences stepping together in one batch. kv: decode cost per
 * token of the evicting policies against the full cache at the same context
 * (process CPU time, so a loaded host skews both sides alike). prefix:
 * aggregate decode of 16 forks of one long prompt, shared-prefix attention
 * on against off. */
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

/* ---- bench prefix ---- */

#define PREFIX_SEQS 16
#define PREFIX_ROUNDS 3

typedef struct {
    lethe_ctx *c;
    lethe_seq *root, *seqs[PREFIX_SEQS];
} prefix_world;

/* A context (shared-prefix attention on or off), a root holding the
 * prefix and PREFIX_SEQS forks of it. */
static int prefix_open(prefix_world *w, const model_opts *o, const lethe_model *m, bool shared, const lethe_token *prefix,
                       int n_prefix, int n_ctx) {
    memset(w, 0, sizeof *w);
    lethe_ctx_params p = lethe_ctx_default_params();
    p.n_threads = o->n_threads;
    p.n_ctx = n_ctx;
    p.kv_type = o->kv_type;
    p.kv_page_slots = o->kv_page_slots;
    p.kv_budget_mib = o->kv_budget_mib;
    p.shared_prefix_attn = shared;
    /* the forks share the prefix's pages: the pool holds it once, and each fork's own tokens */
    long own = (long)(n_ctx - n_prefix) + 2L * p.kv_page_slots;
    p.n_seq_max = 2 + (int)(PREFIX_SEQS * own / n_ctx);
    if (p.n_seq_max > PREFIX_SEQS + 1) p.n_seq_max = PREFIX_SEQS + 1;
    char err[512];
    if (!(w->c = lethe_ctx_create(m, &p, err, sizeof err)) || !(w->root = lethe_seq_create(w->c, NULL, err, sizeof err))) {
        fprintf(stderr, "lethe bench: %s\n", err);
        return 0;
    }
    if (lethe_seq_append(w->root, prefix, n_prefix, NULL)) {
        fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(w->root));
        return 0;
    }
    for (int i = 0; i < PREFIX_SEQS; i++)
        if (!(w->seqs[i] = lethe_seq_fork(w->root, err, sizeof err))) {
            fprintf(stderr, "lethe bench: %s\n", err);
            return 0;
        }
    return 1;
}

/* Seconds for n batched steps of one token per fork, or < 0. */
static double prefix_steps(prefix_world *w, int n, uint64_t *x, int n_vocab, float *logits) {
    lethe_token toks[PREFIX_SEQS];
    double t0 = now_seconds();
    for (int step = 0; step < n; step++) {
        for (int i = 0; i < PREFIX_SEQS; i++) toks[i] = rnd_token(x, n_vocab);
        lethe_batch b = {PREFIX_SEQS, toks, w->seqs, NULL};
        if (lethe_ctx_decode(w->c, &b, logits)) {
            fprintf(stderr, "lethe bench: %s\n", lethe_ctx_error(w->c));
            return -1;
        }
    }
    return now_seconds() - t0;
}

int bench_prefix(const model_opts *o, int n_prefix, int n_gen) {
    lethe_model *m = model_opts_load(o);
    if (!m) return 1;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    if (n_gen < 1) n_gen = 1;
    const int n_ctx = n_prefix + (PREFIX_ROUNDS * n_gen + 2) + 1;
    lethe_token *prefix = malloc(sizeof *prefix * (size_t)(n_prefix > 0 ? n_prefix : 1));
    float *logits = malloc(sizeof *logits * (size_t)info.n_vocab * PREFIX_SEQS);
    prefix_world w[2]; /* [0]: off, [1]: on */
    memset(w, 0, sizeof w);
    int rc = 1;
    uint64_t x = 5;
    if (!prefix || !logits || n_prefix < 1) goto out;
    for (int t = 0; t < n_prefix; t++) prefix[t] = rnd_token(&x, info.n_vocab);
    for (int k = 0; k < 2; k++)
        if (!prefix_open(&w[k], o, m, k == 1, prefix, n_prefix, n_ctx)) goto out;
    printf("%d sequences forked from one %d-token prompt, one batch of a token each per step, %d threads, KV %s "
           "(%d steps, best of %d):\n",
           PREFIX_SEQS, n_prefix, lethe_ctx_n_threads(w[0].c),
           kv_type_name(o->kv_type), n_gen, PREFIX_ROUNDS);
    double best[2] = {1e30, 1e30};
    uint64_t xs[2] = {11, 11}; /* the same tokens on both sides */
    for (int k = 0; k < 2; k++)
        if (prefix_steps(&w[k], 2, &xs[k], info.n_vocab, logits) < 0) goto out; /* warm-up */
    for (int r = 0; r < PREFIX_ROUNDS; r++)
        for (int k = 0; k < 2; k++) { /* alternate, so a loaded host skews both alike */
            double t = prefix_steps(&w[k], n_gen, &xs[k], info.n_vocab, logits);
            if (t < 0) goto out;
            if (t < best[k]) best[k] = t;
        }
    printf("| shared-prefix attention | tok/s (all) | ms per step |\n| --- | --: | --: |\n");
    for (int k = 0; k < 2; k++)
        printf("| %s | %.1f | %.3f |\n", k ? "on" : "off", (double)PREFIX_SEQS * n_gen / best[k], best[k] * 1e3 / n_gen);
    printf("speed-up: %.2fx\n", best[0] / best[1]);
    rc = 0;
out:
    for (int k = 0; k < 2; k++) lethe_ctx_free(w[k].c);
    free(prefix);
    free(logits);
    lethe_model_free(m);
    return rc;
}
