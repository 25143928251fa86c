/* The cold tier of one stream: slots moved out of the hot pool, stored in
 * pages quantised to Q8_0 / Q4_0 (or F16), each page with the per-dimension
 * min and max of its keys so that an upper bound of q.k over the page can be
 * computed without touching the keys (Quest: Tang et al., "Quest:
 * Query-Aware Sparsity for Efficient Long-Context LLM Inference", 2024).
 *
 * A cold page's V block is the page's slots x head_dim values, quantised
 * as one flat row (per token). Its K block is stored transposed, head_dim
 * x slots, so that with 32-slot pages each quantisation block is one
 * channel across the page's tokens: keys have outlier channels, and
 * quantising them per channel keeps the outliers from flattening the rest
 * (KIVI: Liu et al., 2024). Any page block that is a multiple of 32 values
 * can be quantised. To attend cold slots, the
 * runtime lists the chosen pages in a view stream and the attention
 * kernels read them in place (attn_kv_tile.h: Q4_0 / Q8_0 blocks straight
 * into the cold kernels, other shapes through kv_cold_page_to_f32);
 * kv_cold_load copies pages into an F32 view instead (tests).
 *
 * On disk (kv_cold_init_disk): a page's positions and K / V blocks live in
 * a file (one per tier, unlinked at creation so nothing is left behind),
 * one record [pos | K | V] per page; RAM keeps only the bounds (8-bit
 * codes, as for every tier) and the slot count. Every page's pos / k / v pointers
 * then alias one record buffer (io) that a page is read into before it is
 * used (kv_cold_fetch) and written from after (kv_cold_put), one page at a
 * time; the attention does not read a disk tier in place but stages the
 * chosen pages into a RAM tier first (kv_cold_stage, counted as read
 * traffic). Storage for a page is allocated in the file when the page is
 * reserved (posix_fallocate), so a full disk fails the reserve
 * (LETHE_ERR_IO, nothing changed), not the commit. */
#ifndef LETHE_KV_COLD_H
#define LETHE_KV_COLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/kv_pool.h"
#include "kv/kv_stream.h"

/* One page's storage is one allocation (pos, score, kmin, kmax, k, v
 * carved from it). */
typedef struct {
    int n;          /* slots used */
    int32_t file_page; /* disk tier: the record's index in the file */
    int32_t *pos;   /* page_slots positions */
    float *score;   /* page_slots importance scores carried from the hot tier */
    /* head_dim each: 8-bit codes of the per-dimension key minimum and
     * maximum on the page's grid blo + code * bstep, kmin rounded down and
     * kmax up, so the bound computed from them still bounds the stored
     * keys (2 bytes per dimension and page in RAM: what a disk tier keeps) */
    uint8_t *kmin, *kmax;
    float blo, bstep;
    uint8_t *k, *v; /* quantised blocks */
} kv_cold_page;

/* pages[0, n_pages) are live, in slot order; pages[n_pages, n_alloc) have
 * storage but no slots (dropped pages kept for reuse, or reserved ahead by
 * kv_cold_reserve); cap_pages is the length of the page array. Scratch for
 * the transposes and repacking is held here, so that once reserved, add,
 * compact, shift and remove allocate nothing. */
typedef struct {
    lt_type dtype;
    int page_slots, head_dim;
    size_t block_bytes; /* bytes of one page's K (or V) block */
    float *tmp;         /* page_slots x head_dim scratch for the transposes */
    float *k, *v, *nk, *nv; /* page_slots x head_dim each: page load / repack scratch */
    bool shared_scratch; /* the scratch belongs to another tier (kv_cold_init's owner) */
    kv_cold_page *pages;
    int n_pages, n_alloc, cap_pages;
    int n_slots;
    /* repack scratch: the positions and scores of the page being read and
     * of the page being written (page_slots each, in the tmp allocation) */
    int32_t *rpos, *npos;
    float *rscore, *nscore;
    float *bnd;     /* 2 x head_dim: a page's key minima and maxima before coding */
    /* disk tier (on_disk): record buffer, records in the file, traffic */
    bool on_disk;
    int fd;
    uint8_t *io;
    float *io_score;
    bool shared_io; /* io belongs to another tier (kv_cold_init's owner) */
    size_t rec_bytes;
    int32_t n_file;
    uint64_t read_bytes, write_bytes;
    int io_errno;   /* sticky: a read or write that failed after its reserve (0: none) */
} kv_cold;

/* dtype: LT_Q8_0 or LT_Q4_0 (falls back to LT_F16 when page_slots *
 * head_dim is not a multiple of 32), or LT_F16. owner: NULL, or a tier of
 * the same shape whose scratch c uses instead of its own, so that the
 * tiers of one sequence's streams hold one scratch between them (they are
 * used one at a time; owner must outlive c). */
lethe_status kv_cold_init(kv_cold *c, lt_type dtype, int page_slots, int head_dim, const kv_cold *owner);
/* The same with its pages in a new temporary file in dir (NULL: $TMPDIR
 * or /tmp); with a disk owner, c shares its record buffer too. LETHE_ERR_IO
 * (message in err, LETHE_ERR_MAX bytes, may be NULL) when the file cannot
 * be created. */
lethe_status kv_cold_init_disk(kv_cold *c, lt_type dtype, int page_slots, int head_dim, const kv_cold *owner, const char *dir,
                               char *err);
/* What a tier of this shape holds beside its pages, without making one:
 * its scratch, and the bytes of one K or V block. */
size_t kv_cold_scratch_bytes(int page_slots, int head_dim);
size_t kv_cold_block_bytes(lt_type dtype, int page_slots, int head_dim);
static inline bool kv_cold_on_disk(const kv_cold *c) { return c->on_disk; }
/* Disk tier: reads page p's record into the record buffer (RAM tier:
 * nothing) / writes it back. LETHE_ERR_IO, with io_errno set. */
lethe_status kv_cold_fetch(kv_cold *c, int p);
lethe_status kv_cold_put(kv_cold *c, int p);
/* Bytes in the file (disk tier; 0 in RAM). */
size_t kv_cold_disk_bytes(const kv_cold *c);
/* Reads pages sel[0..n) of src (any tier) into dst, a RAM tier of the
 * same shape with at least n pages reserved, as dst's pages [0, n) (dst's
 * bounds and scores are not filled): what the attention reads instead of
 * a disk tier. LETHE_ERR_IO (src->io_errno set) on a failed read. */
lethe_status kv_cold_stage(kv_cold *src, const int *sel, int n, kv_cold *dst);
void kv_cold_free(kv_cold *c);
/* Bytes of the live pages (quantised blocks, positions, scores and bounds
 * of the pages that hold slots): what the slots need. */
size_t kv_cold_bytes(const kv_cold *c);
/* Bytes held: every page with storage (live, spare from dropped pages, or
 * reserved ahead) plus the scratch (5 x page_slots x head_dim floats).
 * Nothing of it is returned before kv_cold_trim / kv_cold_free, so this is
 * what an honest budget counts. */
size_t kv_cold_bytes_reserved(const kv_cold *c);
/* Grows the page array to n pages without giving them storage (so a tier
 * whose most pages are known holds no doubling slack). */
lethe_status kv_cold_reserve_array(kv_cold *c, int n);
/* Makes sure pages [0, n_pages_total) have storage, so that adds and
 * compactions that end with at most that many pages cannot fail.
 * LETHE_ERR_NOMEM: slots unchanged (some pages may have been reserved). */
lethe_status kv_cold_reserve(kv_cold *c, int n_pages_total);
/* Pages the tier has after kv_cold_compact(keep) (keep NULL: no drop) and
 * then kv_cold_add of n_add slots. */
int kv_cold_pages_after(const kv_cold *c, const uint8_t *keep, int n_add);
/* Frees the storage of the pages that hold no slots. */
void kv_cold_trim(kv_cold *c);
/* Bytes one slot costs in this tier (K + V), for budget arithmetic. */
double kv_cold_slot_bytes(const kv_cold *c);

/* Moves slots idx[0..n) of stream s (read through pool) into the tier, with
 * their scores (may be NULL). Slots fill the last page first, then new
 * pages. Reserves first: LETHE_ERR_NOMEM leaves the slots unchanged. */
lethe_status kv_cold_add(kv_cold *c, const kv_pool *pool, const kv_stream *s, const int *idx, const float *score, int n);

/* Page p's keys and values as F32 rows ([page_slots][head_dim] each; either
 * may be NULL), with caller scratch tmp of page_slots x head_dim floats: safe
 * from several threads at once (attention reads cold pages in place). */
void kv_cold_page_to_f32(const kv_cold *c, int p, float *k, float *v, float *tmp);

/* Upper bound of q . k (times scale) over page p's keys (from the coded
 * bounds, which enclose the stored keys). */
float kv_cold_bound(const kv_cold *c, int p, const float *q, float scale);

/* Appends the slots of pages[0..n) to the (empty or not) F32 stream view of
 * the scratch pool, in page order. LETHE_ERR_BUDGET when the scratch pool
 * is full. */
lethe_status kv_cold_load(const kv_cold *c, const int *pages, int n, kv_pool *scratch, kv_stream *view);

/* dst (initialised with the same shape, empty) becomes a copy of src; on
 * error dst still holds no slots. */
lethe_status kv_cold_copy(kv_cold *dst, const kv_cold *src);

/* Drops the cold slots whose keep flag (in page order, n_slots flags) is 0.
 * Whole pages go without touching the rest (their storage stays for
 * reuse); a partly dropped page makes every page be repacked in place and
 * quantised again (a second rounding). Slots added to a partly filled last
 * page re-quantise that page likewise. Allocates nothing; cannot fail for
 * a non-NULL keep. */
lethe_status kv_cold_compact(kv_cold *c, const uint8_t *keep);

/* Drops the cold slots with p0 <= pos < p1 (as kv_cold_compact). */
lethe_status kv_cold_remove(kv_cold *c, int32_t p0, int32_t p1);

/* Every cold slot with p0 <= pos < p1 gets pos += delta and its key
 * rotated by delta positions (as kv_stream_shift): the K blocks of the
 * pages holding such slots are dequantised, the rows rotated, and the
 * blocks quantised again, with the pages' kmin / kmax recomputed from the
 * stored values (so the Quest bound stays an upper bound). V blocks are not
 * touched. Error against a tier built from the keys at the new positions
 * (amax = the page's largest |k|; one more rounding than that tier's):
 *   Q8_0: <= 2.5 * amax / 127 (measured 1.23 / 127);
 *   Q4_0: <= 2.5 * amax / 8   (measured 1.32 / 8);
 *   F16:  <= 2.5 * 2^-11 * amax (measured 1.5 * 2^-11);
 * checked by tests/test_kv_edit.c.
 * LETHE_ERR_ARG (nothing changed) for a bad descriptor or a new position
 * < 0. Allocates nothing. */
lethe_status kv_cold_shift(kv_cold *c, const kv_rope *rope, int32_t p0, int32_t p1, int32_t delta);

#endif
