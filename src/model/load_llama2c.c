/* Binds a llama2.c checkpoint to the model structure. The weights are F32
 * arrays in the same row-major [out][in] layout GGUF uses, and llama2.c
 * rotates adjacent pairs, so they map directly onto the "llama" arch. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/llama2c.h"
#include "model/model.h"

static weight f32_weight(const uint8_t *base, size_t off, int64_t cols, int64_t rows) {
    weight w = {LT_F32, base + off, cols, rows, false};
    return w;
}

lethe_status model_load_llama2c(lethe_model *m, const char *path, const char *tokenizer_path) {
    /* O_NONBLOCK: a named pipe must be refused, not waited on */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return set_error(m->err, LETHE_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        const char *what = S_ISDIR(st.st_mode) ? "a directory" : S_ISREG(st.st_mode) ? "empty" : "a pipe, device or socket";
        return set_error(m->err, LETHE_ERR_IO, "'%s' is %s, not a model file (GGUF or llama2.c checkpoint)", path, what);
    }
    m->map_size = (size_t)st.st_size;
    void *map = mmap(NULL, m->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return set_error(m->err, LETHE_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    m->map = map;

    llama2c_layout L;
    lethe_status s = llama2c_parse(map, m->map_size, &L, m->err);
    if (s) {
        /* only GGUF files carry a magic; say what the file was tried as */
        char why[LETHE_ERR_MAX];
        snprintf(why, sizeof why, "%s", m->err);
        return set_error(m->err, s, "'%s': %s", path, why);
    }
    m->arch = arch_find("llama");
    snprintf(m->name, sizeof m->name, "llama2.c checkpoint");
    hparams *hp = &m->hp;
    hp->n_vocab = L.vocab_size;
    hp->n_embd = L.dim;
    hp->n_layer = L.n_layers;
    hp->n_head = L.n_heads;
    hp->n_head_kv = L.n_kv_heads;
    hp->head_dim = L.dim / L.n_heads;
    hp->n_rot = hp->head_dim;
    hp->n_ff = L.hidden_dim;
    hp->n_ctx_train = L.seq_len;
    hp->rope_base = 10000.0f; /* fixed in llama2.c */
    hp->rms_eps = 1e-5f;

    const uint8_t *b = map;
    int64_t d = L.dim, kv = (int64_t)hp->head_dim * L.n_kv_heads, hd = L.hidden_dim;
    m->tok_embd = f32_weight(b, L.token_embedding, d, L.vocab_size);
    m->output = f32_weight(b, L.wcls, d, L.vocab_size);
    m->output_norm = (const float *)(b + L.rms_final);
    m->layers = calloc((size_t)L.n_layers, sizeof *m->layers);
    if (!m->layers) return set_error(m->err, LETHE_ERR_NOMEM, "model: out of memory");
    for (int64_t l = 0; l < L.n_layers; l++) {
        layer_weights *w = &m->layers[l];
        w->attn_norm = (const float *)(b + L.rms_att) + l * d;
        w->ffn_norm = (const float *)(b + L.rms_ffn) + l * d;
        w->wq = f32_weight(b, L.wq + (size_t)(l * d * d) * 4, d, d);
        w->wk = f32_weight(b, L.wk + (size_t)(l * d * kv) * 4, d, kv);
        w->wv = f32_weight(b, L.wv + (size_t)(l * d * kv) * 4, d, kv);
        w->wo = f32_weight(b, L.wo + (size_t)(l * d * d) * 4, d, d);
        w->w_gate = f32_weight(b, L.w1 + (size_t)(l * d * hd) * 4, d, hd);
        w->w_down = f32_weight(b, L.w2 + (size_t)(l * d * hd) * 4, hd, d);
        w->w_up = f32_weight(b, L.w3 + (size_t)(l * d * hd) * 4, d, hd);
    }
    m->n_params = (uint64_t)(m->map_size - 28) / 4;
    m->weight_bytes = m->map_size - 28;
    if ((s = model_validate(m))) return s;

    char tpath[4096];
    if (!tokenizer_path) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(tpath, sizeof tpath, "%s/tokenizer.bin", dirname(dir));
        tokenizer_path = tpath;
    }
    m->tok = tokenizer_from_llama2c(tokenizer_path, L.vocab_size, m->err, &s);
    if (!m->tok) return s ? s : LETHE_ERR_FORMAT;
    return LETHE_OK;
}
