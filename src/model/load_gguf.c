/* Binds a GGUF file to the model structure: hyper-parameters only from
 * metadata (never guessed from names), weights as views into the mapping. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "model/model.h"

/* "<arch>.<suffix>" */
static const char *akey(const lethe_model *m, const char *suffix) {
    static _Thread_local char buf[160];
    snprintf(buf, sizeof buf, "%s.%s", m->arch->name, suffix);
    return buf;
}

/* Reads an integer hyper-parameter that may be stored per layer as an array
 * (all equal in the models lethe supports). Returns false when absent. */
static bool get_int(lethe_model *m, const char *suffix, int *out, lethe_status *st) {
    const char *key = akey(m, suffix);
    const lt_gguf_value *v = lt_gguf_get(m->gguf, key);
    if (!v) return false;
    if (v->type == GGUF_TYPE_ARRAY) {
        const lt_gguf_array *a = &v->v.arr;
        if (a->n == 0 || a->type == GGUF_TYPE_STRING || a->type == GGUF_TYPE_ARRAY) goto bad;
        int64_t first = 0, x = 0;
        for (uint64_t i = 0; i < a->n; i++) {
            /* a float element must be a whole number in range: converting
             * anything else to an integer is undefined behaviour */
            if (!lt_gguf_arr_int(a, i, &x)) {
                *st = set_error(m->err, LETHE_ERR_FORMAT, "model: metadata '%s' element %llu (%g) is not an integer in range", key,
                                (unsigned long long)i, lt_gguf_arr_f64(a, i));
                return false;
            }
            if (i == 0) first = x;
            if (x != first) {
                *st = set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: '%s' differs between layers, which lethe does not support", key);
                return false;
            }
        }
        if (first < 0 || first > (1 << 30)) goto bad;
        *out = (int)first;
        return true;
    }
    int64_t x;
    if (!lt_gguf_get_i64(m->gguf, key, &x) || x < 0 || x > (1 << 30)) goto bad;
    *out = (int)x;
    return true;
bad:
    *st = set_error(m->err, LETHE_ERR_FORMAT, "model: metadata '%s' is not a valid count", key);
    return false;
}

static lethe_status require_int(lethe_model *m, const char *suffix, int *out) {
    lethe_status st = LETHE_OK;
    if (get_int(m, suffix, out, &st)) return LETHE_OK;
    if (st) return st;
    return set_error(m->err, LETHE_ERR_FORMAT, "model: required metadata '%s' is missing", akey(m, suffix));
}

static lethe_status optional_float(lethe_model *m, const char *suffix, float *out) {
    const char *key = akey(m, suffix);
    if (lt_gguf_find_key(m->gguf, key) < 0) return LETHE_OK;
    if (!lt_gguf_get_f32(m->gguf, key, out) || !isfinite(*out))
        return set_error(m->err, LETHE_ERR_FORMAT, "model: metadata '%s' is not a finite float32", key);
    return LETHE_OK;
}

static const lt_gguf_tensor *find(lethe_model *m, const char *fmt, int layer) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    return lt_gguf_find_tensor(m->gguf, name);
}

static lethe_status bind_weight(lethe_model *m, weight *w, const char *fmt, int layer, bool required) {
    const lt_gguf_tensor *t = find(m, fmt, layer);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (!required) return LETHE_OK;
        char name[96];
        snprintf(name, sizeof name, fmt, layer);
        return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' is missing", name);
    }
    if (t->n_dims > 2 || t->ne[2] != 1 || t->ne[3] != 1)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' should be 2-D", t->cname);
    w->type = (lt_type)t->type;
    w->data = t->data;
    w->n_cols = t->ne[0];
    w->n_rows = t->ne[1];
    m->n_params += t->n_elements;
    m->weight_bytes += t->n_bytes;
    return LETHE_OK;
}

/* A 1-D vector of n floats (norm weight or bias), converted to F32 if stored
 * otherwise. *out stays NULL when the tensor is absent and not required. */
static lethe_status bind_vector(lethe_model *m, const float **out, const char *fmt, int layer, int64_t n, bool required) {
    const lt_gguf_tensor *t = find(m, fmt, layer);
    *out = NULL;
    if (!t) {
        if (!required) return LETHE_OK;
        char name[96];
        snprintf(name, sizeof name, fmt, layer);
        return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' is missing", name);
    }
    if ((int64_t)t->n_elements != n || t->ne[0] != n)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: tensor '%s' has %llu elements, expected %lld", t->cname,
                         (unsigned long long)t->n_elements, (long long)n);
    m->n_params += t->n_elements;
    m->weight_bytes += t->n_bytes;
    if (t->type == LT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return LETHE_OK;
    }
    const lt_traits *tr = lt_type_traits((lt_type)t->type);
    if (!tr || !tr->to_float)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: tensor '%s' has type %s, which lethe does not support", t->cname,
                         lt_type_name(t->type));
    float *buf = model_own(m, (size_t)n);
    if (!buf) return set_error(m->err, LETHE_ERR_NOMEM, "model: out of memory");
    tr->to_float(t->data, buf, n);
    *out = buf;
    return LETHE_OK;
}

static lethe_status read_hparams(lethe_model *m) {
    hparams *hp = &m->hp;
    lethe_status st;
    if ((st = require_int(m, "embedding_length", &hp->n_embd))) return st;
    if ((st = require_int(m, "block_count", &hp->n_layer))) return st;
    if ((st = require_int(m, "feed_forward_length", &hp->n_ff))) return st;
    if ((st = require_int(m, "attention.head_count", &hp->n_head))) return st;
    hp->n_head_kv = hp->n_head;
    st = LETHE_OK;
    get_int(m, "attention.head_count_kv", &hp->n_head_kv, &st);
    if (st) return st;
    hp->n_ctx_train = 0;
    get_int(m, "context_length", &hp->n_ctx_train, &st);
    if (st) return st;
    if (hp->n_head <= 0 || hp->n_embd % hp->n_head != 0)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: embedding length %d is not a multiple of %d heads", hp->n_embd, hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    get_int(m, "attention.key_length", &hp->head_dim, &st);
    if (st) return st;
    int v_len = hp->head_dim;
    get_int(m, "attention.value_length", &v_len, &st);
    if (st) return st;
    if (v_len != hp->head_dim)
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: key length %d != value length %d", hp->head_dim, v_len);
    hp->n_rot = hp->head_dim;
    get_int(m, "rope.dimension_count", &hp->n_rot, &st);
    if (st) return st;
    hp->rope_base = m->arch->default_rope_base;
    if ((st = optional_float(m, "rope.freq_base", &hp->rope_base))) return st;
    hp->rms_eps = 1e-5f;
    if ((st = optional_float(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps))) return st;
    float scale = 1.0f;
    if ((st = optional_float(m, "rope.scaling.factor", &scale))) return st;
    lt_gguf_str stype;
    if (lt_gguf_get_str(m->gguf, akey(m, "rope.scaling.type"), &stype) && !lt_gguf_str_eq(stype, "none") && scale != 1.0f) {
        char t[32];
        return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: rope scaling '%s' is not supported yet", lt_gguf_str_copy(stype, t, sizeof t));
    }
    return LETHE_OK;
}

lethe_status model_load_gguf(lethe_model *m, const char *path) {
    lethe_status st = LETHE_OK;
    m->gguf = lt_gguf_open(path, m->err, &st);
    if (!m->gguf) return st;

    lt_gguf_str arch;
    char arch_name[64];
    if (!lt_gguf_get_str(m->gguf, "general.architecture", &arch))
        return set_error(m->err, LETHE_ERR_FORMAT, "model: metadata 'general.architecture' is missing");
    lt_gguf_str_copy(arch, arch_name, sizeof arch_name);
    m->arch = arch_find(arch_name);
    if (!m->arch) return set_error(m->err, LETHE_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (llama, qwen2)", arch_name);
    lt_gguf_str name;
    if (lt_gguf_get_str(m->gguf, "general.name", &name)) lt_gguf_str_copy(name, m->name, sizeof m->name);
    if ((st = read_hparams(m))) return st;

    hparams *hp = &m->hp;
    if ((st = bind_weight(m, &m->tok_embd, "token_embd.weight", 0, true))) return st;
    hp->n_vocab = (int)m->tok_embd.n_rows;
    if ((st = bind_vector(m, &m->output_norm, "output_norm.weight", 0, hp->n_embd, true))) return st;
    if ((st = bind_weight(m, &m->output, "output.weight", 0, false))) return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */

    if (hp->n_layer > 4096) return set_error(m->err, LETHE_ERR_FORMAT, "model: %d layers is not plausible", hp->n_layer);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return set_error(m->err, LETHE_ERR_NOMEM, "model: out of memory");
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    for (int l = 0; l < hp->n_layer; l++) {
        layer_weights *L = &m->layers[l];
        if ((st = bind_vector(m, &L->attn_norm, "blk.%d.attn_norm.weight", l, hp->n_embd, true))) return st;
        if ((st = bind_vector(m, &L->ffn_norm, "blk.%d.ffn_norm.weight", l, hp->n_embd, true))) return st;
        if ((st = bind_weight(m, &L->wq, "blk.%d.attn_q.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->wk, "blk.%d.attn_k.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->wv, "blk.%d.attn_v.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->wo, "blk.%d.attn_output.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->w_gate, "blk.%d.ffn_gate.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->w_up, "blk.%d.ffn_up.weight", l, true))) return st;
        if ((st = bind_weight(m, &L->w_down, "blk.%d.ffn_down.weight", l, true))) return st;
        if ((st = bind_vector(m, &L->bq, "blk.%d.attn_q.bias", l, q_dim, m->arch->qkv_bias))) return st;
        if ((st = bind_vector(m, &L->bk, "blk.%d.attn_k.bias", l, kv_dim, m->arch->qkv_bias))) return st;
        if ((st = bind_vector(m, &L->bv, "blk.%d.attn_v.bias", l, kv_dim, m->arch->qkv_bias))) return st;
    }
    if ((st = model_validate(m))) return st;
    model_repack(m);

    m->tok = tokenizer_from_gguf(m->gguf, m->err, &st);
    if (!m->tok) return st ? st : LETHE_ERR_FORMAT;
    if (tokenizer_n_vocab(m->tok) > hp->n_vocab)
        return set_error(m->err, LETHE_ERR_FORMAT, "model: vocabulary has %d tokens but the embedding only %d rows",
                         tokenizer_n_vocab(m->tok), hp->n_vocab);
    /* The chat template is kept as text (lethe_chat_* recognise its family);
     * a value that is not a string is ignored, as llama.cpp does. */
    lt_gguf_str tmpl;
    if (lt_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl)) {
        if (!(m->chat_template = malloc((size_t)tmpl.len + 1))) return set_error(m->err, LETHE_ERR_NOMEM, "model: out of memory");
        memcpy(m->chat_template, tmpl.data, (size_t)tmpl.len);
        m->chat_template[tmpl.len] = 0;
    }
    return LETHE_OK;
}
