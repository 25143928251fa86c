/* The type table: every ggml type id with its block layout, and the kernels
 * lethe has for it. The dispatched table is built once (pthread_once) from
 * the portable one, replacing kernels with AVX2 versions when the dispatch
 * level (tensor/cpu.h: the CPU's features, lowered by LETHE_SIMD) is AVX2 or
 * above, then with AVX-512 ones, where a type has them, at that level. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/quant_impl.h"
#include "tensor/types.h"

#define UNKNOWN(id) [id] = {"unknown(" #id ")", 0, 0, false, NULL, NULL, LT_F32, NULL}
/* A type whose size is known but which lethe cannot compute with. */
#define LAYOUT(id, nm, bs, bytes) [id] = {nm, bs, bytes, true, NULL, NULL, LT_F32, NULL}

static const lt_traits scalar_table[LT_TYPE_COUNT] = {
    [LT_F32] = {"F32", 1, 4, true, lt_f32_to_float, lt_f32_from_float, LT_F32, lt_f32_dot},
    [LT_F16] = {"F16", 1, 2, true, lt_f16_to_float, lt_f16_from_float, LT_F32, lt_f16_dot},
    [LT_Q4_0] = {"Q4_0", 32, 18, true, lt_q4_0_to_float, lt_q4_0_from_float, LT_Q8_0, lt_q4_0_dot},
    [LT_Q4_1] = {"Q4_1", 32, 20, true, lt_q4_1_to_float, lt_q4_1_from_float, LT_Q8_1, lt_q4_1_dot},
    UNKNOWN(4),
    UNKNOWN(5),
    [LT_Q5_0] = {"Q5_0", 32, 22, true, lt_q5_0_to_float, lt_q5_0_from_float, LT_Q8_0, lt_q5_0_dot},
    [LT_Q5_1] = {"Q5_1", 32, 24, true, lt_q5_1_to_float, lt_q5_1_from_float, LT_Q8_1, lt_q5_1_dot},
    [LT_Q8_0] = {"Q8_0", 32, 34, true, lt_q8_0_to_float, lt_q8_0_from_float, LT_Q8_0, lt_q8_0_dot},
    [LT_Q8_1] = {"Q8_1", 32, 36, true, lt_q8_1_to_float, lt_q8_1_from_float, LT_Q8_1, NULL},
    [LT_Q2_K] = {"Q2_K", QK_K, 84, true, lt_q2_K_to_float, NULL, LT_Q8_K, lt_q2_K_dot},
    [LT_Q3_K] = {"Q3_K", QK_K, 110, true, lt_q3_K_to_float, NULL, LT_Q8_K, lt_q3_K_dot},
    [LT_Q4_K] = {"Q4_K", QK_K, 144, true, lt_q4_K_to_float, NULL, LT_Q8_K, lt_q4_K_dot},
    [LT_Q5_K] = {"Q5_K", QK_K, 176, true, lt_q5_K_to_float, NULL, LT_Q8_K, lt_q5_K_dot},
    [LT_Q6_K] = {"Q6_K", QK_K, 210, true, lt_q6_K_to_float, NULL, LT_Q8_K, lt_q6_K_dot},
    [LT_Q8_K] = {"Q8_K", QK_K, 292, true, lt_q8_K_to_float, lt_q8_K_from_float, LT_Q8_K, NULL},
    LAYOUT(LT_IQ2_XXS, "IQ2_XXS", QK_K, 66),
    LAYOUT(LT_IQ2_XS, "IQ2_XS", QK_K, 74),
    LAYOUT(LT_IQ3_XXS, "IQ3_XXS", QK_K, 98),
    LAYOUT(LT_IQ1_S, "IQ1_S", QK_K, 50),
    [LT_IQ4_NL] = {"IQ4_NL", 32, 18, true, lt_iq4_nl_to_float, NULL, LT_Q8_0, lt_iq4_nl_dot},
    LAYOUT(LT_IQ3_S, "IQ3_S", QK_K, 110),
    LAYOUT(LT_IQ2_S, "IQ2_S", QK_K, 82),
    [LT_IQ4_XS] = {"IQ4_XS", QK_K, 136, true, lt_iq4_xs_to_float, NULL, LT_Q8_K, lt_iq4_xs_dot},
    LAYOUT(LT_I8, "I8", 1, 1),
    LAYOUT(LT_I16, "I16", 1, 2),
    LAYOUT(LT_I32, "I32", 1, 4),
    LAYOUT(LT_I64, "I64", 1, 8),
    LAYOUT(LT_F64, "F64", 1, 8),
    LAYOUT(LT_IQ1_M, "IQ1_M", QK_K, 56),
    [LT_BF16] = {"BF16", 1, 2, true, lt_bf16_to_float, lt_bf16_from_float, LT_F32, lt_bf16_dot},
    UNKNOWN(31),
    UNKNOWN(32),
    UNKNOWN(33),
    LAYOUT(LT_TQ1_0, "TQ1_0", QK_K, 54),
    LAYOUT(LT_TQ2_0, "TQ2_0", QK_K, 66),
};

static lt_traits simd_table[LT_TYPE_COUNT];
static lt_tile tile_table[LT_TYPE_COUNT];
static lt_tile tile_x8_table[LT_TYPE_COUNT];
static const char *simd_name = "scalar";
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void use_avx2(void) {
#if defined(__x86_64__) || defined(__i386__) /* the AVX2 kernels exist only there */
    simd_table[LT_F32].vec_dot = lt_f32_dot_avx2;
    simd_table[LT_F16].vec_dot = lt_f16_dot_avx2;
    simd_table[LT_F16].to_float = lt_f16_to_float_avx2;
    simd_table[LT_BF16].vec_dot = lt_bf16_dot_avx2;
    simd_table[LT_Q4_0].vec_dot = lt_q4_0_dot_avx2;
    simd_table[LT_Q4_1].vec_dot = lt_q4_1_dot_avx2;
    simd_table[LT_Q5_0].vec_dot = lt_q5_0_dot_avx2;
    simd_table[LT_Q5_1].vec_dot = lt_q5_1_dot_avx2;
    simd_table[LT_Q8_0].vec_dot = lt_q8_0_dot_avx2;
    simd_table[LT_IQ4_NL].vec_dot = lt_iq4_nl_dot_avx2;
    simd_table[LT_Q4_K].vec_dot = lt_q4_K_dot_avx2;
    simd_table[LT_Q5_K].vec_dot = lt_q5_K_dot_avx2;
    simd_table[LT_Q6_K].vec_dot = lt_q6_K_dot_avx2;
    simd_table[LT_Q2_K].vec_dot = lt_q2_K_dot_avx2;
    simd_table[LT_Q3_K].vec_dot = lt_q3_K_dot_avx2;
    simd_table[LT_IQ4_XS].vec_dot = lt_iq4_xs_dot_avx2;
    simd_table[LT_Q8_0].from_float = lt_q8_0_from_float_avx2;
    simd_table[LT_Q4_0].to_float = lt_q4_0_to_float_avx2;
    simd_table[LT_Q8_0].to_float = lt_q8_0_to_float_avx2;
    simd_table[LT_Q8_1].from_float = lt_q8_1_from_float_avx2;
    simd_table[LT_Q8_K].from_float = lt_q8_K_from_float_avx2;
    lt_tiles_float_avx2(tile_table);
    lt_tiles_legacy_avx2(tile_table);
    lt_tiles_k_avx2(tile_table);
    lt_tiles_x8_avx2(tile_x8_table);
    simd_name = "avx2";
#endif
}

/* AVX-512 kernels replace the AVX2 ones of the types that have them. */
static void use_avx512(void) {
#if defined(LETHE_HAVE_AVX512) && LETHE_HAVE_AVX512
    lt_kernels_float_avx512(simd_table, tile_table);
    lt_kernels_legacy_avx512(simd_table, tile_table);
    lt_kernels_k_avx512(simd_table, tile_table);
    lt_tiles_x8_avx512(tile_x8_table);
    simd_name = "avx512";
#endif
}

static void init_tables(void) {
    memcpy(simd_table, scalar_table, sizeof simd_table);
    for (int t = 0; t < LT_TYPE_COUNT; t++) tile_table[t] = tile_x8_table[t] = (lt_tile){NULL, 1, 1, 1, false, 0};
    if (lt_simd_avx2()) use_avx2();
    if (lt_simd_avx512()) use_avx512();
}

const lt_traits *lt_type_traits(lt_type t) {
    if ((int)t < 0 || t >= LT_TYPE_COUNT) return NULL;
    pthread_once(&init_once, init_tables);
    return &simd_table[t];
}

const lt_traits *lt_type_traits_scalar(lt_type t) {
    if ((int)t < 0 || t >= LT_TYPE_COUNT) return NULL;
    return &scalar_table[t];
}

const lt_tile *lt_type_tile(lt_type t) {
    static const lt_tile none = {NULL, 1, 1, 1, false, 0};
    if ((int)t < 0 || t >= LT_TYPE_COUNT) return &none;
    pthread_once(&init_once, init_tables);
    return &tile_table[t];
}

const lt_tile *lt_type_tile_x8(lt_type t) {
    static const lt_tile none = {NULL, 1, 1, 1, false, 0};
    if ((int)t < 0 || t >= LT_TYPE_COUNT) return &none;
    pthread_once(&init_once, init_tables);
    return &tile_x8_table[t];
}

const char *lt_type_name(int t) {
    static _Thread_local char buf[32];
    if (t >= 0 && t < LT_TYPE_COUNT) return scalar_table[t].name;
    snprintf(buf, sizeof buf, "unknown(%d)", t);
    return buf;
}

bool lt_type_supported(int t) {
    const lt_traits *tr = lt_type_traits((lt_type)t);
    return tr && tr->known && tr->to_float && tr->vec_dot;
}

size_t lt_row_bytes(lt_type t, int64_t n) {
    const lt_traits *tr = lt_type_traits_scalar(t);
    if (!tr || !tr->known || n < 0 || n % tr->block_size != 0) return 0;
    const uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > SIZE_MAX / tr->block_bytes) return 0;
    return (size_t)blocks * tr->block_bytes;
}

const char *lt_simd_name(void) {
    pthread_once(&init_once, init_tables);
    return simd_name;
}
