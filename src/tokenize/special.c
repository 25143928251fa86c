/* Special tokens in the input text (llama.cpp's tokenizer_st_partition).
 *
 * llama.cpp takes the special tokens one at a time, longest first, and
 * splits every remaining raw-text fragment at each occurrence of the token
 * (leftmost first, non-overlapping). USER_DEFINED tokens are always matched;
 * CONTROL and UNKNOWN ones only with parse_special. A token with RSTRIP
 * (LSTRIP) also drops the whitespace right (left) of it.
 *
 * Doing that literally costs one scan of the text per special token, which is
 * slow for vocabularies with thousands of them (deepseek: 2400). Tokens are
 * ordered by length, so here the text is scanned once per distinct length
 * instead: at every still-raw position whose byte can start a token of that
 * length, one hash lookup finds the token (if any) of that length there. The
 * occurrences of that length are then applied in token priority order,
 * left to right, on a per-byte "still raw" map: an occurrence is taken iff
 * all its bytes are still raw, which is exactly when llama.cpp's scan would
 * find it inside one fragment after the earlier matches. */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

static bool active(const tokenizer *t, lethe_token id, int mode) {
    return mode || !(t->attr[id] & (TA_CONTROL | TA_UNKNOWN));
}

static bool build_mode(tokenizer *t, int mode) {
    special_index *s = &t->sidx[mode];
    int n = 0;
    for (int r = 0; r < t->n_special; r++)
        if (active(t, t->special[r], mode)) n++;
    s->n_active = n;
    if (n == 0) return true;
    if (!strmap_init(&s->map, (size_t)n)) return false;
    s->len = malloc((size_t)n * sizeof *s->len);
    s->first = calloc((size_t)n, sizeof *s->first);
    if (!s->len || !s->first) return false;
    /* t->special is sorted by length, longest first */
    for (int r = 0; r < t->n_special; r++) {
        lethe_token id = t->special[r];
        if (!active(t, id, mode)) continue;
        uint32_t L = t->text_len[id];
        unsigned char b = (unsigned char)tok_text(t, id)[0];
        if (s->n_len == 0 || s->len[s->n_len - 1] != L) s->len[s->n_len++] = L;
        s->first[s->n_len - 1][b >> 3] |= (uint8_t)(1u << (b & 7));
        /* first wins: of two special tokens with the same text the one
         * earlier in priority takes every occurrence */
        if (!strmap_put(&s->map, tok_text(t, id), L, r, false)) return false;
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
        strmap_free(&t->sidx[mode].map);
        free(t->sidx[mode].len);
        free(t->sidx[mode].first);
        t->sidx[mode].len = NULL;
        t->sidx[mode].first = NULL;
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

bool special_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out) {
    const special_index *s = &t->sidx[parse_special ? 1 : 0];
    const unsigned char *u = (const unsigned char *)text;
    out->n = 0;
    if (len == 0) return true;
    if (s->n_active == 0) return frag_push(out, 0, len, -1);

    unsigned char *raw = NULL; /* allocated at the first occurrence */
    lethe_token *tok_at = NULL; /* token starting at a byte, or -1 */
    occurrence *occ = NULL;
    size_t cap_occ = 0;
    bool ok = false;
    for (int li = 0; li < s->n_len; li++) {
        size_t L = s->len[li], n_occ = 0;
        const uint8_t *first = s->first[li];
        if (L > len) continue;
        for (size_t p = 0; p + L <= len; p++) {
            if (!(first[u[p] >> 3] & (1u << (u[p] & 7)))) continue;
            if (raw && (!raw[p] || !raw[p + L - 1])) continue;
            int32_t r = strmap_get(&s->map, text + p, L);
            if (r < 0) continue;
            if (n_occ == cap_occ) {
                size_t cap = cap_occ ? cap_occ * 2 : 64;
                occurrence *v = realloc(occ, cap * sizeof *v);
                if (!v) goto done;
                occ = v;
                cap_occ = cap;
            }
            occ[n_occ++] = (occurrence){p, r};
        }
        if (n_occ == 0) continue;
        if (!raw) {
            raw = malloc(len);
            tok_at = malloc(len * sizeof *tok_at);
            if (!raw || !tok_at) goto done;
            memset(raw, 1, len);
            for (size_t i = 0; i < len; i++) tok_at[i] = -1;
        }
        qsort(occ, n_occ, sizeof *occ, cmp_occ);
        for (size_t i = 0; i < n_occ; i++) {
            lethe_token id = t->special[occ[i].rank];
            size_t p = occ[i].pos, j = p;
            while (j < p + L && raw[j]) j++;
            if (j < p + L) continue; /* overlaps an earlier match */
            memset(raw + p, 0, L);
            tok_at[p] = id;
            if (t->attr[id] & TA_LSTRIP)
                for (j = p; j > 0 && raw[j - 1] && c_space(u[j - 1]); j--) raw[j - 1] = 0;
            if (t->attr[id] & TA_RSTRIP)
                for (j = p + L; j < len && raw[j] && c_space(u[j]); j++) raw[j] = 0;
        }
    }
    if (!raw) {
        ok = frag_push(out, 0, len, -1);
        goto done;
    }
    /* fragments in text order: raw runs and tokens (stripped bytes vanish) */
    size_t i = 0;
    while (i < len) {
        if (tok_at[i] >= 0) {
            if (!frag_push(out, i, t->text_len[tok_at[i]], tok_at[i])) goto done;
            i += t->text_len[tok_at[i]];
        } else if (!raw[i]) {
            i++;
        } else {
            size_t j = i;
            while (j < len && raw[j]) j++;
            if (!frag_push(out, i, j - i, -1)) goto done;
            i = j;
        }
    }
    ok = true;
done:
    free(raw);
    free(tok_at);
    free(occ);
    return ok;
}
