/* SentencePiece-style BPE driven by token scores (llama.cpp's
 * llm_tokenizer_spm_session). The text arrives with its spaces already
 * replaced by U+2581. It is split into UTF-8 characters, each byte that is
 * not part of valid UTF-8 being a character of its own. (llama.cpp takes the
 * length from the lead byte alone; that is the same for valid text, but an
 * invalid lead byte there swallows the next bytes, e.g. "\xff" + an escaped
 * space, which then come back as raw U+2581 bytes instead of a space.) Then,
 * repeatedly, the adjacent pair whose concatenation is a
 * token with the highest score is merged (leftmost on equal scores). Every
 * final symbol is a token, or is spelled with byte-fallback tokens <0xNN>.
 * The heap holds every candidate pair; pairs made stale by an earlier merge
 * are recognised by their recorded length and skipped, so the whole run is
 * O(n log n).
 *
 * llama.cpp runs this over a whole text fragment at once, which for long
 * texts means a heap of millions of entries and a cache miss per step. The
 * result is the same if the text is first cut wherever two adjacent
 * characters x, y occur next to each other in no token at all (e.g. after
 * most "\n" or before most U+2581): no merge can ever cross such a cut, and
 * the merges on either side do not depend on each other, so every piece can
 * be merged on its own with a small heap. */

#include "tokenize/tok_internal.h"

static bool try_add(const tokenizer *t, tok_work *w, const char *text, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const tok_symbol *l = &w->sym[left], *r = &w->sym[right];
    lethe_token id = strmap_get(&t->tok_map, text + l->start, (size_t)l->n + r->n);
    if (id < 0) return true;
    tok_bigram b = {t->score[id], left, right, l->n + r->n};
    return heap_push(&w->heap, b);
}

static size_t char_len(const char *s, size_t n) {
    int c = utf8_check((const unsigned char *)s, n);
    return c > 0 ? (size_t)c : 1;
}

bool spm_build_pairs(tokenizer *t) {
    size_t max = 0;
    for (lethe_token id = 0; id < t->n_vocab; id++) max += t->text_len[id];
    if (!strmap_init(&t->spm_pairs, max)) return false;
    for (lethe_token id = 0; id < t->n_vocab; id++) {
        const char *s = tok_text(t, id);
        size_t n = t->text_len[id], a = 0;
        if (a == n) continue;
        size_t la = char_len(s, n);
        while (a + la < n) {
            size_t lb = char_len(s + a + la, n - a - la);
            if (!strmap_put(&t->spm_pairs, s + a, la + lb, 1, false)) return false;
            a += la;
            la = lb;
        }
    }
    return true;
}

/* Merges the symbols first..last (a piece no merge crosses) and emits them. */
static bool merge_piece(const tokenizer *t, tok_work *w, const char *text, int32_t first, int32_t last, tokvec *out) {
    w->sym[first].prev = -1;
    w->sym[last].next = -1;
    w->heap.n = 0;
    for (int32_t i = first + 1; i <= last; i++)
        if (!try_add(t, w, text, i - 1, i)) return false;

    while (w->heap.n > 0) {
        tok_bigram b = heap_pop(&w->heap);
        tok_symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        if (!try_add(t, w, text, l->prev, b.left) || !try_add(t, w, text, b.left, l->next)) return false;
    }

    for (int32_t i = first; i != -1; i = w->sym[i].next) {
        const tok_symbol *s = &w->sym[i];
        lethe_token id = strmap_get(&t->tok_map, text + s->start, s->n);
        if (id >= 0) {
            tokvec_push(out, id);
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            id = t->byte_tok[(unsigned char)text[s->start + j]];
            /* llama.cpp throws here; we fall back to <unk> or fail */
            if (id < 0) id = t->unk;
            if (id < 0) return false;
            tokvec_push(out, id);
        }
    }
    return !out->oom;
}

bool spm_tokenize(const tokenizer *t, tok_work *w, const char *text, size_t len, tokvec *out) {
    if (len == 0) return true;
    if (len > INT32_MAX || !tok_work_symbols(w, len)) return false;

    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k = char_len(text + off, len - off);
        w->sym[n] = (tok_symbol){n - 1, off + k == len ? -1 : n + 1, (uint32_t)off, (uint32_t)k};
        off += k;
    }

    int32_t first = 0;
    for (int32_t i = 1; i < n; i++) {
        const tok_symbol *x = &w->sym[i - 1];
        if (strmap_get(&t->spm_pairs, text + x->start, (size_t)x->n + w->sym[i].n) >= 0) continue;
        if (!merge_piece(t, w, text, first, i - 1, out)) return false;
        first = i;
    }
    return merge_piece(t, w, text, first, n - 1, out);
}
