/* Structured memory (lethe_memory, docs/memory.md).
 *
 * - Re-encode is exact: pruning span S from a sequence fed A+S+B gives the
 *   next-token logits of a fresh sequence fed A+B (1e-4, F32 KV), on
 *   stories260K and the synthetic GQA model (context 128). Shift mode's KL
 *   against re-encode over a teacher-forced continuation is printed.
 * - The tim rule on a teacher-forced TIM trace with subtask lists nested 4
 *   deep: exactly the expected lists are pruned at the expected tokens for
 *   prune buffers 0, 1, 2; a thought or conclusion is only ever gone with a
 *   list that held it, the top-level ones never; after re-encode the cache
 *   gives the logits of a fresh sequence fed the surviving tokens.
 * - The think rule: blocks pruned when the answer after them starts,
 *   keeping the last N.
 * - Evicting policies are accepted (their plans leave open spans alone:
 *   test_memory_policy.c), window --kv-reindex is refused; NULL handles
 *   are safe.
 * - Past the context: stories260K (context 512) teacher-forced through a
 *   think trace of 10x its context finishes with its slots bounded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

static int V;

static lethe_ctx *open_ctx(const char *path, int n_ctx) {
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.kv_type = LETHE_KV_F32;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = 3;
    cp.n_threads = 2;
    cp.kv_page_slots = 8;
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    CHECKF(c != NULL, "ctx %s: %s", path, err);
    if (c) {
        lethe_model_info info;
        lethe_model_get_info(lethe_ctx_model(c), &info);
        V = info.n_vocab;
    }
    return c;
}

static lethe_memory *open_mem(lethe_seq *s, const char *rules, lethe_prune_mode mode, int buffer, int keep) {
    lethe_memory_params p = lethe_memory_default_params();
    p.rules = rules;
    p.mode = mode;
    p.prune_buffer = buffer;
    p.think_keep = keep;
    char err[512];
    lethe_memory *m = lethe_memory_create(s, &p, err, sizeof err);
    CHECKF(m != NULL, "memory: %s", err);
    return m;
}

/* KL(p || q) of the softmaxes of logits a (p) and b (q). */
static double kl(const float *a, const float *b, int n) {
    double ma = -1e30, mb = -1e30, za = 0, zb = 0;
    for (int i = 0; i < n; i++) ma = a[i] > ma ? a[i] : ma, mb = b[i] > mb ? b[i] : mb;
    for (int i = 0; i < n; i++) za += exp(a[i] - ma), zb += exp(b[i] - mb);
    double k = 0;
    for (int i = 0; i < n; i++) {
        double lp = a[i] - ma - log(za), lq = b[i] - mb - log(zb);
        k += exp(lp) * (lp - lq);
    }
    return k;
}

/* ---- re-encode exactness, shift's KL -------------------------------------- */

static void exactness(const char *path, const char *what) {
    lethe_ctx *c = open_ctx(path, 128);
    if (!c) return;
    enum { A = 30, S = 25, B = 30, C = 20 };
    lethe_token t[A + S + B + C], ab[A + B];
    for (int i = 0; i < A + S + B + C; i++) t[i] = 1 + (i * 53 + 7) % 500;
    memcpy(ab, t, A * sizeof *t);
    memcpy(ab + A, t + A + S, B * sizeof *t);
    float *fresh = malloc(sizeof(float) * V), *lr = malloc(sizeof(float) * V), *ls = malloc(sizeof(float) * V);
    char err[512];
    lethe_seq *f = lethe_seq_create(c, NULL, err, sizeof err);
    CHECK(lethe_seq_append(f, ab, A + B, fresh) == LETHE_OK);
    lethe_seq_free(f);
    lethe_seq *sr = lethe_seq_create(c, NULL, err, sizeof err), *ss = lethe_seq_create(c, NULL, err, sizeof err);
    lethe_memory *mr = open_mem(sr, NULL, LETHE_PRUNE_REENCODE, 2, 0), *ms = open_mem(ss, NULL, LETHE_PRUNE_SHIFT, 2, 0);
    if (!mr || !ms) goto out;
    for (int k = 0; k < 2; k++) {
        lethe_memory *m = k ? ms : mr;
        CHECK(lethe_memory_append(m, t, A, NULL) == LETHE_OK);
        int id = lethe_memory_span_open(m, "S", -1);
        CHECK(id == 0);
        CHECK(lethe_memory_append(m, t + A, S, NULL) == LETHE_OK);
        CHECK(lethe_memory_span_close(m, id, -1) == LETHE_OK);
        CHECK(lethe_memory_append(m, t + A + S, B, NULL) == LETHE_OK);
        lethe_span_info si;
        CHECK(lethe_memory_span_get(m, id, &si) == LETHE_OK && si.p0 == A && si.p1 == A + S && si.state == LETHE_SPAN_CLOSED);
        CHECK(lethe_memory_span_prune(m, id, k ? ls : lr) == LETHE_OK);
        CHECK(lethe_memory_span_get(m, id, &si) == LETHE_OK && si.state == LETHE_SPAN_PRUNED && si.p0 == -1);
        lethe_seq *s = k ? ss : sr;
        CHECK(lethe_seq_n_past(s) == A + B && lethe_seq_n_cached(s) == A + B);
        lethe_memory_stats st;
        CHECK(lethe_memory_get_stats(m, &st) == LETHE_OK && st.spans_pruned == 1 && st.tokens_pruned == S);
        CHECK(st.tokens_reencoded == (k ? 1 : B)); /* shift re-decodes only the last token for fresh logits */
    }
    double d = tu_max_diff(fresh, lr, V);
    printf("%s: re-encode vs fresh A+B: max|d| %.3g (bound 1e-4)\n", what, d);
    CHECKF(d <= 1e-4, "%s: re-encode differs from a fresh sequence by %.3g", what, d);
    double klsum = kl(lr, ls, V), dmax = tu_max_diff(lr, ls, V);
    for (int i = 0; i < C; i++) {
        CHECK(lethe_memory_append(mr, &t[A + S + B + i], 1, lr) == LETHE_OK);
        CHECK(lethe_memory_append(ms, &t[A + S + B + i], 1, ls) == LETHE_OK);
        klsum += kl(lr, ls, V);
    }
    printf("%s: shift vs re-encode: max|d| logits after the prune %.3g, mean KL over %d next-token distributions %.3g\n",
           what, dmax, C + 1, klsum / (C + 1));
out:
    lethe_memory_free(mr);
    lethe_memory_free(ms);
    free(fresh);
    free(lr);
    free(ls);
    tu_close_ctx(c);
}

/* ---- teacher-forced traces ------------------------------------------------- */

typedef struct {
    lethe_token *ids;
    int n;
    long *c1;   /* end byte of each token's text in the decoded stream */
    char *text; /* the decoded stream */
} trace;

static void trace_make(const lethe_model *m, const char *text, trace *t) {
    size_t len = strlen(text);
    int n = lethe_tokenize(m, text, len, NULL, 0, false, false);
    t->ids = malloc(sizeof *t->ids * (size_t)n);
    t->c1 = malloc(sizeof *t->c1 * (size_t)n);
    t->n = lethe_tokenize(m, text, len, t->ids, n, false, false);
    t->text = malloc(len * 2 + 64);
    lethe_detok *d = lethe_detok_create(m, true);
    long c = 0;
    for (int i = 0; i < t->n; i++) {
        int k = lethe_detok_push(d, t->ids[i], t->text + c, 64);
        c += k > 0 ? k : 0;
        t->c1[i] = c;
    }
    t->text[c] = 0;
    lethe_detok_free(d);
}

static void trace_free(trace *t) {
    free(t->ids);
    free(t->c1);
    free(t->text);
}

/* The token whose text holds byte o of the decoded stream. */
static int tok_at(const trace *t, long o) {
    for (int i = 0; i < t->n; i++)
        if (t->c1[i] > o) return i;
    return -1;
}

/* Byte offset of the first occurrence of s (plus `plus`), -1 when absent. */
static long off_of(const trace *t, const char *s, long plus) {
    const char *p = strstr(t->text, s);
    CHECKF(p != NULL, "'%s' not in the decoded trace", s);
    return p ? (long)(p - t->text) + plus : -1;
}

static const char *TIM_TRACE =
    "{\"reasoning\": [{\"thought\": \"T1\", \"subtasks\": ["                    /* A */
    "{\"thought\": \"T11\", \"subtasks\": ["                                     /* B */
    "{\"thought\": \"T111\", \"subtasks\": ["                                    /* C */
    "{\"thought\": \"T1111\", \"subtasks\": ["                                   /* D */
    "{\"thought\": \"T11111\", \"conclusion\": \"C11111\"}"
    "], \"conclusion\": \"C1111\"}"
    "], \"conclusion\": \"C111\"}"
    "], \"conclusion\": \"C11\"}, "
    "{\"thought\": \"T12\", \"subtasks\": [{\"thought\": \"T121\", \"conclusion\": \"C121\"}], \"conclusion\": \"C12\"}" /* E */
    "], \"conclusion\": \"C1\"}, "
    "{\"thought\": \"T2\", \"subtasks\": [{\"thought\": \"T21\", \"conclusion\": \"C21\"}], \"conclusion\": \"C2\"}" /* F */
    "], \"answer\": \"done\"}";

static void tim_rules(const char *path) {
    lethe_ctx *c = open_ctx(path, 512);
    if (!c) return;
    const lethe_model *m = lethe_ctx_model(c);
    trace t;
    trace_make(m, TIM_TRACE, &t);
    /* the closing bracket of each list, A..F in opening order */
    static const char *close_key[6] = {"], \"conclusion\": \"C1\"", "], \"conclusion\": \"C11\"", "], \"conclusion\": \"C111\"",
                                       "], \"conclusion\": \"C1111\"", "], \"conclusion\": \"C12\"", "], \"conclusion\": \"C2\""};
    static const int depth[6] = {1, 2, 3, 4, 2, 1};
    long close_step[6];
    for (int k = 0; k < 6; k++) close_step[k] = tok_at(&t, off_of(&t, close_key[k], 0)) + 2; /* BOS first; the clock counts the token */
    /* pruned at the close of list ...: -1 never; A=0 B=1 C=2 D=3 E=4 F=5 */
    static const int when[3][6] = {
        {0, 1, 2, 3, 4, 5},    /* buffer 0: each list at its own closing bracket */
        {5, 4, 1, 2, 0, -1},   /* buffer 1: D at C's, C at B's, B at E's, E at A's, A at F's */
        {-1, 0, 4, 1, 5, -1},  /* buffer 2: D at B's, C at E's, B at A's, E at F's */
    };
    float *lg = malloc(sizeof(float) * V), *fresh = malloc(sizeof(float) * V);
    lethe_token *live = malloc(sizeof *live * (size_t)(t.n + 1));
    char err[512];
    for (int mode = 0; mode < 2; mode++)
        for (int K = 0; K <= 2; K++) {
            lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
            lethe_memory *mem = open_mem(s, "tim", mode ? LETHE_PRUNE_REENCODE : LETHE_PRUNE_SHIFT, K, 0);
            if (!mem) { lethe_seq_free(s); continue; }
            lethe_token bos = 1;
            CHECK(lethe_memory_append(mem, &bos, 1, NULL) == LETHE_OK);
            for (int i = 0; i < t.n; i++) CHECK(lethe_memory_append(mem, &t.ids[i], 1, lg) == LETHE_OK);
            int lists[8], nl = 0, n = lethe_memory_n_spans(mem);
            lethe_span_info sp[64];
            for (int k = 0; k < n && k < 64; k++) {
                lethe_memory_span_get(mem, k, &sp[k]);
                if (sp[k].kind == LETHE_SPAN_SUBTASKS && nl < 8) lists[nl++] = k;
            }
            CHECKF(nl == 6, "buffer %d: %d subtask lists, not 6", K, nl);
            for (int k = 0; k < 6 && k < nl; k++) {
                const lethe_span_info *x = &sp[lists[k]];
                CHECKF(x->depth == depth[k], "list %c depth %d, expected %d", 'A' + k, x->depth, depth[k]);
                CHECKF(x->closed_at == close_step[k], "list %c closed at %ld, expected %ld", 'A' + k, x->closed_at,
                       close_step[k]);
                long want = when[K][k] < 0 ? -1 : close_step[when[K][k]];
                CHECKF(x->pruned_at == want, "buffer %d mode %d: list %c pruned at %ld, expected %ld", K, mode, 'A' + k,
                       x->pruned_at, want);
            }
            /* thoughts and conclusions: gone only with a list that held them */
            int tc = 0;
            for (int k = 0; k < n && k < 64; k++) {
                if (sp[k].kind != LETHE_SPAN_THOUGHT && sp[k].kind != LETHE_SPAN_CONCLUSION) continue;
                tc++;
                if (sp[k].state != LETHE_SPAN_PRUNED) {
                    CHECK(sp[k].p1 > sp[k].p0);
                    continue;
                }
                bool held = false;
                for (int l = 0; l < nl; l++)
                    held |= sp[lists[l]].state == LETHE_SPAN_PRUNED && sp[lists[l]].opened_at <= sp[k].opened_at &&
                            sp[lists[l]].closed_at >= sp[k].closed_at && sp[lists[l]].pruned_at >= sp[k].closed_at;
                CHECKF(held, "a %s span (%d) was pruned outside any pruned list", sp[k].name, k);
            }
            CHECK(tc == 18);
            /* the top-level thoughts and conclusions (T1, C1, T2, C2) survive */
            const char *top[4] = {"\"T1\"", "\"C1\"", "\"T2\"", "\"C2\""};
            for (int q = 0; q < 4; q++) {
                long o = off_of(&t, top[q], 0);
                int ok = 0;
                for (int k = 0; k < n && k < 64; k++)
                    if ((sp[k].kind == LETHE_SPAN_THOUGHT || sp[k].kind == LETHE_SPAN_CONCLUSION) &&
                        sp[k].opened_at == tok_at(&t, o) + 2 && sp[k].state != LETHE_SPAN_PRUNED)
                        ok = 1;
                CHECKF(ok, "buffer %d: top-level %s was pruned", K, top[q]);
            }
            lethe_memory_stats st;
            lethe_memory_get_stats(mem, &st);
            int nlive = lethe_memory_tokens(mem, live, t.n + 1);
            CHECK(nlive == lethe_seq_n_cached(s) && st.slots_held == nlive && st.tokens_appended == t.n + 1);
            printf("tim buffer %d, %s: %d of %d tokens held at the end (peak %d), %d spans pruned, %.1f KiB freed\n", K,
                   mode ? "reencode" : "shift", nlive, t.n + 1, st.slots_peak, st.spans_pruned, st.bytes_freed / 1024.0);
            if (mode == 1) { /* exact: the cache is the surviving tokens' */
                lethe_seq *f = lethe_seq_create(c, NULL, err, sizeof err);
                CHECK(lethe_seq_append(f, live, nlive, fresh) == LETHE_OK);
                double d = tu_max_diff(fresh, lg, V);
                CHECKF(d <= 1e-4, "buffer %d: re-encoded cache differs from its survivors by %.3g", K, d);
                lethe_seq_free(f);
            }
            lethe_memory_free(mem);
            lethe_seq_free(s);
        }
    free(lg);
    free(fresh);
    free(live);
    trace_free(&t);
    tu_close_ctx(c);
}

static void think_rules(const char *path) {
    lethe_ctx *c = open_ctx(path, 512);
    if (!c) return;
    const lethe_model *m = lethe_ctx_model(c);
    trace t;
    trace_make(m, "<think> a b c </think> Answer one. <think> d e </think>\n Bnswer two. <think> f </think> Cnswer three.", &t);
    long start[3] = {tok_at(&t, off_of(&t, "Answer", 0)) + 1, tok_at(&t, off_of(&t, "Bnswer", 0)) + 1,
                     tok_at(&t, off_of(&t, "Cnswer", 0)) + 1};
    char err[512];
    for (int keep = 0; keep <= 1; keep++) {
        lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
        lethe_memory *mem = open_mem(s, "think", LETHE_PRUNE_SHIFT, 0, keep);
        if (!mem) { lethe_seq_free(s); continue; }
        CHECK(lethe_memory_append(mem, t.ids, t.n, NULL) == LETHE_OK); /* a prompt: split at the prunes */
        CHECK(lethe_memory_n_spans(mem) == 3);
        for (int k = 0; k < 3; k++) {
            lethe_span_info si;
            lethe_memory_span_get(mem, k, &si);
            long want = keep == 0 ? start[k] : k < 2 ? start[k + 1] : -1;
            CHECKF(si.kind == LETHE_SPAN_THINK && si.closed_at == start[k], "think %d closed at %ld, expected %ld", k,
                   si.closed_at, start[k]);
            CHECKF(si.pruned_at == want, "keep %d: think block %d pruned at %ld, expected %ld", keep, k, si.pruned_at, want);
        }
        /* what is left: the answers, not the reasoning */
        lethe_token live[256];
        int n = lethe_memory_tokens(mem, live, 256);
        char text[1024];
        int o = 0;
        lethe_detok *d = lethe_detok_create(m, true);
        for (int i = 0; i < n && o < 900; i++) o += lethe_detok_push(d, live[i], text + o, 64);
        text[o] = 0;
        lethe_detok_free(d);
        CHECKF(strstr(text, "Answer one.") && strstr(text, "Cnswer three.") && !strstr(text, " a b c "), "keep %d left '%s'",
               keep, text);
        CHECK(keep == 1 ? strstr(text, " f ") != NULL : strstr(text, "think") == NULL);
        CHECK(lethe_seq_n_cached(s) == n);
        lethe_memory_free(mem);
        lethe_seq_free(s);
    }
    trace_free(&t);
    tu_close_ctx(c);
}

/* ---- refusals and NULLs ---------------------------------------------------- */

static void refusals(const char *path) {
    CHECK(lethe_memory_create(NULL, NULL, NULL, 0) == NULL);
    lethe_memory_free(NULL);
    CHECK(lethe_memory_append(NULL, NULL, 0, NULL) == LETHE_ERR_ARG);
    CHECK(lethe_memory_span_open(NULL, "x", 0) == -1);
    CHECK(lethe_memory_span_close(NULL, 0, 0) == LETHE_ERR_ARG);
    CHECK(lethe_memory_span_prune(NULL, 0, NULL) == LETHE_ERR_ARG);
    CHECK(lethe_memory_n_spans(NULL) == 0);
    lethe_span_info si;
    CHECK(lethe_memory_span_get(NULL, 0, &si) == LETHE_ERR_ARG);
    CHECK(lethe_memory_add_tool(NULL, "x", NULL, NULL) == LETHE_ERR_ARG);
    CHECK(lethe_memory_add_exec_tool(NULL, "x", "cat") == LETHE_ERR_ARG);
    CHECK(lethe_memory_get_stats(NULL, NULL) == LETHE_ERR_ARG);
    CHECK(lethe_memory_error(NULL) != NULL);
    CHECK(lethe_memory_tokens(NULL, NULL, 0) == -1);
    lethe_ctx *c = open_ctx(path, 128);
    if (!c) return;
    char err[512];
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = "window";
    sp.kv.budget = 64;
    lethe_seq *s = lethe_seq_create(c, &sp, err, sizeof err);
    lethe_memory_params p = lethe_memory_default_params();
    lethe_memory *em = lethe_memory_create(s, &p, err, sizeof err); /* evicting: open spans protected (test_memory_policy) */
    CHECKF(em != NULL, "window: %s", err);
    lethe_memory_free(em);
    lethe_seq_free(s);
    sp.kv.reindex = true;
    s = lethe_seq_create(c, &sp, err, sizeof err);
    err[0] = 0;
    CHECK(s && lethe_memory_create(s, &p, err, sizeof err) == NULL && strstr(err, "reindex"));
    lethe_seq_free(s);
    s = lethe_seq_create(c, NULL, err, sizeof err);
    p.rules = "tim,bogus";
    CHECK(lethe_memory_create(s, &p, err, sizeof err) == NULL && strstr(err, "bogus"));
    p.rules = "tim,think,tool";
    p.prune_buffer = -1;
    CHECK(lethe_memory_create(s, &p, err, sizeof err) == NULL);
    p.prune_buffer = 1;
    lethe_memory *m = lethe_memory_create(s, &p, err, sizeof err);
    CHECK(m != NULL);
    lethe_token bad = -5;
    CHECK(lethe_memory_append(m, &bad, 1, NULL) == LETHE_ERR_ARG && lethe_memory_error(m)[0]);
    CHECK(lethe_memory_span_close(m, 3, 0) == LETHE_ERR_ARG);
    CHECK(lethe_memory_span_open(m, "x", 99) == -1);
    CHECK(lethe_memory_span_prune(m, 42, NULL) == LETHE_ERR_ARG);
    lethe_memory_free(m);
    tu_close_ctx(c);
}

/* ---- past the context ------------------------------------------------------ */

static void past_context(const char *path) {
    lethe_ctx *c = open_ctx(path, 512);
    if (!c) return;
    const lethe_model *m = lethe_ctx_model(c);
    /* cycles of a long think block and a short answer */
    size_t cap = 1 << 20, o = 0;
    char *text = malloc(cap);
    for (int k = 0; k < 40; k++) {
        o += (size_t)snprintf(text + o, cap - o, "<think>");
        for (int w = 0; w < 22; w++) o += (size_t)snprintf(text + o, cap - o, " the cat sat on the mat");
        o += (size_t)snprintf(text + o, cap - o, " </think> Tim %d. ", k);
    }
    trace t;
    trace_make(m, text, &t);
    free(text);
    const int n_ctx = lethe_ctx_n_ctx(c);
    CHECKF(t.n >= 10 * n_ctx, "the trace has %d tokens, not 10 x %d", t.n, n_ctx);
    char err[512];
    lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
    lethe_memory *mem = open_mem(s, "think", LETHE_PRUNE_SHIFT, 0, 0);
    float *lg = malloc(sizeof(float) * V);
    int fails = 0;
    for (int i = 0; i < t.n && mem; i++) fails += lethe_memory_append(mem, &t.ids[i], 1, lg) != LETHE_OK;
    CHECKF(fails == 0, "%d steps failed: %s", fails, lethe_memory_error(mem));
    lethe_memory_stats st;
    lethe_memory_get_stats(mem, &st);
    printf("past the context: %ld tokens (%.1f x the context of %d) through at most %d slots, %d blocks pruned, %d held\n",
           st.tokens_appended, (double)st.tokens_appended / n_ctx, n_ctx, st.slots_peak, st.spans_pruned, st.slots_held);
    CHECK(st.tokens_appended == t.n && st.slots_peak < n_ctx && st.spans_pruned == 40);
    CHECK(lethe_seq_n_past(s) < n_ctx);
    lethe_kv_usage u;
    lethe_ctx_kv_usage(c, &u);
    CHECK(u.bytes_peak < u.bytes_total);
    free(lg);
    lethe_memory_free(mem);
    trace_free(&t);
    tu_close_ctx(c);
}

int main(void) {
    const char *stories = tu_require_model("stories260K.gguf");
    exactness(stories, "stories260K");
    const char *syn = tu_optional_model("synthetic/randllama-d256-L2.F16.gguf");
    if (syn) exactness(syn, "synthetic GQA");
    tim_rules(stories);
    think_rules(stories);
    refusals(stories);
    past_context(stories);
    return tu_finish("test_memory");
}
