/* The one run-time CPU probe: every SIMD dispatch in lethe asks here. */
#ifndef LETHE_CPU_H
#define LETHE_CPU_H

#include <stdbool.h>

/* True when the CPU has AVX2, FMA and F16C and the OS saves the YMM
 * registers; always false off x86. Cached after the first call. */
bool lt_cpu_has_avx2(void);

#endif
