/* lethe chat: an interactive chat on stdin / stdout. Each user line becomes
 * a user message; the whole conversation is rendered with the chat template
 * and tokenised, and only the tokens past what the one sequence already
 * holds run through the model (when the new tokenisation does not extend the
 * held tokens, the sequence is truncated to the common prefix first). The
 * reply streams to stdout, one line per reply; everything else goes to
 * stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe chat -m MODEL [options]\n"
            "Reads one user message per line from stdin and streams each reply to stdout (one line per reply);\n"
            "EOF ends the chat.\n"
            "%s"
            "  --chat-template NAME   template family (default: detected from the model's tokenizer.chat_template):\n"
            "                         ",
            MODEL_OPTS_USAGE);
    int col = 25;
    for (const char *const *n = lethe_chat_template_names(); *n; n++) {
        int w = (int)strlen(*n) + 2;
        if (n != lethe_chat_template_names()) fprintf(f, col + w > 110 ? ",\n                         " : ", ");
        if (col + w > 110) col = 25;
        fprintf(f, "%s", *n);
        col += w;
    }
    fprintf(f, "\n");
    fprintf(f,
            "  --system TEXT          a system message at the start of the conversation\n"
            "  --stop TEXT            also end a reply where it reaches TEXT (besides the template's end of turn)\n"
            "  -n, --n-predict N      most tokens per reply (default 256)\n"
            "  --temp T               temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40, 0 = off)\n"
            "  --top-p P              (default 0.95, 1 = off)\n"
            "  --min-p P              (default 0.05, 0 = off)\n"
            "  --repeat-penalty R     (default 1.0 = off)\n"
            "  --repeat-last-n N      tokens the penalty looks back (default 64)\n"
            "  --seed S               RNG seed (default 0)\n"
            "  --verbose              per turn on stderr: prompt tokens reused from the cache and appended\n");
}

/* A growing array of messages whose strings the chat owns. */
typedef struct {
    lethe_chat_message *m;
    int n, cap;
} history;

static bool history_add(history *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        lethe_chat_message *nm = realloc(h->m, (size_t)cap * sizeof *nm);
        if (!nm) return false;
        h->m = nm, h->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return false;
    memcpy(c, content, len);
    c[len] = 0;
    h->m[h->n].role = role;
    h->m[h->n].content = c;
    h->n++;
    return true;
}

static void history_free(history *h) {
    for (int i = 0; i < h->n; i++) free((char *)h->m[i].content);
    free(h->m);
}

/* A growing byte buffer (the reply as it is generated). */
typedef struct {
    char *p;
    size_t n, cap;
} bytes;

static bool bytes_put(bytes *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return false;
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
    return true;
}

/* Length of the longest suffix of text[0, n) that is a proper prefix of stop:
 * bytes that may turn out to be the start of the stop text, held back. */
static size_t stop_overlap(const char *text, size_t n, const char *stop) {
    size_t ls = strlen(stop);
    for (size_t k = ls - 1 < n ? ls - 1 : n; k > 0; k--)
        if (!memcmp(text + n - k, stop, k)) return k;
    return 0;
}

/* Where the reply may be printed up to: the first stop text found (*hit set)
 * or, without one, the end less what may be the start of a stop text. */
static size_t stop_scan(const char *text, size_t n, const char *const *stops, int n_stops, bool *hit) {
    size_t safe = n, first = n;
    *hit = false;
    if (n == 0) return 0;
    for (int i = 0; i < n_stops; i++) {
        const char *at = memmem(text, n, stops[i], strlen(stops[i]));
        if (at && (size_t)(at - text) <= first) first = (size_t)(at - text), *hit = true;
        size_t keep = n - stop_overlap(text, n, stops[i]);
        if (keep < safe) safe = keep;
    }
    return *hit ? first : safe;
}

typedef struct {
    lethe_token *p;
    int n, cap;
} tokens;

static bool tokens_reserve(tokens *t, int n) {
    if (n <= t->cap) return true;
    int cap = t->cap ? t->cap : 256;
    while (cap < n) cap *= 2;
    lethe_token *np = realloc(t->p, (size_t)cap * sizeof *np);
    if (!np) return false;
    t->p = np, t->cap = cap;
    return true;
}

int cmd_chat(int argc, char **argv) {
    model_opts mo;
    model_opts_init(&mo);
    lethe_sampler_params sp = lethe_sampler_default_params();
    const char *tmpl = NULL, *system = NULL, *user_stop = NULL;
    long n_predict = 256;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r == 0) r = sampler_opts_parse(&sp, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--chat-template")) ok = (tmpl = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--system")) ok = (system = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "--stop")) ok = (user_stop = opt_value(argc, argv, &i)) != NULL;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = opt_int(argc, argv, &i, 1, 1 << 24, &n_predict);
        else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    if (!model_opts_check(&mo)) return EXIT_USAGE;
    if (user_stop && !*user_stop) {
        fprintf(stderr, "lethe chat: --stop needs a non-empty text\n");
        return usage_error();
    }
    if (!mo.model) {
        fprintf(stderr, "lethe chat: need -m MODEL\n");
        return usage_error();
    }
    char names[512] = "";
    for (const char *const *n = lethe_chat_template_names(); *n; n++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", *n);
    if (tmpl && !lethe_chat_template_stop(NULL, tmpl)) {
        fprintf(stderr, "lethe chat: unknown chat template '%s' (%s)\n", tmpl, names);
        return usage_error();
    }

    int rc = 1;
    lethe_model *m = model_opts_load(&mo);
    lethe_ctx *ctx = NULL;
    lethe_seq *seq = NULL;
    lethe_sampler *smp = NULL;
    lethe_detok *dt = NULL;
    float *logits = NULL;
    char err[512], *buf = NULL, *prompt = NULL, *line = NULL;
    size_t line_cap = 0;
    int buf_cap = 0, prompt_cap = 0;
    history h = {0};
    bytes reply = {0};
    tokens held = {0}, toks = {0}; /* held: the tokens the sequence holds, in order */
    if (!m) goto out;
    if (!tmpl && !(tmpl = lethe_chat_template_detect(m))) {
        if (lethe_model_chat_template(m))
            fprintf(stderr, "lethe chat: the chat template of '%s' is not one lethe recognises; choose one with --chat-template NAME (%s)\n",
                    mo.model, names);
        else
            fprintf(stderr, "lethe chat: '%s' has no chat template; choose one with --chat-template NAME (%s)\n", mo.model, names);
        goto out;
    }
    const char *stop = lethe_chat_template_stop(m, tmpl), *stops[2];
    int n_stops = 0;
    if (stop) stops[n_stops++] = stop;
    if (user_stop) stops[n_stops++] = user_stop;
    if (!(ctx = model_opts_context(&mo, m, mo.n_ctx, 1))) goto out;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_seq_params sq = model_opts_seq_params(&mo);
    seq = lethe_seq_create(ctx, &sq, err, sizeof err);
    smp = lethe_sampler_create(&sp, info.n_vocab);
    buf_cap = info.max_piece_bytes + 8 > 1024 ? info.max_piece_bytes + 8 : 1024; /* always enough for one token */
    buf = malloc((size_t)buf_cap);
    logits = malloc((size_t)info.n_vocab * sizeof *logits);
    if (!seq || !smp || !logits || !buf) { fprintf(stderr, "lethe chat: cannot set up the sequence: %s\n", seq ? "out of memory" : err); goto out; }
    if (system && !history_add(&h, "system", system, strlen(system))) goto oom;
    if (verbose) fprintf(stderr, "lethe chat: template %s, end of turn \"%s\"\n", tmpl, stop ? stop : "");

    bool tty = isatty(STDIN_FILENO);
    for (int turn = 1;; turn++) {
        if (tty) { fprintf(stderr, "> "); fflush(stderr); }
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break; /* EOF */
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) { turn--; continue; }
        if (!history_add(&h, "user", line, (size_t)len)) goto oom;

        /* The whole conversation, rendered and tokenised. */
        int need = lethe_chat_apply(m, tmpl, h.m, h.n, true, prompt, prompt_cap, err, sizeof err);
        if (need < 0) { fprintf(stderr, "lethe chat: %s\n", err); goto out; }
        if (need >= prompt_cap) {
            free(prompt);
            prompt_cap = need + 1;
            if (!(prompt = malloc((size_t)prompt_cap))) goto oom;
            lethe_chat_apply(m, tmpl, h.m, h.n, true, prompt, prompt_cap, err, sizeof err);
        }
        int n_tok = lethe_tokenize(m, prompt, (size_t)need, NULL, 0, true, true);
        if (n_tok < 0) { fprintf(stderr, "lethe chat: cannot tokenize the conversation\n"); goto out; }
        if (!tokens_reserve(&toks, n_tok + 1)) goto oom;
        lethe_tokenize(m, prompt, (size_t)need, toks.p, n_tok, true, true);
        if (n_tok == 0) {
            if (info.bos < 0) { fprintf(stderr, "lethe chat: empty prompt and the vocabulary has no BOS token\n"); goto out; }
            toks.p[n_tok++] = info.bos;
        }

        /* Reuse the cached prefix; at least one token runs, for the logits. */
        int keep = 0;
        while (keep < held.n && keep < n_tok && held.p[keep] == toks.p[keep]) keep++;
        if (keep == n_tok) keep--;
        int dropped = held.n - keep;
        if (dropped > 0 && lethe_seq_truncate(seq, keep)) { fprintf(stderr, "lethe chat: %s\n", lethe_seq_error(seq)); goto out; }
        held.n = keep;
        if (verbose)
            fprintf(stderr, "lethe chat: turn %d: %d prompt tokens, %d reused, %d appended, %d dropped\n", turn, n_tok, keep,
                    n_tok - keep, dropped);
        if (!tokens_reserve(&held, n_tok + (int)n_predict)) goto oom;
        lethe_status st = lethe_seq_append(seq, toks.p + keep, n_tok - keep, logits);
        if (st) { fprintf(stderr, "lethe chat: %s\n", lethe_seq_error(seq)); goto out; }
        for (int i = keep; i < n_tok; i++) {
            held.p[held.n++] = toks.p[i];
            lethe_sampler_accept(smp, toks.p[i]);
        }

        /* The reply: streamed, held back only where it may be the start of
         * the end-of-turn text. */
        lethe_detok_free(dt);
        if (!(dt = lethe_detok_create(m, true))) goto oom;
        reply.n = 0;
        size_t printed = 0;
        const char *why = "length";
        for (long n_gen = 0; n_gen < n_predict;) {
            lethe_token t = lethe_sampler_sample(smp, logits);
            n_gen++;
            if (lethe_token_is_eog(m, t)) { why = "end of generation"; break; }
            int k = lethe_detok_push(dt, t, buf, buf_cap);
            if (k > 0 && !bytes_put(&reply, buf, (size_t)k)) goto oom;
            bool hit;
            size_t safe = stop_scan(reply.p, reply.n, stops, n_stops, &hit);
            if (safe > printed) fwrite(reply.p + printed, 1, safe - printed, stdout), printed = safe;
            fflush(stdout);
            if (hit) { reply.n = safe; why = "end of turn"; break; }
            if (n_gen == n_predict) break;
            st = lethe_seq_append(seq, &t, 1, logits);
            if (st == LETHE_ERR_BUDGET) { why = lethe_seq_error(seq); break; } /* context or KV budget full */
            if (st) { fprintf(stderr, "\nlethe chat: %s\n", lethe_seq_error(seq)); goto out; }
            held.p[held.n++] = t;
        }
        if (strcmp(why, "end of turn")) {
            int k = lethe_detok_flush(dt, buf, buf_cap);
            if (k > 0 && !bytes_put(&reply, buf, (size_t)k)) goto oom;
            if (reply.n > printed) fwrite(reply.p + printed, 1, reply.n - printed, stdout);
        }
        printf("\n");
        fflush(stdout);
        if (verbose) fprintf(stderr, "lethe chat: turn %d: stop: %s\n", turn, why);
        if (!history_add(&h, "assistant", reply.n ? reply.p : "", reply.n)) goto oom;
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "lethe chat: out of memory\n");
out:
    free(line);
    free(prompt);
    free(reply.p);
    free(held.p);
    free(toks.p);
    free(logits);
    free(buf);
    history_free(&h);
    lethe_detok_free(dt);
    lethe_sampler_free(smp);
    lethe_seq_free(seq);
    lethe_ctx_free(ctx);
    lethe_model_free(m);
    return rc;
}
