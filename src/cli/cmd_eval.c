/* lethe eval: quality per KV byte. Every policy is measured against the
 * full cache on the same model and data (the work is in src/eval; this
 * file parses arguments and prints). Results go to stdout, progress and
 * errors to stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "eval/eval.h"

enum { JOB_PPL = 1, JOB_PASSKEY = 2, JOB_AGREE = 4, JOB_NEEDLE = 8, JOB_MULTIKEY = 16, MAX_LIST = 64 };
/* jobs that take the pass key's options (--lengths, --depths, --trials, --gen) */
enum { JOB_RETRIEVAL = JOB_PASSKEY | JOB_NEEDLE | JOB_MULTIKEY };

static const char DEFAULT_TEXT[] = "data/eval/stories.txt";

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe eval ppl     -m MODEL [-f TEXT] [--ctx N] [--batch N] [--sweep ...] [options]\n"
            "       lethe eval passkey -m MODEL [--lengths L,..] [--depths D,..] [--trials N] [--sweep ...] [options]\n"
            "       lethe eval needle  -m MODEL [--lengths L,..] [--depths D,..] [--trials N] [--sweep ...] [options]\n"
            "       lethe eval multikey -m MODEL [--keys K] [--lengths L,..] [--depths D,..] [--trials N] [--sweep ...] [options]\n"
            "       lethe eval agree   -m MODEL [--prompts FILE] [-n N] [--sweep ...] [options]\n"
            "       lethe eval sweep   -m MODEL [all of the above] [--tasks T,..] [--policies P,..] [--budgets B,..] [--out DIR]\n"
            "Quality of a KV policy under a budget against the full cache, with the KV bytes actually held (peak),\n"
            "peak RSS and decode tokens/s. Without --sweep one configuration runs: --kv-policy and --kv-budget\n"
            "(default: the full cache).\n"
            "%s"
            "  --ctx N                tokens per perplexity window; what budget percentages are of\n"
            "                         (default: -c, else the model's context; use -c 512 for stories260K)\n"
            "ppl:\n"
            "  -f, --file FILE        text to score (default: %s)\n"
            "  --batch N              tokens per append: 1 (default) makes every token a decode step, so the\n"
            "                         policy evicts between tokens as in generation; larger is faster\n"
            "passkey:\n"
            "  --lengths L,...        prompt lengths in tokens (default: 256, 512, ... while they fit --ctx)\n"
            "  --depths D,...         where the key is hidden, 0 = start .. 1 = end (default 0,0.25,0.5,0.75,1)\n"
            "  --trials N             pass keys per length and depth (default 3)\n"
            "  --gen N                greedy tokens of the answer (default 8)\n"
            "  --seed S               seed of the pass keys (and of the policies' randomness) (default 1)\n"
            "needle, multikey (the pass key's options; seeded generators, several phrasings, numbers and words):\n"
            "  needle                 one value stated in story-like filler, then asked\n"
            "  multikey               K needles 'the <noun> for <KEY> is <value>', one asked, the rest distractors\n"
            "  --keys K               multikey: needles per prompt, 1..%d (default %d)\n"
            "agree:\n"
            "  --prompts FILE         one prompt per line (default: 8 built-in story openings)\n"
            "  -n, --n-predict N      greedy tokens per prompt (default: up to --ctx tokens in all)\n"
            "sweep (lethe eval sweep runs ppl, passkey and agree; --sweep with one of them runs only that):\n"
            "  --tasks T,...          lethe eval sweep: the jobs to run, of ppl, passkey, agree, needle, multikey\n"
            "                         (default ppl,passkey,agree); needle/multikey add needle_acc, multikey_acc\n"
            "                         columns to sweep.csv and the table\n"
            "  --sweep                every policy x budget, plus the full-cache baseline row\n"
            "  --policies P,...       (default: every registered policy except full)\n"
            "  --budgets B,...        N%% of --ctx or N slots per layer and KV head (default 10%%,25%%,50%%)\n"
            "  --byte-budgets         the budgets are bytes per sequence instead: N%% of the full cache's bytes at\n"
            "                         --ctx, or N bytes; every RAM byte counts (--kv-seq-mib), rows print RAM and disk\n"
            "  --out DIR              where sweep.csv, sweep.gp, sweep.png and sweep.svg go (default eval-out)\n"
            "                         sweep.csv: policy, budget_slots, budget_pct, kv_bytes_peak (most KV bytes held),\n"
            "                         ppl, passkey_acc (%%), agree, kl, decode_tok_s, peak_rss_bytes (the process's peak\n"
            "                         so far), note (why a row, or part of it, could not run); the plot needs gnuplot\n"
            "  -q, --quiet            no progress bar\n"
            "  -v, --verbose          passkey, needle, multikey: print every answer on stderr\n",
            MODEL_OPTS_USAGE, DEFAULT_TEXT, EVAL_MAX_KEYS, EVAL_DEFAULT_KEYS);
}

/* Splits a comma list into at most MAX_LIST items (s is modified). */
static int split_list(char *s, char **items) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (n == MAX_LIST) return -1;
        items[n++] = tok;
    }
    return n;
}

static bool known_policy(const char *name) {
    for (const char *const *n = lethe_kv_policy_names(); *n; n++)
        if (!strcmp(*n, name)) return true;
    return false;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

static void print_cost(const eval_cost *c) {
    printf("kv bytes peak: %zu (%.3f MiB of RAM per sequence: hot pages, cold tier, staging, policy state; pages of %d "
           "slots, %zu bytes)\n",
           c->kv_bytes_peak, c->kv_bytes_peak / 1048576.0, c->kv_page_slots, c->kv_page_bytes);
    if (c->disk_bytes_peak || c->disk_read_bytes)
        printf("kv disk: %zu bytes peak, %.1f MiB read\n", c->disk_bytes_peak, (double)c->disk_read_bytes / 1048576.0);
    printf("decode: %.1f tok/s (%ld tokens in %.3f s)\n", eval_cost_tok_s(c), c->decode_tokens, c->decode_seconds);
    printf("peak RSS: %ld bytes (%.1f MiB)\n", peak_rss_bytes(), peak_rss_bytes() / 1048576.0);
}

static void print_table(const eval_row *rows, int n, bool retrieval) {
    printf("%-10s %7s %7s %14s %12s %9s %9s %11s %10s", "policy", "budget", "pct", "kv_bytes_peak", "ppl", "passkey%",
           "agree", "kl", "tok/s");
    if (retrieval) printf(" %9s %9s", "needle%", "multikey%");
    bool bytes = false; /* byte budgets: the RAM peak above is bounded by them; the disk tier apart */
    for (int i = 0; i < n; i++) bytes |= rows[i].budget_bytes > 0;
    if (bytes) printf(" %12s %11s %10s", "budget_bytes", "disk_bytes", "read_MiB");
    printf("  %s\n", "note");
    for (int i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        char ppl[32] = "-", pk[32] = "-", ag[32] = "-", kl[32] = "-";
        if (r->has_ppl) snprintf(ppl, sizeof ppl, "%.4f", r->ppl);
        if (r->has_passkey) snprintf(pk, sizeof pk, "%.1f", r->passkey_acc);
        if (r->has_agree) {
            snprintf(ag, sizeof ag, "%.4f", r->agree);
            snprintf(kl, sizeof kl, "%.4g", r->kl);
        }
        printf("%-10s %7d %7.1f %14zu %12s %9s %9s %11s %10.1f", r->policy, r->budget_slots, r->budget_pct,
               r->kv_bytes_peak, ppl, pk, ag, kl, r->decode_tok_s);
        if (retrieval) {
            char nd[32] = "-", mk[32] = "-";
            if (r->has_needle) snprintf(nd, sizeof nd, "%.1f", r->needle_acc);
            if (r->has_multikey) snprintf(mk, sizeof mk, "%.1f", r->multikey_acc);
            printf(" %9s %9s", nd, mk);
        }
        if (bytes)
            printf(" %12zu %11zu %10.1f", r->budget_bytes, r->disk_bytes_peak, (double)r->disk_read_bytes / 1048576.0);
        printf("  %s\n", r->note);
    }
    /* the harness's pick at each budget (eval_sweep_best), against the full cache */
    const eval_row *full = n > 0 && rows[0].baseline ? &rows[0] : NULL;
    for (int i = 0; i < n; i++) {
        bool first = !rows[i].baseline;
        for (int j = 0; j < i && first; j++) first = rows[j].baseline || rows[j].budget_pct != rows[i].budget_pct;
        if (!first) continue;
        const int b = eval_sweep_best(rows, n, rows[i].budget_pct);
        if (b < 0) {
            printf("best at %.4g%%: none (every row failed)\n", rows[i].budget_pct);
            continue;
        }
        const eval_row *r = &rows[b];
        printf("best at %.4g%%: %s", r->budget_pct, r->policy);
        if (r->has_passkey) {
            printf(", passkey %.1f%%", r->passkey_acc);
            if (full && full->has_passkey && full->passkey_acc > 0)
                printf(" (%.1f%% of full)", 100.0 * r->passkey_acc / full->passkey_acc);
        }
        if (r->has_needle) printf(", needle %.1f%%", r->needle_acc);
        if (r->has_multikey) printf(", multikey %.1f%%", r->multikey_acc);
        if (r->has_ppl && isfinite(r->ppl)) {
            printf(", ppl %.4f", r->ppl);
            if (full && full->has_ppl && isfinite(full->ppl) && full->ppl > 0)
                printf(" (%+.1f%%)", 100.0 * (r->ppl / full->ppl - 1.0));
        }
        printf(", %zu KV bytes\n", r->kv_bytes_peak);
    }
}

/* The accuracy table of passkey, needle or multikey. */
static void print_accuracy(const char *name, const eval_passkey_result *r, const int *lengths, int n_lengths,
                           const double *depths, int n_depths, long trials) {
    printf("%s accuracy (%%) by prompt length (rows) and depth (columns), %ld trials each:\n%8s", name, trials, "length");
    for (int d = 0; d < n_depths; d++) printf(" %7.2f", depths[d]);
    printf("\n");
    for (int l = 0; l < n_lengths; l++) {
        printf("%8d", lengths[l]);
        for (int d = 0; d < n_depths; d++) printf(" %7.1f", 100.0 * r->correct[l * n_depths + d] / (double)trials);
        printf("\n");
    }
    printf("%s overall: %.2f%% (%d/%d)\n", name, r->accuracy, r->n_correct, r->n_total);
}

/* A --tasks list as job bits, or 0. */
static int parse_tasks(char *arg) {
    char *items[MAX_LIST];
    int n = split_list(arg, items), jobs = 0;
    if (n < 1) return 0;
    for (int k = 0; k < n; k++) {
        const char *t = items[k];
        int j = !strcmp(t, "ppl") ? JOB_PPL : !strcmp(t, "passkey") ? JOB_PASSKEY : !strcmp(t, "agree") ? JOB_AGREE
              : !strcmp(t, "needle") ? JOB_NEEDLE : !strcmp(t, "multikey") ? JOB_MULTIKEY : 0;
        if (!j) return 0;
        jobs |= j;
    }
    return jobs;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "lethe eval: name a job (ppl, passkey, needle, multikey, agree, sweep)\n"); return usage_error(); }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) { usage(stdout); return 0; }
    int jobs = !strcmp(sub, "ppl") ? JOB_PPL : !strcmp(sub, "passkey") ? JOB_PASSKEY : !strcmp(sub, "agree") ? JOB_AGREE
             : !strcmp(sub, "needle") ? JOB_NEEDLE : !strcmp(sub, "multikey") ? JOB_MULTIKEY
             : !strcmp(sub, "sweep") ? JOB_PPL | JOB_PASSKEY | JOB_AGREE : 0;
    if (!jobs) {
        fprintf(stderr, "lethe eval: unknown job '%s' (ppl, passkey, needle, multikey, agree, sweep)\n", sub);
        return usage_error();
    }
    bool sweep = !strcmp(sub, "sweep"), quiet = false, verbose = false, policy_given = false, budget_given = false;
    model_opts mo;
    model_opts_init(&mo);
    long ctx = 0, batch = 1, trials = 3, n_gen_pk = 8, n_predict = 0, n_keys = EVAL_DEFAULT_KEYS;
    char *tasks_arg = NULL;
    uint64_t seed = 1;
    const char *text_file = NULL, *prompts_file = NULL, *out_dir = "eval-out";
    char *lengths_arg = NULL, *depths_arg = NULL, *policies_arg = NULL, *budgets_arg = NULL;
    int given = 0; /* jobs whose options were given */
    bool sweep_opts = false, byte_budgets = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--kv-policy")) policy_given = true;
        if (!strcmp(a, "--kv-budget")) budget_given = true;
        int r = model_opts_parse(&mo, argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--sweep")) { sweep = true; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { verbose = true; continue; }
        bool ok = true;
        if (!strcmp(a, "--ctx")) ok = opt_int(argc, argv, &i, 2, 1 << 24, &ctx);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { ok = (text_file = opt_value(argc, argv, &i)) != NULL; given |= JOB_PPL; }
        else if (!strcmp(a, "--batch")) { ok = opt_int(argc, argv, &i, 1, 1 << 16, &batch); given |= JOB_PPL; }
        else if (!strcmp(a, "--lengths")) { if ((ok = opt_value(argc, argv, &i) != NULL)) lengths_arg = argv[i]; given |= JOB_PASSKEY; }
        else if (!strcmp(a, "--depths")) { if ((ok = opt_value(argc, argv, &i) != NULL)) depths_arg = argv[i]; given |= JOB_PASSKEY; }
        else if (!strcmp(a, "--trials")) { ok = opt_int(argc, argv, &i, 1, 100000, &trials); given |= JOB_PASSKEY; }
        else if (!strcmp(a, "--gen")) { ok = opt_int(argc, argv, &i, 1, 4096, &n_gen_pk); given |= JOB_PASSKEY; }
        else if (!strcmp(a, "--seed")) { ok = opt_u64(argc, argv, &i, &seed); mo.kv.seed = seed; }
        else if (!strcmp(a, "--prompts")) { ok = (prompts_file = opt_value(argc, argv, &i)) != NULL; given |= JOB_AGREE; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { ok = opt_int(argc, argv, &i, 1, 1 << 24, &n_predict); given |= JOB_AGREE; }
        else if (!strcmp(a, "--keys")) { ok = opt_int(argc, argv, &i, 1, EVAL_MAX_KEYS, &n_keys); given |= JOB_MULTIKEY; }
        else if (!strcmp(a, "--tasks")) { if ((ok = opt_value(argc, argv, &i) != NULL)) tasks_arg = argv[i]; sweep_opts = true; }
        else if (!strcmp(a, "--policies")) { if ((ok = opt_value(argc, argv, &i) != NULL)) policies_arg = argv[i]; sweep_opts = true; }
        else if (!strcmp(a, "--budgets")) { if ((ok = opt_value(argc, argv, &i) != NULL)) budgets_arg = argv[i]; sweep_opts = true; }
        else if (!strcmp(a, "--out")) { ok = (out_dir = opt_value(argc, argv, &i)) != NULL; sweep_opts = true; }
        else if (!strcmp(a, "--byte-budgets")) { byte_budgets = true; sweep_opts = true; }
        else return unknown_option(a);
        if (!ok) return EXIT_USAGE;
    }
    /* options must fit the job */
    const char *why = NULL;
    if (tasks_arg && strcmp(sub, "sweep")) why = "--tasks goes with lethe eval sweep";
    else if (tasks_arg && !(jobs = parse_tasks(tasks_arg))) why = "bad --tasks (comma list of ppl, passkey, agree, needle, multikey)";
    /* the pass key's options serve needle and multikey too */
    const int jobs_opts = jobs | (jobs & JOB_RETRIEVAL ? JOB_PASSKEY : 0);
    if (why) {
        /* reported below */
    } else if (!mo.model) why = "need -m MODEL";
    else if (given & ~jobs_opts) why = "an option of another job was given (ppl: -f --batch; passkey, needle, multikey: --lengths --depths --trials --gen; multikey: --keys; agree: --prompts -n)";
    else if (sweep_opts && !sweep) why = "--policies, --budgets and --out go with --sweep";
    else if (sweep && (policy_given || budget_given || mo.kv_budget_mib > 0 || mo.kv.budget_bytes > 0))
        why = "a sweep sets policies and budgets with --policies and --budgets (not --kv-policy, --kv-budget, --kv-budget-mib)";
    else if ((jobs & JOB_AGREE) && mo.kv_budget_mib > 0)
        why = "agree runs the full-cache reference in the same pool: give the budget with --kv-budget, not --kv-budget-mib";
    if (why) {
        fprintf(stderr, "lethe eval %s: %s\n", sub, why);
        return usage_error();
    }

    /* lists */
    int lengths[MAX_LIST], n_lengths = 0, n_depths = 5, n_policies = 0, n_budget_items = 0;
    double depths[MAX_LIST] = {0, 0.25, 0.5, 0.75, 1};
    char *items[MAX_LIST];
    const char *policies[MAX_LIST];
    double budget_val[MAX_LIST];
    bool budget_is_pct[MAX_LIST];
    if (lengths_arg) {
        int n = split_list(lengths_arg, items);
        long x;
        for (int k = 0; k < n; k++)
            if (!parse_int(items[k], 8, 1 << 24, &x)) n = -1;
            else lengths[n_lengths++] = (int)x;
        if (n < 1) { fprintf(stderr, "lethe eval: bad --lengths (comma list of token counts >= 8)\n"); return EXIT_USAGE; }
    }
    if (depths_arg) {
        int n = split_list(depths_arg, items);
        n_depths = 0;
        for (int k = 0; k < n; k++)
            if (!parse_float(items[k], 0, 1, &depths[n_depths++])) n = -1;
        if (n < 1) { fprintf(stderr, "lethe eval: bad --depths (comma list of numbers in [0, 1])\n"); return EXIT_USAGE; }
    }
    if (policies_arg) {
        int n = split_list(policies_arg, items);
        for (int k = 0; k < n; k++) {
            if (!known_policy(items[k])) { fprintf(stderr, "lethe eval: unknown KV policy '%s'\n", items[k]); return EXIT_USAGE; }
            policies[n_policies++] = items[k];
        }
        if (n < 1) { fprintf(stderr, "lethe eval: bad --policies\n"); return EXIT_USAGE; }
    } else {
        for (const char *const *p = lethe_kv_policy_names(); *p && n_policies < MAX_LIST; p++)
            if (strcmp(*p, "full")) policies[n_policies++] = *p;
    }
    {
        static char default_budgets[] = "10%,25%,50%";
        int n = split_list(budgets_arg ? budgets_arg : default_budgets, items);
        for (int k = 0; k < n; k++) {
            size_t len = strlen(items[k]);
            budget_is_pct[k] = len > 1 && items[k][len - 1] == '%';
            if (budget_is_pct[k]) items[k][len - 1] = 0;
            long x;
            if (budget_is_pct[k] ? !parse_float(items[k], 1e-6, 10000, &budget_val[k]) : !parse_int(items[k], 1, 1 << 24, &x)) {
                n = -1;
                break;
            }
            if (!budget_is_pct[k]) budget_val[k] = (double)x;
        }
        if (n < 1) { fprintf(stderr, "lethe eval: bad --budgets (comma list of N%% or slot counts)\n"); return EXIT_USAGE; }
        n_budget_items = n;
    }

    /* inputs */
    int rc = 1;
    char *text = NULL, *prompts_buf = NULL;
    size_t text_len = 0;
    const char *prompt_list[1024];
    int n_prompts = 0;
    size_t longest_prompt = 0;
    lethe_token *text_ids = NULL;
    lethe_model *m = NULL;
    lethe_ctx *eng = NULL;
    eval_row *rows = NULL;
    if (jobs & JOB_PPL) {
        if (!text_file) {
            if (access(DEFAULT_TEXT, R_OK) != 0) {
                fprintf(stderr, "lethe eval: need -f TEXT (%s is not here)\n", DEFAULT_TEXT);
                return usage_error();
            }
            text_file = DEFAULT_TEXT;
        }
        if (!(text = read_file(text_file, &text_len))) {
            fprintf(stderr, "lethe eval: cannot read '%s'\n", text_file);
            return 1;
        }
    }
    if (jobs & JOB_AGREE) {
        if (prompts_file) {
            size_t len;
            if (!(prompts_buf = read_file(prompts_file, &len))) {
                fprintf(stderr, "lethe eval: cannot read '%s'\n", prompts_file);
                goto out;
            }
            for (char *line = strtok(prompts_buf, "\n"); line && n_prompts < 1024; line = strtok(NULL, "\n")) {
                size_t l = strlen(line);
                while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
                if (l) prompt_list[n_prompts++] = line;
            }
            if (!n_prompts) {
                fprintf(stderr, "lethe eval: no prompts in '%s'\n", prompts_file);
                goto out;
            }
        } else {
            for (const char *const *p = eval_agree_default_prompts(); *p; p++) prompt_list[n_prompts++] = *p;
        }
        for (int k = 0; k < n_prompts; k++)
            if (strlen(prompt_list[k]) > longest_prompt) longest_prompt = strlen(prompt_list[k]);
    }

    /* the context: --ctx, else -c, else the model's (read after loading) */
    const int n_seq_max = jobs & JOB_AGREE ? 2 : 1;
    if (!ctx && mo.n_ctx > 0) ctx = mo.n_ctx;
    int loaded_ctx = 0;
    if (!(m = model_opts_load(&mo))) goto out;
    if (!ctx || mo.n_ctx > 0) {
        lethe_model_info info;
        lethe_model_get_info(m, &info);
        loaded_ctx = mo.n_ctx > 0 ? mo.n_ctx : info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
        if (!ctx) ctx = loaded_ctx;
    }
    if (!lengths_arg) {
        for (int L = 256; L + n_gen_pk <= ctx && n_lengths < MAX_LIST; L *= 2) lengths[n_lengths++] = L;
        if (!n_lengths) lengths[n_lengths++] = (int)(ctx - n_gen_pk > 8 ? ctx - n_gen_pk : 8);
    }
    eval_budget budgets[MAX_LIST];
    int max_budget = (int)mo.kv.budget;
    for (int k = 0; k < n_budget_items; k++) {
        double slots = budget_is_pct[k] ? floor(budget_val[k] * (double)ctx / 100.0 + 0.5) : budget_val[k];
        if (slots < 1) slots = 1;
        if (slots > 1 << 24) slots = 1 << 24;
        budgets[k].slots = (int)slots;
        budgets[k].pct = budget_is_pct[k] ? budget_val[k] : 100.0 * slots / (double)ctx;
        budgets[k].bytes = 0;
        if (byte_budgets) {
            /* N% of the full cache's bytes at --ctx (whole pages of every layer and KV head); a
             * plain number is bytes */
            lethe_model_info mi;
            lethe_model_get_info(m, &mi);
            size_t page = (size_t)mo.kv_page_slots, slot = (mo.kv_type == LETHE_KV_F32 ? 4 : 2) * 2 * (size_t)mi.head_dim;
            if (mo.kv_type == LETHE_KV_Q8_0) slot = 2 * ((size_t)mi.head_dim / 32 * 34);
            if (mo.kv_type == LETHE_KV_Q4_0) slot = 2 * ((size_t)mi.head_dim / 32 * 18);
            double full = (double)mi.n_layer * mi.n_head_kv * (double)(((size_t)ctx + page - 1) / page * page) * (double)slot;
            budgets[k].bytes = (size_t)(budget_is_pct[k] ? budget_val[k] / 100.0 * full : budget_val[k]);
            budgets[k].pct = 100.0 * (double)budgets[k].bytes / full;
            budgets[k].slots = (int)((double)budgets[k].bytes / full * (double)ctx);
            if (budgets[k].slots < 1) budgets[k].slots = 1;
        }
        if (sweep && budgets[k].slots > max_budget) max_budget = budgets[k].slots;
    }
    /* slots per sequence the runs need: the pool is sized for them unless -c says otherwise */
    long need = ctx;
    if (max_budget > need) need = max_budget;
    if (jobs & JOB_RETRIEVAL)
        for (int k = 0; k < n_lengths; k++)
            if (lengths[k] + n_gen_pk > need) need = lengths[k] + n_gen_pk;
    if ((jobs & JOB_AGREE) && n_predict > 0 && (long)longest_prompt + 2 + n_predict > need)
        need = (long)longest_prompt + 2 + n_predict; /* a prompt has at most a token per byte, a BOS and a space */
    if (!(eng = model_opts_context(&mo, m, mo.n_ctx <= 0 && need > loaded_ctx ? (int)need : mo.n_ctx, n_seq_max))) goto out;
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    lethe_kv_usage ku;
    lethe_ctx_kv_usage(eng, &ku);

    int n_text = 0;
    if (jobs & JOB_PPL) {
        n_text = lethe_tokenize(m, text, text_len, NULL, 0, false, false);
        if (n_text < 1 || !(text_ids = malloc((size_t)n_text * sizeof *text_ids))) {
            fprintf(stderr, "lethe eval: '%s' has no tokens\n", text_file);
            goto out;
        }
        lethe_tokenize(m, text, text_len, text_ids, n_text, false, false);
    }

    eval_ppl_cfg ppl_cfg = {(int)ctx, (int)batch};
    eval_passkey_cfg pk_cfg = {lengths,          n_lengths, depths, n_depths, (int)trials, (int)n_gen_pk, seed,
                               verbose ? stderr : NULL, (int)n_keys};
    eval_agree_cfg ag_cfg = {prompt_list, n_prompts, (int)n_predict, (int)ctx};
    eval_progress pg;
    FILE *pg_out = quiet ? NULL : stderr;
    bool redraw = isatty(fileno(stderr));

    printf("model: %s (%s, %d layers, %d KV heads x %d, vocab %d), %d threads, KV %s, pages of %d slots (%zu bytes)\n",
           mo.model, info.arch, info.n_layer, info.n_head_kv, info.head_dim, info.n_vocab, lethe_ctx_n_threads(eng),
           kv_type_name(mo.kv_type), ku.page_slots, ku.page_bytes);
    if (sweep) {
        eval_sweep_cfg sc = {0};
        sc.engine = eng;
        sc.kv = mo.kv;
        sc.policies = policies;
        sc.n_policies = n_policies;
        sc.budgets = budgets;
        sc.n_budgets = n_budget_items;
        sc.ctx = (int)ctx;
        sc.baseline_slots = (int)ctx;
        sc.do_ppl = jobs & JOB_PPL;
        sc.do_passkey = jobs & JOB_PASSKEY;
        sc.do_agree = jobs & JOB_AGREE;
        sc.do_needle = jobs & JOB_NEEDLE;
        sc.do_multikey = jobs & JOB_MULTIKEY;
        sc.text = text_ids;
        sc.n_text = n_text;
        sc.ppl = ppl_cfg;
        sc.passkey = pk_cfg;
        sc.agree = ag_cfg;
        sc.peak_rss = peak_rss_bytes;
        sc.progress = &pg;
        if (make_dirs(out_dir) != 0) {
            fprintf(stderr, "lethe eval: cannot create '%s': %s\n", out_dir, strerror(errno));
            goto out;
        }
        printf("sweep: ctx %ld, %d policies x %d budgets + the full-cache baseline;%s%s%s%s%s\n", ctx, n_policies,
               n_budget_items, sc.do_ppl ? " ppl" : "", sc.do_passkey ? " passkey" : "", sc.do_agree ? " agree" : "",
               sc.do_needle ? " needle" : "", sc.do_multikey ? " multikey" : "");
        fflush(stdout);
        eval_progress_begin(&pg, pg_out, redraw, eval_sweep_units(&sc));
        int n_rows = 0;
        rows = eval_sweep_run(&sc, &n_rows);
        eval_progress_end(&pg);
        if (!rows) { fprintf(stderr, "lethe eval: out of memory\n"); goto out; }
        print_table(rows, n_rows, sc.do_needle || sc.do_multikey);
        char path[4200];
        snprintf(path, sizeof path, "%s/sweep.csv", out_dir);
        if (eval_sweep_write_csv(path, rows, n_rows) != 0) {
            fprintf(stderr, "lethe eval: cannot write '%s'\n", path);
            goto out;
        }
        printf("csv: %s\n", path);
        if (eval_plot_write_script(out_dir, "sweep", rows, n_rows) != 0) {
            fprintf(stderr, "lethe eval: cannot write '%s/sweep.gp'\n", out_dir);
            goto out;
        }
        printf("gnuplot script: %s/sweep.gp\n", out_dir);
        fflush(stdout);
        int pr = eval_plot_run(out_dir, "sweep");
        if (pr == 1) {
            fprintf(stderr, "lethe eval: gnuplot is not installed (Debian: apt-get install gnuplot-nox); kept %s and %s/sweep.gp\n", path, out_dir);
        } else if (pr == 3) {
            fprintf(stderr, "lethe eval: not running gnuplot on a directory name with a quote; run 'gnuplot sweep.gp' in %s\n", out_dir);
        } else if (pr != 0) {
            fprintf(stderr, "lethe eval: gnuplot failed on %s/sweep.gp\n", out_dir);
            goto out;
        } else {
            printf("plot: %s/sweep.png %s/sweep.svg\n", out_dir, out_dir);
        }
        rc = 0;
        goto out;
    }

    /* one configuration */
    lethe_seq_params sp = model_opts_seq_params(&mo);
    char err[600];
    if (mo.kv.budget > 0)
        printf("policy: %s, budget %d slots per layer and KV head (%.1f%% of ctx %ld)\n", mo.kv.name, mo.kv.budget,
               100.0 * mo.kv.budget / (double)ctx, ctx);
    else if (mo.kv_budget_mib > 0)
        printf("policy: %s, KV pool of %.3f MiB\n", mo.kv.name, mo.kv_budget_mib);
    else
        printf("policy: %s, budget: the whole context\n", mo.kv.name);
    fflush(stdout);
    lethe_status st = LETHE_OK;
    if (jobs == JOB_PPL) {
        eval_ppl_result r;
        eval_progress_begin(&pg, pg_out, redraw, eval_ppl_n_windows(m, n_text, (int)ctx));
        eval_progress_label(&pg, "ppl");
        st = eval_ppl(eng, &sp, text_ids, n_text, &ppl_cfg, &pg, &r, err, sizeof err);
        eval_progress_end(&pg);
        if (!st) {
            printf("ppl: %.6f\n", r.ppl);
            printf("tokens scored: %ld (%s, %d windows of up to %ld tokens, each from a start token in a fresh sequence; every "
                   "token after it scored)\n", r.n_scored, text_file, r.n_windows, ctx);
            print_cost(&r.cost);
        }
    } else if (jobs == JOB_PASSKEY) {
        eval_passkey_result r;
        eval_progress_begin(&pg, pg_out, redraw, eval_passkey_n_cases(&pk_cfg));
        eval_progress_label(&pg, "passkey");
        st = eval_passkey(eng, &sp, &pk_cfg, &pg, &r, err, sizeof err);
        eval_progress_end(&pg);
        if (!st) {
            print_accuracy("passkey", &r, lengths, n_lengths, depths, n_depths, trials);
            print_cost(&r.cost);
        }
        eval_passkey_result_free(&r);
    } else if (jobs == JOB_NEEDLE || jobs == JOB_MULTIKEY) {
        eval_task task = jobs == JOB_NEEDLE ? EVAL_TASK_NEEDLE : EVAL_TASK_MULTIKEY;
        eval_passkey_result r;
        eval_progress_begin(&pg, pg_out, redraw, eval_passkey_n_cases(&pk_cfg));
        eval_progress_label(&pg, eval_task_name(task));
        st = eval_retrieval(eng, &sp, task, &pk_cfg, &pg, &r, err, sizeof err);
        eval_progress_end(&pg);
        if (!st) {
            if (task == EVAL_TASK_MULTIKEY) printf("multikey: %ld needles per prompt, one asked\n", n_keys);
            print_accuracy(eval_task_name(task), &r, lengths, n_lengths, depths, n_depths, trials);
            print_cost(&r.cost);
        }
        eval_passkey_result_free(&r);
    } else {
        eval_agree_result r;
        eval_progress_begin(&pg, pg_out, redraw, n_prompts);
        eval_progress_label(&pg, "agree");
        st = eval_agree(eng, &sp, &ag_cfg, &pg, &r, err, sizeof err);
        eval_progress_end(&pg);
        if (!st) {
            printf("agree: %.6f (%ld/%ld steps, %d prompts)\n", r.agree, r.n_match, r.n_steps, n_prompts);
            printf("kl: %.6g (mean KL(full || policy) per step, nats)\n", r.kl);
            print_cost(&r.cost);
        }
    }
    if (st) {
        fprintf(stderr, "lethe eval %s: %s\n", sub, err);
        goto out;
    }
    rc = 0;
out:
    free(rows);
    free(text_ids);
    free(text);
    free(prompts_buf);
    lethe_ctx_free(eng);
    lethe_model_free(m);
    return rc;
}
