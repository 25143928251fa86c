/* `lethe bench` output: llama-bench's markdown table (with roofline columns
 * for decode), CSV with a header row, or JSON (an array, or one object a
 * line for jsonl). The JSON is written here, not with cJSON, which is an
 * optional dependency of the server only; strings are escaped and checked
 * as UTF-8 (a file name need not be), numbers that are not finite are null. */
#include <math.h>
#include <string.h>

#include "cli/bench.h"

void bench_mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n > 0 ? s / n : 0;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* ---- markdown ---- */

static void fmt_size(char *b, size_t n, uint64_t bytes) {
    if (bytes >= (1ull << 30)) snprintf(b, n, "%.2f GiB", bytes / 1073741824.0);
    else snprintf(b, n, "%.2f MiB", bytes / 1048576.0);
}

static void fmt_params(char *b, size_t n, uint64_t p) {
    if (p >= 1000000000ull) snprintf(b, n, "%.2f B", p / 1e9);
    else snprintf(b, n, "%.2f M", p / 1e6);
}

static void md_begin(FILE *f, bool roofline) {
    fprintf(f, "| %-30s | %10s | %10s | %-10s | %7s | %19s | %20s |", "model", "size", "params", "backend", "threads", "test",
            "t/s");
    if (roofline) fprintf(f, " %9s | %9s | %10s | %7s |", "MiB/token", "read GB/s", "bound t/s", "% bound");
    fprintf(f, "\n| ------------------------------ | ---------: | ---------: | ---------- | ------: | ------------------: | "
               "-------------------: |");
    if (roofline) fprintf(f, " --------: | --------: | ---------: | ------: |");
    fprintf(f, "\n");
}

/* A markdown cell: '|' and control characters would break the row. */
static void md_cell(FILE *f, const char *s, int width) {
    char b[256];
    size_t n = 0;
    for (; *s && n + 1 < sizeof b; s++) b[n++] = (*s == '|' || (unsigned char)*s < 0x20) ? '_' : *s;
    b[n] = 0;
    fprintf(f, " %-*s |", width, b);
}

static void md_row(FILE *f, bool roofline, const bench_result *r) {
    char size[32], params[32], ts[64];
    fmt_size(size, sizeof size, r->model_size);
    fmt_params(params, sizeof params, r->n_params);
    snprintf(ts, sizeof ts, "%.2f ± %.2f", r->avg_ts, r->sd_ts);
    fprintf(f, "|");
    md_cell(f, r->model_type, 30);
    /* "±" is two bytes and one column: pad by one more */
    fprintf(f, " %10s | %10s | %-10s | %7d | %19s | %21s |", size, params, "CPU", r->n_threads, r->test, ts);
    if (roofline) {
        if (r->has_roofline)
            fprintf(f, " %9.2f | %9.2f | %10.2f | %6.1f%% |", (r->bytes_per_token + r->kv_bytes_per_token) / 1048576.0,
                    r->read_bw / 1e9, r->bound_ts, r->bound_pct);
        else fprintf(f, " %9s | %9s | %10s | %7s |", "-", "-", "-", "-");
    }
    fprintf(f, "\n");
}

/* ---- CSV ---- */

static const char *const csv_columns[] = {
    "model_filename", "model_type", "model_size", "model_n_params", "backend", "simd", "n_threads", "kv_type",
    "n_prompt", "n_gen", "n_depth", "test", "repetitions", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns",
    "samples_ts", "bytes_per_token", "kv_bytes_per_token", "read_bw_bytes_per_s", "bw_buffer_bytes", "bw_passes", "bound_ts", "bound_pct",
    "samples_bw_bytes_per_s"};

/* RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
static void csv_str(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_row(FILE *f, const bench_result *r) {
    csv_str(f, r->model_file);
    fputc(',', f);
    csv_str(f, r->model_type);
    fprintf(f, ",%llu,%llu,CPU,%s,%d,%s,%d,%d,%d,%s,%d,%.0f,%.0f,%.6f,%.6f,", (unsigned long long)r->model_size,
            (unsigned long long)r->n_params, r->simd, r->n_threads, r->kv_type, r->n_prompt, r->n_gen, r->n_depth, r->test,
            r->n_samples, r->avg_ns, r->sd_ns, r->avg_ts, r->sd_ts);
    /* samples: space-separated, so the field needs no quotes */
    for (int i = 0; i < r->n_samples; i++) fprintf(f, "%s%.0f", i ? " " : "", r->samples_ns[i]);
    fputc(',', f);
    const int n_tok = r->n_prompt + r->n_gen;
    for (int i = 0; i < r->n_samples; i++) fprintf(f, "%s%.6f", i ? " " : "", n_tok / (r->samples_ns[i] * 1e-9));
    fprintf(f, ",%llu,%llu,", (unsigned long long)r->bytes_per_token, (unsigned long long)r->kv_bytes_per_token);
    if (r->has_roofline) {
        fprintf(f, "%.0f,%zu,%d,%.6f,%.4f,", r->read_bw, r->bw_bytes, r->bw_passes, r->bound_ts, r->bound_pct);
        for (int i = 0; i < r->n_samples; i++) fprintf(f, "%s%.0f", i ? " " : "", r->samples_bw[i]);
    } else {
        fprintf(f, ",,,,,");
    }
    fputc('\n', f);
}

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!n) return 0;
    for (int k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    uint32_t c = n == 2 ? (s[0] & 0x1fu) : n == 3 ? (s[0] & 0x0fu) : (s[0] & 0x07u);
    for (int k = 1; k < n; k++) c = c << 6 | (s[k] & 0x3fu);
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff)) return 0;
    return n;
}

static void json_str(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        int n = utf8_len(s);
        if (n == 0) { /* not UTF-8: the replacement character */
            fputs("\\ufffd", f);
            s++;
        } else if (*s == '"' || *s == '\\') {
            fputc('\\', f);
            fputc(*s++, f);
        } else if (*s == '\n') {
            fputs("\\n", f);
            s++;
        } else if (*s == '\t') {
            fputs("\\t", f);
            s++;
        } else if (*s == '\r') {
            fputs("\\r", f);
            s++;
        } else if (*s < 0x20 || *s == 0x7f) {
            fprintf(f, "\\u%04x", *s++);
        } else {
            fwrite(s, 1, (size_t)n, f);
            s += n;
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, double x, const char *fmt) {
    if (isfinite(x)) fprintf(f, fmt, x);
    else fputs("null", f);
}

static void json_key(FILE *f, const char *k) { fprintf(f, ", \"%s\": ", k); }

static void json_row(FILE *f, const bench_result *r) {
    fputs("{\"model_filename\": ", f);
    json_str(f, r->model_file);
    json_key(f, "model_type");
    json_str(f, r->model_type);
    fprintf(f, ", \"model_size\": %llu, \"model_n_params\": %llu, \"backend\": \"CPU\"", (unsigned long long)r->model_size,
            (unsigned long long)r->n_params);
    json_key(f, "simd");
    json_str(f, r->simd);
    fprintf(f, ", \"n_threads\": %d", r->n_threads);
    json_key(f, "kv_type");
    json_str(f, r->kv_type);
    fprintf(f, ", \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d", r->n_prompt, r->n_gen, r->n_depth);
    json_key(f, "test");
    json_str(f, r->test);
    fprintf(f, ", \"repetitions\": %d, \"samples_ns\": [", r->n_samples);
    for (int i = 0; i < r->n_samples; i++) {
        if (i) fputs(", ", f);
        json_num(f, r->samples_ns[i], "%.0f");
    }
    fputs("], \"samples_ts\": [", f);
    const int n_tok = r->n_prompt + r->n_gen;
    for (int i = 0; i < r->n_samples; i++) {
        if (i) fputs(", ", f);
        json_num(f, n_tok / (r->samples_ns[i] * 1e-9), "%.10g");
    }
    fputc(']', f);
    const struct {
        const char *k, *fmt;
        double v;
    } nums[] = {{"avg_ns", "%.0f", r->avg_ns}, {"stddev_ns", "%.0f", r->sd_ns}, {"avg_ts", "%.10g", r->avg_ts},
                {"stddev_ts", "%.10g", r->sd_ts}, {"bytes_per_token", "%.0f", (double)r->bytes_per_token},
                {"kv_bytes_per_token", "%.0f", (double)r->kv_bytes_per_token}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        json_key(f, nums[i].k);
        json_num(f, nums[i].v, nums[i].fmt);
    }
    if (r->has_roofline) {
        fprintf(f, ", \"read_bw_bytes_per_s\": %.0f, \"bw_buffer_bytes\": %zu, \"bw_passes\": %d, \"samples_bw_bytes_per_s\": [",
                r->read_bw, r->bw_bytes, r->bw_passes);
        for (int i = 0; i < r->n_samples; i++) fprintf(f, "%s%.0f", i ? ", " : "", r->samples_bw[i]);
        fputc(']', f);
    } else {
        fputs(", \"read_bw_bytes_per_s\": null, \"bw_buffer_bytes\": null, \"bw_passes\": null, \"samples_bw_bytes_per_s\": null", f);
    }
    json_key(f, "bound_ts");
    json_num(f, r->has_roofline ? r->bound_ts : NAN, "%.10g");
    json_key(f, "bound_pct");
    json_num(f, r->has_roofline ? r->bound_pct : NAN, "%.6g");
    fputc('}', f);
}

void bench_report_begin(FILE *f, bench_format fmt, bool roofline) {
    if (fmt == BENCH_MD) md_begin(f, roofline);
    else if (fmt == BENCH_CSV) {
        for (size_t i = 0; i < sizeof csv_columns / sizeof csv_columns[0]; i++) fprintf(f, "%s%s", i ? "," : "", csv_columns[i]);
        fputc('\n', f);
    } else if (fmt == BENCH_JSON) fputs("[", f);
    fflush(f);
}

void bench_report_row(FILE *f, bench_format fmt, bool roofline, const bench_result *r, int index) {
    if (fmt == BENCH_MD) md_row(f, roofline, r);
    else if (fmt == BENCH_CSV) csv_row(f, r);
    else {
        if (fmt == BENCH_JSON) fputs(index ? ",\n  " : "\n  ", f);
        json_row(f, r);
        if (fmt == BENCH_JSONL) fputc('\n', f);
    }
    fflush(f);
}

void bench_report_end(FILE *f, bench_format fmt, bool roofline, int n_rows) {
    if (fmt == BENCH_JSON) fputs(n_rows ? "\n]\n" : "]\n", f);
    fflush(f);
}
