/* A forward pass on stories260K with arbitrary ids, a small budget and a
 * policy chosen by the input. Input: [policy][budget][chunking] then ids
 * as 2-byte little-endian values (some out of the vocabulary). Properties:
 * no crash or sanitizer report; a rejected append leaves the sequence where
 * it was (the fuzz finding forward-1.bin); logits are finite. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "lethe.h"

/* All use of the public sequence API is here, so that an API change
 * touches one function. Returns the tokens appended. */
static void run_sequence(lethe_ctx *c, const char *policy, int budget, const lethe_token *ids, int n, int chunk,
                         int n_vocab) {
    char err[LETHE_ERR_MAX];
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = policy;
    sp.kv.budget = budget;
    lethe_seq *s = lethe_seq_create(c, &sp, err, sizeof err);
    if (!s) return; /* a budget the policy cannot use is a clean error */
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    for (int i = 0; logits && i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        int before = lethe_seq_n_past(s);
        lethe_status st = lethe_seq_append(s, ids + i, k, logits);
        if (st != LETHE_OK) {
            if (lethe_seq_n_past(s) != before)
                fuzz_fail("%s: failed append moved the sequence from %d to %d", policy, before, lethe_seq_n_past(s));
            continue;
        }
        for (int v = 0; v < n_vocab; v++)
            if (!isfinite(logits[v])) fuzz_fail("%s: logit %d is %g", policy, v, logits[v]);
    }
    free(logits);
    lethe_seq_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lethe_model *m;
    static lethe_ctx *c;
    static int n_vocab;
    if (!m) {
        char path[4096], err[LETHE_ERR_MAX];
        m = lethe_model_load(fuzz_model_path("stories260K.gguf", path, sizeof path), NULL, err, sizeof err);
        if (!m) fuzz_fail("cannot load %s: %s", path, err);
        lethe_ctx_params cp = lethe_ctx_default_params();
        cp.n_threads = 1;
        cp.n_ctx = 64;
        c = lethe_ctx_create(m, &cp, err, sizeof err);
        if (!c) fuzz_fail("cannot make a context: %s", err);
        lethe_model_info info;
        lethe_model_get_info(m, &info);
        n_vocab = info.n_vocab;
    }
    if (size < 3) return 0;
    const char *const *names = lethe_kv_policy_names();
    int n_pol = 0;
    while (names[n_pol]) n_pol++;
    const char *policy = names[data[0] % n_pol];
    int budget = data[1] % 80;
    int chunk = data[2] % 8 + 1;
    int n = (int)((size - 3) / 2);
    if (n > 96) n = 96; /* longer than the context of 64 */
    lethe_token ids[96];
    for (int i = 0; i < n; i++) ids[i] = (lethe_token)(int16_t)(data[3 + 2 * i] | data[4 + 2 * i] << 8) % (n_vocab + 4);
    run_sequence(c, policy, budget, ids, n, chunk, n_vocab);
    return 0;
}
