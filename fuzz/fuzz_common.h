/* Shared by the libFuzzer targets: where the models are, the vocabulary
 * list the first input byte selects from, and a file holding given bytes
 * (the loaders take paths). A failed property calls fuzz_fail, which
 * aborts so that libFuzzer records the input. */
#ifndef LETHE_FUZZ_COMMON_H
#define LETHE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "tokenize/tokenizer.h"
#include "util/error.h"

/* $LETHE_MODELS/rel, default ../shared/models beside the repository. */
const char *fuzz_model_path(const char *rel, char *buf, size_t cap);

/* Number of vocabularies and the tokeniser for selector byte b (loaded once,
 * kept for the process); NULL when the file is absent. *name gets its file. */
int fuzz_n_vocabs(void);
const tokenizer *fuzz_vocab(uint8_t b, const char **name);

/* Puts n bytes in a per-process in-memory file (slot 0 or 1 for two at
 * once) and returns its path (static storage). suffix is informational. */
const char *fuzz_write_file(int slot, const char *suffix, const uint8_t *data, size_t n);

void fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
