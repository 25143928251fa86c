/* The model: hyper-parameters, weights and tokenizer, immutable once loaded
 * (contexts on many threads share it; the engine state lives in
 * runtime/ctx.h). Hyper-parameters and weights loaded from a GGUF file or a
 * llama2.c checkpoint into the same structure so one forward pass serves
 * both. Weights are views into the file mapping unless a conversion was
 * needed (norm vectors and biases are always held as F32). */
#ifndef LETHE_MODEL_H
#define LETHE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "lethe.h"
#include "tensor/types.h"
#include "tokenize/tokenizer.h"
#include "util/error.h"

typedef enum {
    ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): llama in GGUF, llama2.c */
    ROPE_NEOX, /* rotate (x[i], x[i + n_rot/2]): qwen2, HF layout */
} rope_style;

/* What distinguishes one architecture's forward pass from another's; the
 * pass itself is written once (model/forward.c). */
typedef struct {
    const char *name;       /* general.architecture value */
    rope_style rope;
    bool qkv_bias;          /* attn_q/k/v have bias vectors */
    float default_rope_base;
} arch_desc;

const arch_desc *arch_find(const char *name); /* NULL when unsupported */

typedef struct {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
    float rope_base, rms_eps;
} hparams;

/* A 2-D weight: n_rows rows of n_cols elements of `type`, row-major, or
 * interleaved by 8 rows when x8 (tensor/repack.h: matmul only). */
typedef struct {
    lt_type type;
    const void *data;
    int64_t n_cols, n_rows;
    bool x8;
} weight;

typedef struct {
    const float *attn_norm;
    weight wq, wk, wv, wo;
    const float *bq, *bk, *bv; /* NULL without qkv_bias */
    const float *ffn_norm;
    weight w_gate, w_up, w_down;
} layer_weights;

struct lethe_model {
    const arch_desc *arch;
    hparams hp;
    char name[128];
    weight tok_embd;
    const float *output_norm;
    weight output;
    layer_weights *layers;
    uint64_t n_params, weight_bytes;

    tokenizer *tok;
    char *chat_template;        /* tokenizer.chat_template (NUL-terminated copy) or NULL */

    /* storage behind the views */
    lt_gguf_file *gguf;            /* GGUF models */
    void *map;                  /* llama2.c checkpoints: the mapping */
    size_t map_size;
    float **owned;              /* F32 copies made at load (norms, biases) */
    int n_owned, cap_owned;

    char err[LETHE_ERR_MAX];
};

/* Loaders fill a zeroed model; on failure they return an error (message in
 * m->err) and leave what they allocated for model_destroy to free. */
lethe_status model_load_gguf(lethe_model *m, const char *path);
lethe_status model_load_llama2c(lethe_model *m, const char *path, const char *tokenizer_path);
/* Checks hyper-parameters and weight shapes after a loader ran. */
lethe_status model_validate(lethe_model *m);
void model_destroy(lethe_model *m);
/* Weight bytes one decode step reads (model_bytes.c): every layer matrix
 * and the output matrix once, one row of the token embedding, the norms and
 * biases (held as F32). The numerator of `lethe bench`'s roofline. */
uint64_t model_decode_bytes(const lethe_model *m);
/* Repacks the layer and output matrices in place into the x8 layout where
 * the dispatched kernels have one (model_repack.c); never fails: a matrix
 * that cannot be repacked stays row-major. */
void model_repack(lethe_model *m);
/* Keeps an F32 buffer alive for the model's life; returns it or NULL. */
float *model_own(lethe_model *m, size_t n_floats);

#endif
