/* lethe quantize IN.gguf OUT.gguf TYPE: writes a copy of a GGUF model with
 * its weight matrices quantised the way llama-quantize does it (same types
 * per tensor, same bytes per tensor: see tensor/quantize.h). Like `info`, it
 * works on the file format directly (format/), not on a loaded model.
 *
 * Tensors are visited in llama.cpp's order (by layer, then by name), which
 * is also the order they are written in. Each tensor is converted to F32 a
 * chunk of rows at a time and quantised by all threads, so memory stays at
 * a few chunks whatever the model size. The output goes to a temporary file
 * that is renamed to OUT at the end (gguf_write.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "tensor/quantize.h"
#include "tensor/threadpool.h"
#include "tensor/types.h"
#include "util/error.h"

#define QUANT_VERSION 2 /* general.quantization_version, GGML_QNT_VERSION */
#define CHUNK_ELEMENTS (4 << 20)

static void usage(FILE *f) {
    fprintf(f,
            "usage: lethe quantize IN.gguf OUT.gguf TYPE [options]\n"
            "Writes OUT.gguf with the weight matrices of IN.gguf (F32, F16 or BF16) quantised to TYPE, choosing\n"
            "each tensor's type as llama-quantize does and producing the same bytes (its reference quantisers,\n"
            "no importance matrix). Norms and other vectors are copied.\n"
            "types:\n");
    for (const lt_quant_scheme *s = lt_quant_schemes(); s->name; s++) fprintf(f, "  %-8s %s\n", s->name, s->desc);
    fprintf(f,
            "options:\n"
            "  -t, --threads N   worker threads (default: all cores)\n"
            "  --pure            every weight matrix in TYPE's base type (no Q6_K output / attn_v / ffn_down)\n"
            "  -v, --verbose     one line per tensor\n");
}

static const char *scheme_list(void) {
    static char buf[256];
    size_t n = 0;
    buf[0] = 0;
    for (const lt_quant_scheme *s = lt_quant_schemes(); s->name && n < sizeof buf; s++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? ", " : "", s->name);
    return buf;
}

typedef struct {
    const lt_gguf_tensor *t;
    lt_type dst;
    int64_t n_per_row;
    int64_t row0, nrows;  /* the chunk */
    size_t src_row, dst_row;
    uint8_t *out;
    float **scratch;      /* one row of floats per thread */
    int64_t bad_row[64];  /* per thread: first row with a non-finite value, or -1 */
} chunk_job;

static void chunk_run(void *ctx, int ith, int nth) {
    chunk_job *j = ctx;
    long lo, hi;
    tp_split((long)j->nrows, ith, nth, &lo, &hi);
    const lt_to_float_fn to_float = lt_type_traits_scalar((lt_type)j->t->type)->to_float;
    float *x = j->scratch[ith];
    for (long r = lo; r < hi; r++) {
        const int64_t row = j->row0 + r;
        to_float((const uint8_t *)j->t->data + (size_t)row * j->src_row, x, j->n_per_row);
        for (int64_t e = 0; e < j->n_per_row; e++)
            if (!isfinite(x[e])) {
                if (j->bad_row[ith] < 0) j->bad_row[ith] = row;
                break;
            }
        lt_quantize_rows(j->dst, x, j->out + (size_t)r * j->dst_row, 1, j->n_per_row);
    }
}

static bool is_float(int t) { return t == LT_F32 || t == LT_F16 || t == LT_BF16; }

typedef struct {
    lt_gguf_file *in;
    lt_gguf_writer *w;
    threadpool *tp;
    float **scratch;
    int n_scratch;
    uint8_t *out;
    int64_t *order;
    lt_type *types;
    const char **names;
} qstate;

static void qstate_free(qstate *q) {
    if (q->scratch)
        for (int i = 0; i < q->n_scratch; i++) free(q->scratch[i]);
    free(q->scratch);
    free(q->out);
    free(q->order);
    free(q->types);
    free(q->names);
    tp_free(q->tp);
    lt_gguf_writer_free(q->w);
    if (q->in) lt_gguf_close(q->in);
}

/* Quantises (or copies) one tensor into the output. */
static bool write_tensor(qstate *q, const lt_gguf_tensor *t, lt_type dst, const char *out_path) {
    char err[LETHE_ERR_MAX];
    if (dst == (lt_type)t->type) {
        if (lt_gguf_write_data(q->w, t->data, t->n_bytes, err)) return true;
        fprintf(stderr, "lethe quantize: %s\n", err);
        return false;
    }
    const int64_t n_per_row = t->ne[0];
    const int64_t nrows = n_per_row ? (int64_t)(t->n_elements / (uint64_t)n_per_row) : 0;
    int64_t chunk = n_per_row ? CHUNK_ELEMENTS / n_per_row : 1;
    if (chunk < 1) chunk = 1;
    chunk_job j = {t, dst, n_per_row, 0, 0, lt_row_bytes((lt_type)t->type, n_per_row), lt_row_bytes(dst, n_per_row), q->out,
                   q->scratch, {0}};
    for (int64_t r0 = 0; r0 < nrows; r0 += chunk) {
        j.row0 = r0;
        j.nrows = nrows - r0 < chunk ? nrows - r0 : chunk;
        for (int i = 0; i < 64; i++) j.bad_row[i] = -1;
        tp_run(q->tp, chunk_run, &j);
        for (int i = 0; i < 64; i++)
            if (j.bad_row[i] >= 0) {
                fprintf(stderr, "lethe quantize: tensor '%s' has a NaN or infinite value in row %lld; not writing '%s'\n", t->cname,
                        (long long)j.bad_row[i], out_path);
                return false;
            }
        if (!lt_gguf_write_data(q->w, q->out, (size_t)j.nrows * j.dst_row, err)) {
            fprintf(stderr, "lethe quantize: %s\n", err);
            return false;
        }
    }
    return true;
}

static bool get_u32_or(const lt_gguf_file *f, const char *arch, const char *suffix, uint32_t *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return lt_gguf_get_u32(f, key, out);
}

static int quantize(const char *in_path, const char *out_path, const lt_quant_scheme *s, bool pure, int n_threads, bool verbose) {
    qstate q = {0};
    char err[LETHE_ERR_MAX];
    lethe_status st;
    double t0 = now_seconds();
    int rc = 1;
    if (!(q.in = lt_gguf_open(in_path, err, &st))) {
        fprintf(stderr, "lethe quantize: %s\n", err);
        return 1;
    }
    const int64_t n = lt_gguf_n_tensors(q.in);
    if (n == 0) {
        fprintf(stderr, "lethe quantize: '%s' has no tensors\n", in_path);
        goto done;
    }

    /* hyper-parameters the rules use */
    char arch[64] = "";
    lt_gguf_str as;
    if (lt_gguf_get_str(q.in, "general.architecture", &as)) lt_gguf_str_copy(as, arch, sizeof arch);
    uint32_t n_layer = 0, n_expert = 0, n_head = 0, n_head_kv = 0;
    q.names = calloc((size_t)n, sizeof *q.names);
    q.order = calloc((size_t)n, sizeof *q.order);
    q.types = calloc((size_t)n, sizeof *q.types);
    if (!q.names || !q.order || !q.types) { fprintf(stderr, "lethe quantize: out of memory\n"); goto done; }
    int max_layer = -1;
    for (int64_t i = 0; i < n; i++) {
        q.names[i] = lt_gguf_tensor_at(q.in, i)->cname;
        int l = lt_quant_layer_of(q.names[i]);
        if (l > max_layer) max_layer = l;
    }
    if (!*arch || !get_u32_or(q.in, arch, "block_count", &n_layer)) n_layer = (uint32_t)(max_layer + 1);
    if (*arch) {
        get_u32_or(q.in, arch, "expert_count", &n_expert);
        get_u32_or(q.in, arch, "attention.head_count", &n_head);
        get_u32_or(q.in, arch, "attention.head_count_kv", &n_head_kv);
    }
    const bool is_70b = !strcmp(arch, "llama") && n_layer == 80 && n_head_kv && n_head != n_head_kv;
    lt_quant_plan plan;
    lt_quant_plan_init(&plan, s, pure, (int)n_layer, (int)n_expert, is_70b, q.names, n);
    if (!lt_quant_tensor_order(q.names, q.order, n)) { fprintf(stderr, "lethe quantize: out of memory\n"); goto done; }

    /* every tensor's type, and the checks, before anything is written */
    size_t in_bytes = 0, out_bytes = 0;
    q.w = lt_gguf_writer_new();
    if (!q.w) { fprintf(stderr, "lethe quantize: out of memory\n"); goto done; }
    int64_t max_row = 0, max_chunk_bytes = 0, n_quantised = 0;
    for (int64_t k = 0; k < n; k++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(q.in, q.order[k]);
        char note[LETHE_ERR_MAX];
        lt_type dst;
        if (!lt_quant_plan_type(&plan, t->cname, t->ne, (lt_type)t->type, &dst, note, sizeof note)) {
            fprintf(stderr, "lethe quantize: %s\n", note);
            goto done;
        }
        if (note[0]) fprintf(stderr, "lethe quantize: warning: %s\n", note);
        if (dst != (lt_type)t->type) {
            if (!is_float(t->type)) {
                fprintf(stderr,
                        "lethe quantize: tensor '%s' is stored as %s; quantize needs F32, F16 or BF16 weights (it does not "
                        "requantize)\n",
                        t->cname, lt_type_name(t->type));
                goto done;
            }
            if (!lt_quantize_supported(dst)) { /* not reachable with the schemes above */
                fprintf(stderr, "lethe quantize: tensor '%s': lethe cannot write %s\n", t->cname, lt_type_name(dst));
                goto done;
            }
            n_quantised++;
            if (t->ne[0] > max_row) max_row = t->ne[0];
            int64_t chunk = t->ne[0] ? CHUNK_ELEMENTS / t->ne[0] : 1;
            if (chunk < 1) chunk = 1;
            int64_t cb = (int64_t)lt_row_bytes(dst, t->ne[0]) * chunk;
            if (cb > max_chunk_bytes) max_chunk_bytes = cb;
        }
        q.types[q.order[k]] = dst;
        int nd = (int)t->n_dims;
        if (!lt_gguf_add_tensor(q.w, t->cname, nd, t->ne, dst, err)) {
            fprintf(stderr, "lethe quantize: %s\n", err);
            goto done;
        }
        in_bytes += t->n_bytes;
        out_bytes += lt_gguf_writer_tensor_bytes(q.w, k);
    }
    if (plan.n_fallback)
        fprintf(stderr, "lethe quantize: warning: %d of %lld tensors needed a fallback type (row length)\n", plan.n_fallback,
                (long long)n);

    /* metadata: a copy, with llama-quantize's changes */
    bool ok = true;
    for (int64_t i = 0; i < lt_gguf_n_kv(q.in) && ok; i++) {
        const lt_gguf_kv *kv = lt_gguf_kv_at(q.in, i);
        char key[1024];
        if (kv->key.len >= sizeof key || memchr(kv->key.data, 0, (size_t)kv->key.len)) {
            fprintf(stderr, "lethe quantize: metadata key %lld is longer than %zu bytes or has a NUL byte\n", (long long)i, sizeof key - 1);
            goto done;
        }
        ok = lt_gguf_set_value(q.w, lt_gguf_str_copy(kv->key, key, sizeof key), &kv->value);
    }
    /* set as llama.cpp does: removed, then appended */
    ok = ok && lt_gguf_remove_key(q.w, "general.quantization_version") && lt_gguf_set_u32(q.w, "general.quantization_version", QUANT_VERSION);
    ok = ok && lt_gguf_remove_key(q.w, "general.file_type") && lt_gguf_set_u32(q.w, "general.file_type", (uint32_t)s->ftype);
    ok = ok && lt_gguf_remove_key(q.w, "split.no") && lt_gguf_remove_key(q.w, "split.count") &&
         lt_gguf_remove_key(q.w, "split.tensors.count");
    if (!ok) { fprintf(stderr, "lethe quantize: out of memory\n"); goto done; }

    if (n_threads <= 0) n_threads = tp_default_threads();
    if (n_threads > 64) n_threads = 64; /* chunk_job tracks 64 threads */
    if (!(q.tp = tp_create(n_threads))) { fprintf(stderr, "lethe quantize: cannot start threads\n"); goto done; }
    q.n_scratch = tp_n_threads(q.tp);
    q.scratch = calloc((size_t)q.n_scratch, sizeof *q.scratch);
    q.out = malloc(max_chunk_bytes ? (size_t)max_chunk_bytes : 1);
    ok = q.scratch && q.out;
    for (int i = 0; ok && i < q.n_scratch; i++) ok = (q.scratch[i] = malloc(sizeof(float) * (size_t)(max_row ? max_row : 1))) != NULL;
    if (!ok) { fprintf(stderr, "lethe quantize: out of memory\n"); goto done; }

    if (!lt_gguf_write_begin(q.w, out_path, err)) {
        fprintf(stderr, "lethe quantize: %s\n", err);
        goto done;
    }
    for (int64_t k = 0; k < n; k++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(q.in, q.order[k]);
        const lt_type dst = q.types[q.order[k]];
        if (verbose)
            fprintf(stderr, "[%4lld/%4lld] %-36s %-6s -> %-6s\n", (long long)k + 1, (long long)n, t->cname, lt_type_name(t->type),
                    lt_type_name(dst));
        if (!write_tensor(&q, t, dst, out_path)) goto done;
    }
    if (!lt_gguf_write_end(q.w, err)) {
        fprintf(stderr, "lethe quantize: %s\n", err);
        goto done;
    }
    printf("%s: %s, %lld tensors (%lld quantised), %.2f MiB -> %.2f MiB, %.1f s\n", out_path, s->name, (long long)n,
           (long long)n_quantised, in_bytes / 1048576.0, out_bytes / 1048576.0, now_seconds() - t0);
    rc = 0;
done:
    qstate_free(&q);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0, n_threads = 0;
    bool pure = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            long v;
            if (!opt_int(argc, argv, &i, 1, 1024, &v)) return EXIT_USAGE;
            n_threads = (int)v;
        } else if (!strcmp(a, "--pure")) {
            pure = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (a[0] == '-' && a[1]) {
            return unknown_option(a);
        } else {
            if (n_pos == 3) {
                fprintf(stderr, "lethe quantize: unexpected argument '%s' (expected IN.gguf OUT.gguf TYPE)\n", a);
                return usage_error();
            }
            pos[n_pos++] = a;
        }
    }
    if (n_pos < 3) {
        fprintf(stderr, "lethe quantize: need IN.gguf OUT.gguf TYPE\n");
        return usage_error();
    }
    const lt_quant_scheme *s = lt_quant_scheme_find(pos[2]);
    if (!s) {
        fprintf(stderr, "lethe quantize: unknown type '%s' (%s)\n", pos[2], scheme_list());
        return usage_error();
    }
    if (!lt_gguf_has_magic(pos[0])) {
        fprintf(stderr, "lethe quantize: '%s' is not a GGUF file (or cannot be read)\n", pos[0]);
        return 1;
    }
    return quantize(pos[0], pos[1], s, pure, n_threads, verbose);
}
