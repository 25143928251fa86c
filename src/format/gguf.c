/* GGUF reader. Parsing is a bounded cursor over the mapped bytes: every read
 * checks the remaining length first, and every count is checked against the
 * bytes left before anything is allocated for it, so a hostile header cannot
 * make us allocate more than the file could describe. */
#include "format/gguf.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf_index.h"
#include "util/alloc.h"
#include "util/checked.h"
#include "util/error.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_ARRAY_DEPTH 8
#define GGUF_MAX_NAME 1024

struct lt_gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;
    int64_t n_kv;
    lt_gguf_kv *kv;
    int64_t n_tensors;
    lt_gguf_tensor *tensors;
    lt_gguf_name_ref *key_index;    /* sorted keys: look-ups in O(log n) */
    lt_gguf_name_ref *tensor_index; /* sorted tensor names */
};

typedef struct {
    const uint8_t *p;
    size_t left;
    size_t start_size;
    char *err;
    lethe_status status;
} cursor;

static size_t cur_offset(const cursor *c) { return c->start_size - c->left; }

static bool fail(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(cursor *c, const char *fmt, ...) {
    if (c->err) {
        char msg[LETHE_ERR_MAX - 64];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(c->err, LETHE_ERR_MAX, "gguf: %s (at byte %zu)", msg, cur_offset(c));
    }
    c->status = LETHE_ERR_FORMAT;
    return false;
}

static bool take(cursor *c, size_t n, const uint8_t **out, const char *what) {
    *out = NULL;
    if (n > c->left) return fail(c, "file truncated while reading %s (need %zu bytes, %zu left)", what, n, c->left);
    *out = c->p;
    c->p += n;
    c->left -= n;
    return true;
}

static uint64_t le_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t le_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static bool read_u32(cursor *c, uint32_t *v, const char *what) {
    const uint8_t *p;
    if (!take(c, 4, &p, what)) return false;
    *v = le_u32(p);
    return true;
}

static bool read_u64(cursor *c, uint64_t *v, const char *what) {
    const uint8_t *p;
    if (!take(c, 8, &p, what)) return false;
    *v = le_u64(p);
    return true;
}

static bool read_str(cursor *c, lt_gguf_str *s, const char *what) {
    uint64_t len;
    const uint8_t *p;
    if (!read_u64(c, &len, what)) return false;
    if (len > c->left) return fail(c, "%s: string length %llu runs past the end of the file", what, (unsigned long long)len);
    if (!take(c, (size_t)len, &p, what)) return false;
    s->data = (const char *)p;
    s->len = len;
    return true;
}

static size_t scalar_size(lt_gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Decodes one fixed-size scalar at p into v (already known to be in range). */
static void decode_scalar(lt_gguf_type t, const uint8_t *p, lt_gguf_value *v) {
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: v->v.u = p[0]; break;
    case GGUF_TYPE_INT8: v->v.i = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: v->v.b = p[0] != 0; break;
    case GGUF_TYPE_UINT16: v->v.u = le_u16(p); break;
    case GGUF_TYPE_INT16: v->v.i = (int16_t)le_u16(p); break;
    case GGUF_TYPE_UINT32: v->v.u = le_u32(p); break;
    case GGUF_TYPE_INT32: v->v.i = (int32_t)le_u32(p); break;
    case GGUF_TYPE_UINT64: v->v.u = le_u64(p); break;
    case GGUF_TYPE_INT64: v->v.i = (int64_t)le_u64(p); break;
    case GGUF_TYPE_FLOAT32: { uint32_t b = le_u32(p); float f; memcpy(&f, &b, 4); v->v.f = f; break; }
    case GGUF_TYPE_FLOAT64: { uint64_t b = le_u64(p); double d; memcpy(&d, &b, 8); v->v.f = d; break; }
    default: break;
    }
}

static void free_value(lt_gguf_value *v);

static void free_array(lt_gguf_array *a) {
    free(a->strs);
    if (a->arrs) {
        for (uint64_t i = 0; i < a->n; i++) free_value(&a->arrs[i]);
        free(a->arrs);
    }
    a->strs = NULL;
    a->arrs = NULL;
}

static void free_value(lt_gguf_value *v) {
    if (v->type == GGUF_TYPE_ARRAY) free_array(&v->v.arr);
}

static bool read_value(cursor *c, lt_gguf_type type, lt_gguf_value *v, int depth, const char *key);

static bool read_array(cursor *c, lt_gguf_value *v, int depth, const char *key) {
    uint32_t et;
    uint64_t n;
    lt_gguf_array *a = &v->v.arr;
    v->type = GGUF_TYPE_ARRAY;
    memset(a, 0, sizeof *a);
    if (depth >= GGUF_MAX_ARRAY_DEPTH) return fail(c, "key '%s': arrays nested deeper than %d", key, GGUF_MAX_ARRAY_DEPTH);
    if (!read_u32(c, &et, "array element type")) return false;
    if (et >= GGUF_TYPE_COUNT) return fail(c, "key '%s': unknown array element type %u", key, et);
    if (!read_u64(c, &n, "array length")) return false;
    a->type = (lt_gguf_type)et;
    /* The smallest encoding of one element bounds how many can fit. */
    size_t min_elem = scalar_size(a->type);
    if (a->type == GGUF_TYPE_STRING) min_elem = 8;
    if (a->type == GGUF_TYPE_ARRAY) min_elem = 12;
    if (n > c->left / min_elem) return fail(c, "key '%s': array of %llu elements runs past the end of the file", key, (unsigned long long)n);
    a->n = n;
    if (scalar_size(a->type)) {
        const uint8_t *p;
        if (!take(c, (size_t)n * min_elem, &p, "array data")) return false;
        if (a->type == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (p[i] > 1) return fail(c, "key '%s': bool array element %llu is %u", key, (unsigned long long)i, p[i]);
        a->raw = p;
        return true;
    }
    if (a->type == GGUF_TYPE_STRING) {
        a->strs = calloc(n ? (size_t)n : 1, sizeof *a->strs);
        if (!a->strs) { c->status = LETHE_ERR_NOMEM; return false; }
        for (uint64_t i = 0; i < n; i++)
            if (!read_str(c, &a->strs[i], "array string")) return false;
        return true;
    }
    a->arrs = calloc(n ? (size_t)n : 1, sizeof *a->arrs);
    if (!a->arrs) { c->status = LETHE_ERR_NOMEM; return false; }
    for (uint64_t i = 0; i < n; i++)
        if (!read_value(c, GGUF_TYPE_ARRAY, &a->arrs[i], depth + 1, key)) {
            a->n = i + 1; /* free what was read, including the partial element */
            return false;
        }
    return true;
}

static bool read_value(cursor *c, lt_gguf_type type, lt_gguf_value *v, int depth, const char *key) {
    size_t sz = scalar_size(type);
    v->type = type;
    if (sz) {
        const uint8_t *p;
        if (!take(c, sz, &p, "value")) return false;
        if (type == GGUF_TYPE_BOOL && p[0] > 1) return fail(c, "key '%s': bool value %u", key, p[0]);
        decode_scalar(type, p, v);
        return true;
    }
    if (type == GGUF_TYPE_STRING) return read_str(c, &v->v.str, "string value");
    if (type == GGUF_TYPE_ARRAY) return read_array(c, v, depth, key);
    return fail(c, "key '%s': unknown value type %d", key, (int)type);
}

bool lt_gguf_str_eq(lt_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.data, c, n) == 0;
}

char *lt_gguf_str_copy(lt_gguf_str s, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.data, n);
    buf[n] = 0;
    return buf;
}

/* Sorts the n names into a fresh index (*out); a duplicate is an error
 * naming it. Sorting keeps hostile files with many entries O(n log n). */
static bool build_index(cursor *c, lt_gguf_name_ref **out, int64_t n, const lt_gguf_str *first, size_t stride, const char *what) {
    lt_gguf_name_ref *refs = malloc((n ? (size_t)n : 1) * sizeof *refs);
    if (!refs) { c->status = LETHE_ERR_NOMEM; return false; }
    for (int64_t i = 0; i < n; i++) {
        const lt_gguf_str *s = (const lt_gguf_str *)((const char *)first + (size_t)i * stride);
        refs[i] = (lt_gguf_name_ref){s->data, s->len, i};
    }
    *out = refs;
    int64_t d = lt_gguf_names_sort(refs, n);
    if (d < 0) return true;
    char name[128];
    lt_gguf_str dup = {refs[d].data, refs[d].len};
    int64_t i0 = refs[d].idx < refs[d + 1].idx ? refs[d].idx : refs[d + 1].idx;
    int64_t i1 = refs[d].idx < refs[d + 1].idx ? refs[d + 1].idx : refs[d].idx;
    return fail(c, "duplicate %s '%s' (entries %lld and %lld)", what, lt_gguf_str_copy(dup, name, sizeof name), (long long)i0,
                (long long)i1);
}

static bool parse_kv(cursor *c, lt_gguf_file *f, uint64_t n_kv) {
    /* a key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes */
    if (n_kv > c->left / 13) return fail(c, "metadata count %llu is larger than the file could hold", (unsigned long long)n_kv);
    f->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *f->kv);
    if (!f->kv) { c->status = LETHE_ERR_NOMEM; return false; }
    for (uint64_t i = 0; i < n_kv; i++) {
        lt_gguf_kv *kv = &f->kv[i];
        uint32_t type;
        char key[128];
        if (!read_str(c, &kv->key, "metadata key")) return false;
        if (kv->key.len == 0) return fail(c, "metadata key %llu is empty", (unsigned long long)i);
        lt_gguf_str_copy(kv->key, key, sizeof key);
        if (!read_u32(c, &type, "metadata value type")) return false;
        if (type >= GGUF_TYPE_COUNT) return fail(c, "key '%s': unknown value type %u", key, type);
        f->n_kv = (int64_t)i + 1; /* so cleanup frees this value even if it is partial */
        if (!read_value(c, (lt_gguf_type)type, &kv->value, 0, key)) return false;
    }
    f->n_kv = (int64_t)n_kv;
    return build_index(c, &f->key_index, f->n_kv, &f->kv[0].key, sizeof f->kv[0], "metadata key");
}

static bool parse_tensor_infos(cursor *c, lt_gguf_file *f, uint64_t n_tensors) {
    /* name length 8 + n_dims 4 + type 4 + offset 8 at least */
    if (n_tensors > c->left / 24) return fail(c, "tensor count %llu is larger than the file could hold", (unsigned long long)n_tensors);
    f->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors) { c->status = LETHE_ERR_NOMEM; return false; }
    for (uint64_t i = 0; i < n_tensors; i++) {
        lt_gguf_tensor *t = &f->tensors[i];
        uint32_t n_dims, type;
        f->n_tensors = (int64_t)i + 1;
        if (!read_str(c, &t->name, "tensor name")) return false;
        if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME) return fail(c, "tensor %llu: name length %llu out of range", (unsigned long long)i, (unsigned long long)t->name.len);
        t->cname = malloc((size_t)t->name.len + 1);
        if (!t->cname) { c->status = LETHE_ERR_NOMEM; return false; }
        lt_gguf_str_copy(t->name, t->cname, (size_t)t->name.len + 1);
        if (strlen(t->cname) != t->name.len) return fail(c, "tensor %llu: name contains a NUL byte", (unsigned long long)i);
        if (!read_u32(c, &n_dims, "tensor dimension count")) return false;
        if (n_dims == 0 || n_dims > GGUF_MAX_DIMS) return fail(c, "tensor '%s': %u dimensions (1..%d allowed)", t->cname, n_dims, GGUF_MAX_DIMS);
        t->n_dims = n_dims;
        uint64_t n_el = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if (!read_u64(c, &ne, "tensor dimension")) return false;
            if (ne > (uint64_t)INT64_MAX) return fail(c, "tensor '%s': dimension %u is negative", t->cname, d);
            if (!mul_u64(n_el, ne, &n_el) || n_el > (uint64_t)INT64_MAX)
                return fail(c, "tensor '%s': element count overflows", t->cname);
            t->ne[d] = (int64_t)ne;
        }
        t->n_elements = n_el;
        if (!read_u32(c, &type, "tensor type")) return false;
        const lt_traits *tr = lt_type_traits((lt_type)type);
        if (type >= LT_TYPE_COUNT || !tr || !tr->known)
            return fail(c, "tensor '%s': unknown tensor type %u", t->cname, type);
        t->type = (int)type;
        if (t->ne[0] % tr->block_size != 0)
            return fail(c, "tensor '%s': row length %lld is not a multiple of the %s block size %lld", t->cname,
                        (long long)t->ne[0], tr->name, (long long)tr->block_size);
        uint64_t bytes;
        if (!mul_u64(n_el / (uint64_t)tr->block_size, tr->block_bytes, &bytes) || bytes > SIZE_MAX)
            return fail(c, "tensor '%s': byte size overflows", t->cname);
        t->n_bytes = (size_t)bytes;
        if (!read_u64(c, &t->offset, "tensor data offset")) return false;
    }
    f->n_tensors = (int64_t)n_tensors;
    return build_index(c, &f->tensor_index, f->n_tensors, &f->tensors[0].name, sizeof f->tensors[0], "tensor name");
}

static bool check_alignment(cursor *c, lt_gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = lt_gguf_find_key(f, "general.alignment");
    if (i < 0) return true;
    const lt_gguf_value *v = &f->kv[i].value;
    if (v->type != GGUF_TYPE_UINT32) return fail(c, "general.alignment has type %s, expected uint32", lt_gguf_type_name(v->type));
    if (v->v.u == 0 || (v->v.u & (v->v.u - 1)) != 0) return fail(c, "general.alignment %llu is not a power of two", (unsigned long long)v->v.u);
    f->alignment = (size_t)v->v.u;
    return true;
}

static bool place_tensors(cursor *c, lt_gguf_file *f) {
    uint64_t off = cur_offset(c);
    uint64_t pad = (f->alignment - off % f->alignment) % f->alignment;
    if (!add_u64(off, pad, &f->data_offset)) return fail(c, "data offset overflows");
    if (f->n_tensors == 0) {
        if (f->data_offset > f->size) f->data_offset = f->size; /* vocab-only files may end unpadded */
        return true;
    }
    if (f->data_offset > f->size) return fail(c, "tensor data section starts past the end of the file");
    uint64_t data_size = f->size - f->data_offset;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        lt_gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (t->offset % f->alignment != 0)
            return fail(c, "tensor '%s': data offset %llu is not aligned to %zu", t->cname, (unsigned long long)t->offset, f->alignment);
        if (!add_u64(t->offset, t->n_bytes, &end) || end > data_size)
            return fail(c, "tensor '%s': data [%llu, +%zu) lies outside the data section of %llu bytes", t->cname,
                        (unsigned long long)t->offset, t->n_bytes, (unsigned long long)data_size);
        t->data = f->base + f->data_offset + t->offset;
    }
    /* Overlapping tensors would mean a corrupt table (empty ones occupy nothing). */
    lt_gguf_span *spans = malloc((size_t)f->n_tensors * sizeof *spans);
    if (!spans) { c->status = LETHE_ERR_NOMEM; return false; }
    int64_t n = 0, a = 0, b = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].n_bytes) spans[n++] = (lt_gguf_span){f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].n_bytes, i};
    bool ok = lt_gguf_spans_overlap(spans, n, &a, &b) != 0;
    free(spans);
    if (!ok) return fail(c, "tensors '%s' and '%s' overlap", f->tensors[a].cname, f->tensors[b].cname);
    return true;
}

static lt_gguf_file *parse(lt_gguf_file *f, char *err, lethe_status *status) {
    cursor c = {f->base, f->size, f->size, err, LETHE_OK};
    const uint8_t *magic = NULL;
    uint64_t n_tensors, n_kv;
    bool ok = take(&c, 4, &magic, "magic");
    if (ok && memcmp(magic, GGUF_MAGIC, 4) != 0) ok = fail(&c, "bad magic: not a GGUF file");
    if (ok) ok = read_u32(&c, &f->version, "version");
    if (ok && f->version != 2 && f->version != 3) {
        /* a byte-swapped (big-endian) file reads as a huge version */
        ok = fail(&c, "unsupported version %u (lethe reads GGUF v2 and v3, little-endian)", f->version);
        c.status = LETHE_ERR_UNSUPPORTED;
    }
    if (ok) ok = read_u64(&c, &n_tensors, "tensor count");
    if (ok) ok = read_u64(&c, &n_kv, "metadata count");
    if (ok) ok = parse_kv(&c, f, n_kv);
    if (ok) ok = check_alignment(&c, f);
    if (ok) ok = parse_tensor_infos(&c, f, n_tensors);
    if (ok) ok = place_tensors(&c, f);
    if (!ok) {
        if (status) *status = c.status == LETHE_OK ? LETHE_ERR_FORMAT : c.status;
        if (err && c.status == LETHE_ERR_NOMEM) set_error(err, LETHE_ERR_NOMEM, "gguf: out of memory while reading the header");
        lt_gguf_close(f);
        return NULL;
    }
    if (status) *status = LETHE_OK;
    return f;
}

/* O_NONBLOCK: opening a named pipe must not wait for a writer; only
 * regular files are read. */
bool lt_gguf_has_magic(const char *path) {
    char magic[4] = {0};
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, magic, 4) : -1;
    close(fd);
    return n == 4 && memcmp(magic, GGUF_MAGIC, 4) == 0;
}

lt_gguf_file *lt_gguf_open_memory(const void *data, size_t size, char *err, lethe_status *status) {
    lt_gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        if (status) *status = LETHE_ERR_NOMEM;
        set_error(err, LETHE_ERR_NOMEM, "gguf: out of memory");
        return NULL;
    }
    f->base = data;
    f->size = size;
    return parse(f, err, status);
}

lt_gguf_file *lt_gguf_open(const char *path, char *err, lethe_status *status) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block */
    if (fd < 0) {
        if (status) *status = LETHE_ERR_IO;
        set_error(err, LETHE_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        if (status) *status = LETHE_ERR_IO;
        set_error(err, LETHE_ERR_IO, "'%s' is %s, not a regular file", path, S_ISDIR(st.st_mode) ? "a directory" : "a pipe, device or socket");
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            if (status) *status = LETHE_ERR_IO;
            set_error(err, LETHE_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
            return NULL;
        }
    }
    close(fd);
    lt_gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        if (map) munmap(map, size);
        if (status) *status = LETHE_ERR_NOMEM;
        set_error(err, LETHE_ERR_NOMEM, "gguf: out of memory");
        return NULL;
    }
    f->base = map;
    f->size = size;
    f->mapped = map != NULL;
    return parse(f, err, status);
}

/* The new region is placed at the file's address modulo 2 MiB, so that the
 * move (page tables only) keeps whole huge pages. */
int lt_gguf_move_to_huge_pages(lt_gguf_file *f) {
#ifdef MREMAP_FIXED
    if (!f || !f->mapped || !lt_huge_pages_enabled()) return -1;
    const size_t huge = (size_t)2 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t len = (f->size + page - 1) / page * page, off = (uintptr_t)f->base & (huge - 1);
    uint8_t *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return -1;
    uint8_t *dst = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1)) + off;
    if (dst >= raw + huge) dst -= huge;
    lt_advise_huge(dst, len);
    memcpy(dst, f->base, f->size);
    if (mremap(dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)f->base) == MAP_FAILED) {
        munmap(raw, len + huge);
        return -1;
    }
    if (dst > raw) munmap(raw, (size_t)(dst - raw));
    if (raw + huge > dst) munmap(dst + len, (size_t)(raw + huge - dst));
    return 0;
#else
    (void)f;
    return -1;
#endif
}

int lt_gguf_make_writable(lt_gguf_file *f) {
    if (!f || !f->mapped) return -1;
    if (lt_gguf_move_to_huge_pages(f) == 0) return 0;
    return mprotect((void *)f->base, f->size, PROT_READ | PROT_WRITE) == 0 ? 0 : -1;
}

void lt_gguf_close(lt_gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (int64_t i = 0; i < f->n_kv; i++) free_value(&f->kv[i].value);
    free(f->kv);
    if (f->tensors)
        for (int64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].cname);
    free(f->tensors);
    free(f->key_index);
    free(f->tensor_index);
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f);
}

uint32_t lt_gguf_version(const lt_gguf_file *f) { return f->version; }
size_t lt_gguf_alignment(const lt_gguf_file *f) { return f->alignment; }
uint64_t lt_gguf_data_offset(const lt_gguf_file *f) { return f->data_offset; }
size_t lt_gguf_file_size(const lt_gguf_file *f) { return f->size; }
int64_t lt_gguf_n_kv(const lt_gguf_file *f) { return f->n_kv; }
const lt_gguf_kv *lt_gguf_kv_at(const lt_gguf_file *f, int64_t i) { return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL; }
int64_t lt_gguf_n_tensors(const lt_gguf_file *f) { return f->n_tensors; }
const lt_gguf_tensor *lt_gguf_tensor_at(const lt_gguf_file *f, int64_t i) { return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL; }

int64_t lt_gguf_find_key(const lt_gguf_file *f, const char *key) {
    return f->key_index ? lt_gguf_names_find(f->key_index, f->n_kv, key, strlen(key)) : -1;
}

const lt_gguf_value *lt_gguf_get(const lt_gguf_file *f, const char *key) {
    int64_t i = lt_gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i].value;
}

static bool is_unsigned(lt_gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}
static bool is_signed(lt_gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

bool lt_gguf_get_i64(const lt_gguf_file *f, const char *key, int64_t *out) {
    const lt_gguf_value *v = lt_gguf_get(f, key);
    if (!v) return false;
    if (is_unsigned(v->type)) {
        if (v->v.u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->v.u;
        return true;
    }
    if (is_signed(v->type)) {
        *out = v->v.i;
        return true;
    }
    return false;
}

bool lt_gguf_get_u32(const lt_gguf_file *f, const char *key, uint32_t *out) {
    int64_t x;
    if (!lt_gguf_get_i64(f, key, &x) || x < 0 || x > (int64_t)UINT32_MAX) return false;
    *out = (uint32_t)x;
    return true;
}

bool lt_gguf_get_f32(const lt_gguf_file *f, const char *key, float *out) {
    const lt_gguf_value *v = lt_gguf_get(f, key);
    if (!v || (v->type != GGUF_TYPE_FLOAT32 && v->type != GGUF_TYPE_FLOAT64)) return false;
    *out = (float)v->v.f;
    return true;
}

bool lt_gguf_get_bool(const lt_gguf_file *f, const char *key, bool *out) {
    const lt_gguf_value *v = lt_gguf_get(f, key);
    if (!v || v->type != GGUF_TYPE_BOOL) return false;
    *out = v->v.b;
    return true;
}

bool lt_gguf_get_str(const lt_gguf_file *f, const char *key, lt_gguf_str *out) {
    const lt_gguf_value *v = lt_gguf_get(f, key);
    if (!v || v->type != GGUF_TYPE_STRING) return false;
    *out = v->v.str;
    return true;
}

const lt_gguf_array *lt_gguf_get_arr(const lt_gguf_file *f, const char *key) {
    const lt_gguf_value *v = lt_gguf_get(f, key);
    return v && v->type == GGUF_TYPE_ARRAY ? &v->v.arr : NULL;
}

double lt_gguf_arr_f64(const lt_gguf_array *a, uint64_t i) {
    lt_gguf_value v;
    size_t sz = scalar_size(a->type);
    if (!sz || i >= a->n) return 0.0;
    decode_scalar(a->type, (const uint8_t *)a->raw + i * sz, &v);
    if (is_unsigned(a->type)) return (double)v.v.u;
    if (is_signed(a->type)) return (double)v.v.i;
    if (a->type == GGUF_TYPE_BOOL) return v.v.b;
    return v.v.f;
}

/* A float converts only when the conversion is defined and exact. */
static bool whole_i64(double d, int64_t *out) {
    if (!isfinite(d) || d != trunc(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
    *out = (int64_t)d;
    return true;
}

bool lt_gguf_arr_int(const lt_gguf_array *a, uint64_t i, int64_t *out) {
    lt_gguf_value v;
    size_t sz = scalar_size(a->type);
    if (!sz || i >= a->n) return false;
    decode_scalar(a->type, (const uint8_t *)a->raw + i * sz, &v);
    if (is_unsigned(a->type)) {
        if (v.v.u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v.v.u;
        return true;
    }
    if (is_signed(a->type)) { *out = v.v.i; return true; }
    if (a->type == GGUF_TYPE_BOOL) { *out = v.v.b; return true; }
    return whole_i64(v.v.f, out);
}

int64_t lt_gguf_arr_i64(const lt_gguf_array *a, uint64_t i) {
    int64_t x;
    return lt_gguf_arr_int(a, i, &x) ? x : 0;
}

const char *lt_gguf_type_name(lt_gguf_type t) {
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

const lt_gguf_tensor *lt_gguf_find_tensor(const lt_gguf_file *f, const char *name) {
    int64_t i = f->tensor_index ? lt_gguf_names_find(f->tensor_index, f->n_tensors, name, strlen(name)) : -1;
    return i < 0 ? NULL : &f->tensors[i];
}
