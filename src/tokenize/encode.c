/* tokenizer_encode: special tokens first, then SPM or BPE on each raw
 * fragment, with BOS/EOS as the vocabulary asks (llama_vocab::tokenize).
 *
 * Invalid UTF-8 never crashes. SPM makes each byte that is not part of
 * valid UTF-8 a character of its own and spells it with its <0xNN> byte
 * token, so with byte fallback every byte survives a round trip. BPE
 * treats each byte that is not part of valid UTF-8 as a character of its
 * own, classified like U+FFFD (a symbol) by the pre-tokeniser, and maps the
 * original byte through the byte-level alphabet (llama.cpp instead replaces
 * such bytes by U+FFFD or rejects the text); it round-trips where the
 * vocabulary has a token for that byte's character and no user-defined
 * token shadows it (README lists the shared vocabularies that lack some). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

void tok_work_free(tok_work *w) {
    free(w->sym);
    free(w->heap.v);
    free(w->work.v);
    free(w->spans);
    free(w->spans2);
    free(w->clean.v);
    pretok_work_free(w);
    w->sym = NULL;
    w->heap.v = NULL;
    w->work.v = w->clean.v = NULL;
    w->spans = w->spans2 = NULL;
}

/* SPM input for one fragment: optional leading space, spaces -> U+2581. */
static bool spm_escape(bytebuf *b, const char *s, size_t len, bool prefix) {
    size_t n = prefix ? 3 : 0;
    for (size_t i = 0; i < len; i++) n += s[i] == ' ' ? 3 : 1;
    if (n < len || !bytebuf_reserve(b, n)) return false;
    char *o = b->v;
    if (prefix) {
        memcpy(o, "\xe2\x96\x81", 3);
        o += 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            *o++ = s[i];
        }
    }
    b->n = n;
    return true;
}

static bool encode_spm(const tokenizer *t, tok_work *w, const char *text, const fragvec *f, bool add_special,
                       tokvec *out) {
    bool prev_special = true; /* the first fragment gets the space prefix */
    if (add_special && t->add_bos) {
        if (t->bos < 0) return false;
        tokvec_push(out, t->bos);
    }
    for (size_t i = 0; i < f->n; i++) {
        const tok_frag *fr = &f->v[i];
        if (fr->id >= 0) {
            tokvec_push(out, fr->id);
            prev_special = true;
            continue;
        }
        if (!spm_escape(&w->work, text + fr->off, fr->len, t->add_space_prefix && prev_special)) return false;
        if (!spm_tokenize(t, w, w->work.v, w->work.n, out)) return false;
        prev_special = false;
    }
    if (add_special && t->add_eos) {
        if (t->eos < 0) return false;
        tokvec_push(out, t->eos);
    }
    return true;
}

static bool encode_bpe(const tokenizer *t, tok_work *w, const char *text, const fragvec *f, bool add_special,
                       tokvec *out) {
    if (add_special && t->add_bos) {
        if (t->bos < 0) return false;
        tokvec_push(out, t->bos);
    }
    for (size_t i = 0; i < f->n; i++) {
        const tok_frag *fr = &f->v[i];
        if (fr->id >= 0) tokvec_push(out, fr->id);
        else if (!bpe_tokenize(t, w, text + fr->off, fr->len, out)) return false;
    }
    if (add_special && t->add_eos) {
        if (t->eos < 0) return false;
        tokvec_push(out, t->eos);
    }
    return true;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, lethe_token *ids, int cap,
                     bool add_special, bool parse_special) {
    if (!t || (!text && len) || cap < 0 || (cap > 0 && !ids)) return -1;
    if (len > INT32_MAX / 4) return -1; /* symbol indices are int32; SPM triples spaces */

    fragvec frags = {0};
    tok_work w = {0};
    tokvec out = {0};
    int ret = -1;
    if (!special_partition(t, text, len, parse_special, &frags)) goto done;
    bool ok = t->model == TOK_SPM ? encode_spm(t, &w, text, &frags, add_special, &out)
                                  : encode_bpe(t, &w, text, &frags, add_special, &out);
    if (!ok || out.oom || out.n > INT_MAX) goto done;
    if (cap > 0 && out.n > 0) memcpy(ids, out.v, (out.n < (size_t)cap ? out.n : (size_t)cap) * sizeof *ids);
    ret = (int)out.n;
done:
    free(frags.v);
    free(out.v);
    tok_work_free(&w);
    return ret;
}
