/* lethe info: metadata and tensor table of a model file. Reads the file
 * format directly (format/), since the tensor table is a property of the
 * file rather than of the loaded model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/gguf.h"
#include "format/llama2c.h"
#include "tensor/cpu.h"
#include "tensor/types.h"
#include "util/error.h"

static void print_str(FILE *f, lt_gguf_str s, size_t max) {
    fputc('"', f);
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 32 || c == 127) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    if (s.len > max) fputs("...", f);
    fputc('"', f);
}

static void print_scalar(FILE *f, const lt_gguf_value *v) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        fprintf(f, "%llu", (unsigned long long)v->v.u); break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        fprintf(f, "%lld", (long long)v->v.i); break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: fprintf(f, "%g", v->v.f); break;
    case GGUF_TYPE_BOOL: fputs(v->v.b ? "true" : "false", f); break;
    case GGUF_TYPE_STRING: print_str(f, v->v.str, 120); break;
    default: break;
    }
}

static void print_array(FILE *f, const lt_gguf_array *a, int show) {
    fprintf(f, "[%s x %llu] ", lt_gguf_type_name(a->type), (unsigned long long)a->n);
    fputc('[', f);
    for (uint64_t i = 0; i < a->n && i < (uint64_t)show; i++) {
        if (i) fputs(", ", f);
        if (a->type == GGUF_TYPE_STRING) print_str(f, a->strs[i], 40);
        else if (a->type == GGUF_TYPE_ARRAY) print_array(f, &a->arrs[i].v.arr, 3);
        else if (a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64) fprintf(f, "%g", lt_gguf_arr_f64(a, i));
        else fprintf(f, "%lld", (long long)lt_gguf_arr_i64(a, i));
    }
    if (a->n > (uint64_t)show) fputs(", ...", f);
    fputc(']', f);
}

static int info_gguf(const char *path) {
    char err[LETHE_ERR_MAX];
    lethe_status st;
    lt_gguf_file *g = lt_gguf_open(path, err, &st);
    if (!g) { fprintf(stderr, "lethe info: %s\n", err); return 1; }
    printf("file: %s\nformat: GGUF v%u, %zu bytes, alignment %zu, data at %llu\n", path, lt_gguf_version(g), lt_gguf_file_size(g),
           lt_gguf_alignment(g), (unsigned long long)lt_gguf_data_offset(g));
    printf("metadata (%lld keys):\n", (long long)lt_gguf_n_kv(g));
    for (int64_t i = 0; i < lt_gguf_n_kv(g); i++) {
        const lt_gguf_kv *kv = lt_gguf_kv_at(g, i);
        char key[256];
        printf("  %-45s ", lt_gguf_str_copy(kv->key, key, sizeof key));
        if (kv->value.type == GGUF_TYPE_ARRAY) print_array(stdout, &kv->value.v.arr, 8);
        else print_scalar(stdout, &kv->value);
        putchar('\n');
    }
    /* The chat template's family, as lethe chat / lethe_chat_apply would use it. */
    lt_gguf_str tmpl;
    if (lt_gguf_get_str(g, "tokenizer.chat_template", &tmpl)) {
        char *t = malloc((size_t)tmpl.len + 1);
        const char *fam = NULL;
        if (t) {
            memcpy(t, tmpl.data, (size_t)tmpl.len);
            t[tmpl.len] = 0;
            fam = lethe_chat_template_detect_text(t);
            free(t);
        }
        printf("chat template: %s (%llu bytes)\n", fam ? fam : "not recognised", (unsigned long long)tmpl.len);
    } else {
        printf("chat template: none\n");
    }
    printf("tensors (%lld):\n  %-36s %-8s %-24s %12s\n", (long long)lt_gguf_n_tensors(g), "name", "type", "shape", "bytes");
    size_t total = 0;
    for (int64_t i = 0; i < lt_gguf_n_tensors(g); i++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(g, i);
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("  %-36s %-8s %-24s %12zu%s\n", t->cname, lt_type_name(t->type), shape, t->n_bytes,
               lt_type_supported(t->type) ? "" : "  (type not supported)");
        total += t->n_bytes;
    }
    printf("total tensor bytes: %zu (%.2f MiB)\n", total, total / 1048576.0);
    lt_gguf_close(g);
    return 0;
}

static int info_llama2c(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "lethe info: cannot open '%s'\n", path); return 1; }
    unsigned char head[28];
    size_t n = fread(head, 1, sizeof head, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    llama2c_layout L;
    char err[LETHE_ERR_MAX];
    if (n < sizeof head || size < 0 || llama2c_parse(head, (size_t)size, &L, err) != LETHE_OK) {
        fprintf(stderr, "lethe info: '%s' is neither GGUF nor a llama2.c checkpoint: %s\n", path, n < sizeof head ? "too small" : err);
        return 1;
    }
    printf("file: %s\nformat: llama2.c checkpoint (legacy), %ld bytes, F32\n", path, size);
    printf("  dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d, %s classifier\n",
           L.dim, L.hidden_dim, L.n_layers, L.n_heads, L.n_kv_heads, L.vocab_size, L.seq_len,
           L.shared_classifier ? "shared" : "separate");
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lethe info -m MODEL  (also prints the CPU features and the SIMD path)\n");
            return 0;
        }
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(model = opt_value(argc, argv, &i))) return EXIT_USAGE;
        } else {
            return unknown_option(argv[i]);
        }
    }
    if (!model) { fprintf(stderr, "lethe info: need -m MODEL\n"); return usage_error(); }
    char feat[160];
    printf("cpu: %s\nsimd: %s (LETHE_SIMD=scalar|avx2|avx512 overrides)\n", lt_cpu_features_str(feat, sizeof feat),
           lt_simd_path());
    fflush(stdout);
    return lt_gguf_has_magic(model) ? info_gguf(model) : info_llama2c(model);
}
