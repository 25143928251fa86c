#include "util/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_long n_allocs;
static atomic_long fail_at; /* absolute count at which to fail; 0: never */
static atomic_int fired;

/* True when this allocation is the one chosen to fail. */
static int should_fail(void) {
    long k = atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed) + 1;
    long f = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (f > 0 && k == f) {
        atomic_store(&fired, 1);
        return 1;
    }
    return 0;
}

void *lt_malloc(size_t size) { return should_fail() ? NULL : malloc(size ? size : 1); }

void *lt_calloc(size_t n, size_t size) { return should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1); }

void *lt_realloc(void *p, size_t size) { return should_fail() ? NULL : realloc(p, size ? size : 1); }

void *lt_aligned_alloc(size_t align, size_t size) {
    if (should_fail()) return NULL;
    size_t rounded = (size + align - 1) / align * align;
    return aligned_alloc(align, rounded ? rounded : align);
}

void lt_free(void *p) { free(p); }

int lt_huge_pages_enabled(void) {
    const char *env = getenv("LETHE_HUGE");
    return !env || strcmp(env, "0") != 0;
}

void lt_advise_huge(void *p, size_t size) {
#ifdef MADV_HUGEPAGE
    if (p && size && lt_huge_pages_enabled()) madvise(p, size, MADV_HUGEPAGE);
#else
    (void)p;
    (void)size;
#endif
}

void lt_alloc_fail_at(long k) {
    if (k > 0) atomic_store(&fired, 0); /* disarming keeps the record of whether it fired */
    atomic_store(&fail_at, k > 0 ? atomic_load(&n_allocs) + k : 0);
}

long lt_alloc_count(void) { return atomic_load(&n_allocs); }

int lt_alloc_failed(void) { return atomic_load(&fired); }
