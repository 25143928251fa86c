/* Structured memory under evicting KV policies: open spans are protected
 * (seq_protect_set), closed spans are ordinary slots (docs/memory.md).
 *
 * - Every evicting policy (window, h2o, tova, snapkv, lazy, knorm, headwise,
 *   quest, mixed) with a small budget (48 slots per stream; mixed 96, whose
 *   hot half is 48; headwise 176, whose small heads get 48), stories260K, a
 *   teacher-forced think trace (a prompt longer than the budget, then think
 *   blocks of ~40 tokens, far longer than the policies' recent windows, and
 *   answers; the think rule prunes each block once its answer starts):
 *   at every step every position of every open span is cached (hot) in
 *   every stream, and no stream holds more than its budget. The same
 *   tokens through a plain sequence (no memory) lose positions of the first
 *   block, so the protection is what keeps them. Shift mode for all, and
 *   re-encode for h2o and mixed.
 * - Empty protection changes nothing: per policy, over the trace's prompt
 *   (no markers), the logits of every step and the cached positions of a
 *   plain run are bit-identical to runs with an explicitly empty set, with
 *   a set covering no cached position, and through a memory (which opens
 *   no span there).
 * - Protected slots beyond the budget: LETHE_ERR_BUDGET with a message that
 *   says so, for a plain sequence (seq_protect_set) and for an open memory
 *   span longer than the budget; nothing was evicted from the span first.
 * - Re-indexed windows are still refused by lethe_memory_create. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "testutil.h"

static int V;

static const char *const POLICIES[] = {"window", "h2o", "tova", "snapkv", "lazy", "knorm", "headwise", "quest", "mixed"};
#define N_POLICIES ((int)(sizeof POLICIES / sizeof POLICIES[0]))

static int budget_for(const char *name) {
    if (!strcmp(name, "mixed")) return 96;     /* hot_fraction 0.5: 48 hot */
    if (!strcmp(name, "headwise")) return 176; /* the small heads get sink + window = 48 */
    return 48;
}

static lethe_ctx *open_ctx(const char *path) {
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.kv_type = LETHE_KV_F32;
    cp.n_ctx = 512;
    cp.n_seq_max = 4;
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

static lethe_seq *open_seq(lethe_ctx *c, const char *policy, int budget) {
    char err[512];
    lethe_seq *s = tu_open_seq(c, policy, budget, err, sizeof err);
    CHECKF(s != NULL, "%s: %s", policy, err);
    return s;
}

static lethe_memory *open_mem_mode(lethe_seq *s, const char *rules, lethe_prune_mode mode) {
    lethe_memory_params p = lethe_memory_default_params();
    p.rules = rules;
    p.mode = mode;
    p.think_keep = 0;
    char err[512];
    lethe_memory *m = lethe_memory_create(s, &p, err, sizeof err);
    CHECKF(m != NULL, "memory: %s", err);
    return m;
}

static lethe_memory *open_mem(lethe_seq *s, const char *rules) { return open_mem_mode(s, rules, LETHE_PRUNE_SHIFT); }

/* Whether every stream of s holds position pos in its hot tier. */
static bool cached_everywhere(const lethe_seq *s, int pos) {
    for (int i = 0; i < s->n_streams; i++) {
        const kv_stream *st = &s->streams[i];
        bool found = false;
        for (int j = 0; j < st->n && !found; j++) found = st->pos[j] == pos;
        if (!found) return false;
    }
    return true;
}

static bool within_budget(const lethe_seq *s) {
    for (int i = 0; i < s->n_streams; i++)
        if (s->streams[i].n > s->budget[i]) return false;
    return true;
}

static int tokenize(const lethe_model *m, const char *text, lethe_token **out) {
    int n = lethe_tokenize(m, text, strlen(text), NULL, 0, false, false);
    *out = malloc(sizeof **out * (size_t)(n > 0 ? n : 1));
    return lethe_tokenize(m, text, strlen(text), *out, n, false, false);
}

/* A prompt longer than every budget (no markers in it), then think blocks
 * and answers. */
static char *think_trace(void) {
    size_t cap = 1 << 16, o = 0;
    char *t = malloc(cap);
    for (int k = 0; k < 20; k++) o += (size_t)snprintf(t + o, cap - o, "Once upon a time there was a little dog. ");
    for (int b = 0; b < 2; b++) {
        o += (size_t)snprintf(t + o, cap - o, "<think>");
        for (int w = 0; w < 3; w++) o += (size_t)snprintf(t + o, cap - o, " the cat sat on a mat");
        o += (size_t)snprintf(t + o, cap - o, " the cat sat"); /* 45 tokens in all: just inside the budget of 48 */
        o += (size_t)snprintf(t + o, cap - o, " </think> The answer %d is that the dog was happy and ran home. ", b);
    }
    return t;
}

/* ---- open spans survive every evicting policy ------------------------------ */

static void open_spans_kept(lethe_ctx *c) {
    const lethe_model *m = lethe_ctx_model(c);
    char *text = think_trace();
    lethe_token *ids;
    const int n = tokenize(m, text, &ids);
    free(text);
    float *lg = malloc(sizeof(float) * V);
    /* every policy in shift mode, then two of them in re-encode mode (the
     * re-run after a prune goes through the policy with the new positions) */
    for (int run = 0; run < N_POLICIES + 2; run++) {
        const int pi = run < N_POLICIES ? run : run == N_POLICIES ? 1 /* h2o */ : N_POLICIES - 1 /* mixed */;
        const lethe_prune_mode mode = run < N_POLICIES ? LETHE_PRUNE_SHIFT : LETHE_PRUNE_REENCODE;
        const char *name = POLICIES[pi];
        const int budget = budget_for(name);
        CHECKF(n > budget + 60, "the trace has %d tokens, the budget %d", n, budget);
        lethe_seq *s = open_seq(c, name, budget);
        lethe_memory *mem = s ? open_mem_mode(s, "think", mode) : NULL;
        if (!mem) {
            lethe_seq_free(s);
            continue;
        }
        int fails = 0, bad_step = -1, longest = 0, first_p0 = -1, first_p1 = -1, prunes = 0;
        bool over_budget = false;
        for (int i = 0; i < n; i++) {
            if (lethe_memory_append(mem, &ids[i], 1, lg) != LETHE_OK) {
                if (!fails++) printf("%s: step %d: %s\n", name, i, lethe_memory_error(mem));
                continue;
            }
            over_budget |= !within_budget(s);
            for (int k = 0; k < lethe_memory_n_spans(mem); k++) {
                lethe_span_info si;
                lethe_memory_span_get(mem, k, &si);
                if (si.state == LETHE_SPAN_PRUNED) continue;
                if (k == 0 && si.state == LETHE_SPAN_OPEN) first_p0 = si.p0, first_p1 = si.p1;
                if (si.state != LETHE_SPAN_OPEN) continue;
                if (si.p1 - si.p0 > longest) longest = si.p1 - si.p0;
                for (int p = si.p0; p < si.p1; p++)
                    if (!cached_everywhere(s, p) && bad_step < 0) {
                        bad_step = i;
                        printf("%s: step %d: position %d of open span %d [%d, %d) is not cached\n", name, i, p, k,
                               si.p0, si.p1);
                    }
            }
        }
        lethe_memory_stats st;
        lethe_memory_get_stats(mem, &st);
        prunes = st.spans_pruned;
        const int window = policy_window_for(&s->policy->params, budget);
        printf("%s, %s (budget %d, window %d): %d tokens, longest open span %d, %d blocks pruned, %d slots held (peak %d)\n",
               name, mode ? "reencode" : "shift", budget, window, n, longest, prunes, st.slots_held, st.slots_peak);
        CHECKF(fails == 0, "%s: %d steps failed", name, fails);
        CHECKF(bad_step < 0, "%s: an open span lost a slot at step %d", name, bad_step);
        CHECKF(!over_budget, "%s: a stream went over its budget", name);
        CHECKF((longest > window || !strcmp(name, "headwise")) && longest >= 40 && longest < 48, "%s: longest open span %d (window %d)", name, longest,
               window);
        CHECKF(prunes == 2, "%s: %d think blocks pruned, not 2", name, prunes);
        lethe_memory_free(mem);
        /* once the memory is gone, nothing is protected */
        CHECK(s->n_protect == 0);
        lethe_seq_free(s);

        /* the same tokens without a memory: the first block's open span is
         * not kept whole (the protection is what kept it) */
        if (first_p0 < 0 || mode != LETHE_PRUNE_SHIFT) continue;
        s = open_seq(c, name, budget);
        if (!s) continue;
        bool lost = false;
        const int first_end = first_p1 - 1; /* its last token: the block is still open there */
        for (int i = 0; i <= first_end && i < n; i++) {
            CHECK(lethe_seq_append(s, &ids[i], 1, lg) == LETHE_OK);
            for (int p = first_p0; p <= i && !lost; p++) lost = !cached_everywhere(s, p);
        }
        printf("%s without protection: the first block [%d, %d) %s\n", name, first_p0, first_p1,
               lost ? "lost slots" : "stayed whole");
        CHECKF(lost, "%s: without protection the first block still stayed whole: the test does not exercise eviction", name);
        lethe_seq_free(s);
    }
    free(lg);
    free(ids);
}

/* ---- empty protection is no change ----------------------------------------- */

enum { PLAIN, EMPTY_SET, FAR_SET, MEMORY, N_RUNS };

static void no_protection_identical(lethe_ctx *c) {
    const lethe_model *m = lethe_ctx_model(c);
    char *text = think_trace();
    *strstr(text, "<think>") = 0; /* the prompt only: a memory without rules still records think spans */
    lethe_token *ids;
    int n = tokenize(m, text, &ids);
    free(text);
    float *lg[N_RUNS];
    for (int r = 0; r < N_RUNS; r++) lg[r] = malloc(sizeof(float) * V);
    for (int pi = 0; pi < N_POLICIES; pi++) {
        const char *name = POLICIES[pi];
        const int budget = budget_for(name);
        lethe_seq *s[N_RUNS];
        lethe_memory *mem = NULL;
        bool ok = true;
        for (int r = 0; r < N_RUNS; r++) ok &= (s[r] = open_seq(c, name, budget)) != NULL;
        if (ok) {
            CHECK(seq_protect_set(s[EMPTY_SET], NULL, 0) == LETHE_OK);
            const int far[4] = {100000, 200000, 300000, 300000}; /* one range beyond every position, one empty */
            CHECK(seq_protect_set(s[FAR_SET], far, 2) == LETHE_OK && s[FAR_SET]->n_protect == 1);
            mem = open_mem(s[MEMORY], NULL); /* no rules, no spans */
            ok = mem != NULL;
        }
        int diff_step = -1;
        for (int i = 0; i < n && ok; i++) {
            for (int r = 0; r < N_RUNS; r++) {
                lethe_status st = r == MEMORY ? lethe_memory_append(mem, &ids[i], 1, lg[r]) : lethe_seq_append(s[r], &ids[i], 1, lg[r]);
                CHECKF(st == LETHE_OK, "%s run %d step %d", name, r, i);
                ok &= st == LETHE_OK;
            }
            CHECK(!mem || lethe_memory_n_spans(mem) == 0);
            for (int r = 1; r < N_RUNS && diff_step < 0; r++) {
                bool same = !memcmp(lg[PLAIN], lg[r], sizeof(float) * (size_t)V);
                for (int k = 0; k < s[PLAIN]->n_streams && same; k++) {
                    const kv_stream *a = &s[PLAIN]->streams[k], *b = &s[r]->streams[k];
                    same = a->n == b->n && !memcmp(a->pos, b->pos, sizeof *a->pos * (size_t)a->n);
                }
                if (!same) {
                    diff_step = i;
                    printf("%s: run %d differs from the plain run at step %d\n", name, r, i);
                }
            }
        }
        CHECKF(diff_step < 0, "%s: an empty protection set changed the results", name);
        printf("%s: %d steps bit-identical with empty / far / memory-without-spans protection (%d slots cached)\n", name, n,
               ok ? lethe_seq_n_cached(s[PLAIN]) : -1);
        lethe_memory_free(mem);
        for (int r = 0; r < N_RUNS; r++) lethe_seq_free(s[r]);
    }
    for (int r = 0; r < N_RUNS; r++) free(lg[r]);
    free(ids);
}

/* ---- protected slots past the budget ---------------------------------------- */

static void over_budget(lethe_ctx *c) {
    lethe_token t[80];
    for (int i = 0; i < 80; i++) t[i] = 1 + (i * 37 + 11) % 400;
    float *lg = malloc(sizeof(float) * V);
    /* a plain sequence: positions [0, 100) protected, budget 48 */
    lethe_seq *s = open_seq(c, "h2o", 48);
    if (s) {
        const int r[2] = {0, 100};
        CHECK(seq_protect_set(s, r, 1) == LETHE_OK);
        CHECK(lethe_seq_max_batch(s) == 24);
        int i = 0;
        lethe_status st = LETHE_OK;
        for (; i < 80 && !st; i++) st = lethe_seq_append(s, &t[i], 1, lg);
        CHECKF(st == LETHE_ERR_BUDGET && i == 49, "appended %d tokens, status %s", i, lethe_status_name(st));
        printf("48 protected slots, one more token: %s\n", lethe_seq_error(s));
        CHECK(strstr(lethe_seq_error(s), "protected") != NULL && strstr(lethe_seq_error(s), "budget") != NULL);
        CHECK(lethe_seq_n_cached(s) == 48 && within_budget(s));
        for (int p = 0; p < 48; p++) CHECK(cached_everywhere(s, p));
        /* a chunk gets the room the protected slots leave */
        lethe_seq_truncate(s, 40);
        CHECK(lethe_seq_max_batch(s) == 8);
        CHECK(lethe_seq_append(s, t, 8, lg) == LETHE_OK && lethe_seq_n_cached(s) == 48);
        /* lifting the protection lets the policy evict again */
        CHECK(seq_protect_set(s, NULL, 0) == LETHE_OK && s->n_protect == 0);
        CHECK(lethe_seq_append(s, t, 20, lg) == LETHE_OK && within_budget(s));
        lethe_seq_free(s);
    }
    /* the set is sorted and merged; bad ranges leave it as it was */
    s = open_seq(c, "window", 48);
    if (s) {
        const int r[12] = {50, 60, 10, 20, 15, 30, 5, 5, 30, 31, 70, 80};
        CHECK(seq_protect_set(s, r, 6) == LETHE_OK && s->n_protect == 3);
        CHECK(s->protect[0] == 10 && s->protect[1] == 31 && s->protect[2] == 50 && s->protect[3] == 60 &&
              s->protect[4] == 70 && s->protect[5] == 80);
        CHECK(seq_protected(s, 10) && seq_protected(s, 30) && !seq_protected(s, 31) && !seq_protected(s, 9) &&
              seq_protected(s, 79) && !seq_protected(s, 80) && !seq_protected(s, 5));
        int many[20];
        for (int k = 0; k < 10; k++) many[2 * k] = 10 * k, many[2 * k + 1] = 10 * k + 5; /* past the inline room */
        CHECK(seq_protect_set(s, many, 10) == LETHE_OK && s->n_protect == 10 && seq_protected(s, 93) && !seq_protected(s, 95));
        const int bad[2] = {-3, 4};
        CHECK(seq_protect_set(s, bad, 1) == LETHE_ERR_ARG && s->n_protect == 10);
        CHECK(seq_protect_set(s, NULL, 2) == LETHE_ERR_ARG && seq_protect_set(s, NULL, 0) == LETHE_OK && s->n_protect == 0);
        lethe_seq_free(s);
    }
    /* an open memory span longer than the budget */
    const char *pols[2] = {"window", "quest"};
    for (int k = 0; k < 2; k++) {
        s = open_seq(c, pols[k], 48);
        lethe_memory *mem = s ? open_mem(s, NULL) : NULL;
        if (!mem) {
            lethe_seq_free(s);
            continue;
        }
        CHECK(lethe_memory_append(mem, t, 30, NULL) == LETHE_OK); /* evicts nothing yet */
        int id = lethe_memory_span_open(mem, "long", -1);
        CHECK(id == 0 && s->n_protect == 1 && s->protect[0] == 30);
        lethe_status st = LETHE_OK;
        int i = 30;
        for (; i < 80 && !st; i++) st = lethe_memory_append(mem, &t[i], 1, lg);
        printf("%s: token %d of an open span, budget 48: %s\n", pols[k], i - 30, lethe_memory_error(mem));
        CHECKF(st == LETHE_ERR_BUDGET && strstr(lethe_memory_error(mem), "protected"), "%s: %s", pols[k],
               lethe_memory_error(mem));
        CHECK(i == 30 + 49); /* 48 protected slots fit, the 49th does not */
        for (int p = 30; p < 30 + 48; p++) CHECK(cached_everywhere(s, p));
        CHECK(within_budget(s));
        /* closing the span makes its slots ordinary: the policy may evict them */
        CHECK(lethe_memory_span_close(mem, id, -1) == LETHE_OK && s->n_protect == 0);
        lethe_memory_free(mem);
        lethe_seq_free(s);
    }
    /* a prompt that overflows an open span in one append (several chunks) */
    s = open_seq(c, "h2o", 48);
    lethe_memory *mem = s ? open_mem(s, NULL) : NULL;
    if (mem) {
        CHECK(lethe_memory_append(mem, t, 20, NULL) == LETHE_OK);
        CHECK(lethe_memory_span_open(mem, "prompt", -1) == 0);
        CHECK(lethe_memory_append(mem, t + 20, 40, lg) == LETHE_OK); /* 40 protected: fits, in chunks */
        CHECK(lethe_seq_n_cached(s) <= 48 && within_budget(s));
        for (int p = 20; p < 60; p++) CHECK(cached_everywhere(s, p));
        lethe_status st = lethe_memory_append(mem, t + 60, 20, lg);
        printf("40 protected, then 20 more in one append: %s: %s\n", lethe_status_name(st), lethe_memory_error(mem));
        CHECK(st == LETHE_ERR_BUDGET && strstr(lethe_memory_error(mem), "protected") && within_budget(s));
        for (int p = 20; p < 60; p++) CHECK(cached_everywhere(s, p));
    }
    lethe_memory_free(mem);
    lethe_seq_free(s);
    /* re-indexed windows stay refused */
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = "window";
    sp.kv.budget = 48;
    sp.kv.reindex = true;
    char err[512];
    s = lethe_seq_create(c, &sp, err, sizeof err);
    CHECK(s != NULL);
    if (s) {
        lethe_memory_params p = lethe_memory_default_params();
        err[0] = 0;
        CHECK(lethe_memory_create(s, &p, err, sizeof err) == NULL && strstr(err, "reindex"));
        lethe_seq_free(s);
    }
    free(lg);
}

int main(void) {
    const char *stories = tu_require_model("stories260K.gguf");
    lethe_ctx *c = open_ctx(stories);
    if (c) {
        open_spans_kept(c);
        no_protection_identical(c);
        over_budget(c);
        tu_close_ctx(c);
    }
    return tu_finish("test_memory_policy");
}
