#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

int tu_failures = 0;
int tu_checks = 0;

int tu_check(int ok, const char *expr, const char *file, int line) {
    tu_checks++;
    if (!ok) {
        tu_failures++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expr);
    }
    return ok;
}

int tu_checkf(int ok, const char *file, int line, const char *fmt, ...) {
    tu_checks++;
    if (!ok) {
        va_list ap;
        tu_failures++;
        fprintf(stderr, "FAIL %s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    return ok;
}

int tu_require_all(void) {
    const char *v = getenv("LETHE_REQUIRE_MODELS");
    return v && *v && strcmp(v, "0") != 0;
}

void tu_skip(const char *fmt, ...) {
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (tu_failures) {
        /* a skip must not turn earlier failures into "skipped" */
        fprintf(stderr, "FAIL: %d of %d checks failed before the test skipped the rest (%s)\n", tu_failures,
                tu_checks, why);
        exit(1);
    }
    if (tu_require_all()) {
        fprintf(stderr, "FAIL: cannot skip with LETHE_REQUIRE_MODELS set: %s\n", why);
        exit(1);
    }
    printf("SKIPPED: %s\n", why);
    fflush(stdout);
    exit(77);
}

void tu_skip_part(const char *fmt, ...) {
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (tu_require_all()) {
        tu_checks++;
        tu_failures++;
        fprintf(stderr, "FAIL: cannot skip part of the test with LETHE_REQUIRE_MODELS set: %s\n", why);
        return;
    }
    printf("SKIPPED part: %s\n", why);
    fflush(stdout);
}

int tu_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    if (tu_checks == 0) {
        fprintf(stderr, "FAIL: %s ran no checks\n", name);
        return 1;
    }
    return tu_failures ? 1 : 0;
}

static const char *join(char *buf, size_t n, const char *env, const char *def, const char *rel) {
    const char *root = getenv(env);
    if (!root || !*root) root = def;
    snprintf(buf, n, "%s/%s", root, rel);
    return buf;
}

/* A ring of buffers so that a few paths can be held at once without freeing. */
static char *next_buf(void) {
    static char bufs[16][4096];
    static int i;
    return bufs[i++ & 15];
}

const char *tu_model_path(const char *rel) {
    return join(next_buf(), 4096, "LETHE_MODELS", "../shared/models", rel);
}

const char *tu_reference_path(const char *rel) {
    return join(next_buf(), 4096, "LETHE_REFERENCE", "../shared/reference", rel);
}

const char *tu_data_path(const char *rel) {
    return join(next_buf(), 4096, "LETHE_DATA_DIR", "data", rel);
}

int tu_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

const char *tu_require_model(const char *rel) {
    const char *p = tu_model_path(rel);
    if (!tu_file_exists(p)) tu_skip("model file %s not found (set LETHE_MODELS)", p);
    return p;
}

const char *tu_require_reference(const char *rel) {
    const char *p = tu_reference_path(rel);
    if (!tu_file_exists(p)) tu_skip("reference file %s not found (set LETHE_REFERENCE)", p);
    return p;
}

const char *tu_optional_model(const char *rel) {
    const char *p = tu_model_path(rel);
    if (tu_file_exists(p)) return p;
    tu_skip_part("model file %s not found (set LETHE_MODELS)", p);
    return NULL;
}

char *tu_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0) { fclose(f); return NULL; }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return NULL; }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); fclose(f); return NULL; }
    buf[n] = 0;
    fclose(f);
    if (size) *size = (size_t)n;
    return buf;
}

static const char *json_value(const char *json, const char *key) {
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

int tu_json_int_array(const char *json, const char *key, int *out, int cap) {
    const char *p = json_value(json, key);
    if (!p || *p != '[') return -1;
    p++;
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',') p++;
        if (*p == ']' || !*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) return -1;
        if (n < cap) out[n] = (int)v;
        n++;
        p = end;
    }
    return n;
}

double tu_json_number(const char *json, const char *key, double dflt) {
    const char *p = json_value(json, key);
    if (!p) return dflt;
    char *end;
    double v = strtod(p, &end);
    return end == p ? dflt : v;
}

int tu_json_string(const char *json, const char *key, char *out, int cap) {
    const char *p = json_value(json, key);
    if (!p || *p != '"' || cap <= 0) return -1;
    p++;
    int n = 0;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            char e = *p++;
            if (e == 'n') c = '\n';
            else if (e == 't') c = '\t';
            else if (e == 'u') {
                c = (char)strtol((char[]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
                p += 4;
            } else c = e;
        }
        if (n < cap - 1) out[n++] = c;
    }
    out[n] = 0;
    return n;
}

void tu_put(tu_buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "tu_put: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

void tu_u32(tu_buf *b, uint32_t v) { tu_put(b, &v, 4); }
void tu_u64(tu_buf *b, uint64_t v) { tu_put(b, &v, 8); }
void tu_str(tu_buf *b, const char *s) { tu_u64(b, strlen(s)); tu_put(b, s, strlen(s)); }
void tu_pad(tu_buf *b, size_t align) { while (b->n % align) tu_put(b, "", 1); }

double tu_max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

int tu_run_cli(const char *bin, const char *args, const char *out_path, const char *err_path, const char *in_path) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s <%s", bin, args, out_path, err_path, in_path ? in_path : "/dev/null");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void tu_expect_cli_msg(const char *bin, const char *args, const char *out_path, const char *err_path, int code,
                       const char *want, const char *unwanted) {
    int got = tu_run_cli(bin, args, out_path, err_path, NULL);
    char *e = tu_read_file(err_path, NULL);
    CHECKF(got == code, "'lethe %s' exited %d, expected %d (stderr: %.300s)", args, got, code, e ? e : "");
    CHECKF(e && strstr(e, want), "'lethe %s': stderr should say \"%s\": %.300s", args, want, e ? e : "");
    if (unwanted) CHECKF(e && !strstr(e, unwanted), "'lethe %s': stderr should not say \"%s\": %.300s", args, unwanted, e ? e : "");
    free(e);
}
