/* Allocation through one door, so tests can make the k-th allocation fail
 * (fault injection: every error path must leave state unchanged) and count
 * allocations (a steady-state decode step must make none). The engine's
 * layers (kv, attn, policy, runtime, model's forward pass, tensor) call these
 * instead of malloc & co. */
#ifndef LETHE_UTIL_ALLOC_H
#define LETHE_UTIL_ALLOC_H

#include <stddef.h>

void *lt_malloc(size_t size);
void *lt_calloc(size_t n, size_t size);
void *lt_realloc(void *p, size_t size);
/* size is rounded up to a multiple of align (a power of two >= sizeof(void *)). */
void *lt_aligned_alloc(size_t align, size_t size);
void lt_free(void *p);

/* Transparent huge pages for big buffers streamed end to end (weights, the
 * KV pool, the bandwidth probe): with 4 KiB pages the hardware prefetchers
 * stop at every page boundary and each page costs a TLB walk. LETHE_HUGE=0
 * in the environment turns them off (the bench's A/B). lt_advise_huge is a
 * hint: the memory works either way. */
int lt_huge_pages_enabled(void);
void lt_advise_huge(void *p, size_t size);

/* Test hooks. lt_alloc_fail_at(k), k >= 1: the k-th allocation from now
 * fails (returns NULL), and only that one; k <= 0 disarms (and keeps
 * lt_alloc_failed's answer). */
void lt_alloc_fail_at(long k);
/* Allocations made so far (successful or failed), and whether the armed
 * failure has fired. */
long lt_alloc_count(void);
int lt_alloc_failed(void);

/* Test hook: lt_alloc_track(1) starts counting the bytes (as requested) of
 * the blocks allocated from then on that are still live;
 * lt_alloc_track(0) stops and forgets them. Frees and reallocations of
 * blocks allocated before are not counted. Returns 0, or -1 when the
 * tracker's table cannot be made. Lets a test hold the engine's own byte
 * accounting against what it allocates. */
int lt_alloc_track(int on);
/* The most bytes live at once since lt_alloc_track(1); SIZE_MAX when the
 * table filled up (the figure would be incomplete). */
size_t lt_alloc_peak_bytes(void);

#endif
