/* A program that uses only the installed lethe: <lethe.h> and the library
 * found through pkg-config. It loads a model, prints its info, tokenizes a
 * prompt, makes a context and a sequence, and generates 16 greedy tokens,
 * checking what it gets. Exit 0 on success, 1 with a message.
 *
 *   cc lethe_hello.c $(pkg-config --cflags --libs lethe) && ./a.out MODEL
 */
#include <lethe.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "lethe_hello: %s\n", what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return fail("usage: lethe_hello MODEL.gguf");
#ifdef LETHE_VERSION_STRING
    printf("lethe.h version %s\n", LETHE_VERSION_STRING);
#endif
    if (strcmp(lethe_status_name(LETHE_OK), lethe_status_name(LETHE_ERR_IO)) == 0)
        return fail("lethe_status_name gives one name to two statuses");

    char err[512];
    lethe_model *bad = lethe_model_load("/nonexistent/model.gguf", NULL, err, sizeof err);
    if (bad || !err[0]) return fail("loading a missing file did not fail with a message");

    lethe_model *m = lethe_model_load(argv[1], NULL, err, sizeof err);
    if (!m) {
        fprintf(stderr, "lethe_hello: cannot load %s: %s\n", argv[1], err);
        return 1;
    }
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    printf("model: %s, %d layers, %d vocab, %d embd\n", info.arch, info.n_layer, info.n_vocab, info.n_embd);

    const char *text = "Once upon a time";
    lethe_token ids[64];
    int n = lethe_tokenize(m, text, strlen(text), ids, 64, true, false);
    int ok = n > 1 && n <= 64 && info.n_vocab > 0 && info.n_layer > 0;
    for (int i = 0; ok && i < n; i++) ok = ids[i] >= 0 && ids[i] < info.n_vocab;
    if (ok && info.bos >= 0) ok = ids[0] == info.bos;
    printf("tokens:");
    for (int i = 0; i < n && i < 64; i++) printf(" %d", ids[i]);
    printf("\n");
    if (!ok) {
        lethe_model_free(m);
        return fail("unexpected model info or tokens");
    }

    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 128;
    lethe_ctx *c = lethe_ctx_create(m, &cp, err, sizeof err);
    lethe_seq *s = c ? lethe_seq_create(c, NULL, err, sizeof err) : NULL;
    static float logits[1 << 17];
    ok = s && info.n_vocab <= (int)(sizeof logits / sizeof *logits) && lethe_seq_append(s, ids, n, logits) == LETHE_OK;
    printf("generated:");
    for (int i = 0; ok && i < 16; i++) {
        lethe_token best = 0;
        for (int v = 1; v < info.n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        char piece[256];
        int k = lethe_token_piece(m, best, piece, sizeof piece - 1, false);
        if (k >= 0 && k < (int)sizeof piece) piece[k] = 0, printf("%s", piece);
        ok = lethe_seq_decode(s, best, logits) == LETHE_OK;
    }
    printf("\n");
    if (!ok) fprintf(stderr, "lethe_hello: %s\n", s ? lethe_seq_error(s) : err);
    ok = ok && lethe_seq_n_past(s) == n + 16;
    lethe_ctx_free(c); /* frees s too */
    lethe_model_free(m);
    if (!ok) return fail("generation failed");
    printf("ok\n");
    return 0;
}
