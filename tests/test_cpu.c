/* The portable CPU probe (src/tensor/cpu.c, cpuid + xgetbv instead of
 * __builtin_cpu_supports, which clang 14 rejects for "f16c") agrees with
 * the kernel's view in /proc/cpuinfo, and LETHE_SIMD=scalar still wins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/types.h"
#include "testutil.h"

/* True when the first "flags" line of /proc/cpuinfo lists every flag. */
static int cpuinfo_has(const char *const *flags, int n, int *known) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    *known = 0;
    if (!f) return 0;
    int all = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        *known = 1;
        all = 1;
        for (int i = 0; i < n; i++) {
            char word[32];
            snprintf(word, sizeof word, " %s", flags[i]);
            char *p = strstr(line, word);
            size_t l = strlen(word);
            if (!p || (p[l] != ' ' && p[l] != '\n')) all = 0;
        }
        break;
    }
    fclose(f);
    return all;
}

int main(void) {
    static const char *const need[] = {"avx2", "fma", "f16c", "avx"};
    int known;
    int has = cpuinfo_has(need, 4, &known);
#if defined(__x86_64__) || defined(__i386__)
    if (known) CHECKF(lt_cpu_has_avx2() == (has != 0), "probe says %d, /proc/cpuinfo says %d", lt_cpu_has_avx2(), has);
    else printf("SKIPPED part: no /proc/cpuinfo flags\n");
#else
    (void)has;
    CHECK(!lt_cpu_has_avx2()); /* no AVX2 kernels off x86 */
#endif
    CHECK(lt_cpu_has_avx2() == lt_cpu_has_avx2()); /* cached, stable */
    printf("cpu probe: avx2+fma+f16c %s, kernels %s\n", lt_cpu_has_avx2() ? "yes" : "no", lt_simd_name());
    const char *env = getenv("LETHE_SIMD");
    if (env && strcmp(env, "scalar") == 0) CHECK(strcmp(lt_simd_name(), "scalar") == 0);
    else if (lt_cpu_has_avx2()) CHECK(strcmp(lt_simd_name(), "avx2") == 0);
    return tu_finish("test_cpu");
}
