/* The sweep's plot: a gnuplot script beside the CSV with the data inline
 * (one datablock per policy, sorted by KV bytes), drawing one panel per
 * quality measure against the KV bytes held, one curve per policy and the
 * full cache as a black point; written as PNG and SVG. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

enum { M_PPL, M_PASSKEY, M_AGREE, M_KL, N_METRICS };

static const char *const METRIC_TITLE[N_METRICS] = {
    "perplexity (lower is better)",
    "pass-key accuracy, % (higher is better)",
    "agreement with the full cache's argmax (higher is better)",
    "mean KL(full || policy), nats (lower is better)",
};
static const char *const METRIC_YLABEL[N_METRICS] = {"perplexity", "accuracy (%)", "agreement", "KL (nats)"};

static bool has_metric(const eval_row *r, int k) {
    return k == M_PPL ? r->has_ppl : k == M_PASSKEY ? r->has_passkey : r->has_agree;
}

static double metric(const eval_row *r, int k) {
    return k == M_PPL ? r->ppl : k == M_PASSKEY ? r->passkey_acc : k == M_AGREE ? r->agree : r->kl;
}

/* A gnuplot double-quoted string body. */
static void gp_string(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

static void data_row(FILE *f, const eval_row *r) {
    fprintf(f, "%.6f", (double)r->kv_bytes_peak / 1024.0);
    for (int k = 0; k < N_METRICS; k++) {
        if (has_metric(r, k)) fprintf(f, " %.9g", metric(r, k));
        else fprintf(f, " NaN");
    }
    fprintf(f, " %.4g\n", r->budget_pct);
}

typedef struct {
    const char *name;
    int *rows; /* indices, sorted by KV bytes */
    int n;
} curve;

int eval_plot_write_script(const char *dir, const char *base, const eval_row *rows, int n_rows) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.gp", dir, base);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    curve *cv = calloc((size_t)n_rows + 1, sizeof *cv);
    int *idx = malloc(((size_t)n_rows + 1) * sizeof *idx);
    if (!cv || !idx) {
        free(cv);
        free(idx);
        fclose(f);
        return -1;
    }
    /* group the non-baseline rows by policy, in order of first appearance */
    int n_cv = 0, used = 0, baseline = -1;
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].baseline) {
            if (baseline < 0) baseline = i;
            continue;
        }
        bool seen = false;
        for (int c = 0; c < n_cv; c++) seen |= !strcmp(cv[c].name, rows[i].policy);
        if (seen) continue;
        cv[n_cv].name = rows[i].policy;
        cv[n_cv].rows = idx + used;
        for (int j = i; j < n_rows; j++) {
            if (rows[j].baseline || strcmp(rows[j].policy, rows[i].policy)) continue;
            /* insertion by KV bytes */
            int k = cv[n_cv].n++;
            while (k > 0 && rows[cv[n_cv].rows[k - 1]].kv_bytes_peak > rows[j].kv_bytes_peak) {
                cv[n_cv].rows[k] = cv[n_cv].rows[k - 1];
                k--;
            }
            cv[n_cv].rows[k] = j;
        }
        used += cv[n_cv].n;
        n_cv++;
    }

    fprintf(f, "# lethe eval sweep: quality against the KV bytes held at peak, one curve per policy,\n"
               "# the full cache (baseline) as a black point. Run: gnuplot %s.gp (writes %s.png and %s.svg).\n"
               "# Data columns: kv_kib ppl passkey_acc agree kl budget_pct (NaN: not measured or failed)\n",
            base, base, base);
    for (int c = 0; c < n_cv; c++) {
        fprintf(f, "$d%d << EOD\n# %s\n", c, cv[c].name);
        for (int j = 0; j < cv[c].n; j++) data_row(f, &rows[cv[c].rows[j]]);
        fprintf(f, "EOD\n");
    }
    if (baseline >= 0) {
        fprintf(f, "$full << EOD\n");
        data_row(f, &rows[baseline]);
        fprintf(f, "EOD\n");
    }

    /* panels: the measures some row has */
    int panels[N_METRICS], n_panels = 0;
    for (int k = 0; k < N_METRICS; k++) {
        bool any = false;
        for (int i = 0; i < n_rows; i++) any |= has_metric(&rows[i], k);
        if (any) panels[n_panels++] = k;
    }
    int pr = n_panels > 2 ? 2 : 1, pc = n_panels > 1 ? 2 : 1;
    fprintf(f, "\nset datafile missing NaN\nset grid\nset key below horizontal\nset xlabel \"KV bytes held at peak (KiB)\"\n"
               "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n");
    fprintf(f, "do for [fmt = 1:2] {\n"
               "  if (fmt == 1) {\n"
               "    if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) { set terminal pngcairo size %d,%d } else { set terminal png size %d,%d }\n"
               "    set output \"%s.png\"\n"
               "  } else {\n"
               "    set terminal svg size %d,%d\n"
               "    set output \"%s.svg\"\n"
               "  }\n",
            pc * 600, pr * 460, pc * 600, pr * 460, base, pc * 600, pr * 460, base);
    fprintf(f, "  set multiplot layout %d,%d title \"lethe eval: quality per KV byte\"\n", pr, pc);
    /* explicit ranges where autoscaling would meet an empty range (one
     * point, or every value the same) and warn */
    double x_lo = INFINITY, x_hi = -INFINITY;
    for (int i = 0; i < n_rows; i++) {
        double x = (double)rows[i].kv_bytes_peak / 1024.0;
        if (x < x_lo) x_lo = x;
        if (x > x_hi) x_hi = x;
    }
    if (n_rows > 0 && x_hi - x_lo < 1e-9) fprintf(f, "set xrange [%.9g:%.9g]\n", x_lo - 1 - 0.1 * x_lo, x_hi + 1 + 0.1 * x_hi);
    for (int p = 0; p < n_panels; p++) {
        int k = panels[p], col = 2 + k;
        fprintf(f, "  set title \"%s\"\n  set ylabel \"%s\"\n", METRIC_TITLE[k], METRIC_YLABEL[k]);
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < n_rows; i++) {
            if (!has_metric(&rows[i], k) || !isfinite(metric(&rows[i], k))) continue;
            if (metric(&rows[i], k) < lo) lo = metric(&rows[i], k);
            if (metric(&rows[i], k) > hi) hi = metric(&rows[i], k);
        }
        if (k == M_PASSKEY) fprintf(f, "  set yrange [-5:105]\n");
        else if (lo <= hi && hi - lo < 1e-9 * (1 + fabs(hi)))
            fprintf(f, "  set yrange [%.9g:%.9g]\n", lo - 0.1 * (1 + fabs(lo)), hi + 0.1 * (1 + fabs(hi)));
        else fprintf(f, "  set yrange [*:*]\n");
        fprintf(f, "  plot ");
        bool first = true;
        for (int c = 0; c < n_cv; c++) {
            bool any = false;
            for (int j = 0; j < cv[c].n; j++) any |= has_metric(&rows[cv[c].rows[j]], k);
            if (!any) continue;
            fprintf(f, "%s$d%d using 1:%d with linespoints lw 2 pt %d title \"", first ? "" : ", \\\n       ", c, col,
                    5 + c % 9);
            gp_string(f, cv[c].name);
            fputc('"', f);
            first = false;
        }
        if (baseline >= 0 && has_metric(&rows[baseline], k)) {
            fprintf(f, "%s$full using 1:%d with points pt 7 ps 2 lc rgb \"black\" title \"full (baseline)\"",
                    first ? "" : ", \\\n       ", col);
            first = false;
        }
        if (first) fprintf(f, "NaN notitle"); /* cannot happen: the panel has a measure */
        fprintf(f, "\n");
    }
    fprintf(f, "  unset multiplot\n  set output\n}\n");
    free(cv);
    free(idx);
    int bad = ferror(f);
    return fclose(f) != 0 || bad ? -1 : 0;
}

int eval_plot_run(const char *dir, const char *base) {
    if (strchr(dir, '\'') || strchr(base, '\'')) return 3;
    if (!system(NULL)) return 1;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) return 1;
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot '%s.gp'", dir, base);
    return system(cmd) == 0 ? 0 : 2;
}
