/* lethe bench: prompt processing and generation speed (median of repeats),
 * and the kernel benches of the lower layers. Figures, not assertions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "cli/cli.h"
#include "model/model.h"
#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tokenize/tokenizer.h"

void attn_bench(FILE *out, int n_threads);
void lt_matmul_bench(FILE *out, int n_threads);
void tokenizer_bench(FILE *out, const tokenizer *t);

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe bench -m MODEL [-p N] [-n N] [-r N] [options]\n"
            "       lethe bench attn [-t N]      attention kernels, tiled vs naive\n"
            "       lethe bench kernels [-t N]   matrix products per weight type\n"
            "       lethe bench batch -m MODEL [-n N]  aggregate decode of 1, 4, 16 sequences in one batch\n"
            "       lethe bench kv -m MODEL [-n N]     decode cost per token of policies vs the full cache\n"
            "       lethe bench prefix -m MODEL [-p N] [-n N]  16 forks of an N-token prompt (default 2048)\n"
            "                                    decoding in one batch, shared-prefix attention on vs off\n"
            "       lethe bench memory -m MODEL [-n N] a TIM trace of N tokens (default 20000) teacher-forced with\n"
            "                                          and without structured-memory pruning (docs/memory.md)\n"
            "%s"
            "  -p, --n-prompt N     prompt tokens (default 128; 0 skips)\n"
            "  -n, --n-gen N        generated tokens (default 64; 0 skips)\n"
            "  -r, --repetitions N  repeats, the median is printed (default 5)\n",
            MODEL_OPTS_USAGE);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seconds for one prompt of n random tokens in a fresh sequence, or < 0. */
static double time_prompt(lethe_ctx *c, const lethe_token *toks, int n, float *logits) {
    char err[256];
    lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
    if (!s) return -1;
    double t0 = now_seconds();
    lethe_status st = lethe_seq_append(s, toks, n, logits);
    double dt = now_seconds() - t0;
    if (st) fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(s));
    lethe_seq_free(s);
    return st ? -1 : dt;
}

/* Seconds for n single-token steps from an empty sequence, or < 0. */
static double time_gen(lethe_ctx *c, const lethe_token *toks, int n, float *logits) {
    char err[256];
    lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
    if (!s) return -1;
    double t0 = now_seconds();
    lethe_status st = LETHE_OK;
    for (int i = 0; i < n && !st; i++) st = lethe_seq_append(s, &toks[i], 1, logits);
    double dt = now_seconds() - t0;
    if (st) fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(s));
    lethe_seq_free(s);
    return st ? -1 : dt;
}

static int bench_model(const model_opts *mo, int n_prompt, int n_gen, int reps) {
    model_opts o = *mo;
    if (o.n_ctx <= 0) o.n_ctx = (n_prompt > n_gen ? n_prompt : n_gen) + 1;
    lethe_model *m = model_opts_load(&o);
    if (!m) return 1;
    lethe_ctx *c = model_opts_context(&o, m, o.n_ctx, 1);
    if (!c) {
        lethe_model_free(m);
        return 1;
    }
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    int n = n_prompt > n_gen ? n_prompt : n_gen;
    lethe_token *toks = malloc((size_t)(n > 0 ? n : 1) * sizeof *toks);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    double *times = malloc((size_t)reps * sizeof *times);
    int rc = 1;
    if (!toks || !logits || !times) goto out;
    uint64_t x = 42;
    for (int i = 0; i < n; i++) { /* random ids, as llama-bench uses */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (lethe_token)((x >> 33) % (uint64_t)info.n_vocab);
    }
    printf("model: %s (%s), %.2f MiB, %.2f M params, %d threads, KV %s, SIMD %s\n", o.model, info.arch,
           info.weight_bytes / 1048576.0, info.n_params / 1e6, lethe_ctx_n_threads(c),
           o.kv_type == LETHE_KV_F32 ? "f32" : o.kv_type == LETHE_KV_F16 ? "f16" : "q8_0", lt_simd_path());
    printf("| %-6s | %12s | %12s |\n| ------ | -----------: | -----------: |\n", "test", "t/s (median)", "ms");
    if (n_prompt > 0) {
        if (time_prompt(c, toks, n_prompt, logits) < 0) goto out; /* warm-up */
        for (int r = 0; r < reps; r++)
            if ((times[r] = time_prompt(c, toks, n_prompt, logits)) < 0) goto out;
        double t = median(times, reps);
        printf("| pp%-4d | %12.2f | %12.3f |\n", n_prompt, n_prompt / t, t * 1e3);
    }
    if (n_gen > 0) {
        if (time_gen(c, toks, 1, logits) < 0) goto out; /* warm-up */
        for (int r = 0; r < reps; r++)
            if ((times[r] = time_gen(c, toks, n_gen, logits)) < 0) goto out;
        double t = median(times, reps);
        printf("| tg%-4d | %12.2f | %12.3f |\n", n_gen, n_gen / t, t * 1e3);
    }
    fflush(stdout);
    tokenizer_bench(stdout, m->tok);
    printf("peak RSS: %.1f MiB\n", peak_rss_bytes() / 1048576.0);
    rc = 0;
out:
    free(toks);
    free(logits);
    free(times);
    lethe_ctx_free(c);
    lethe_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    long n_prompt = -1, n_gen = 64, reps = 5; /* n_prompt -1: 128, or 2048 for bench prefix */
    const char *sub = NULL;
    bool n_gen_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (i == 1 && (!strcmp(a, "attn") || !strcmp(a, "kernels") || !strcmp(a, "batch") || !strcmp(a, "kv") ||
                       !strcmp(a, "prefix") || !strcmp(a, "memory"))) {
            sub = a;
            continue;
        }
        if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = opt_int(argc, argv, &i, 0, 1 << 20, &n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = n_gen_set = opt_int(argc, argv, &i, 0, 1 << 20, &n_gen);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) ok = opt_int(argc, argv, &i, 1, 1000, &reps);
        else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    if (sub && !strcmp(sub, "attn")) { attn_bench(stdout, mo.n_threads); return 0; }
    if (sub && !strcmp(sub, "kernels")) { lt_matmul_bench(stdout, mo.n_threads); return 0; }
    if (!mo.model) { fprintf(stderr, "lethe bench: need -m MODEL (or bench attn / bench kernels)\n"); return usage_error(); }
    if (sub && !strcmp(sub, "batch")) return bench_batch(&mo, (int)n_gen);
    if (sub && !strcmp(sub, "kv")) return bench_kv(&mo, (int)n_gen); /* several policies: flags are shared */
    if (sub && !strcmp(sub, "prefix")) return bench_prefix(&mo, n_prompt < 0 ? 2048 : (int)n_prompt, (int)n_gen);
    if (sub && !strcmp(sub, "memory")) return bench_memory(&mo, n_gen_set ? (int)n_gen : 20000);
    if (n_prompt < 0) n_prompt = 128;
    if (!model_opts_check(&mo)) return EXIT_USAGE;
    return bench_model(&mo, (int)n_prompt, (int)n_gen, (int)reps);
}
