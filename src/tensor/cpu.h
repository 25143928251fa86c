/* The one run-time CPU probe and SIMD dispatch level: every SIMD dispatch in
 * lethe (tensor traits and tiles, attention kernels with their cold-page
 * readers, KV conversion) asks here, and nowhere else reads cpuid or
 * LETHE_SIMD.
 *
 * lt_cpu_features() is the CPU's feature mask, probed once (pthread_once).
 * lt_simd_level() is the kernel level in use: the best the CPU and the
 * kernels allow, lowered by LETHE_SIMD=scalar|avx2|avx512 (read once). A value
 * that is unknown, or names a level the CPU lacks, gives one warning on
 * stderr and falls back. AVX-512 needs F, BW, VL and VNNI and a build whose
 * compiler took the flags (LETHE_HAVE_AVX512); a type without an AVX-512
 * kernel keeps its AVX2 one at that level. */
#ifndef LETHE_CPU_H
#define LETHE_CPU_H

#include <stdbool.h>
#include <stddef.h>

enum {
    LT_CPU_AVX2 = 1u << 0, /* with AVX and OS-saved YMM state */
    LT_CPU_FMA = 1u << 1,
    LT_CPU_F16C = 1u << 2,
    LT_CPU_AVX512F = 1u << 3, /* with OS-saved ZMM/opmask state */
    LT_CPU_AVX512BW = 1u << 4,
    LT_CPU_AVX512VL = 1u << 5,
    LT_CPU_AVX512VNNI = 1u << 6,
    LT_CPU_AVX512BF16 = 1u << 7,
    LT_CPU_NEON = 1u << 8, /* aarch64: always */
};

typedef enum { LT_SIMD_SCALAR = 0, LT_SIMD_AVX2 = 1, LT_SIMD_AVX512 = 2 } lt_simd_level_t;

/* The CPU's feature mask (LT_CPU_* bits); probed once, thread-safe. */
unsigned lt_cpu_features(void);
/* The features as "avx2 fma f16c avx512f ..." ("none" when empty). */
const char *lt_cpu_features_str(char *buf, size_t size);
/* True when the CPU has AVX2, FMA and F16C and the OS saves the YMM
 * registers; always false off x86. Capability only: dispatch asks
 * lt_simd_level(). */
bool lt_cpu_has_avx2(void);

/* The kernel level dispatch uses. Resolved once, thread-safe. */
lt_simd_level_t lt_simd_level(void);
/* True when dispatch sites use the AVX2 (or wider) kernels. */
bool lt_simd_avx2(void);
/* True when they use the AVX-512 ones (where a type has them). */
bool lt_simd_avx512(void);
/* The level's short name: "scalar", "avx2" or "avx512". */
const char *lt_simd_level_name(lt_simd_level_t l);
/* The path that runs, for headers: "avx512", "avx2" or "scalar". */
const char *lt_simd_path(void);
/* Test hook: fix the level before any dispatch (before the first
 * lt_simd_level() call, LETHE_SIMD then being ignored). A level above what
 * the CPU has is lowered to it. Returns false when the level was already
 * resolved to something else (the dispatch tables are built once). */
bool lt_cpu_force_level(lt_simd_level_t l);

#endif
