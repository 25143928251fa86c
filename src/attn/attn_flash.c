/* FlashAttention-2 (Dao 2023): online-softmax tiles over paged KV. */
#include "attn/attn_flash.h"

#include <math.h>

static long round16(long n) { return (n + 15) / 16 * 16; } /* keep every part 64-byte aligned */

long attn_tile_floats(const kv_pool *pool, int rows, int chunk_slots) {
    long d = kv_pool_head_dim(pool), p = kv_pool_page_slots(pool);
    return round16(kv_tile_reader_floats(pool)) + round16(rows * p) + round16(rows) /* alpha */ +
           2 * round16(rows * d) + 2 * round16(rows) + round16(rows) /* qpos */ + round16(p) +
           2 * round16(chunk_slots);
}

void attn_tile_init(attn_tile *t, attn_tile_mem *mem, const kv_pool *pool, const attn_kernels *kern, float *buf,
                    int rows, int chunk_slots) {
    long d = kv_pool_head_dim(pool), p = kv_pool_page_slots(pool);
    t->kern = kern;
    t->d = (int)d;
    t->p = (int)p;
    kv_tile_reader_init(&t->rd, pool, buf);
    buf += round16(kv_tile_reader_floats(pool));
    t->s = buf, buf += round16(rows * p);
    t->alpha = buf, buf += round16(rows);
    mem->q = buf, buf += round16(rows * d);
    mem->o = buf, buf += round16(rows * d);
    mem->m = buf, buf += round16(rows);
    mem->l = buf, buf += round16(rows);
    mem->qpos = (int32_t *)(void *)buf, buf += round16(rows);
    mem->tmp = buf, buf += round16(p);
    mem->mass = buf, buf += round16(chunk_slots);
    mem->hit = (int32_t *)(void *)buf;
}

int attn_tile_scores(attn_tile *t, const kv_stream *st, const float *q, const int32_t *qpos, int nr, int pi) {
    int first;
    int nk = kv_tile_rows(&t->rd, st, pi, &first);
    if (nk <= 0) return 0;
    const int32_t *pos = st->pos + first;
    int32_t pmin = pos[0], pmax = pos[0];
    for (int j = 1; j < nk; j++) {
        if (pos[j] < pmin) pmin = pos[j];
        if (pos[j] > pmax) pmax = pos[j];
    }
    int32_t qmin = qpos[0], qmax = qpos[0];
    for (int r = 1; r < nr; r++) {
        if (qpos[r] < qmin) qmin = qpos[r];
        if (qpos[r] > qmax) qmax = qpos[r];
    }
    if (pmin > qmax) return 0; /* the whole page lies in every row's future */
    kv_tile_scores(&t->rd, t->kern, st, pi, nk, q, nr, t->s, t->p);
    if (pmax > qmin) { /* some slot is invisible to some row: causal mask by position */
        for (int r = 0; r < nr; r++) {
            float *sr = t->s + (long)r * t->p;
            for (int j = 0; j < nk; j++)
                if (pos[j] > qpos[r]) sr[j] = -INFINITY;
        }
    }
    return nk;
}

void attn_tile_rows(attn_tile *t, const kv_stream *st, const float *q, const int32_t *qpos, int nr, int pg0,
                    int pg1, float *m, float *l, float *o, float *sink, long sink_stride) {
    const int P = t->p;
    for (int pi = pg0; pi < pg1; pi++) {
        int nk = attn_tile_scores(t, st, q, qpos, nr, pi);
        if (nk == 0) {
            if (sink) {
                int first, cnt = kv_tile_rows(&t->rd, st, pi, &first);
                for (int r = 0; r < nr; r++)
                    for (int j = 0; j < cnt; j++) sink[r * sink_stride + first + j] = -INFINITY;
            }
            continue;
        }
        if (sink) {
            long first = (long)pi * P;
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nk; j++) sink[r * sink_stride + first + j] = t->s[(long)r * P + j];
        }
        /* Running max and sum per row; alpha rescales what was accumulated. */
        t->kern->softmax(t->s, P, nr, nk, m, l, t->alpha);
        kv_tile_pv(&t->rd, t->kern, st->pages[pi], nk, o, nr, t->alpha, t->s, P);
    }
}

void attn_stats_store(const kv_stream *st, int slot, float mass, int hit, int32_t step) {
    st->attn_last[slot] = mass;
    if (st->attn_acc) st->attn_acc[slot] += mass;
    if (hit && st->attn_last_hit) st->attn_last_hit[slot] = step;
}
