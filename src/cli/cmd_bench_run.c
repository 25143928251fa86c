/* `lethe bench -m MODEL`: for each model, each thread count: the pp, tg and
 * pg tests at each depth, each one untimed warm-up then `reps` timed runs,
 * on random tokens as llama-bench uses. Before a thread count's first tg
 * test, the read bandwidth is measured on the context's own thread pool, and
 * each tg result gets its roofline: bandwidth / the bytes a step reads (the
 * weights, and the K and V rows of the slots it attends). */
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tensor/cpu.h"
#include "tensor/membw.h"
#include "tensor/quantize.h"

/* llama-bench's label: "llama 1.1B Q4_0". The type is the file type the
 * GGUF names, else the type holding most of the layer weight bytes. */
static void model_label(const lethe_model *m, char *out, size_t n) {
    char size[32], type[48] = "";
    const double p = (double)m->n_params;
    if (p >= 1e9) snprintf(size, sizeof size, "%.1fB", p / 1e9);
    else if (p >= 1e6) snprintf(size, sizeof size, "%.0fM", p / 1e6);
    else snprintf(size, sizeof size, "%.0fK", p / 1e3);
    uint32_t ft;
    if (m->gguf && lt_gguf_get_u32(m->gguf, "general.file_type", &ft)) {
        if (ft == 0) snprintf(type, sizeof type, "all F32");
        else if (ft == 1) snprintf(type, sizeof type, "F16");
        else if (ft == 32) snprintf(type, sizeof type, "BF16");
        for (const lt_quant_scheme *s = lt_quant_schemes(); s->name && !type[0]; s++)
            if (s->ftype == (int)ft) snprintf(type, sizeof type, "%s", s->name);
    }
    if (!type[0]) {
        uint64_t bytes[LT_TYPE_COUNT] = {0};
        for (int l = 0; l < m->hp.n_layer; l++) {
            const weight *w[] = {&m->layers[l].wq, &m->layers[l].wk, &m->layers[l].wv, &m->layers[l].wo,
                                 &m->layers[l].w_gate, &m->layers[l].w_up, &m->layers[l].w_down};
            for (int k = 0; k < 7; k++)
                if ((unsigned)w[k]->type < LT_TYPE_COUNT)
                    bytes[w[k]->type] += lt_row_bytes(w[k]->type, w[k]->n_cols) * (uint64_t)w[k]->n_rows;
        }
        int best = 0;
        for (int t = 1; t < LT_TYPE_COUNT; t++)
            if (bytes[t] > bytes[best]) best = t;
        snprintf(type, sizeof type, "%s%s", best == LT_F32 ? "all " : "", lt_type_name(best));
    }
    snprintf(out, n, "%s %s %s", m->arch->name, size, type);
}

typedef struct {
    lethe_ctx *c;
    lethe_seq_params sp;
    const lethe_token *toks;
    float *logits;
} runner;

static double now_ns(void) { return now_seconds() * 1e9; }

/* One run of a test in a fresh sequence: n_depth tokens in one append,
 * untimed, then timed: n_prompt tokens in one append, n_gen single-token
 * steps. *slots: the mean over the decode steps of the cache slots each
 * attends (held before it, plus its own), from the sequence's count before
 * the first and after the last, exact for a cache that only grows and for
 * one held at its budget. Nanoseconds, or < 0 on failure. */
static double run_once(const runner *r, int n_depth, int n_prompt, int n_gen, double *slots) {
    char err[512];
    lethe_seq *s = lethe_seq_create(r->c, &r->sp, err, sizeof err);
    if (!s) {
        fprintf(stderr, "lethe bench: %s\n", err);
        return -1;
    }
    lethe_status st = n_depth > 0 ? lethe_seq_append(s, r->toks, n_depth, r->logits) : LETHE_OK;
    const lethe_token *t = r->toks + n_depth;
    double t0 = now_ns();
    if (!st && n_prompt > 0) st = lethe_seq_append(s, t, n_prompt, r->logits);
    const int held = lethe_seq_n_cached(s);
    for (int i = 0; i < n_gen && !st; i++) st = lethe_seq_append(s, &t[n_prompt + i], 1, r->logits);
    double dt = now_ns() - t0;
    *slots = n_gen > 0 ? (held + 1 + lethe_seq_n_cached(s)) / 2.0 : 0;
    if (st) fprintf(stderr, "lethe bench: %s\n", lethe_seq_error(s));
    lethe_seq_free(s);
    return st ? -1 : dt;
}

typedef struct {
    const bench_args *a;
    int n_rows;
    double *samples;   /* reps */
    double *bw;        /* reps: the read bandwidth just before each */
    lt_membw_buf *buf; /* the bandwidth buffer of the current context */
} bench_state;

/* Passes of the bandwidth read before each timed repetition (best of). */
#define BW_PASSES 2

/* Warm-up, reps timed runs, one printed row. 0 or 1. A tg test with a
 * roofline times a bandwidth read just before each repetition: on a shared
 * host the bandwidth moves between seconds, so each repetition is compared
 * with the bound of its own moment, and the row gives the mean of those
 * ratios. */
static int run_test(bench_state *st, const runner *r, bench_result *res, int n_depth, int n_prompt, int n_gen) {
    const bench_args *a = st->a;
    const bool roofline = n_gen > 0 && n_prompt == 0 && a->bw_bytes && res->bytes_per_token > 0;
    double slots = 0;
    if (roofline && !st->buf) {
        char err[256];
        if (!(st->buf = lt_membw_open(r->c->tp, a->bw_bytes, err, sizeof err))) {
            fprintf(stderr, "lethe bench: %s\n", err);
            return 1;
        }
    }
    if (run_once(r, n_depth, n_prompt, n_gen, &slots) < 0) return 1; /* warm-up */
    for (int k = 0; k < a->reps; k++) {
        if (roofline && (st->bw[k] = lt_membw_pass(st->buf, r->c->tp, BW_PASSES)) <= 0) {
            fprintf(stderr, "lethe bench: bandwidth: read passes disagree on the buffer's contents\n");
            return 1;
        }
        if ((st->samples[k] = run_once(r, n_depth, n_prompt, n_gen, &slots)) < 0) return 1;
    }
    /* K and V rows of every layer's KV heads per slot, in the pool's type */
    const lethe_model *m = r->c->m;
    const double slot_bytes = 2.0 * (double)kv_pool_row_bytes(r->c->kv) * m->hp.n_layer * m->hp.n_head_kv;
    res->kv_bytes_per_token = n_gen > 0 ? (uint64_t)(slots * slot_bytes + 0.5) : 0;
    const double step_bytes = (double)(res->bytes_per_token + res->kv_bytes_per_token);
    double *ts = malloc(sizeof *ts * 2 * (size_t)a->reps);
    if (!ts) {
        fprintf(stderr, "lethe bench: out of memory\n");
        return 1;
    }
    double *pct = ts + a->reps;
    for (int k = 0; k < a->reps; k++) {
        ts[k] = (n_prompt + n_gen) / (st->samples[k] * 1e-9);
        if (roofline) pct[k] = ts[k] * step_bytes / st->bw[k] * 100.0;
    }
    bench_mean_sd(st->samples, a->reps, &res->avg_ns, &res->sd_ns);
    bench_mean_sd(ts, a->reps, &res->avg_ts, &res->sd_ts);
    res->n_prompt = n_prompt;
    res->n_gen = n_gen;
    res->n_depth = n_depth;
    char name[32], at[24] = "";
    if (n_prompt && n_gen) snprintf(name, sizeof name, "pp%d+tg%d", n_prompt, n_gen);
    else if (n_prompt) snprintf(name, sizeof name, "pp%d", n_prompt);
    else snprintf(name, sizeof name, "tg%d", n_gen);
    if (n_depth) snprintf(at, sizeof at, " @ d%d", n_depth);
    snprintf(res->test, sizeof res->test, "%s%s", name, at);
    res->n_samples = a->reps;
    res->samples_ns = st->samples;
    res->has_roofline = roofline;
    if (roofline) {
        double sd;
        bench_mean_sd(st->bw, a->reps, &res->read_bw, &sd);
        bench_mean_sd(pct, a->reps, &res->bound_pct, &sd);
        res->samples_bw = st->bw;
        res->bw_bytes = lt_membw_buf_bytes(st->buf);
        res->bw_passes = BW_PASSES;
        res->bound_ts = res->read_bw / step_bytes;
    }
    free(ts);
    bench_report_row(stdout, a->format, a->bw_bytes > 0, res, st->n_rows++);
    return 0;
}

/* Tokens of the longest run: the deepest context and the longest test. */
static int longest_test(const bench_args *a) {
    int n = 1, d = 0;
    for (int i = 0; i < a->n_prompts; i++) n = a->prompts[i] > n ? a->prompts[i] : n;
    for (int i = 0; i < a->n_gens; i++) n = a->gens[i] > n ? a->gens[i] : n;
    for (int i = 0; i < a->n_pg; i++) n = a->pg[i][0] + a->pg[i][1] > n ? a->pg[i][0] + a->pg[i][1] : n;
    for (int i = 0; i < a->n_depths; i++) d = a->depths[i] > d ? a->depths[i] : d;
    return n + d;
}

/* Every test of one model at one thread count. */
static int bench_threads(bench_state *st, const lethe_model *m, const model_opts *o, bench_result *res, const lethe_token *toks,
                         float *logits) {
    const bench_args *a = st->a;
    lethe_ctx *c = model_opts_context(o, m, o->n_ctx > 0 ? o->n_ctx : longest_test(a) + 1, 1);
    if (!c) return 1;
    runner r = {c, model_opts_seq_params(o), toks, logits};
    res->n_threads = lethe_ctx_n_threads(c);
    int rc = 0;
    for (int i = 0; i < a->n_prompts && !rc; i++)
        for (int d = 0; d < a->n_depths && !rc && a->prompts[i] > 0; d++) rc = run_test(st, &r, res, a->depths[d], a->prompts[i], 0);
    for (int i = 0; i < a->n_gens && !rc; i++)
        for (int d = 0; d < a->n_depths && !rc && a->gens[i] > 0; d++) rc = run_test(st, &r, res, a->depths[d], 0, a->gens[i]);
    for (int i = 0; i < a->n_pg && !rc; i++)
        for (int d = 0; d < a->n_depths && !rc; d++) rc = run_test(st, &r, res, a->depths[d], a->pg[i][0], a->pg[i][1]);
    lt_membw_close(st->buf); /* read on this context's threads */
    st->buf = NULL;
    lethe_ctx_free(c);
    return rc;
}

static int bench_one_model(bench_state *st, const char *path) {
    const bench_args *a = st->a;
    model_opts o = a->mo;
    o.model = path;
    lethe_model *m = model_opts_load(&o);
    if (!m) return 1;
    const int n_tok = longest_test(a);
    lethe_token *toks = malloc(sizeof *toks * (size_t)n_tok);
    float *logits = malloc(sizeof *logits * (size_t)m->hp.n_vocab);
    int rc = 1;
    if (!toks || !logits) {
        fprintf(stderr, "lethe bench: out of memory\n");
        goto out;
    }
    uint64_t x = 42;
    for (int i = 0; i < n_tok; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (lethe_token)((x >> 33) % (uint64_t)m->hp.n_vocab);
    }
    bench_result res;
    memset(&res, 0, sizeof res);
    res.model_file = path;
    model_label(m, res.model_type, sizeof res.model_type);
    res.model_size = m->weight_bytes;
    res.n_params = m->n_params;
    res.simd = lt_simd_path();
    res.kv_type = kv_type_name(o.kv_type);
    res.bytes_per_token = model_decode_bytes(m);
    rc = 0;
    for (int t = 0; t < a->n_threads && !rc; t++) {
        o.n_threads = a->threads[t];
        rc = bench_threads(st, m, &o, &res, toks, logits);
    }
out:
    free(toks);
    free(logits);
    lethe_model_free(m);
    return rc;
}

int bench_run(const bench_args *a) {
    bench_state st;
    memset(&st, 0, sizeof st);
    st.a = a;
    st.samples = malloc(sizeof(double) * (size_t)a->reps);
    st.bw = malloc(sizeof(double) * (size_t)a->reps);
    if (!st.samples || !st.bw) {
        free(st.samples);
        free(st.bw);
        fprintf(stderr, "lethe bench: out of memory\n");
        return 1;
    }
    const bool roofline = a->bw_bytes > 0;
    bench_report_begin(stdout, a->format, roofline);
    int rc = 0;
    for (int i = 0; i < a->n_models && !rc; i++) rc = bench_one_model(&st, a->models[i]);
    bench_report_end(stdout, a->format, roofline, st.n_rows);
    if (a->format == BENCH_MD && !rc) {
        printf("\nSIMD %s, KV %s, %d repetitions after a warm-up; t/s: mean ± sd.\n", lt_simd_path(), kv_type_name(a->mo.kv_type),
               a->reps);
        if (roofline)
            printf("bound: read bandwidth (XOR pass over %zu MiB on the test's threads, best of %d, just before each "
                   "repetition; read GB/s is their mean) / bytes read per generated token: MiB/token, the weights (every matrix "
                   "once, one embedding row), and the K and V of the cache slots it attends (the mean over the steps); %% bound: "
                   "the mean over the repetitions of t/s against the bound of the same moment.\n",
                   a->bw_bytes >> 20, BW_PASSES);
        printf("peak RSS: %.1f MiB\n", peak_rss_bytes() / 1048576.0);
    }
    free(st.samples);
    free(st.bw);
    return rc;
}
