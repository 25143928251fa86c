#include "format/llama2c.h"

#include <string.h>

#include "util/checked.h"
#include "util/error.h"

#define HEADER_BYTES (7 * sizeof(int32_t))

/* Appends an array of n floats at *cursor, recording its offset. */
static bool place(size_t *cursor, uint64_t n, size_t *offset) {
    uint64_t bytes, end;
    if (!mul_u64(n, sizeof(float), &bytes) || !add_u64(*cursor, bytes, &end) || end > SIZE_MAX) return false;
    *offset = *cursor;
    *cursor = (size_t)end;
    return true;
}

lethe_status llama2c_parse(const void *data, size_t file_size, llama2c_layout *L, char *err) {
    int32_t h[7];
    memset(L, 0, sizeof *L);
    if (file_size < HEADER_BYTES)
        return set_error(err, LETHE_ERR_FORMAT, "not a GGUF file or llama2.c checkpoint (no GGUF magic, and %zu bytes are too few for a llama2.c header)", file_size);
    memcpy(h, data, sizeof h);
    if (h[0] == 0x616b3432)
        return set_error(err, LETHE_ERR_UNSUPPORTED, "llama2c: versioned ('ak42') checkpoints are not supported; export the legacy format");
    L->dim = h[0];
    L->hidden_dim = h[1];
    L->n_layers = h[2];
    L->n_heads = h[3];
    L->n_kv_heads = h[4];
    L->shared_classifier = h[5] > 0;
    L->vocab_size = h[5] > 0 ? h[5] : (h[5] == INT32_MIN ? 0 : -h[5]);
    L->seq_len = h[6];
    const int lim = 1 << 20;
    if (L->dim <= 0 || L->dim > lim || L->hidden_dim <= 0 || L->hidden_dim > lim || L->n_layers <= 0 || L->n_layers > 4096 ||
        L->n_heads <= 0 || L->n_heads > L->dim || L->n_kv_heads <= 0 || L->n_kv_heads > L->n_heads ||
        L->vocab_size <= 0 || L->vocab_size > (1 << 24) || L->seq_len <= 0 || L->seq_len > lim || L->dim % L->n_heads != 0)
        return set_error(err, LETHE_ERR_FORMAT,
                         "not a GGUF file or llama2.c checkpoint (no GGUF magic; as a llama2.c header: dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq_len %d)",
                         h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    uint64_t d = (uint64_t)L->dim, hd = (uint64_t)L->hidden_dim, nl = (uint64_t)L->n_layers;
    uint64_t head = d / (uint64_t)L->n_heads, kv = head * (uint64_t)L->n_kv_heads;
    size_t c = HEADER_BYTES, freq;
    bool ok = place(&c, (uint64_t)L->vocab_size * d, &L->token_embedding) && place(&c, nl * d, &L->rms_att) &&
              place(&c, nl * d * d, &L->wq) && place(&c, nl * d * kv, &L->wk) && place(&c, nl * d * kv, &L->wv) &&
              place(&c, nl * d * d, &L->wo) && place(&c, nl * d, &L->rms_ffn) && place(&c, nl * d * hd, &L->w1) &&
              place(&c, nl * hd * d, &L->w2) && place(&c, nl * d * hd, &L->w3) && place(&c, d, &L->rms_final) &&
              place(&c, (uint64_t)L->seq_len * head, &freq); /* freq_cis real + imag, unused: RoPE is computed */
    if (ok && !L->shared_classifier) ok = place(&c, (uint64_t)L->vocab_size * d, &L->wcls);
    if (!ok || c > file_size)
        return set_error(err, LETHE_ERR_FORMAT, "llama2c: the header describes %zu bytes of weights but the file has %zu",
                         ok ? c : (size_t)-1, file_size);
    if (L->shared_classifier) L->wcls = L->token_embedding;
    return LETHE_OK;
}
