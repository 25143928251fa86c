/* FlashAttention-2 (Dao 2023): online softmax of a block of query rows over
 * a range of a stream's pages, one page of keys per tile. Internal to
 * src/attn; shared by prefill (whole stream) and decode (a chunk of pages). */
#ifndef LETHE_ATTN_FLASH_H
#define LETHE_ATTN_FLASH_H

#include <stdint.h>

#include "attn/attn_kernels.h"
#include "attn/attn_kv_tile.h"
#include "kv/kv_stream.h"

/* Rows of one block are at most this many (query heads of a group x tokens). */
#define ATTN_BLOCK_ROWS 64

typedef struct {
    const attn_kernels *kern;
    kv_tile_reader rd;
    int d;        /* head_dim */
    int p;        /* page_slots */
    float *s;     /* rows x p scores / probabilities */
    float *alpha; /* rows */
} attn_tile;

/* Per-thread tile memory, carved from one buffer of attn_tile_floats() floats. */
typedef struct {
    float *q;       /* rows x d, pre-scaled queries */
    float *o;       /* rows x d, unnormalised output */
    float *m, *l;   /* rows */
    int32_t *qpos;  /* rows */
    float *tmp;     /* p floats */
    float *mass;    /* stats: chunk_slots */
    int32_t *hit;   /* stats: chunk_slots */
} attn_tile_mem;

/* Floats one thread needs for blocks of `rows` rows and (statistics) chunks
 * of `chunk_slots` slots. */
long attn_tile_floats(const kv_pool *pool, int rows, int chunk_slots);
/* Carves buf into the tile and its memory. */
void attn_tile_init(attn_tile *t, attn_tile_mem *mem, const kv_pool *pool, const attn_kernels *kern, float *buf,
                    int rows, int chunk_slots);

/* Online softmax of nr rows of pre-scaled queries q (nr x d) at positions
 * qpos against the slots of pages [pg0, pg1) of stream st. m, l, o carry the
 * running max, sum and unnormalised output (start: -inf, 0, 0). A slot is
 * visible to row r iff its position <= qpos[r]. When sink is non-NULL the
 * masked scores (-inf where invisible) are stored at
 * sink[r * sink_stride + slot]. */
void attn_tile_rows(attn_tile *t, const kv_stream *st, const float *q, const int32_t *qpos, int nr, int pg0,
                    int pg1, float *m, float *l, float *o, float *sink, long sink_stride);

/* The masked scores of nr rows against page pi (rows of t->s, p apart);
 * returns the number of slots in the page, 0 when none is visible to any
 * row (then t->s is not written). */
int attn_tile_scores(attn_tile *t, const kv_stream *st, const float *q, const int32_t *qpos, int nr, int pi);

/* Adds the statistics of one slot: mass received, and whether any single
 * query head gave it probability >= threshold. */
void attn_stats_store(const kv_stream *st, int slot, float mass, int hit, int32_t step);

#endif
