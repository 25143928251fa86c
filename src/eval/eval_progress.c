/* Progress bar for long eval runs: "[#####-----] 12/40 window@25% ppl". */
#include <stdio.h>
#include <string.h>

#include "eval/eval.h"

enum { BAR_WIDTH = 20 };

static void draw(eval_progress *p, bool force) {
    if (!p->out) return;
    double t = eval_now();
    if (!force && t - p->last_draw < 0.1) return; /* at most ten redraws a second */
    p->last_draw = t;
    char bar[BAR_WIDTH + 1];
    long fill = p->total > 0 ? p->done * BAR_WIDTH / p->total : 0;
    if (fill > BAR_WIDTH) fill = BAR_WIDTH;
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '-';
    bar[BAR_WIDTH] = 0;
    char line[192];
    int w = snprintf(line, sizeof line, "[%s] %ld/%ld %s", bar, p->done, p->total, p->label);
    if (w < 0) return;
    if (w >= (int)sizeof line) w = (int)sizeof line - 1;
    if (p->redraw) {
        /* pad with spaces over a longer previous line */
        fprintf(p->out, "\r%s%*s", line, p->last_width > w ? p->last_width - w : 0, "");
        p->last_width = w;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

void eval_progress_begin(eval_progress *p, FILE *out, bool redraw, long total) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->redraw = redraw;
    p->total = total;
}

void eval_progress_label(eval_progress *p, const char *label) {
    if (!p) return;
    if (!strcmp(p->label, label)) return;
    snprintf(p->label, sizeof p->label, "%s", label);
    draw(p, true);
}

void eval_progress_step(eval_progress *p, long n) {
    if (!p) return;
    p->done += n;
    if (p->redraw) draw(p, p->done >= p->total);
}

void eval_progress_end(eval_progress *p) {
    if (!p || !p->out) return;
    if (p->redraw) {
        draw(p, true);
        fputc('\n', p->out);
    } else {
        snprintf(p->label, sizeof p->label, "done");
        draw(p, true);
    }
    fflush(p->out);
}
