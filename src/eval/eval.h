/* Quality per byte: how much a KV policy under a budget costs in quality,
 * measured against the full cache on the same model and data.
 *
 * Three jobs, each run on one model with one lethe_seq_params (policy,
 * budget, policy parameters):
 *   ppl      perplexity of a token stream, cut into windows that each start
 *            from BOS in a fresh sequence (eval_ppl.c)
 *   passkey  the synthetic pass-key retrieval test at several prompt lengths
 *            and depths (eval_passkey.c)
 *   agree    greedy tokens of the full cache vs. the policy teacher-forced on
 *            them: argmax agreement and KL(full || policy) (eval_agree.c)
 * and a sweep over policies x budgets that writes a CSV and a gnuplot
 * script (eval_sweep.c, eval_plot.c), with a progress bar (eval_progress.c).
 *
 * Every job reports what it cost: the KV bytes the pool actually held at
 * its peak (the pool's peak is restarted after each sequence is created and
 * read after it ran) and the decode speed. Only lethe.h and the standard
 * library are used here. */
#ifndef LETHE_EVAL_H
#define LETHE_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lethe.h"

/* ---- shared ---------------------------------------------------------- */

typedef struct {
    size_t kv_bytes_peak;   /* most RAM bytes one sequence of the job held for its KV (lethe_seq_bytes.ram_peak:
                             * hot pages, cold tier, staging, policy state) */
    size_t disk_bytes_peak; /* most disk bytes of one sequence's cold tier */
    uint64_t disk_read_bytes; /* read traffic of the cold tiers, summed over the job */
    size_t kv_page_bytes;   /* bytes of one page (K + V of page_slots slots) */
    int kv_page_slots;
    long decode_tokens;     /* tokens run in the timed (decode) part */
    double decode_seconds;
} eval_cost;

/* decode_tokens / decode_seconds, or 0. */
double eval_cost_tok_s(const eval_cost *c);
/* Adds b into a: the larger peak, the sum of the timed tokens and seconds. */
void eval_cost_merge(eval_cost *a, const eval_cost *b);

/* Wall-clock seconds (C11 timespec_get). */
double eval_now(void);
/* Index of the largest value; the lowest index on ties. */
int eval_argmax(const float *x, int n);
/* log(sum(exp(x))) in double precision. */
double eval_logsumexp(const float *x, int n);

/* Creates a sequence and restarts the pool's peak, so that the peak read
 * later is this sequence's (the pool is otherwise empty while a job runs).
 * NULL with a message in err. */
lethe_seq *eval_seq_open(lethe_ctx *ctx, const lethe_seq_params *sp, char *err, size_t err_size);
/* Folds the sequence s's RAM peak (lethe_seq_bytes.ram_peak) and disk bytes into c. */
void eval_cost_take_peak(lethe_ctx *ctx, const lethe_seq *s, eval_cost *c);
/* The retrieval tasks' case: prompt (n_prompt tokens) in a fresh sequence,
 * then up to n_gen greedy tokens (stopping at end of generation), their
 * text in answer (NUL-terminated, newlines kept, cut at cap). Decode time and
 * tokens and the pool's peak go into cost. */
lethe_status eval_greedy_answer(lethe_ctx *ctx, const lethe_seq_params *sp, const char *prompt, int n_prompt, int n_gen,
                                char *answer, size_t cap, eval_cost *cost, char *err, size_t err_size);

/* ---- progress ---------------------------------------------------------- */

/* A bar on a stream: "[#####-----] 12/40 window@25% ppl". In redraw mode
 * (a terminal) one line is rewritten in place; otherwise a line is printed
 * whenever the label changes, so logs stay readable. out NULL: silent. */
typedef struct {
    FILE *out;
    bool redraw;
    long total, done;
    char label[96];
    double last_draw;
    int last_width;
} eval_progress;

void eval_progress_begin(eval_progress *p, FILE *out, bool redraw, long total);
/* Sets what is being worked on (printed with the bar). */
void eval_progress_label(eval_progress *p, const char *label);
/* Counts n units done. p may be NULL. */
void eval_progress_step(eval_progress *p, long n);
/* Finishes the line. */
void eval_progress_end(eval_progress *p);

/* ---- perplexity -------------------------------------------------------- */

typedef struct {
    int ctx;    /* tokens per window, the BOS included (>= 2) */
    int batch;  /* tokens per append: 1 = every token a decode step (evictions
                   between tokens, as in generation); larger is faster, with
                   evictions only between batches */
} eval_ppl_cfg;

typedef struct {
    double ppl;        /* exp(nll / n_scored) */
    double nll;        /* summed negative log-likelihood, nats */
    long n_scored;
    int n_windows;
    eval_cost cost;
} eval_ppl_result;

/* Windows the text (ids without BOS) falls into for a window size. */
int eval_ppl_n_windows(const lethe_model *m, int n_text, int ctx);
/* Perplexity of text (n_text ids, tokenised WITHOUT BOS) under sp. */
lethe_status eval_ppl(lethe_ctx *ctx, const lethe_seq_params *sp, const lethe_token *text, int n_text,
                      const eval_ppl_cfg *cfg, eval_progress *pg, eval_ppl_result *r, char *err, size_t err_size);

/* ---- pass key ---------------------------------------------------------- */

typedef struct {
    const int *lengths;    /* prompt lengths in tokens, BOS included */
    int n_lengths;
    const double *depths;  /* where the key sits: 0 = start of the filler, 1 = end */
    int n_depths;
    int trials;            /* pass keys per length x depth */
    int n_gen;             /* greedy tokens generated after the question */
    uint64_t seed;
    FILE *log;             /* non-NULL: a line per case with the model's answer */
    int n_keys;            /* multikey only: needles per prompt, one asked (0: EVAL_DEFAULT_KEYS) */
} eval_passkey_cfg;

typedef struct {
    int *correct;       /* [length][depth]: trials answered correctly (malloc'd) */
    int *prompt_len;    /* per length: the longest prompt actually built, tokens */
    int n_correct, n_total;
    double accuracy;    /* percent */
    eval_cost cost;
} eval_passkey_result;

int eval_passkey_n_cases(const eval_passkey_cfg *cfg);
/* The pass key of one case (5 digits), from the seed and the case index. */
int eval_passkey_key(uint64_t seed, int case_index);
/* Builds the prompt text of one case with about `length` tokens (at most
 * that many); malloc'd, NULL with a message in err. */
char *eval_passkey_prompt(const lethe_model *m, int length, double depth, int key, int *n_tokens, char *err,
                          size_t err_size);
lethe_status eval_passkey(lethe_ctx *ctx, const lethe_seq_params *sp, const eval_passkey_cfg *cfg, eval_progress *pg,
                          eval_passkey_result *r, char *err, size_t err_size);
void eval_passkey_result_free(eval_passkey_result *r);

/* ---- retrieval beside the pass key (eval_needle.c) --------------------- */

/* needle: one value (a 3-7 digit number or a word) stated in story-like
 * filler in one of several phrasings, asked in one of several questions.
 * multikey: n_keys needles "the <noun> for <KEY> is <value>" (distinct keys
 * and values) at random depths, the asked one at the case's depth, the
 * others distractors; the question names the asked key. Both use
 * eval_passkey_cfg (lengths, depths, trials, n_gen, seed, log, n_keys) and
 * eval_passkey_result, and score as the pass key does: right when the greedy
 * answer holds the value as a whole word or number. */
typedef enum { EVAL_TASK_NEEDLE, EVAL_TASK_MULTIKEY } eval_task;
enum { EVAL_MAX_KEYS = 16, EVAL_DEFAULT_KEYS = 4 };

typedef struct {
    char *text;           /* the prompt (malloc'd), BOS not included */
    int n_tokens;         /* its tokens with BOS, at most the length asked */
    char value[24];       /* the asked value */
    char key[48];         /* needle: the noun ("secret number"); multikey: the asked key */
    bool is_word;         /* the value is a word, not a number */
    int phrasing;         /* which needle phrasing the asked needle uses */
    int question_phrasing;
    int needle_offset;    /* byte offset of the asked needle in text */
    int n_filler;         /* filler sentences in the prompt */
    int filler_before;    /* of them before the asked needle: round(depth * n_filler) */
} eval_retrieval_case;

const char *eval_task_name(eval_task t);
/* Builds case case_index of a task for a seed at about `length` tokens (at
 * most that many) with the asked needle at `depth`. */
lethe_status eval_retrieval_case_make(const lethe_model *m, eval_task task, int n_keys, uint64_t seed, int case_index,
                                      int length, double depth, eval_retrieval_case *c, char *err, size_t err_size);
void eval_retrieval_case_free(eval_retrieval_case *c);
/* Occurrences of value in text as a whole word or number. */
int eval_retrieval_count(const char *text, const char *value);
/* Runs every length x depth x trial of the task (cases numbered as in the
 * pass key); results as eval_passkey's. */
lethe_status eval_retrieval(lethe_ctx *ctx, const lethe_seq_params *sp, eval_task task, const eval_passkey_cfg *cfg,
                            eval_progress *pg, eval_passkey_result *r, char *err, size_t err_size);

/* ---- agreement with the full cache ------------------------------------- */

/* Built-in story openings (NULL-terminated). */
const char *const *eval_agree_default_prompts(void);

typedef struct {
    const char *const *prompts;
    int n_prompts;
    int n_gen;     /* > 0: tokens generated per prompt; <= 0: up to fill_to tokens in all */
    int fill_to;
} eval_agree_cfg;

typedef struct {
    double agree;   /* share of steps whose argmax is the full cache's token */
    double kl;      /* mean KL(full || policy) of the next-token distributions, nats */
    long n_steps, n_match;
    eval_cost cost; /* of the policy's sequence only */
} eval_agree_result;

/* The full cache (policy "full", the whole context) generates greedily while
 * the policy's sequence is fed the same tokens, step by step: nothing is
 * stored, and the policy's KV bytes are its own (the reference's are
 * subtracted). The model's pool must hold both sequences (n_seq_max 2). */
lethe_status eval_agree(lethe_ctx *ctx, const lethe_seq_params *sp, const eval_agree_cfg *cfg, eval_progress *pg,
                        eval_agree_result *r, char *err, size_t err_size);

/* ---- sweep --------------------------------------------------------------- */

typedef struct {
    int slots;     /* > 0 */
    double pct;    /* percent of ctx (computed for absolute budgets); of the full cache's bytes with bytes */
    size_t bytes;  /* > 0: a byte budget per sequence (lethe_kv_policy_params.budget_bytes) instead of slots */
} eval_budget;

typedef struct {
    char policy[48];
    int budget_slots;   /* 0 with the baseline: the model's whole context */
    double budget_pct;
    bool baseline;
    bool has_ppl, has_passkey, has_agree, has_needle, has_multikey;
    double ppl, passkey_acc, agree, kl, needle_acc, multikey_acc;
    size_t kv_bytes_peak;
    size_t budget_bytes;  /* the row's byte budget, 0: slots */
    size_t disk_bytes_peak;
    uint64_t disk_read_bytes;
    double decode_tok_s;
    long peak_rss_bytes;  /* the process's peak RSS after the row (a running maximum) */
    char note[320];     /* "" or why (part of) the row could not run */
} eval_row;

typedef struct {
    lethe_ctx *engine;
    lethe_kv_policy_params kv;     /* parameters shared by every row (sink, window, ...) */
    const char *const *policies;
    int n_policies;
    const eval_budget *budgets;
    int n_budgets;
    int ctx;                       /* what the percentages are of */
    int baseline_slots;            /* the baseline row's budget as printed (its run uses the whole context) */
    bool do_ppl, do_passkey, do_agree;
    bool do_needle, do_multikey;   /* with the passkey's lengths, depths and trials */
    const lethe_token *text;       /* ppl: ids without BOS */
    int n_text;
    eval_ppl_cfg ppl;
    eval_passkey_cfg passkey;
    eval_agree_cfg agree;
    long (*peak_rss)(void);        /* optional: the process's peak RSS so far */
    eval_progress *progress;
} eval_sweep_cfg;

/* Progress units of the whole sweep (for eval_progress_begin). */
long eval_sweep_units(const eval_sweep_cfg *c);
/* Runs the baseline (full cache) row, then every policy x budget. A
 * configuration that fails becomes a row with a note. Returns malloc'd rows
 * (count in *n_rows), NULL only when out of memory. */
eval_row *eval_sweep_run(const eval_sweep_cfg *c, int *n_rows);
/* Writes the CSV (header + one line per row); when a row ran needle or
 * multikey, needle_acc and multikey_acc columns come before the note
 * (EVAL_CSV_HEADER_RETRIEVAL). 0, or -1. */
int eval_sweep_write_csv(const char *path, const eval_row *rows, int n_rows);
/* The best policy at one budget: among the non-baseline rows at budget percent
 * pct that ran without a note, the highest mean of the retrieval
 * accuracies they measured (passkey, needle, multikey), ties (within 1e-9)
 * to the lower perplexity, then the fewer RAM bytes; with no retrieval task,
 * the lowest perplexity, else the highest agreement. Index into rows, or
 * -1 when no row qualifies. */
int eval_sweep_best(const eval_row *rows, int n_rows, double pct);
extern const char EVAL_CSV_HEADER[];
extern const char EVAL_CSV_HEADER_RETRIEVAL[];

/* ---- plot ------------------------------------------------------------- */

/* Writes dir/<base>.gp: quality against KV bytes, one curve per policy and
 * the baseline as a point, into <base>.png and <base>.svg (paths in the
 * script are relative to dir). 0, or -1. */
int eval_plot_write_script(const char *dir, const char *base, const eval_row *rows, int n_rows);
/* Runs gnuplot on dir/<base>.gp inside dir. 0 ok, 1 gnuplot is not
 * installed, 2 it failed, 3 the directory name cannot be passed to a shell. */
int eval_plot_run(const char *dir, const char *base);

#endif
