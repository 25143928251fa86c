/* tokenizer_from_gguf: reads the tokenizer.* metadata (llama_vocab::load). */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"
#include "util/error.h"

static tokenizer *fail(tokenizer *t, lethe_status *status, lethe_status st) {
    tokenizer_free(t);
    if (status) *status = st;
    return NULL;
}

/* A string value as a NUL-terminated copy in buf, or NULL when absent. */
static const char *get_cstr(const lt_gguf_file *f, const char *key, char *buf, size_t cap) {
    lt_gguf_str s;
    if (!lt_gguf_get_str(f, key, &s)) return NULL;
    return lt_gguf_str_copy(s, buf, cap);
}

static bool is_int_type(lt_gguf_type ty) {
    return ty == GGUF_TYPE_UINT8 || ty == GGUF_TYPE_INT8 || ty == GGUF_TYPE_UINT16 || ty == GGUF_TYPE_INT16 ||
           ty == GGUF_TYPE_UINT32 || ty == GGUF_TYPE_INT32 || ty == GGUF_TYPE_UINT64 || ty == GGUF_TYPE_INT64;
}

/* Special ids from metadata; an id beyond the vocabulary keeps the default
 * (llama.cpp warns and does the same, e.g. for 4294967295). */
static void read_ids(tokenizer *t, const lt_gguf_file *f) {
    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id",      "tokenizer.ggml.eos_token_id",      "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",      "tokenizer.ggml.unknown_token_id",  "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.padding_token_id",  "tokenizer.ggml.mask_token_id",     "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.fim_suf_token_id",  "tokenizer.ggml.fim_mid_token_id",  "tokenizer.ggml.fim_pad_token_id",
        "tokenizer.ggml.fim_rep_token_id",  "tokenizer.ggml.fim_sep_token_id",  "tokenizer.ggml.prefix_token_id",
        "tokenizer.ggml.suffix_token_id",   "tokenizer.ggml.middle_token_id",
    };
    lethe_token *slots[] = {&t->bos,     &t->eos,     &t->eot,     &t->eom,     &t->unk,     &t->sep,
                            &t->pad,     &t->mask,    &t->fim_pre, &t->fim_suf, &t->fim_mid, &t->fim_pad,
                            &t->fim_rep, &t->fim_sep, &t->fim_pre, &t->fim_suf, &t->fim_mid};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        uint32_t v;
        if (lt_gguf_get_u32(f, keys[i], &v) && v < (uint32_t)t->n_vocab) *slots[i] = (lethe_token)v;
    }
}

static bool read_merges(tokenizer *t, const lt_gguf_array *a, char *err) {
    size_t bytes = 0;
    for (uint64_t i = 0; i < a->n; i++) bytes += (size_t)a->strs[i].len + 1;
    t->merge_text = malloc(bytes ? bytes : 1);
    if (!t->merge_text || !strmap_init(&t->merge_map, (size_t)a->n)) {
        set_error(err, LETHE_ERR_NOMEM, "out of memory (merges)");
        return false;
    }
    size_t used = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        lt_gguf_str s = a->strs[i];
        char *dst = t->merge_text + used;
        memcpy(dst, s.data, (size_t)s.len);
        dst[s.len] = '\0';
        used += (size_t)s.len + 1;
        /* llama.cpp splits at the first space after position 0; the pair is
         * looked up as left + ' ' + right, i.e. the string itself. Strings
         * without such a space give an empty pair that never matches. */
        if (s.len < 3 || !memchr(dst + 1, ' ', (size_t)s.len - 1)) continue;
        if (!strmap_put(&t->merge_map, dst, (size_t)s.len, (int32_t)i, false)) {
            set_error(err, LETHE_ERR_NOMEM, "merge map full");
            return false;
        }
    }
    return true;
}

tokenizer *tokenizer_from_gguf(const lt_gguf_file *f, char *err, lethe_status *status) {
    char model_s[64], pre_buf[128], name_buf[256];
    if (!f) {
        set_error(err, LETHE_ERR_ARG, "no GGUF file");
        return fail(NULL, status, LETHE_ERR_ARG);
    }
    const char *model = get_cstr(f, "tokenizer.ggml.model", model_s, sizeof model_s);
    if (!model) {
        set_error(err, LETHE_ERR_FORMAT, "GGUF has no tokenizer.ggml.model");
        return fail(NULL, status, LETHE_ERR_FORMAT);
    }
    tok_model m;
    if (strcmp(model, "llama") == 0) m = TOK_SPM;
    else if (strcmp(model, "gpt2") == 0) m = TOK_BPE;
    else {
        set_error(err, LETHE_ERR_UNSUPPORTED, "tokenizer model '%s' is not supported (only 'llama' and 'gpt2')", model);
        return fail(NULL, status, LETHE_ERR_UNSUPPORTED);
    }

    const lt_gguf_array *toks = lt_gguf_get_arr(f, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_TYPE_STRING || toks->n == 0 || toks->n > INT32_MAX) {
        set_error(err, LETHE_ERR_FORMAT, "tokenizer.ggml.tokens missing or not a non-empty string array");
        return fail(NULL, status, LETHE_ERR_FORMAT);
    }
    int n = (int)toks->n;
    const lt_gguf_array *scores = lt_gguf_get_arr(f, "tokenizer.ggml.scores");
    const lt_gguf_array *types = lt_gguf_get_arr(f, "tokenizer.ggml.token_type");
    if (scores && ((scores->type != GGUF_TYPE_FLOAT32 && scores->type != GGUF_TYPE_FLOAT64) || scores->n < toks->n)) {
        set_error(err, LETHE_ERR_FORMAT, "tokenizer.ggml.scores: expected %d floats", n);
        return fail(NULL, status, LETHE_ERR_FORMAT);
    }
    if (types && (!is_int_type(types->type) || types->n < toks->n)) {
        set_error(err, LETHE_ERR_FORMAT, "tokenizer.ggml.token_type: expected %d integers", n);
        return fail(NULL, status, LETHE_ERR_FORMAT);
    }
    const lt_gguf_array *merges = NULL;
    if (m == TOK_BPE) {
        merges = lt_gguf_get_arr(f, "tokenizer.ggml.merges");
        if (!merges || merges->type != GGUF_TYPE_STRING || merges->n > INT32_MAX) {
            set_error(err, LETHE_ERR_FORMAT, "BPE vocabulary without tokenizer.ggml.merges");
            return fail(NULL, status, LETHE_ERR_FORMAT);
        }
    }

    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += toks->strs[i].len ? (size_t)toks->strs[i].len : 24;
    tokenizer *t = tok_new(m, n, bytes);
    if (!t) {
        set_error(err, LETHE_ERR_NOMEM, "out of memory (vocabulary of %d tokens)", n);
        return fail(NULL, status, LETHE_ERR_NOMEM);
    }
    for (int i = 0; i < n; i++) {
        float sc = scores ? (float)lt_gguf_arr_f64(scores, (uint64_t)i) : 0.0f;
        int ty = types ? (int)lt_gguf_arr_i64(types, (uint64_t)i) : TT_NORMAL;
        if (!tok_set(t, i, toks->strs[i].data, (size_t)toks->strs[i].len, sc, ty)) {
            set_error(err, LETHE_ERR_FORMAT, "token %d does not fit", i);
            return fail(t, status, LETHE_ERR_FORMAT);
        }
    }

    const char *pre = get_cstr(f, "tokenizer.ggml.pre", pre_buf, sizeof pre_buf);
    const char *name = get_cstr(f, "general.name", name_buf, sizeof name_buf);
    lethe_status st;
    if (m == TOK_SPM) {
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
        t->add_eos = false;
    } else {
        t->bos = 11; /* llama.cpp's defaults for gpt2 vocabularies */
        t->eos = 11;
        t->add_space_prefix = false;
        if (!read_merges(t, merges, err)) return fail(t, status, LETHE_ERR_NOMEM);
        /* a missing pre value means 'default' (llama.cpp warns loudly);
         * an unknown one is an error */
        t->pre = pretok_create(pre ? pre : "default", t, err, &st);
        if (!t->pre) return fail(t, status, st);
    }
    bool b;
    if (lt_gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;
    read_ids(t, f);
    if (lt_gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (lt_gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;

    st = tok_finish(t, name, pre, err);
    if (st != LETHE_OK) return fail(t, status, st);
    if (status) *status = LETHE_OK;
    return t;
}
