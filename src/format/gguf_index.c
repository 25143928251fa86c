/* Sorting and binary search over GGUF names and tensor data spans. */
#include "format/gguf_index.h"

#include <stdlib.h>
#include <string.h>

/* Byte order, shorter first on a common prefix (any total order works). */
static int cmp_bytes(const char *a, uint64_t na, const char *b, uint64_t nb) {
    uint64_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

static int cmp_ref(const void *x, const void *y) {
    const lt_gguf_name_ref *a = x, *b = y;
    return cmp_bytes(a->data, a->len, b->data, b->len);
}

int64_t lt_gguf_names_sort(lt_gguf_name_ref *refs, int64_t n) {
    if (n < 2) return -1;
    qsort(refs, (size_t)n, sizeof *refs, cmp_ref);
    for (int64_t i = 0; i + 1 < n; i++)
        if (cmp_ref(&refs[i], &refs[i + 1]) == 0) return i;
    return -1;
}

int64_t lt_gguf_names_find(const lt_gguf_name_ref *refs, int64_t n, const char *name, size_t len) {
    int64_t lo = 0, hi = n; /* search [lo, hi) */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(refs[mid].data, refs[mid].len, name, len);
        if (c == 0) return refs[mid].idx;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static int cmp_span(const void *x, const void *y) {
    const lt_gguf_span *a = x, *b = y;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorted by start, a span overlaps an earlier one exactly when it starts
 * before the furthest end seen so far. */
int lt_gguf_spans_overlap(lt_gguf_span *spans, int64_t n, int64_t *a, int64_t *b) {
    if (n < 2) return -1;
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    int64_t far = 0;
    for (int64_t i = 1; i < n; i++) {
        if (spans[i].begin < spans[far].end) {
            *a = spans[far].idx;
            *b = spans[i].idx;
            return 0;
        }
        if (spans[i].end > spans[far].end) far = i;
    }
    return -1;
}
