/* Special tokens in the input text (llama.cpp's tokenizer_st_partition).
 *
 * llama.cpp takes the special tokens one at a time, longest first, and
 * splits every remaining raw-text fragment at each occurrence of the token
 * (leftmost first, non-overlapping). USER_DEFINED tokens are always matched;
 * CONTROL and UNKNOWN ones only with parse_special. A token with RSTRIP
 * (LSTRIP) also drops the whitespace right (left) of it.
 *
 * Doing that literally costs one scan of the text per special token, and
 * hashing every candidate substring still costs text length x total
 * special-token length (48 s for 20 KB of text against a hostile 518 KB of
 * special tokens). Here the text is scanned once per distinct token length
 * L, and each position is tested in O(1): its L bytes' polynomial hash comes
 * from prefix hashes of the text and is looked up in a table of the texts'
 * hashes. Occurrences of one length are then applied in token priority
 * order, left to right, on a per-byte "still raw" map: an occurrence is
 * taken iff all its bytes are still raw (counted by a Fenwick tree in
 * O(log n)), which is exactly when llama.cpp's scan would find it inside one
 * fragment after the earlier matches; only then are its bytes compared, so
 * compared bytes are consumed bytes. The cost is O(text x distinct lengths
 * + matches x log text); distinct lengths are at most sqrt(2 x total
 * special-token bytes). */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

/* Arithmetic modulo the Mersenne prime 2^61 - 1, without 128-bit types. */
#define HMOD ((1ull << 61) - 1)
#define HBASE 0x1d6e5f3a9b7c4e1ull /* any fixed value in (256, HMOD) */

static uint64_t mod_fold(uint64_t x) {
    x = (x & HMOD) + (x >> 61);
    x = (x & HMOD) + (x >> 61);
    return x >= HMOD ? x - HMOD : x;
}

/* a, b < 2^61. With 2^61 = 1 and so 2^64 = 8 (mod 2^61 - 1). */
static uint64_t mod_mul(uint64_t a, uint64_t b) {
    uint64_t a1 = a >> 32, a0 = a & 0xffffffffu, b1 = b >> 32, b0 = b & 0xffffffffu;
    uint64_t hi = a1 * b1, mid = a1 * b0 + a0 * b1, lo = a0 * b0;
    uint64_t r = (hi << 3) + (mid >> 29) + ((mid & ((1ull << 29) - 1)) << 32) + (lo >> 61) + (lo & HMOD);
    return mod_fold(r);
}

static uint64_t mod_pow(uint64_t b, uint64_t e) {
    uint64_t r = 1;
    for (; e; e >>= 1, b = mod_mul(b, b))
        if (e & 1) r = mod_mul(r, b);
    return r;
}

static uint64_t hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) h = mod_fold(mod_mul(h, HBASE) + s[i] + 1);
    return h;
}

static size_t slot_of(const special_index *s, uint64_t h, uint32_t L) {
    return (size_t)((h ^ (h >> 29) ^ ((uint64_t)L * 0x9e3779b97f4a7c15ull)) & s->mask);
}

static int32_t table_get(const special_index *s, uint64_t h, uint32_t L) {
    for (size_t i = slot_of(s, h, L);; i = (i + 1) & s->mask) {
        if (s->slot_rank[i] < 0) return -1;
        if (s->slot_hash[i] == h && s->slot_len[i] == L) return s->slot_rank[i];
    }
}

static bool active(const tokenizer *t, lethe_token id, int mode) {
    return mode || !(t->attr[id] & (TA_CONTROL | TA_UNKNOWN));
}

/* Adds rank r; of two tokens with the same text the first (higher
 * priority) takes every occurrence, so a repeated text is not added. */
static void table_add(const tokenizer *t, special_index *s, int32_t r) {
    lethe_token id = t->special[r];
    uint32_t L = t->text_len[id];
    uint64_t h = hash_bytes((const unsigned char *)tok_text(t, id), L);
    size_t i = slot_of(s, h, L);
    for (; s->slot_rank[i] >= 0; i = (i + 1) & s->mask) {
        if (s->slot_hash[i] != h || s->slot_len[i] != L) continue;
        int32_t q = s->slot_rank[i];
        for (;; q = s->chain[q]) {
            if (memcmp(tok_text(t, t->special[q]), tok_text(t, id), L) == 0) return;
            if (s->chain[q] < 0) break;
        }
        s->chain[q] = r; /* a hash collision: chain the other text */
        return;
    }
    s->slot_hash[i] = h;
    s->slot_len[i] = L;
    s->slot_rank[i] = r;
}

static bool build_mode(tokenizer *t, int mode) {
    special_index *s = &t->sidx[mode];
    int n = 0;
    for (int r = 0; r < t->n_special; r++)
        if (active(t, t->special[r], mode)) n++;
    s->n_active = n;
    if (n == 0) return true;
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    s->mask = cap - 1;
    s->len = malloc((size_t)n * sizeof *s->len);
    s->first = calloc((size_t)n, sizeof *s->first);
    s->last = calloc((size_t)n, sizeof *s->last);
    s->slot_hash = malloc(cap * sizeof *s->slot_hash);
    s->slot_len = malloc(cap * sizeof *s->slot_len);
    s->slot_rank = malloc(cap * sizeof *s->slot_rank);
    s->chain = malloc((size_t)t->n_special * sizeof *s->chain);
    if (!s->len || !s->first || !s->last || !s->slot_hash || !s->slot_len || !s->slot_rank || !s->chain) return false;
    for (size_t i = 0; i < cap; i++) s->slot_rank[i] = -1;
    for (int r = 0; r < t->n_special; r++) s->chain[r] = -1;
    /* t->special is sorted by length, longest first */
    for (int r = 0; r < t->n_special; r++) {
        lethe_token id = t->special[r];
        if (!active(t, id, mode)) continue;
        uint32_t L = t->text_len[id];
        unsigned char b = (unsigned char)tok_text(t, id)[0], e = (unsigned char)tok_text(t, id)[L - 1];
        if (s->n_len == 0 || s->len[s->n_len - 1] != L) s->len[s->n_len++] = L;
        s->first[s->n_len - 1][b >> 3] |= (uint8_t)(1u << (b & 7));
        s->last[s->n_len - 1][e >> 3] |= (uint8_t)(1u << (e & 7));
        table_add(t, s, r);
    }
    return true;
}

bool special_index_build(tokenizer *t) {
    for (int mode = 0; mode < 2; mode++)
        if (!build_mode(t, mode)) return false;
    return true;
}

void special_index_free(tokenizer *t) {
    for (int mode = 0; mode < 2; mode++) {
        special_index *s = &t->sidx[mode];
        free(s->len);
        free(s->first);
        free(s->last);
        free(s->slot_hash);
        free(s->slot_len);
        free(s->slot_rank);
        free(s->chain);
        memset(s, 0, sizeof *s);
    }
}

static bool frag_push(fragvec *f, size_t off, size_t len, lethe_token id) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        tok_frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (tok_frag){off, len, id};
    return true;
}

/* isspace() in the C locale, as llama.cpp's strip uses. */
static bool c_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

typedef struct {
    size_t pos;
    int32_t rank;
} occurrence;

static int cmp_occ(const void *a, const void *b) {
    const occurrence *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* The per-byte state of one partition: raw[i] while byte i is unclaimed,
 * a Fenwick tree counting claimed bytes, and the token starting at i. */
typedef struct {
    size_t n;
    unsigned char *raw;
    uint32_t *fen;
    lethe_token *tok_at;
} claim_map;

static bool claim_init(claim_map *c, size_t n) {
    c->n = n;
    c->raw = malloc(n);
    c->fen = calloc(n + 1, sizeof *c->fen);
    c->tok_at = malloc(n * sizeof *c->tok_at);
    if (!c->raw || !c->fen || !c->tok_at) return false;
    memset(c->raw, 1, n);
    for (size_t i = 0; i < n; i++) c->tok_at[i] = -1;
    return true;
}

static void claim(claim_map *c, size_t i) {
    c->raw[i] = 0;
    for (size_t k = i + 1; k <= c->n; k += k & (~k + 1)) c->fen[k]++;
}

/* Claimed bytes in [0, i). */
static size_t claimed_before(const claim_map *c, size_t i) {
    size_t s = 0;
    for (; i > 0; i -= i & (~i + 1)) s += c->fen[i];
    return s;
}

static bool all_raw(const claim_map *c, size_t p, size_t L) {
    return c->raw[p] && c->raw[p + L - 1] && claimed_before(c, p + L) == claimed_before(c, p);
}

/* Applies the occurrences of one length (sorted by priority, then
 * position) as llama.cpp's per-token scans would. */
static void apply(const tokenizer *t, claim_map *c, const unsigned char *u, const occurrence *occ, size_t n_occ, size_t L) {
    for (size_t i = 0; i < n_occ; i++) {
        lethe_token id = t->special[occ[i].rank];
        size_t p = occ[i].pos, j;
        if (!all_raw(c, p, L)) continue; /* overlaps an earlier match */
        if (memcmp(u + p, tok_text(t, id), L) != 0) continue; /* a hash collision */
        for (j = p; j < p + L; j++) claim(c, j);
        c->tok_at[p] = id;
        if (t->attr[id] & TA_LSTRIP)
            for (j = p; j > 0 && c->raw[j - 1] && c_space(u[j - 1]); j--) claim(c, j - 1);
        if (t->attr[id] & TA_RSTRIP)
            for (j = p + L; j < c->n && c->raw[j] && c_space(u[j]); j++) claim(c, j);
    }
}

bool special_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out) {
    const special_index *s = &t->sidx[parse_special ? 1 : 0];
    const unsigned char *u = (const unsigned char *)text;
    out->n = 0;
    if (len == 0) return true;
    if (s->n_active == 0 || s->len[s->n_len - 1] > len) return frag_push(out, 0, len, -1);

    uint64_t *H = malloc((len + 1) * sizeof *H); /* H[i]: hash of text[0, i) */
    claim_map c = {0};                          /* allocated at the first occurrence */
    occurrence *occ = NULL;
    size_t cap_occ = 0;
    bool ok = false;
    if (!H) goto done;
    H[0] = 0;
    for (size_t i = 0; i < len; i++) H[i + 1] = mod_fold(mod_mul(H[i], HBASE) + u[i] + 1);
    for (int li = 0; li < s->n_len; li++) {
        size_t L = s->len[li], n_occ = 0;
        const uint8_t *first = s->first[li], *last = s->last[li];
        if (L > len) continue;
        uint64_t pw = mod_pow(HBASE, L);
        for (size_t p = 0; p + L <= len; p++) {
            if (!(first[u[p] >> 3] & (1u << (u[p] & 7)))) continue;
            if (!(last[u[p + L - 1] >> 3] & (1u << (u[p + L - 1] & 7)))) continue;
            if (c.raw && (!c.raw[p] || !c.raw[p + L - 1])) continue;
            uint64_t h = mod_fold(H[p + L] + HMOD - mod_mul(H[p], pw));
            for (int32_t r = table_get(s, h, (uint32_t)L); r >= 0; r = s->chain[r]) {
                if (n_occ == cap_occ) {
                    size_t cap = cap_occ ? cap_occ * 2 : 64;
                    occurrence *v = realloc(occ, cap * sizeof *v);
                    if (!v) goto done;
                    occ = v;
                    cap_occ = cap;
                }
                occ[n_occ++] = (occurrence){p, r};
            }
        }
        if (n_occ == 0) continue;
        if (!c.raw && !claim_init(&c, len)) goto done;
        qsort(occ, n_occ, sizeof *occ, cmp_occ);
        apply(t, &c, u, occ, n_occ, L);
    }
    if (!c.raw) {
        ok = frag_push(out, 0, len, -1);
        goto done;
    }
    /* fragments in text order: raw runs and tokens (stripped bytes vanish) */
    size_t i = 0;
    while (i < len) {
        if (c.tok_at[i] >= 0) {
            if (!frag_push(out, i, t->text_len[c.tok_at[i]], c.tok_at[i])) goto done;
            i += t->text_len[c.tok_at[i]];
        } else if (!c.raw[i]) {
            i++;
        } else {
            size_t j = i;
            while (j < len && c.raw[j]) j++;
            if (!frag_push(out, i, j - i, -1)) goto done;
            i = j;
        }
    }
    ok = true;
done:
    free(H);
    free(c.raw);
    free(c.fen);
    free(c.tok_at);
    free(occ);
    return ok;
}
