/* `lethe bench -m MODEL`: llama-bench's tests (pp, tg, pg) over every
 * combination of the listed models, thread counts, sizes and context depths,
 * each repeated after one untimed warm-up, with a memory-bandwidth roofline
 * for decode.
 * cmd_bench.c parses, cmd_bench_run.c runs, cmd_bench_report.c prints. */
#ifndef LETHE_CLI_BENCH_H
#define LETHE_CLI_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/cli.h"

#define BENCH_MAX_VALUES 64 /* per list option */

typedef enum { BENCH_MD, BENCH_CSV, BENCH_JSON, BENCH_JSONL } bench_format;

typedef struct {
    model_opts mo;                  /* model (unused: models[] instead), threads (unused: threads[]), KV */
    const char *models[BENCH_MAX_VALUES];
    int n_models;
    int threads[BENCH_MAX_VALUES];  /* 0: all cores */
    int n_threads;
    int prompts[BENCH_MAX_VALUES];  /* pp tests; 0 skips */
    int n_prompts;
    int gens[BENCH_MAX_VALUES];     /* tg tests; 0 skips */
    int n_gens;
    int pg[BENCH_MAX_VALUES][2];    /* pp+tg tests */
    int n_pg;
    int depths[BENCH_MAX_VALUES];   /* tokens already in the context when a test starts (untimed) */
    int n_depths;
    int reps;
    bench_format format;
    size_t bw_bytes;                /* bandwidth buffer; 0: no roofline */
} bench_args;

typedef struct {
    const char *model_file;
    char model_type[96];            /* "llama 1.1B Q4_0", as llama-bench labels a model */
    uint64_t model_size, n_params;
    const char *simd, *kv_type;
    int n_threads, n_prompt, n_gen, n_depth;
    char test[48];                  /* "pp512", "tg128", "pp512+tg128", "tg128 @ d4096" */
    int n_samples;
    const double *samples_ns;       /* n_samples wall times */
    double avg_ns, sd_ns, avg_ts, sd_ts;
    uint64_t bytes_per_token;       /* weight bytes a decode step reads */
    uint64_t kv_bytes_per_token;    /* tg: KV bytes a decode step reads, the mean over the test's steps */
    /* roofline, tg tests with a bandwidth figure only */
    bool has_roofline;
    const double *samples_bw;       /* n_samples: bytes/s of the read just before each repetition */
    double read_bw;                 /* bytes/s: their mean */
    size_t bw_bytes;
    int bw_passes;
    double bound_ts;                /* read_bw / (bytes_per_token + kv_bytes_per_token) */
    double bound_pct;               /* mean over k of samples_ts[k] * (bytes_per_token + kv_bytes_per_token) /
                                       samples_bw[k] * 100 */
} bench_result;

/* Runs every test, printing each result as it comes; 0 or 1. */
int bench_run(const bench_args *a);

/* mean and sample standard deviation (0 for one value) of v[0..n) */
void bench_mean_sd(const double *v, int n, double *mean, double *sd);

/* Output: begin once, one row per result, end once (stdout). */
void bench_report_begin(FILE *f, bench_format fmt, bool roofline);
void bench_report_row(FILE *f, bench_format fmt, bool roofline, const bench_result *r, int index);
void bench_report_end(FILE *f, bench_format fmt, bool roofline, int n_rows);

#endif
