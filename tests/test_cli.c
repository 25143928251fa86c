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
static int run(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", bin, args, out_path, err_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *out_text(void) { return tu_read_file(out_path, NULL); }
static char *err_text(void) { return tu_read_file(err_path, NULL); }

static void expect_exit(const char *args, int code) {
    int got = run(args);
    char *e = err_text();
    CHECKF(got == code, "'lethe %s' exited %d, expected %d (stderr: %.200s)", args, got, code, e ? e : "");
    free(e);
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
    if (!tu_file_exists(model)) tu_skip("%s not found", model);
    expect_exit("--help", 0);

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
        printf("SKIPPED part: llama2.c checkpoint or expected text not found\n");
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
