/* Regression cases from fuzzing and from untrusted paths: the inputs in
 * tests/data/fuzz/ (copied from the fuzz-findings folder, see its
 * README.txt) and files made here. Each case failed before its fix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lethe.h"
#include "model/model.h"
#include "testutil.h"

/* tests/data/fuzz/<name>, found beside this source file so the test runs
 * from any directory (LETHE_FUZZ_DATA overrides). */
static const char *data_path(const char *name) {
    static char buf[4096];
    const char *dir = getenv("LETHE_FUZZ_DATA");
    if (dir && *dir) {
        snprintf(buf, sizeof buf, "%s/%s", dir, name);
    } else {
        const char *slash = strrchr(__FILE__, '/');
        int n = slash ? (int)(slash - __FILE__) : 1;
        snprintf(buf, sizeof buf, "%.*s/data/fuzz/%s", n, slash ? __FILE__ : ".", name);
    }
    return buf;
}

static lethe_model *load(const char *path, const char *tok, char *err) {
    lethe_model_params p = lethe_model_default_params();
    p.tokenizer_path = tok;
    err[0] = 0;
    return lethe_model_load(path, &p, err, LETHE_ERR_MAX);
}

/* gguf-1.bin: llama.embedding_length is the float32 array [1e27]; its
 * conversion to an integer was undefined behaviour (UBSan). */
static void test_float_hparam(void) {
    char err[LETHE_ERR_MAX];
    lethe_model *m = load(data_path("gguf-1.bin"), NULL, err);
    CHECKF(m == NULL && strstr(err, "llama.embedding_length") && strstr(err, "not an integer in range"), "gguf-1.bin: '%s'", err);
    lethe_model_free(m);
}

/* gguf-2.bin: a 1500-byte user-defined token. The detokeniser used to
 * return -1 for it with a 512-byte buffer (and `run --echo` printed
 * nothing); now it asks for the size, and the longest piece is known. */
static void test_long_piece(void) {
    char err[LETHE_ERR_MAX];
    lethe_model *m = load(data_path("gguf-2.bin"), NULL, err);
    if (!CHECKF(m != NULL, "gguf-2.bin loads: %s", err)) return;
    int longest = tokenizer_max_piece(m->tok);
    CHECKF(longest == 1500, "longest piece %d bytes", longest);
    lethe_detok *d = lethe_detok_create(m, false);
    char small[512], *big = malloc(2000);
    int need = lethe_detok_push(d, 3, small, sizeof small);
    CHECKF(need == 1500, "push into 512 bytes asks for %d", need);
    int got = lethe_detok_push(d, 3, big, need); /* nothing was consumed: the same id again */
    CHECKF(got == 1500 && big[0] == 'Q' && big[1499] == 'Q', "retry wrote %d bytes", got);
    CHECK(lethe_detok_push(d, 5, small, sizeof small) == 1 && small[0] == 'a');
    CHECK(lethe_detok_flush(d, small, sizeof small) == 0);
    free(big);
    lethe_detok_free(d);
    lethe_model_free(m);
}

/* tokenize-1.bin / -2.bin: [selector][flags] text. The README names the
 * bytes deepseek returns as another character and falcon drops. */
static void test_documented_loss(void) {
    const struct { const char *file, *vocab, *want; } cases[] = {
        {"tokenize-1.bin", "vocab/ggml-vocab-deepseek-llm.gguf", "\xc3\xbf"},
        {"tokenize-2.bin", "vocab/ggml-vocab-falcon.gguf", "ab"},
    };
    for (int i = 0; i < 2; i++) {
        const char *vpath = tu_model_path(cases[i].vocab);
        if (!tu_file_exists(vpath)) { tu_skip_part("%s absent", vpath); continue; }
        size_t n = 0;
        char *in = tu_read_file(data_path(cases[i].file), &n), err[LETHE_ERR_MAX];
        lt_gguf_file *g = lt_gguf_open(vpath, err, NULL);
        tokenizer *t = g ? tokenizer_from_gguf(g, err, NULL) : NULL;
        if (!CHECKF(in && n >= 2 && t, "%s: %s", cases[i].file, err)) { free(in); lt_gguf_close(g); continue; }
        lethe_token ids[16];
        int k = tokenizer_encode(t, in + 2, n - 2, ids, 16, false, false);
        char out[64];
        int used = 0;
        for (int j = 0; j < k && j < 16; j++) used += tokenizer_piece(t, ids[j], out + used, (int)sizeof out - used, true);
        CHECKF(k >= 0 && used == (int)strlen(cases[i].want) && memcmp(out, cases[i].want, (size_t)used) == 0,
               "%s: %d ids spell %d bytes", cases[i].file, k, used);
        tokenizer_free(t);
        lt_gguf_close(g);
        free(in);
    }
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* The 32000-token tokenizer.bin beside the 512-token stories260K.bin used
 * to load and print garbage; tokenizer bytes after the last token were
 * never checked. */
static void test_llama2c_tokenizer(void) {
    const char *ckpt = tu_model_path("llama2c/stories260K.bin");
    const char *big = tu_model_path("llama2c/tokenizer.bin"), *tok512 = tu_model_path("llama2c/tok512.bin");
    if (!tu_file_exists(ckpt) || !tu_file_exists(big) || !tu_file_exists(tok512)) {
        tu_skip_part("llama2c files absent");
        return;
    }
    char err[LETHE_ERR_MAX];
    lethe_model *m = load(ckpt, big, err);
    CHECKF(m == NULL && strstr(err, "32000") && strstr(err, "512"), "32000-token tokenizer.bin: '%s'", err);
    lethe_model_free(m);
    m = load(ckpt, tok512, err);
    CHECKF(m != NULL, "tok512.bin loads: %s", err);
    lethe_model_free(m);

    size_t n = 0;
    char *bytes = tu_read_file(tok512, &n);
    char path[128];
    snprintf(path, sizeof path, "/tmp/lethe_tok_%d.bin", (int)getpid());
    const struct { size_t keep; const char *tail; size_t nt; const char *expect; } cases[] = {
        {0, "\0\0\0\0\1\0\0\0c", 9, "513 tokens"},       /* one whole token too many */
        {0, "xyz", 3, "3 bytes left over"},              /* garbage after the last token */
        {12, "", 0, "with 512 tokens"},                  /* cut inside the last token */
    };
    for (int i = 0; bytes && i < 3; i++) {
        size_t len = cases[i].keep ? n - cases[i].keep : n;
        char *buf = malloc(len + cases[i].nt);
        memcpy(buf, bytes, len);
        memcpy(buf + len, cases[i].tail, cases[i].nt);
        write_file(path, buf, len + cases[i].nt);
        free(buf);
        m = load(ckpt, path, err);
        CHECKF(m == NULL && strstr(err, cases[i].expect), "tokenizer case %d: '%s'", i, err);
        lethe_model_free(m);
    }
    remove(path);
    free(bytes);
}

/* A named pipe used to hang the loader (open() waits for a writer), a
 * directory read as an odd error, and any non-GGUF file was called "a bad
 * llama2.c header". */
static void test_paths(void) {
    char fifo[128], dir[128], text[128], err[LETHE_ERR_MAX];
    snprintf(fifo, sizeof fifo, "/tmp/lethe_fifo_%d", (int)getpid());
    snprintf(dir, sizeof dir, "/tmp/lethe_dir_%d", (int)getpid());
    snprintf(text, sizeof text, "/tmp/lethe_text_%d.txt", (int)getpid());
    if (CHECK(mkfifo(fifo, 0600) == 0)) {
        alarm(20); /* a hang fails the test instead of blocking CTest */
        lethe_model *m = load(fifo, NULL, err);
        CHECKF(m == NULL && strstr(err, "pipe"), "FIFO as model: '%s'", err);
        lethe_model_free(m);
        const char *ckpt = tu_model_path("llama2c/stories260K.bin");
        if (tu_file_exists(ckpt)) {
            m = load(ckpt, fifo, err);
            CHECKF(m == NULL && strstr(err, "not a regular file"), "FIFO as tokenizer.bin: '%s'", err);
            lethe_model_free(m);
        }
        alarm(0);
        remove(fifo);
    }
    if (CHECK(mkdir(dir, 0700) == 0)) {
        lethe_model *m = load(dir, NULL, err);
        CHECKF(m == NULL && strstr(err, "directory"), "directory as model: '%s'", err);
        lethe_model_free(m);
        rmdir(dir);
    }
    const char *prose = "This is a README, neither GGUF nor a llama2.c checkpoint.\n";
    write_file(text, prose, strlen(prose));
    lethe_model *m = load(text, NULL, err);
    CHECKF(m == NULL && strstr(err, "not a GGUF file or llama2.c checkpoint"), "text file as model: '%s'", err);
    lethe_model_free(m);
    write_file(text, "GGU", 3);
    m = load(text, NULL, err);
    CHECKF(m == NULL && strstr(err, "not a GGUF file or llama2.c checkpoint"), "3-byte file as model: '%s'", err);
    lethe_model_free(m);
    remove(text);
}

int main(void) {
    test_float_hparam();
    test_long_piece();
    test_documented_loss();
    test_llama2c_tokenizer();
    test_paths();
    return tu_finish("test_fuzz_regress");
}
