/* `lethe bench memory`: a TIM-style reasoning trace (nested subtask lists,
 * four levels deep) of N tokens, teacher-forced one decode step at a time,
 * without structured memory and with the tim rule for prune buffers 0, 1, 2
 * in both prune modes. Reports peak KV slots and bytes, decode tokens/s,
 * and the decode time per token in the first and the last tenth of the
 * trace (flat when pruning keeps the working memory bounded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->n + k + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) return;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static const char *WORDS[] = {"check", "the", "next", "value", "and", "count", "what", "is", "left", "then", "add", "it"};

static void words(sbuf *b, unsigned *x, int n) {
    for (int i = 0; i < n; i++) {
        *x = *x * 1103515245u + 12345u;
        if (i) put(b, " ");
        put(b, WORDS[(*x >> 16) % (sizeof WORDS / sizeof *WORDS)]);
    }
}

static void task(sbuf *b, unsigned *x, int depth, int max_depth) {
    put(b, "{\"thought\": \"");
    words(b, x, 6);
    put(b, "\"");
    if (depth < max_depth) {
        put(b, ", \"subtasks\": [");
        for (int k = 0; k < 2; k++) {
            if (k) put(b, ", ");
            task(b, x, depth + 1, max_depth);
        }
        put(b, "]");
    }
    put(b, ", \"conclusion\": \"");
    words(b, x, 5);
    put(b, "\"}");
}

typedef struct {
    int peak_slots;
    size_t peak_bytes;
    double tok_s, ms_first, ms_last;
    long reencoded;
} result;

static bool run_one(const model_opts *o, const lethe_model *m, const lethe_token *ids, int n, const char *rules,
                    lethe_prune_mode mode, int buffer, result *r) {
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_ctx *c = model_opts_context(o, m, n + 16, 1);
    if (!c) return false;
    char err[512];
    lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
    lethe_memory *mem = NULL;
    float *logits = malloc(sizeof *logits * (size_t)info.n_vocab);
    bool ok = false;
    memset(r, 0, sizeof *r);
    if (!s || !logits) { fprintf(stderr, "lethe bench: %s\n", s ? "out of memory" : err); goto out; }
    if (rules) {
        lethe_memory_params p = lethe_memory_default_params();
        p.rules = rules;
        p.mode = mode;
        p.prune_buffer = buffer;
        if (!(mem = lethe_memory_create(s, &p, err, sizeof err))) { fprintf(stderr, "lethe bench: %s\n", err); goto out; }
    }
    lethe_ctx_kv_reset_peak(c);
    const int tenth = n / 10 > 0 ? n / 10 : 1;
    double t0 = now_seconds(), t_first = 0, t_mark = t0;
    for (int i = 0; i < n; i++) {
        lethe_status st = mem ? lethe_memory_append(mem, &ids[i], 1, logits) : lethe_seq_decode(s, ids[i], logits);
        if (st) { fprintf(stderr, "lethe bench: step %d: %s\n", i, mem ? lethe_memory_error(mem) : lethe_seq_error(s)); goto out; }
        int held = lethe_seq_n_cached(s);
        if (held > r->peak_slots) r->peak_slots = held;
        if (i + 1 == tenth) t_first = now_seconds() - t0;
        if (i + 1 == n - tenth) t_mark = now_seconds();
    }
    double t = now_seconds() - t0;
    r->tok_s = n / (t > 0 ? t : 1e-9);
    r->ms_first = 1e3 * t_first / tenth;
    r->ms_last = 1e3 * (now_seconds() - t_mark) / tenth;
    lethe_kv_usage u;
    lethe_ctx_kv_usage(c, &u);
    r->peak_bytes = u.bytes_peak;
    if (mem) {
        lethe_memory_stats ms;
        lethe_memory_get_stats(mem, &ms);
        r->reencoded = ms.tokens_reencoded;
    }
    ok = true;
out:
    lethe_memory_free(mem);
    free(logits);
    lethe_ctx_free(c);
    return ok;
}

/* The trace of one shape, cut at n_tokens: top-level steps whose task trees
 * nest max_depth deep. Returns the ids (malloc'd) or NULL. */
static lethe_token *make_trace(const lethe_model *m, int n_tokens, int max_depth) {
    sbuf b = {0};
    unsigned x = 1;
    put(&b, "{\"reasoning\": [");
    int n = 0;
    lethe_token *ids = NULL;
    for (int step = 0;; step++) {
        if (step) put(&b, ", ");
        task(&b, &x, 1, max_depth);
        if (step % 8 == 7 || max_depth > 4 || !b.p) {
            n = b.p ? lethe_tokenize(m, b.p, b.n, NULL, 0, true, false) : -1;
            if (n < 0 || n >= n_tokens) break;
        }
    }
    if (n > 0 && (ids = malloc(sizeof *ids * (size_t)n))) lethe_tokenize(m, b.p, b.n, ids, n, true, false);
    free(b.p);
    return ids;
}

/* One table: no pruning, then tim at buffers 0-2 in both modes. */
static bool bench_shape(const model_opts *o, const lethe_model *m, int n, int max_depth, const char *what) {
    lethe_token *ids = make_trace(m, n, max_depth);
    if (!ids) {
        fprintf(stderr, "lethe bench: cannot build the trace\n");
        return false;
    }
    printf("\nbench memory: %s, a TIM trace of %d tokens (%s), teacher-forced one decode step at a time\n", o->model, n, what);
    printf("%-22s %10s %12s %10s %9s %12s %12s %10s\n", "configuration", "peak slots", "peak KV MiB", "tok/s", "x none",
           "ms/tok first", "ms/tok last", "re-run");
    result base;
    bool ok = false;
    if (!run_one(o, m, ids, n, NULL, LETHE_PRUNE_SHIFT, 0, &base)) goto out;
    printf("%-22s %10d %12.3f %10.1f %9s %12.3f %12.3f %10s\n", "no pruning", base.peak_slots, base.peak_bytes / 1048576.0,
           base.tok_s, "1.00", base.ms_first, base.ms_last, "-");
    fflush(stdout);
    for (int mode = 0; mode < 2; mode++)
        for (int k = 0; k <= 2; k++) {
            result r;
            if (!run_one(o, m, ids, n, "tim", mode ? LETHE_PRUNE_REENCODE : LETHE_PRUNE_SHIFT, k, &r)) goto out;
            char name[64];
            snprintf(name, sizeof name, "tim %s, buffer %d", mode ? "reencode" : "shift", k);
            printf("%-22s %10d %12.3f %10.1f %9.2f %12.3f %12.3f %10ld   (-%.0f%% peak KV)\n", name, r.peak_slots,
                   r.peak_bytes / 1048576.0, r.tok_s, r.tok_s / base.tok_s, r.ms_first, r.ms_last, r.reencoded,
                   100.0 * (1.0 - (double)r.peak_bytes / (double)base.peak_bytes));
            fflush(stdout);
        }
    ok = true;
out:
    free(ids);
    return ok;
}

int bench_memory(const model_opts *o, int n_tokens) {
    if (n_tokens < 100) n_tokens = 100;
    lethe_model *m = model_opts_load(o);
    if (!m) return 1;
    /* Two shapes. Wide: many top-level steps, each a tree 4 deep; TIM keeps
     * every top-level thought and conclusion, so what is held grows with the
     * steps. Deep: one task tree 14 deep (branching 2): what is held is the
     * open path and the kept lists, growing with the depth only. */
    bool ok = bench_shape(o, m, n_tokens, 4, "wide: top-level steps, subtask lists 4 deep") &&
              bench_shape(o, m, n_tokens, 14, "deep: one task tree, subtask lists up to 14 deep");
    lethe_model_free(m);
    return ok ? 0 : 1;
}
