/* STREAM-style read bandwidth (tensor/membw.h). */
#include "tensor/membw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensor/cpu.h"
#include "util/alloc.h"

#define MEMBW_MIN_BYTES ((size_t)512 << 20)
#define SLOT_WORDS 8 /* one 64-byte line per thread's result: no false sharing */

#if defined(__x86_64__) || defined(__i386__)
uint64_t lt_membw_xor_words_avx2(const unsigned char *p, size_t n_words); /* membw_avx2.c */
#endif

/* Portable kernel: four accumulators, loads through memcpy (any alignment). */
static uint64_t xor_words_portable(const unsigned char *p, size_t n_words) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n_words; i += 4) {
        uint64_t w[4];
        memcpy(w, p + i * 8, sizeof w);
        a0 ^= w[0];
        a1 ^= w[1];
        a2 ^= w[2];
        a3 ^= w[3];
    }
    for (; i < n_words; i++) {
        uint64_t w;
        memcpy(&w, p + i * 8, 8);
        a0 ^= w;
    }
    return a0 ^ a1 ^ a2 ^ a3;
}

static uint64_t xor_words(const unsigned char *p, size_t n_words) {
#if defined(__x86_64__) || defined(__i386__)
    if (lt_simd_avx2()) return lt_membw_xor_words_avx2(p, n_words);
#endif
    return xor_words_portable(p, n_words);
}

/* Words are little-endian: on a big-endian host swap each folded word (the
 * XOR of swapped words is the swapped XOR). */
static uint64_t to_le(uint64_t x) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(x);
#else
    return x;
#endif
}

typedef struct {
    const unsigned char *p;
    size_t n_words;
    uint64_t *slots; /* SLOT_WORDS per thread */
} xor_job;

static void xor_task(void *ctx, int ith, int nth) {
    xor_job *j = ctx;
    long lo, hi;
    tp_split((long)j->n_words, ith, nth, &lo, &hi);
    j->slots[(size_t)ith * SLOT_WORDS] = xor_words(j->p + (size_t)lo * 8, (size_t)(hi - lo));
}

uint64_t lt_membw_xor(threadpool *tp, const void *buf, size_t n) {
    const int nth = tp ? tp_n_threads(tp) : 1;
    uint64_t local[SLOT_WORDS], *slots = nth == 1 ? local : malloc(sizeof *slots * SLOT_WORDS * (size_t)nth);
    xor_job j = {buf, n / 8, slots};
    uint64_t x = 0;
    if (slots) {
        tp_run(nth == 1 ? NULL : tp, xor_task, &j);
        for (int t = 0; t < nth; t++) x ^= slots[(size_t)t * SLOT_WORDS];
    } else { /* no room for the slots: read on this thread alone */
        x = xor_words(buf, n / 8);
    }
    if (slots != local) free(slots);
    x = to_le(x);
    if (n % 8) {
        uint64_t tail = 0;
        const unsigned char *p = (const unsigned char *)buf + (n / 8) * 8;
        for (size_t k = 0; k < n % 8; k++) tail |= (uint64_t)p[k] << (8 * k);
        x ^= tail;
    }
    return x;
}

/* The last-level cache one CPU sees, from sysfs (glibc's sysconf gives the
 * whole package's L3 on some hosts, 8x what a core can use); 0 unknown. */
static size_t llc_bytes(void) {
    size_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32];
        int level = 0;
        unsigned long kib = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        bool ok = fgets(buf, sizeof buf, f) && sscanf(buf, "%d", &level) == 1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!ok || !(f = fopen(path, "r"))) continue;
        ok = fgets(buf, sizeof buf, f) && sscanf(buf, "%luK", &kib) == 1;
        fclose(f);
        if (ok && level >= best_level) {
            best_level = level;
            best = (size_t)kib << 10;
        }
    }
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (!best) {
        long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (l3 > 0) best = (size_t)l3;
    }
#endif
    return best;
}

size_t lt_membw_default_bytes(void) {
    size_t llc = llc_bytes();
    return llc * 4 > MEMBW_MIN_BYTES ? llc * 4 : MEMBW_MIN_BYTES;
}

typedef struct {
    uint64_t *w;
    size_t n_words;
} fill_job;

/* A pattern that is neither zero (untouched zero pages would be "read" from
 * one shared page) nor constant (the fold would be trivially zero). */
static void fill_task(void *ctx, int ith, int nth) {
    fill_job *j = ctx;
    long lo, hi;
    tp_split((long)j->n_words, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) j->w[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull ^ 0x5bd1e9955bd1e995ull;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct lt_membw_buf {
    void *p;
    size_t bytes;
    uint64_t checksum;
    bool have_checksum;
};

lt_membw_buf *lt_membw_open(threadpool *tp, size_t bytes, char *err, size_t err_size) {
    bytes &= ~(size_t)63;
    if (bytes == 0) {
        snprintf(err, err_size, "bandwidth: need at least 64 bytes");
        return NULL;
    }
    lt_membw_buf *b = calloc(1, sizeof *b);
    /* The same pages as the weights it is compared with (huge where they are). */
    if (!b || posix_memalign(&b->p, (size_t)2 << 20, bytes)) {
        free(b);
        snprintf(err, err_size, "bandwidth: cannot allocate %zu MiB", bytes >> 20);
        return NULL;
    }
    lt_advise_huge(b->p, bytes);
    b->bytes = bytes;
    fill_job f = {b->p, bytes / 8};
    tp_run(tp, fill_task, &f);
    return b;
}

double lt_membw_pass(lt_membw_buf *b, threadpool *tp, int passes) {
    double best = 1e30;
    for (int r = 0; r < passes; r++) {
        double t0 = now_s();
        uint64_t x = lt_membw_xor(tp, b->p, b->bytes);
        double dt = now_s() - t0;
        if (!b->have_checksum) b->checksum = x, b->have_checksum = true;
        else if (x != b->checksum) return 0;
        if (dt < best) best = dt;
    }
    return best > 0 && best < 1e30 ? (double)b->bytes / best : 0;
}

size_t lt_membw_buf_bytes(const lt_membw_buf *b) { return b->bytes; }

void lt_membw_close(lt_membw_buf *b) {
    if (!b) return;
    free(b->p);
    free(b);
}

bool lt_membw_measure(threadpool *tp, size_t bytes, int passes, lt_membw *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if ((bytes & ~(size_t)63) == 0 || passes < 1) {
        snprintf(err, err_size, "bandwidth: need at least 64 bytes and one pass");
        return false;
    }
    lt_membw_buf *b = lt_membw_open(tp, bytes, err, err_size);
    if (!b) return false;
    const double bps = lt_membw_pass(b, tp, passes);
    out->bytes = b->bytes;
    out->passes = passes;
    out->checksum = b->checksum;
    lt_membw_close(b);
    if (bps <= 0) {
        snprintf(err, err_size, "bandwidth: read passes disagree on the buffer's contents");
        return false;
    }
    out->bytes_per_s = bps;
    out->best_s = (double)out->bytes / bps;
    return true;
}
