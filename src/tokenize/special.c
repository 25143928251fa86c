/* Special tokens in the input text (llama.cpp's tokenizer_st_partition).
 *
 * llama.cpp takes the special tokens one at a time, longest first, and
 * splits every remaining raw-text fragment at each occurrence of the token
 * (leftmost first, non-overlapping). USER_DEFINED tokens are always matched;
 * CONTROL and UNKNOWN ones only with parse_special. A token with RSTRIP
 * (LSTRIP) also drops the whitespace right (left) of it.
 *
 * Doing that literally costs one scan of the text per special token, which is
 * slow for vocabularies with thousands of them (deepseek: 2400). Here one
 * pass over the text finds every occurrence of every active special token
 * (hash lookups at the positions whose first byte can start one), the
 * occurrences are grouped by token priority, and the tokens are then applied
 * in priority order on a per-byte "still raw" map. An occurrence is taken
 * iff all its bytes are still raw, which is exactly when llama.cpp's scan
 * would find it inside one fragment after its earlier matches. */
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
    s->lens = malloc((size_t)n * sizeof *s->lens);
    if (!s->lens) return false;
    for (int r = 0; r < t->n_special; r++) {
        lethe_token id = t->special[r];
        if (!active(t, id, mode)) continue;
        /* first wins: of two special tokens with the same text the one
         * earlier in priority takes every occurrence */
        if (!strmap_put(&s->map, tok_text(t, id), t->text_len[id], r, false)) return false;
    }
    return true;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool build_lengths(tokenizer *t, int mode) {
    special_index *s = &t->sidx[mode];
    memset(s->len_off, 0, sizeof s->len_off);
    memset(s->first, 0, sizeof s->first);
    if (s->n_active == 0) return true;
    uint64_t *keys = malloc((size_t)s->n_active * sizeof *keys);
    if (!keys) return false;
    int k = 0;
    for (int r = 0; r < t->n_special; r++) {
        lethe_token id = t->special[r];
        if (!active(t, id, mode)) continue;
        keys[k++] = (uint64_t)(unsigned char)tok_text(t, id)[0] << 32 | t->text_len[id];
    }
    qsort(keys, (size_t)k, sizeof *keys, cmp_u64);
    uint32_t m = 0;
    for (int i = 0; i < k; i++) {
        if (i > 0 && keys[i] == keys[i - 1]) continue;
        int b = (int)(keys[i] >> 32);
        s->first[b] = true;
        s->len_off[b + 1]++;
        s->lens[m++] = (uint32_t)keys[i];
    }
    for (int b = 0; b < 256; b++) s->len_off[b + 1] += s->len_off[b];
    free(keys);
    return true;
}

bool special_index_build(tokenizer *t) {
    for (int mode = 0; mode < 2; mode++)
        if (!build_mode(t, mode) || !build_lengths(t, mode)) return false;
    return true;
}

void special_index_free(tokenizer *t) {
    for (int mode = 0; mode < 2; mode++) {
        strmap_free(&t->sidx[mode].map);
        free(t->sidx[mode].lens);
        t->sidx[mode].lens = NULL;
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
    uint32_t rank;
} occurrence;

typedef struct {
    size_t pos, len;
    lethe_token id;
} match;

static int cmp_match(const void *a, const void *b) {
    const match *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Emits the maximal runs of raw bytes in [from, to). */
static bool emit_raw(fragvec *out, const unsigned char *raw, size_t from, size_t to) {
    size_t i = from;
    while (i < to) {
        while (i < to && !raw[i]) i++;
        size_t j = i;
        while (j < to && raw[j]) j++;
        if (j > i && !frag_push(out, i, j - i, -1)) return false;
        i = j;
    }
    return true;
}

bool special_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out) {
    const special_index *s = &t->sidx[parse_special ? 1 : 0];
    const unsigned char *u = (const unsigned char *)text;
    out->n = 0;
    if (len == 0) return true;
    if (s->n_active == 0) return frag_push(out, 0, len, -1);

    /* 1. all occurrences, in text order */
    occurrence *occ = NULL, *sorted = NULL;
    size_t n_occ = 0, cap_occ = 0, n_m = 0, *start = NULL;
    unsigned char *raw = NULL;
    match *m = NULL;
    bool ok = false;
    for (size_t i = 0; i < len; i++) {
        unsigned b = u[i];
        if (!s->first[b]) continue;
        for (uint32_t k = s->len_off[b]; k < s->len_off[b + 1]; k++) {
            size_t L = s->lens[k];
            if (L > len - i) continue;
            int32_t r = strmap_get(&s->map, text + i, L);
            if (r < 0) continue;
            if (n_occ == cap_occ) {
                size_t cap = cap_occ ? cap_occ * 2 : 64;
                occurrence *v = realloc(occ, cap * sizeof *v);
                if (!v) goto done;
                occ = v;
                cap_occ = cap;
            }
            occ[n_occ++] = (occurrence){i, (uint32_t)r};
        }
    }
    if (n_occ == 0) {
        ok = frag_push(out, 0, len, -1);
        goto done;
    }

    /* 2. group by priority (counting sort keeps text order within a token) */
    start = calloc((size_t)t->n_special + 1, sizeof *start);
    sorted = malloc(n_occ * sizeof *sorted);
    raw = malloc(len);
    m = malloc(n_occ * sizeof *m);
    if (!start || !sorted || !raw || !m) goto done;
    for (size_t i = 0; i < n_occ; i++) start[occ[i].rank + 1]++;
    for (int r = 0; r < t->n_special; r++) start[r + 1] += start[r];
    for (size_t i = 0; i < n_occ; i++) sorted[start[occ[i].rank]++] = occ[i];
    memset(raw, 1, len);

    /* 3. apply the tokens in priority order */
    for (size_t i = 0; i < n_occ; i++) {
        lethe_token id = t->special[sorted[i].rank];
        size_t p = sorted[i].pos, L = t->text_len[id];
        bool free_run = true;
        for (size_t j = p; j < p + L; j++)
            if (!raw[j]) {
                free_run = false;
                break;
            }
        if (!free_run) continue;
        memset(raw + p, 0, L);
        m[n_m++] = (match){p, L, id};
        if (t->attr[id] & TA_LSTRIP)
            for (size_t j = p; j > 0 && raw[j - 1] && c_space(u[j - 1]); j--) raw[j - 1] = 0;
        if (t->attr[id] & TA_RSTRIP)
            for (size_t j = p + L; j < len && raw[j] && c_space(u[j]); j++) raw[j] = 0;
    }

    /* 4. fragments in text order */
    qsort(m, n_m, sizeof *m, cmp_match);
    size_t cur = 0;
    for (size_t i = 0; i < n_m; i++) {
        if (!emit_raw(out, raw, cur, m[i].pos) || !frag_push(out, m[i].pos, m[i].len, m[i].id)) goto done;
        cur = m[i].pos + m[i].len;
    }
    ok = emit_raw(out, raw, cur, len);
done:
    free(start);
    free(sorted);
    free(raw);
    free(m);
    free(occ);
    return ok;
}
