/* tokenizer_bench: tokenises about 1 MB of generated text and prints the
 * throughput (called by `lethe bench`). The text mixes English-like words,
 * punctuation, digits, whitespace runs and some multi-byte characters, and is
 * the same on every run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenize/tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ~size bytes of deterministic pseudo-text; returns its length. */
static size_t make_text(char *buf, size_t size) {
    static const char *const words[] = {
        "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
        "with", "his", "they", "I", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but",
        "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how",
        "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then",
        "them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two",
        "tokenizer", "inference", "Once", "upon", "Lily", "park", "ball", "don't", "it's", "we'll", "café",
        "naïve", "Привет", "мир", "日本語", "中文", "😀", "über", "2024", "3.14", "x_1", "(x)", "{y}", "->",
    };
    static const char *const seps[] = {" ", " ", " ", " ", " ", ", ", ". ", "\n", "  ", "\t", "! ", "? ", "; ", "\n\n"};
    const size_t nw = sizeof words / sizeof words[0], ns = sizeof seps / sizeof seps[0];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    size_t n = 0;
    for (;;) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const char *w = words[s % nw], *p = seps[(s >> 20) % ns];
        size_t lw = strlen(w), lp = strlen(p);
        if (n + lw + lp >= size) break;
        memcpy(buf + n, w, lw);
        memcpy(buf + n + lw, p, lp);
        n += lw + lp;
    }
    return n;
}

void tokenizer_bench(FILE *out, const tokenizer *t) {
    const size_t size = 1 << 20;
    char *text = malloc(size);
    if (!text || !t) {
        fprintf(out, "tokenizer bench: %s\n", t ? "out of memory" : "no tokenizer");
        free(text);
        return;
    }
    size_t len = make_text(text, size);
    int n_needed = tokenizer_encode(t, text, len, NULL, 0, false, false);
    lethe_token *ids = n_needed > 0 ? malloc((size_t)n_needed * sizeof *ids) : NULL;
    if (n_needed <= 0 || !ids) {
        fprintf(out, "tokenizer bench: tokenisation failed\n");
        free(ids);
        free(text);
        return;
    }
    double best = 1e30;
    int n = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        n = tokenizer_encode(t, text, len, ids, n_needed, false, false);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    fprintf(out, "tokenizer: %zu bytes -> %d tokens in %.3f s: %.2f MB/s, %.0f tokens/s\n", len, n, best,
            (double)len / 1e6 / best, n / best);
    free(ids);
    free(text);
}
