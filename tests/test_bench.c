/* lethe bench as llama-bench reports: the read-bandwidth kernel reads the
 * whole buffer (its fold equals a byte-wise reference), the weight bytes
 * per decode token equal the model's tensor sizes summed here from the GGUF
 * file, the KV bytes of a tg test are its mean attended slots (depth, then
 * one more each step) x the K and V rows of every layer's KV heads, and the
 * md / csv / json / jsonl outputs parse with one row per model x threads x
 * test x depth, n samples for n repetitions and sd 0 for one.
 * Correctness only: no figure is compared with a speed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "lethe.h"
#include "model/model.h"
#include "tensor/membw.h"
#include "tensor/threadpool.h"
#include "testutil.h"

#if defined(LETHE_TEST_CJSON) && LETHE_TEST_CJSON
#include <cjson/cJSON.h>
#endif

static const char *bin;
static char out_path[256], err_path[256];

/* ---- the bandwidth kernel ---- */

/* XOR of little-endian 64-bit words, the tail zero-extended: byte by byte. */
static uint64_t xor_reference(const unsigned char *p, size_t n) {
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= (uint64_t)p[i] << (8 * (i % 8));
    return x;
}

static void test_membw_xor(void) {
    const size_t cap = (1 << 20) + 64;
    unsigned char *buf = malloc(cap);
    if (!buf) { CHECK(0); return; }
    uint64_t s = 12345;
    for (size_t i = 0; i < cap; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(s >> 56);
    }
    threadpool *pools[3] = {NULL, tp_create(2), tp_create(3)};
    CHECK(pools[1] && pools[2]);
    const size_t sizes[] = {0, 1, 7, 8, 9, 31, 127, 128, 129, 1000, 4096 + 3, 65536 + 200, 1 << 20};
    const size_t offsets[] = {0, 1, 3, 8, 13};
    for (int p = 0; p < 3; p++)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
                const unsigned char *b = buf + offsets[o];
                uint64_t want = xor_reference(b, sizes[k]), got = lt_membw_xor(pools[p], b, sizes[k]);
                CHECKF(got == want, "xor of %zu bytes at +%zu on %d threads: %016llx, want %016llx", sizes[k], offsets[o],
                       pools[p] ? tp_n_threads(pools[p]) : 1, (unsigned long long)got, (unsigned long long)want);
            }
    /* one flipped bit anywhere changes the fold: every byte is read */
    for (size_t pos = 0; pos < (1 << 20); pos += 65521) {
        uint64_t before = lt_membw_xor(pools[1], buf, 1 << 20);
        buf[pos] ^= 0x10;
        CHECKF(lt_membw_xor(pools[1], buf, 1 << 20) != before, "a flipped bit at %zu is seen", pos);
        buf[pos] ^= 0x10;
    }

    /* measure: positive finite figure, fold of the documented fill pattern */
    char err[256];
    lt_membw bw;
    const size_t bytes = (8u << 20) + 100; /* rounded down to a multiple of 64 */
    CHECK(lt_membw_measure(pools[2], bytes, 3, &bw, err, sizeof err));
    CHECKF(bw.bytes == (bytes & ~(size_t)63) && bw.passes == 3, "bytes %zu, passes %d", bw.bytes, bw.passes);
    CHECKF(isfinite(bw.bytes_per_s) && bw.bytes_per_s > 0 && bw.best_s > 0, "bandwidth %g B/s in %g s", bw.bytes_per_s, bw.best_s);
    uint64_t want = 0;
    for (uint64_t i = 0; i < bw.bytes / 8; i++) want ^= i * 0x9e3779b97f4a7c15ull ^ 0x5bd1e9955bd1e995ull;
    CHECKF(bw.checksum == want, "measure's fold %016llx, the pattern's %016llx", (unsigned long long)bw.checksum,
           (unsigned long long)want);
    CHECK(!lt_membw_measure(pools[1], 0, 3, &bw, err, sizeof err) && strstr(err, "bandwidth:"));
    CHECK(!lt_membw_measure(pools[1], 4096, 0, &bw, err, sizeof err));
    CHECK(lt_membw_default_bytes() >= ((size_t)512 << 20));
    tp_free(pools[1]);
    tp_free(pools[2]);
    free(buf);
}

/* ---- weight bytes per token ---- */

/* From the file: every tensor once, 1-D ones (norms, biases) as the F32 the
 * model holds, the token embedding one row only (and all of it again when
 * there is no output matrix: tied embeddings). */
static uint64_t file_decode_bytes(const char *path) {
    char err[LETHE_ERR_MAX];
    lt_gguf_file *f = lt_gguf_open(path, err, NULL);
    if (!f) return 0;
    uint64_t b = 0;
    bool has_output = lt_gguf_find_tensor(f, "output.weight") != NULL;
    for (int64_t i = 0; i < lt_gguf_n_tensors(f); i++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(f, i);
        if (!strcmp(t->cname, "token_embd.weight")) {
            b += t->n_bytes / (uint64_t)t->ne[1];
            if (!has_output) b += t->n_bytes;
        } else if (t->n_dims == 1) {
            b += t->n_elements * sizeof(float);
        } else {
            b += t->n_bytes;
        }
    }
    lt_gguf_close(f);
    return b;
}

static uint64_t model_bytes(const char *path) {
    char err[512];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    CHECKF(m != NULL, "load %s: %s", path, err);
    if (!m) return 0;
    uint64_t b = model_decode_bytes(m);
    CHECKF(b < m->weight_bytes + (uint64_t)m->hp.n_embd * 4 * 4, "%s: %llu bytes a token, %llu in the weights", path,
           (unsigned long long)b, (unsigned long long)m->weight_bytes);
    lethe_model_free(m);
    return b;
}

/* K + V bytes of one cache slot in every layer and KV head, F16 rows (the
 * default --kv-type). */
static double kv_slot_bytes(const char *path) {
    char err[512];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!m) return 0;
    const double b = 2.0 * m->hp.head_dim * 2 * m->hp.n_layer * m->hp.n_head_kv;
    lethe_model_free(m);
    return b;
}

static void test_decode_bytes(const char *path) {
    uint64_t want = file_decode_bytes(path), got = model_bytes(path);
    CHECKF(want > 0 && got == want, "%s: model_decode_bytes %llu, from the file %llu", path, (unsigned long long)got,
           (unsigned long long)want);
}

/* ---- the CLI's outputs ---- */

static int run(const char *args) { return tu_run_cli(bin, args, out_path, err_path, NULL); }

static char *run_ok(const char *args) {
    int rc = run(args);
    char *e = tu_read_file(err_path, NULL);
    CHECKF(rc == 0, "'lethe %s' exited %d: %.300s", args, rc, e ? e : "");
    free(e);
    return rc == 0 ? tu_read_file(out_path, NULL) : NULL;
}

static void expect_msg(const char *args, int code, const char *want) {
    tu_expect_cli_msg(bin, args, out_path, err_path, code, want, NULL);
}

/* Splits one CSV record (RFC 4180 quoting) at *p into fields[]; returns the
 * count and advances *p past the line; -1 on bad quoting. */
static int csv_record(const char **p, char fields[][512], int cap) {
    const char *s = *p;
    int n = 0;
    for (;;) {
        char *out = n < cap ? fields[n] : NULL;
        size_t len = 0;
        if (*s == '"') {
            for (s++;; s++) {
                if (!*s) return -1;
                if (*s == '"' && s[1] == '"') s++;
                else if (*s == '"') { s++; break; }
                if (out && len + 1 < 512) out[len++] = *s;
            }
        } else {
            for (; *s && *s != ',' && *s != '\n'; s++)
                if (out && len + 1 < 512) out[len++] = *s;
        }
        if (out) out[len] = 0;
        n++;
        if (*s == ',') { s++; continue; }
        if (*s == '\n') s++;
        else if (*s) return -1;
        *p = s;
        return n;
    }
}

static int count_words(const char *s) {
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        n++;
        while (*p && *p != ' ') p++;
    }
    return n;
}

static void test_csv(const char *args, int want_rows, int reps) {
    char *o = run_ok(args);
    if (!o) return;
    static char fields[64][512], head[64][512];
    const char *p = o;
    int n_cols = csv_record(&p, head, 64), rows = 0, i_test = -1, i_samples = -1, i_sd = -1, i_bound = -1;
    CHECKF(n_cols > 10, "csv header: %.200s", o);
    for (int k = 0; k < n_cols && k < 64; k++) {
        if (!strcmp(head[k], "test")) i_test = k;
        if (!strcmp(head[k], "samples_ns")) i_samples = k;
        if (!strcmp(head[k], "stddev_ts")) i_sd = k;
        if (!strcmp(head[k], "bound_pct")) i_bound = k;
    }
    CHECK(i_test >= 0 && i_samples >= 0 && i_sd >= 0 && i_bound >= 0);
    while (*p && i_test >= 0 && i_samples >= 0 && i_sd >= 0 && i_bound >= 0) {
        int n = csv_record(&p, fields, 64);
        CHECKF(n == n_cols, "csv row %d: %d fields, header %d", rows, n, n_cols);
        if (n != n_cols) break;
        CHECKF(count_words(fields[i_samples]) == reps, "row %d: %d samples for %d repetitions", rows,
               count_words(fields[i_samples]), reps);
        if (reps == 1) CHECKF(atof(fields[i_sd]) == 0, "one repetition: sd %s", fields[i_sd]);
        bool tg = !strncmp(fields[i_test], "tg", 2);
        CHECKF(tg == (fields[i_bound][0] != 0), "row %d (%s): bound_pct '%s' only for tg", rows, fields[i_test], fields[i_bound]);
        rows++;
    }
    CHECKF(rows == want_rows, "'%s': %d csv rows, want %d", args, rows, want_rows);
    free(o);
}

static void test_md(const char *args, int want_rows) {
    char *o = run_ok(args);
    if (!o) return;
    int rows = 0, pipes_head = -1;
    for (char *line = strtok(o, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '|') continue;
        int pipes = 0;
        for (char *c = line; *c; c++) pipes += *c == '|';
        if (pipes_head < 0) {
            pipes_head = pipes;
            CHECKF(strstr(line, "| model") && strstr(line, " t/s |"), "md header: %s", line);
            continue;
        }
        CHECKF(pipes == pipes_head, "md row with %d cells' bars, header %d: %s", pipes, pipes_head, line);
        if (!strncmp(line, "| ---", 5)) continue;
        CHECKF(strstr(line, " ± ") != NULL, "md t/s as mean ± sd: %s", line);
        rows++;
    }
    CHECKF(rows == want_rows, "'%s': %d md rows, want %d", args, rows, want_rows);
    free(o);
}

#if defined(LETHE_TEST_CJSON) && LETHE_TEST_CJSON
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* One test's object: samples, their mean and sd, the roofline for tg. */
static void check_object(const cJSON *o, int reps, const char *const *models, const uint64_t *model_bpt, const double *slot_bytes,
                         int n_models) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "samples_ns");
    CHECKF(cJSON_IsArray(s) && cJSON_GetArraySize(s) == reps, "samples_ns: %d for %d repetitions",
           cJSON_IsArray(s) ? cJSON_GetArraySize(s) : -1, reps);
    CHECK(num(o, "repetitions") == reps);
    double sum = 0, sq = 0;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, s) {
        CHECK(cJSON_IsNumber(e) && e->valuedouble > 0);
        sum += e->valuedouble;
        n++;
    }
    double mean = n ? sum / n : 0;
    cJSON_ArrayForEach(e, s) sq += (e->valuedouble - mean) * (e->valuedouble - mean);
    double sd = n > 1 ? sqrt(sq / (n - 1)) : 0;
    CHECKF(fabs(num(o, "avg_ns") - mean) <= 1, "avg_ns %g, mean of the samples %g", num(o, "avg_ns"), mean);
    CHECKF(fabs(num(o, "stddev_ns") - sd) <= 1, "stddev_ns %g, sd of the samples %g", num(o, "stddev_ns"), sd);
    if (reps == 1) CHECK(num(o, "stddev_ts") == 0 && num(o, "stddev_ns") == 0);
    CHECK(num(o, "avg_ts") > 0 && num(o, "model_size") > 0 && num(o, "model_n_params") > 0);
    CHECK(str(o, "simd")[0] && str(o, "kv_type")[0] && !strcmp(str(o, "backend"), "CPU"));
    const char *file = str(o, "model_filename");
    int k = 0;
    while (k < n_models && strcmp(file, models[k])) k++;
    CHECKF(k < n_models, "model_filename '%s' is one of the models", file);
    if (k < n_models)
        CHECKF(num(o, "bytes_per_token") == (double)model_bpt[k], "%s: bytes_per_token %.0f, from the file %llu", file,
               num(o, "bytes_per_token"), (unsigned long long)model_bpt[k]);
    const char *test = str(o, "test");
    const int np = (int)num(o, "n_prompt"), ng = (int)num(o, "n_gen"), nd = (int)num(o, "n_depth");
    char want[64], at[32] = "";
    if (nd) snprintf(at, sizeof at, " @ d%d", nd);
    if (np && ng) snprintf(want, sizeof want, "pp%d+tg%d%s", np, ng, at);
    else snprintf(want, sizeof want, np ? "pp%d%s" : "tg%d%s", np ? np : ng, at);
    CHECKF(!strcmp(test, want), "test '%s' for n_prompt %d, n_gen %d, n_depth %d", test, np, ng, nd);
    /* a cache that only grows: step i of ng attends depth + prompt + i + 1 slots */
    const double kv = num(o, "kv_bytes_per_token"), want_kv = ng ? (nd + np + (ng + 1) / 2.0) * slot_bytes[k < n_models ? k : 0] : 0;
    CHECKF(fabs(kv - want_kv) <= 0.5, "%s: kv_bytes_per_token %.0f, want %.1f", test, kv, want_kv);
    const double step_bytes = num(o, "bytes_per_token") + kv;
    const cJSON *bound = cJSON_GetObjectItemCaseSensitive(o, "bound_pct");
    if (np == 0) {
        double bw = num(o, "read_bw_bytes_per_s"), bts = num(o, "bound_ts"), pct = num(o, "bound_pct");
        CHECKF(isfinite(bw) && bw > 0 && isfinite(bts) && bts > 0, "tg roofline: bw %g, bound %g", bw, bts);
        CHECKF(fabs(bts - bw / step_bytes) <= 1e-6 * bts, "bound = bw / (weight + KV bytes): %g", bts);
        /* each repetition against the bandwidth read just before it */
        const cJSON *sbw = cJSON_GetObjectItemCaseSensitive(o, "samples_bw_bytes_per_s");
        const cJSON *sts = cJSON_GetObjectItemCaseSensitive(o, "samples_ts");
        CHECKF(cJSON_IsArray(sbw) && cJSON_GetArraySize(sbw) == reps && cJSON_IsArray(sts), "samples_bw_bytes_per_s: %d for %d",
               cJSON_IsArray(sbw) ? cJSON_GetArraySize(sbw) : -1, reps);
        if (cJSON_IsArray(sbw) && cJSON_GetArraySize(sbw) == reps && cJSON_IsArray(sts)) {
            double want_pct = 0, want_bw = 0;
            for (int i = 0; i < reps; i++) {
                const double b = cJSON_GetArrayItem(sbw, i)->valuedouble, t = cJSON_GetArrayItem(sts, i)->valuedouble;
                want_bw += b / reps;
                want_pct += 100 * t * step_bytes / b / reps;
            }
            CHECKF(fabs(bw - want_bw) <= 1e-6 * bw + 1, "read_bw %g, mean of the samples %g", bw, want_bw);
            CHECKF(fabs(pct - want_pct) <= 1e-3 * pct, "%% of bound %g, mean of the paired ratios %g", pct, want_pct);
        }
    } else {
        CHECKF(cJSON_IsNull(bound), "no roofline for %s", test);
    }
}

/* The JSON array (or JSON lines) of a call: n_objects objects, each checked. */
static void test_json(const char *args, bool lines, int want, int reps, const char *const *models, const uint64_t *bpt,
                      const double *slot_bytes, int n_models, int *threads_seen, int *depth_seen) {
    char *o = run_ok(args);
    if (!o) return;
    int n = 0;
    if (!lines) {
        cJSON *j = cJSON_Parse(o);
        CHECKF(cJSON_IsArray(j), "'%s': a JSON array: %.300s", args, o);
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            check_object(e, reps, models, bpt, slot_bytes, n_models);
            int t = (int)num(e, "n_threads"), d = (int)num(e, "n_depth");
            if (threads_seen && t >= 1 && t <= 8) threads_seen[t]++;
            if (depth_seen && d >= 0 && d <= 8) depth_seen[d]++;
            n++;
        }
        cJSON_Delete(j);
    } else {
        for (char *line = strtok(o, "\n"); line; line = strtok(NULL, "\n")) {
            cJSON *j = cJSON_Parse(line);
            CHECKF(cJSON_IsObject(j), "a JSON object a line: %.200s", line);
            if (j) check_object(j, reps, models, bpt, slot_bytes, n_models);
            cJSON_Delete(j);
            n++;
        }
    }
    CHECKF(n == want, "'%s': %d objects, want %d", args, n, want);
    free(o);
}
#endif

static void test_cli(const char *a, const char *b) {
    char args[2048], odd_dir[256], odd[512];
    /* a model path that JSON and CSV must escape: quote, backslash, comma-free, invalid UTF-8 */
    snprintf(odd_dir, sizeof odd_dir, "/tmp/lethe_bench_%d", (int)getpid());
    snprintf(odd, sizeof odd, "%s/m\"q\\b\xff.gguf", odd_dir);
    mkdir(odd_dir, 0700);
    char abs_a[4096];
    CHECK(realpath(a, abs_a) != NULL);
    CHECK(symlink(abs_a, odd) == 0);
    char odd_sh[600]; /* single-quoted for the shell */
    snprintf(odd_sh, sizeof odd_sh, "'%s'", odd);

    /* 2 models x 2 thread counts x (pp8, tg4; pp0 skipped) */
    const char *sizes = "-p 0,8 -n 4 -t 1,2 --bw-mib 8";
    snprintf(args, sizeof args, "bench -m %s -m %s %s -r 2 -o csv", a, b, sizes);
    test_csv(args, 8, 2);
    snprintf(args, sizeof args, "bench -m %s,%s %s -r 1", a, b, sizes);
    test_md(args, 8);
    snprintf(args, sizeof args, "bench -m %s %s -r 1 --bw-mib 0", a, sizes);
    test_md(args, 4);
    snprintf(args, sizeof args, "bench -m %s -p 0 -n 0 -pg 4,2 -pg 2,1 -t 1 -r 1 --bw-mib 8 -o csv", odd_sh);
    test_csv(args, 2, 1);
    snprintf(args, sizeof args, "bench -m %s -p 4 -n 2 -d 0,3,5 -t 1 -r 1 --bw-mib 8 -o csv", a);
    test_csv(args, 6, 1);
    snprintf(args, sizeof args, "bench -m %s -p 4 -n 2 -d 5 -t 1 -r 1 --bw-mib 0", a);
    test_md(args, 2);
    /* a cache held at its budget reads at most the budget's slots and the new one */
    snprintf(args, sizeof args, "bench -m %s -p 0 -n 4 -d 24 -t 1 -r 1 --bw-mib 8 --kv-policy window --kv-budget 8 -o csv", a);
    char *w = run_ok(args);
    if (w) {
        static char head[64][512], row[64][512];
        const char *p = w;
        const int n = csv_record(&p, head, 64);
        CHECK(csv_record(&p, row, 64) == n);
        int i_kv = -1;
        for (int k = 0; k < n && k < 64; k++)
            if (!strcmp(head[k], "kv_bytes_per_token")) i_kv = k;
        const double slot = kv_slot_bytes(a);
        CHECKF(i_kv >= 0 && slot > 0 && atof(row[i_kv]) > 0 && atof(row[i_kv]) <= 9 * slot + 0.5,
               "window of 8 at depth 24: kv_bytes_per_token %s, at most %.0f", i_kv >= 0 ? row[i_kv] : "?", 9 * slot);
        free(w);
    }
#if defined(LETHE_TEST_CJSON) && LETHE_TEST_CJSON
    char odd_json[600]; /* as the JSON gives it back: U+FFFD for the stray byte */
    snprintf(odd_json, sizeof odd_json, "%s/m\"q\\b\xef\xbf\xbd.gguf", odd_dir);
    const char *models[3] = {a, b, odd_json};
    const uint64_t bpt[3] = {file_decode_bytes(a), file_decode_bytes(b), file_decode_bytes(a)};
    const double slot_bytes[3] = {kv_slot_bytes(a), kv_slot_bytes(b), kv_slot_bytes(a)};
    CHECK(slot_bytes[0] > 0 && slot_bytes[1] > 0);
    int threads_seen[9] = {0}, depth_seen[9] = {0};
    snprintf(args, sizeof args, "bench -m %s -m %s %s -r 3 -o json", a, b, sizes);
    test_json(args, false, 8, 3, models, bpt, slot_bytes, 2, threads_seen, NULL);
    CHECKF(threads_seen[1] == 4 && threads_seen[2] == 4, "4 tests at 1 thread and 4 at 2: %d, %d", threads_seen[1], threads_seen[2]);
    snprintf(args, sizeof args, "bench -m %s -p 8 -n 4 -pg 4,2 -t 1 -r 1 --bw-mib 8 -o jsonl", odd_sh);
    test_json(args, true, 3, 1, models + 2, bpt + 2, slot_bytes + 2, 1, NULL, NULL);
    /* depths: each test at 0 and 6 tokens already in the context */
    snprintf(args, sizeof args, "bench -m %s -p 4 -n 3 -pg 2,2 -d 0,6 -t 1 -r 1 --bw-mib 8 -o json", b);
    test_json(args, false, 6, 1, models + 1, bpt + 1, slot_bytes + 1, 1, NULL, depth_seen);
    CHECKF(depth_seen[0] == 3 && depth_seen[6] == 3, "3 tests at depth 0 and 3 at 6: %d, %d", depth_seen[0], depth_seen[6]);
#else
    tu_skip_part("JSON output: cJSON (libcjson-dev) not found at build time");
#endif
    unlink(odd);
    rmdir(odd_dir);
}

static void test_bad_args(const char *a) {
    char args[1024];
    const struct {
        const char *opts, *msg;
        int code;
    } bad[] = {
        {"-o xml", "unknown output format 'xml' (md, csv, json, jsonl)", 2},
        {"-t 1,0", "-t must be an integer in [1, 1024] or a comma list of them, not '1,0'", 2},
        {"-p 8,,16", "-p must be an integer in [0, ", 2},
        {"-n 4,x", "-n must be an integer in [0, ", 2},
        {"-pg 5", "-pg must be two integers PP,TG", 2},
        {"-pg 5,0", "-pg must be two integers PP,TG", 2},
        {"-d 4,-1", "-d must be an integer in [0, ", 2},
        {"-r 0", "-r must be an integer in [1, 1000]", 2},
        {"--bw-mib -1", "--bw-mib must be an integer in [0, ", 2},
        {"-m ,", "-m: an empty model path", 2},
        {"--bogus", "unknown option '--bogus'", 2},
        {"-o", "option -o needs a value", 2},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(args, sizeof args, "bench -m %s %s", a, bad[k].opts);
        expect_msg(args, bad[k].code, bad[k].msg);
    }
    expect_msg("bench -t 2", 2, "need -m MODEL");
    expect_msg("bench -m /nonexistent/model.gguf -r 1", 1, "cannot load '/nonexistent/model.gguf'");
    expect_msg("bench kv -m x.gguf --bogus", 2, "unknown option '--bogus'"); /* the subcommands parse as before */
    expect_msg("bench prefix -m x.gguf -p 1,2", 2, "-p must be an integer in [0, ");
    CHECK(run("bench --help") == 0);
    char *o = tu_read_file(out_path, NULL);
    CHECKF(o && strstr(o, "-pg PP,TG") && strstr(o, "--n-depth") && strstr(o, "--bw-mib") && strstr(o, "bench kv"), "help: %.200s", o ? o : "");
    free(o);
}

int main(void) {
    test_membw_xor();
    const char *a = tu_optional_model("stories260K.gguf");
    const char *b = tu_optional_model("synthetic/randllama-d256-L2.Q4_K_M.gguf");
    const char *c = tu_optional_model("synthetic/randllama-d256-L2.Q8_0.gguf");
    const char *d = tu_optional_model("synthetic/randllama-d256-L2.F16.gguf");
    if (a) test_decode_bytes(a);
    if (b) test_decode_bytes(b);
    if (c) test_decode_bytes(c);
    if (d) test_decode_bytes(d);
    bin = getenv("LETHE_BIN");
    if (!bin || !tu_file_exists(bin)) {
        tu_skip_part("the CLI parts: LETHE_BIN not set or missing (run through ctest)");
        return tu_finish("test_bench");
    }
    snprintf(out_path, sizeof out_path, "/tmp/lethe_bench_out_%d", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/lethe_bench_err_%d", (int)getpid());
    if (a && b) {
        test_bad_args(a);
        test_cli(a, b);
    }
    remove(out_path);
    remove(err_path);
    return tu_finish("test_bench");
}
