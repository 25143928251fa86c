/* Attention scratch: named buffers grown on demand, peak bytes recorded. */
#include "attn/attn_scratch.h"

#include <stdint.h>
#include <stdlib.h>
#include "util/alloc.h"

#define SCRATCH_ALIGN 64

struct attn_scratch {
    void *buf[ATTN_SCR_COUNT];
    size_t cap[ATTN_SCR_COUNT];
    size_t held;
    size_t peak;
};

attn_scratch *attn_scratch_create(void) { return lt_calloc(1, sizeof(attn_scratch)); }

void attn_scratch_free(attn_scratch *s) {
    if (!s) return;
    for (int i = 0; i < ATTN_SCR_COUNT; i++) lt_free(s->buf[i]);
    lt_free(s);
}

size_t attn_scratch_peak_bytes(const attn_scratch *s) { return s ? s->peak : 0; }

void *attn_scratch_get(attn_scratch *s, int which, size_t bytes) {
    if (!s || which < 0 || which >= ATTN_SCR_COUNT) return NULL;
    if (bytes == 0) bytes = 1;
    if (bytes <= s->cap[which]) return s->buf[which];
    if (bytes > SIZE_MAX - SCRATCH_ALIGN) return NULL;
    size_t cap = (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
    lt_free(s->buf[which]);
    s->held -= s->cap[which];
    s->buf[which] = NULL;
    s->cap[which] = 0;
    void *p = lt_aligned_alloc(SCRATCH_ALIGN, cap);
    if (!p) return NULL;
    s->buf[which] = p;
    s->cap[which] = cap;
    s->held += cap;
    if (s->held > s->peak) s->peak = s->held;
    return p;
}
