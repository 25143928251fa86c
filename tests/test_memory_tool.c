/* Tool calls inside the inference (lethe_memory_add_tool / _add_exec_tool).
 *
 * A teacher-forced trace holding a TIM tooluse (and one holding a Hermes
 * <tool_call>) runs the tool once with the call's JSON, by a C callback and
 * by a program (this test binary run as a child: echo, fail, hang, flood);
 * the result lands in the cache before the trace goes on; a failing or
 * hanging program gives the model an error text within its timeout; a
 * program printing 10 MB is cut at the output cap; the "tool" rule prunes
 * the result once the conclusion that consumed it has closed. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

static int child(const char *what) {
    char buf[4096];
    size_t n = 0;
    ssize_t k;
    if (!strcmp(what, "echo")) {
        while ((k = read(0, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)k;
        fwrite(buf, 1, n, stdout);
        return 0;
    }
    if (!strcmp(what, "fail")) return 3;
    if (!strcmp(what, "hang")) {
        sleep(30);
        return 0;
    }
    if (!strcmp(what, "flood")) { /* 10 MB */
        memset(buf, 'x', sizeof buf);
        for (int i = 0; i < 10 * 1024 * 1024 / (int)sizeof buf; i++)
            if (fwrite(buf, 1, sizeof buf, stdout) != sizeof buf) return 1;
        return 0;
    }
    return 2;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    int calls;
    char name[64], args[256];
} cb_state;

static int cb(void *user, const char *name, const char *args, char *out, size_t cap) {
    cb_state *s = user;
    s->calls++;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->args, sizeof s->args, "%s", args);
    return snprintf(out, cap, "purple elephant");
}

static const lethe_model *M;
static lethe_ctx *C;

/* The live text of the memory. */
static void live_text(lethe_memory *mem, char *text, int cap) {
    static lethe_token live[4096];
    int n = lethe_memory_tokens(mem, live, 4096), o = 0;
    lethe_detok *d = lethe_detok_create(M, true);
    for (int i = 0; i < n && o < cap - 128; i++) o += lethe_detok_push(d, live[i], text + o, 64);
    text[o] = 0;
    lethe_detok_free(d);
}

static const char *TIM_CALL = "{\"reasoning\": [{\"thought\": \"look\", \"tooluse\": {\"tool_name\": \"probe\", \"parameters\": "
                              "{\"q\": \"cats\"}}, \"conclusion\": \"found\"}], \"answer\": \"ok\"}";

/* Feeds trace text token by token (as if generated) into a fresh memory
 * with the given tool set-up; returns the memory (caller frees). */
static lethe_memory *run_trace(const char *trace, const char *rules, int timeout_ms, size_t out_max, cb_state *st,
                               const char *command, lethe_seq **seq) {
    char err[512];
    *seq = lethe_seq_create(C, NULL, err, sizeof err);
    lethe_memory_params p = lethe_memory_default_params();
    p.rules = rules;
    p.tool_timeout_ms = timeout_ms;
    p.tool_output_max = out_max;
    lethe_memory *mem = lethe_memory_create(*seq, &p, err, sizeof err);
    if (!CHECKF(mem != NULL, "memory: %s", err)) return NULL;
    if (st) CHECK(lethe_memory_add_tool(mem, "probe", cb, st) == LETHE_OK);
    if (command) CHECK(lethe_memory_add_exec_tool(mem, NULL, command) == LETHE_OK);
    lethe_token ids[512];
    int n = lethe_tokenize(M, trace, strlen(trace), ids, 512, true, false);
    static float lg[32000];
    for (int i = 0; i < n; i++)
        if (!CHECKF(lethe_memory_append(mem, &ids[i], 1, lg) == LETHE_OK, "append: %s", lethe_memory_error(mem))) break;
    return mem;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--child")) return child(argv[2]);
    const char *path = tu_require_model("stories260K.gguf");
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = 2;
    cp.kv_type = LETHE_KV_F32;
    char err[512], text[16384], cmd[4200];
    C = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(C != NULL, "ctx: %s", err)) return tu_finish("test_memory_tool");
    M = lethe_ctx_model(C);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = 0;
    lethe_seq *s;
    lethe_memory_stats ms;

    /* a C callback, TIM form: once, with the parameters' JSON; the result in the cache */
    cb_state st = {0};
    lethe_memory *mem = run_trace(TIM_CALL, NULL, 1000, 4096, &st, NULL, &s);
    CHECKF(st.calls == 1 && !strcmp(st.name, "probe") && !strcmp(st.args, "{\"q\": \"cats\"}"), "calls %d name '%s' args '%s'",
           st.calls, st.name, st.args);
    live_text(mem, text, sizeof text);
    CHECKF(strstr(text, "{\"q\": \"cats\"}, \"tool_result\": \"purple elephant\"}, \"conclusion\": \"found\"") != NULL,
           "cache text: %s", text);
    lethe_memory_get_stats(mem, &ms);
    CHECK(ms.tool_calls == 1 && ms.tool_errors == 0 && lethe_seq_n_cached(s) == lethe_memory_tokens(mem, NULL, 0));
    lethe_memory_free(mem);
    lethe_seq_free(s);

    /* the "tool" rule: the result is pruned once the task's conclusion has closed */
    memset(&st, 0, sizeof st);
    mem = run_trace(TIM_CALL, "tool", 1000, 4096, &st, NULL, &s);
    live_text(mem, text, sizeof text);
    CHECKF(st.calls == 1 && !strstr(text, "purple") && strstr(text, "\"conclusion\": \"found\""), "after the tool rule: %s", text);
    lethe_memory_get_stats(mem, &ms);
    CHECK(ms.spans_pruned == 1);
    lethe_memory_free(mem);
    lethe_seq_free(s);

    /* Hermes / Qwen form */
    memset(&st, 0, sizeof st);
    mem = run_trace("Let me check. <tool_call>{\"name\": \"probe\", \"arguments\": {\"x\": 1}}</tool_call> It is", NULL, 1000, 4096,
                    &st, NULL, &s);
    live_text(mem, text, sizeof text);
    CHECKF(st.calls == 1 && !strcmp(st.args, "{\"x\": 1}"), "hermes: calls %d args '%s'", st.calls, st.args);
    CHECKF(strstr(text, "</tool_call>\n<tool_response>\npurple elephant\n</tool_response>\n") != NULL, "hermes text: %s", text);
    lethe_memory_free(mem);
    lethe_seq_free(s);

    /* a program: the JSON on its stdin comes back */
    snprintf(cmd, sizeof cmd, "%s --child echo", self);
    mem = run_trace(TIM_CALL, NULL, 2000, 4096, NULL, cmd, &s);
    live_text(mem, text, sizeof text);
    CHECKF(strstr(text, "\"tool_result\": {\"q\": \"cats\"}}") != NULL, "echo: %s", text);
    lethe_memory_free(mem);
    lethe_seq_free(s);

    /* failing, missing, hanging: an error text for the model, within the timeout */
    const char *bad[3] = {"fail", NULL, "hang"};
    const char *want[3] = {"exited with status 3", "cannot run", "timed out after 300 ms"};
    for (int k = 0; k < 3; k++) {
        if (bad[k]) snprintf(cmd, sizeof cmd, "%s --child %s", self, bad[k]);
        else snprintf(cmd, sizeof cmd, "/nonexistent/lethe-tool --x");
        double t0 = now();
        mem = run_trace(TIM_CALL, NULL, 300, 4096, NULL, cmd, &s);
        double dt = now() - t0;
        live_text(mem, text, sizeof text);
        CHECKF(strstr(text, "\"tool_result\": {\"error\": \"tool '") && strstr(text, want[k]), "%s: %s", want[k], text);
        lethe_memory_get_stats(mem, &ms);
        CHECK(ms.tool_calls == 1 && ms.tool_errors == 1);
        printf("%s: error given back in %.3f s (tool time %.3f s)\n", want[k], dt, ms.tool_seconds);
        CHECKF(ms.tool_seconds < 2.0, "the tool took %.3f s against a 0.3 s timeout", ms.tool_seconds);
        lethe_memory_free(mem);
        lethe_seq_free(s);
    }

    /* 10 MB of output is cut at the cap */
    snprintf(cmd, sizeof cmd, "%s --child flood", self);
    mem = run_trace(TIM_CALL, NULL, 5000, 300, NULL, cmd, &s);
    live_text(mem, text, sizeof text);
    lethe_memory_get_stats(mem, &ms);
    const char *r = strstr(text, "\"tool_result\": \"");
    const char *e = r ? strstr(r + 16, "\"}, \"conclusion\"") : NULL;
    CHECKF(r && e && e - (r + 16) <= 300 + 8 && strstr(r, "[output cut at"), "flood: %s", text);
    printf("10 MB tool output: %ld result bytes kept, tool time %.3f s\n", r && e ? (long)(e - (r + 16)) : -1L, ms.tool_seconds);
    CHECK(ms.tool_errors == 0 && ms.tool_seconds < 3.0);
    lethe_memory_free(mem);
    lethe_seq_free(s);

    tu_close_ctx(C);
    return tu_finish("test_memory_tool");
}
