/* GGUF writer. Each metadata value is kept already encoded (its type tag
 * and payload, exactly the bytes that follow the key in the file), so
 * copying, replacing and writing are all byte moves. */
#include "format/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#define GGUF_WRITE_VERSION 3
#define GGUF_WRITE_MAX_NAME 1024
#define GGUF_WRITE_MAX_DEPTH 8

typedef struct {
    char *key;
    uint8_t *val; /* type tag (uint32) + payload */
    size_t len;
} wkv;

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    lt_type type;
    size_t bytes;
    uint64_t offset;
} wtensor;

struct lt_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    /* output */
    FILE *f;
    char *path, *tmp_path;
    size_t align;
    int64_t cur;      /* tensor being written */
    size_t cur_done;  /* its bytes written so far */
    bool failed;
};

/* ---- a growing byte buffer ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bbuf;

static void bput(bbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bput_u32(bbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bput(b, x, 4);
}

static void bput_u64(bbuf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    bput(b, x, 8);
}

static void bput_str(bbuf *b, const char *s, uint64_t n) {
    bput_u64(b, n);
    bput(b, s, (size_t)n);
}

static size_t scalar_bytes(lt_gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- metadata ---- */

lt_gguf_writer *lt_gguf_writer_new(void) {
    lt_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->align = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

static void close_output(lt_gguf_writer *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
    if (w->tmp_path) unlink(w->tmp_path);
    free(w->tmp_path);
    free(w->path);
    w->tmp_path = w->path = NULL;
}

void lt_gguf_writer_free(lt_gguf_writer *w) {
    if (!w) return;
    close_output(w);
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    free(w->kv);
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static int64_t find_kv(const lt_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return i;
    return -1;
}

int64_t lt_gguf_writer_n_kv(const lt_gguf_writer *w) { return w->n_kv; }
bool lt_gguf_writer_has_key(const lt_gguf_writer *w, const char *key) { return find_kv(w, key) >= 0; }

/* Takes ownership of the encoded value in b (freed on failure). */
static bool put_kv(lt_gguf_writer *w, const char *key, bbuf *b) {
    if (b->oom || w->f || !key || !*key) { free(b->p); return false; }
    int64_t i = find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].val = b->p;
        w->kv[i].len = b->n;
        return true;
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) { free(b->p); return false; }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(b->p); return false; }
    w->kv[w->n_kv++] = (wkv){k, b->p, b->n};
    return true;
}

static bool set_scalar(lt_gguf_writer *w, const char *key, lt_gguf_type t, const void *v) {
    bbuf b = {0};
    bput_u32(&b, (uint32_t)t);
    bput(&b, v, scalar_bytes(t));
    return put_kv(w, key, &b);
}

bool lt_gguf_set_u8(lt_gguf_writer *w, const char *key, uint8_t v) { return set_scalar(w, key, GGUF_TYPE_UINT8, &v); }
bool lt_gguf_set_i8(lt_gguf_writer *w, const char *key, int8_t v) { return set_scalar(w, key, GGUF_TYPE_INT8, &v); }
bool lt_gguf_set_u16(lt_gguf_writer *w, const char *key, uint16_t v) { return set_scalar(w, key, GGUF_TYPE_UINT16, &v); }
bool lt_gguf_set_i16(lt_gguf_writer *w, const char *key, int16_t v) { return set_scalar(w, key, GGUF_TYPE_INT16, &v); }
bool lt_gguf_set_u32(lt_gguf_writer *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_TYPE_UINT32, &v); }
bool lt_gguf_set_i32(lt_gguf_writer *w, const char *key, int32_t v) { return set_scalar(w, key, GGUF_TYPE_INT32, &v); }
bool lt_gguf_set_u64(lt_gguf_writer *w, const char *key, uint64_t v) { return set_scalar(w, key, GGUF_TYPE_UINT64, &v); }
bool lt_gguf_set_i64(lt_gguf_writer *w, const char *key, int64_t v) { return set_scalar(w, key, GGUF_TYPE_INT64, &v); }
bool lt_gguf_set_f32(lt_gguf_writer *w, const char *key, float v) { return set_scalar(w, key, GGUF_TYPE_FLOAT32, &v); }
bool lt_gguf_set_f64(lt_gguf_writer *w, const char *key, double v) { return set_scalar(w, key, GGUF_TYPE_FLOAT64, &v); }

bool lt_gguf_set_bool(lt_gguf_writer *w, const char *key, bool v) {
    uint8_t x = v ? 1 : 0;
    return set_scalar(w, key, GGUF_TYPE_BOOL, &x);
}

bool lt_gguf_set_str(lt_gguf_writer *w, const char *key, const char *s) {
    bbuf b = {0};
    bput_u32(&b, GGUF_TYPE_STRING);
    bput_str(&b, s, strlen(s));
    return put_kv(w, key, &b);
}

bool lt_gguf_set_arr(lt_gguf_writer *w, const char *key, lt_gguf_type elem, const void *data, uint64_t n) {
    size_t sz = scalar_bytes(elem);
    if (!sz || (n && !data) || n > SIZE_MAX / sz) return false;
    bbuf b = {0};
    bput_u32(&b, GGUF_TYPE_ARRAY);
    bput_u32(&b, (uint32_t)elem);
    bput_u64(&b, n);
    if (elem == GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t x = ((const uint8_t *)data)[i] ? 1 : 0;
            bput(&b, &x, 1);
        }
    } else {
        bput(&b, data, (size_t)n * sz);
    }
    return put_kv(w, key, &b);
}

bool lt_gguf_set_arr_str(lt_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    bbuf b = {0};
    bput_u32(&b, GGUF_TYPE_ARRAY);
    bput_u32(&b, GGUF_TYPE_STRING);
    bput_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) bput_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return put_kv(w, key, &b);
}

/* The payload of an array (element type, count, elements). */
static bool encode_array(bbuf *b, const lt_gguf_array *a, int depth) {
    if (depth > GGUF_WRITE_MAX_DEPTH || (unsigned)a->type >= GGUF_TYPE_COUNT) return false;
    bput_u32(b, (uint32_t)a->type);
    bput_u64(b, a->n);
    size_t sz = scalar_bytes(a->type);
    if (sz) {
        if (a->n && !a->raw) return false;
        if (a->n > SIZE_MAX / sz) return false;
        bput(b, a->raw, (size_t)a->n * sz); /* the reader's raw bytes are little-endian already */
        return true;
    }
    if (a->type == GGUF_TYPE_STRING) {
        if (a->n && !a->strs) return false;
        for (uint64_t i = 0; i < a->n; i++) bput_str(b, a->strs[i].data, a->strs[i].len);
        return true;
    }
    if (a->type != GGUF_TYPE_ARRAY || (a->n && !a->arrs)) return false;
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->arrs[i].type != GGUF_TYPE_ARRAY || !encode_array(b, &a->arrs[i].v.arr, depth + 1)) return false;
    }
    return true;
}

bool lt_gguf_set_value(lt_gguf_writer *w, const char *key, const lt_gguf_value *v) {
    bbuf b = {0};
    bool ok = true;
    bput_u32(&b, (uint32_t)v->type);
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64: {
        uint8_t x[8];
        for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v->v.u >> (8 * i));
        bput(&b, x, scalar_bytes(v->type));
        break;
    }
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: {
        uint8_t x[8];
        uint64_t u = (uint64_t)v->v.i;
        for (int i = 0; i < 8; i++) x[i] = (uint8_t)(u >> (8 * i));
        bput(&b, x, scalar_bytes(v->type));
        break;
    }
    case GGUF_TYPE_FLOAT32: { float f = (float)v->v.f; bput(&b, &f, 4); break; }
    case GGUF_TYPE_FLOAT64: { double d = v->v.f; bput(&b, &d, 8); break; }
    case GGUF_TYPE_BOOL: { uint8_t x = v->v.b ? 1 : 0; bput(&b, &x, 1); break; }
    case GGUF_TYPE_STRING: bput_str(&b, v->v.str.data, v->v.str.len); break;
    case GGUF_TYPE_ARRAY: ok = encode_array(&b, &v->v.arr, 0); break;
    default: ok = false;
    }
    if (!ok) { free(b.p); return false; }
    return put_kv(w, key, &b);
}

bool lt_gguf_remove_key(lt_gguf_writer *w, const char *key) {
    int64_t i = find_kv(w, key);
    if (i < 0 || w->f) return i < 0;
    free(w->kv[i].key);
    free(w->kv[i].val);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
    return true;
}

/* ---- tensors ---- */

bool lt_gguf_add_tensor(lt_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, lt_type type, char *err) {
    if (w->f) return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s' added after the header was written", name), false;
    size_t nlen = name ? strlen(name) : 0;
    if (!nlen || nlen > GGUF_WRITE_MAX_NAME)
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor name length %zu out of range", nlen), false;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s' has %d dimensions", name, n_dims), false;
    const lt_traits *tr = lt_type_traits_scalar(type);
    if (!tr || !tr->known)
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s' has unknown type %d", name, (int)type), false;
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return set_error(err, LETHE_ERR_ARG, "gguf write: duplicate tensor '%s'", name), false;
    wtensor t = {NULL, n_dims, {1, 1, 1, 1}, type, 0, 0};
    uint64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s': negative dimension", name), false;
        t.ne[d] = ne[d];
        if (d > 0) {
            if (ne[d] && rows > UINT64_MAX / (uint64_t)ne[d])
                return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s': size overflows", name), false;
            rows *= (uint64_t)ne[d];
        }
    }
    if (ne[0] % tr->block_size)
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                         name, (long long)ne[0], tr->name, (long long)tr->block_size), false;
    size_t row = lt_row_bytes(type, ne[0]);
    if ((ne[0] && !row) || (row && rows > SIZE_MAX / 2 / row))
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s': size overflows", name), false;
    t.bytes = row * (size_t)rows;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return set_error(err, LETHE_ERR_NOMEM, "gguf write: out of memory"), false;
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return set_error(err, LETHE_ERR_NOMEM, "gguf write: out of memory"), false;
    w->t[w->n_t++] = t;
    return true;
}

int64_t lt_gguf_writer_n_tensors(const lt_gguf_writer *w) { return w->n_t; }

size_t lt_gguf_writer_tensor_bytes(const lt_gguf_writer *w, int64_t i) {
    return i >= 0 && i < w->n_t ? w->t[i].bytes : 0;
}

/* ---- output ---- */

static size_t pad_to(uint64_t off, size_t align) { return (size_t)((align - off % align) % align); }

static bool write_bytes(lt_gguf_writer *w, const void *p, size_t n, char *err) {
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = true;
        return set_error(err, LETHE_ERR_IO, "cannot write '%s': %s", w->tmp_path, strerror(errno ? errno : EIO)), false;
    }
    return true;
}

static bool write_zeros(lt_gguf_writer *w, size_t n, char *err) {
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (!write_bytes(w, zeros, k, err)) return false;
        n -= k;
    }
    return true;
}

/* The alignment general.alignment asks for (uint32, a power of two). */
static bool pick_alignment(lt_gguf_writer *w, char *err) {
    w->align = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = find_kv(w, "general.alignment");
    if (i < 0) return true;
    const uint8_t *v = w->kv[i].val;
    uint32_t type = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
    uint32_t a = w->kv[i].len == 8 ? (uint32_t)v[4] | (uint32_t)v[5] << 8 | (uint32_t)v[6] << 16 | (uint32_t)v[7] << 24 : 0;
    if (type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)))
        return set_error(err, LETHE_ERR_ARG, "gguf write: general.alignment must be a uint32 power of two"), false;
    w->align = a;
    return true;
}

static void next_tensor(lt_gguf_writer *w) {
    while (w->cur < w->n_t && w->cur_done == w->t[w->cur].bytes) {
        w->cur++;
        w->cur_done = 0;
    }
}

bool lt_gguf_write_begin(lt_gguf_writer *w, const char *path, char *err) {
    if (w->f) return set_error(err, LETHE_ERR_ARG, "gguf write: already writing '%s'", w->path), false;
    if (!pick_alignment(w, err)) return false;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].bytes + pad_to(w->t[i].bytes, w->align);
    }
    bbuf h = {0};
    bput(&h, "GGUF", 4);
    bput_u32(&h, GGUF_WRITE_VERSION);
    bput_u64(&h, (uint64_t)w->n_t);
    bput_u64(&h, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        bput_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        bput(&h, w->kv[i].val, w->kv[i].len);
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        bput_str(&h, t->name, strlen(t->name));
        bput_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bput_u64(&h, (uint64_t)t->ne[d]);
        bput_u32(&h, (uint32_t)t->type);
        bput_u64(&h, t->offset);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    size_t pad = pad_to(h.n, w->align);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        bput(&h, zeros, k);
        pad -= k;
    }
    if (h.oom) {
        free(h.p);
        return set_error(err, LETHE_ERR_NOMEM, "gguf write: out of memory"), false;
    }
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(n + 16);
    if (!w->path || !w->tmp_path) {
        free(h.p);
        close_output(w);
        return set_error(err, LETHE_ERR_NOMEM, "gguf write: out of memory"), false;
    }
    snprintf(w->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(w->tmp_path);
    if (fd < 0) {
        set_error(err, LETHE_ERR_IO, "cannot create '%s': %s", w->tmp_path, strerror(errno));
        free(w->tmp_path);
        w->tmp_path = NULL; /* nothing to remove */
        free(h.p);
        close_output(w);
        return false;
    }
    /* mkstemp makes the file private; an output model is an ordinary file */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) { /* not fatal: the file stays private */ }
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        set_error(err, LETHE_ERR_IO, "cannot open '%s': %s", w->tmp_path, strerror(errno));
        close(fd);
        free(h.p);
        close_output(w);
        return false;
    }
    w->cur = 0;
    w->cur_done = 0;
    w->failed = false;
    bool ok = write_bytes(w, h.p, h.n, err);
    free(h.p);
    next_tensor(w);
    return ok;
}

bool lt_gguf_write_data(lt_gguf_writer *w, const void *data, size_t n, char *err) {
    if (!w->f || w->failed) return set_error(err, LETHE_ERR_ARG, "gguf write: no file being written"), false;
    const uint8_t *p = data;
    while (n) {
        next_tensor(w);
        if (w->cur >= w->n_t) {
            w->failed = true;
            return set_error(err, LETHE_ERR_ARG, "gguf write: %zu bytes of data past the last tensor", n), false;
        }
        const wtensor *t = &w->t[w->cur];
        size_t k = t->bytes - w->cur_done;
        if (k > n) k = n;
        if (!write_bytes(w, p, k, err)) return false;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->bytes && !write_zeros(w, pad_to(t->bytes, w->align), err)) return false;
    }
    next_tensor(w);
    return true;
}

bool lt_gguf_write_end(lt_gguf_writer *w, char *err) {
    if (!w->f || w->failed) return set_error(err, LETHE_ERR_ARG, "gguf write: no file being written"), false;
    next_tensor(w);
    if (w->cur < w->n_t)
        return set_error(err, LETHE_ERR_ARG, "gguf write: tensor '%s' has %zu of its %zu bytes", w->t[w->cur].name,
                         w->cur_done, w->t[w->cur].bytes), false;
    FILE *f = w->f;
    w->f = NULL;
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        set_error(err, LETHE_ERR_IO, "cannot write '%s': %s", w->tmp_path, strerror(e ? e : EIO));
        close_output(w);
        return false;
    }
    if (rename(w->tmp_path, w->path) != 0) {
        set_error(err, LETHE_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp_path, w->path, strerror(errno));
        close_output(w);
        return false;
    }
    free(w->tmp_path);
    w->tmp_path = NULL; /* renamed: nothing to remove */
    close_output(w);
    return true;
}

bool lt_gguf_write_file(lt_gguf_writer *w, const char *path, const void *const *data, char *err) {
    if (!lt_gguf_write_begin(w, path, err)) return false;
    for (int64_t i = 0; i < w->n_t; i++)
        if (!lt_gguf_write_data(w, data[i], w->t[i].bytes, err)) {
            close_output(w);
            return false;
        }
    return lt_gguf_write_end(w, err);
}
