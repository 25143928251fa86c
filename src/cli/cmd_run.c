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
            "  --ids                  print generated token ids instead of text\n"
            "structured memory (docs/memory.md; needs --kv-policy full):\n"
            "  --memory RULES         prune spans by rule set: tim, think, tool (combine with ','), or none\n"
            "  --prune-mode M         shift (re-rotate the keys after a pruned span, default) or reencode (exact)\n"
            "  --prune-buffer K       tim: closed subtask lists kept before pruning (default 2)\n"
            "  --think-keep N         think: closed <think> blocks kept (default 0)\n"
            "  --tool NAME=COMMAND    a tool the model may call: COMMAND (split on spaces, no shell) gets the\n"
            "                         call's JSON on stdin and prints the result; NAME * matches any (repeatable)\n"
            "  --tool-timeout MS      tool wall-clock limit (default 10000)\n"
            "  --tool-output-max N    tool results cut at N bytes (default 65536)\n"
            "  --force-file FILE      teacher forcing: the tokens of FILE are fed as if generated, then stop\n",
            MODEL_OPTS_USAGE);
}

int cmd_run(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    lethe_sampler_params sp = lethe_sampler_default_params();
    const char *prompt = NULL, *prompt_file = NULL;
    long n_predict = 128;
    bool ignore_eos = false, echo = false, ids_out = false, special = false;
    lethe_memory_params mp = lethe_memory_default_params();
    bool use_memory = false;
    const char *force_file = NULL, *tools[16];
    int n_tools = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        bool ok = true;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r == 0) r = sampler_opts_parse(&sp, argc, argv, &i);
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
        else if (!strcmp(a, "--memory")) { use_memory = true; ok = (mp.rules = opt_value(argc, argv, &i)) != NULL; }
        else if (!strcmp(a, "--prune-mode")) {
            const char *v = opt_value(argc, argv, &i);
            use_memory = true;
            if (!v) return EXIT_USAGE;
            if (!strcmp(v, "shift")) mp.mode = LETHE_PRUNE_SHIFT;
            else if (!strcmp(v, "reencode")) mp.mode = LETHE_PRUNE_REENCODE;
            else { fprintf(stderr, "lethe run: --prune-mode is shift or reencode, not '%s'\n", v); return usage_error(); }
        }
        else if (!strcmp(a, "--prune-buffer")) { use_memory = true; if ((ok = opt_int(argc, argv, &i, 0, 1 << 20, &n))) mp.prune_buffer = (int)n; }
        else if (!strcmp(a, "--think-keep")) { use_memory = true; if ((ok = opt_int(argc, argv, &i, 0, 1 << 20, &n))) mp.think_keep = (int)n; }
        else if (!strcmp(a, "--tool-timeout")) { use_memory = true; if ((ok = opt_int(argc, argv, &i, 1, 1 << 30, &n))) mp.tool_timeout_ms = (int)n; }
        else if (!strcmp(a, "--tool-output-max")) { use_memory = true; if ((ok = opt_int(argc, argv, &i, 1, 1 << 30, &n))) mp.tool_output_max = (size_t)n; }
        else if (!strcmp(a, "--tool")) {
            const char *v = opt_value(argc, argv, &i);
            use_memory = true;
            if (!v) return EXIT_USAGE;
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || n_tools == 16) {
                fprintf(stderr, "lethe run: --tool takes NAME=COMMAND (at most 16), not '%s'\n", v);
                return usage_error();
            }
            tools[n_tools++] = v;
        }
        else if (!strcmp(a, "--force-file")) ok = (force_file = opt_value(argc, argv, &i)) != NULL;
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
    lethe_memory *mem = NULL;
    lethe_token *forced = NULL;
    int n_forced = 0;
    char *force_text = NULL;
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
    if (force_file) {
        size_t flen = 0;
        if (!(force_text = read_file(force_file, &flen))) goto out;
        n_forced = lethe_tokenize(m, force_text, flen, NULL, 0, false, special);
        forced = n_forced > 0 ? malloc((size_t)n_forced * sizeof *forced) : NULL;
        if (n_forced <= 0 || !forced) { fprintf(stderr, "lethe run: cannot tokenize '%s' (or it is empty)\n", force_file); goto out; }
        lethe_tokenize(m, force_text, flen, forced, n_forced, false, special);
    }
    if (use_memory) {
        if (!(mem = lethe_memory_create(seq, &mp, err, sizeof err))) { fprintf(stderr, "lethe run: %s\n", err); goto out; }
        for (int k = 0; k < n_tools; k++) {
            char name[128];
            const char *eq = strchr(tools[k], '=');
            snprintf(name, sizeof name, "%.*s", (int)(eq - tools[k]), tools[k]);
            if (lethe_memory_add_exec_tool(mem, name, eq + 1)) { fprintf(stderr, "lethe run: %s\n", lethe_memory_error(mem)); goto out; }
        }
    }

    double t0 = now_seconds();
    lethe_status st = mem ? lethe_memory_append(mem, toks, n_tok, logits) : lethe_seq_append(seq, toks, n_tok, logits);
    double t_prompt = now_seconds() - t0;
    if (st) { fprintf(stderr, "lethe run: %s\n", mem ? lethe_memory_error(mem) : lethe_seq_error(seq)); goto out; }

    long n_gen = 0;
    const char *stop = "length";
    double t1 = now_seconds();
    while (n_gen < n_predict) {
        if (forced && n_gen == n_forced) { stop = "end of the forced trace"; break; }
        lethe_token t = forced ? forced[n_gen] : lethe_sampler_sample(smp, logits);
        if (forced) lethe_sampler_accept(smp, t);
        n_gen++;
        if (!forced && !ignore_eos && lethe_token_is_eog(m, t)) { stop = "end of generation"; break; }
        if (ids_out) printf(n_gen > 1 || echo ? " %d" : "%d", t);
        else {
            int k = lethe_detok_push(dt, t, buf, buf_cap);
            if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
        }
        fflush(stdout);
        if (n_gen == n_predict) break;
        st = mem ? lethe_memory_append(mem, &t, 1, logits) : lethe_seq_append(seq, &t, 1, logits);
        const char *why = mem ? lethe_memory_error(mem) : lethe_seq_error(seq);
        if (st == LETHE_ERR_BUDGET) { stop = why; break; } /* context or KV budget full */
        if (st) { fprintf(stderr, "\nlethe run: %s\n", why); goto out; }
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
    if (seq) {
        lethe_seq_bytes sb;
        lethe_seq_get_bytes(seq, &sb);
        fprintf(stderr,
                "KV bytes of the sequence: %zu RAM now (hot %zu, cold %zu, staging %zu, state %zu), %zu at peak%s%s; disk %zu "
                "bytes, %.1f MiB read\n",
                sb.ram_bytes, sb.hot_bytes, sb.cold_bytes, sb.staging_bytes, sb.state_bytes, sb.ram_peak,
                sb.budget_bytes ? ", budget " : "", sb.budget_bytes ? "set" : "", sb.disk_bytes, sb.disk_read_bytes / 1048576.0);
    }
    if (mem) {
        lethe_memory_stats ms;
        lethe_memory_get_stats(mem, &ms);
        fprintf(stderr,
                "memory: rules %s, %s mode | tokens processed %ld (%ld re-run by pruning) | slots held %d, peak %d | spans "
                "pruned %d of %d (%ld tokens, %.3f MiB freed, %.3f s) | tool calls %d (%d failed, %.3f s)\n",
                mp.rules && *mp.rules ? mp.rules : "none", mp.mode == LETHE_PRUNE_SHIFT ? "shift" : "reencode",
                ms.tokens_processed, ms.tokens_reencoded, ms.slots_held, ms.slots_peak, ms.spans_pruned, ms.spans_opened,
                ms.tokens_pruned, ms.bytes_freed / 1048576.0, ms.prune_seconds, ms.tool_calls, ms.tool_errors, ms.tool_seconds);
    }
    rc = 0;
out:
    lethe_memory_free(mem);
    free(forced);
    free(force_text);
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
