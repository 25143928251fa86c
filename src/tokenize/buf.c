/* Growable arrays used while tokenising. */
#include <stdlib.h>

#include "tokenize/tok_internal.h"

bool tokvec_grow(tokvec *t, size_t need) {
    if (t->oom) return false;
    if (need <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(lethe_token)) {
            t->oom = true;
            return false;
        }
        cap *= 2;
    }
    lethe_token *v = realloc(t->v, cap * sizeof *v);
    if (!v) {
        t->oom = true;
        return false;
    }
    t->v = v;
    t->cap = cap;
    return true;
}

bool bytebuf_reserve(bytebuf *b, size_t need) {
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    char *v = realloc(b->v, cap);
    if (!v) return false;
    b->v = v;
    b->cap = cap;
    return true;
}

bool tok_work_symbols(tok_work *w, size_t n) {
    if (n <= w->sym_cap) return true;
    size_t cap = w->sym_cap ? w->sym_cap : 256;
    while (cap < n) {
        if (cap > SIZE_MAX / 2 / sizeof(tok_symbol)) return false;
        cap *= 2;
    }
    tok_symbol *s = realloc(w->sym, cap * sizeof *s);
    if (!s) return false;
    w->sym = s;
    w->sym_cap = cap;
    return true;
}
