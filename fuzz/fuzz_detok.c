/* The streaming detokeniser on arbitrary id sequences. Input: [vocabulary
 * selector][flags: bit 0 render_special, bits 1-7 a buffer size] then ids
 * as 3-byte little-endian values (some out of range). Properties: an id out
 * of range gives -1 and changes nothing; a buffer too small gives the size
 * needed and changes nothing; the outputs concatenate to the pieces, and no
 * valid UTF-8 character is split between two outputs. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenize/tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const char *name;
    const tokenizer *t = fuzz_vocab(data[0], &name);
    if (!t) return 0;
    bool render = data[1] & 1;
    int small = data[1] >> 1; /* 0..127: first try this capacity */
    size_t n_ids = (size - 2) / 3;
    const uint8_t *p = data + 2;
    size_t cap_all = n_ids * ((size_t)tokenizer_max_piece(t) + 8) + 16;
    char *want = malloc(cap_all), *got = malloc(cap_all), *buf = malloc((size_t)tokenizer_max_piece(t) + 8);
    size_t *cuts = malloc((n_ids + 2) * sizeof *cuts);
    if (!want || !got || !buf || !cuts) goto out;
    detok_stream d;
    detok_stream_init(&d);
    size_t nw = 0, ng = 0, nc = 0;
    for (size_t i = 0; i < n_ids; i++) {
        lethe_token id = (lethe_token)(p[3 * i] | p[3 * i + 1] << 8 | p[3 * i + 2] << 16) - 16;
        bool valid = id >= 0 && id < tokenizer_n_vocab(t);
        int r = detok_stream_push(&d, t, id, buf, small, render);
        if (!valid) {
            if (r != -1) fuzz_fail("%s: id %d out of range gave %d", name, id, r);
            continue;
        }
        if (r < 0) fuzz_fail("%s: push of id %d failed", name, id);
        if (r > small) { /* too small: nothing consumed; retry with the size asked for */
            int r2 = detok_stream_push(&d, t, id, buf, r, render);
            if (r2 != r) fuzz_fail("%s: asked for %d bytes, then wrote %d", name, r, r2);
        }
        if (r > tokenizer_max_piece(t) + 3) fuzz_fail("%s: %d bytes exceed the longest piece + 3", name, r);
        memcpy(got + ng, buf, (size_t)r);
        ng += (size_t)r;
        cuts[nc++] = ng;
        size_t len;
        const char *piece = tok_piece_ref(t, id, render, &len);
        memcpy(want + nw, piece, len);
        nw += len;
    }
    int r = detok_stream_flush(&d, buf, 4);
    if (r < 0 || r > 3) fuzz_fail("%s: flush gave %d", name, r);
    memcpy(got + ng, buf, (size_t)r);
    ng += (size_t)r;
    if (ng != nw || memcmp(got, want, nw) != 0) fuzz_fail("%s: output differs from the pieces (%zu vs %zu bytes)", name, ng, nw);
    /* no valid character may straddle a cut */
    size_t c = 0;
    for (size_t i = 0; i < ng;) {
        int k = utf8_check((const unsigned char *)got + i, ng - i);
        size_t step = k > 0 ? (size_t)k : 1;
        while (c < nc && cuts[c] <= i) c++;
        if (c < nc && cuts[c] < i + step) fuzz_fail("%s: a %zu-byte character at %zu is split at %zu", name, step, i, cuts[c]);
        i += step;
    }
out:
    free(want);
    free(got);
    free(buf);
    free(cuts);
    return 0;
}
