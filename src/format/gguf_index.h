/* Sorted views of a GGUF's key and tensor tables, so that duplicate and
 * overlap checks and look-ups cost O(n log n) / O(log n) instead of O(n^2):
 * a hostile file may hold millions of entries. Internal to the reader. */
#ifndef LETHE_GGUF_INDEX_H
#define LETHE_GGUF_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *data; /* name bytes, not NUL-terminated */
    uint64_t len;
    int64_t idx;      /* position in the file's table */
} lt_gguf_name_ref;

typedef struct {
    uint64_t begin, end; /* [offset, offset + n_bytes), non-empty */
    int64_t idx;
} lt_gguf_span;

/* Sorts refs by name; returns a position p with refs[p] and refs[p+1]
 * equal (a duplicate), or -1 when all names differ. */
int64_t lt_gguf_names_sort(lt_gguf_name_ref *refs, int64_t n);
/* Table index of the name in sorted refs, or -1. */
int64_t lt_gguf_names_find(const lt_gguf_name_ref *refs, int64_t n, const char *name, size_t len);
/* Sorts spans by start; returns 0 and sets *a, *b to the table indices of
 * two overlapping spans, or returns -1 when none overlap. */
int lt_gguf_spans_overlap(lt_gguf_span *spans, int64_t n, int64_t *a, int64_t *b);

#endif
