/* Byte-level BPE (llama.cpp's llm_tokenizer_bpe_session). Each pre-token is
 * spelled in GPT-2's byte alphabet, one symbol per byte; then, repeatedly,
 * the adjacent pair with the lowest merge rank is merged (leftmost on equal
 * ranks). Pair ranks come from a hash map keyed by "left right" (the merge
 * string itself), candidates sit in a heap, and pairs made stale by an
 * earlier merge are skipped by their recorded length, so a pre-token of n
 * bytes costs O(n log n). Final symbols that are not tokens are spelled
 * byte by byte where single bytes are tokens, as llama.cpp does. */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

static bool add_pair(const tokenizer *t, tok_work *w, const char *enc, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const tok_symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t rank = strmap_get3(&t->merge_map, enc + l->start, l->n, ' ', enc + r->start, r->n);
    if (rank < 0) return true;
    tok_bigram b = {-(double)rank, left, right, l->n + r->n};
    return heap_push(&w->heap, b);
}

/* Emits the tokens of one symbol's text. */
static void emit(const tokenizer *t, const char *s, size_t n, tokvec *out) {
    lethe_token id = strmap_get(&t->tok_map, s, n);
    if (id >= 0) {
        tokvec_push(out, id);
        return;
    }
    for (size_t j = 0; j < n; j++) { /* llama.cpp looks up each byte of the spelling; misses are dropped */
        id = strmap_get(&t->tok_map, s + j, 1);
        if (id >= 0) tokvec_push(out, id);
    }
}

static bool merge_word(const tokenizer *t, tok_work *w, const unsigned char *word, size_t len, tokvec *out) {
    /* spell the word in the byte alphabet */
    if (!bytebuf_reserve(&w->work, 2 * len) || !tok_work_symbols(w, len)) return false;
    char *enc = w->work.v;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned b = word[i];
        w->sym[i] = (tok_symbol){(int32_t)i - 1, i + 1 == len ? -1 : (int32_t)i + 1, (uint32_t)k, t->byte_enc_len[b]};
        memcpy(enc + k, t->byte_enc[b], t->byte_enc_len[b]);
        k += t->byte_enc_len[b];
    }
    if (t->ignore_merges) {
        lethe_token id = strmap_get(&t->tok_map, enc, k);
        if (id >= 0) {
            tokvec_push(out, id);
            return true;
        }
    }

    w->heap.n = 0;
    for (size_t i = 1; i < len; i++)
        if (!add_pair(t, w, enc, (int32_t)i - 1, (int32_t)i)) return false;
    while (w->heap.n > 0) {
        tok_bigram b = heap_pop(&w->heap);
        tok_symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        if (!add_pair(t, w, enc, l->prev, b.left) || !add_pair(t, w, enc, b.left, l->next)) return false;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) emit(t, enc + w->sym[i].start, w->sym[i].n, out);
    return true;
}

bool bpe_tokenize(const tokenizer *t, tok_work *w, const char *text, size_t len, tokvec *out) {
    if (len == 0) return true;
    if (len > INT32_MAX || !pretok_split(t->pre, w, text, len)) return false;
    for (size_t s = 0; s < w->spans_n; s += 2)
        if (!merge_word(t, w, (const unsigned char *)text + w->spans[s], w->spans[s + 1], out)) return false;
    return !out->oom;
}
