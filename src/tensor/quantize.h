/* Weight quantisation for `lethe quantize`: the reference quantisers of
 * llama.cpp (ggml's quantize_row_*_ref, reimplemented: the same arithmetic
 * in the same order, so a row quantises to the same bytes), and the rules
 * that choose each tensor's type in a file of a given llama.cpp "file type"
 * (llama.cpp's llama_tensor_get_type, for the types lethe writes).
 *
 * Nothing here knows about files: the caller reads tensors, asks for their
 * types in the order llama.cpp visits them, and quantises rows. */
#ifndef LETHE_QUANTIZE_H
#define LETHE_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/types.h"

/* ---- quantisers ---- */

/* True when lt_quantize_rows can produce type t: F32, F16, BF16, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K. */
bool lt_quantize_supported(lt_type t);
/* Quantises nrows rows of n_per_row floats (a multiple of t's block size)
 * into dst, lt_row_bytes(t, n_per_row) bytes a row, exactly as llama.cpp's
 * reference quantiser of t does without an importance matrix. Returns the
 * bytes written (0 for an unsupported type or a bad row length). Rows are
 * independent: any split of the rows gives the same bytes. */
size_t lt_quantize_rows(lt_type t, const float *src, void *dst, int64_t nrows, int64_t n_per_row);

/* ---- file types and mixes ---- */

/* general.file_type values (llama.cpp's llama_ftype) lethe writes. */
enum {
    LT_FTYPE_MOSTLY_Q4_0 = 2,
    LT_FTYPE_MOSTLY_Q4_1 = 3,
    LT_FTYPE_MOSTLY_Q8_0 = 7,
    LT_FTYPE_MOSTLY_Q5_0 = 8,
    LT_FTYPE_MOSTLY_Q5_1 = 9,
    LT_FTYPE_MOSTLY_Q4_K_S = 14,
    LT_FTYPE_MOSTLY_Q4_K_M = 15,
    LT_FTYPE_MOSTLY_Q5_K_S = 16,
    LT_FTYPE_MOSTLY_Q5_K_M = 17,
    LT_FTYPE_MOSTLY_Q6_K = 18,
};

typedef struct {
    const char *name; /* as llama-quantize spells it: "Q4_K_M" */
    int ftype;        /* general.file_type */
    lt_type base;     /* the type of most weight matrices */
    const char *desc;
} lt_quant_scheme;

/* By name (case-insensitive); NULL when unknown. "Q4_K" and "Q5_K" are
 * llama-quantize's aliases of Q4_K_M and Q5_K_M. */
const lt_quant_scheme *lt_quant_scheme_find(const char *name);
/* The table, ended by an entry with name NULL. */
const lt_quant_scheme *lt_quant_schemes(void);

/* The state of one file's type choices. llama.cpp counts attn_v and
 * ffn_* tensors as it meets them, so types depend on the order of the
 * calls: ask for every tensor, in the order llama.cpp writes them
 * (lt_quant_tensor_order). */
typedef struct {
    const lt_quant_scheme *scheme;
    bool pure;           /* every quantisable matrix in the base type (llama-quantize --pure) */
    int n_layer;         /* block_count */
    int n_expert;        /* expert_count, 0 without experts */
    bool is_70b;         /* llama.cpp's LLM_TYPE_70B (80 layers with GQA): attn_v gets more bits */
    bool tied_output;    /* no output.weight: token_embd is the output matrix too */
    int n_attention_wv;
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
    int n_fallback;      /* tensors whose row length forced another type */
} lt_quant_plan;

/* names: all tensor names of the file (n of them). */
void lt_quant_plan_init(lt_quant_plan *p, const lt_quant_scheme *s, bool pure, int n_layer, int n_expert, bool is_70b,
                        const char *const *names, int64_t n);
/* Whether llama.cpp quantises this tensor at all (a matrix named *weight,
 * not a norm, gate-input or positional table, ...); n_dims as ggml counts
 * them (trailing dimensions of 1 do not count). */
bool lt_quant_tensor_allowed(const char *name, const int64_t ne[4]);
/* The type tensor name (shape ne, stored as cur) gets. A fallback (row
 * length not a multiple of the chosen type's block) is described in note
 * (may be NULL). False, with the reason in note, when llama.cpp has no
 * fallback for the shape. */
bool lt_quant_plan_type(lt_quant_plan *p, const char *name, const int64_t ne[4], lt_type cur, lt_type *out, char *note,
                        size_t note_cap);
/* The layer of a "blk.N." name, or -1. */
int lt_quant_layer_of(const char *name);
/* llama.cpp's tensor order: by layer (names without one first), then by
 * name. Fills idx[0..n) with indices into names; false when out of memory. */
bool lt_quant_tensor_order(const char *const *names, int64_t *idx, int64_t n);

#endif
