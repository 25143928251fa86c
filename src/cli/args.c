#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"

bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

const char *opt_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "lethe: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_maxrss * 1024L; /* kilobytes on Linux */
}

const char *MODEL_OPTS_USAGE =
    "  -m, --model FILE       GGUF model or llama2.c checkpoint (required)\n"
    "  -z, --tokenizer FILE   llama2.c tokenizer.bin (default: beside the checkpoint)\n"
    "  -t, --threads N        worker threads (default: all cores)\n"
    "  -c, --ctx-size N       context length (default: the model's, at most 4096)\n"
    "  --kv-type T            KV cache storage: f32, f16 (default) or q8_0\n"
    "  --kv-page N            cache slots per KV page (default 32)\n";

void model_opts_init(model_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_type = LETHE_KV_F16;
    o->kv_page_slots = 32;
}

int model_opts_parse(model_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    long n;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->model = v;
    } else if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->tokenizer = v;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_int(v, 1, 1024, &n)) { fprintf(stderr, "lethe: bad thread count '%s'\n", v); return -1; }
        o->n_threads = (int)n;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_int(v, 1, 1 << 24, &n)) { fprintf(stderr, "lethe: bad context size '%s'\n", v); return -1; }
        o->n_ctx = (int)n;
    } else if (!strcmp(a, "--kv-type")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!strcmp(v, "f32")) o->kv_type = LETHE_KV_F32;
        else if (!strcmp(v, "f16")) o->kv_type = LETHE_KV_F16;
        else if (!strcmp(v, "q8_0")) o->kv_type = LETHE_KV_Q8_0;
        else { fprintf(stderr, "lethe: bad KV type '%s' (f32, f16, q8_0)\n", v); return -1; }
    } else if (!strcmp(a, "--kv-page")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_int(v, 1, 4096, &n)) { fprintf(stderr, "lethe: bad KV page size '%s'\n", v); return -1; }
        o->kv_page_slots = (int)n;
    } else {
        return 0;
    }
    return 1;
}

lethe_model *model_opts_load(const model_opts *o) {
    lethe_model_params p = lethe_model_default_params();
    char err[512];
    p.n_threads = o->n_threads;
    p.tokenizer_path = o->tokenizer;
    p.n_ctx = o->n_ctx;
    p.kv_type = o->kv_type;
    p.kv_page_slots = o->kv_page_slots;
    lethe_model *m = lethe_model_load(o->model, &p, err, sizeof err);
    if (!m) fprintf(stderr, "lethe: cannot load '%s': %s\n", o->model, err);
    return m;
}
