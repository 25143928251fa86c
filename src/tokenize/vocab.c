/* The vocabulary: token texts, scores and attributes, and everything derived
 * from them once all tokens are known (text -> id map, byte fallback ids,
 * end-of-generation set, special-token order). Mirrors llama_vocab::load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"
#include "util/error.h"

tokenizer *tok_new(tok_model model, int n, size_t text_bytes) {
    if (n <= 0) return NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->model = model;
    t->n_vocab = n;
    size_t un = (size_t)n;
    t->text_cap = text_bytes + un; /* + a NUL after each text */
    t->text = malloc(t->text_cap);
    t->text_off = malloc(un * sizeof *t->text_off);
    t->text_len = malloc(un * sizeof *t->text_len);
    t->score = calloc(un, sizeof *t->score);
    t->attr = calloc(un, sizeof *t->attr);
    t->eog = calloc(un, 1);
    if (!t->text || !t->text_off || !t->text_len || !t->score || !t->attr || !t->eog) {
        tokenizer_free(t);
        return NULL;
    }
    t->bos = t->eos = t->eot = t->eom = t->unk = t->sep = t->pad = t->mask = -1;
    t->fim_pre = t->fim_suf = t->fim_mid = t->fim_pad = t->fim_rep = t->fim_sep = -1;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    gpt2_byte_table(t->byte_enc, t->byte_enc_len);
    return t;
}

static uint16_t type_to_attr(int type) {
    switch (type) {
    case TT_NORMAL: return TA_NORMAL;
    case TT_UNKNOWN: return TA_UNKNOWN;
    case TT_CONTROL: return TA_CONTROL;
    case TT_USER_DEFINED: return TA_USER_DEFINED;
    case TT_UNUSED: return TA_UNUSED;
    case TT_BYTE: return TA_BYTE;
    default: return 0; /* undefined: no piece, never special */
    }
}

bool tok_set(tokenizer *t, int i, const char *s, size_t len, float score, int type) {
    char empty[32];
    if (i < 0 || i >= t->n_vocab) return false;
    if (len == 0) {
        /* llama.cpp renames empty tokens so that every text is a usable key */
        len = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%d]", i);
        s = empty;
    }
    if (len > UINT32_MAX || len + 1 > t->text_cap - t->text_used) return false;
    memcpy(t->text + t->text_used, s, len);
    t->text[t->text_used + len] = '\0';
    t->text_off[i] = t->text_used;
    t->text_len[i] = (uint32_t)len;
    t->text_used += len + 1;
    t->score[i] = score;
    t->attr[i] = type_to_attr(type);
    return true;
}

static lethe_token find_text(const tokenizer *t, const char *s) { return strmap_get(&t->tok_map, s, strlen(s)); }

static bool is_canonical(const tokenizer *t, lethe_token id) {
    return strmap_get(&t->tok_map, tok_text(t, id), t->text_len[id]) == id;
}

static bool text_in(const tokenizer *t, lethe_token id, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == t->text_len[id] && memcmp(*list, tok_text(t, id), t->text_len[id]) == 0) return true;
    return false;
}

/* llama.cpp finds EOT / EOM / FIM tokens by their text when the metadata
 * does not name them, and forces such tokens to CONTROL. That changes
 * tokenisation (a USER_DEFINED token is matched in plain text, a CONTROL one
 * only with parse_special), so it is reproduced here. llama.cpp walks an
 * unordered_map; with several candidates we take the lowest id. */
static void detect_by_text(tokenizer *t, lethe_token *slot, const char *const *list) {
    if (*slot >= 0) return;
    for (lethe_token id = 0; id < t->n_vocab; id++) {
        if (!text_in(t, id, list) || !is_canonical(t, id)) continue;
        *slot = id;
        t->attr[id] = TA_CONTROL;
        return;
    }
}

static void build_eog(tokenizer *t) {
    static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
                                      "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const fpre[] = {"<|fim_prefix|>", "<fim-prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>", NULL};
    static const char *const fsuf[] = {"<|fim_suffix|>", "<fim-suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>", NULL};
    static const char *const fmid[] = {"<|fim_middle|>", "<fim-middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>", NULL};
    static const char *const fpad[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
    static const char *const frep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", NULL};
    static const char *const fsep[] = {"<|file_sep|>", NULL};
    static const char *const eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", NULL};

    detect_by_text(t, &t->eot, eot);
    detect_by_text(t, &t->eom, eom);
    detect_by_text(t, &t->fim_pre, fpre);
    detect_by_text(t, &t->fim_suf, fsuf);
    detect_by_text(t, &t->fim_mid, fmid);
    detect_by_text(t, &t->fim_pad, fpad);
    detect_by_text(t, &t->fim_rep, frep);
    detect_by_text(t, &t->fim_sep, fsep);

    lethe_token ids[] = {t->fim_pad, t->fim_rep, t->fim_sep, t->eos, t->eot, t->eom};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i] >= 0) t->eog[ids[i]] = 1;
    for (lethe_token id = 0; id < t->n_vocab; id++) {
        if (!text_in(t, id, eog) || !is_canonical(t, id)) continue;
        t->eog[id] = 1;
        t->attr[id] = TA_CONTROL;
    }
}

typedef struct {
    uint32_t len;
    lethe_token id;
} len_id;

static int cmp_len_id(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Special tokens are matched longest first (llama.cpp sorts by length with
 * an unstable sort; ties are broken by id here). */
static bool build_special_order(tokenizer *t) {
    int n = 0;
    for (lethe_token id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (TA_CONTROL | TA_USER_DEFINED | TA_UNKNOWN)) n++;
    t->n_special = n;
    if (n == 0) return true;
    len_id *tmp = malloc((size_t)n * sizeof *tmp);
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!tmp || !t->special) {
        free(tmp);
        return false;
    }
    n = 0;
    for (lethe_token id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (TA_CONTROL | TA_USER_DEFINED | TA_UNKNOWN)) tmp[n++] = (len_id){t->text_len[id], id};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_len_id);
    for (int i = 0; i < n; i++) t->special[i] = tmp[i].id;
    free(tmp);
    return true;
}

static bool contains_ci(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; s && *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && (s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) == needle[i]) i++;
        if (i == n) return true;
    }
    return false;
}

/* Per-model strip attributes that llama.cpp hard-codes by name. */
static void name_attrs(tokenizer *t, const char *model_name, const char *pre) {
    if (pre && (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code"))) {
        lethe_token m = find_text(t, "<mask>");
        if (m >= 0) t->attr[m] |= TA_LSTRIP;
    } else if (contains_ci(model_name, "phi-3") || contains_ci(model_name, "phi3")) {
        for (int i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= TA_RSTRIP;
        lethe_token id = find_text(t, "</s>");
        if (id >= 0) t->attr[id] |= TA_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int i = 0; i < 3; i++) {
            id = find_text(t, keep[i]);
            if (id >= 0) t->attr[id] &= (uint16_t)~TA_RSTRIP;
        }
    }
}

/* SPM byte fallback: "<0xNN>" (upper-case hex), else the raw byte as a token. */
static void build_byte_tokens(tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        lethe_token id = strmap_get(&t->tok_map, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = strmap_get(&t->tok_map, &c, 1);
        }
        t->byte_tok[b] = id;
    }
}

lethe_status tok_finish(tokenizer *t, const char *model_name, const char *pre, char *err) {
    if (!strmap_init(&t->tok_map, (size_t)t->n_vocab)) return set_error(err, LETHE_ERR_NOMEM, "out of memory (token map)");
    for (lethe_token id = 0; id < t->n_vocab; id++)
        if (!strmap_put(&t->tok_map, tok_text(t, id), t->text_len[id], id, true))
            return set_error(err, LETHE_ERR_NOMEM, "token map full");

    lethe_token *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->unk, &t->sep, &t->pad, &t->mask,
                          &t->fim_pre, &t->fim_suf, &t->fim_mid, &t->fim_pad, &t->fim_rep, &t->fim_sep};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= t->n_vocab) *ids[i] = -1; /* a default beyond a tiny vocabulary */

    if (t->model == TOK_SPM) {
        build_byte_tokens(t);
        if (!spm_build_pairs(t)) return set_error(err, LETHE_ERR_NOMEM, "out of memory (SPM pairs)");
    }
    build_eog(t);
    if (!build_special_order(t)) return set_error(err, LETHE_ERR_NOMEM, "out of memory (special tokens)");
    name_attrs(t, model_name, pre);
    if (!special_index_build(t)) return set_error(err, LETHE_ERR_NOMEM, "out of memory (special token index)");
    if (!tok_build_pieces(t)) return set_error(err, LETHE_ERR_NOMEM, "out of memory (token pieces)");
    return LETHE_OK;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    strmap_free(&t->tok_map);
    strmap_free(&t->spm_pairs);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->merge_text);
    strmap_free(&t->merge_map);
    pretok_free(t->pre);
    free(t->special);
    special_index_free(t);
    free(t->eog);
    free(t);
}

int tokenizer_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }
lethe_token tokenizer_bos(const tokenizer *t) { return t ? t->bos : -1; }
lethe_token tokenizer_eos(const tokenizer *t) { return t ? t->eos : -1; }

bool tokenizer_is_eog(const tokenizer *t, lethe_token id) {
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}
