/* GGUF reader (versions 2 and 3).
 *
 * The file is mapped read-only; metadata strings and tensor data are views
 * into the mapping, never copies. lt_gguf_open() validates everything before
 * returning: every count, length, dimension, offset and byte size is checked
 * against the file size and for overflow, so a caller may use any view it
 * gets without further checks. Knows nothing about transformers. */
#ifndef LETHE_GGUF_H
#define LETHE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lethe.h"
#include "tensor/types.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} lt_gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the mapping: len bytes, NOT NUL-terminated. */
typedef struct {
    const char *data;
    uint64_t len;
} lt_gguf_str;

typedef struct lt_gguf_value lt_gguf_value;

typedef struct {
    lt_gguf_type type;  /* element type */
    uint64_t n;      /* element count */
    const void *raw; /* fixed-size scalar elements: little-endian, unaligned, inside the mapping */
    lt_gguf_str *strs;  /* type STRING: n views */
    lt_gguf_value *arrs;/* type ARRAY: n nested arrays (each a lt_gguf_value of type ARRAY) */
} lt_gguf_array;

struct lt_gguf_value {
    lt_gguf_type type;
    union {
        uint64_t u;  /* all unsigned integer types */
        int64_t i;   /* all signed integer types */
        double f;    /* FLOAT32 / FLOAT64 */
        bool b;
        lt_gguf_str str;
        lt_gguf_array arr;
    } v;
};

typedef struct {
    lt_gguf_str key;
    lt_gguf_value value;
} lt_gguf_kv;

typedef struct {
    lt_gguf_str name;
    char *cname;           /* NUL-terminated copy of name for convenience */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] = innermost (row length); unused dims are 1 */
    int type;              /* lt_type id as stored (may be a known but unsupported type) */
    uint64_t offset;       /* relative to the data section */
    uint64_t n_elements;
    size_t n_bytes;
    const void *data;      /* inside the mapping */
} lt_gguf_tensor;

typedef struct lt_gguf_file lt_gguf_file;

/* True when the file at path starts with the GGUF magic (false when it
 * cannot be read): how callers choose between GGUF and other formats. */
bool lt_gguf_has_magic(const char *path);

/* Maps and validates a file. Returns NULL and a message in err (size
 * LETHE_ERR_MAX, may be NULL) on failure; *status gets the reason when
 * status is non-NULL. */
lt_gguf_file *lt_gguf_open(const char *path, char *err, lethe_status *status);
/* Same over a caller-owned buffer, which must outlive the result (tests). */
lt_gguf_file *lt_gguf_open_memory(const void *data, size_t size, char *err, lethe_status *status);
void lt_gguf_close(lt_gguf_file *f);
/* Makes a file's private mapping writable, so that tensor data can be
 * rewritten in place (the file itself never changes); -1 for a file opened
 * from memory or when the kernel refuses. The bytes move to anonymous memory
 * on transparent huge pages where the kernel allows (LETHE_HUGE=0: the
 * file's 4 KiB pages, copied on write): rewritten pages are the process's
 * own either way, and decode, which streams every weight once per token,
 * runs faster when the hardware prefetchers need not stop at each 4 KiB
 * page boundary. */
int lt_gguf_make_writable(lt_gguf_file *f);

/* Moves a mapped file's bytes into anonymous memory at the same address
 * (every pointer into the file stays valid), asking for transparent huge
 * pages; the memory is then writable. 0 when moved; -1 (a file opened from
 * memory, LETHE_HUGE=0, or the kernel refuses) leaves the mapping as it
 * was. */
int lt_gguf_move_to_huge_pages(lt_gguf_file *f);

uint32_t lt_gguf_version(const lt_gguf_file *f);
size_t lt_gguf_alignment(const lt_gguf_file *f);
uint64_t lt_gguf_data_offset(const lt_gguf_file *f);
size_t lt_gguf_file_size(const lt_gguf_file *f);

/* Metadata. */
int64_t lt_gguf_n_kv(const lt_gguf_file *f);
const lt_gguf_kv *lt_gguf_kv_at(const lt_gguf_file *f, int64_t i);
/* Index of a key, or -1. */
int64_t lt_gguf_find_key(const lt_gguf_file *f, const char *key);
const lt_gguf_value *lt_gguf_get(const lt_gguf_file *f, const char *key);
/* Typed getters: false when absent or of an incompatible type. Integers of
 * any width convert when the value fits; floats accept FLOAT32/FLOAT64. */
bool lt_gguf_get_u32(const lt_gguf_file *f, const char *key, uint32_t *out);
bool lt_gguf_get_i64(const lt_gguf_file *f, const char *key, int64_t *out);
bool lt_gguf_get_f32(const lt_gguf_file *f, const char *key, float *out);
bool lt_gguf_get_bool(const lt_gguf_file *f, const char *key, bool *out);
bool lt_gguf_get_str(const lt_gguf_file *f, const char *key, lt_gguf_str *out);
/* Array getter: false unless the key holds an array. */
const lt_gguf_array *lt_gguf_get_arr(const lt_gguf_file *f, const char *key);
/* Element i of a fixed-size numeric array, converted. */
double lt_gguf_arr_f64(const lt_gguf_array *a, uint64_t i);
/* Element i as an integer: false unless it is a whole number that fits
 * int64 (a float that is non-finite, fractional or out of range, or a
 * uint64 above INT64_MAX, does not). */
bool lt_gguf_arr_int(const lt_gguf_array *a, uint64_t i, int64_t *out);
/* As lt_gguf_arr_int, with 0 for an element that does not convert. */
int64_t lt_gguf_arr_i64(const lt_gguf_array *a, uint64_t i);

/* Copies a lt_gguf_str into buf as a C string (truncating); returns buf. */
char *lt_gguf_str_copy(lt_gguf_str s, char *buf, size_t cap);
/* True when s equals the C string c. */
bool lt_gguf_str_eq(lt_gguf_str s, const char *c);

const char *lt_gguf_type_name(lt_gguf_type t);

/* Tensors. */
int64_t lt_gguf_n_tensors(const lt_gguf_file *f);
const lt_gguf_tensor *lt_gguf_tensor_at(const lt_gguf_file *f, int64_t i);
const lt_gguf_tensor *lt_gguf_find_tensor(const lt_gguf_file *f, const char *name);

#endif
