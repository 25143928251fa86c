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

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, (cap *= 2) + 1);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
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
    "  --kv-page N            cache slots per KV page (default 32)\n"
    "  --kv-policy P          what stays when the budget is reached: full (default: exceeding is an error),\n"
    "                         window, h2o, tova, snapkv, lazy, knorm, headwise, quest, mixed (see docs/policies.md)\n"
    "  --kv-budget N          KV slots per layer and KV head of a sequence (a hard cap)\n"
    "  --kv-budget-mib M      the whole KV pool, in MiB (a hard cap)\n"
    "  --kv-sink N            attention sinks kept (default 4)\n"
    "  --kv-window N          most recent tokens kept (default: a quarter of the budget)\n"
    "  --kv-lag N             lazy: evict once every N steps (default 16)\n"
    "  --kv-threshold P       attention probability that counts as a hit (default 0.02)\n"
    "  --kv-obs-window N      snapkv: observation window (default 16)\n"
    "  --kv-pool N            snapkv: pooling kernel (default 7)\n"
    "  --kv-keyformer         h2o: Keyformer's Gumbel-regularised score\n"
    "  --kv-calib FILE        headwise: calibration file (made on first use)\n"
    "  --kv-quest-pages N     quest: cold pages attended per step (default: budget / page size)\n"
    "  --kv-hot-fraction F    mixed: share of the budget kept at full precision (default 0.5)\n";

void model_opts_init(model_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_type = LETHE_KV_F16;
    o->kv_page_slots = 32;
    o->kv = lethe_seq_default_params().kv;
}

lethe_seq_params model_opts_seq_params(const model_opts *o) {
    lethe_seq_params p = lethe_seq_default_params();
    p.kv = o->kv;
    return p;
}

static bool known_policy(const char *name) {
    for (const char *const *n = lethe_kv_policy_names(); *n; n++)
        if (!strcmp(*n, name)) return true;
    return false;
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
    } else if (!strcmp(a, "--kv-policy")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!known_policy(v)) { fprintf(stderr, "lethe: unknown KV policy '%s'\n", v); return -1; }
        o->kv.name = v;
    } else if (!strcmp(a, "--kv-budget") || !strcmp(a, "--kv-sink") || !strcmp(a, "--kv-window") || !strcmp(a, "--kv-lag") ||
               !strcmp(a, "--kv-obs-window") || !strcmp(a, "--kv-pool")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_int(v, !strcmp(a, "--kv-sink") || !strcmp(a, "--kv-window") ? 0 : 1, 1 << 24, &n)) {
            fprintf(stderr, "lethe: bad value '%s' for %s\n", v, a);
            return -1;
        }
        int *dst = !strcmp(a, "--kv-budget") ? &o->kv.budget : !strcmp(a, "--kv-sink") ? &o->kv.sink
                 : !strcmp(a, "--kv-window") ? &o->kv.window : !strcmp(a, "--kv-lag") ? &o->kv.lag
                 : !strcmp(a, "--kv-obs-window") ? &o->kv.obs_window : &o->kv.pool_kernel;
        *dst = (int)n;
    } else if (!strcmp(a, "--kv-budget-mib")) {
        double x;
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_float(v, 1e-6, 1e9, &x)) { fprintf(stderr, "lethe: bad KV budget '%s' MiB\n", v); return -1; }
        o->kv_budget_mib = x;
    } else if (!strcmp(a, "--kv-threshold")) {
        double x;
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_float(v, 0, 1, &x)) { fprintf(stderr, "lethe: bad threshold '%s'\n", v); return -1; }
        o->kv.hit_threshold = (float)x;
    } else if (!strcmp(a, "--kv-quest-pages")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_int(v, 1, 1 << 24, &n)) { fprintf(stderr, "lethe: bad value '%s' for %s\n", v, a); return -1; }
        o->kv.quest_pages = (int)n;
    } else if (!strcmp(a, "--kv-hot-fraction")) {
        double x;
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!parse_float(v, 0.01, 1, &x)) { fprintf(stderr, "lethe: bad value '%s' for %s\n", v, a); return -1; }
        o->kv.hot_fraction = (float)x;
    } else if (!strcmp(a, "--kv-keyformer")) {
        o->kv.keyformer = true;
    } else if (!strcmp(a, "--kv-calib")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        o->kv.calib_path = v;
    } else {
        return 0;
    }
    return 1;
}

lethe_model *model_opts_load(const model_opts *o) {
    lethe_model_params p = lethe_model_default_params();
    char err[512];
    p.tokenizer_path = o->tokenizer;
    lethe_model *m = lethe_model_load(o->model, &p, err, sizeof err);
    if (!m) fprintf(stderr, "lethe: cannot load '%s': %s\n", o->model, err);
    return m;
}

lethe_ctx *model_opts_context(const model_opts *o, const lethe_model *m, int n_ctx, int n_seq_max) {
    lethe_ctx_params p = lethe_ctx_default_params();
    char err[512];
    p.n_threads = o->n_threads;
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq_max;
    p.kv_type = o->kv_type;
    p.kv_page_slots = o->kv_page_slots;
    p.kv_budget_mib = o->kv_budget_mib;
    lethe_ctx *c = lethe_ctx_create(m, &p, err, sizeof err);
    if (!c) fprintf(stderr, "lethe: cannot set up the engine for '%s': %s\n", o->model, err);
    return c;
}
