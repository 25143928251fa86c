/* CPU feature probe via cpuid, which every x86 compiler supports, instead
 * of __builtin_cpu_supports (clang 14 rejects "f16c" there). */
#include "tensor/cpu.h"

#include <stdatomic.h>
#include <stddef.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 bits 1 and 2: the OS saves SSE and AVX (YMM) state on context switch. */
static bool os_saves_ymm(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6u) == 6u;
}

static bool probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c) || !os_saves_ymm()) return false;
    if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b & (1u << 5)) != 0; /* leaf 7 EBX bit 5: AVX2 */
}
#else
static bool probe(void) { return false; }
#endif

bool lt_cpu_has_avx2(void) {
    static atomic_int cached = -1; /* -1 unknown; racing first calls compute the same value */
    int v = atomic_load(&cached);
    if (v < 0) {
        v = probe() ? 1 : 0;
        atomic_store(&cached, v);
    }
    return v != 0;
}
