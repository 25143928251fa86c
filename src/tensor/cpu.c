/* CPU feature probe via cpuid, which every x86 compiler supports, instead
 * of __builtin_cpu_supports (clang 14 rejects "f16c" there), and the one
 * SIMD level that dispatch uses (LETHE_SIMD honoured here only). */
#include "tensor/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return lo;
}

static unsigned probe(void) {
    unsigned a, b, c, d, m = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return 0;
    const unsigned x = xcr0();
    if ((x & 6u) != 6u) return 0; /* XCR0 bits 1, 2: SSE and YMM state saved */
    if (fma) m |= LT_CPU_FMA;
    if (f16c) m |= LT_CPU_F16C;
    if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return m;
    const unsigned eb = b, ec = c;
    if (eb & (1u << 5)) m |= LT_CPU_AVX2;
    if ((x & 0xe0u) == 0xe0u && (eb & (1u << 16))) { /* XCR0 bits 5-7: opmask and ZMM state */
        m |= LT_CPU_AVX512F;
        if (eb & (1u << 30)) m |= LT_CPU_AVX512BW;
        if (eb & (1u << 31)) m |= LT_CPU_AVX512VL;
        if (ec & (1u << 11)) m |= LT_CPU_AVX512VNNI;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) m |= LT_CPU_AVX512BF16;
    }
    return m;
}
#define HAVE_AVX2_KERNELS 1
#elif defined(__aarch64__)
static unsigned probe(void) { return LT_CPU_NEON; }
#define HAVE_AVX2_KERNELS 0
#else
static unsigned probe(void) { return 0; }
#define HAVE_AVX2_KERNELS 0
#endif

#define AVX2_SET (LT_CPU_AVX2 | LT_CPU_FMA | LT_CPU_F16C)
/* The AVX-512 kernels use F, BW, VL and VNNI (BF16 is asked for separately). */
#define AVX512_SET (LT_CPU_AVX512F | LT_CPU_AVX512BW | LT_CPU_AVX512VL | LT_CPU_AVX512VNNI)
#if defined(LETHE_HAVE_AVX512) && LETHE_HAVE_AVX512 && HAVE_AVX2_KERNELS
#define HAVE_AVX512_KERNELS 1
#else
#define HAVE_AVX512_KERNELS 0
#endif

static unsigned features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect(void) { features = probe(); }

unsigned lt_cpu_features(void) {
    pthread_once(&features_once, detect);
    return features;
}

bool lt_cpu_has_avx2(void) { return HAVE_AVX2_KERNELS && (lt_cpu_features() & AVX2_SET) == AVX2_SET; }

const char *lt_cpu_features_str(char *buf, size_t size) {
    static const char *const names[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni",
                                        "avx512bf16", "neon"};
    const unsigned m = lt_cpu_features();
    size_t n = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(m & (1u << i))) continue;
        int w = snprintf(buf + n, size - n, "%s%s", n ? " " : "", names[i]);
        if (w < 0 || (size_t)w >= size - n) break;
        n += (size_t)w;
    }
    if (n == 0) snprintf(buf, size, "none");
    return buf;
}

/* The highest level this CPU and build can run. */
static lt_simd_level_t cpu_max(void) {
    if (!lt_cpu_has_avx2()) return LT_SIMD_SCALAR;
    return HAVE_AVX512_KERNELS && (lt_cpu_features() & AVX512_SET) == AVX512_SET ? LT_SIMD_AVX512 : LT_SIMD_AVX2;
}

static atomic_int level = -1; /* -1: not resolved yet */
static pthread_once_t level_once = PTHREAD_ONCE_INIT;

static void resolve(void) {
    const lt_simd_level_t top = cpu_max();
    lt_simd_level_t l = top; /* default: the best the CPU and the build allow */
    const char *env = getenv("LETHE_SIMD");
    if (env && *env) {
        lt_simd_level_t want;
        if (strcmp(env, "scalar") == 0) want = LT_SIMD_SCALAR;
        else if (strcmp(env, "avx2") == 0) want = LT_SIMD_AVX2;
        else if (strcmp(env, "avx512") == 0) want = LT_SIMD_AVX512;
        else {
            fprintf(stderr, "lethe: warning: LETHE_SIMD=%s is not scalar, avx2 or avx512; using %s\n", env,
                    lt_simd_level_name(l));
            want = l;
        }
        if (want > top) {
            fprintf(stderr, "lethe: warning: LETHE_SIMD=%s but this CPU lacks it; using %s\n", env,
                    lt_simd_level_name(l));
            want = l;
        }
        l = want;
    }
    int none = -1;
    atomic_compare_exchange_strong(&level, &none, (int)l); /* a forced level stays */
}

lt_simd_level_t lt_simd_level(void) {
    /* once set (resolved or forced) the level never changes: callers per
     * row or per call then pay one load, not a pthread_once call */
    int l = atomic_load_explicit(&level, memory_order_acquire);
    if (l >= 0) return (lt_simd_level_t)l;
    pthread_once(&level_once, resolve);
    return (lt_simd_level_t)atomic_load(&level);
}

bool lt_simd_avx2(void) { return lt_simd_level() >= LT_SIMD_AVX2; }

bool lt_simd_avx512(void) { return lt_simd_level() >= LT_SIMD_AVX512; }

bool lt_cpu_force_level(lt_simd_level_t l) {
    const lt_simd_level_t top = cpu_max();
    if (l > top) l = top;
    int none = -1;
    if (atomic_compare_exchange_strong(&level, &none, (int)l)) return true;
    return none == (int)l;
}

const char *lt_simd_level_name(lt_simd_level_t l) {
    return l == LT_SIMD_AVX512 ? "avx512" : l == LT_SIMD_AVX2 ? "avx2" : "scalar";
}

const char *lt_simd_path(void) { return lt_simd_level_name(lt_simd_level()); }
