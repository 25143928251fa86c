#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/gguf.h"

const char *fuzz_model_path(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("LETHE_MODELS");
    if (!root || !*root) root = LETHE_FUZZ_DEFAULT_MODELS; /* set by fuzz/CMakeLists.txt */
    snprintf(buf, cap, "%s/%s", root, rel);
    return buf;
}

/* Every tokeniser family and pre-tokeniser the shared files have. */
static const char *const vocab_files[] = {
    "stories260K.gguf",
    "vocab/ggml-vocab-llama-spm.gguf",
    "vocab/ggml-vocab-phi-3.gguf",
    "vocab/ggml-vocab-gpt-2.gguf",
    "vocab/ggml-vocab-deepseek-coder.gguf",
    "vocab/ggml-vocab-deepseek-llm.gguf",
    "vocab/ggml-vocab-falcon.gguf",
    "vocab/ggml-vocab-mpt.gguf",
    "vocab/ggml-vocab-refact.gguf",
    "vocab/ggml-vocab-starcoder.gguf",
};
#define N_VOCABS ((int)(sizeof vocab_files / sizeof vocab_files[0]))

int fuzz_n_vocabs(void) { return N_VOCABS; }

const tokenizer *fuzz_vocab(uint8_t b, const char **name) {
    static tokenizer *cache[N_VOCABS];
    static int tried[N_VOCABS];
    int i = b % N_VOCABS;
    *name = vocab_files[i];
    if (!tried[i]) {
        char path[4096], err[LETHE_ERR_MAX];
        tried[i] = 1;
        lt_gguf_file *f = lt_gguf_open(fuzz_model_path(vocab_files[i], path, sizeof path), err, NULL);
        if (f) cache[i] = tokenizer_from_gguf(f, err, NULL);
        if (f && !cache[i]) fuzz_fail("%s: %s", vocab_files[i], err);
        lt_gguf_close(f); /* the tokeniser copies what it needs */
        if (!f) fprintf(stderr, "fuzz: %s absent (%s); inputs selecting it are ignored\n", path, err);
    }
    return cache[i];
}

/* In-memory files (memfd): no disk I/O in the fuzz loop (a stalled disk
 * once showed up as a 13 s "timeout" inside open()). The loaders open the
 * /proc/self/fd path like any regular file. */
const char *fuzz_write_file(int slot, const char *suffix, const uint8_t *data, size_t n) {
    static int fds[2] = {-1, -1};
    static char paths[2][64];
    (void)suffix; /* the loaders look at the bytes, not the name */
    if (fds[slot] < 0) {
        fds[slot] = memfd_create(slot ? "lethe_fuzz_1" : "lethe_fuzz_0", MFD_CLOEXEC);
        if (fds[slot] < 0) fuzz_fail("memfd_create failed");
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0 || (n && pwrite(fds[slot], data, n, 0) != (ssize_t)n)) fuzz_fail("cannot fill the memfd");
    return paths[slot];
}

void fuzz_fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "PROPERTY FAILED: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
