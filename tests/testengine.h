/* Test set-up shared by the programs that run a model: a model and one
 * context on it, opened and closed together. */
#ifndef LETHE_TESTENGINE_H
#define LETHE_TESTENGINE_H

#include "lethe.h"

/* Loads path (tokenizer: a llama2.c tokenizer.bin or NULL) and makes a
 * context with params; NULL with a message in err. */
static inline lethe_ctx *tu_open_ctx_tok(const char *path, const char *tokenizer_bin, const lethe_ctx_params *params, char *err,
                                         size_t err_size) {
    lethe_model_params mp = lethe_model_default_params();
    mp.tokenizer_path = tokenizer_bin;
    lethe_model *m = lethe_model_load(path, &mp, err, err_size);
    if (!m) return NULL;
    lethe_ctx *c = lethe_ctx_create(m, params, err, err_size);
    if (!c) lethe_model_free(m);
    return c;
}

static inline lethe_ctx *tu_open_ctx(const char *path, const lethe_ctx_params *params, char *err, size_t err_size) {
    return tu_open_ctx_tok(path, NULL, params, err, err_size);
}

/* A sequence of c with KV policy `policy` at `budget` slots (0: none); NULL
 * with a message in err. */
static inline lethe_seq *tu_open_seq(lethe_ctx *c, const char *policy, int budget, char *err, size_t err_size) {
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = policy;
    sp.kv.budget = budget;
    return lethe_seq_create(c, &sp, err, err_size);
}

/* Frees the context and its model. */
static inline void tu_close_ctx(lethe_ctx *c) {
    if (!c) return;
    lethe_model *m = (lethe_model *)lethe_ctx_model(c);
    lethe_ctx_free(c);
    lethe_model_free(m);
}

#endif
