#include "util/alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
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

/* The tracker (lt_alloc_track): an open-addressing table of the live
 * blocks' sizes, with tombstones; off, allocations pay one atomic load. */
#define TRACK_CAP (1 << 16)
typedef struct {
    uintptr_t key; /* 0: empty, 1: deleted */
    size_t size;
} track_slot;
static atomic_int tracking;
static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static track_slot *track_tab;
static size_t track_used, track_live, track_peak;
static int track_full;

static size_t track_hash(uintptr_t k) { return (size_t)((k >> 4) * 0x9E3779B97F4A7C15ull) & (TRACK_CAP - 1); }

static void track_add(void *p, size_t size) {
    if (!p || !atomic_load_explicit(&tracking, memory_order_relaxed)) return;
    pthread_mutex_lock(&track_lock);
    if (track_tab && track_used < TRACK_CAP / 2) {
        size_t i = track_hash((uintptr_t)p);
        while (track_tab[i].key > 1) i = (i + 1) & (TRACK_CAP - 1);
        if (track_tab[i].key == 0) track_used++;
        track_tab[i] = (track_slot){(uintptr_t)p, size};
        track_live += size;
        if (track_live > track_peak) track_peak = track_live;
    } else if (track_tab) {
        track_full = 1;
    }
    pthread_mutex_unlock(&track_lock);
}

/* key: the block's address. Returns the block's size, SIZE_MAX if it was
 * not in the table. */
static size_t track_remove(uintptr_t key) {
    size_t size = SIZE_MAX;
    if (!key || !atomic_load_explicit(&tracking, memory_order_relaxed)) return size;
    pthread_mutex_lock(&track_lock);
    for (size_t i = track_tab ? track_hash(key) : 0; track_tab && track_tab[i].key != 0; i = (i + 1) & (TRACK_CAP - 1))
        if (track_tab[i].key == key) {
            size = track_tab[i].size;
            track_live -= size;
            track_tab[i].key = 1;
            break;
        }
    pthread_mutex_unlock(&track_lock);
    return size;
}

void *lt_malloc(size_t size) {
    if (should_fail()) return NULL;
    void *p = malloc(size ? size : 1);
    track_add(p, size);
    return p;
}

void *lt_calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    track_add(p, n * size);
    return p;
}

void *lt_realloc(void *p, size_t size) {
    if (should_fail()) return NULL;
    /* out of the table first: after realloc p may only be compared, and gcc
     * warns even about that */
    const size_t old = track_remove((uintptr_t)p);
    void *q = realloc(p, size ? size : 1);
    if (q) track_add(q, size);
    else if (old != SIZE_MAX) track_add(p, old); /* still p's block */
    return q;
}

void *lt_aligned_alloc(size_t align, size_t size) {
    if (should_fail()) return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
    track_add(p, rounded);
    return p;
}

void lt_free(void *p) {
    track_remove((uintptr_t)p);
    free(p);
}

int lt_alloc_track(int on) {
    pthread_mutex_lock(&track_lock);
    free(track_tab);
    track_tab = on ? calloc(TRACK_CAP, sizeof *track_tab) : NULL;
    track_used = track_live = track_peak = 0;
    track_full = on && !track_tab;
    atomic_store(&tracking, on && track_tab);
    pthread_mutex_unlock(&track_lock);
    return track_full ? -1 : 0;
}

size_t lt_alloc_peak_bytes(void) {
    pthread_mutex_lock(&track_lock);
    size_t v = track_full ? SIZE_MAX : track_peak;
    pthread_mutex_unlock(&track_lock);
    return v;
}

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
