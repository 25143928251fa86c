/* Every tokeniser family on the shared vocabularies. Input: [vocabulary
 * selector][flags: bit 0 add_special, bit 1 parse_special] then the text.
 * Properties: no crash, ids in range, and the README's round trip: the
 * pieces of the ids spell the text (after SPM's leading space), for any
 * bytes (SPM: U+2581 comes back as a space), except the bytes a
 * vocabulary documentedly cannot represent (see
 * README "Tokenisers"; tests/test_tokenizer.c pins the exact sets). Outputs holding a special token are not compared
 * (their strip attributes may eat whitespace by design). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenize/tok_internal.h"

/* Byte values each vocabulary cannot round-trip, computed once per vocab
 * from single-byte texts. Only the vocabularies the README names may have
 * any. */
static bool lossy_allowed(const char *name) {
    static const char *const lossy[] = {"deepseek-llm", "deepseek-coder", "falcon", "mpt", "refact", "starcoder"};
    for (size_t i = 0; i < sizeof lossy / sizeof lossy[0]; i++)
        if (strstr(name, lossy[i])) return true;
    return false;
}

static int spell(const tokenizer *t, const lethe_token *ids, int n, char *out, size_t cap) {
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = tok_piece_ref(t, ids[i], true, &len);
        if (k + len > cap) return -1;
        memcpy(out + k, p, len);
        k += len;
    }
    return (int)k;
}

static bool has_special(const tokenizer *t, const lethe_token *ids, int n) {
    for (int i = 0; i < n; i++)
        if (t->attr[ids[i]] & (TA_CONTROL | TA_USER_DEFINED | TA_UNKNOWN)) return true;
    return false;
}

/* SPM spells spaces as U+2581, so that character in the text comes back
 * as a space (README): count them, and compare with that substitution. */
static size_t spm_marks(const tokenizer *t, const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; t->model == TOK_SPM && i + 2 < n; i++)
        if (memcmp(s + i, "\xe2\x96\x81", 3) == 0) c++, i += 2;
    return c;
}

static bool same_text(const tokenizer *t, const char *out, const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++, k++) {
        if (t->model == TOK_SPM && i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            if (out[k] != ' ') return false;
            i += 2;
        } else if (out[k] != s[i]) {
            return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool lossy[16][256];
    static bool lossy_done[16];
    if (size < 2) return 0;
    const char *name;
    const tokenizer *t = fuzz_vocab(data[0], &name);
    if (!t) return 0;
    int vi = data[0] % fuzz_n_vocabs();
    bool add_special = data[1] & 1, parse_special = data[1] & 2;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    const char *prefix = t->model == TOK_SPM && t->add_space_prefix ? " " : "";
    size_t np = strlen(prefix);
    lethe_token ids[64];
    char spelled[64 * 8];

    if (!lossy_done[vi]) {
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            int n = tokenizer_encode(t, &c, 1, ids, 64, false, false);
            int k = n >= 0 && n <= 64 ? spell(t, ids, n, spelled, sizeof spelled) : -1;
            lossy[vi][b] = !(k == (int)np + 1 && memcmp(spelled, prefix, np) == 0 && spelled[np] == c);
            if (lossy[vi][b] && !lossy_allowed(name)) fuzz_fail("%s: byte 0x%02x does not round-trip", name, b);
        }
        lossy_done[vi] = true;
    }

    int n = tokenizer_encode(t, text, len, NULL, 0, add_special, parse_special);
    if (n < 0) fuzz_fail("%s: encode failed", name);
    lethe_token *all = malloc(((size_t)n + 1) * sizeof *all);
    if (!all) return 0;
    int n2 = tokenizer_encode(t, text, len, all, n, add_special, parse_special);
    if (n2 != n) fuzz_fail("%s: %d ids, then %d", name, n, n2);
    for (int i = 0; i < n; i++)
        if (all[i] < 0 || all[i] >= tokenizer_n_vocab(t)) fuzz_fail("%s: id %d out of range", name, all[i]);

    if (len == 0) np = 0; /* no text, no space prefix */
    bool comparable = !add_special && !has_special(t, all, n);
    for (size_t i = 0; comparable && i < len; i++) comparable = !lossy[vi][(unsigned char)text[i]];
    if (comparable) {
        size_t cap = len * 4 + 16;
        char *out = malloc(cap);
        int k = out ? spell(t, all, n, out, cap) : -2;
        if (out && (k != (int)(np + len - 2 * spm_marks(t, text, len)) || memcmp(out, prefix, np) != 0 ||
                    !same_text(t, out + np, text, len)))
            fuzz_fail("%s: %zu bytes came back as %d different bytes", name, len, k);
        free(out);
    }
    free(all);
    return 0;
}
