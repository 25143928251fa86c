/* Which type each tensor gets (see quantize.h): llama.cpp's rules for the
 * file types lethe writes, reimplemented from its llama_tensor_get_type.
 *
 *  - output.weight (and token_embd.weight when there is no output.weight,
 *    the tied case) becomes Q6_K unless the file type is Q8_0; a row length
 *    that is not a multiple of 256 makes it Q8_0.
 *  - Q4_K_M / Q5_K_M: attn_v (and fused attn_qkv / attn_kv_b) and ffn_down
 *    of the layers use_more_bits picks (the first and last eighth, and every
 *    third layer between) become Q6_K.
 *  - Q4_K_S: the first four attn_v and the ffn_down of the first eighth of
 *    the layers become Q5_K.
 *  - 8-expert models: attn_v and attn_k Q8_0, attn_output Q5_K (Q4_K_*).
 *    70B models (80 layers, GQA): a Q4_K attn_v becomes Q5_K.
 *  - A row length that is not a multiple of the chosen type's block falls
 *    back: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if even that
 *    does not divide; the 32-element types have no fallback (an error).
 *
 * Norms, biases and other vectors, and a few small tables llama.cpp never
 * quantises, keep their type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tensor/quantize.h"

static const lt_quant_scheme SCHEMES[] = {
    {"Q8_0", LT_FTYPE_MOSTLY_Q8_0, LT_Q8_0, "8.5 bits per weight"},
    {"Q4_0", LT_FTYPE_MOSTLY_Q4_0, LT_Q4_0, "4.5 bpw, output Q6_K"},
    {"Q4_1", LT_FTYPE_MOSTLY_Q4_1, LT_Q4_1, "5.0 bpw, output Q6_K"},
    {"Q5_0", LT_FTYPE_MOSTLY_Q5_0, LT_Q5_0, "5.5 bpw, output Q6_K"},
    {"Q5_1", LT_FTYPE_MOSTLY_Q5_1, LT_Q5_1, "6.0 bpw, output Q6_K"},
    {"Q4_K_S", LT_FTYPE_MOSTLY_Q4_K_S, LT_Q4_K, "Q4_K, some attn_v / ffn_down Q5_K, output Q6_K"},
    {"Q4_K_M", LT_FTYPE_MOSTLY_Q4_K_M, LT_Q4_K, "Q4_K, half of attn_v / ffn_down Q6_K, output Q6_K"},
    {"Q4_K", LT_FTYPE_MOSTLY_Q4_K_M, LT_Q4_K, "alias of Q4_K_M (with --pure: Q4_K everywhere)"},
    {"Q5_K_S", LT_FTYPE_MOSTLY_Q5_K_S, LT_Q5_K, "Q5_K, output Q6_K"},
    {"Q5_K_M", LT_FTYPE_MOSTLY_Q5_K_M, LT_Q5_K, "Q5_K, half of attn_v / ffn_down Q6_K, output Q6_K"},
    {"Q5_K", LT_FTYPE_MOSTLY_Q5_K_M, LT_Q5_K, "alias of Q5_K_M (with --pure: Q5_K everywhere)"},
    {"Q6_K", LT_FTYPE_MOSTLY_Q6_K, LT_Q6_K, "6.56 bpw"},
    {NULL, 0, LT_F32, NULL},
};

const lt_quant_scheme *lt_quant_schemes(void) { return SCHEMES; }

const lt_quant_scheme *lt_quant_scheme_find(const char *name) {
    for (const lt_quant_scheme *s = SCHEMES; s->name; s++)
        if (!strcasecmp(s->name, name)) return s;
    return NULL;
}

/* ---- tensor categories (by name, as llama.cpp matches them) ---- */

typedef enum {
    C_TOKEN_EMBD, C_ATTN_Q, C_ATTN_V, C_ATTN_K, C_ATTN_QKV, C_ATTN_KV_B,
    C_ATTN_OUT, C_FFN_UP, C_FFN_GATE, C_FFN_DOWN, C_OUTPUT, C_OTHER
} category;

static category category_of(const char *name) {
    if (!strcmp(name, "output.weight")) return C_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return C_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight")) return C_ATTN_QKV;
    if (strstr(name, "attn_kv_b.weight")) return C_ATTN_KV_B;
    if (strstr(name, "attn_v.weight")) return C_ATTN_V;
    if (strstr(name, "attn_k.weight")) return C_ATTN_K;
    if (strstr(name, "attn_q.weight")) return C_ATTN_Q;
    if (strstr(name, "attn_output.weight")) return C_ATTN_OUT;
    if (strstr(name, "ffn_up")) return C_FFN_UP;
    if (strstr(name, "ffn_gate")) return C_FFN_GATE;
    if (strstr(name, "ffn_down")) return C_FFN_DOWN;
    return C_OTHER;
}

static bool is_attn_v(category c) { return c == C_ATTN_V || c == C_ATTN_QKV || c == C_ATTN_KV_B; }

int lt_quant_layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || v < 0 || v > 1 << 20) return -1;
    return (int)v;
}

typedef struct {
    const char *name;
    int layer;
    int64_t idx;
} order_key;

static int cmp_order(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

bool lt_quant_tensor_order(const char *const *names, int64_t *idx, int64_t n) {
    order_key *keys = malloc((size_t)(n > 0 ? n : 1) * sizeof *keys);
    if (!keys) return false;
    for (int64_t i = 0; i < n; i++) keys[i] = (order_key){names[i], lt_quant_layer_of(names[i]), i};
    qsort(keys, (size_t)n, sizeof *keys, cmp_order);
    for (int64_t i = 0; i < n; i++) idx[i] = keys[i].idx;
    free(keys);
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

bool lt_quant_tensor_allowed(const char *name, const int64_t ne[4]) {
    int n_dims = 1; /* ggml_n_dims: trailing 1s do not count */
    for (int d = 3; d >= 1; d--)
        if (ne[d] > 1) { n_dims = d + 1; break; }
    if (n_dims < 2) return false;
    if (!ends_with(name, "weight")) return false;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
                                        "ssm_conv1d", "shortconv.conv.weight", "time_mix_", "attn_rel_b.weight",
                                        ".position_embd", ".patch_embd", NULL};
    for (int i = 0; never[i]; i++)
        if (strstr(name, never[i])) return false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) return false;
    return true;
}

void lt_quant_plan_init(lt_quant_plan *p, const lt_quant_scheme *s, bool pure, int n_layer, int n_expert, bool is_70b,
                        const char *const *names, int64_t n) {
    memset(p, 0, sizeof *p);
    p->scheme = s;
    p->pure = pure;
    p->n_layer = n_layer;
    p->n_expert = n_expert;
    p->is_70b = is_70b;
    p->tied_output = true;
    for (int64_t i = 0; i < n; i++) {
        category c = category_of(names[i]);
        if (is_attn_v(c)) p->n_attention_wv++;
        if (c == C_OUTPUT) p->tied_output = false;
    }
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The layer an ffn tensor belongs to: the running count, or (with experts,
 * whose tensors need not come in layer order) the name's. */
static int ffn_layer(const lt_quant_plan *p, int counter, const char *name) {
    if (p->n_expert > 1) {
        int l = lt_quant_layer_of(name);
        return l >= 0 ? l : counter;
    }
    return counter;
}

/* llama_tensor_get_type_impl, for Q4_0..Q8_0 and Q4_K_S..Q6_K */
static lt_type mix_type(lt_quant_plan *p, const char *name, const int64_t ne[4], category c) {
    const int ft = p->scheme->ftype;
    lt_type t = p->scheme->base;
    if (c == C_OUTPUT || (p->tied_output && c == C_TOKEN_EMBD)) {
        if (ne[0] % lt_type_traits_scalar(t)->block_size != 0) return LT_Q8_0;
        return t == LT_Q8_0 ? t : LT_Q6_K;
    }
    if (c == C_TOKEN_EMBD) return t;
    if (is_attn_v(c)) {
        if ((ft == LT_FTYPE_MOSTLY_Q4_K_M || ft == LT_FTYPE_MOSTLY_Q5_K_M) && use_more_bits(p->i_attention_wv, p->n_attention_wv))
            t = LT_Q6_K;
        else if (ft == LT_FTYPE_MOSTLY_Q4_K_S && p->i_attention_wv < 4)
            t = LT_Q5_K;
        if (p->is_70b && t == LT_Q4_K) t = LT_Q5_K;
        if (p->n_expert == 8) t = LT_Q8_0;
        p->i_attention_wv++;
        return t;
    }
    if (c == C_ATTN_K) return p->n_expert == 8 ? LT_Q8_0 : t;
    if (c == C_FFN_DOWN) {
        const int il = ffn_layer(p, p->i_ffn_down, name), nl = p->n_layer;
        if (ft == LT_FTYPE_MOSTLY_Q4_K_M || ft == LT_FTYPE_MOSTLY_Q5_K_M) {
            if (use_more_bits(il, nl)) t = LT_Q6_K;
        } else if (ft == LT_FTYPE_MOSTLY_Q4_K_S && il < nl / 8) {
            t = LT_Q5_K;
        }
        p->i_ffn_down++;
        return t;
    }
    if (c == C_ATTN_OUT) {
        if (p->n_expert == 8 && (ft == LT_FTYPE_MOSTLY_Q4_K_S || ft == LT_FTYPE_MOSTLY_Q4_K_M)) t = LT_Q5_K;
        return t;
    }
    if (c == C_FFN_GATE) { p->i_ffn_gate++; return t; }
    if (c == C_FFN_UP) { p->i_ffn_up++; return t; }
    return t;
}

bool lt_quant_plan_type(lt_quant_plan *p, const char *name, const int64_t ne[4], lt_type cur, lt_type *out, char *note,
                        size_t note_cap) {
    if (note && note_cap) note[0] = 0;
    if (!lt_quant_tensor_allowed(name, ne)) {
        *out = cur;
        return true;
    }
    const category c = category_of(name);
    lt_type t = p->pure ? p->scheme->base : mix_type(p, name, ne, c);
    const lt_traits *tr = lt_type_traits_scalar(t);
    if (ne[0] % tr->block_size != 0) {
        lt_type fb;
        switch (t) {
        case LT_Q4_K: fb = LT_Q5_0; break;
        case LT_Q5_K: fb = LT_Q5_1; break;
        case LT_Q6_K: fb = LT_Q8_0; break;
        default:
            if (note && note_cap)
                snprintf(note, note_cap,
                         "tensor '%s': row length %lld is not a multiple of the %s block size %lld, and llama.cpp has no "
                         "fallback type for %s",
                         name, (long long)ne[0], tr->name, (long long)tr->block_size, tr->name);
            return false;
        }
        if (ne[0] % lt_type_traits_scalar(fb)->block_size != 0) fb = LT_F16;
        if (note && note_cap)
            snprintf(note, note_cap, "%s: row length %lld is not a multiple of %lld (%s): using %s", name, (long long)ne[0],
                     (long long)tr->block_size, tr->name, lt_type_name(fb));
        p->n_fallback++;
        t = fb;
    }
    *out = t;
    return true;
}
