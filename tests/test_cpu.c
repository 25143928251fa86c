/* The one CPU-dispatch module (src/tensor/cpu.c): the feature mask agrees
 * with /proc/cpuinfo and is stable across calls and threads; the resolved
 * level is what every dispatch site (tensor traits, attention kernels, KV
 * conversion) uses; a level forced to scalar before any dispatch (as
 * LETHE_SIMD=scalar does) makes every site scalar and gives the AVX2
 * results within 1e-5; LETHE_SIMD values it cannot honour fall back. Forced
 * levels run in forked children, since the level is resolved once. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attn/attn_kernels.h"
#include "kv/kv_convert.h"
#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/quant_impl.h"
#include "tensor/quantize.h"
#include "tensor/types.h"
#include "testutil.h"

#if defined(__x86_64__) || defined(__i386__)
/* 1 when /proc/cpuinfo's first "flags" line lists flag, 0 when not, -1 unknown. */
static int cpuinfo_has(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int r = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        char word[40];
        snprintf(word, sizeof word, " %s", flag);
        char *p = line;
        size_t l = strlen(word);
        r = 0;
        while ((p = strstr(p, word))) {
            if (p[l] == ' ' || p[l] == '\n' || p[l] == 0) { r = 1; break; }
            p += l;
        }
        break;
    }
    fclose(f);
    return r;
}
#endif

static void test_mask(void) {
#if defined(__x86_64__) || defined(__i386__)
    static const struct { unsigned bit; const char *flag; } map[] = {
        {LT_CPU_AVX2, "avx2"},         {LT_CPU_FMA, "fma"},           {LT_CPU_F16C, "f16c"},
        {LT_CPU_AVX512F, "avx512f"},   {LT_CPU_AVX512BW, "avx512bw"}, {LT_CPU_AVX512VL, "avx512vl"},
        {LT_CPU_AVX512VNNI, "avx512_vnni"}, {LT_CPU_AVX512BF16, "avx512_bf16"},
    };
    const unsigned m = lt_cpu_features();
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        int has = cpuinfo_has(map[i].flag);
        if (has < 0) { printf("SKIPPED part: no /proc/cpuinfo flags\n"); break; }
        CHECKF(((m & map[i].bit) != 0) == (has == 1), "%s: probe %d, /proc/cpuinfo %d", map[i].flag,
               (m & map[i].bit) != 0, has);
    }
    int a2 = cpuinfo_has("avx2"), fm = cpuinfo_has("fma"), fc = cpuinfo_has("f16c");
    if (a2 >= 0) CHECK(lt_cpu_has_avx2() == (a2 == 1 && fm == 1 && fc == 1));
#elif defined(__aarch64__)
    CHECK(lt_cpu_features() == LT_CPU_NEON);
    CHECK(!lt_cpu_has_avx2());
#else
    CHECK(!lt_cpu_has_avx2());
#endif
    CHECK(lt_cpu_features() == lt_cpu_features());
    char buf[160];
    printf("cpu features: %s\n", lt_cpu_features_str(buf, sizeof buf));
}

typedef struct {
    unsigned mask;
    lt_simd_level_t level;
    const attn_kernels *kern;
    const lt_traits *f32;
} probe_out;

static void *probe_thread(void *arg) {
    probe_out *o = arg;
    o->mask = lt_cpu_features();
    o->level = lt_simd_level();
    o->kern = attn_kernels_get();
    o->f32 = lt_type_traits(LT_F32);
    return NULL;
}

/* Threads racing the first use all see one mask, one level, one table. */
static void test_threads(void) {
    enum { N = 6 };
    pthread_t th[N];
    probe_out o[N];
    for (int i = 0; i < N; i++) CHECK(pthread_create(&th[i], NULL, probe_thread, &o[i]) == 0);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < N; i++) {
        CHECK(o[i].mask == o[0].mask);
        CHECK(o[i].level == o[0].level);
        CHECK(o[i].kern == o[0].kern);
        CHECK(o[i].f32->vec_dot == o[0].f32->vec_dot);
    }
    CHECK(o[0].mask == lt_cpu_features() && o[0].level == lt_simd_level());
}

/* Every dispatch site agrees with the one level. */
static int sites_agree(void) {
    const bool simd = lt_simd_avx2();
    int ok = 1;
    ok &= CHECKF(strcmp(lt_simd_name(), lt_simd_level_name(lt_simd_level())) == 0, "traits say %s", lt_simd_name());
    const attn_kernels *want = attn_kernels_avx512() ? attn_kernels_avx512() : simd ? attn_kernels_avx2() : attn_kernels_scalar();
    ok &= CHECKF(attn_kernels_get() == want, "attention: %s", attn_kernels_get()->name);
    ok &= CHECK(simd ? attn_kernels_avx2() != NULL : attn_kernels_avx2() == NULL);
    ok &= CHECK((attn_kernels_avx512() != NULL) == lt_simd_avx512());
    ok &= CHECK(kv_convert_simd() == simd);
    ok &= CHECK(simd || lt_type_tile(LT_Q8_0)->fn == NULL);
    return ok;
}

enum { COLS = 256, ROWS = 16, TOK = 3, D = 64, NR = 4, NK = 37 };
static const lt_type mm_types[] = {LT_F32, LT_F16, LT_Q8_0, LT_Q4_0, LT_Q4_K, LT_Q6_K};
#define N_MM (sizeof mm_types / sizeof mm_types[0])
#define N_OUT (N_MM * TOK * ROWS + NR * NK + 1 + NR * D + 2 * COLS)

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Matmuls, the attention kernels and KV conversion through the dispatched
 * entry points; returns 0 on an allocation failure. */
static int compute(float *out) {
    uint32_t seed = 99;
    float *w = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * TOK * COLS);
    void *wq = malloc(ROWS * COLS * 4);
    threadpool *tp = tp_create(2);
    lt_workspace ws = {0};
    int ok = w && x && wq && tp;
    for (int i = 0; ok && i < ROWS * COLS; i++) w[i] = frand(&seed);
    for (int i = 0; ok && i < TOK * COLS; i++) x[i] = frand(&seed);
    float *o = out;
    for (size_t t = 0; ok && t < N_MM; t++, o += TOK * ROWS) {
        ok &= lt_quantize_rows(mm_types[t], w, wq, ROWS, COLS) > 0;
        ok &= ok && lt_matmul(tp, &ws, mm_types[t], wq, ROWS, COLS, x, TOK, o) == 0;
    }
    if (ok) {
        const attn_kernels *k = attn_kernels_get();
        float q[NR * D], kk[NK * D], S[NR * NK], alpha[NR], pv[NR * D];
        for (int i = 0; i < NR * D; i++) q[i] = frand(&seed), pv[i] = frand(&seed);
        for (int i = 0; i < NK * D; i++) kk[i] = frand(&seed);
        for (int r = 0; r < NR; r++) alpha[r] = r ? 0.5f : 1.0f;
        k->scores(q, D, NR, kk, NK, D, S, NK);
        float sum = k->exp_sum(S, NR * NK, 4.0f);
        k->pv(pv, NR, alpha, S, NK, kk, NK, D);
        memcpy(o, S, sizeof S), o += NR * NK;
        *o++ = sum;
        memcpy(o, pv, sizeof pv), o += NR * D;
        uint16_t h[COLS];
        kv_block_q8_0 b[COLS / KV_QK8_0];
        kv_row_from_f32(LT_F16, x, h, COLS);
        kv_row_to_f32(LT_F16, h, o, COLS), o += COLS;
        kv_row_from_f32(LT_Q8_0, x, b, COLS);
        kv_row_to_f32(LT_Q8_0, b, o, COLS), o += COLS;
    }
    lt_workspace_free(&ws);
    if (tp) tp_free(tp);
    free(w), free(x), free(wq);
    return ok;
}

/* Runs fn in a forked child (so that it can fix the level before any
 * dispatch); the child's floats come back through a pipe. Returns the
 * child's exit status, or -1. */
static int in_child(int (*fn)(float *), float *out) {
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(p[0]);
        static float buf[N_OUT];
        int ok = fn(buf);
        size_t n = sizeof buf;
        const char *c = (const char *)buf;
        while (n > 0) {
            ssize_t w = write(p[1], c, n);
            if (w <= 0) break;
            c += w, n -= (size_t)w;
        }
        close(p[1]);
        fflush(stdout);
        _exit(ok ? 0 : 1);
    }
    close(p[1]);
    size_t got = 0;
    char *c = (char *)out;
    while (got < sizeof(float) * N_OUT) {
        ssize_t r = read(p[0], c + got, sizeof(float) * N_OUT - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(p[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return got == sizeof(float) * N_OUT ? WEXITSTATUS(st) : -1;
}

static int child_scalar(float *out) {
    int ok = CHECK(lt_cpu_force_level(LT_SIMD_SCALAR));
    ok &= CHECK(lt_simd_level() == LT_SIMD_SCALAR);
    ok &= CHECK(strcmp(lt_simd_path(), "scalar") == 0);
    ok &= CHECK(strcmp(lt_simd_name(), "scalar") == 0);
    ok &= CHECK(attn_kernels_get() == attn_kernels_scalar());
    ok &= CHECK(!kv_convert_simd());
    ok &= sites_agree();
    ok &= CHECK(!lt_cpu_force_level(LT_SIMD_AVX2) || !lt_cpu_has_avx2()); /* resolved: too late */
    printf("forced scalar: traits %s, attention %s, kv convert %s\n", lt_simd_name(), attn_kernels_get()->name,
           kv_convert_simd() ? "simd" : "scalar");
    return compute(out) && ok;
}

static int child_avx2(float *out) {
    int ok = CHECK(lt_cpu_force_level(LT_SIMD_AVX2)); /* wins over LETHE_SIMD */
    ok &= CHECK(lt_simd_level() == LT_SIMD_AVX2);
    ok &= sites_agree();
    return compute(out) && ok;
}

static int child_env(const char *value, lt_simd_level_t expect) {
    setenv("LETHE_SIMD", value, 1);
    lt_simd_level_t l = lt_simd_level();
    int ok = CHECKF(l == expect, "LETHE_SIMD=%s gives %s, expected %s", value, lt_simd_level_name(l),
                    lt_simd_level_name(expect));
    ok &= sites_agree();
    printf("LETHE_SIMD=%s: %s\n", value, lt_simd_path());
    return ok;
}

/* What the CPU and this build can run (LETHE_HAVE_AVX512: the compiler took
 * the AVX-512 flags). */
static bool has_avx512(void) {
    const unsigned m512 = LT_CPU_AVX512F | LT_CPU_AVX512BW | LT_CPU_AVX512VL | LT_CPU_AVX512VNNI;
    return LETHE_HAVE_AVX512 && lt_cpu_has_avx2() && (lt_cpu_features() & m512) == m512;
}
static lt_simd_level_t best_kernels(void) {
    return has_avx512() ? LT_SIMD_AVX512 : lt_cpu_has_avx2() ? LT_SIMD_AVX2 : LT_SIMD_SCALAR;
}
static lt_simd_level_t best_upto_avx2(void) { return lt_cpu_has_avx2() ? LT_SIMD_AVX2 : LT_SIMD_SCALAR; }

static int child_avx512(float *out) {
    int ok = CHECK(lt_cpu_force_level(LT_SIMD_AVX512));
    ok &= CHECK(lt_simd_level() == LT_SIMD_AVX512);
    ok &= CHECK(strcmp(lt_simd_name(), "avx512") == 0);
    ok &= sites_agree();
    return compute(out) && ok;
}
static int env_bogus(float *o) { (void)o; return child_env("bogus", best_kernels()); }
static int env_scalar(float *o) { (void)o; return child_env("scalar", LT_SIMD_SCALAR); }
static int env_avx2(float *o) { (void)o; return child_env("avx2", best_upto_avx2()); }
static int env_avx512(float *o) {
    (void)o;
    int ok = child_env("avx512", best_kernels());
    if (has_avx512()) ok &= CHECK(strcmp(lt_simd_path(), "avx512") == 0 && strcmp(lt_simd_name(), "avx512") == 0);
    return ok;
}

static void test_levels(void) {
    static float scalar_out[N_OUT], simd_out[N_OUT];
    CHECKF(in_child(child_scalar, scalar_out) == 0, "the forced-scalar child failed");
    static float avx2_out[N_OUT], avx512_out[N_OUT];
    if (lt_cpu_has_avx2()) CHECKF(in_child(child_avx2, avx2_out) == 0, "the forced-avx2 child failed");
    if (has_avx512()) CHECKF(in_child(child_avx512, avx512_out) == 0, "the forced-avx512 child failed");
    CHECK(in_child(env_bogus, simd_out) == 0); /* warns once on stderr, falls back */
    CHECK(in_child(env_scalar, simd_out) == 0);
    CHECK(in_child(env_avx2, simd_out) == 0);
    CHECK(in_child(env_avx512, simd_out) == 0);

    /* this process: the level from the environment, every site agreeing */
    test_threads();
    CHECK(sites_agree());
    const char *env = getenv("LETHE_SIMD");
    if (env && strcmp(env, "scalar") == 0) CHECK(lt_simd_level() == LT_SIMD_SCALAR);
    else if (!env || !*env) CHECK(lt_simd_level() == best_kernels());
    CHECK(lt_cpu_force_level(lt_simd_level())); /* the same level: fine */
    printf("cpu probe: avx2+fma+f16c %s, path %s\n", lt_cpu_has_avx2() ? "yes" : "no", lt_simd_path());
    CHECK(compute(simd_out)); /* this process's level, whatever it is */
    /* same kernels, same bits */
    if (lt_simd_level() == LT_SIMD_AVX2) CHECK(memcmp(simd_out, avx2_out, sizeof simd_out) == 0);
    if (lt_simd_level() == LT_SIMD_AVX512) CHECK(memcmp(simd_out, avx512_out, sizeof simd_out) == 0);
    if (!lt_cpu_has_avx2()) {
        printf("SKIPPED part: scalar vs AVX2 (no AVX2 on this CPU)\n");
        return;
    }
    float worst = 0.0f;
    for (size_t i = 0; i < N_OUT; i++) {
        float e = fabsf(scalar_out[i] - avx2_out[i]) / (1.0f + fabsf(scalar_out[i]));
        if (!(e <= worst)) worst = e;
    }
    CHECKF(worst <= 1e-5f, "scalar vs avx2: worst relative error %g", worst);
    printf("scalar vs avx2 on matmul (F32 F16 Q8_0 Q4_0 Q4_K Q6_K), attention kernels, kv convert: worst %.2g\n",
           worst);
    if (!has_avx512()) {
        printf("SKIPPED part: scalar vs AVX-512 (no AVX-512 VNNI on this CPU or build)\n");
        return;
    }
    worst = 0.0f;
    for (size_t i = 0; i < N_OUT; i++) {
        float e = fabsf(scalar_out[i] - avx512_out[i]) / (1.0f + fabsf(scalar_out[i]));
        if (!(e <= worst)) worst = e;
    }
    CHECKF(worst <= 1e-5f, "scalar vs avx512: worst relative error %g", worst);
    printf("scalar vs avx512: worst %.2g\n", worst);
}

int main(void) {
    test_mask();
    test_levels();
    return tu_finish("test_cpu");
}
