/* Internal side of attn_scratch: a few named buffers, each grown on demand
 * (contents not kept across growth), with the bytes held and their peak. */
#ifndef LETHE_ATTN_SCRATCH_H
#define LETHE_ATTN_SCRATCH_H

#include <stddef.h>

#include "attn/attn.h"

enum {
    ATTN_SCR_THREADS, /* per-thread tiles, one 64-byte aligned stride each */
    ATTN_SCR_ITEMS,   /* work item table */
    ATTN_SCR_PARTIAL, /* decode partials (m, l, o) per item */
    ATTN_SCR_ROWS,    /* final max / sum per query row (statistics) */
    ATTN_SCR_SCORES,  /* decode: per-slot scores of the current query (statistics) */
    ATTN_SCR_SHARED,  /* shared-prefix decode: the table of sharing sequences */
    ATTN_SCR_COUNT
};

/* A 64-byte aligned buffer of at least `bytes` for slot `which`, or NULL. */
void *attn_scratch_get(attn_scratch *s, int which, size_t bytes);

#endif
