/* llama2.c checkpoint + tokenizer.bin. Input: a 4-byte little-endian split
 * point, then the checkpoint bytes up to it and tokenizer.bin bytes after.
 * The tokenizer.bin reader also runs alone with the vocabulary size taken
 * from the split bytes. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "lethe.h"
#include "tokenize/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t split = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    data += 4;
    size -= 4;
    size_t n_ckpt = split % (size + 1);
    char err[LETHE_ERR_MAX];
    const char *ckpt = fuzz_write_file(0, ".bin", data, n_ckpt);
    const char *tokp = fuzz_write_file(1, ".tok", data + n_ckpt, size - n_ckpt);

    lethe_status st;
    tokenizer *t = tokenizer_from_llama2c(tokp, (int)(split >> 24) + 1, err, &st);
    if (t) {
        lethe_token ids[32];
        (void)tokenizer_encode(t, "Once upon a time", 16, ids, 32, true, false); /* -1 is fine: bytes without a token */
        tokenizer_free(t);
    } else if (st == LETHE_OK || !err[0]) {
        fuzz_fail("tokenizer.bin rejected without a status and message");
    }

    lethe_model_params p = lethe_model_default_params();
    p.tokenizer_path = tokp;
    lethe_model *m = lethe_model_load(ckpt, &p, err, sizeof err);
    if (!m && !err[0]) fuzz_fail("checkpoint rejected without a message");
    if (m) {
        lethe_model_info info;
        lethe_model_get_info(m, &info);
        lethe_token ids[16];
        int n = lethe_tokenize(m, "Hi", 2, ids, 16, true, false);
        for (int i = 0; i < n && i < 16; i++)
            if (ids[i] < 0 || ids[i] >= info.n_vocab) fuzz_fail("id %d outside the vocabulary of %d", ids[i], info.n_vocab);
    }
    lethe_model_free(m);
    return 0;
}
