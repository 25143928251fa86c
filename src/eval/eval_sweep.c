/* Sweep: every policy at every budget, plus the full cache as the baseline
 * row, each running the chosen jobs (ppl, passkey, agree) on the same model
 * and data. A configuration that cannot run is a row with a note. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

const char EVAL_CSV_HEADER[] =
    "policy,budget_slots,budget_pct,kv_bytes_peak,ppl,passkey_acc,agree,kl,decode_tok_s,peak_rss_bytes,note";
const char EVAL_CSV_HEADER_RETRIEVAL[] = "policy,budget_slots,budget_pct,kv_bytes_peak,ppl,passkey_acc,agree,kl,decode_tok_s,"
                                         "peak_rss_bytes,needle_acc,multikey_acc,note";

static long units_per_config(const eval_sweep_cfg *c) {
    long u = 0;
    if (c->do_ppl) u += eval_ppl_n_windows(lethe_ctx_model(c->engine), c->n_text, c->ppl.ctx);
    if (c->do_passkey) u += eval_passkey_n_cases(&c->passkey);
    if (c->do_agree) u += c->agree.n_prompts;
    if (c->do_needle) u += eval_passkey_n_cases(&c->passkey);
    if (c->do_multikey) u += eval_passkey_n_cases(&c->passkey);
    return u;
}

long eval_sweep_units(const eval_sweep_cfg *c) {
    return units_per_config(c) * (1 + (long)c->n_policies * c->n_budgets);
}

static void add_note(eval_row *row, const char *job, const char *msg) {
    size_t len = strlen(row->note);
    snprintf(row->note + len, sizeof row->note - len, "%s%s: %s", len ? "; " : "", job, msg);
}

/* Moves the bar to where it would be had the job run all its units. */
static void skip_units(eval_progress *pg, long start, long units) {
    if (pg && pg->done < start + units) eval_progress_step(pg, start + units - pg->done);
}

static void run_row(const eval_sweep_cfg *c, eval_row *row, const char *tag) {
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv = c->kv;
    sp.kv.name = row->policy;
    sp.kv.budget = row->baseline || row->budget_bytes ? 0 : row->budget_slots;
    sp.kv.budget_bytes = row->baseline ? 0 : row->budget_bytes;
    if (!lethe_kv_policy_uses(row->policy, "cold")) sp.kv.cold = sp.kv.cold_dir = NULL; /* quest's --kv-cold */
    eval_cost cost = {0};
    eval_progress *pg = c->progress;
    char label[96], err[400];
    if (c->do_ppl) {
        snprintf(label, sizeof label, "%s ppl", tag);
        eval_progress_label(pg, label);
        long start = pg ? pg->done : 0;
        eval_ppl_result r;
        if (eval_ppl(c->engine, &sp, c->text, c->n_text, &c->ppl, pg, &r, err, sizeof err) == LETHE_OK) {
            row->has_ppl = true;
            row->ppl = r.ppl;
            eval_cost_merge(&cost, &r.cost);
        } else {
            add_note(row, "ppl", err);
        }
        skip_units(pg, start, eval_ppl_n_windows(lethe_ctx_model(c->engine), c->n_text, c->ppl.ctx));
    }
    if (c->do_passkey) {
        snprintf(label, sizeof label, "%s passkey", tag);
        eval_progress_label(pg, label);
        long start = pg ? pg->done : 0;
        eval_passkey_result r;
        if (eval_passkey(c->engine, &sp, &c->passkey, pg, &r, err, sizeof err) == LETHE_OK) {
            row->has_passkey = true;
            row->passkey_acc = r.accuracy;
            eval_cost_merge(&cost, &r.cost);
        } else {
            add_note(row, "passkey", err);
        }
        eval_passkey_result_free(&r);
        skip_units(pg, start, eval_passkey_n_cases(&c->passkey));
    }
    if (c->do_agree) {
        snprintf(label, sizeof label, "%s agree", tag);
        eval_progress_label(pg, label);
        long start = pg ? pg->done : 0;
        eval_agree_result r;
        if (eval_agree(c->engine, &sp, &c->agree, pg, &r, err, sizeof err) == LETHE_OK) {
            row->has_agree = true;
            row->agree = r.agree;
            row->kl = r.kl;
            eval_cost_merge(&cost, &r.cost);
        } else {
            add_note(row, "agree", err);
        }
        skip_units(pg, start, c->agree.n_prompts);
    }
    for (int k = 0; k < 2; k++) {
        eval_task task = k ? EVAL_TASK_MULTIKEY : EVAL_TASK_NEEDLE;
        if (!(k ? c->do_multikey : c->do_needle)) continue;
        snprintf(label, sizeof label, "%s %s", tag, eval_task_name(task));
        eval_progress_label(pg, label);
        long start = pg ? pg->done : 0;
        eval_passkey_result r;
        if (eval_retrieval(c->engine, &sp, task, &c->passkey, pg, &r, err, sizeof err) == LETHE_OK) {
            if (k) {
                row->has_multikey = true;
                row->multikey_acc = r.accuracy;
            } else {
                row->has_needle = true;
                row->needle_acc = r.accuracy;
            }
            eval_cost_merge(&cost, &r.cost);
        } else {
            add_note(row, eval_task_name(task), err);
        }
        eval_passkey_result_free(&r);
        skip_units(pg, start, eval_passkey_n_cases(&c->passkey));
    }
    row->kv_bytes_peak = cost.kv_bytes_peak;
    row->disk_bytes_peak = cost.disk_bytes_peak;
    row->disk_read_bytes = cost.disk_read_bytes;
    row->decode_tok_s = eval_cost_tok_s(&cost);
    row->peak_rss_bytes = c->peak_rss ? c->peak_rss() : 0;
}

eval_row *eval_sweep_run(const eval_sweep_cfg *c, int *n_rows) {
    int n = 1 + c->n_policies * c->n_budgets;
    eval_row *rows = calloc((size_t)n, sizeof *rows);
    if (!rows) return NULL;
    char tag[96];
    eval_row *row = &rows[0];
    snprintf(row->policy, sizeof row->policy, "full");
    row->baseline = true;
    row->budget_slots = c->baseline_slots;
    row->budget_pct = c->ctx > 0 ? 100.0 * c->baseline_slots / c->ctx : 100.0;
    run_row(c, row, "full (baseline)");
    for (int p = 0; p < c->n_policies; p++) {
        for (int b = 0; b < c->n_budgets; b++) {
            row = &rows[1 + p * c->n_budgets + b];
            snprintf(row->policy, sizeof row->policy, "%s", c->policies[p]);
            row->budget_slots = c->budgets[b].slots;
            row->budget_pct = c->budgets[b].pct;
            row->budget_bytes = c->budgets[b].bytes;
            snprintf(tag, sizeof tag, "%s@%.4g%%", row->policy, row->budget_pct);
            run_row(c, row, tag);
        }
    }
    *n_rows = n;
    return rows;
}

/* The row's score for eval_sweep_best: the mean retrieval accuracy, or (no
 * retrieval task) minus the perplexity, or the agreement; -inf: unscored. */
static double row_score(const eval_row *r) {
    double sum = 0.0;
    int n = 0;
    if (r->has_passkey) sum += r->passkey_acc, n++;
    if (r->has_needle) sum += r->needle_acc, n++;
    if (r->has_multikey) sum += r->multikey_acc, n++;
    if (n > 0) return sum / n;
    if (r->has_ppl && isfinite(r->ppl)) return -r->ppl;
    if (r->has_agree) return r->agree;
    return -INFINITY;
}

/* True when row a beats row b (both scored): score, then ppl, then bytes. */
static bool row_better(const eval_row *a, const eval_row *b) {
    const double sa = row_score(a), sb = row_score(b);
    if (fabs(sa - sb) > 1e-9) return sa > sb;
    const double pa = a->has_ppl && isfinite(a->ppl) ? a->ppl : INFINITY;
    const double pb = b->has_ppl && isfinite(b->ppl) ? b->ppl : INFINITY;
    if (pa != pb) return pa < pb;
    return a->kv_bytes_peak < b->kv_bytes_peak;
}

int eval_sweep_best(const eval_row *rows, int n_rows, double pct) {
    int best = -1;
    for (int i = 0; i < n_rows; i++) {
        const eval_row *r = &rows[i];
        if (r->baseline || r->note[0] || fabs(r->budget_pct - pct) > 1e-9 || row_score(r) == -INFINITY) continue;
        if (best < 0 || row_better(r, &rows[best])) best = i;
    }
    return best;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_text(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fputc('"', f);
}

int eval_sweep_write_csv(const char *path, const eval_row *rows, int n_rows) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    bool retrieval = false;
    for (int i = 0; i < n_rows; i++) retrieval |= rows[i].has_needle || rows[i].has_multikey;
    bool bytes = false; /* byte budgets: three more columns after the note */
    for (int i = 0; i < n_rows; i++) bytes |= rows[i].budget_bytes > 0;
    fprintf(f, "%s%s\n", retrieval ? EVAL_CSV_HEADER_RETRIEVAL : EVAL_CSV_HEADER,
            bytes ? ",budget_bytes,disk_bytes,disk_read_bytes" : "");
    for (int i = 0; i < n_rows; i++) {
        const eval_row *r = &rows[i];
        csv_text(f, r->policy);
        fprintf(f, ",%d,%.2f,%zu,", r->budget_slots, r->budget_pct, r->kv_bytes_peak);
        if (r->has_ppl && isfinite(r->ppl)) fprintf(f, "%.6f", r->ppl);
        fputc(',', f);
        if (r->has_passkey) fprintf(f, "%.2f", r->passkey_acc);
        fputc(',', f);
        if (r->has_agree) fprintf(f, "%.6f,%.6g", r->agree, r->kl);
        else fputc(',', f);
        fprintf(f, ",%.1f,%ld,", r->decode_tok_s, r->peak_rss_bytes);
        if (retrieval) {
            if (r->has_needle) fprintf(f, "%.2f", r->needle_acc);
            fputc(',', f);
            if (r->has_multikey) fprintf(f, "%.2f", r->multikey_acc);
            fputc(',', f);
        }
        csv_text(f, r->note);
        if (bytes) fprintf(f, ",%zu,%zu,%llu", r->budget_bytes, r->disk_bytes_peak, (unsigned long long)r->disk_read_bytes);
        fputc('\n', f);
    }
    int bad = ferror(f);
    return fclose(f) != 0 || bad ? -1 : 0;
}
