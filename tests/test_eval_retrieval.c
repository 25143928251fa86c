/* lethe eval needle and multikey on recall-1k (a small llama trained for
 * retrieval): the generators are deterministic per seed, vary the phrasing
 * and the kind of value across cases, put the asked value in the prompt
 * exactly once, at the asked depth, within the asked length; end to end a
 * small run reports an accuracy in [0, 100] and the KV bytes held; with a
 * budget that covers the context every policy gives the full cache's
 * answers; the sweep adds needle_acc and multikey_acc columns only when
 * --tasks asks for them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/eval.h"
#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

static const char *bin, *model;
static char out_path[256], err_path[256];

static int run(const char *args) { return tu_run_cli(bin, args, out_path, err_path, NULL); }

static void expect_exit(const char *args, int code) {
    int got = run(args);
    char *e = tu_read_file(err_path, NULL);
    CHECKF(got == code, "'lethe %s' exited %d, expected %d (stderr: %.300s)", args, got, code, e ? e : "");
    free(e);
}

/* Runs a command; stdout (malloc'd), and stderr into *err_out when asked. */
static char *run_ok(const char *args, char **err_out) {
    int rc = run(args);
    char *o = tu_read_file(out_path, NULL), *e = tu_read_file(err_path, NULL);
    CHECKF(rc == 0 && o, "'lethe %s' exited %d (stderr: %.400s)", args, rc, e ? e : "");
    if (err_out) *err_out = e;
    else free(e);
    if (rc != 0) {
        free(o);
        return NULL;
    }
    return o;
}

static double number_after(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static int count_sub(const char *text, const char *s) {
    int n = 0;
    for (const char *p = strstr(text, s); p; p = strstr(p + 1, s)) n++;
    return n;
}

/* (1) the generators */
static void test_generators(const lethe_model *m) {
    static const int lengths[] = {256, 512, 1024};
    static const double depths[] = {0, 0.25, 0.5, 1};
    char err[256];
    for (int task = 0; task < 2; task++) {
        const eval_task t = task ? EVAL_TASK_MULTIKEY : EVAL_TASK_NEEDLE;
        bool phrasing[16] = {false}, question[16] = {false}, kinds[2] = {false};
        int n_cases = 0, n_differ = 0;
        for (int li = 0; li < 3; li++) {
            for (int di = 0; di < 4; di++) {
                for (int k = 0; k < 4; k++) {
                    const int index = (li * 4 + di) * 4 + k;
                    eval_retrieval_case a, b, c;
                    lethe_status sa = eval_retrieval_case_make(m, t, 4, 7, index, lengths[li], depths[di], &a, err, sizeof err);
                    if (!CHECKF(sa == LETHE_OK, "%s case %d: %s", eval_task_name(t), index, err)) continue;
                    lethe_status sb = eval_retrieval_case_make(m, t, 4, 7, index, lengths[li], depths[di], &b, err, sizeof err);
                    lethe_status sc = eval_retrieval_case_make(m, t, 4, 8, index, lengths[li], depths[di], &c, err, sizeof err);
                    n_cases++;
                    CHECKF(sb == LETHE_OK && !strcmp(a.text, b.text) && !strcmp(a.value, b.value),
                           "%s case %d is the same for the same seed", eval_task_name(t), index);
                    if (sc == LETHE_OK && strcmp(a.text, c.text)) n_differ++;
                    CHECKF(a.n_tokens <= lengths[li] && a.n_tokens >= lengths[li] - 48, "%s case %d: %d tokens for %d",
                           eval_task_name(t), index, a.n_tokens, lengths[li]);
                    const int n_tok = lethe_tokenize(m, a.text, strlen(a.text), NULL, 0, true, false);
                    CHECKF(n_tok == a.n_tokens, "%s case %d: n_tokens %d is the prompt's %d", eval_task_name(t), index,
                           a.n_tokens, n_tok);
                    CHECKF(eval_retrieval_count(a.text, a.value) == 1, "%s case %d: the value '%s' is in the prompt once (%d)",
                           eval_task_name(t), index, a.value, eval_retrieval_count(a.text, a.value));
                    int want = (int)(depths[di] * a.n_filler + 0.5);
                    CHECKF(a.filler_before == want && a.n_filler >= 2, "%s case %d: %d of %d filler sentences before the needle, want %d",
                           eval_task_name(t), index, a.filler_before, a.n_filler, want);
                    /* the asked needle sits at its offset: its first sentence holds the value (and the key) */
                    const char *nd = a.text + a.needle_offset, *dot = strchr(nd + 1, '.');
                    const char *v = strstr(nd, a.value);
                    CHECKF(dot && v && v < dot + 1, "%s case %d: the needle at byte %d holds '%s': %.80s", eval_task_name(t),
                           index, a.needle_offset, a.value, nd);
                    if (t == EVAL_TASK_MULTIKEY) {
                        const char *key = strstr(nd, a.key);
                        CHECKF(key && key < dot, "multikey case %d: the needle names the key %s", index, a.key);
                        /* once in its needle, twice in the question */
                        CHECKF(count_sub(a.text, a.key) == 3, "multikey case %d: key %s %d times", index, a.key,
                               count_sub(a.text, a.key));
                        /* the distractors: 4 needles, numbers or words, 4 values in all */
                        CHECKF(count_sub(a.text, a.key) == 3 && count_sub(a.text, " for ") + count_sub(a.text, " For ") >= 4 + 2,
                               "multikey case %d: 4 needles and the question", index);
                    }
                    if (a.phrasing < 16) phrasing[a.phrasing] = true;
                    if (a.question_phrasing < 16) question[a.question_phrasing] = true;
                    kinds[a.is_word] = true;
                    eval_retrieval_case_free(&a);
                    eval_retrieval_case_free(&b);
                    if (sc == LETHE_OK) eval_retrieval_case_free(&c);
                }
            }
        }
        int n_ph = 0, n_q = 0;
        for (int k = 0; k < 16; k++) n_ph += phrasing[k], n_q += question[k];
        CHECKF(n_ph >= 3 && n_q >= 2, "%s: %d needle phrasings and %d questions over %d cases", eval_task_name(t), n_ph, n_q,
               n_cases);
        CHECKF(kinds[0] && kinds[1], "%s: numbers and words as values", eval_task_name(t));
        CHECKF(n_differ == n_cases, "%s: another seed gives other prompts (%d of %d)", eval_task_name(t), n_differ, n_cases);
    }
    /* whole-word scoring */
    CHECK(eval_retrieval_count(" 9222.", "922") == 0 && eval_retrieval_count(" 922.", "922") == 1);
    CHECK(eval_retrieval_count("remember", "ember") == 0 && eval_retrieval_count(" ember ember", "ember") == 2);
}

/* The answer lines of -v (stderr), for comparing runs. */
static char *answers(const char *err) {
    size_t n = err ? strlen(err) : 0, k = 0;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    for (const char *p = err; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
        if (!strncmp(p, "needle ", 7) || !strncmp(p, "multikey ", 9)) {
            memcpy(out + k, p, len);
            k += len;
        }
        p += len;
    }
    out[k] = 0;
    return out;
}

/* (2) end to end, and every policy at a budget covering the context */
/* Under the sanitizers (10x slower) the policies' runs use the shorter
 * prompts only: the longer ones run the same code, and test_quest_bytes
 * checks every policy against the full cache bit for bit in both builds. */
#ifdef LETHE_TEST_SANITIZED
#define RUN_LENGTHS "256"
#define RUN_CASES 4
#define MULTIKEY_POLICIES false /* the policies' runs are the same code for both tasks: needle's suffice here */
#else
#define MULTIKEY_POLICIES true
#define RUN_LENGTHS "256,512"
#define RUN_CASES 8
#endif

static void test_runs(const char *task, bool policies) {
    char args[1024];
    snprintf(args, sizeof args, "eval %s -m %s --lengths " RUN_LENGTHS " --depths 0,1 --trials 2 -t 1 -q -v", task, model);
    char *err_full = NULL, *full = run_ok(args, &err_full);
    char key[64];
    snprintf(key, sizeof key, "%s overall: ", task);
    double acc = number_after(full, key), bytes_full = number_after(full, "kv bytes peak: ");
    CHECKF(acc >= 0 && acc <= 100, "%s full-cache accuracy %g in [0, 100]", task, acc);
    CHECKF(bytes_full > 0 && full && strstr(full, "accuracy (%) by prompt length"), "%s: a table and KV bytes: %.300s", task,
           full ? full : "");
    char *ans_full = answers(err_full);
    CHECKF(ans_full && count_sub(ans_full, "\n") == RUN_CASES, "%s: %d answers logged", task, RUN_CASES);
    printf("%s full cache: %g%%\n", task, acc);
    const char *line_full = full ? strstr(full, key) : NULL;
    for (const char *const *p = lethe_kv_policy_names(); policies && *p; p++) {
        if (!strcmp(*p, "full")) continue;
        snprintf(args, sizeof args,
                 "eval %s -m %s --lengths " RUN_LENGTHS " --depths 0,1 --trials 2 -t 1 -q -v --kv-policy %s --kv-budget 1088",
                 task, model, *p);
        char *e = NULL, *o = run_ok(args, &e);
        char *ans = answers(e);
        double bytes = number_after(o, "kv bytes peak: ");
        const char *line = o ? strstr(o, key) : NULL;
        bool same = ans && ans_full && !strcmp(ans, ans_full) && line && line_full &&
                    strcspn(line, "\n") == strcspn(line_full, "\n") && !strncmp(line, line_full, strcspn(line, "\n"));
        /* the bytes are the sequence's RAM, per-policy state included, so
         * they differ from the full cache's even when nothing is evicted;
         * test_quest_bytes checks bit for bit that such a policy equals it */
        if (same) {
            CHECKF(bytes > 0, "%s, policy %s with a budget covering the context gives the full cache's answers:\n%s\nvs\n%s", task, *p,
                   ans ? ans : "", ans_full ? ans_full : "");
        } else {
            /* a policy that shares the budget unevenly among heads (headwise) evicts in its small heads even here */
            printf("note: %s, policy %s held %g KV bytes, not the full cache's %g (per-head budgets); same answers: %d\n", task,
                   *p, bytes, bytes_full, same);
            CHECKF(!strcmp(*p, "headwise"), "%s, policy %s with a budget covering the context differs from the full cache", task, *p);
        }
        free(ans);
        free(e);
        free(o);
    }
    free(ans_full);
    free(err_full);
    free(full);
}

/* (3) options, and the sweep's columns */
static void test_cli(void) {
    char args[2048];
    snprintf(args, sizeof args, "eval passkey -m %s --keys 3", model);
    expect_exit(args, 2); /* --keys is multikey's */
    snprintf(args, sizeof args, "eval multikey -m %s --keys 0", model);
    expect_exit(args, 2);
    snprintf(args, sizeof args, "eval needle -m %s --tasks needle", model);
    expect_exit(args, 2); /* --tasks goes with eval sweep */
    snprintf(args, sizeof args, "eval sweep -m %s --tasks needle,bogus", model);
    expect_exit(args, 2);
    snprintf(args, sizeof args, "eval needle -m %s -f x.txt", model);
    expect_exit(args, 2); /* a ppl option */

    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/lethe_eval_retrieval_%d", (int)getpid());
    snprintf(args, sizeof args,
             "eval sweep -m %s --tasks needle,multikey --keys 3 --lengths 256 --depths 0.5 --trials 2 --policies window "
             "--budgets 25%% --out %s -t 1 -q",
             model, dir);
    char *o = run_ok(args, NULL);
    CHECKF(o && strstr(o, "needle%") && strstr(o, "multikey%"), "the sweep table has the retrieval columns: %.400s", o ? o : "");
    free(o);
    char path[512];
    snprintf(path, sizeof path, "%s/sweep.csv", dir);
    char *csv = tu_read_file(path, NULL);
    CHECKF(csv && !strncmp(csv, EVAL_CSV_HEADER_RETRIEVAL, strlen(EVAL_CSV_HEADER_RETRIEVAL)) &&
               csv[strlen(EVAL_CSV_HEADER_RETRIEVAL)] == '\n',
           "CSV header with needle_acc, multikey_acc: %.200s", csv ? csv : "");
    int rows = 0;
    if (csv) {
        char *save = NULL, *line = strtok_r(csv, "\n", &save);
        while ((line = strtok_r(NULL, "\n", &save))) {
            rows++;
            /* ...,peak_rss,needle_acc,multikey_acc,note: the two accuracies filled, no note */
            int commas = 0;
            const char *f[16] = {0};
            f[0] = line;
            for (char *c = line; *c && commas < 15; c++)
                if (*c == ',') {
                    *c = 0;
                    f[++commas] = c + 1;
                }
            if (!CHECKF(commas == 12, "13 fields in row %d", rows)) continue;
            double nd = atof(f[10]), mk = atof(f[11]);
            CHECKF(f[10][0] && f[11][0] && nd >= 0 && nd <= 100 && mk >= 0 && mk <= 100 && !f[12][0],
                   "row %s: needle %s, multikey %s, note '%s'", f[0], f[10], f[11], f[12]);
            CHECKF(!f[4][0] && !f[5][0], "row %s: ppl and passkey not run", f[0]);
        }
        free(csv);
    }
    CHECKF(rows == 2, "2 rows (baseline + window@25%%), got %d", rows);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    bin = getenv("LETHE_BIN");
    if (!bin || !tu_file_exists(bin)) tu_skip("LETHE_BIN not set or missing (run through ctest)");
    model = tu_require_model("recall/recall-1k.gguf");
    snprintf(out_path, sizeof out_path, "/tmp/lethe_eval_retr_out_%d", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/lethe_eval_retr_err_%d", (int)getpid());

    char err[256];
    lethe_ctx_params mp = lethe_ctx_default_params();
    mp.n_threads = 1;
    mp.n_ctx = 64;
    lethe_ctx *m = tu_open_ctx(model, &mp, err, sizeof err);
    if (!CHECKF(m != NULL, "load %s: %s", model, err)) return tu_finish("test_eval_retrieval");
    test_generators(lethe_ctx_model(m));
    tu_close_ctx(m);

    test_runs("needle", true);
    test_runs("multikey", MULTIKEY_POLICIES);
    test_cli();

    remove(out_path);
    remove(err_path);
    return tu_finish("test_eval_retrieval");
}
