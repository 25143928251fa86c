/* Cold tier pages: storage and reservation, quantise on the way in, bound
 * q.k per page, dequantise into a view on the way out. Quest: Tang et al.
 * 2024. Compaction and position edits are in kv_cold_edit.c. */
#include "kv/kv_cold.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kv/kv_cold_impl.h"
#include "tensor/types.h"
#include "util/alloc.h"
#include "util/error.h"

/* The scratch: five page blocks of floats, then the repack positions and
 * scores (4 x page_slots), then a page's key minima and maxima (2 x
 * head_dim). */
size_t kv_cold_scratch_bytes(int page_slots, int head_dim) {
    if (page_slots <= 0 || head_dim <= 0) return 0;
    return 5 * (size_t)page_slots * (size_t)head_dim * sizeof(float) + 4 * (size_t)page_slots * sizeof(float) +
           2 * (size_t)head_dim * sizeof(float);
}

/* The block type a shape stores (Q8_0 / Q4_0 need whole blocks of 32). */
static lt_type block_type(lt_type dtype, int page_slots, int head_dim) {
    return dtype != LT_F16 && (long)page_slots * head_dim % 32 != 0 ? LT_F16 : dtype;
}

size_t kv_cold_block_bytes(lt_type dtype, int page_slots, int head_dim) {
    if (page_slots <= 0 || head_dim <= 0) return 0;
    return lt_row_bytes(block_type(dtype, page_slots, head_dim), (int64_t)page_slots * head_dim);
}

/* c's scratch pointers into owner's (same shape). */
static void use_scratch_of(kv_cold *c, const kv_cold *owner) {
    c->tmp = owner->tmp;
    c->k = owner->k;
    c->v = owner->v;
    c->nk = owner->nk;
    c->nv = owner->nv;
    c->rpos = owner->rpos;
    c->npos = owner->npos;
    c->rscore = owner->rscore;
    c->nscore = owner->nscore;
    c->bnd = owner->bnd;
    c->shared_scratch = true;
}

lethe_status kv_cold_init(kv_cold *c, lt_type dtype, int page_slots, int head_dim, const kv_cold *owner) {
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (page_slots <= 0 || head_dim <= 0) return LETHE_ERR_ARG;
    if (dtype != LT_Q8_0 && dtype != LT_Q4_0 && dtype != LT_F16) return LETHE_ERR_ARG;
    if (owner && (owner->page_slots != page_slots || owner->head_dim != head_dim)) return LETHE_ERR_ARG;
    const long block = (long)page_slots * head_dim;
    c->dtype = block_type(dtype, page_slots, head_dim);
    c->page_slots = page_slots;
    c->head_dim = head_dim;
    c->block_bytes = lt_row_bytes(c->dtype, block);
    if (!c->block_bytes) return LETHE_ERR_ARG;
    if (owner) { /* never two scratches at once, not even while setting up */
        use_scratch_of(c, owner);
        return LETHE_OK;
    }
    /* one block for the five scratch areas */
    c->tmp = lt_malloc(kv_cold_scratch_bytes(page_slots, head_dim));
    if (!c->tmp) return LETHE_ERR_NOMEM;
    c->k = c->tmp + block;
    c->v = c->k + block;
    c->nk = c->v + block;
    c->nv = c->nk + block;
    c->rpos = (int32_t *)(c->nv + block);
    c->npos = c->rpos + page_slots;
    c->rscore = (float *)(c->npos + page_slots);
    c->nscore = c->rscore + page_slots;
    c->bnd = c->nscore + page_slots;
    return LETHE_OK;
}

lethe_status kv_cold_init_disk(kv_cold *c, lt_type dtype, int page_slots, int head_dim, const kv_cold *owner, const char *dir,
                               char *err) {
    lethe_status st = kv_cold_init(c, dtype, page_slots, head_dim, owner);
    if (st) return set_error(err, st, "cold tier: %s", lethe_status_name(st));
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lethe-cold-XXXXXX", dir) >= (int)sizeof path) {
        kv_cold_free(c);
        return set_error(err, LETHE_ERR_ARG, "cold tier directory path is too long");
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        int e = errno;
        kv_cold_free(c);
        return set_error(err, LETHE_ERR_IO, "cannot create a cold-tier file in %s: %s", dir, strerror(e));
    }
    unlink(path); /* the open descriptor keeps it; nothing is left on exit or crash */
    const size_t P = (size_t)page_slots;
    c->rec_bytes = P * sizeof(int32_t) + 2 * c->block_bytes;
    if (owner && owner->on_disk && owner->rec_bytes == c->rec_bytes) { /* one record buffer too */
        c->io = owner->io;
        c->shared_io = true;
    } else if (!(c->io = lt_malloc(c->rec_bytes + P * sizeof(float)))) {
        close(fd);
        kv_cold_free(c);
        return set_error(err, LETHE_ERR_NOMEM, "out of memory for the cold tier");
    }
    c->io_score = (float *)(c->io + c->rec_bytes);
    c->fd = fd;
    c->on_disk = true;
    return LETHE_OK;
}

static off_t rec_off(const kv_cold *c, const kv_cold_page *p) { return (off_t)p->file_page * (off_t)c->rec_bytes; }

lethe_status kv_cold_fetch(kv_cold *c, int pi) {
    if (!c->on_disk) return LETHE_OK;
    ssize_t r = pread(c->fd, c->io, c->rec_bytes, rec_off(c, &c->pages[pi]));
    if (r != (ssize_t)c->rec_bytes) {
        c->io_errno = r < 0 ? errno : EIO;
        return LETHE_ERR_IO;
    }
    c->read_bytes += c->rec_bytes;
    return LETHE_OK;
}

lethe_status kv_cold_put(kv_cold *c, int pi) {
    if (!c->on_disk) return LETHE_OK;
    ssize_t r = pwrite(c->fd, c->io, c->rec_bytes, rec_off(c, &c->pages[pi]));
    if (r != (ssize_t)c->rec_bytes) {
        c->io_errno = r < 0 ? errno : EIO;
        return LETHE_ERR_IO;
    }
    c->write_bytes += c->rec_bytes;
    return LETHE_OK;
}

size_t kv_cold_disk_bytes(const kv_cold *c) { return c->on_disk ? (size_t)c->n_file * c->rec_bytes : 0; }

lethe_status kv_cold_stage(kv_cold *src, const int *sel, int n, kv_cold *dst) {
    const size_t P = (size_t)src->page_slots;
    for (int i = 0; i < n; i++) {
        const kv_cold_page *s = &src->pages[sel[i]];
        kv_cold_page *d = &dst->pages[i];
        d->n = s->n;
        if (!src->on_disk) {
            memcpy(d->pos, s->pos, P * sizeof *d->pos);
            memcpy(d->k, s->k, 2 * src->block_bytes); /* k and v are adjacent */
            continue;
        }
        struct iovec iov[2] = {{d->pos, P * sizeof *d->pos}, {d->k, 2 * src->block_bytes}};
        ssize_t r = preadv(src->fd, iov, 2, rec_off(src, s));
        if (r != (ssize_t)src->rec_bytes) {
            src->io_errno = r < 0 ? errno : EIO;
            dst->n_pages = 0;
            return LETHE_ERR_IO;
        }
        src->read_bytes += src->rec_bytes;
    }
    dst->n_pages = n;
    dst->n_slots = 0;
    for (int i = 0; i < n; i++) dst->n_slots += dst->pages[i].n;
    return LETHE_OK;
}

void kv_cold_trim(kv_cold *c) {
    for (int i = c->n_pages; i < c->n_alloc; i++) {
        lt_free(c->pages[i].kmin);
        memset(&c->pages[i], 0, sizeof c->pages[i]);
    }
    c->n_alloc = c->n_pages;
    /* the file keeps its records for the pages still live: their indices
     * may be anywhere below n_file, so it is not shortened */
}

void kv_cold_free(kv_cold *c) {
    c->n_pages = 0;
    kv_cold_trim(c);
    lt_free(c->pages);
    if (!c->shared_scratch) lt_free(c->tmp);
    c->shared_scratch = false;
    c->pages = NULL;
    c->tmp = c->k = c->v = c->nk = c->nv = NULL;
    c->rpos = c->npos = NULL;
    c->rscore = c->nscore = NULL;
    c->n_pages = c->n_alloc = c->cap_pages = c->n_slots = 0;
    if (c->on_disk) close(c->fd);
    c->fd = -1;
    c->on_disk = false;
    if (!c->shared_io) lt_free(c->io);
    c->shared_io = false;
    c->io = NULL;
    c->io_score = NULL;
    c->n_file = 0;
}

static size_t bounds_bytes(const kv_cold *c) { return 2 * (size_t)c->head_dim * sizeof(uint8_t); }

/* The bounds rounded up to 8 bytes, so what follows them is aligned. */
static size_t pad_bounds(const kv_cold *c) { return (2 * (size_t)c->head_dim + 7) & ~(size_t)7; }

/* One page's RAM storage: the bounds, then (RAM tier) positions, scores
 * and the two blocks. */
static size_t page_bytes(const kv_cold *c) {
    if (c->on_disk) return bounds_bytes(c);
    return pad_bounds(c) + 2 * c->block_bytes + (size_t)c->page_slots * (sizeof(int32_t) + sizeof(float));
}

size_t kv_cold_bytes(const kv_cold *c) { return (size_t)c->n_pages * (page_bytes(c) + sizeof(kv_cold_page)); }

size_t kv_cold_bytes_reserved(const kv_cold *c) {
    size_t b = (size_t)c->n_alloc * (page_bytes(c) + sizeof(kv_cold_page));
    if (c->tmp && !c->shared_scratch) b += kv_cold_scratch_bytes(c->page_slots, c->head_dim);
    if (c->io && !c->shared_io) b += c->rec_bytes + (size_t)c->page_slots * sizeof(float);
    return b;
}

double kv_cold_slot_bytes(const kv_cold *c) { return (double)(page_bytes(c) + sizeof(kv_cold_page)) / c->page_slots; }

/* Gives page p one block of storage, laid out floats first, then the
 * quantised bytes. */
static lethe_status alloc_page(kv_cold *c, kv_cold_page *p) {
    const size_t P = (size_t)c->page_slots, hd = (size_t)c->head_dim;
    if (c->on_disk) { /* a new record at the end of the file, allocated now */
        int e = posix_fallocate(c->fd, (off_t)c->n_file * (off_t)c->rec_bytes, (off_t)c->rec_bytes);
        if (e) {
            c->io_errno = e;
            return LETHE_ERR_IO;
        }
    }
    unsigned char *b = lt_calloc(1, page_bytes(c));
    if (!b) return LETHE_ERR_NOMEM;
    memset(p, 0, sizeof *p);
    p->kmin = b;
    p->kmax = p->kmin + hd;
    if (c->on_disk) { /* every page reads through the record buffer */
        p->file_page = c->n_file++;
        p->pos = (int32_t *)c->io;
        p->k = c->io + P * sizeof(int32_t);
        p->v = p->k + c->block_bytes;
        p->score = c->io_score;
        return LETHE_OK;
    }
    p->pos = (int32_t *)(b + pad_bounds(c));
    p->score = (float *)(p->pos + P);
    p->k = (uint8_t *)(p->score + P);
    p->v = p->k + c->block_bytes;
    return LETHE_OK;
}

lethe_status kv_cold_reserve_array(kv_cold *c, int n) {
    if (n <= c->cap_pages) return LETHE_OK;
    kv_cold_page *np = lt_realloc(c->pages, (size_t)n * sizeof *np);
    if (!np) return LETHE_ERR_NOMEM;
    c->pages = np;
    c->cap_pages = n;
    return LETHE_OK;
}

lethe_status kv_cold_reserve(kv_cold *c, int n_pages_total) {
    if (n_pages_total <= c->n_alloc) return LETHE_OK;
    if (n_pages_total > c->cap_pages) {
        int cap = c->cap_pages ? c->cap_pages : 8;
        while (cap < n_pages_total) cap *= 2;
        kv_cold_page *np = lt_realloc(c->pages, (size_t)cap * sizeof *np);
        if (!np) return LETHE_ERR_NOMEM;
        c->pages = np;
        c->cap_pages = cap;
    }
    while (c->n_alloc < n_pages_total) {
        lethe_status st = alloc_page(c, &c->pages[c->n_alloc]);
        if (st) return st;
        c->n_alloc++;
    }
    return LETHE_OK;
}

int kv_cold_pages_after(const kv_cold *c, const uint8_t *keep, int n_add) {
    const int P = c->page_slots;
    int np = c->n_pages, last_n = c->n_pages ? c->pages[c->n_pages - 1].n : 0;
    if (keep) {
        /* whole-page drops keep the page layout; any partial drop repacks */
        int kept = 0, kept_pages = 0, flag = 0, last_kept_n = 0;
        bool whole = true;
        for (int pi = 0; pi < c->n_pages; pi++) {
            int k = 0, n = c->pages[pi].n;
            for (int i = 0; i < n; i++) k += keep[flag + i] != 0;
            flag += n;
            if (k != 0 && k != n) whole = false;
            if (k > 0) kept_pages++, last_kept_n = n;
            kept += k;
        }
        if (whole) {
            np = kept_pages;
            last_n = last_kept_n;
        } else {
            np = (kept + P - 1) / P;
            last_n = kept - (np - 1) * P;
        }
    }
    if (n_add <= 0) return np;
    int room = np ? P - last_n : 0;
    return n_add > room ? np + (n_add - room + P - 1) / P : np;
}

/* The value of bound code q on page p's grid (the one expression the
 * bound reads, so the rounding checks below hold for it). */
static float code_value(const kv_cold_page *p, int q) { return p->blo + (float)q * p->bstep; }

/* Codes the per-dimension minima lo[] and maxima hi[] of page p: minima
 * rounded down, maxima up, on a 256-step grid over [min lo, max hi]. */
static void code_bounds(kv_cold_page *p, const float *lo, const float *hi, int hd) {
    float L = INFINITY, H = -INFINITY;
    for (int d = 0; d < hd; d++) {
        if (lo[d] < L) L = lo[d];
        if (hi[d] > H) H = hi[d];
    }
    p->blo = L;
    p->bstep = (H - L) / 255.0f;
    while (code_value(p, 255) < H) p->bstep = nextafterf(p->bstep, INFINITY);
    for (int d = 0; d < hd; d++) {
        int a = p->bstep > 0 ? (int)floorf((lo[d] - L) / p->bstep) : 0;
        int b = p->bstep > 0 ? (int)ceilf((hi[d] - L) / p->bstep) : 0;
        a = a < 0 ? 0 : a > 255 ? 255 : a;
        b = b < 0 ? 0 : b > 255 ? 255 : b;
        while (a > 0 && code_value(p, a) > lo[d]) a--;
        while (b < 255 && code_value(p, b) < hi[d]) b++;
        p->kmin[d] = (uint8_t)a;
        p->kmax[d] = (uint8_t)b;
    }
}

void kv_cold_store_k(kv_cold *c, kv_cold_page *p, const float *k) {
    const lt_traits *tr = lt_type_traits(c->dtype);
    const int P = c->page_slots, hd = c->head_dim;
    const long block = (long)P * hd;
    for (int i = 0; i < P; i++) /* keys per channel: [dim][slot] */
        for (int d = 0; d < hd; d++) c->tmp[(long)d * P + i] = k[(long)i * hd + d];
    tr->from_float(c->tmp, p->k, block);
    /* bounds from the values as stored, so the bound holds for what is attended */
    tr->to_float(p->k, c->tmp, block);
    float *lo = c->bnd, *hi = c->bnd + hd;
    for (int d = 0; d < hd; d++) {
        float a = INFINITY, b = -INFINITY;
        for (int i = 0; i < p->n; i++) {
            float x = c->tmp[(long)d * P + i];
            if (x < a) a = x;
            if (x > b) b = x;
        }
        if (p->n == 0) a = b = 0.0f;
        lo[d] = a;
        hi[d] = b;
    }
    code_bounds(p, lo, hi, hd);
}

void kv_cold_store_v(kv_cold *c, kv_cold_page *p, const float *v) {
    lt_type_traits(c->dtype)->from_float(v, p->v, (long)c->page_slots * c->head_dim);
}

void kv_cold_load_page(const kv_cold *c, const kv_cold_page *p, float *k, float *v) {
    const lt_traits *tr = lt_type_traits(c->dtype);
    const int P = c->page_slots, hd = c->head_dim;
    const long block = (long)P * hd;
    if (k) {
        tr->to_float(p->k, c->tmp, block);
        for (int i = 0; i < P; i++)
            for (int d = 0; d < hd; d++) k[(long)i * hd + d] = c->tmp[(long)d * P + i];
    }
    if (v) tr->to_float(p->v, v, block);
}

void kv_cold_page_to_f32(const kv_cold *c, int pi, float *k, float *v, float *tmp) {
    const kv_cold_page *p = &c->pages[pi];
    const lt_traits *tr = lt_type_traits(c->dtype);
    const int P = c->page_slots, hd = c->head_dim;
    const long block = (long)P * hd;
    if (k) { /* stored per channel ([hd][P]): back to rows */
        tr->to_float(p->k, tmp, block);
        for (int i = 0; i < P; i++)
            for (int d = 0; d < hd; d++) k[(long)i * hd + d] = tmp[(long)d * P + i];
    }
    if (v) tr->to_float(p->v, v, block);
}

lethe_status kv_cold_add(kv_cold *c, const kv_pool *pool, const kv_stream *s, const int *idx, const float *score, int n) {
    if (n <= 0) return LETHE_OK;
    lethe_status st = kv_cold_reserve(c, kv_cold_pages_after(c, NULL, n));
    if (st) return st;
    lethe_status io = LETHE_OK; /* a failed disk write is reported; the slots still move */
    const int P = c->page_slots, hd = c->head_dim;
    float *k = c->k, *v = c->v;
    for (int done = 0; done < n;) {
        if (c->n_pages == 0 || c->pages[c->n_pages - 1].n == P) {
            c->pages[c->n_pages].n = 0; /* reserved above */
            c->n_pages++;
        }
        kv_cold_page *p = &c->pages[c->n_pages - 1];
        if (p->n > 0 && kv_cold_fetch(c, c->n_pages - 1)) io = LETHE_ERR_IO;
        kv_cold_load_page(c, p, k, v); /* partial page: re-quantise with the new slots */
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
        kv_cold_store_k(c, p, k);
        kv_cold_store_v(c, p, v);
        if (kv_cold_put(c, c->n_pages - 1)) io = LETHE_ERR_IO;
    }
    return io;
}

float kv_cold_bound(const kv_cold *c, int pi, const float *q, float scale) {
    const kv_cold_page *p = &c->pages[pi];
    float b = 0.0f;
    for (int d = 0; d < c->head_dim; d++) {
        float lo = q[d] * code_value(p, p->kmin[d]), hi = q[d] * code_value(p, p->kmax[d]);
        b += lo > hi ? lo : hi;
    }
    return b * scale;
}

lethe_status kv_cold_load(const kv_cold *c, const int *pages, int n, kv_pool *scratch, kv_stream *view) {
    const int hd = c->head_dim;
    lethe_status st = LETHE_OK;
    for (int i = 0; i < n && !st; i++) {
        const kv_cold_page *p = &c->pages[pages[i]];
        if (kv_cold_fetch((kv_cold *)c, pages[i])) return LETHE_ERR_IO; /* the record buffer is scratch */
        kv_cold_load_page(c, p, c->k, c->v);
        st = kv_stream_append(scratch, view, c->k, c->v, hd, hd, p->pos, p->n);
    }
    return st;
}

lethe_status kv_cold_copy(kv_cold *dst, const kv_cold *src) {
    if (dst->n_pages || dst->dtype != src->dtype || dst->page_slots != src->page_slots || dst->head_dim != src->head_dim)
        return LETHE_ERR_ARG;
    lethe_status st = kv_cold_reserve(dst, src->n_pages);
    if (st) return st;
    const size_t P = (size_t)src->page_slots, hd = (size_t)src->head_dim;
    for (int pi = 0; pi < src->n_pages; pi++) {
        kv_cold_page *d = &dst->pages[pi];
        const kv_cold_page *s = &src->pages[pi];
        if (kv_cold_fetch((kv_cold *)src, pi)) return LETHE_ERR_IO;
        d->n = s->n;
        memcpy(d->pos, s->pos, P * sizeof *d->pos);
        memcpy(d->score, s->score, P * sizeof *d->score);
        memcpy(d->kmin, s->kmin, hd * sizeof *d->kmin);
        memcpy(d->kmax, s->kmax, hd * sizeof *d->kmax);
        d->blo = s->blo;
        d->bstep = s->bstep;
        memcpy(d->k, s->k, src->block_bytes);
        memcpy(d->v, s->v, src->block_bytes);
        if (kv_cold_put(dst, pi)) return LETHE_ERR_IO;
    }
    dst->n_pages = src->n_pages;
    dst->n_slots = src->n_slots;
    return LETHE_OK;
}
