/* GGUF writer (version 3, little-endian), the counterpart of gguf.h.
 *
 * Build the metadata and the tensor table first, then stream the tensor
 * data: lt_gguf_write_begin() writes the header into a temporary file beside
 * the destination, lt_gguf_write_data() appends tensor data in table order
 * (the padding between tensors is added here), and lt_gguf_write_end()
 * checks that every tensor is complete, closes the file and renames it over
 * the destination. A writer freed before lt_gguf_write_end() succeeded
 * removes its temporary file, so a failed write never leaves a partial file
 * under the destination name.
 *
 * Tensor data offsets are multiples of the alignment: general.alignment when
 * it is set (as uint32, a power of two), else 32 (GGUF's default). Every
 * function that can fail returns false and writes a message into err (size
 * LETHE_ERR_MAX, may be NULL); nothing here aborts. */
#ifndef LETHE_GGUF_WRITE_H
#define LETHE_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "tensor/types.h"

typedef struct lt_gguf_writer lt_gguf_writer;

lt_gguf_writer *lt_gguf_writer_new(void);
/* Frees everything; an unfinished output file is removed. NULL is fine. */
void lt_gguf_writer_free(lt_gguf_writer *w);

/* Metadata. Setting a key that exists replaces its value where it stands
 * (the order of keys is kept); a new key goes at the end. False only when
 * memory runs out, or (lt_gguf_set_value) for a value the reader could not
 * have produced. */
bool lt_gguf_set_u8(lt_gguf_writer *w, const char *key, uint8_t v);
bool lt_gguf_set_i8(lt_gguf_writer *w, const char *key, int8_t v);
bool lt_gguf_set_u16(lt_gguf_writer *w, const char *key, uint16_t v);
bool lt_gguf_set_i16(lt_gguf_writer *w, const char *key, int16_t v);
bool lt_gguf_set_u32(lt_gguf_writer *w, const char *key, uint32_t v);
bool lt_gguf_set_i32(lt_gguf_writer *w, const char *key, int32_t v);
bool lt_gguf_set_u64(lt_gguf_writer *w, const char *key, uint64_t v);
bool lt_gguf_set_i64(lt_gguf_writer *w, const char *key, int64_t v);
bool lt_gguf_set_f32(lt_gguf_writer *w, const char *key, float v);
bool lt_gguf_set_f64(lt_gguf_writer *w, const char *key, double v);
bool lt_gguf_set_bool(lt_gguf_writer *w, const char *key, bool v);
bool lt_gguf_set_str(lt_gguf_writer *w, const char *key, const char *s);
/* An array of n fixed-size elements of type elem (not STRING or ARRAY),
 * given in host order (lethe runs on little-endian machines only). */
bool lt_gguf_set_arr(lt_gguf_writer *w, const char *key, lt_gguf_type elem, const void *data, uint64_t n);
/* An array of n strings; lens[i] bytes of strs[i] each, or strlen when lens
 * is NULL. */
bool lt_gguf_set_arr_str(lt_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* Any value as the reader returns it (nested arrays included): how a file's
 * metadata is copied. */
bool lt_gguf_set_value(lt_gguf_writer *w, const char *key, const lt_gguf_value *v);
/* Removes a key if present (true either way). */
bool lt_gguf_remove_key(lt_gguf_writer *w, const char *key);
int64_t lt_gguf_writer_n_kv(const lt_gguf_writer *w);
bool lt_gguf_writer_has_key(const lt_gguf_writer *w, const char *key);

/* Appends a tensor to the table: n_dims in 1..4, ne[0] the row length (a
 * multiple of the type's block size), type a type whose layout is known.
 * Names must be unique, non-empty and at most 1024 bytes. */
bool lt_gguf_add_tensor(lt_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, lt_type type, char *err);
int64_t lt_gguf_writer_n_tensors(const lt_gguf_writer *w);
/* Bytes of tensor i's data (no padding), 0 for an index out of range. */
size_t lt_gguf_writer_tensor_bytes(const lt_gguf_writer *w, int64_t i);

/* Writes the header to a temporary file next to path. After it, metadata
 * and tensor table are fixed. */
bool lt_gguf_write_begin(lt_gguf_writer *w, const char *path, char *err);
/* The next n bytes of tensor data, in table order; a call may cover parts
 * of several tensors. Writing past the last tensor is an error. */
bool lt_gguf_write_data(lt_gguf_writer *w, const void *data, size_t n, char *err);
/* Every tensor complete: flushes, closes and renames the file to path. */
bool lt_gguf_write_end(lt_gguf_writer *w, char *err);

/* Convenience for small files: begin, the data of every tensor (data[i],
 * lt_gguf_writer_tensor_bytes(w, i) bytes each), end. */
bool lt_gguf_write_file(lt_gguf_writer *w, const char *path, const void *const *data, char *err);

#endif
