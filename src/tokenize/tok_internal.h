/* Private to src/tokenize: the tokenizer struct and the helpers its files
 * share. Nothing outside this folder includes it.
 *
 * Behaviour follows llama.cpp (llama-vocab.cpp / unicode.cpp at c392e509)
 * so that ids match its tokenizer exactly; each file says where and why it
 * deviates (only for invalid UTF-8 input and a few error paths). */
#ifndef LETHE_TOK_INTERNAL_H
#define LETHE_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenize/tokenizer.h"

/* tokenizer.ggml.token_type values (GGUF). */
enum {
    TT_UNDEFINED = 0,
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6,
};

/* Per-token attribute bits (llama.cpp's llama_token_attr subset). */
enum {
    TA_UNKNOWN = 1 << 0,
    TA_UNUSED = 1 << 1,
    TA_NORMAL = 1 << 2,
    TA_CONTROL = 1 << 3,
    TA_USER_DEFINED = 1 << 4,
    TA_BYTE = 1 << 5,
    TA_LSTRIP = 1 << 6, /* strip whitespace left of the special token */
    TA_RSTRIP = 1 << 7, /* ... and right of it */
};

/* ---- strmap.c: string -> int32 open-addressing hash map --------------- */

typedef struct {
    const char *key; /* not owned; NULL = empty slot */
    uint32_t len;
    uint32_t hash;
    int32_t val;
} strmap_slot;

typedef struct {
    strmap_slot *slots;
    size_t mask; /* capacity - 1 (capacity is a power of two) */
    size_t n;
    size_t max;  /* entries allowed (capacity / 2) */
} strmap;

/* Sized for up to max_entries keys; the map never grows. */
bool strmap_init(strmap *m, size_t max_entries);
void strmap_free(strmap *m);
/* Adds key -> val. The key bytes are not copied and must outlive the map.
 * With replace an existing key gets the new value, otherwise the first one
 * stays. False when the map is full. */
bool strmap_put(strmap *m, const char *key, size_t len, int32_t val, bool replace);
/* Value of key, or -1. */
int32_t strmap_get(const strmap *m, const char *key, size_t len);
/* Value of the key a ++ sep ++ b (without building it), or -1. */
int32_t strmap_get3(const strmap *m, const char *a, size_t na, char sep, const char *b, size_t nb);

/* ---- buf.c: growable arrays -------------------------------------------- */

typedef struct {
    lethe_token *v;
    size_t n, cap;
    bool oom; /* an allocation failed; the contents are incomplete */
} tokvec;

bool tokvec_grow(tokvec *t, size_t need);
static inline void tokvec_push(tokvec *t, lethe_token id) {
    if (t->n == t->cap && !tokvec_grow(t, t->n + 1)) return;
    t->v[t->n++] = id;
}

typedef struct {
    char *v;
    size_t n, cap;
} bytebuf;

/* Makes room for need bytes in total; false on allocation failure. */
bool bytebuf_reserve(bytebuf *b, size_t need);

/* ---- heap.c: priority queue of candidate merges ------------------------ */

/* A pair of adjacent symbols that could merge. The best pair is the one with
 * the highest key, and on equal keys the leftmost one (smallest left); this
 * is llama.cpp's comparator for both SPM (key = score) and BPE (key = -rank). */
typedef struct {
    double key;
    int32_t left, right;
    uint32_t size; /* byte length of the merged text when queued (detects stale pairs) */
} tok_bigram;

typedef struct {
    tok_bigram *v;
    size_t n, cap;
} tok_heap;

bool heap_push(tok_heap *h, tok_bigram b);
tok_bigram heap_pop(tok_heap *h); /* h->n > 0 */

/* Symbols of the merge loops: a byte range of a work string in a linked list. */
typedef struct {
    int32_t prev, next;
    uint32_t start, n; /* n == 0: merged into its left neighbour */
} tok_symbol;

/* ---- utf8.c -------------------------------------------------------------- */

/* Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF), as PCRE2
 * wants it. Returns the length of the valid sequence starting at s (n bytes
 * available), 0 if the bytes cannot start a valid sequence, or -(needed)
 * when they are a valid but incomplete prefix of a needed-byte sequence. */
int utf8_check(const unsigned char *s, size_t n);
/* Index of the first byte that is not part of valid UTF-8, or n. */
size_t utf8_first_invalid(const unsigned char *s, size_t n);
/* Encodes cp (<= 0x10FFFF) into out; returns the byte count. */
int utf8_encode(uint32_t cp, unsigned char out[4]);
/* Decodes one strict UTF-8 character; returns its length or 0 if invalid. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* ---- the tokenizer --------------------------------------------------------- */

typedef enum { TOK_SPM, TOK_BPE } tok_model;

struct pretok;

/* Lookup structure for the special tokens active in one parse mode: the
 * texts by (length, polynomial hash), so that a text position is tested
 * against all texts of one length in O(1) (special.c). */
typedef struct {
    int n_active;
    int n_len;           /* distinct text lengths, longest first */
    uint32_t *len;
    uint8_t (*first)[32]; /* per length: bitmap of the first bytes of its texts */
    uint8_t (*last)[32];  /* ... and of their last bytes */
    size_t mask;         /* hash table capacity - 1 (power of two) */
    uint64_t *slot_hash;
    uint32_t *slot_len;
    int32_t *slot_rank;  /* rank in tokenizer.special, -1 = empty slot */
    int32_t *chain;      /* per rank: next rank with an equal (length, hash) but other text, -1 */
} special_index;

struct tokenizer {
    tok_model model;
    int n_vocab;

    /* token texts as stored (U+2581 for spaces in SPM, GPT-2 byte chars in BPE) */
    char *text;
    size_t text_used, text_cap;
    size_t *text_off;
    uint32_t *text_len;
    float *score;
    uint16_t *attr;
    strmap tok_map; /* text -> id; on duplicate texts the last id wins (llama.cpp) */
    strmap spm_pairs; /* SPM: every two adjacent characters inside some token */

    /* decoded bytes of each token, as for render_special = true */
    char *piece;
    size_t *piece_off;
    uint32_t *piece_len;
    size_t max_piece; /* longest piece (tokenizer_max_piece) */

    /* BPE */
    char *merge_text;  /* copies of the merge strings "left right" */
    strmap merge_map;  /* "left right" -> rank; the first occurrence wins */
    struct pretok *pre;
    bool ignore_merges; /* use a whole pre-token when it is a token (llama-bpe) */
    unsigned char byte_enc[256][2]; /* GPT-2 bytes_to_unicode as UTF-8 */
    uint8_t byte_enc_len[256];

    bool add_bos, add_eos, add_space_prefix;
    lethe_token bos, eos, eot, eom, unk, sep, pad, mask;
    lethe_token fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    lethe_token byte_tok[256]; /* SPM byte fallback: <0xNN> (or the raw byte), -1 if none */

    lethe_token *special; /* CONTROL / USER_DEFINED / UNKNOWN ids, longest text first */
    int n_special;
    special_index sidx[2]; /* [0]: parse_special off (USER_DEFINED only), [1]: on */

    uint8_t *eog; /* per id: ends generation */
};

static inline const char *tok_text(const tokenizer *t, lethe_token id) { return t->text + t->text_off[id]; }

/* vocab.c: building. tok_new allocates for n tokens and text_bytes of text
 * (callers add 24 bytes per empty token for its "[EMPTY_i]" replacement). */
tokenizer *tok_new(tok_model model, int n, size_t text_bytes);
/* Sets token i (called for i = 0..n-1 in order). */
bool tok_set(tokenizer *t, int i, const char *s, size_t len, float score, int type);
/* Everything derived from the tokens and the special ids / flags already set
 * on t: maps, EOG set, special-token index, pieces. model_name is
 * general.name (NULL if absent), pre the tokenizer.ggml.pre value. */
lethe_status tok_finish(tokenizer *t, const char *model_name, const char *pre, char *err);

/* special.c */
bool special_index_build(tokenizer *t);
void special_index_free(tokenizer *t);

typedef struct {
    size_t off, len;  /* raw text range (id < 0) */
    lethe_token id;   /* >= 0: a special token */
} tok_frag;

typedef struct {
    tok_frag *v;
    size_t n, cap;
} fragvec;

/* Splits text into raw fragments and special tokens (llama.cpp's
 * tokenizer_st_partition). False on allocation failure. */
bool special_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out);

/* spm.c / bpe.c: tokenise one raw fragment, appending to out. Both return
 * false on allocation failure (or, for SPM, a byte with no token). */
typedef struct {
    tok_symbol *sym;
    size_t sym_cap;
    tok_heap heap;
    bytebuf work;
    void *pcre_md; /* bpe: pcre2 match data */
    size_t *spans; /* bpe: pre-token ranges (pairs) */
    size_t spans_n, spans_cap;
    size_t *spans2;
    size_t spans2_cap;
    bytebuf clean; /* bpe: the text with invalid UTF-8 bytes replaced */
} tok_work;

void tok_work_free(tok_work *w);
/* Room for n symbols in w->sym (buf.c). */
bool tok_work_symbols(tok_work *w, size_t n);
bool spm_tokenize(const tokenizer *t, tok_work *w, const char *text, size_t len, tokvec *out);
bool spm_build_pairs(tokenizer *t);
bool bpe_tokenize(const tokenizer *t, tok_work *w, const char *text, size_t len, tokvec *out);

/* pretokenize.c */
typedef struct pretok pretok;
/* The pre-tokeniser for a tokenizer.ggml.pre value; NULL and
 * LETHE_ERR_UNSUPPORTED for a value lethe does not know. Sets the flags
 * that llama.cpp ties to the value (ignore_merges, add_bos, ...). */
pretok *pretok_create(const char *pre, tokenizer *t, char *err, lethe_status *status);
void pretok_free(pretok *p);
/* Splits text[0..len) into pre-tokens, written to w->spans as (offset,
 * length) pairs; bytes outside valid UTF-8 count as U+FFFD-like symbols.
 * False on failure (allocation, regex match limit). */
bool pretok_split(const pretok *p, tok_work *w, const char *text, size_t len);
/* Frees the regex state kept in w. */
void pretok_work_free(tok_work *w);

/* detok.c */
bool tok_build_pieces(tokenizer *t);
/* Pointer to the piece bytes of id (render_special semantics), length in *n. */
const char *tok_piece_ref(const tokenizer *t, lethe_token id, bool render_special, size_t *n);

/* bytemap.c: GPT-2's bytes_to_unicode */
void gpt2_byte_table(unsigned char enc[256][2], uint8_t len[256]);
/* inv[cp] = the byte that code point cp stands for, or -1 (cp < GPT2_N_CP;
 * larger code points never stand for a byte). */
#define GPT2_N_CP (256 + 68)
void gpt2_byte_inverse(int16_t inv[GPT2_N_CP]);

#endif
