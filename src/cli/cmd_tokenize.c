/* lethe tokenize: ids and pieces of a text. Works on vocabulary-only GGUF
 * files too, so it loads just the tokeniser when it can. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/gguf.h"
#include "tokenize/tokenizer.h"
#include "util/error.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe tokenize -m MODEL [options] TEXT | -f FILE\n"
            "  -m, --model FILE     GGUF (vocabulary-only files work) or llama2.c checkpoint\n"
            "  -z, --tokenizer FILE llama2.c tokenizer.bin\n"
            "  -f, --file FILE      tokenize a file's bytes\n"
            "  --ids                print only the ids, space-separated\n"
            "  --no-special         do not add BOS/EOS\n"
            "  --special            parse special-token text (e.g. <|endoftext|>) as single tokens\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *file = NULL, *text = NULL;
    bool ids_only = false, add_special = true, parse_special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--no-special")) add_special = false;
        else if (!strcmp(a, "--special")) parse_special = true;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = opt_value(argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer")) { if (!(tok_path = opt_value(argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(file = opt_value(argc, argv, &i))) return EXIT_USAGE; }
        else if (a[0] == '-' && a[1]) return unknown_option(a);
        else if (!text) text = a;
        else { fprintf(stderr, "lethe tokenize: give the text as one argument\n"); return usage_error(); }
    }
    if (!model || (!text && !file) || (text && file)) {
        fprintf(stderr, "lethe tokenize: need -m MODEL and exactly one of TEXT / -f FILE\n");
        return usage_error();
    }

    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = read_file(file, &len))) return 1; /* read_file said why */
        text = buf;
    } else {
        len = strlen(text);
    }

    char err[LETHE_ERR_MAX];
    lethe_status st;
    lt_gguf_file *g = NULL;
    tokenizer *tok = NULL;
    lethe_model *m = NULL;
    if (lt_gguf_has_magic(model)) {
        g = lt_gguf_open(model, err, &st);
        if (g) tok = tokenizer_from_gguf(g, err, &st);
    } else {
        lethe_model_params p = lethe_model_default_params();
        p.tokenizer_path = tok_path;
        m = lethe_model_load(model, &p, err, sizeof err);
    }
    int rc = 1;
    lethe_token *ids = NULL;
    if (!tok && !m) { fprintf(stderr, "lethe tokenize: cannot load '%s': %s\n", model, err); goto out; }
    int n = tok ? tokenizer_encode(tok, text, len, NULL, 0, add_special, parse_special)
                : lethe_tokenize(m, text, len, NULL, 0, add_special, parse_special);
    if (n < 0 || !(ids = malloc(((size_t)n + 1) * sizeof *ids))) { fprintf(stderr, "lethe tokenize: tokenisation failed\n"); goto out; }
    if (tok) tokenizer_encode(tok, text, len, ids, n, add_special, parse_special);
    else lethe_tokenize(m, text, len, ids, n, add_special, parse_special);
    for (int i = 0; i < n; i++) {
        if (ids_only) { printf(i ? " %d" : "%d", ids[i]); continue; }
        char piece[512];
        int k = tok ? tokenizer_piece(tok, ids[i], piece, sizeof piece, true) : lethe_token_piece(m, ids[i], piece, sizeof piece, true);
        if (k < 0) k = 0;
        if (k > (int)sizeof piece) k = sizeof piece;
        printf("%6d -> '", ids[i]);
        for (int j = 0; j < k; j++) {
            unsigned char c = (unsigned char)piece[j];
            if (c == '\n') fputs("\\n", stdout);
            else if (c == '\t') fputs("\\t", stdout);
            else if (c < 32) printf("\\x%02x", c);
            else putchar(c);
        }
        printf("'\n");
    }
    if (ids_only) putchar('\n');
    fprintf(stderr, "%d tokens\n", n);
    rc = 0;
out:
    free(ids);
    free(buf);
    tokenizer_free(tok);
    lt_gguf_close(g);
    lethe_model_free(m);
    return rc;
}
