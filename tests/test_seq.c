/* Sequences on one engine instance: a fork shares its parent's cached pages
 * (counted once in the pool), produces exactly the tokens a fresh sequence
 * with the same prompt produces, and diverging copies only what it writes.
 * Also: context overflow is a clean LETHE_ERR_BUDGET, not a crash. */
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy continuation of a sequence whose last logits are in `logits`. */
static void continue_greedy(lethe_seq *s, float *logits, int n_vocab, int *out, int n) {
    for (int i = 0; i < n; i++) {
        out[i] = argmax(logits, n_vocab);
        CHECK(lethe_seq_decode(s, out[i], logits) == LETHE_OK);
    }
}

static void run(lethe_kv_type kv) {
    const char *path = tu_require_model("stories260K.gguf");
    lethe_ctx_params p = lethe_ctx_default_params();
    p.kv_type = kv;
    p.n_ctx = 256;
    p.n_seq_max = 3;
    p.n_threads = 2;
    p.kv_page_slots = 16;
    char err[512];
    lethe_ctx *m = tu_open_ctx(path, &p, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    lethe_model_info info;
    lethe_model_get_info(lethe_ctx_model(m), &info);
    const int V = info.n_vocab, n_streams = info.n_layer * info.n_head_kv;

    const char *prompt = "Lily and Ben went to the park. They saw a big dog";
    int ids[64];
    int n = lethe_tokenize(lethe_ctx_model(m), prompt, strlen(prompt), ids, 64, true, false);
    CHECK(n > 16 && n < 32); /* ends inside the second page: fork shares a partial page */

    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V), *lc = malloc(sizeof(float) * V);
    lethe_seq *a = lethe_seq_create(m, NULL, err, sizeof err);
    CHECK(lethe_seq_append(a, ids, n, la) == LETHE_OK);
    lethe_kv_usage u0, u1, u2;
    lethe_ctx_kv_usage(m, &u0);
    CHECK(u0.bytes_used == (size_t)n_streams * 2 * u0.page_bytes); /* two pages per stream */

    lethe_seq *b = lethe_seq_fork(a, err, sizeof err);
    CHECK(b != NULL && lethe_seq_n_past(b) == n);
    lethe_ctx_kv_usage(m, &u1);
    CHECKF(u1.bytes_used == u0.bytes_used, "fork adds no pages (%zu -> %zu bytes)", u0.bytes_used, u1.bytes_used);
    memcpy(lb, la, sizeof(float) * V);

    int ta[40], tb[40], tc[40];
    continue_greedy(a, la, V, ta, 40);
    continue_greedy(b, lb, V, tb, 40);
    lethe_seq *c = lethe_seq_create(m, NULL, err, sizeof err);
    CHECK(lethe_seq_append(c, ids, n, lc) == LETHE_OK);
    continue_greedy(c, lc, V, tc, 40);
    CHECK(memcmp(ta, tc, sizeof ta) == 0);
    CHECK(memcmp(tb, tc, sizeof tb) == 0);

    /* a and b now each own their tail; the first (full) page stays shared */
    lethe_ctx_kv_usage(m, &u2);
    size_t pages = u2.bytes_used / u2.page_bytes;
    size_t own_tail = (size_t)((n + 40 + 15) / 16 - 1); /* pages after the shared first one */
    CHECKF(pages == (size_t)n_streams * (1 + 2 * own_tail + (size_t)((n + 40 + 15) / 16)),
           "pages in use %zu (shared first page counted once)", pages);

    /* freeing the parent keeps the fork intact */
    lethe_seq_free(a);
    int tb2[5];
    continue_greedy(b, lb, V, tb2, 5);
    continue_greedy(c, lc, V, tc, 5);
    CHECK(memcmp(tb2, tc, sizeof tb2) == 0);

    /* context overflow is a clean error that leaves the sequence usable */
    lethe_seq_free(b);
    lethe_seq_params sp = lethe_seq_default_params();
    sp.n_ctx = 12;
    lethe_seq *d = lethe_seq_create(m, &sp, err, sizeof err);
    CHECK(lethe_seq_append(d, ids, n, la) == LETHE_ERR_BUDGET && strlen(lethe_seq_error(d)) > 0);
    CHECK(lethe_seq_append(d, ids, 10, la) == LETHE_OK && lethe_seq_n_past(d) == 10);
    int bad = 99999;
    CHECK(lethe_seq_append(d, &bad, 1, la) == LETHE_ERR_ARG);
    lethe_seq_free(d);
    lethe_seq_free(c);
    free(la);
    free(lb);
    free(lc);
    tu_close_ctx(m);
}

/* A fork of a sequence whose policy has evicted (and, for quest and mixed,
 * demoted to the cold tier) continues exactly like its parent. */
static void fork_under_budget(const char *policy) {
    const char *path = tu_require_model("stories260K.gguf");
    lethe_ctx_params p = lethe_ctx_default_params();
    p.kv_type = LETHE_KV_F32;
    p.n_ctx = 512;
    p.n_seq_max = 2;
    p.n_threads = 2;
    char err[512];
    lethe_ctx *m = tu_open_ctx(path, &p, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    lethe_model_info info;
    lethe_model_get_info(lethe_ctx_model(m), &info);
    const int V = info.n_vocab;
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = policy;
    sp.kv.budget = 96;
    lethe_seq *a = lethe_seq_create(m, &sp, err, sizeof err);
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    int ids[64];
    const char *prompt = "Once upon a time";
    int n = lethe_tokenize(lethe_ctx_model(m), prompt, strlen(prompt), ids, 64, true, false);
    CHECK(a && lethe_seq_append(a, ids, n, la) == LETHE_OK);
    int warm[200];
    continue_greedy(a, la, V, warm, 200); /* past the budget: evictions happened */
    lethe_kv_usage u;
    lethe_ctx_kv_usage(m, &u);
    lethe_seq *b = lethe_seq_fork(a, err, sizeof err);
    CHECKF(b != NULL, "%s fork: %s", policy, err);
    memcpy(lb, la, sizeof(float) * V);
    int ta[40], tb[40];
    continue_greedy(a, la, V, ta, 40);
    if (b) continue_greedy(b, lb, V, tb, 40);
    CHECKF(b && memcmp(ta, tb, sizeof ta) == 0, "%s: a fork continues like its parent", policy);
    if (!strcmp(policy, "quest")) CHECK(u.cold_bytes > 0);
    lethe_seq_free(b);
    lethe_seq_free(a);
    free(la);
    free(lb);
    tu_close_ctx(m);
}

int main(void) {
    fork_under_budget("h2o");
    fork_under_budget("quest");
    fork_under_budget("mixed");
    run(LETHE_KV_F32);
    run(LETHE_KV_F16);
    return tu_finish("test_seq");
}
