/* test_kernels_avx512.c run over the AVX-512 kernels compiled against
 * emul512.h (see run.sh) instead of the dispatched table. */
#include "tensor/quant_impl.h"
#include "tensor/types.h"

void em_kernels_legacy_avx512(lt_traits *traits, lt_tile *tiles);
void em_kernels_float_avx512(lt_traits *traits, lt_tile *tiles);

static lt_traits em_tr[LT_TYPE_COUNT];
static lt_tile em_tl[LT_TYPE_COUNT];
static int em_ready;

static void em_setup(void) {
    if (em_ready) return;
    em_ready = 1;
    for (int t = 0; t < LT_TYPE_COUNT; t++) {
        em_tr[t] = *lt_type_traits_scalar((lt_type)t);
        em_tl[t] = (lt_tile){NULL, 1, 1, 1, false, 0};
    }
    em_kernels_legacy_avx512(em_tr, em_tl);
    em_kernels_float_avx512(em_tr, em_tl);
}
static const lt_traits *em_traits(lt_type t) {
    em_setup();
    return &em_tr[t];
}
static const lt_tile *em_tile(lt_type t) {
    em_setup();
    return &em_tl[t];
}
#define KT_TRAITS(t) em_traits(t)
#define KT_TILE(t) em_tile(t)
#include "test_kernels_avx512.c"
