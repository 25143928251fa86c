/* AVX-512 kernels of the legacy types (see quant_impl.h). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "tensor/quant_impl.h"

void lt_kernels_legacy_avx512(lt_traits *traits, lt_tile *tiles) {
    (void)traits;
    (void)tiles;
}

#else
/* Elsewhere this file is empty; ISO C wants a declaration in every file. */
typedef int lt_no_avx512_legacy_kernels;
#endif
