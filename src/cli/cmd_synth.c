/* lethe synth-model --shape NAME OUT.gguf: a random-weight F16 GGUF with the
 * hyper-parameters of a real model (dimensions, heads, KV heads, FFN size,
 * vocabulary size, RoPE base, context), for measuring speed at real sizes
 * without downloading weights. Weights are N(0, 0.02^2) and norms 1.0, as in
 * the shared random models (shared/models/synthetic/make_random_llama2c.py),
 * which keeps activations in a sane range; Qwen2's q/k/v biases are
 * N(0, 0.02^2) too.
 *
 * The vocabulary (every tokenizer.* key) is copied from a GGUF that has one,
 * by default the Llama SPM vocabulary of the shared models. A shape whose
 * real vocabulary is larger keeps that size: the copied vocabulary is padded
 * with unused tokens ("<synth_pad_N>", token type 5), so the embedding and
 * output matrices have their real size; --vocab-size overrides it.
 *
 * The weights depend only on the seed, the shape and the tensor (each chunk
 * of 64 Ki elements has its own generator), not on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "tensor/quantize.h"
#include "tensor/threadpool.h"
#include "util/error.h"
#include "util/fp16.h"

typedef struct {
    const char *name, *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base, rms_eps;
    bool tied, qkv_bias;
    const char *desc;
} shape;

static const shape SHAPES[] = {
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, false, false, "TinyLlama 1.1B"},
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true, false,
     "Llama 3.2 1B (without its llama3 RoPE scaling)"},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true, true, "Qwen2.5 0.5B"},
    {"smollm2-360m", "llama", 960, 32, 15, 5, 2560, 49152, 8192, 100000.0f, 1e-5f, true, false, "SmolLM2 360M"},
    {"tiny", "llama", 192, 2, 6, 2, 512, 0, 512, 10000.0f, 1e-5f, false, false,
     "a small test shape (rows of 192: the k-quants fall back); vocabulary of the vocab file"},
    {NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, false, false, NULL},
};

#define CHUNK (1 << 16)
#define WEIGHT_STD 0.02

static void usage(FILE *f) {
    fprintf(f, "usage: lethe synth-model --shape NAME OUT.gguf [options]\n"
               "Writes a random-weight F16 GGUF with the shape of a real model (weights N(0, 0.02^2), norms 1).\n"
               "shapes:\n");
    for (const shape *s = SHAPES; s->name; s++)
        fprintf(f, "  %-15s %s: %s, d %d, %d layers, %d/%d heads, ffn %d, vocab %d\n", s->name, s->desc, s->arch, s->n_embd,
                s->n_layer, s->n_head, s->n_head_kv, s->n_ff, s->n_vocab);
    fprintf(f, "options:\n"
               "  --seed S          random seed (default 1234)\n"
               "  --layers N        number of layers (default: the shape's)\n"
               "  --vocab FILE      GGUF to copy the vocabulary from (default: ggml-vocab-llama-spm.gguf under\n"
               "                    $LETHE_MODELS/vocab or ../shared/models/vocab)\n"
               "  --vocab-size N    vocabulary size (default: the shape's; the copied vocabulary is padded with\n"
               "                    unused tokens up to it, and may not be larger)\n"
               "  -t, --threads N   worker threads (default: all cores)\n");
}

/* ---- a small, fast generator: splitmix64 seeding xoshiro256+ ---- */

typedef struct { uint64_t s[4]; } rng;

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream, uint64_t chunk) {
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull) ^ (chunk * 0x8cb92ba72f3d8dd7ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    const uint64_t res = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return res;
}

/* uniform in (0, 1] */
static double rng_unit(rng *r) { return ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

/* n normal deviates with standard deviation sd (Box-Muller, in pairs) */
static void rng_normal(rng *r, float *out, int64_t n, double sd) {
    for (int64_t i = 0; i < n; i += 2) {
        const double rad = sqrt(-2.0 * log(rng_unit(r))) * sd, ang = 6.283185307179586 * rng_unit(r);
        out[i] = (float)(rad * cos(ang));
        if (i + 1 < n) out[i + 1] = (float)(rad * sin(ang));
    }
}

/* ---- tensors ---- */

typedef enum { FILL_NORMAL, FILL_ONES } fill_kind;

typedef struct {
    char name[64];
    int n_dims;
    int64_t ne[4];
    lt_type type;
    fill_kind fill;
} tdesc;

typedef struct {
    const tdesc *t;
    uint64_t seed, stream;
    int64_t e0, n;  /* elements of this batch */
    uint8_t *out;   /* n elements of t->type */
    float **scratch;
} fill_job;

static void fill_run(void *ctx, int ith, int nth) {
    fill_job *j = ctx;
    const int64_t n_chunks = (j->n + CHUNK - 1) / CHUNK;
    long lo, hi;
    tp_split((long)n_chunks, ith, nth, &lo, &hi);
    float *x = j->scratch[ith];
    for (long c = lo; c < hi; c++) {
        const int64_t e = (int64_t)c * CHUNK, k = j->n - e < CHUNK ? j->n - e : CHUNK;
        if (j->t->fill == FILL_ONES) {
            for (int64_t i = 0; i < k; i++) x[i] = 1.0f;
        } else {
            rng r;
            rng_seed(&r, j->seed, j->stream, (uint64_t)((j->e0 + e) / CHUNK));
            rng_normal(&r, x, k, WEIGHT_STD);
        }
        if (j->t->type == LT_F16) {
            uint16_t *o = (uint16_t *)j->out + e;
            for (int64_t i = 0; i < k; i++) o[i] = fp32_to_fp16(x[i]);
        } else {
            memcpy((float *)j->out + e, x, (size_t)k * sizeof(float));
        }
    }
}

static void add_desc(tdesc *ts, int *n, const char *name, int n_dims, int64_t ne0, int64_t ne1, lt_type type, fill_kind fill) {
    tdesc *t = &ts[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->ne[2] = t->ne[3] = 1;
    t->type = type;
    t->fill = fill;
}

static const char *default_vocab(void) {
    static char buf[4096];
    const char *env = getenv("LETHE_MODELS");
    if (env && *env) {
        snprintf(buf, sizeof buf, "%s/vocab/ggml-vocab-llama-spm.gguf", env);
        if (lt_gguf_has_magic(buf)) return buf;
    }
    return "../shared/models/vocab/ggml-vocab-llama-spm.gguf";
}

/* Copies the tokenizer.* keys of v into w, padding the token arrays to
 * n_vocab entries. */
static bool copy_vocab(lt_gguf_writer *w, const lt_gguf_file *v, int64_t n_vocab, const char *vocab_path) {
    const lt_gguf_array *toks = lt_gguf_get_arr(v, "tokenizer.ggml.tokens");
    const int64_t n_have = toks && toks->type == GGUF_TYPE_STRING ? (int64_t)toks->n : 0;
    if (n_have <= 0) {
        fprintf(stderr, "lethe synth-model: '%s' has no vocabulary (tokenizer.ggml.tokens)\n", vocab_path);
        return false;
    }
    if (n_vocab < n_have) {
        fprintf(stderr, "lethe synth-model: vocabulary size %lld is smaller than the %lld tokens of '%s'\n", (long long)n_vocab,
                (long long)n_have, vocab_path);
        return false;
    }
    for (int64_t i = 0; i < lt_gguf_n_kv(v); i++) {
        const lt_gguf_kv *kv = lt_gguf_kv_at(v, i);
        char key[256];
        if (kv->key.len >= sizeof key || strncmp(kv->key.data, "tokenizer.", 10)) continue;
        lt_gguf_str_copy(kv->key, key, sizeof key);
        if (!lt_gguf_set_value(w, key, &kv->value)) return false;
    }
    if (n_vocab == n_have) return true;
    /* padding: the copied entries, then "<synth_pad_N>" unused tokens */
    const size_t nv = (size_t)n_vocab;
    const char **strs = malloc(nv * sizeof *strs);
    uint64_t *lens = malloc(nv * sizeof *lens);
    char *pad = malloc((nv - (size_t)n_have) * 24);
    float *scores = malloc(nv * sizeof *scores);
    int32_t *types = malloc(nv * sizeof *types);
    bool ok = strs && lens && pad && scores && types;
    if (ok) {
        const lt_gguf_array *sc = lt_gguf_get_arr(v, "tokenizer.ggml.scores");
        const lt_gguf_array *ty = lt_gguf_get_arr(v, "tokenizer.ggml.token_type");
        for (int64_t i = 0; i < n_vocab; i++) {
            if (i < n_have) {
                strs[i] = toks->strs[i].data;
                lens[i] = toks->strs[i].len;
                scores[i] = sc && (uint64_t)i < sc->n ? (float)lt_gguf_arr_f64(sc, (uint64_t)i) : 0.0f;
                types[i] = ty && (uint64_t)i < ty->n ? (int32_t)lt_gguf_arr_i64(ty, (uint64_t)i) : 1;
            } else {
                char *p = pad + (size_t)(i - n_have) * 24;
                lens[i] = (uint64_t)snprintf(p, 24, "<synth_pad_%lld>", (long long)i);
                strs[i] = p;
                scores[i] = -1e9f;
                types[i] = 5; /* unused */
            }
        }
        ok = lt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n_vocab) &&
             lt_gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_vocab) &&
             lt_gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n_vocab);
    }
    free(strs);
    free(lens);
    free(pad);
    free(scores);
    free(types);
    if (!ok) fprintf(stderr, "lethe synth-model: out of memory\n");
    return ok;
}

static bool set_hparams(lt_gguf_writer *w, const shape *s, int n_layer, int64_t n_vocab) {
    char key[128], name[96];
    const char *a = s->arch;
    bool ok = lt_gguf_set_str(w, "general.architecture", a);
    snprintf(name, sizeof name, "lethe-synth %s", s->name);
    ok = ok && lt_gguf_set_str(w, "general.name", name) && lt_gguf_set_u32(w, "general.file_type", 1 /* MOSTLY_F16 */);
#define U32(suffix, v) (snprintf(key, sizeof key, "%s." suffix, a), lt_gguf_set_u32(w, key, (uint32_t)(v)))
#define F32(suffix, v) (snprintf(key, sizeof key, "%s." suffix, a), lt_gguf_set_f32(w, key, (v)))
    ok = ok && U32("context_length", s->n_ctx) && U32("embedding_length", s->n_embd) && U32("feed_forward_length", s->n_ff) &&
         U32("block_count", n_layer) && U32("attention.head_count", s->n_head) && U32("attention.head_count_kv", s->n_head_kv) &&
         U32("rope.dimension_count", s->n_embd / s->n_head) && F32("attention.layer_norm_rms_epsilon", s->rms_eps) &&
         F32("rope.freq_base", s->rope_base) && U32("vocab_size", n_vocab);
#undef U32
#undef F32
    return ok;
}

static int synth(const shape *s, const char *out_path, uint64_t seed, int n_layer, int64_t n_vocab, const char *vocab_path,
                 int n_threads) {
    char err[LETHE_ERR_MAX];
    lethe_status st;
    int rc = 1;
    double t0 = now_seconds();
    lt_gguf_file *v = lt_gguf_open(vocab_path, err, &st);
    if (!v) {
        fprintf(stderr, "lethe synth-model: vocabulary: %s\n", err);
        return 1;
    }
    const lt_gguf_array *toks = lt_gguf_get_arr(v, "tokenizer.ggml.tokens");
    if (n_vocab <= 0) n_vocab = s->n_vocab > 0 ? s->n_vocab : toks ? (int64_t)toks->n : 0;

    const int64_t d = s->n_embd, hd = s->n_embd / s->n_head, kv = hd * s->n_head_kv;
    const int max_t = 3 + 12 * n_layer;
    tdesc *ts = calloc((size_t)max_t, sizeof *ts);
    const char **names = calloc((size_t)max_t, sizeof *names);
    int64_t *order = calloc((size_t)max_t, sizeof *order);
    lt_gguf_writer *w = lt_gguf_writer_new();
    threadpool *tp = NULL;
    float **scratch = NULL;
    uint8_t *buf = NULL;
    int n_scratch = 0, nt = 0;
    if (!ts || !names || !order || !w) { fprintf(stderr, "lethe synth-model: out of memory\n"); goto done; }
    if (!s->tied) add_desc(ts, &nt, "output.weight", 2, d, n_vocab, LT_F16, FILL_NORMAL);
    add_desc(ts, &nt, "output_norm.weight", 1, d, 1, LT_F32, FILL_ONES);
    add_desc(ts, &nt, "token_embd.weight", 2, d, n_vocab, LT_F16, FILL_NORMAL);
    for (int l = 0; l < n_layer; l++) {
        char nm[64];
#define T(suffix, nd, a, b, ty, fill) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), add_desc(ts, &nt, nm, nd, a, b, ty, fill))
        T("attn_norm.weight", 1, d, 1, LT_F32, FILL_ONES);
        T("attn_q.weight", 2, d, d, LT_F16, FILL_NORMAL);
        T("attn_k.weight", 2, d, kv, LT_F16, FILL_NORMAL);
        T("attn_v.weight", 2, d, kv, LT_F16, FILL_NORMAL);
        if (s->qkv_bias) {
            T("attn_q.bias", 1, d, 1, LT_F32, FILL_NORMAL);
            T("attn_k.bias", 1, kv, 1, LT_F32, FILL_NORMAL);
            T("attn_v.bias", 1, kv, 1, LT_F32, FILL_NORMAL);
        }
        T("attn_output.weight", 2, d, d, LT_F16, FILL_NORMAL);
        T("ffn_norm.weight", 1, d, 1, LT_F32, FILL_ONES);
        T("ffn_gate.weight", 2, d, s->n_ff, LT_F16, FILL_NORMAL);
        T("ffn_up.weight", 2, d, s->n_ff, LT_F16, FILL_NORMAL);
        T("ffn_down.weight", 2, s->n_ff, d, LT_F16, FILL_NORMAL);
#undef T
    }
    for (int i = 0; i < nt; i++) names[i] = ts[i].name;
    if (!lt_quant_tensor_order(names, order, nt)) { /* llama.cpp's order, as llama-quantize writes files */
        fprintf(stderr, "lethe synth-model: out of memory\n");
        goto done;
    }

    if (!set_hparams(w, s, n_layer, n_vocab)) {
        fprintf(stderr, "lethe synth-model: out of memory\n");
        goto done;
    }
    if (!copy_vocab(w, v, n_vocab, vocab_path)) goto done; /* it says why */
    int64_t max_batch = 0;
    for (int k = 0; k < nt; k++) {
        const tdesc *t = &ts[order[k]];
        if (!lt_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, err)) {
            fprintf(stderr, "lethe synth-model: %s\n", err);
            goto done;
        }
        int64_t ne = t->ne[0] * t->ne[1];
        if (ne > max_batch) max_batch = ne;
    }
    if (max_batch > 64 * CHUNK) max_batch = 64 * CHUNK;
    if (n_threads <= 0) n_threads = tp_default_threads();
    if (!(tp = tp_create(n_threads))) { fprintf(stderr, "lethe synth-model: cannot start threads\n"); goto done; }
    n_scratch = tp_n_threads(tp);
    scratch = calloc((size_t)n_scratch, sizeof *scratch);
    buf = malloc((size_t)max_batch * sizeof(float));
    bool ok = scratch && buf;
    for (int i = 0; ok && i < n_scratch; i++) ok = (scratch[i] = malloc(CHUNK * sizeof(float))) != NULL;
    if (!ok) { fprintf(stderr, "lethe synth-model: out of memory\n"); goto done; }
    if (!lt_gguf_write_begin(w, out_path, err)) {
        fprintf(stderr, "lethe synth-model: %s\n", err);
        goto done;
    }
    size_t total = 0;
    for (int k = 0; k < nt; k++) {
        const tdesc *t = &ts[order[k]];
        const int64_t ne = t->ne[0] * t->ne[1];
        const size_t esz = t->type == LT_F16 ? 2 : 4;
        for (int64_t e0 = 0; e0 < ne; e0 += max_batch) {
            fill_job j = {t, seed, (uint64_t)order[k] + 1, e0, ne - e0 < max_batch ? ne - e0 : max_batch, buf, scratch};
            tp_run(tp, fill_run, &j);
            if (!lt_gguf_write_data(w, buf, (size_t)j.n * esz, err)) {
                fprintf(stderr, "lethe synth-model: %s\n", err);
                goto done;
            }
        }
        total += (size_t)ne * esz;
    }
    if (!lt_gguf_write_end(w, err)) {
        fprintf(stderr, "lethe synth-model: %s\n", err);
        goto done;
    }
    printf("%s: %s shape, %d layers, vocab %lld, %d tensors, %.1f MiB, %.1f s\n", out_path, s->name, n_layer, (long long)n_vocab, nt,
           total / 1048576.0, now_seconds() - t0);
    rc = 0;
done:
    if (scratch)
        for (int i = 0; i < n_scratch; i++) free(scratch[i]);
    free(scratch);
    free(buf);
    tp_free(tp);
    lt_gguf_writer_free(w);
    free(ts);
    free(names);
    free(order);
    lt_gguf_close(v);
    return rc;
}

int cmd_synth(int argc, char **argv) {
    const char *shape_name = NULL, *out = NULL, *vocab = NULL;
    uint64_t seed = 1234;
    long layers = 0, vocab_size = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--shape")) {
            if (!(shape_name = opt_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (!strcmp(a, "--seed")) {
            if (!opt_u64(argc, argv, &i, &seed)) return EXIT_USAGE;
        } else if (!strcmp(a, "--layers")) {
            if (!opt_int(argc, argv, &i, 1, 1024, &layers)) return EXIT_USAGE;
        } else if (!strcmp(a, "--vocab")) {
            if (!(vocab = opt_value(argc, argv, &i))) return EXIT_USAGE;
        } else if (!strcmp(a, "--vocab-size")) {
            if (!opt_int(argc, argv, &i, 1, 1 << 22, &vocab_size)) return EXIT_USAGE;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!opt_int(argc, argv, &i, 1, 1024, &threads)) return EXIT_USAGE;
        } else if (a[0] == '-' && a[1]) {
            return unknown_option(a);
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "lethe synth-model: unexpected argument '%s'\n", a);
            return usage_error();
        }
    }
    if (!shape_name || !out) {
        fprintf(stderr, "lethe synth-model: need --shape NAME and OUT.gguf\n");
        return usage_error();
    }
    const shape *s = NULL;
    for (const shape *x = SHAPES; x->name; x++)
        if (!strcmp(x->name, shape_name)) s = x;
    if (!s) {
        fprintf(stderr, "lethe synth-model: unknown shape '%s' (", shape_name);
        for (const shape *x = SHAPES; x->name; x++) fprintf(stderr, "%s%s", x == SHAPES ? "" : ", ", x->name);
        fprintf(stderr, ")\n");
        return usage_error();
    }
    return synth(s, out, seed, layers ? (int)layers : s->n_layer, vocab_size, vocab ? vocab : default_vocab(), (int)threads);
}
