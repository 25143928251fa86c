/* lethe run: stream generated text to stdout; everything else to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe run -m MODEL -p PROMPT [options]\n"
            "%s"
            "  -p, --prompt TEXT      prompt text\n"
            "  -f, --file FILE        read the prompt from a file\n"
            "  -n, --n-predict N      tokens to generate (default 128)\n"
            "  --temp T               temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40, 0 = off)\n"
            "  --top-p P              (default 0.95, 1 = off)\n"
            "  --min-p P              (default 0.05, 0 = off)\n"
            "  --repeat-penalty R     (default 1.0 = off)\n"
            "  --repeat-last-n N      tokens the penalty looks back (default 64)\n"
            "  --seed S               RNG seed (default 0)\n"
            "  --ignore-eos           keep generating after an end-of-generation token\n"
            "  --special              parse special-token text in the prompt (e.g. <|im_start|>)\n"
            "  --echo                 print the prompt before the generated text\n"
            "  --ids                  print generated token ids instead of text\n",
            MODEL_OPTS_USAGE);
}

int cmd_run(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    lethe_sampler_params sp = lethe_sampler_default_params();
    const char *prompt = NULL, *prompt_file = NULL;
    long n_predict = 128;
    bool ignore_eos = false, echo = false, ids_out = false, special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        double x;
        bool ok = true;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "--echo")) echo = true;
        else if (!strcmp(a, "--ids")) ids_out = true;
        else if (!strcmp(a, "--special")) special = true;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) ok = (prompt = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) ok = (prompt_file = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = opt_int(argc, argv, &i, 0, 1 << 24, &n_predict);
        else if (!strcmp(a, "--temp")) { if ((ok = opt_float(argc, argv, &i, 0, 100, &x))) sp.temperature = (float)x; }
        else if (!strcmp(a, "--top-k")) { if ((ok = opt_int(argc, argv, &i, 0, 1 << 24, &n))) sp.top_k = (int)n; }
        else if (!strcmp(a, "--top-p")) { if ((ok = opt_float(argc, argv, &i, 0, 1, &x))) sp.top_p = (float)x; }
        else if (!strcmp(a, "--min-p")) { if ((ok = opt_float(argc, argv, &i, 0, 1, &x))) sp.min_p = (float)x; }
        else if (!strcmp(a, "--repeat-penalty")) { if ((ok = opt_float(argc, argv, &i, 0.01, 100, &x))) sp.repeat_penalty = (float)x; }
        else if (!strcmp(a, "--repeat-last-n")) { if ((ok = opt_int(argc, argv, &i, 0, 1 << 20, &n))) sp.repeat_last_n = (int)n; }
        else if (!strcmp(a, "--seed")) ok = opt_u64(argc, argv, &i, &sp.seed);
        else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    if (!model_opts_check(&mo)) return EXIT_USAGE;
    if (!mo.model || (!prompt && !prompt_file) || (prompt && prompt_file)) {
        fprintf(stderr, "lethe run: need -m MODEL and exactly one of -p PROMPT / -f FILE\n");
        return usage_error();
    }
    size_t prompt_len = 0;
    char *file_text = NULL;
    if (prompt_file) {
        file_text = read_file(prompt_file, &prompt_len);
        if (!file_text) return 1; /* read_file said why */
        prompt = file_text;
    } else {
        prompt_len = strlen(prompt);
    }

    int rc = 1;
    lethe_model *m = model_opts_load(&mo);
    lethe_ctx *ctx = m ? model_opts_context(&mo, m, mo.n_ctx, 1) : NULL;
    lethe_seq *seq = NULL;
    lethe_sampler *smp = NULL;
    lethe_detok *dt = NULL;
    lethe_token *toks = NULL;
    float *logits = NULL;
    char err[512], *buf = NULL;
    int buf_cap = 0;
    if (!ctx) goto out;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    if (mo.n_ctx > info.n_ctx_train && !mo.kv.reindex)
        fprintf(stderr,
                "lethe run: warning: -c %d is past the model's training context of %d: positions beyond it are ones the "
                "model never saw (with an evicting policy -c bounds positions, --kv-budget the cache; --kv-policy window "
                "--kv-reindex keeps positions within the cache)\n",
                mo.n_ctx, info.n_ctx_train);

    int n_tok = lethe_tokenize(m, prompt, prompt_len, NULL, 0, true, special);
    if (n_tok < 0) { fprintf(stderr, "lethe run: cannot tokenize the prompt\n"); goto out; }
    toks = malloc(((size_t)n_tok + 1) * sizeof *toks);
    if (!toks) goto out;
    lethe_tokenize(m, prompt, prompt_len, toks, n_tok, true, special);
    if (n_tok == 0) {
        if (info.bos < 0) { fprintf(stderr, "lethe run: empty prompt and the vocabulary has no BOS token\n"); goto out; }
        toks[n_tok++] = info.bos;
    }
    lethe_seq_params sq = model_opts_seq_params(&mo);
    seq = lethe_seq_create(ctx, &sq, err, sizeof err);
    smp = lethe_sampler_create(&sp, info.n_vocab);
    dt = lethe_detok_create(m, false);
    buf_cap = info.max_piece_bytes + 8 > 1024 ? info.max_piece_bytes + 8 : 1024; /* always enough for one token */
    buf = malloc((size_t)buf_cap);
    logits = malloc((size_t)info.n_vocab * sizeof *logits);
    if (!seq || !smp || !dt || !logits || !buf) { fprintf(stderr, "lethe run: cannot set up the sequence: %s\n", seq ? "out of memory" : err); goto out; }

    if (echo) {
        for (int i = 0; i < n_tok; i++) {
            if (ids_out) printf("%d ", toks[i]);
            else {
                int k = lethe_detok_push(dt, toks[i], buf, buf_cap);
                if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
            }
        }
        fflush(stdout);
    }
    for (int i = 0; i < n_tok; i++) lethe_sampler_accept(smp, toks[i]);

    double t0 = now_seconds();
    lethe_status st = lethe_seq_append(seq, toks, n_tok, logits);
    double t_prompt = now_seconds() - t0;
    if (st) { fprintf(stderr, "lethe run: %s\n", lethe_seq_error(seq)); goto out; }

    long n_gen = 0;
    const char *stop = "length";
    double t1 = now_seconds();
    while (n_gen < n_predict) {
        lethe_token t = lethe_sampler_sample(smp, logits);
        n_gen++;
        if (!ignore_eos && lethe_token_is_eog(m, t)) { stop = "end of generation"; break; }
        if (ids_out) printf(n_gen > 1 || echo ? " %d" : "%d", t);
        else {
            int k = lethe_detok_push(dt, t, buf, buf_cap);
            if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
        }
        fflush(stdout);
        if (n_gen == n_predict) break;
        st = lethe_seq_append(seq, &t, 1, logits);
        if (st == LETHE_ERR_BUDGET) { stop = lethe_seq_error(seq); break; } /* context or KV budget full */
        if (st) { fprintf(stderr, "\nlethe run: %s\n", lethe_seq_error(seq)); goto out; }
    }
    double t_gen = now_seconds() - t1;
    if (!ids_out) {
        int k = lethe_detok_flush(dt, buf, buf_cap);
        if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
    }
    printf("\n");
    fflush(stdout);
    lethe_kv_usage ku;
    lethe_ctx_kv_usage(ctx, &ku);
    fprintf(stderr, "\nstop: %s\nKV: policy %s, %.3f MiB held at peak of a %.3f MiB pool, cold tier %.3f MiB at peak\nprompt: %d tokens in %.3f s (%.1f tok/s) | generation: %ld tokens in %.3f s (%.1f tok/s) | peak RSS: %.1f MiB\n",
            stop, mo.kv.name, ku.bytes_peak / 1048576.0, ku.bytes_total / 1048576.0, ku.cold_peak / 1048576.0, n_tok, t_prompt, n_tok / (t_prompt > 0 ? t_prompt : 1e-9), n_gen, t_gen,
            n_gen / (t_gen > 0 ? t_gen : 1e-9), peak_rss_bytes() / 1048576.0);
    rc = 0;
out:
    free(logits);
    free(buf);
    free(toks);
    free(file_text);
    lethe_detok_free(dt);
    lethe_sampler_free(smp);
    lethe_seq_free(seq);
    lethe_ctx_free(ctx);
    lethe_model_free(m);
    return rc;
}
