/* A growable byte buffer for building responses. An allocation failure
 * sets `oom` and drops the append; the caller checks oom once at the end. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

static bool sbuf_grow(sbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) {
        if (cap > ((size_t)-1) / 2) { b->oom = true; return false; }
        cap *= 2;
    }
    char *v = realloc(b->v, cap);
    if (!v) { b->oom = true; return false; }
    b->v = v;
    b->cap = cap;
    return true;
}

void sbuf_put(sbuf *b, const void *p, size_t n) {
    if (!sbuf_grow(b, n)) return;
    if (n) memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
}

void sbuf_puts(sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) { sbuf_put(b, tmp, (size_t)k); return; }
    if (!sbuf_grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->v + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void sbuf_free(sbuf *b) {
    free(b->v);
    *b = (sbuf){0};
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
