/* Sequences: a KV page table per layer and KV head, and the next position.
 * Several sequences share the model's pool; a fork shares its parent's
 * pages until one of them writes (copy on write in kv_stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/model.h"

struct lethe_seq {
    lethe_model *m;
    kv_stream *streams;
    int n_streams;
    int n_past;
    int n_ctx;
    int32_t *pos;     /* position scratch for one append */
    int pos_cap;
    char err[LETHE_ERR_MAX];
};

lethe_seq_params lethe_seq_default_params(void) {
    lethe_seq_params p = {0};
    return p;
}

static lethe_seq *seq_alloc(lethe_model *m, int n_ctx, char *err, size_t err_size) {
    lethe_seq *s = calloc(1, sizeof *s);
    if (s) {
        s->m = m;
        s->n_streams = m->hp.n_layer * m->hp.n_head_kv;
        s->streams = calloc((size_t)s->n_streams, sizeof *s->streams);
        s->n_ctx = n_ctx;
    }
    if (!s || !s->streams) {
        if (s) free(s);
        if (err && err_size) snprintf(err, err_size, "out of memory");
        return NULL;
    }
    for (int i = 0; i < s->n_streams; i++) kv_stream_init(&s->streams[i]);
    return s;
}

lethe_seq *lethe_seq_create(lethe_model *m, const lethe_seq_params *params, char *err, size_t err_size) {
    int n_ctx = params && params->n_ctx > 0 ? params->n_ctx : m->params.n_ctx;
    if (n_ctx > m->params.n_ctx) {
        if (err && err_size) snprintf(err, err_size, "sequence context %d exceeds the model's n_ctx %d", n_ctx, m->params.n_ctx);
        return NULL;
    }
    return seq_alloc(m, n_ctx, err, err_size);
}

lethe_seq *lethe_seq_fork(lethe_seq *src, char *err, size_t err_size) {
    lethe_seq *s = seq_alloc(src->m, src->n_ctx, err, err_size);
    if (!s) return NULL;
    for (int i = 0; i < s->n_streams; i++) {
        if (kv_stream_fork(src->m->kv, &src->streams[i], &s->streams[i]) != LETHE_OK) {
            if (err && err_size) snprintf(err, err_size, "out of memory while forking");
            lethe_seq_free(s);
            return NULL;
        }
    }
    s->n_past = src->n_past;
    return s;
}

void lethe_seq_free(lethe_seq *s) {
    if (!s) return;
    for (int i = 0; i < s->n_streams; i++) kv_stream_free(s->m->kv, &s->streams[i]);
    free(s->streams);
    free(s->pos);
    free(s);
}

int lethe_seq_n_past(const lethe_seq *s) { return s->n_past; }
const char *lethe_seq_error(const lethe_seq *s) { return s->err; }

static lethe_status append(lethe_seq *s, const lethe_token *ids, int n, float *logits, bool all) {
    if (n <= 0 || !ids) return set_error(s->err, LETHE_ERR_ARG, "append: no tokens");
    if (n > s->n_ctx - s->n_past)
        return set_error(s->err, LETHE_ERR_BUDGET, "append: %d tokens after %d would exceed the context of %d", n, s->n_past,
                         s->n_ctx);
    if (n > s->pos_cap) {
        int32_t *p = realloc(s->pos, (size_t)n * sizeof *p);
        if (!p) return set_error(s->err, LETHE_ERR_NOMEM, "append: out of memory");
        s->pos = p;
        s->pos_cap = n;
    }
    for (int i = 0; i < n; i++) s->pos[i] = s->n_past + i;
    forward_state fs = {s->streams, NULL};
    lethe_status st = forward_batch(s->m, &fs, ids, s->pos, n, logits, all, s->err);
    if (st == LETHE_OK) s->n_past += n;
    return st;
}

lethe_status lethe_seq_append(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    return append(s, ids, n, logits, false);
}

lethe_status lethe_seq_append_all_logits(lethe_seq *s, const lethe_token *ids, int n, float *logits) {
    return append(s, ids, n, logits, true);
}

lethe_status lethe_seq_decode(lethe_seq *s, lethe_token id, float *logits) { return append(s, &id, 1, logits, false); }
