/* Open-addressing (linear probing) hash map from byte strings to int32,
 * used for token text -> id, merge pair -> rank and special-token lookup.
 * Sized once up front to at most half full, so probes stay short and
 * inserts never need to rehash. */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u

static inline uint32_t fnv(uint32_t h, const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * FNV_PRIME;
    return h;
}

bool strmap_init(strmap *m, size_t max_entries) {
    size_t cap = 16;
    memset(m, 0, sizeof *m);
    while (cap / 2 < max_entries) {
        if (cap > SIZE_MAX / 4 / sizeof(strmap_slot)) return false;
        cap *= 2;
    }
    m->slots = calloc(cap, sizeof(strmap_slot));
    if (!m->slots) return false;
    m->mask = cap - 1;
    m->max = cap / 2;
    return true;
}

void strmap_free(strmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

bool strmap_put(strmap *m, const char *key, size_t len, int32_t val, bool replace) {
    if (!m->slots || len > UINT32_MAX) return false;
    uint32_t h = fnv(FNV_OFFSET, key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        strmap_slot *s = &m->slots[i];
        if (!s->key) {
            if (m->n >= m->max) return false;
            s->key = key;
            s->len = (uint32_t)len;
            s->hash = h;
            s->val = val;
            m->n++;
            return true;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            if (replace) s->val = val;
            return true;
        }
    }
}

int32_t strmap_get(const strmap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint32_t h = fnv(FNV_OFFSET, key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const strmap_slot *s = &m->slots[i];
        if (!s->key) return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
}

int32_t strmap_get3(const strmap *m, const char *a, size_t na, char sep, const char *b, size_t nb) {
    if (!m->slots) return -1;
    uint32_t h = fnv(FNV_OFFSET, a, na);
    h = fnv(h, &sep, 1);
    h = fnv(h, b, nb);
    size_t len = na + 1 + nb;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const strmap_slot *s = &m->slots[i];
        if (!s->key) return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, a, na) == 0 && s->key[na] == sep &&
            memcmp(s->key + na + 1, b, nb) == 0)
            return s->val;
    }
}
