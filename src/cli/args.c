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

const char *cli_cmd = "";

/* "lethe" or "lethe CMD", the prefix of every message. */
static const char *who(void) {
    static char buf[64];
    snprintf(buf, sizeof buf, *cli_cmd ? "lethe %s" : "lethe", cli_cmd);
    return buf;
}

int usage_error(void) {
    if (*cli_cmd) fprintf(stderr, "run 'lethe %s --help' for usage\n", cli_cmd);
    else fprintf(stderr, "run 'lethe --help' for usage\n");
    return EXIT_USAGE;
}

int unknown_option(const char *opt) {
    fprintf(stderr, "%s: unknown option '%s'\n", who(), opt);
    return usage_error();
}

const char *opt_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: option %s needs a value\n", who(), argv[*i]);
        usage_error();
        return NULL;
    }
    return argv[++*i];
}

bool opt_int(int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *name = argv[*i], *v = opt_value(argc, argv, i);
    if (!v) return false;
    if (parse_int(v, lo, hi, out)) return true;
    fprintf(stderr, "%s: %s must be an integer in [%ld, %ld], not '%s'\n", who(), name, lo, hi, v);
    usage_error();
    return false;
}

bool opt_float(int argc, char **argv, int *i, double lo, double hi, double *out) {
    const char *name = argv[*i], *v = opt_value(argc, argv, i);
    if (!v) return false;
    if (parse_float(v, lo, hi, out)) return true;
    fprintf(stderr, "%s: %s must be a number in [%g, %g], not '%s'\n", who(), name, lo, hi, v);
    usage_error();
    return false;
}

bool opt_u64(int argc, char **argv, int *i, uint64_t *out) {
    const char *name = argv[*i], *v = opt_value(argc, argv, i);
    if (!v) return false;
    if (parse_u64(v, out)) return true;
    fprintf(stderr, "%s: %s must be an integer in [0, %llu], not '%s'\n", who(), name, (unsigned long long)UINT64_MAX, v);
    usage_error();
    return false;
}

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open '%s': %s\n", who(), path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    bool too_big = false;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= READ_FILE_MAX) { too_big = true; break; }
        size_t next = cap * 2 > READ_FILE_MAX ? READ_FILE_MAX : cap * 2;
        char *nb = realloc(buf, next + 1);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb, cap = next;
    }
    /* A full buffer may just be a file of exactly READ_FILE_MAX bytes. */
    if (too_big && fgetc(f) == EOF && !ferror(f)) too_big = false;
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    const char *why = !buf ? "out of memory" : err ? strerror(err) : NULL;
    if (!why && too_big) {
        fprintf(stderr, "%s: '%s' is larger than the %d MiB limit for text files\n", who(), path, READ_FILE_MAX >> 20);
    } else if (why) {
        fprintf(stderr, "%s: cannot read '%s': %s\n", who(), path, why);
    } else {
        buf[n] = 0;
        *len = n;
        return buf;
    }
    free(buf);
    return NULL;
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
    "  --kv-type T            KV cache storage: f32, f16 (default), q8_0 or q4_0 (4-bit, keys and values per token)\n"
    "  --kv-page N            cache slots per KV page (default 32)\n"
    "  --kv-policy P          what stays when the budget is reached: full (default: exceeding is an error),\n"
    "                         window, h2o, tova, snapkv, lazy, knorm, headwise, quest, mixed (see docs/policies.md)\n"
    "  --kv-budget N          KV slots per layer and KV head of a sequence (a hard cap)\n"
    "  --kv-budget-mib M      the whole KV pool, in MiB (a hard cap)\n"
    "  --kv-seq-mib M         every RAM byte one sequence holds for its KV (hot pages, cold tier, staging,\n"
    "                         policy state), in MiB: the slot budget is derived from it (a hard cap)\n"
    "  --kv-budget-bytes B    the same in bytes\n"
    "  --kv-sink N            attention sinks kept (default 4)\n"
    "  --kv-window N          most recent tokens kept (default: a quarter of the budget)\n"
    "  --kv-lag N             lazy: evict once every N steps (default 16)\n"
    "  --kv-threshold P       attention probability that counts as a hit (default 0.02)\n"
    "  --kv-obs-window N      snapkv: observation window (default 16)\n"
    "  --kv-snap-votes V      snapkv: probe (the prompt's last obs-window tokens vote after every chunk; default) or chunk\n"
    "  --kv-snap-alloc A      snapkv: uniform (default), pyramid (PyramidKV, falling with depth) or\n"
    "                         retrieval budgets (calibrated retrieval heads get the room)\n"
    "  --kv-pyramid-ratio R   snapkv pyramid: first layer's budget over the last's (default 3)\n"
    "  --kv-snap-ada          snapkv: head-adaptive budgets (Ada-KV): a layer's KV heads share its slots by votes\n"
    "  --kv-mixed-question    mixed: rank by snapkv's question votes instead of accumulated attention\n"
    "  --kv-pool N            snapkv: pooling kernel (default 7)\n"
    "  --kv-keyformer         h2o: Keyformer's Gumbel-regularised score\n"
    "  --kv-reindex           window: re-index positions within the cache (StreamingLLM), to run past the\n"
    "                         model's training context\n"
    "  --kv-calib FILE        headwise: calibration file (made on first use)\n"
    "  --kv-quest-pages N     quest: cold pages attended per step (default: budget / page size)\n"
    "  --kv-cold S            quest: cold storage q8_0 (default), q4 (Q4_0, keys per channel), disk-q8_0,\n"
    "                         disk-q4 (pages in a file, bounds in RAM)\n"
    "  --kv-cold-dir DIR      quest: directory of the disk cold tier's files (default $TMPDIR or /tmp)\n"
    "  --kv-hot-fraction F    mixed: share of the budget kept at full precision (default 0.5)\n";

const char *kv_type_name(lethe_kv_type t) {
    switch (t) {
    case LETHE_KV_F32: return "f32";
    case LETHE_KV_F16: return "f16";
    case LETHE_KV_Q8_0: return "q8_0";
    case LETHE_KV_Q4_0: return "q4_0";
    }
    return "?";
}

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

/* "lethe CMD: unknown KV policy 'X' (full, window, ...)" and the usage hint. */
static int bad_policy(const char *name) {
    fprintf(stderr, "%s: unknown KV policy '%s' (", who(), name);
    for (const char *const *n = lethe_kv_policy_names(); *n; n++)
        fprintf(stderr, "%s%s", n == lethe_kv_policy_names() ? "" : ", ", *n);
    fprintf(stderr, ")\n");
    return usage_error();
}

static bool is(const char *a, const char *short_name, const char *long_name) {
    return (short_name && !strcmp(a, short_name)) || !strcmp(a, long_name);
}

/* An int option in [lo, hi] into *dst. */
static bool int_opt(int argc, char **argv, int *i, long lo, long hi, int *dst) {
    long n;
    if (!opt_int(argc, argv, i, lo, hi, &n)) return false;
    *dst = (int)n;
    return true;
}

/* Policy parameters by flag: remembered so model_opts_check can tell
 * whether the policy reads them. */
static const char *const POLICY_FLAGS[] = {"sink", "window", "lag", "obs-window", "pool", "quest-pages", "threshold",
                                           "hot-fraction", "keyformer", "reindex", "calib", "cold", "cold-dir", NULL};

static void note_kv_flag(model_opts *o, const char *a) {
    if (strncmp(a, "--kv-", 5)) return;
    for (int k = 0; POLICY_FLAGS[k]; k++)
        if (!strcmp(a + 5, POLICY_FLAGS[k]) && o->n_kv_flags < 16) o->kv_flags[o->n_kv_flags++] = POLICY_FLAGS[k];
}

bool model_opts_check(const model_opts *o) {
    const char *policy = o->kv.name ? o->kv.name : "full";
    for (int k = 0; k < o->n_kv_flags; k++) {
        if (lethe_kv_policy_uses(policy, o->kv_flags[k])) continue;
        char users[256] = "";
        for (const char *const *n = lethe_kv_policy_names(); *n; n++)
            if (lethe_kv_policy_uses(*n, o->kv_flags[k]))
                snprintf(users + strlen(users), sizeof users - strlen(users), "%s%s", users[0] ? ", " : "", *n);
        fprintf(stderr, "%s: --kv-%s does not apply to policy %s (used by: %s)\n", who(), o->kv_flags[k], policy,
                users[0] ? users : "none");
        usage_error();
        return false;
    }
    return true;
}

int model_opts_parse(model_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    note_kv_flag(o, a);
    double x;
    bool ok = true;
    if (is(a, "-m", "--model")) ok = (o->model = opt_value(argc, argv, i)) != NULL;
    else if (is(a, "-z", "--tokenizer")) ok = (o->tokenizer = opt_value(argc, argv, i)) != NULL;
    else if (is(a, "-t", "--threads")) ok = int_opt(argc, argv, i, 1, 1024, &o->n_threads);
    else if (is(a, "-c", "--ctx-size")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->n_ctx);
    else if (is(a, NULL, "--kv-type")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!strcmp(v, "f32")) o->kv_type = LETHE_KV_F32;
        else if (!strcmp(v, "f16")) o->kv_type = LETHE_KV_F16;
        else if (!strcmp(v, "q8_0")) o->kv_type = LETHE_KV_Q8_0;
        else if (!strcmp(v, "q4_0")) o->kv_type = LETHE_KV_Q4_0;
        else {
            fprintf(stderr, "%s: unknown KV type '%s' (f32, f16, q8_0, q4_0)\n", who(), v);
            usage_error();
            return -1;
        }
    } else if (is(a, NULL, "--kv-page")) ok = int_opt(argc, argv, i, 1, 4096, &o->kv_page_slots);
    else if (is(a, NULL, "--kv-policy")) {
        if (!(v = opt_value(argc, argv, i))) return -1;
        if (!known_policy(v)) { bad_policy(v); return -1; }
        o->kv.name = v;
    } else if (is(a, NULL, "--kv-budget")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->kv.budget);
    else if (is(a, NULL, "--kv-sink")) ok = int_opt(argc, argv, i, 0, 1 << 24, &o->kv.sink);
    else if (is(a, NULL, "--kv-window")) ok = int_opt(argc, argv, i, 0, 1 << 24, &o->kv.window);
    else if (is(a, NULL, "--kv-lag")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->kv.lag);
    else if (is(a, NULL, "--kv-obs-window")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->kv.obs_window);
    else if (is(a, NULL, "--kv-pool")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->kv.pool_kernel);
    else if (is(a, NULL, "--kv-quest-pages")) ok = int_opt(argc, argv, i, 1, 1 << 24, &o->kv.quest_pages);
    else if (is(a, NULL, "--kv-budget-mib")) {
        if ((ok = opt_float(argc, argv, i, 1e-6, 1e9, &x))) o->kv_budget_mib = x;
    } else if (is(a, NULL, "--kv-seq-mib")) {
        if ((ok = opt_float(argc, argv, i, 1e-6, 1e9, &x))) o->kv.budget_bytes = (size_t)(x * 1048576.0);
    } else if (is(a, NULL, "--kv-budget-bytes")) {
        if ((ok = opt_float(argc, argv, i, 1, 1e15, &x))) o->kv.budget_bytes = (size_t)x;
    } else if (is(a, NULL, "--kv-cold")) {
        ok = (o->kv.cold = opt_value(argc, argv, i)) != NULL;
    } else if (is(a, NULL, "--kv-cold-dir")) {
        ok = (o->kv.cold_dir = opt_value(argc, argv, i)) != NULL;
    } else if (is(a, NULL, "--kv-threshold")) {
        if ((ok = opt_float(argc, argv, i, 0, 1, &x))) o->kv.hit_threshold = (float)x;
    } else if (is(a, NULL, "--kv-hot-fraction")) {
        if ((ok = opt_float(argc, argv, i, 0.01, 1, &x))) o->kv.hot_fraction = (float)x;
    } else if (is(a, NULL, "--kv-keyformer")) o->kv.keyformer = true;
    else if (is(a, NULL, "--kv-reindex")) o->kv.reindex = true;
    else if (is(a, NULL, "--kv-calib")) ok = (o->kv.calib_path = opt_value(argc, argv, i)) != NULL;
    else if (is(a, NULL, "--kv-snap-votes") || is(a, NULL, "--kv-snap-alloc")) { /* snapkv (docs/policies.md) */
        const bool votes = is(a, NULL, "--kv-snap-votes");
        if (!(v = opt_value(argc, argv, i))) return -1;
        int *dst = votes ? &o->kv.snap_votes : &o->kv.snap_alloc;
        if (votes && !strcmp(v, "probe")) *dst = LETHE_SNAP_PROBE;
        else if (votes && !strcmp(v, "chunk")) *dst = LETHE_SNAP_CHUNK;
        else if (!votes && !strcmp(v, "uniform")) *dst = LETHE_SNAP_UNIFORM;
        else if (!votes && !strcmp(v, "pyramid")) *dst = LETHE_SNAP_PYRAMID;
        else if (!votes && !strcmp(v, "retrieval")) *dst = LETHE_SNAP_RETRIEVAL;
        else {
            fprintf(stderr, "%s: unknown %s '%s' (%s)\n", who(), a, v, votes ? "probe, chunk" : "uniform, pyramid, retrieval");
            usage_error();
            return -1;
        }
    } else if (is(a, NULL, "--kv-pyramid-ratio")) {
        if ((ok = opt_float(argc, argv, i, 0.001, 1000, &x))) o->kv.pyramid_ratio = (float)x;
    } else if (is(a, NULL, "--kv-mixed-question")) o->kv.mixed_question = true;
    else if (is(a, NULL, "--kv-snap-ada")) o->kv.snap_ada = true;
    else return 0;
    return ok ? 1 : -1;
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

int sampler_opts_parse(lethe_sampler_params *sp, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    long n;
    double x;
    bool ok;
    if (!strcmp(a, "--temp")) { if ((ok = opt_float(argc, argv, i, 0, 100, &x))) sp->temperature = (float)x; }
    else if (!strcmp(a, "--top-k")) { if ((ok = opt_int(argc, argv, i, 0, 1 << 24, &n))) sp->top_k = (int)n; }
    else if (!strcmp(a, "--top-p")) { if ((ok = opt_float(argc, argv, i, 0, 1, &x))) sp->top_p = (float)x; }
    else if (!strcmp(a, "--min-p")) { if ((ok = opt_float(argc, argv, i, 0, 1, &x))) sp->min_p = (float)x; }
    else if (!strcmp(a, "--repeat-penalty")) { if ((ok = opt_float(argc, argv, i, 0.01, 100, &x))) sp->repeat_penalty = (float)x; }
    else if (!strcmp(a, "--repeat-last-n")) { if ((ok = opt_int(argc, argv, i, 0, 1 << 20, &n))) sp->repeat_last_n = (int)n; }
    else if (!strcmp(a, "--seed")) ok = opt_u64(argc, argv, i, &sp->seed);
    else return 0;
    return ok ? 1 : -1;
}
