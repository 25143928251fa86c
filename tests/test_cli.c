/* The lethe command as a user meets it: exit codes (0 ok, 1 bad model, 2
 * usage), stdout carrying only the generated text or ids, and greedy output
 * equal to the references (llama.cpp's ids; llama2.c's printed text). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char *bin;
static char out_path[256], err_path[256];

/* Runs "lethe ARGS", stdout/stderr to files; returns the exit status. */
static int run(const char *args) { return tu_run_cli(bin, args, out_path, err_path, NULL); }

static char *out_text(void) { return tu_read_file(out_path, NULL); }
static char *err_text(void) { return tu_read_file(err_path, NULL); }

static void expect_exit(const char *args, int code) {
    int got = run(args);
    char *e = err_text();
    CHECKF(got == code, "'lethe %s' exited %d, expected %d (stderr: %.200s)", args, got, code, e ? e : "");
    free(e);
}

/* Runs "lethe ARGS" and checks the exit code and that stderr contains want
 * (and, when not NULL, does not contain unwanted). */
static void expect_msg(const char *args, int code, const char *want, const char *unwanted) {
    tu_expect_cli_msg(bin, args, out_path, err_path, code, want, unwanted);
}

/* Usage errors: one message naming the problem, then one hint line (not the
 * whole usage); exit 2. Unreadable prompt files: exit 1 with the reason. */
static void test_messages(void) {
    const char *hint = "run 'lethe run --help' for usage";
    expect_msg("run -m x.gguf -p hi --bogus", 2, "unknown option '--bogus'", "needs a value");
    expect_msg("run -m x.gguf --bogus -p hi", 2, "unknown option '--bogus'", NULL);
    expect_msg("run -m x.gguf -p hi -n", 2, "option -n needs a value", NULL);
    expect_msg("run -m x.gguf -p hi --top-p 2", 2, "--top-p must be a number in [0, 1]", NULL);
    expect_msg("run -m x.gguf -p hi --min-p -0.5", 2, "--min-p must be a number in [0, 1]", NULL);
    expect_msg("run -m x.gguf -p hi -t 0", 2, "-t must be an integer in [1, 1024]", NULL);
    expect_msg("run -m x.gguf -p hi --kv-budget 0", 2, "--kv-budget must be an integer in [1, ", NULL);
    expect_msg("run -m x.gguf -p hi --seed -1", 2, "--seed must be an integer in [0, ", NULL);
    expect_msg("run -m x.gguf -p hi --kv-policy lru", 2, "unknown KV policy 'lru' (full, window, h2o", NULL);
    expect_msg("run -m x.gguf -p hi --kv-type f8", 2, "unknown KV type 'f8' (f32, f16, q8_0, q4_0)", NULL);
    /* a policy parameter the chosen policy does not read is an error, not ignored */
    expect_msg("run -m x.gguf -p hi --kv-policy window --kv-lag 3", 2, "--kv-lag does not apply to policy window (used by: lazy)",
               NULL);
    expect_msg("run -m x.gguf -p hi --kv-reindex", 2, "--kv-reindex does not apply to policy full (used by: window)", NULL);
    expect_msg("run -m x.gguf -p hi --bogus", 2, hint, "--kv-policy");   /* the hint, not the usage */
    expect_msg("run -p hi", 2, hint, "--repeat-penalty");
    expect_msg("bench -m x.gguf -p -3", 2, "-p must be an integer in [0, ", "bad option");
    expect_msg("bench -m x.gguf --bogus", 2, "unknown option '--bogus'", NULL);
    expect_msg("tokenize -m x.gguf --bogus hi", 2, "unknown option '--bogus'", NULL);
    expect_msg("eval ppl -m x.gguf --trials", 2, "option --trials needs a value", NULL);
    expect_msg("eval ppl -m x.gguf --bogus", 2, "unknown option '--bogus'", "needs a value");
    expect_msg("eval ppl -m x.gguf --ctx 1", 2, "--ctx must be an integer in [2, ", NULL);
    expect_msg("info -m x.gguf --bogus", 2, "unknown option '--bogus'", NULL);
    expect_msg("info", 2, "need -m MODEL", NULL);
    expect_msg("bench attn --kv-heads 5", 2, "--kv-heads wants a divisor of the 32 query heads", NULL);
    expect_msg("bench -m x.gguf --kv-heads 4", 2, "unknown option '--kv-heads'", NULL);
    expect_msg("frobnicate", 2, "run 'lethe --help' for usage", "commands:");
    /* prompt files: a directory, an endless device, a missing file */
    expect_msg("run -m x.gguf -f /tmp", 1, "Is a directory", NULL);
    expect_msg("run -m x.gguf -f /dev/zero", 1, "larger than the 64 MiB limit", NULL);
    expect_msg("run -m x.gguf -f /nonexistent/prompt.txt", 1, "cannot open '/nonexistent/prompt.txt'", NULL);
    expect_msg("tokenize -m x.gguf -f /tmp", 1, "Is a directory", NULL);

    /* --version prints the project version on stdout */
    CHECK(run("--version") == 0);
    char *o = out_text();
    CHECKF(o && strncmp(o, "lethe ", 6) == 0 && strlen(o) >= 12 && o[6] >= '0' && o[6] <= '9',
           "--version: %s", o ? o : "");
    free(o);
}

/* lethe run --memory think on a teacher-forced trace of 10x a 512-token
 * context: it runs to the end with the slots held under the context, where
 * the same run without the memory stops at the context. */
static void test_memory_past_context(const char *model) {
    char trace[300], args[1024];
    snprintf(trace, sizeof trace, "%s.trace.txt", out_path);
    FILE *f = fopen(trace, "w");
    if (!f) { CHECK(0); return; }
    for (int i = 0; i < 55; i++) { /* ~105 tokens a block, ~5 kept after it */
        fputs("<think>", f);
        for (int w = 0; w < 12; w++) fputs(" the cat sat on the mat and", f);
        fputs("</think>\nok.\n", f);
    }
    fclose(f);
    snprintf(args, sizeof args, "run -m %s -p Once -c 512 -n 100000 --temp 0 --memory think --force-file %s", model, trace);
    expect_exit(args, 0);
    char *e = err_text();
    long processed = 0;
    int held = 0, peak = 0;
    const char *m = e ? strstr(e, "memory: rules think") : NULL;
    CHECKF(m != NULL, "memory summary on stderr: %.300s", e ? e : "");
    if (m) {
        const char *p = strstr(m, "tokens processed ");
        if (p) processed = strtol(p + 17, NULL, 10);
        p = strstr(m, "slots held ");
        if (p) sscanf(p, "slots held %d, peak %d", &held, &peak);
    }
    CHECKF(processed > 10 * 512, "the trace is 10x the context: %ld tokens processed", processed);
    CHECKF(peak > 0 && peak < 512, "slots stay under the context: peak %d", peak);
    free(e);
    snprintf(args, sizeof args, "run -m %s -p Once -c 512 -n 100000 --temp 0 --force-file %s", model, trace);
    expect_exit(args, 0);
    e = err_text();
    CHECKF(e && strstr(e, "stop: ") && !strstr(e, "memory:"), "without the memory the run stops at the context: %.300s", e ? e : "");
    free(e);
    remove(trace);
}

int main(void) {
    bin = getenv("LETHE_BIN");
    if (!bin || !tu_file_exists(bin)) tu_skip("LETHE_BIN not set or missing (run through ctest)");
    snprintf(out_path, sizeof out_path, "/tmp/lethe_cli_out_%d", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/lethe_cli_err_%d", (int)getpid());

    /* usage errors: 2 */
    expect_exit("", 2);
    expect_exit("frobnicate", 2);
    expect_exit("run", 2);
    expect_exit("run -p hello", 2);
    expect_exit("run -m x.gguf -p hi -n notanumber", 2);
    expect_exit("run -m x.gguf -p hi --temp -1", 2);
    expect_exit("run -m x.gguf -p hi --kv-type f8", 2);
    expect_exit("run -m x.gguf -p hi --bogus", 2);
    expect_exit("info", 2);
    expect_exit("bench -m x.gguf -p -3", 2);
    test_messages();
    /* bad model files: 1 with a reason */
    expect_exit("run -m /nonexistent/model.gguf -p hi", 1);
    FILE *f = fopen(out_path, "wb");
    fputs("GGUF\x03\0\0\0garbage", f);
    fclose(f);
    char args[1024];
    char bad[300];
    snprintf(bad, sizeof bad, "%s.bad.gguf", out_path);
    rename(out_path, bad);
    snprintf(args, sizeof args, "run -m %s -p hi", bad);
    expect_exit(args, 1);
    char *e = err_text();
    CHECKF(e && strstr(e, "gguf"), "bad model message names the problem: %s", e ? e : "");
    free(e);
    snprintf(args, sizeof args, "info -m %s", bad);
    expect_exit(args, 1);
    remove(bad);

    const char *model = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(model)) tu_skip("the model tests need %s (set LETHE_MODELS)", model);
    expect_exit("--help", 0);
    test_memory_past_context(model);

    /* --ids: exactly the reference greedy ids, nothing else on stdout */
    char *json = tu_read_file(tu_require_reference("stories260K.greedy.0.json"), NULL);
    int ref[200];
    int n_ref = json ? tu_json_int_array(json, "generated_ids", ref, 200) : 0;
    free(json);
    snprintf(args, sizeof args, "run -m %s -p \"Once upon a time\" -n 40 --temp 0 --kv-type f32 --ids -t 2", model);
    CHECK(run(args) == 0);
    char *o = out_text();
    int ok = o != NULL && n_ref == 200;
    char *p = o;
    for (int i = 0; ok && i < 40; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        ok = end != p && v == ref[i];
        p = end;
    }
    while (ok && p && (*p == ' ' || *p == '\n')) p++;
    CHECKF(ok && p && *p == 0, "--ids prints the 40 reference ids and nothing else: %.300s", o ? o : "");
    free(o);
    e = err_text();
    CHECKF(e && strstr(e, "tok/s") && strstr(e, "peak RSS"), "timings line on stderr: %.300s", e ? e : "");
    free(e);

    /* text: the llama2.c checkpoint prints llama2.c's expected story */
    const char *ckpt = tu_model_path("llama2c/stories260K.bin"), *tok = tu_model_path("llama2c/tok512.bin");
    char *expected = tu_read_file(tu_model_path("stories260K.greedy200.expected.txt"), NULL);
    if (tu_file_exists(ckpt) && tu_file_exists(tok) && expected) {
        snprintf(args, sizeof args, "run -m %s -z %s -p \"\" -n 200 --temp 0 --kv-type f32", ckpt, tok);
        CHECK(run(args) == 0);
        o = out_text();
        const char *text = o && o[0] == ' ' ? o + 1 : o; /* llama2.c strips the space after BOS */
        CHECKF(text && strncmp(text, expected, strlen(expected)) == 0, "llama2.c text:\n%s\nexpected:\n%s", text ? text : "", expected);
        free(o);
    } else {
        tu_skip_part("llama2.c checkpoint or expected text not found under %s", tu_model_path(""));
    }
    free(expected);

    /* info lists the tensor table */
    snprintf(args, sizeof args, "info -m %s", model);
    CHECK(run(args) == 0);
    o = out_text();
    CHECK(o && strstr(o, "blk.4.ffn_down.weight") && strstr(o, "llama.embedding_length"));
    free(o);

    /* seeded sampling reproduces itself */
    snprintf(args, sizeof args, "run -m %s -p \"The cat\" -n 30 --temp 1 --seed 42 --ids", model);
    CHECK(run(args) == 0);
    char *a = out_text();
    CHECK(run(args) == 0);
    char *b = out_text();
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);

    remove(out_path);
    remove(err_path);
    return tu_finish("test_cli");
}
