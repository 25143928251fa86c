/* Cold tier pages: quantise on the way in, bound q.k per page, dequantise
 * into a view on the way out. Quest: Tang et al. 2024. */
#include "kv/kv_cold.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/types.h"

lethe_status kv_cold_init(kv_cold *c, lt_type dtype, int page_slots, int head_dim) {
    memset(c, 0, sizeof *c);
    if (page_slots <= 0 || head_dim <= 0) return LETHE_ERR_ARG;
    if (dtype != LT_Q8_0 && dtype != LT_Q4_0 && dtype != LT_F16) return LETHE_ERR_ARG;
    const long block = (long)page_slots * head_dim;
    if (dtype != LT_F16 && block % 32 != 0) dtype = LT_F16;
    c->dtype = dtype;
    c->page_slots = page_slots;
    c->head_dim = head_dim;
    c->block_bytes = lt_row_bytes(dtype, block);
    c->tmp = malloc((size_t)block * sizeof *c->tmp);
    if (!c->tmp) return LETHE_ERR_NOMEM;
    return c->block_bytes ? LETHE_OK : LETHE_ERR_ARG;
}

static void free_page(kv_cold_page *p) {
    free(p->pos);
    free(p->score);
    free(p->kmin);
    free(p->kmax);
    free(p->k);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void kv_cold_free(kv_cold *c) {
    for (int i = 0; i < c->n_pages; i++) free_page(&c->pages[i]);
    free(c->pages);
    free(c->tmp);
    c->pages = NULL;
    c->tmp = NULL;
    c->n_pages = c->cap_pages = c->n_slots = 0;
}

size_t kv_cold_bytes(const kv_cold *c) {
    const size_t per_page = 2 * c->block_bytes + (size_t)c->page_slots * (sizeof(int32_t) + sizeof(float)) +
                            2 * (size_t)c->head_dim * sizeof(float);
    return (size_t)c->n_pages * per_page;
}

double kv_cold_slot_bytes(const kv_cold *c) {
    return (2.0 * (double)c->block_bytes + 2.0 * c->head_dim * sizeof(float)) / c->page_slots + sizeof(int32_t) + sizeof(float);
}

static lethe_status new_page(kv_cold *c) {
    if (c->n_pages == c->cap_pages) {
        int cap = c->cap_pages ? c->cap_pages * 2 : 8;
        kv_cold_page *np = realloc(c->pages, (size_t)cap * sizeof *np);
        if (!np) return LETHE_ERR_NOMEM;
        c->pages = np;
        c->cap_pages = cap;
    }
    kv_cold_page *p = &c->pages[c->n_pages];
    memset(p, 0, sizeof *p);
    p->pos = malloc((size_t)c->page_slots * sizeof *p->pos);
    p->score = calloc((size_t)c->page_slots, sizeof *p->score);
    p->kmin = malloc((size_t)c->head_dim * sizeof *p->kmin);
    p->kmax = malloc((size_t)c->head_dim * sizeof *p->kmax);
    p->k = calloc(1, c->block_bytes);
    p->v = calloc(1, c->block_bytes);
    if (!p->pos || !p->score || !p->kmin || !p->kmax || !p->k || !p->v) {
        free_page(p);
        return LETHE_ERR_NOMEM;
    }
    c->n_pages++;
    return LETHE_OK;
}

/* Rewrites a page from F32 blocks (n rows of head_dim), recomputing bounds. */
static void store_page(kv_cold *c, kv_cold_page *p, const float *k, const float *v) {
    const lt_traits *tr = lt_type_traits(c->dtype);
    const int P = c->page_slots, hd = c->head_dim;
    const long block = (long)P * hd;
    for (int i = 0; i < P; i++) /* keys per channel: [dim][slot] */
        for (int d = 0; d < hd; d++) c->tmp[(long)d * P + i] = k[(long)i * hd + d];
    tr->from_float(c->tmp, p->k, block);
    tr->from_float(v, p->v, block);
    for (int d = 0; d < c->head_dim; d++) {
        p->kmin[d] = INFINITY;
        p->kmax[d] = -INFINITY;
    }
    /* bounds from the values as stored, so the bound holds for what is attended */
    tr->to_float(p->k, c->tmp, block);
    for (int d = 0; d < hd; d++)
        for (int i = 0; i < p->n; i++) {
            float x = c->tmp[(long)d * P + i];
            if (x < p->kmin[d]) p->kmin[d] = x;
            if (x > p->kmax[d]) p->kmax[d] = x;
        }
}

static lethe_status load_page(const kv_cold *c, const kv_cold_page *p, float *k, float *v) {
    const lt_traits *tr = lt_type_traits(c->dtype);
    const int P = c->page_slots, hd = c->head_dim;
    const long block = (long)P * hd;
    tr->to_float(p->k, c->tmp, block);
    for (int i = 0; i < P; i++)
        for (int d = 0; d < hd; d++) k[(long)i * hd + d] = c->tmp[(long)d * P + i];
    tr->to_float(p->v, v, block);
    return LETHE_OK;
}

lethe_status kv_cold_add(kv_cold *c, const kv_pool *pool, const kv_stream *s, const int *idx, const float *score, int n) {
    const int P = c->page_slots, hd = c->head_dim;
    float *k = calloc((size_t)P * hd, sizeof *k), *v = calloc((size_t)P * hd, sizeof *v);
    lethe_status st = k && v ? LETHE_OK : LETHE_ERR_NOMEM;
    for (int done = 0; done < n && !st;) {
        if (c->n_pages == 0 || c->pages[c->n_pages - 1].n == P) st = new_page(c);
        if (st) break;
        kv_cold_page *p = &c->pages[c->n_pages - 1];
        load_page(c, p, k, v); /* partial page: re-quantise with the new slots */
        while (p->n < P && done < n) {
            int i = idx[done];
            kv_load_row(pool, kv_stream_k(pool, s, i), k + (long)p->n * hd);
            kv_load_row(pool, kv_stream_v(pool, s, i), v + (long)p->n * hd);
            p->pos[p->n] = s->pos[i];
            p->score[p->n] = score ? score[done] : 0.0f;
            p->n++;
            done++;
            c->n_slots++;
        }
        memset(k + (long)p->n * hd, 0, (size_t)(P - p->n) * hd * sizeof *k);
        memset(v + (long)p->n * hd, 0, (size_t)(P - p->n) * hd * sizeof *v);
        store_page(c, p, k, v);
    }
    free(k);
    free(v);
    return st;
}

float kv_cold_bound(const kv_cold *c, int pi, const float *q, float scale) {
    const kv_cold_page *p = &c->pages[pi];
    float b = 0.0f;
    for (int d = 0; d < c->head_dim; d++) {
        float lo = q[d] * p->kmin[d], hi = q[d] * p->kmax[d];
        b += lo > hi ? lo : hi;
    }
    return b * scale;
}

lethe_status kv_cold_load(const kv_cold *c, const int *pages, int n, kv_pool *scratch, kv_stream *view) {
    const int P = c->page_slots, hd = c->head_dim;
    float *k = malloc((size_t)P * hd * sizeof *k), *v = malloc((size_t)P * hd * sizeof *v);
    lethe_status st = k && v ? LETHE_OK : LETHE_ERR_NOMEM;
    for (int i = 0; i < n && !st; i++) {
        const kv_cold_page *p = &c->pages[pages[i]];
        load_page(c, p, k, v);
        st = kv_stream_append(scratch, view, k, v, hd, hd, p->pos, p->n);
    }
    free(k);
    free(v);
    return st;
}

/* Drops whole pages without touching the others' quantised blocks. Returns
 * false (nothing changed) when some page is only partly dropped. */
static bool drop_whole_pages(kv_cold *c, const uint8_t *keep) {
    int flag = 0;
    for (int pi = 0; pi < c->n_pages; pi++) {
        int kept = 0;
        for (int i = 0; i < c->pages[pi].n; i++) kept += keep[flag + i] != 0;
        if (kept != 0 && kept != c->pages[pi].n) return false;
        flag += c->pages[pi].n;
    }
    int w = 0;
    flag = 0;
    for (int pi = 0; pi < c->n_pages; pi++) {
        int n = c->pages[pi].n;
        if (n > 0 && keep[flag]) {
            c->pages[w++] = c->pages[pi];
        } else {
            c->n_slots -= n;
            free_page(&c->pages[pi]);
        }
        flag += n;
    }
    c->n_pages = w;
    return true;
}

lethe_status kv_cold_compact(kv_cold *c, const uint8_t *keep) {
    if (drop_whole_pages(c, keep)) return LETHE_OK;
    kv_cold old = *c;
    kv_cold fresh;
    lethe_status st = kv_cold_init(&fresh, c->dtype, c->page_slots, c->head_dim);
    if (st) return st;
    const int P = c->page_slots, hd = c->head_dim;
    float *k = malloc((size_t)P * hd * sizeof *k), *v = malloc((size_t)P * hd * sizeof *v);
    float *nk = calloc((size_t)P * hd, sizeof *nk), *nv = calloc((size_t)P * hd, sizeof *nv);
    if (!k || !v || !nk || !nv) st = LETHE_ERR_NOMEM;
    int flag = 0;
    kv_cold_page *dst = NULL;
    for (int pi = 0; pi < old.n_pages && !st; pi++) {
        const kv_cold_page *p = &old.pages[pi];
        load_page(&old, p, k, v);
        for (int i = 0; i < p->n && !st; i++, flag++) {
            if (!keep[flag]) continue;
            if (!dst || dst->n == P) {
                if (dst) store_page(&fresh, dst, nk, nv);
                if ((st = new_page(&fresh))) break;
                dst = &fresh.pages[fresh.n_pages - 1];
                memset(nk, 0, (size_t)P * hd * sizeof *nk);
                memset(nv, 0, (size_t)P * hd * sizeof *nv);
            }
            memcpy(nk + (long)dst->n * hd, k + (long)i * hd, (size_t)hd * sizeof *k);
            memcpy(nv + (long)dst->n * hd, v + (long)i * hd, (size_t)hd * sizeof *v);
            dst->pos[dst->n] = p->pos[i];
            dst->score[dst->n] = p->score[i];
            dst->n++;
            fresh.n_slots++;
        }
    }
    if (!st && dst) store_page(&fresh, dst, nk, nv);
    free(k);
    free(v);
    free(nk);
    free(nv);
    if (st) {
        kv_cold_free(&fresh);
        return st;
    }
    kv_cold_free(c);
    *c = fresh;
    return LETHE_OK;
}

lethe_status kv_cold_copy(kv_cold *dst, const kv_cold *src) {
    if (dst->n_pages || dst->dtype != src->dtype || dst->page_slots != src->page_slots || dst->head_dim != src->head_dim)
        return LETHE_ERR_ARG;
    const size_t P = (size_t)src->page_slots, hd = (size_t)src->head_dim;
    for (int pi = 0; pi < src->n_pages; pi++) {
        lethe_status st = new_page(dst);
        if (st) return st;
        kv_cold_page *d = &dst->pages[dst->n_pages - 1];
        const kv_cold_page *s = &src->pages[pi];
        d->n = s->n;
        memcpy(d->pos, s->pos, P * sizeof *d->pos);
        memcpy(d->score, s->score, P * sizeof *d->score);
        memcpy(d->kmin, s->kmin, hd * sizeof *d->kmin);
        memcpy(d->kmax, s->kmax, hd * sizeof *d->kmax);
        memcpy(d->k, s->k, src->block_bytes);
        memcpy(d->v, s->v, src->block_bytes);
    }
    dst->n_slots = src->n_slots;
    return LETHE_OK;
}
