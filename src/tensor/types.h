/* Tensor element types, numbered exactly as GGUF / ggml number them, and
 * their block layouts. Each type has a dequantiser, and each weight type a
 * dot product against activations quantised to its "vec_dot_type" (the same
 * scheme as llama.cpp's CPU path: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
 * Q4_1/Q5_1, Q8_K for the k-quants, F32 for F32/F16/BF16 weights).
 *
 * lt_type_traits() returns the fastest implementation this CPU supports
 * (chosen once at start-up); lt_type_traits_scalar() the portable reference
 * that the SIMD code is tested against. */
#ifndef LETHE_TYPES_H
#define LETHE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LT_F32 = 0,
    LT_F16 = 1,
    LT_Q4_0 = 2,
    LT_Q4_1 = 3,
    /* 4, 5: removed Q4_2 / Q4_3 */
    LT_Q5_0 = 6,
    LT_Q5_1 = 7,
    LT_Q8_0 = 8,
    LT_Q8_1 = 9,
    LT_Q2_K = 10,
    LT_Q3_K = 11,
    LT_Q4_K = 12,
    LT_Q5_K = 13,
    LT_Q6_K = 14,
    LT_Q8_K = 15,
    LT_IQ2_XXS = 16,
    LT_IQ2_XS = 17,
    LT_IQ3_XXS = 18,
    LT_IQ1_S = 19,
    LT_IQ4_NL = 20,
    LT_IQ3_S = 21,
    LT_IQ2_S = 22,
    LT_IQ4_XS = 23,
    LT_I8 = 24,
    LT_I16 = 25,
    LT_I32 = 26,
    LT_I64 = 27,
    LT_F64 = 28,
    LT_IQ1_M = 29,
    LT_BF16 = 30,
    /* 31-33: removed Q4_0_4_4 etc. */
    LT_TQ1_0 = 34,
    LT_TQ2_0 = 35,
    LT_TYPE_COUNT = 36
} lt_type;

#define QK_K 256 /* super-block size of the k-quants */

/* x: one row of n weights of this type; y: n activations of vec_dot_type.
 * n is a multiple of the block size. Returns the dot product. */
typedef float (*lt_vec_dot_fn)(int64_t n, const void *x, const void *y);
typedef void (*lt_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*lt_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    const char *name;        /* "Q4_K", as ggml names it */
    int64_t block_size;      /* elements per block (1 for F32/F16/BF16) */
    size_t block_bytes;      /* bytes per block */
    bool known;              /* layout known (size computable), even if not computable */
    lt_to_float_fn to_float;     /* NULL: lethe cannot dequantise this type */
    lt_from_float_fn from_float; /* quantiser; set for F32, F16, BF16, Q8_0, Q8_1, Q8_K, Q4_0, Q4_1, Q5_0, Q5_1 */
    lt_type vec_dot_type;        /* activation type for vec_dot */
    lt_vec_dot_fn vec_dot;       /* NULL: no dot product for this type */
} lt_traits;

/* NULL for an id outside the table. */
const lt_traits *lt_type_traits(lt_type t);
const lt_traits *lt_type_traits_scalar(lt_type t);
/* Name of a type id, or "unknown(N)". Never NULL. */
const char *lt_type_name(int t);
/* True when lethe can load weights of this type (dequantise and dot). */
bool lt_type_supported(int t);
/* Bytes for n elements, or 0 when n is not a multiple of the block size or
 * the type is unknown. */
size_t lt_row_bytes(lt_type t, int64_t n);

/* Which kernels the dispatched table holds: "avx512" (AVX-512 where a type
 * has them, AVX2 elsewhere), "avx2" or "scalar". */
const char *lt_simd_name(void);

#endif
