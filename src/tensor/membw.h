/* The machine's read bandwidth, STREAM style: one pass of a vectorised read
 * kernel (an XOR fold of every 64-bit word) over a buffer much larger than
 * the last-level cache, split over a thread pool, best of several passes.
 * The fold is the kernel's result, so it cannot be optimised away, and it
 * is the same for every pass and thread count, so a caller can check that
 * the whole buffer was read. `lethe bench` divides it by the weight bytes a
 * decode step reads to get the bandwidth-bound limit of decode. */
#ifndef LETHE_MEMBW_H
#define LETHE_MEMBW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/threadpool.h"

typedef struct {
    double bytes_per_s; /* bytes / best_s */
    double best_s;      /* fastest pass */
    size_t bytes;       /* buffer size read per pass */
    int passes;
    uint64_t checksum;  /* the fold of the buffer (every pass agreed) */
} lt_membw;

/* XOR of the n / 8 little-endian 64-bit words of buf (unaligned is fine),
 * then of the last n % 8 bytes zero-extended into one more word, read in
 * parallel on tp (NULL: the calling thread). */
uint64_t lt_membw_xor(threadpool *tp, const void *buf, size_t n);

/* The default buffer: 4x the last-level cache that one CPU sees (sysfs,
 * else sysconf), at least 512 MiB. */
size_t lt_membw_default_bytes(void);

/* Allocates `bytes` (rounded down to a multiple of 64), fills it in parallel
 * (so its pages are real and each thread touches its own part first) with
 * word i = i * 0x9e3779b97f4a7c15 ^ 0x5bd1e9955bd1e995, and times `passes` read passes. False
 * on an allocation failure, a zero size or pass count, or passes whose
 * folds disagree (message in err). */
bool lt_membw_measure(threadpool *tp, size_t bytes, int passes, lt_membw *out, char *err, size_t err_size);

/* The same in steps, for a caller that measures the bandwidth next to each
 * of its own timings (on a shared host the bandwidth moves from second to
 * second): open allocates and fills the buffer, each pass times `passes`
 * reads and returns the best bytes per second (0 when a fold disagrees with
 * the first pass's), close frees it. */
typedef struct lt_membw_buf lt_membw_buf;
lt_membw_buf *lt_membw_open(threadpool *tp, size_t bytes, char *err, size_t err_size);
double lt_membw_pass(lt_membw_buf *b, threadpool *tp, int passes);
size_t lt_membw_buf_bytes(const lt_membw_buf *b);
void lt_membw_close(lt_membw_buf *b);

#endif
