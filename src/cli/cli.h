/* The lethe command: argument parsing and printing only; all work is done
 * through lethe.h (and the bench entry points of the kernel layers). */
#ifndef LETHE_CLI_H
#define LETHE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "lethe.h"

/* Exit codes: 0 ok, 1 runtime failure (bad model file, ...), 2 usage. */
enum { EXIT_USAGE = 2 };

/* Options shared by the commands that load a model. */
typedef struct {
    const char *model;
    const char *tokenizer;
    int n_threads;
    int n_ctx;
    lethe_kv_type kv_type;
    int kv_page_slots;
    double kv_budget_mib;
    lethe_kv_policy_params kv; /* policy name, budget and parameters */
    const char *kv_flags[16];  /* the policy parameters given (--kv-NAME, as "NAME"), to check they apply */
    int n_kv_flags;
} model_opts;

void model_opts_init(model_opts *o);
/* The --kv-type spelling of t. */
const char *kv_type_name(lethe_kv_type t);
/* Tries to consume argv[*i] (and its value) as a model option. Returns 1 if
 * consumed, 0 if not a model option, -1 on a bad value (message and usage
 * hint printed: the caller just returns EXIT_USAGE). */
int model_opts_parse(model_opts *o, int argc, char **argv, int *i);
lethe_model *model_opts_load(const model_opts *o);
/* Like model_opts_parse, for the sampling options (--temp, --top-k, --top-p,
 * --min-p, --repeat-penalty, --repeat-last-n, --seed) of run and chat. */
int sampler_opts_parse(lethe_sampler_params *sp, int argc, char **argv, int *i);
/* After parsing: every --kv-* parameter given must be one the chosen policy
 * reads. Prints the error and returns false otherwise. */
bool model_opts_check(const model_opts *o);
/* The context (threads, KV pool) the options ask for, n_ctx <= 0 meaning the
 * model's; prints the error and returns NULL on failure. */
lethe_ctx *model_opts_context(const model_opts *o, const lethe_model *m, int n_ctx, int n_seq_max);
/* Sequence parameters (context, KV policy) from the options. */
lethe_seq_params model_opts_seq_params(const model_opts *o);
extern const char *MODEL_OPTS_USAGE;

/* Strict number parsing: the whole string must be a number in range. */
bool parse_int(const char *s, long lo, long hi, long *out);
bool parse_float(const char *s, double lo, double hi, double *out);
bool parse_u64(const char *s, uint64_t *out);
/* The command being run ("run", "eval", ...; "" before one is chosen), set
 * by main(). Every message below starts with "lethe CMD: ". */
extern const char *cli_cmd;
/* Prints the one-line hint "run 'lethe CMD --help' for usage" to stderr and
 * returns EXIT_USAGE. Commands print it after a usage error, not the whole
 * usage. */
int usage_error(void);
/* "lethe CMD: unknown option 'X'" and the hint; returns EXIT_USAGE. */
int unknown_option(const char *opt);
/* Value of option argv[*i]; advances *i. NULL when missing ("option X needs
 * a value" and the hint printed). */
const char *opt_value(int argc, char **argv, int *i);
/* The value of option argv[*i] as a number in [lo, hi]; advances *i. False
 * when it is missing or not such a number ("X must be ... in [lo, hi]" and
 * the hint printed). */
bool opt_int(int argc, char **argv, int *i, long lo, long hi, long *out);
bool opt_float(int argc, char **argv, int *i, double lo, double hi, double *out);
bool opt_u64(int argc, char **argv, int *i, uint64_t *out);

/* Text files (prompts, eval texts) larger than this are refused. */
#define READ_FILE_MAX (64 << 20)
/* A whole file (pipes too) of at most READ_FILE_MAX bytes in a malloc'd,
 * NUL-terminated buffer of *len bytes, or NULL with the reason printed
 * (cannot open, a directory, a read error, too large). */
char *read_file(const char *path, size_t *len);

double now_seconds(void);
/* Peak resident set size of this process in bytes. */
long peak_rss_bytes(void);

/* `lethe bench batch` / `lethe bench kv` / `lethe bench prefix` (cmd_bench_engine.c). */
int bench_batch(const model_opts *o, int n_gen);
int bench_kv(const model_opts *o, int n_gen);
int bench_prefix(const model_opts *o, int n_prefix, int n_gen);
/* `lethe bench memory` (cmd_bench_memory.c): a TIM trace of n_tokens. */
int bench_memory(const model_opts *o, int n_tokens);

int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
