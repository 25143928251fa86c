/* UTF-8 checks and stop strings.
 *
 * Generated text is released to the client only when no stop string can
 * still begin inside it: the longest suffix of the held text that is a
 * prefix of some stop string stays held. Stop strings are valid UTF-8 and so
 * begin on a character boundary; the detokeniser only gives whole
 * characters; so neither the cut at a stop nor the held-back part ever
 * splits a character. */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Rejects
 * overlong forms, surrogates and code points past U+10FFFF. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int k;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) { k = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)k > n) return 0;
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return k;
}

bool srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = utf8_len(u + i, n - i);
        if (!k) return false;
        i += (size_t)k;
    }
    return true;
}

void srv_utf8_sanitize(sbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* start of the valid run being copied */
    for (size_t i = 0; i < n;) {
        int k = utf8_len(u + i, n - i);
        if (k) { i += (size_t)k; continue; }
        sbuf_put(b, s + run, i - run);
        sbuf_put(b, "\xef\xbf\xbd", 3);
        run = ++i;
    }
    sbuf_put(b, s + run, n - run);
}

void srv_stop_init(srv_stop *s, char **stops, int n_stops) {
    *s = (srv_stop){0};
    s->stops = stops;
    s->n_stops = n_stops;
    for (int i = 0; i < n_stops; i++) {
        size_t l = strlen(stops[i]);
        if (l > s->max_stop) s->max_stop = l;
    }
}

/* Longest k < max_stop such that the last k bytes of h are a prefix of a stop. */
static size_t partial_suffix(const srv_stop *s, const char *h, size_t n) {
    size_t lim = s->max_stop ? s->max_stop - 1 : 0;
    if (lim > n) lim = n;
    for (size_t k = lim; k > 0; k--)
        for (int i = 0; i < s->n_stops; i++)
            if (strlen(s->stops[i]) > k && !memcmp(h + n - k, s->stops[i], k)) return k;
    return 0;
}

void srv_stop_push(srv_stop *s, const char *text, size_t n, sbuf *out) {
    if (s->stopped) return;
    if (s->n_stops == 0) { sbuf_put(out, text, n); return; }
    sbuf_put(&s->held, text, n);
    const char *h = s->held.v ? s->held.v : "";
    size_t hn = s->held.n;
    /* the earliest stop string in the held text */
    size_t cut = hn;
    for (int i = 0; i < s->n_stops; i++) {
        size_t l = strlen(s->stops[i]);
        if (l == 0 || l > hn) continue;
        for (size_t p = 0; p + l <= hn && p < cut; p++)
            if (!memcmp(h + p, s->stops[i], l)) { cut = p; break; }
    }
    if (cut < hn) {
        sbuf_put(out, h, cut);
        s->stopped = true;
        s->held.n = 0;
        return;
    }
    size_t keep = partial_suffix(s, h, hn);
    sbuf_put(out, h, hn - keep);
    memmove(s->held.v, h + hn - keep, keep);
    s->held.n = keep;
}

void srv_stop_flush(srv_stop *s, sbuf *out) {
    if (!s->stopped && s->held.n) sbuf_put(out, s->held.v, s->held.n);
    s->held.n = 0;
}

void srv_stop_free(srv_stop *s) { sbuf_free(&s->held); }
