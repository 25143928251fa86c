/* Cold tier edits: drop slots (by mask or position range) and shift a
 * position range, re-rotating its keys. All in place, allocation-free:
 * dropped pages keep their storage for reuse. */
#include <string.h>

#include "kv/kv_cold.h"
#include "kv/kv_cold_impl.h"
#include "kv/kv_stream_impl.h"
#include "tensor/rope.h"

/* Which slots stay (flag = the slot's index in page order). */
typedef struct {
    const uint8_t *keep;
    int32_t p0, p1;
} cold_rule;

static bool kept(const cold_rule *r, int flag, int32_t pos) {
    return r->keep ? r->keep[flag] != 0 : !(pos >= r->p0 && pos < r->p1);
}

/* Slot i of page pi's position for the rule (a mask rule reads none, so
 * a disk tier's pages are read only for a position rule). */
static int32_t page_pos(const kv_cold *c, const cold_rule *r, int pi, int i) { return r->keep ? 0 : c->pages[pi].pos[i]; }

/* Drops whole pages (stable; their storage moves to the spare tail).
 * Returns false, nothing changed, when some page is only partly dropped.
 * A dropped page is marked by a negative count until the second pass. */
static bool drop_whole_pages(kv_cold *c, const cold_rule *r) {
    int flag = 0;
    for (int pi = 0; pi < c->n_pages; pi++) {
        int k = 0, n = c->pages[pi].n;
        if (!r->keep && kv_cold_fetch(c, pi)) k = n; /* unreadable: stays (io_errno says why) */
        else
            for (int i = 0; i < n; i++) k += kept(r, flag + i, page_pos(c, r, pi, i));
        if (k != 0 && k != n) {
            for (int j = 0; j < pi; j++)
                if (c->pages[j].n < 0) c->pages[j].n = -c->pages[j].n;
            return false;
        }
        c->pages[pi].n = k ? n : -n;
        flag += n;
    }
    int w = 0;
    flag = 0;
    for (int pi = 0; pi < c->n_pages; pi++) {
        const bool stays = c->pages[pi].n > 0;
        int n = stays ? c->pages[pi].n : -c->pages[pi].n;
        c->pages[pi].n = n;
        if (n > 0 && stays) {
            kv_cold_page t = c->pages[w];
            c->pages[w++] = c->pages[pi];
            c->pages[pi] = t;
        } else {
            c->n_slots -= n;
            c->pages[pi].n = 0;
        }
        flag += n;
    }
    c->n_pages = w;
    return true;
}

/* Writes the page being built (c->nk / nv / npos / nscore, dn slots) as
 * page w. */
static void write_page(kv_cold *c, int w, int dn) {
    kv_cold_page *d = &c->pages[w];
    d->n = dn;
    memcpy(d->pos, c->npos, (size_t)c->page_slots * sizeof *d->pos);
    memcpy(d->score, c->nscore, (size_t)c->page_slots * sizeof *d->score);
    kv_cold_store_k(c, d, c->nk);
    kv_cold_store_v(c, d, c->nv);
    kv_cold_put(c, w); /* a failed write leaves io_errno set */
}

/* Repacks the kept slots into pages [0, ceil(kept / P)) in place: the
 * write cursor never passes the read cursor. The page being read is copied out (K / V as floats, positions and
 * scores) before anything is written, so a page may be rewritten in place
 * (and a disk tier's pages, which share one record buffer, work alike). */
static void repack(kv_cold *c, const cold_rule *r) {
    const int P = c->page_slots, hd = c->head_dim;
    const size_t blk = (size_t)P * hd * sizeof(float);
    int w = 0, flag = 0, dn = 0, n_old = c->n_pages;
    memset(c->nk, 0, blk);
    memset(c->nv, 0, blk);
    memset(c->npos, 0, (size_t)P * sizeof *c->npos);
    memset(c->nscore, 0, (size_t)P * sizeof *c->nscore);
    for (int pi = 0; pi < n_old; pi++) {
        kv_cold_page *p = &c->pages[pi];
        const int n = p->n;
        kv_cold_fetch(c, pi); /* a failed read leaves io_errno set */
        kv_cold_load_page(c, p, c->k, c->v);
        memcpy(c->rpos, p->pos, (size_t)n * sizeof *c->rpos);
        memcpy(c->rscore, p->score, (size_t)n * sizeof *c->rscore);
        for (int i = 0; i < n; i++, flag++) {
            if (!kept(r, flag, c->rpos[i])) continue;
            memcpy(c->nk + (size_t)dn * hd, c->k + (size_t)i * hd, (size_t)hd * sizeof(float));
            memcpy(c->nv + (size_t)dn * hd, c->v + (size_t)i * hd, (size_t)hd * sizeof(float));
            c->npos[dn] = c->rpos[i];
            c->nscore[dn] = c->rscore[i];
            if (++dn == P) {
                write_page(c, w++, P);
                memset(c->nk, 0, blk);
                memset(c->nv, 0, blk);
                dn = 0;
            }
        }
    }
    if (dn > 0) write_page(c, w++, dn);
    int slots = 0;
    for (int pi = 0; pi < w; pi++) slots += c->pages[pi].n;
    for (int pi = w; pi < n_old; pi++) c->pages[pi].n = 0;
    c->n_pages = w;
    c->n_slots = slots;
}

static void compact_by(kv_cold *c, const cold_rule *r) {
    if (!drop_whole_pages(c, r)) repack(c, r);
}

lethe_status kv_cold_compact(kv_cold *c, const uint8_t *keep) {
    if (!keep) return c->n_slots ? LETHE_ERR_ARG : LETHE_OK;
    cold_rule r = {keep, 0, 0};
    compact_by(c, &r);
    return LETHE_OK;
}

lethe_status kv_cold_remove(kv_cold *c, int32_t p0, int32_t p1) {
    if (p1 <= p0) return LETHE_OK;
    cold_rule r = {NULL, p0, p1};
    compact_by(c, &r);
    return LETHE_OK;
}

lethe_status kv_cold_shift(kv_cold *c, const kv_rope *rope, int32_t p0, int32_t p1, int32_t delta) {
    const int hd = c->head_dim;
    if (!kv_rope_valid(rope, hd)) return LETHE_ERR_ARG;
    if (delta == 0 || p1 <= p0) return LETHE_OK;
    for (int pi = 0; pi < c->n_pages; pi++) {
        if (kv_cold_fetch(c, pi)) return LETHE_ERR_IO;
        for (int i = 0; i < c->pages[pi].n; i++) {
            int32_t p = c->pages[pi].pos[i];
            if (p >= p0 && p < p1 && !kv_shift_target_ok(p, delta)) return LETHE_ERR_ARG;
        }
    }
    float cs[KV_ROPE_MAX_DIM];
    for (int pi = 0; pi < c->n_pages; pi++) {
        kv_cold_page *p = &c->pages[pi];
        bool touched = false;
        if (kv_cold_fetch(c, pi)) return LETHE_ERR_IO;
        for (int i = 0; i < p->n; i++) {
            if (p->pos[i] < p0 || p->pos[i] >= p1) continue;
            if (!touched) kv_cold_load_page(c, p, c->k, NULL);
            touched = true;
            kv_rope_delta_table(rope, p->pos[i], p->pos[i] + delta, cs);
            lt_rope_apply(c->k + (size_t)i * hd, 1, hd, rope->n_rot, cs, rope->neox);
            p->pos[i] += delta;
        }
        if (touched) kv_cold_store_k(c, p, c->k); /* rows past p->n are zero as stored */
        if (touched && kv_cold_put(c, pi)) return LETHE_ERR_IO;
    }
    return LETHE_OK;
}
