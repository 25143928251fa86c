/* GGUF reader (versions 2 and 3).
 *
 * The file is mapped read-only; metadata strings and tensor data are views
 * into the mapping, never copies. gguf_open() validates everything before
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
} gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the mapping: len bytes, NOT NUL-terminated. */
typedef struct {
    const char *data;
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;

typedef struct {
    gguf_type type;  /* element type */
    uint64_t n;      /* element count */
    const void *raw; /* fixed-size scalar elements: little-endian, unaligned, inside the mapping */
    gguf_str *strs;  /* type STRING: n views */
    gguf_value *arrs;/* type ARRAY: n nested arrays (each a gguf_value of type ARRAY) */
} gguf_array;

struct gguf_value {
    gguf_type type;
    union {
        uint64_t u;  /* all unsigned integer types */
        int64_t i;   /* all signed integer types */
        double f;    /* FLOAT32 / FLOAT64 */
        bool b;
        gguf_str str;
        gguf_array arr;
    } v;
};

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_str name;
    char *cname;           /* NUL-terminated copy of name for convenience */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] = innermost (row length); unused dims are 1 */
    int type;              /* lt_type id as stored (may be a known but unsupported type) */
    uint64_t offset;       /* relative to the data section */
    uint64_t n_elements;
    size_t n_bytes;
    const void *data;      /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* True when the file at path starts with the GGUF magic (false when it
 * cannot be read): how callers choose between GGUF and other formats. */
bool gguf_has_magic(const char *path);

/* Maps and validates a file. Returns NULL and a message in err (size
 * LETHE_ERR_MAX, may be NULL) on failure; *status gets the reason when
 * status is non-NULL. */
gguf_file *gguf_open(const char *path, char *err, lethe_status *status);
/* Same over a caller-owned buffer, which must outlive the result (tests). */
gguf_file *gguf_open_memory(const void *data, size_t size, char *err, lethe_status *status);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);

/* Metadata. */
int64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
/* Index of a key, or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);
const gguf_value *gguf_get(const gguf_file *f, const char *key);
/* Typed getters: false when absent or of an incompatible type. Integers of
 * any width convert when the value fits; floats accept FLOAT32/FLOAT64. */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Array getter: false unless the key holds an array. */
const gguf_array *gguf_get_arr(const gguf_file *f, const char *key);
/* Element i of a fixed-size numeric array, converted. */
double gguf_arr_f64(const gguf_array *a, uint64_t i);
/* Element i as an integer: false unless it is a whole number that fits
 * int64 (a float that is non-finite, fractional or out of range, or a
 * uint64 above INT64_MAX, does not). */
bool gguf_arr_int(const gguf_array *a, uint64_t i, int64_t *out);
/* As gguf_arr_int, with 0 for an element that does not convert. */
int64_t gguf_arr_i64(const gguf_array *a, uint64_t i);

/* Copies a gguf_str into buf as a C string (truncating); returns buf. */
char *gguf_str_copy(gguf_str s, char *buf, size_t cap);
/* True when s equals the C string c. */
bool gguf_str_eq(gguf_str s, const char *c);

const char *gguf_type_name(gguf_type t);

/* Tensors. */
int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

#endif
