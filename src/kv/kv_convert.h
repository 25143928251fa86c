/* Row conversions between F32 and the KV cache dtypes (F32, F16, Q8_0), kept
 * inside the kv layer so it does not depend on the tensor type table. Q8_0
 * uses the ggml block_q8_0 layout: {uint16 d (half); int8 qs[32]}, 34 bytes. */
#ifndef LETHE_KV_CONVERT_H
#define LETHE_KV_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/types.h"

#define KV_QK8_0 32

typedef struct {
    uint16_t d;             /* scale as IEEE half */
    int8_t qs[KV_QK8_0];
} kv_block_q8_0;

_Static_assert(sizeof(kv_block_q8_0) == 34, "block_q8_0 must be 34 bytes");

/* True for the dtypes a KV pool can hold. */
bool kv_dtype_supported(lt_type t);
/* Bytes of one row of n elements (0 when unsupported or n not a multiple of
 * the block size). */
size_t kv_row_size(lt_type t, int n);

/* Dispatched (AVX2/F16C when the CPU has it) conversions of n elements. */
void kv_row_from_f32(lt_type t, const float *src, void *dst, int n);
void kv_row_to_f32(lt_type t, const void *src, float *dst, int n);

/* Portable reference versions (the SIMD ones are tested against these). */
void kv_row_from_f32_scalar(lt_type t, const float *src, void *dst, int n);
void kv_row_to_f32_scalar(lt_type t, const void *src, float *dst, int n);

/* Whether the dispatched versions use AVX2/F16C. */
bool kv_convert_simd(void);

/* AVX2 versions (kv_convert_avx2.c); call only when the CPU supports them. */
void kv_f32_to_f16_avx2(const float *src, uint16_t *dst, int n);
void kv_f16_to_f32_avx2(const uint16_t *src, float *dst, int n);
void kv_f32_to_q8_0_avx2(const float *src, kv_block_q8_0 *dst, int n);
void kv_q8_0_to_f32_avx2(const kv_block_q8_0 *src, float *dst, int n);

#endif
