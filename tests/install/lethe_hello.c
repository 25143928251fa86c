/* A program that uses only the installed lethe: <lethe.h> and the library
 * found through pkg-config. It loads a model, prints its info, tokenizes a
 * prompt and checks what it gets. Exit 0 on success, 1 with a message.
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

    lethe_model_params p = lethe_model_default_params();
    p.n_threads = 1;
    lethe_model *m = lethe_model_load(argv[1], &p, err, sizeof err);
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
    lethe_model_free(m);
    if (!ok) return fail("unexpected model info or tokens");
    printf("ok\n");
    return 0;
}
