#!/bin/sh
# Checks the AVX-512 kernels of the legacy and float types and the x8 tiles
# on a machine without AVX-512 (needs AVX2/FMA/F16C and gcc): the kernel
# sources with every _mm512_ intrinsic renamed to its scalar stand-in of
# emul512.h, run through test_kernels_avx512.c (driver.c) and against the
# AVX2 x8 tiles and the F16 tiles' scalar order (driver_x8.c), and the
# attention kernels and SwiGLU against the scalar and AVX2 ones
# (driver_attn.c). Usage: tests/avx512_emul/run.sh [build dir]
# (a built tree: it links liblethe.a for the scalar reference).
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in tensor/avx512_util.h tensor/quant_legacy_avx512.c tensor/quant_float_avx512.c tensor/quant_x8_avx512.c \
         attn/attn_kernels_avx512.c tensor/swiglu_avx512.c; do
  sed -e 's/__m512[id]\?\b/em512/g; s/\b_mm512_/em_mm512_/g; s/_mm256_maskz_loadu_epi16/em_mm256_maskz_loadu_epi16/g' \
      -e 's/__mmask64/uint64_t/g; s/__mmask16/uint16_t/g; s/^#if defined(__AVX512F__).*/#if 1/' \
      -e 's/lt_kernels_/em_kernels_/; s/lt_tiles_x8_avx512/em_tiles_x8_avx512/; s|"tensor/avx512_util.h"|"avx512_util.h"|' \
      -e 's/\battn_kernels_avx512_table/em_attn_kernels_avx512_table/; s/\blt_swiglu_avx512\b/em_swiglu_avx512/' \
      -e 's|#include "tensor/avx2_util.h"|#include "emul512.h"\n#include "tensor/avx2_util.h"|' \
      "$root/src/$f" > "$tmp/$(basename "$f")"
done
cp "$here/emul512.h" "$tmp/"
# EMUL_CFLAGS: the flags the library was built with (sanitizers must match)
gcc -O1 -std=c11 ${EMUL_CFLAGS:-} -D_GNU_SOURCE -mavx2 -mfma -mf16c -I"$tmp" -I"$root/src" -I"$root/tests" \
  "$here/driver.c" "$tmp/quant_legacy_avx512.c" "$tmp/quant_float_avx512.c" "$root/tests/testutil.c" \
  "$build/liblethe.a" -lm -lpthread -o "$tmp/emul_test"
gcc -O1 -std=c11 ${EMUL_CFLAGS:-} -D_GNU_SOURCE -mavx2 -mfma -mf16c -I"$tmp" -I"$root/src" -I"$root/tests" \
  "$here/driver_x8.c" "$tmp/quant_x8_avx512.c" "$root/tests/testutil.c" \
  "$build/liblethe.a" -lm -lpthread -o "$tmp/emul_x8_test"
gcc -O1 -std=c11 ${EMUL_CFLAGS:-} -D_GNU_SOURCE -mavx2 -mfma -mf16c -I"$tmp" -I"$root/src" -I"$root/tests" \
  "$here/driver_attn.c" "$tmp/attn_kernels_avx512.c" "$tmp/swiglu_avx512.c" "$root/tests/testutil.c" \
  "$build/liblethe.a" -lm -lpthread -o "$tmp/emul_attn_test"
echo "AVX-512 kernels through the scalar stand-ins (the simd line below is the build's own level):"
"$tmp/emul_test"
"$tmp/emul_x8_test"
"$tmp/emul_attn_test"
