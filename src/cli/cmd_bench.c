/* lethe bench: llama-bench's pp/tg/pg tests over lists of models, thread
 * counts and sizes, with a memory-bandwidth roofline for decode
 * (cmd_bench_run.c), and the benches of the lower layers and the engine
 * (subcommands). Figures, not assertions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tensor/matmul.h"
#include "tensor/membw.h"
#include "tokenize/tokenizer.h"

void attn_bench(FILE *out, int n_threads, lt_type kv_dtype, int n_kv_heads);
void lt_matmul_bench(FILE *out, int n_threads);
void tokenizer_bench(FILE *out, const tokenizer *t);

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe bench -m MODEL [-m MODEL ...] [-p N,...] [-n N,...] [-pg PP,TG] [-d N,...] [-t N,...] [-r N] [-o FMT]\n"
            "                   [options]\n"
            "       lethe bench attn [-t N] [--kv-type T] [--kv-heads N]  attention kernels, tiled vs naive\n"
            "                                          (32 query heads over N KV heads, 1-32 dividing 32; default 8)\n"
            "       lethe bench kernels [-t N]   matrix products per weight type\n"
            "       lethe bench tokenizer -m MODEL  the tokeniser's speed on 1 MB of text\n"
            "       lethe bench batch -m MODEL [-n N]  aggregate decode of 1, 4, 16 sequences in one batch\n"
            "       lethe bench kv -m MODEL [-n N]     decode cost per token of policies vs the full cache\n"
            "       lethe bench prefix -m MODEL [-p N] [-n N]  16 forks of an N-token prompt (default 2048)\n"
            "                                    decoding in one batch, shared-prefix attention on vs off\n"
            "       lethe bench memory -m MODEL [-n N] a TIM trace of N tokens (default 20000) teacher-forced with\n"
            "                                          and without structured-memory pruning (docs/memory.md)\n"
            "\n"
            "The tests, as llama-bench runs them: one run for every model x thread count x test x depth; each test\n"
            "is one untimed warm-up, then N timed repetitions on random tokens (t/s: mean ± sd).\n"
            "  -m, --model FILE     a model; repeat it or give a comma list for several\n"
            "  -t, --threads N,...  thread counts (default: all cores)\n"
            "  -p, --n-prompt N,... pp tests: a prompt of N tokens in one batch (default 128; 0 skips)\n"
            "  -n, --n-gen N,...    tg tests: N tokens decoded one by one from an empty context (default 64; 0 skips)\n"
            "  -pg PP,TG            a pp+tg test: a PP-token prompt then TG decode steps (repeatable)\n"
            "  -d, --n-depth N,...  run each test after N tokens already in the context, prefilled untimed in\n"
            "                       each repetition (default 0; labelled \"tg64 @ d4096\" as llama-bench does)\n"
            "  -r, --repetitions N  timed runs per test (default 5)\n"
            "  -o, --output FMT     md (default), csv, json (an array of objects) or jsonl (one per line)\n"
            "  --bw-mib N           read-bandwidth buffer for the decode roofline (default: 4x the last-level\n"
            "                       cache, at least 512 MiB); 0 leaves the roofline out\n"
            "Roofline of a tg test: read bandwidth (an XOR pass over the buffer on the test's threads, best of\n"
            "2, just before each repetition) / the bytes a decode step reads: the weights, and the K and V of\n"
            "the cache slots it attends (the mean over the test's steps, so it grows with -d); each repetition's t/s as a\n"
            "percentage of the bound of its moment, averaged (the host's bandwidth moves between seconds).\n"
            "\nModel options (the subcommands take one -m and one -t):\n"
            "%s",
            MODEL_OPTS_USAGE);
}

static bool is_sub(const char *a) {
    static const char *const subs[] = {"attn", "kernels", "tokenizer", "batch", "kv", "prefix", "memory", NULL};
    for (int k = 0; subs[k]; k++)
        if (!strcmp(a, subs[k])) return true;
    return false;
}

/* The subcommands: model options, -n and -p (each as one number). */
static int cmd_bench_sub(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    const char *sub = argv[1];
    long n_prompt = -1, n_gen = 64; /* n_prompt -1: 2048 for bench prefix */
    long kv_heads = 0;               /* bench attn; 0: its default */
    bool n_gen_set = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool ok;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = opt_int(argc, argv, &i, 0, 1 << 20, &n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = n_gen_set = opt_int(argc, argv, &i, 0, 1 << 20, &n_gen);
        else if (!strcmp(sub, "attn") && !strcmp(a, "--kv-heads")) {
            ok = opt_int(argc, argv, &i, 1, 32, &kv_heads) && 32 % kv_heads == 0; /* attn_bench's 32 query heads */
            if (!ok) fprintf(stderr, "lethe bench attn: --kv-heads wants a divisor of the 32 query heads\n");
        } else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    if (!strcmp(sub, "attn")) { attn_bench(stdout, mo.n_threads, ctx_kv_dtype(mo.kv_type), (int)kv_heads); return 0; }
    if (!strcmp(sub, "kernels")) { lt_matmul_bench(stdout, mo.n_threads); return 0; }
    if (!mo.model) { fprintf(stderr, "lethe bench: need -m MODEL (or bench attn / bench kernels)\n"); return usage_error(); }
    if (!strcmp(sub, "tokenizer")) {
        lethe_model *m = model_opts_load(&mo);
        if (!m) return 1;
        tokenizer_bench(stdout, m->tok);
        lethe_model_free(m);
        return 0;
    }
    if (!strcmp(sub, "batch")) return bench_batch(&mo, (int)n_gen);
    if (!strcmp(sub, "kv")) return bench_kv(&mo, (int)n_gen); /* several policies: flags are shared */
    if (!strcmp(sub, "prefix")) return bench_prefix(&mo, n_prompt < 0 ? 2048 : (int)n_prompt, (int)n_gen);
    return bench_memory(&mo, n_gen_set ? (int)n_gen : 20000);
}

/* The value of option argv[*i] as a comma list of integers in [lo, hi],
 * appended to vals (*n of them, at most BENCH_MAX_VALUES); *set: the first
 * use replaces the defaults. False with the message printed. */
static bool int_list(int argc, char **argv, int *i, long lo, long hi, int *vals, int *n, bool *set) {
    const char *name = argv[*i], *v = opt_value(argc, argv, i);
    if (!v) return false;
    if (!*set) *n = 0;
    *set = true;
    char item[32];
    for (const char *p = v;;) {
        size_t len = strcspn(p, ",");
        long x;
        snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), p);
        if (len >= sizeof item || !parse_int(item, lo, hi, &x)) {
            fprintf(stderr, "lethe bench: %s must be an integer in [%ld, %ld] or a comma list of them, not '%s'\n", name, lo, hi, v);
            usage_error();
            return false;
        }
        if (*n >= BENCH_MAX_VALUES) {
            fprintf(stderr, "lethe bench: %s: at most %d values\n", name, BENCH_MAX_VALUES);
            usage_error();
            return false;
        }
        vals[(*n)++] = (int)x;
        if (!p[len]) return true;
        p += len + 1;
    }
}

/* -pg PP,TG: exactly two positive integers. */
static bool pg_pair(int argc, char **argv, int *i, bench_args *a) {
    const char *name = argv[*i], *v = opt_value(argc, argv, i);
    if (!v) return false;
    const char *comma = strchr(v, ',');
    char pp[32];
    long x, y;
    bool ok = comma && (size_t)(comma - v) < sizeof pp;
    if (ok) {
        snprintf(pp, sizeof pp, "%.*s", (int)(comma - v), v);
        ok = parse_int(pp, 1, 1 << 20, &x) && parse_int(comma + 1, 1, 1 << 20, &y);
    }
    if (!ok) {
        fprintf(stderr, "lethe bench: %s must be two integers PP,TG in [1, %d], not '%s'\n", name, 1 << 20, v);
        usage_error();
        return false;
    }
    if (a->n_pg >= BENCH_MAX_VALUES) {
        fprintf(stderr, "lethe bench: %s: at most %d tests\n", name, BENCH_MAX_VALUES);
        usage_error();
        return false;
    }
    a->pg[a->n_pg][0] = (int)x;
    a->pg[a->n_pg][1] = (int)y;
    a->n_pg++;
    return true;
}

/* -m FILE: one more model, or several from a comma list (copies kept in
 * *owned for the caller to free). */
static bool model_list(int argc, char **argv, int *i, bench_args *a, char **owned, int *n_owned) {
    const char *v = opt_value(argc, argv, i);
    if (!v) return false;
    for (const char *p = v;;) {
        size_t len = strcspn(p, ",");
        if (a->n_models >= BENCH_MAX_VALUES || len == 0) {
            fprintf(stderr, "lethe bench: %s\n", len ? "at most 64 models" : "-m: an empty model path");
            usage_error();
            return false;
        }
        char *s = malloc(len + 1);
        if (!s) {
            fprintf(stderr, "lethe bench: out of memory\n");
            return false;
        }
        memcpy(s, p, len);
        s[len] = 0;
        owned[(*n_owned)++] = s;
        a->models[a->n_models++] = s;
        if (!p[len]) return true;
        p += len + 1;
    }
}

static bool output_format(int argc, char **argv, int *i, bench_format *fmt) {
    const char *v = opt_value(argc, argv, i);
    if (!v) return false;
    static const char *const names[] = {"md", "csv", "json", "jsonl"};
    for (int k = 0; k < 4; k++)
        if (!strcmp(v, names[k])) {
            *fmt = (bench_format)k;
            return true;
        }
    fprintf(stderr, "lethe bench: unknown output format '%s' (md, csv, json, jsonl)\n", v);
    usage_error();
    return false;
}

static int parse_tests(int argc, char **argv, bench_args *a, char **owned, int *n_owned) {
    bool t_set = false, p_set = false, n_set = false, d_set = false;
    long bw_mib = -1, reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a1 = argv[i];
        bool ok;
        if (!strcmp(a1, "-h") || !strcmp(a1, "--help")) {
            usage(stdout);
            return -1;
        }
        if (!strcmp(a1, "-m") || !strcmp(a1, "--model")) ok = model_list(argc, argv, &i, a, owned, n_owned);
        else if (!strcmp(a1, "-t") || !strcmp(a1, "--threads")) ok = int_list(argc, argv, &i, 1, 1024, a->threads, &a->n_threads, &t_set);
        else if (!strcmp(a1, "-p") || !strcmp(a1, "--n-prompt")) ok = int_list(argc, argv, &i, 0, 1 << 20, a->prompts, &a->n_prompts, &p_set);
        else if (!strcmp(a1, "-n") || !strcmp(a1, "--n-gen")) ok = int_list(argc, argv, &i, 0, 1 << 20, a->gens, &a->n_gens, &n_set);
        else if (!strcmp(a1, "-pg")) ok = pg_pair(argc, argv, &i, a);
        else if (!strcmp(a1, "-d") || !strcmp(a1, "--n-depth")) ok = int_list(argc, argv, &i, 0, 1 << 20, a->depths, &a->n_depths, &d_set);
        else if (!strcmp(a1, "-r") || !strcmp(a1, "--repetitions")) ok = opt_int(argc, argv, &i, 1, 1000, &reps);
        else if (!strcmp(a1, "-o") || !strcmp(a1, "--output")) ok = output_format(argc, argv, &i, &a->format);
        else if (!strcmp(a1, "--bw-mib")) ok = opt_int(argc, argv, &i, 0, 1 << 20, &bw_mib);
        else {
            int r = model_opts_parse(&a->mo, argc, argv, &i);
            if (r == 0) return unknown_option(a1);
            ok = r > 0;
        }
        if (!ok) return EXIT_USAGE;
    }
    a->reps = (int)reps;
    a->bw_bytes = bw_mib < 0 ? lt_membw_default_bytes() : (size_t)bw_mib << 20;
    if (!a->n_models) {
        fprintf(stderr, "lethe bench: need -m MODEL (or bench attn / bench kernels)\n");
        return usage_error();
    }
    if (!model_opts_check(&a->mo)) return EXIT_USAGE;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && is_sub(argv[1])) return cmd_bench_sub(argc, argv);
    bench_args *a = calloc(1, sizeof *a);
    char **owned = calloc(BENCH_MAX_VALUES, sizeof *owned);
    int n_owned = 0, rc = 1;
    if (!a || !owned) {
        fprintf(stderr, "lethe bench: out of memory\n");
        goto out;
    }
    model_opts_init(&a->mo);
    a->n_threads = a->n_prompts = a->n_gens = a->n_depths = 1;
    a->threads[0] = 0; /* all cores */
    a->prompts[0] = 128;
    a->gens[0] = 64;
    a->depths[0] = 0;
    rc = parse_tests(argc, argv, a, owned, &n_owned);
    if (rc < 0) rc = 0; /* --help */
    else if (rc == 0) rc = bench_run(a);
out:
    for (int k = 0; k < n_owned; k++) free(owned[k]);
    free(owned);
    free(a);
    return rc;
}
