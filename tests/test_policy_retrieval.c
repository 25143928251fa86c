/* Question-aware policies on recall-1k (a small llama trained for
 * retrieval, ../shared/models/recall): snapkv with the question probe
 * (and its chunked, PyramidKV, inverted-pyramid, retrieval-head and
 * Ada-KV head-adaptive variants) and mixed
 * ranked by the question's votes.
 *  (1) a budget that covers the context: each equals the full cache (bit
 *      for bit on a prompt of one step and its greedy answer; the same
 *      greedy tokens and logits within 1e-4 on a prompt that streams
 *      through in chunks with probes);
 *  (2) a 10% budget: per-stream budgets within the callback's contract
 *      (whole pages or the plain budget, their sum within n_streams x
 *      budget), every stream within its budget after every step (with
 *      Ada-KV: a layer's streams within its budgets' pages, each within its
 *      cap, and the heads' shares moving), and the pool's peak pages (which sees the probe rows inside a step) within
 *      the pages of those budgets;
 *  (3) snapkv (probe, pool 15, inverted pyramid) with Q8_0 pages under a
 *      byte budget of 10% of the full F16 cache's bytes at 1024 tokens
 *      (every RAM byte counted) keeps at least 95% of the full cache's
 *      pass-key accuracy on 40 seeded cases of the harness (`lethe eval
 *      passkey`) with a seed the configuration was not chosen on; with
 *      Q4_0 pages (token selection combined with 4-bit storage) at 5.6%
 *      at least 90% (issue 12's bars). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lethe.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "testutil.h"

typedef struct {
    const char *label, *policy;
    int votes, alloc;
    float ratio;
    bool question, ada;
} config;

static const config CONFIGS[] = {
    {"snapkv probe", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_UNIFORM, 0, false, false},
    {"snapkv chunk", "snapkv", LETHE_SNAP_CHUNK, LETHE_SNAP_UNIFORM, 0, false, false},
    {"snapkv pyramid", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_PYRAMID, 3.0f, false, false},
    {"snapkv inverted pyramid", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_PYRAMID, 0.33f, false, false},
    {"snapkv retrieval heads", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_RETRIEVAL, 0, false, false},
    {"mixed question", "mixed", LETHE_SNAP_PROBE, LETHE_SNAP_UNIFORM, 0, true, false},
    {"snapkv ada", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_UNIFORM, 0, false, true},
    {"snapkv ada inverted pyramid", "snapkv", LETHE_SNAP_PROBE, LETHE_SNAP_PYRAMID, 0.33f, false, true},
};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof CONFIGS[0]))

static lethe_seq *open_config(lethe_ctx *c, const config *k, int budget, int pool) {
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = k->policy;
    sp.kv.budget = budget;
    sp.kv.snap_votes = k->votes;
    sp.kv.snap_alloc = k->alloc;
    sp.kv.pyramid_ratio = k->ratio;
    sp.kv.mixed_question = k->question;
    sp.kv.snap_ada = k->ada;
    if (pool > 0) sp.kv.pool_kernel = pool;
    char err[512];
    lethe_seq *s = lethe_seq_create(c, &sp, err, sizeof err);
    CHECKF(s != NULL, "%s: %s", k->label, err);
    return s;
}

/* A prompt of n tokens of the model's vocabulary (seeded, with repeats, so
 * attention has something to find). */
static void make_prompt(lethe_token *ids, int n, unsigned seed) {
    ids[0] = 1;
    for (int i = 1; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = i > 64 && (seed >> 16) % 4 == 0 ? ids[i - 64] : (lethe_token)(3 + (seed >> 16) % 500);
    }
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy answer of gen tokens after the prompt; logits of every step. */
static bool run_greedy(lethe_seq *s, const lethe_token *ids, int n, int gen, int V, float *logits) {
    if (lethe_seq_append(s, ids, n, logits)) return false;
    for (int g = 1; g < gen; g++) {
        lethe_token t = argmax(logits + (size_t)(g - 1) * V, V);
        if (lethe_seq_decode(s, t, logits + (size_t)g * V)) return false;
    }
    return true;
}

static void test_equal_full(lethe_ctx *c, int V) {
    enum { GEN = 12 };
    static const int lengths[] = {400, 1000};
#ifdef LETHE_TEST_SANITIZED
    const int n_lengths = 1; /* 10x slower: test_budgets_hold runs every config on 1000 tokens in chunks */
#else
    const int n_lengths = 2;
#endif
    lethe_token ids[1000];
    float *ref = malloc((size_t)GEN * V * sizeof *ref), *got = malloc((size_t)GEN * V * sizeof *got);
    CHECK(ref && got);
    for (int li = 0; ref && got && li < n_lengths; li++) {
        const int n = lengths[li];
        make_prompt(ids, n, 7u + (unsigned)li);
        lethe_seq *f = open_config(c, &(config){"full", "full", 0, 0, 0, false, false}, 0, 0);
        CHECK(f && run_greedy(f, ids, n, GEN, V, ref));
        lethe_seq_free(f);
        for (int k = 0; k < N_CONFIGS; k++) {
            lethe_seq *s = open_config(c, &CONFIGS[k], 0, 0);
            if (!s) continue;
            CHECKF(run_greedy(s, ids, n, GEN, V, got), "%s: %s", CONFIGS[k].label, lethe_seq_error(s));
            double d = tu_max_diff(ref, got, GEN * V);
            bool same_tokens = true;
            for (int g = 0; g < GEN; g++) same_tokens &= argmax(ref + (size_t)g * V, V) == argmax(got + (size_t)g * V, V);
            if (n <= 544) CHECKF(d == 0.0, "%s, prompt %d (one step): logits differ from the full cache by %g", CONFIGS[k].label, n, d);
            else CHECKF(d < 1e-4 && same_tokens, "%s, prompt %d (chunks): max logit diff %g, same greedy tokens %d",
                        CONFIGS[k].label, n, d, same_tokens);
            lethe_seq_free(s);
        }
    }
    free(ref);
    free(got);
}

/* Whether the KV heads of some layer hold different numbers of slots. */
static bool heads_differ(const lethe_seq *s, int H) {
    for (int l = 0; l < s->n_streams / H; l++)
        for (int h = 1; h < H; h++)
            if (s->streams[l * H + h].n != s->streams[l * H].n) return true;
    return false;
}

static void test_budgets_hold(lethe_ctx *c, int V) {
    enum { BUDGET = 102, N = 1000, GEN = 24 };
    lethe_token ids[N];
    float *logits = malloc((size_t)V * sizeof *logits);
    CHECK(logits != NULL);
    make_prompt(ids, N, 99u);
    for (int k = 0; logits && k < N_CONFIGS; k++) {
        lethe_seq *s = open_config(c, &CONFIGS[k], BUDGET, 0);
        if (!s) continue;
        /* after creation: the retrieval calibration borrows free pool pages
         * once, before the first token (docs/policies.md) */
        lethe_ctx_kv_reset_peak(c);
        lethe_kv_usage u0;
        lethe_ctx_kv_usage(c, &u0);
        const int P = kv_pool_page_slots(c->kv);
        long sum = 0, pages = 0;
        bool shape = true;
        for (int i = 0; i < s->n_streams; i++) {
            sum += s->budget[i];
            pages += (s->budget[i] + P - 1) / P;
            /* mixed's streams hold its hot share (its cold pages fill the rest of the bytes) */
            shape &= s->budget[i] == BUDGET || s->budget[i] % P == 0 || CONFIGS[k].question;
        }
        CHECKF(sum <= (long)s->n_streams * BUDGET && shape, "%s: stream budgets sum to %ld (at most %d), whole pages %d",
               CONFIGS[k].label, sum, s->n_streams * BUDGET, shape);
        if (CONFIGS[k].alloc != LETHE_SNAP_UNIFORM) {
            bool differ = false;
            for (int i = 1; i < s->n_streams; i++) differ |= s->budget[i] != s->budget[0];
            CHECKF(differ, "%s: the layers' budgets should differ", CONFIGS[k].label);
        }
        CHECK((s->stream_cap != NULL) == CONFIGS[k].ada);
        bool ok = true, moved = false;
        const int H = c->m->hp.n_head_kv;
        lethe_status st = LETHE_OK;
        /* in chunks of 100 tokens, so the shares are seen as they move */
        for (int i = 0; !st && i < N; i += 100) {
            st = lethe_seq_append(s, ids + i, 100, logits);
            moved |= heads_differ(s, H);
        }
        CHECKF(st == LETHE_OK, "%s: %s", CONFIGS[k].label, lethe_seq_error(s));
        for (int g = 0; !st && g <= GEN; g++) {
            if (!CONFIGS[k].ada)
                for (int i = 0; i < s->n_streams; i++) ok &= s->streams[i].n <= s->budget[i];
            for (int l = 0; CONFIGS[k].ada && l < s->n_streams / H; l++) {
                int room = 0, used = 0;
                for (int i = l * H; i < (l + 1) * H; i++) {
                    room += s->budget[i];
                    used += (s->streams[i].n + P - 1) / P * P;
                    ok &= s->streams[i].n <= s->stream_cap[i];
                }
                ok &= used <= room;
            }
            moved |= heads_differ(s, H);
            if (g < GEN) st = lethe_seq_decode(s, argmax(logits, V), logits);
        }
        CHECKF(ok && !st, "%s: a stream held more than its budget (or a step failed: %s)", CONFIGS[k].label, lethe_seq_error(s));
        /* (under the inverted pyramid the heads' shares differ by less than a page here, and whole pages even them out) */
        if (CONFIGS[k].ada && CONFIGS[k].alloc == LETHE_SNAP_UNIFORM) CHECKF(moved, "%s: the KV heads of a layer always held the same number of slots", CONFIGS[k].label);
        lethe_kv_usage u;
        lethe_ctx_kv_usage(c, &u);
        size_t held = u.bytes_peak - u0.bytes_used, allowed = (size_t)pages * kv_pool_page_bytes(c->kv);
        CHECKF(held <= allowed, "%s: the pool's peak grew by %zu bytes, the budgets' pages are %zu", CONFIGS[k].label, held, allowed);
        lethe_seq_free(s);
    }
    free(logits);
}

/* (3) through the CLI: the harness's pass key, lengths 256-1024 */
static double passkey(const char *bin, const char *model, const char *policy_args) {
    char args[1024], out[256], err[256];
    snprintf(out, sizeof out, "test_policy_retrieval.%d.out", (int)getpid());
    snprintf(err, sizeof err, "test_policy_retrieval.%d.err", (int)getpid());
    snprintf(args, sizeof args,
             "eval passkey -m %s --lengths 256,512,768,1024 --depths 0,0.25,0.5,0.75,1 --trials 2 --seed 11 -t 2 %s", model,
             policy_args);
    int rc = tu_run_cli(bin, args, out, err, NULL);
    char *o = tu_read_file(out, NULL);
    const char *p = o ? strstr(o, "passkey overall: ") : NULL;
    double acc = p ? strtod(p + strlen("passkey overall: "), NULL) : NAN;
    CHECKF(rc == 0 && !isnan(acc), "'lethe %s' exited %d", args, rc);
    free(o);
    remove(out);
    remove(err);
    return acc;
}

int main(void) {
    size_t full_bytes = 0; /* the full F16 cache's bytes at 1024 tokens: what the byte budgets are of */
    const char *path = tu_require_model("recall/recall-1k.gguf");
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_threads = 2;
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    CHECKF(c != NULL, "%s", err);
    if (c) {
        lethe_model_info info;
        lethe_model_get_info(lethe_ctx_model(c), &info);
        test_equal_full(c, info.n_vocab);
        test_budgets_hold(c, info.n_vocab);
        full_bytes = (size_t)info.n_layer * info.n_head_kv * 1024 * 2 * 2 * (size_t)info.head_dim; /* F16 K + V */
        tu_close_ctx(c);
    }
    const char *bin = getenv("LETHE_BIN");
#ifdef LETHE_TEST_SANITIZED
    /* the pass-key accuracy runs the same code as above through the CLI;
     * under the sanitizers (10x slower) the plain build holds it */
    printf("pass-key accuracy: checked by the plain build, not under the sanitizers\n");
    (void)passkey;
    if (0) {
#else
    if (!bin || !tu_file_exists(bin)) tu_skip_part("LETHE_BIN not set: the pass-key part runs through ctest");
    else {
#endif
        double full = passkey(bin, path, "--kv-policy full");
        const char *best = "--kv-policy snapkv --kv-pool 15 --kv-snap-alloc pyramid --kv-pyramid-ratio 0.33 --kv-type q8_0";
        char args[512];
        snprintf(args, sizeof args, "%s --kv-budget-bytes %zu", best, full_bytes / 10);
        double at10 = passkey(bin, path, args);
        printf("pass key, 40 cases: full %.2f%%, snapkv (probe, pool 15, inverted pyramid, Q8_0) at 10%% of the bytes "
               "%.2f%%\n", full, at10);
        CHECKF(at10 >= 0.95 * full, "snapkv at 10%% of the bytes: %.2f%% < 95%% of the full cache's %.2f%%", at10, full);
        /* token selection with 4-bit storage: the same policy on Q4_0 pages
         * (Q8_0 pages at 5.6% hold about half the tokens: 70% here) */
        const char *best4 = "--kv-policy snapkv --kv-pool 15 --kv-snap-alloc pyramid --kv-pyramid-ratio 0.33 --kv-type q4_0";
        snprintf(args, sizeof args, "%s --kv-budget-bytes %zu", best4, (size_t)((double)full_bytes * 0.056));
        double at56q4 = passkey(bin, path, args);
        printf("the same on Q4_0 pages at 5.6%% of the bytes: %.2f%%\n", at56q4);
        CHECKF(at56q4 >= 0.90 * full, "snapkv, Q4_0 pages, at 5.6%% of the bytes: %.2f%% < 90%% of the full cache's %.2f%%",
               at56q4, full);
    }
    return tu_finish("test_policy_retrieval");
}
