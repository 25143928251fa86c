/* Honest bytes and quest's cold storage on recall-1k (a small llama that
 * retrieves; head_dim 64, 2 KV heads, context 1088):
 *  (1) with a budget covering the context every policy (with a cold tier:
 *      every cold storage) gives the full cache's logits bit for bit, also
 *      when the budget is given in bytes;
 *  (2) quest attending every cold page equals the full cache within its
 *      quantisation bound, and its disk tiers equal its RAM tiers exactly;
 *  (3) under a byte budget of 10% of the full cache's bytes no step of any
 *      policy holds more RAM than the budget, a step that would is refused
 *      with LETHE_ERR_BUDGET and changes nothing, and a disk tier that
 *      cannot be written fails cleanly;
 *  (4) at that budget the best policy keeps at least 95% of the full
 *      cache's pass-key accuracy on the harness's seeded cases. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "eval/eval.h"
#include "lethe.h"
#include "policy/policy.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "util/alloc.h"
#include "testutil.h"

#define N_PROMPT 400
#define N_GEN 12

static const char *const COLD_KINDS[] = {"q8_0", "q4", "disk-q8_0", "disk-q4"};

static lethe_ctx *ctx;
static int n_vocab;
static lethe_token prompt[N_PROMPT], gen[N_GEN];
static size_t full_bytes; /* the full cache's bytes at 1024 tokens: what the percentages are of */

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static const char *calib_path; /* headwise's calibration file, when set */

static lethe_seq *open_seq(const char *policy, int budget, size_t bytes, const char *cold, int quest_pages, char *err) {
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.calib_path = calib_path;
    sp.kv.name = policy;
    sp.kv.budget = budget;
    sp.kv.budget_bytes = bytes;
    sp.kv.cold = cold;
    sp.kv.quest_pages = quest_pages;
    return lethe_seq_create(ctx, &sp, err, 512);
}

/* The prompt, then N_GEN teacher-forced tokens (the full cache's greedy
 * ones): logits of every step into out ((1 + N_GEN) x n_vocab). */
static bool run(lethe_seq *s, float *out) {
    if (lethe_seq_append(s, prompt, N_PROMPT, out) != LETHE_OK) return false;
    for (int i = 0; i < N_GEN; i++)
        if (lethe_seq_decode(s, gen[i], out + (size_t)(i + 1) * n_vocab) != LETHE_OK) return false;
    return true;
}

static void test_full_budget(const float *ref) {
    const size_t n = (size_t)(1 + N_GEN) * n_vocab;
    float *out = malloc(n * sizeof *out);
    char err[512];
    for (const kv_policy_ops *const *ops = policy_list(); *ops; ops++) {
        if ((*ops)->budgets) continue; /* per-head budgets redistribute even here (headwise): test_eval covers it */
        const int n_kinds = (*ops)->cold_pages ? 4 : 1;
        for (int k = 0; k < n_kinds; k++) {
            for (int by_bytes = 0; by_bytes < 2; by_bytes++) {
                const char *cold = (*ops)->cold_pages ? COLD_KINDS[k] : NULL;
                lethe_seq *s = open_seq((*ops)->name, by_bytes ? 0 : 1088, by_bytes ? 4 * full_bytes : 0, cold, 0, err);
                if (!CHECKF(s != NULL, "%s %s: %s", (*ops)->name, cold ? cold : "", err)) continue;
                bool ok = run(s, out);
                CHECKF(ok, "%s: %s", (*ops)->name, lethe_seq_error(s));
                CHECKF(ok && memcmp(out, ref, n * sizeof *out) == 0,
                       "%s%s%s with a budget covering the context (%s) equals the full cache bit for bit (max diff %g)",
                       (*ops)->name, cold ? " " : "", cold ? cold : "", by_bytes ? "in bytes" : "in slots",
                       tu_max_diff(out, ref, (int)n));
                lethe_seq_free(s);
            }
        }
    }
    free(out);
}

/* quest with a hot tier of 64 slots attending every cold page: the cold
 * keys and values are quantised, so the logits move by about what that
 * rounding does to the attention. The bounds are the measured maxima
 * (Q8_0 0.0079, Q4 0.131 over these 13 steps) with a margin of 3-4x; the greedy
 * tokens of Q8_0 are the full cache's. Disk tiers hold the same blocks as
 * RAM tiers, so their logits are equal bit for bit. */
static void test_all_pages(const float *ref) {
    const size_t n = (size_t)(1 + N_GEN) * n_vocab;
    float *out[4];
    const double bound[4] = {0.03, 0.4, 0.03, 0.4};
    char err[512];
    for (int k = 0; k < 4; k++) {
        out[k] = malloc(n * sizeof *out[k]);
        lethe_seq *s = open_seq("quest", 64, 0, COLD_KINDS[k], 1088 / 32 + 1, err);
        if (!CHECKF(s != NULL, "quest %s: %s", COLD_KINDS[k], err)) continue;
        bool ok = run(s, out[k]);
        CHECKF(ok, "quest %s: %s", COLD_KINDS[k], lethe_seq_error(s));
        double d = tu_max_diff(out[k], ref, (int)n);
        int same = 0;
        for (int i = 0; i < 1 + N_GEN; i++)
            same += argmax(out[k] + (size_t)i * n_vocab, n_vocab) == argmax(ref + (size_t)i * n_vocab, n_vocab);
        printf("quest %-9s every page: max |d logit| %.4g (bound %g), greedy %d/%d the full cache's\n", COLD_KINDS[k], d,
               bound[k], same, 1 + N_GEN);
        CHECKF(ok && d <= bound[k], "quest %s attending every page: max |d logit| %g > %g", COLD_KINDS[k], d, bound[k]);
        if (k == 0) CHECKF(same == 1 + N_GEN, "quest q8_0 every page: greedy tokens %d/%d", same, 1 + N_GEN);
        lethe_seq_bytes b;
        lethe_seq_get_bytes(s, &b);
        if (k >= 2) CHECKF(b.disk_bytes > 0 && b.disk_read_bytes > 0, "quest %s reports its disk bytes and reads", COLD_KINDS[k]);
        else CHECKF(b.disk_bytes == 0 && b.disk_read_bytes == 0, "quest %s holds nothing on disk", COLD_KINDS[k]);
        /* a fork copies the cold tier (into a file of its own on disk): the
         * next step of both is the same, bit for bit */
        lethe_seq *f = lethe_seq_fork(s, err, sizeof err);
        if (CHECKF(f != NULL, "fork of quest %s: %s", COLD_KINDS[k], err)) {
            float *a = malloc((size_t)n_vocab * sizeof *a), *c = malloc((size_t)n_vocab * sizeof *c);
            CHECK(lethe_seq_decode(s, gen[0], a) == LETHE_OK && lethe_seq_decode(f, gen[0], c) == LETHE_OK);
            CHECKF(memcmp(a, c, (size_t)n_vocab * sizeof *a) == 0, "quest %s: fork and parent agree", COLD_KINDS[k]);
            free(a);
            free(c);
            lethe_seq_free(f);
        }
        lethe_seq_free(s);
    }
    for (int k = 2; k < 4; k++)
        CHECKF(memcmp(out[k], out[k - 2], n * sizeof *out[k]) == 0, "quest %s equals %s bit for bit", COLD_KINDS[k],
               COLD_KINDS[k - 2]);
    for (int k = 0; k < 4; k++) free(out[k]);
}

/* Streams 480 prompt tokens (chunks of 8) and 32 decode steps through every policy (and
 * cold storage) at 10% of the full cache's bytes: after every call the
 * RAM held, and its peak, are within the budget; and what the sequence
 * really allocates (counted by util/alloc's tracker from its creation to
 * its end, at its peak) is never more than what its accounting says it
 * holds beside the pool's pages (the pool is the context's, allocated
 * before). headwise reads its calibration from a file made beforehand:
 * measuring it runs a full-cache sequence of its own, before the budget
 * applies. */
static void test_never_exceeds(void) {
    const size_t budget = full_bytes / 10;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    char err[512], calib[64];
    snprintf(calib, sizeof calib, "test_quest_bytes.%d.calib", (int)getpid());
    int tested = 0;
    for (const kv_policy_ops *const *ops = policy_list(); *ops; ops++) {
        if (!(*ops)->may_evict) continue;
        calib_path = (*ops)->needs_calibration ? calib : NULL;
        if (calib_path) lethe_seq_free(open_seq((*ops)->name, 0, budget, NULL, 0, err)); /* writes the file */
        const int n_kinds = (*ops)->cold_pages ? 4 : 1;
        for (int k = 0; k < n_kinds; k++) {
            const char *cold = (*ops)->cold_pages ? COLD_KINDS[k] : NULL;
            CHECK(lt_alloc_track(1) == 0);
            lethe_seq *s = open_seq((*ops)->name, 0, budget, cold, 0, err);
            if (!s) { /* too small for even a page per stream: said so */
                CHECKF(strstr(err, "byte budget") != NULL, "%s %s: %s", (*ops)->name, cold ? cold : "", err);
                printf("%s %s: %s\n", (*ops)->name, cold ? cold : "", err);
                continue;
            }
            tested++;
            bool ok = true;
            size_t worst = 0, worst_off_pool = 0;
            lethe_token t = prompt[0];
            for (int i = 0; i < 512 && ok; i += i < 480 ? 8 : 1) { /* prompt chunks of 8, then decode steps */
                lethe_status st = i < 480 ? lethe_seq_append(s, &prompt[i % (N_PROMPT - 8)], 8, logits)
                                          : lethe_seq_decode(s, t, logits);
                ok = CHECKF(st == LETHE_OK, "%s %s step %d: %s", (*ops)->name, cold ? cold : "", i, lethe_seq_error(s));
                t = argmax(logits, n_vocab);
                lethe_seq_bytes b;
                lethe_seq_get_bytes(s, &b);
                if (b.ram_bytes > worst) worst = b.ram_bytes;
                if (b.ram_bytes - b.hot_bytes > worst_off_pool) worst_off_pool = b.ram_bytes - b.hot_bytes;
                if (b.ram_bytes > budget || b.ram_peak > budget) {
                    CHECKF(0, "%s %s step %d holds %zu RAM bytes (peak %zu) > budget %zu", (*ops)->name, cold ? cold : "", i,
                           b.ram_bytes, b.ram_peak, budget);
                    ok = false;
                }
                CHECK(b.ram_bytes == b.hot_bytes + b.cold_bytes + b.staging_bytes + b.state_bytes);
            }
            const size_t real = lt_alloc_peak_bytes();
            printf("%-9s %-9s at %zu bytes: at most %zu held; beside the pool at most %zu counted, %zu allocated\n",
                   (*ops)->name, cold ? cold : "", budget, worst, worst_off_pool, real);
            CHECKF(real <= worst_off_pool, "%s %s allocated %zu bytes at its peak, more than the %zu it counts beside the pool",
                   (*ops)->name, cold ? cold : "", real, worst_off_pool);
            lethe_seq_free(s);
            lt_alloc_track(0);
        }
    }
    lt_alloc_track(0);
    CHECK(tested >= 5);
    calib_path = NULL;
    remove(calib);
    free(logits);
}

/* The runtime check: a step the byte budget cannot hold is refused and
 * changes nothing (the budget is lowered under a running sequence). */
static void test_refused(void) {
    char err[512];
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    lethe_seq *s = open_seq("quest", 0, full_bytes / 10, "disk-q4", 0, err);
    if (!CHECKF(s != NULL, "%s", err)) return;
    CHECK(lethe_seq_append(s, prompt, 200, logits) == LETHE_OK);
    lethe_seq_bytes b;
    lethe_seq_get_bytes(s, &b);
    const int past = lethe_seq_n_past(s), cached = lethe_seq_n_cached(s);
    s->budget_bytes = b.ram_bytes - 1; /* internal: what a budget just below the bytes held means */
    CHECK(lethe_seq_decode(s, prompt[200], logits) == LETHE_ERR_BUDGET);
    CHECKF(strstr(lethe_seq_error(s), "byte budget") != NULL, "message: %s", lethe_seq_error(s));
    CHECK(lethe_seq_n_past(s) == past && lethe_seq_n_cached(s) == cached);
    s->budget_bytes = full_bytes / 10;
    CHECK(lethe_seq_decode(s, prompt[200], logits) == LETHE_OK);
    lethe_seq_free(s);
    /* a budget that holds not even a page per stream */
    CHECK(open_seq("window", 0, 1000, NULL, 0, err) == NULL && strstr(err, "byte budget"));
    free(logits);
}

/* Disk failures: an unwritable directory at creation; a file that may
 * not grow (RLIMIT_FSIZE) when the tier does. Both clear errors, the
 * sequence unchanged and freed cleanly. */
static void test_disk_errors(void) {
    char err[512];
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = "quest";
    sp.kv.budget = 64;
    sp.kv.cold = "disk-q4";
    sp.kv.cold_dir = "/nonexistent-lethe-dir";
    CHECK(lethe_seq_create(ctx, &sp, err, sizeof err) == NULL);
    CHECKF(strstr(err, "cold-tier file") != NULL && strstr(err, "/nonexistent-lethe-dir") != NULL, "message: %s", err);
    sp.kv.cold = "bogus";
    sp.kv.cold_dir = NULL;
    CHECK(lethe_seq_create(ctx, &sp, err, sizeof err) == NULL && strstr(err, "cold storage"));

    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    sp.kv.cold = "disk-q4";
    lethe_seq *s = lethe_seq_create(ctx, &sp, err, sizeof err);
    if (CHECKF(s != NULL, "%s", err)) {
        struct rlimit lim = old;
        lim.rlim_cur = 3 * 2432; /* three Q4 records of 32 x 64 */
        setrlimit(RLIMIT_FSIZE, &lim);
        float *logits = malloc((size_t)n_vocab * sizeof *logits);
        lethe_status st = LETHE_OK;
        int i = 0, cached = 0, past = 0;
        for (; i < N_PROMPT && st == LETHE_OK; i++) {
            cached = lethe_seq_n_cached(s);
            past = lethe_seq_n_past(s);
            st = lethe_seq_append(s, &prompt[i], 1, logits);
        }
        setrlimit(RLIMIT_FSIZE, &old);
        CHECKF(st == LETHE_ERR_IO, "a cold file that cannot grow fails with LETHE_ERR_IO (got %s after %d tokens)",
               lethe_status_name(st), i);
        CHECKF(strstr(lethe_seq_error(s), "cold tier") != NULL, "message: %s", lethe_seq_error(s));
        CHECK(lethe_seq_n_cached(s) == cached && lethe_seq_n_past(s) == past);
        CHECK(lethe_seq_append(s, &prompt[i], 1, logits) == LETHE_OK); /* the limit is gone: it goes on */
        free(logits);
        lethe_seq_free(s);
    }
    signal(SIGXFSZ, prev);
}

/* The harness's pass-key cases (seed 1, as lethe eval's default; lengths
 * and depths as in the issue, one trial each): the best policy at 10% of
 * the full cache's bytes keeps at least 95% of its accuracy. */
static void test_passkey(void) {
    const int lengths[] = {256, 512, 768, 1024};
    const double depths[] = {0, 0.25, 0.5, 0.75, 1};
#ifdef LETHE_TEST_SANITIZED
    /* under the sanitizers (10x slower) the same paths on 1 case; the
     * accuracy threshold is the plain build's to hold */
    eval_passkey_cfg cfg = {lengths + 3, 1, depths + 4, 1, 1, 8, 1, NULL, 0};
#else
    eval_passkey_cfg cfg = {lengths, 4, depths, 5, 1, 8, 1, NULL, 0};
#endif
    char err[512];
    lethe_seq_params sp = lethe_seq_default_params();
    eval_passkey_result r;
    if (!CHECKF(eval_passkey(ctx, &sp, &cfg, NULL, &r, err, sizeof err) == LETHE_OK, "%s", err)) return;
    const double full = r.accuracy;
    eval_passkey_result_free(&r);
    const char *const policies[][2] = {{"quest", "disk-q4"}, {"quest", "q4"}, {"snapkv", NULL}};
    double best = -1;
    const char *best_name = "";
    for (int k = 0; k < 3; k++) {
        sp.kv.name = policies[k][0];
        sp.kv.cold = policies[k][1];
        sp.kv.budget_bytes = full_bytes / 10;
        if (eval_passkey(ctx, &sp, &cfg, NULL, &r, err, sizeof err) != LETHE_OK) {
            printf("%s %s: %s\n", policies[k][0], policies[k][1] ? policies[k][1] : "", err);
            continue;
        }
        printf("pass key at 10%% of the bytes (%zu): %s %s %.1f%% (RAM peak %zu), full cache %.1f%%\n", sp.kv.budget_bytes,
               policies[k][0], policies[k][1] ? policies[k][1] : "", r.accuracy, r.cost.kv_bytes_peak, full);
        CHECKF(r.cost.kv_bytes_peak <= sp.kv.budget_bytes, "%s: RAM peak %zu over the budget", policies[k][0],
               r.cost.kv_bytes_peak);
        if (r.accuracy > best) best = r.accuracy, best_name = policies[k][0];
        eval_passkey_result_free(&r);
    }
#ifndef LETHE_TEST_SANITIZED
    CHECKF(best >= 0.95 * full, "best policy at 10%% of the bytes (%s) %.1f%% < 95%% of the full cache's %.1f%%", best_name,
           best, full);
#else
    (void)best_name;
#endif
}

int main(void) {
    const char *path = tu_require_model("recall/recall-1k.gguf");
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 1088;
    cp.n_threads = 2;
    char err[512];
    ctx = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(ctx != NULL, "load: %s", err)) return tu_finish("test_quest_bytes");
    lethe_model_info info;
    lethe_model_get_info(lethe_ctx_model(ctx), &info);
    n_vocab = info.n_vocab;
    full_bytes = (size_t)info.n_layer * info.n_head_kv * 1024 * 2 * 2 * (size_t)info.head_dim; /* F16 K + V */
    size_t text_len = 0;
    char *text = tu_read_file(tu_data_path("eval/stories.txt"), &text_len);
    int n = text ? lethe_tokenize(lethe_ctx_model(ctx), text, text_len, NULL, 0, true, false) : 0;
    lethe_token *ids = n > N_PROMPT ? malloc((size_t)n * sizeof *ids) : NULL;
    if (!CHECKF(ids != NULL, "need %d tokens of data/eval/stories.txt", N_PROMPT)) return tu_finish("test_quest_bytes");
    lethe_tokenize(lethe_ctx_model(ctx), text, text_len, ids, n, true, false);
    memcpy(prompt, ids, sizeof prompt);
    free(ids);
    free(text);

    /* the reference: the full cache, greedy */
    const size_t nl = (size_t)(1 + N_GEN) * n_vocab;
    float *ref = malloc(nl * sizeof *ref);
    lethe_seq *s = open_seq("full", 0, 0, NULL, 0, err);
    CHECK(lethe_seq_append(s, prompt, N_PROMPT, ref) == LETHE_OK);
    for (int i = 0; i < N_GEN; i++) {
        gen[i] = argmax(ref + (size_t)i * n_vocab, n_vocab);
        CHECK(lethe_seq_decode(s, gen[i], ref + (size_t)(i + 1) * n_vocab) == LETHE_OK);
    }
    lethe_seq_free(s);

    test_full_budget(ref);
    test_all_pages(ref);
    test_never_exceeds();
    test_refused();
    test_disk_errors();
    test_passkey();
    free(ref);
    tu_close_ctx(ctx);
    return tu_finish("test_quest_bytes");
}
