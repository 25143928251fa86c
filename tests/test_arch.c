/* Architectures against an independent reference: tiny random-weight GGUFs
 * of each supported architecture are written here byte by byte, loaded by
 * lethe, and their logits compared with a plain double-precision forward
 * pass written in this test from the architectures' definitions:
 *  - llama: GQA, adjacent-pair RoPE on part of the head (rope.dimension_count
 *    < head dim), a custom rope.freq_base, output tied to token_embd;
 *  - qwen2: Q/K/V biases, NEOX RoPE (pairs i, i + n_rot/2), own output.
 * F32 weights, F32 KV: lethe must agree to 1e-4 (logits are O(1)), in one
 * batch and token by token. No shared model has these features (the shared
 * ones are all llama without biases), hence the synthetic files. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

enum { V = 40, E = 32, H = 4, HKV = 2, HD = 8, FF = 48, NL = 2, T = 11 };

typedef struct {
    bool qwen2;
    int n_rot;
    double base;
    float *emb, *out, *out_norm;
    float *attn_norm[NL], *ffn_norm[NL], *wq[NL], *wk[NL], *wv[NL], *wo[NL], *bq[NL], *bk[NL], *bv[NL];
    float *wg[NL], *wu[NL], *wd[NL];
} model;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd(int n, float scale, float offset) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) p[i] = offset + scale * frand();
    return p;
}

/* ---- writing the GGUF ------------------------------------------------------- */

static void kv_str(tu_buf *b, const char *k, const char *v) { tu_str(b, k); tu_u32(b, 8); tu_str(b, v); }
static void kv_u32(tu_buf *b, const char *k, uint32_t v) { tu_str(b, k); tu_u32(b, 4); tu_u32(b, v); }
static void kv_f32(tu_buf *b, const char *k, float v) { tu_str(b, k); tu_u32(b, 6); tu_put(b, &v, 4); }

typedef struct { char name[48]; const float *data; int64_t ne0, ne1; } tens;

static const char *write_gguf(const model *m, const char *path) {
    const char *arch = m->qwen2 ? "qwen2" : "llama";
    tens t[64];
    int nt = 0;
#define ADD(nm, d, a, b_) do { snprintf(t[nt].name, sizeof t[nt].name, "%s", nm); t[nt].data = d; t[nt].ne0 = a; t[nt].ne1 = b_; nt++; } while (0)
    ADD("token_embd.weight", m->emb, E, V);
    ADD("output_norm.weight", m->out_norm, E, 1);
    if (m->qwen2) ADD("output.weight", m->out, E, V);
    for (int l = 0; l < NL; l++) {
        char n[48];
#define L_(s, d, a, b_) do { snprintf(n, sizeof n, "blk.%d." s, l); ADD(n, d, a, b_); } while (0)
        L_("attn_norm.weight", m->attn_norm[l], E, 1);
        L_("attn_q.weight", m->wq[l], E, H * HD);
        L_("attn_k.weight", m->wk[l], E, HKV * HD);
        L_("attn_v.weight", m->wv[l], E, HKV * HD);
        L_("attn_output.weight", m->wo[l], H * HD, E);
        if (m->qwen2) {
            L_("attn_q.bias", m->bq[l], H * HD, 1);
            L_("attn_k.bias", m->bk[l], HKV * HD, 1);
            L_("attn_v.bias", m->bv[l], HKV * HD, 1);
        }
        L_("ffn_norm.weight", m->ffn_norm[l], E, 1);
        L_("ffn_gate.weight", m->wg[l], E, FF);
        L_("ffn_up.weight", m->wu[l], E, FF);
        L_("ffn_down.weight", m->wd[l], FF, E);
    }
    tu_buf b = {0};
    tu_put(&b, "GGUF", 4);
    tu_u32(&b, 3);
    tu_u64(&b, (uint64_t)nt);
    tu_u64(&b, 14);
    char key[96];
    kv_str(&b, "general.architecture", arch);
#define AK(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    kv_u32(&b, AK("context_length"), 64);
    kv_u32(&b, AK("embedding_length"), E);
    kv_u32(&b, AK("block_count"), NL);
    kv_u32(&b, AK("feed_forward_length"), FF);
    kv_u32(&b, AK("attention.head_count"), H);
    kv_u32(&b, AK("attention.head_count_kv"), HKV);
    kv_u32(&b, AK("rope.dimension_count"), (uint32_t)m->n_rot);
    kv_f32(&b, AK("rope.freq_base"), (float)m->base);
    kv_f32(&b, AK("attention.layer_norm_rms_epsilon"), 1e-6f);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    /* a minimal SPM vocabulary: control tokens, then single letters */
    tu_str(&b, "tokenizer.ggml.tokens"); tu_u32(&b, 9); tu_u32(&b, 8); tu_u64(&b, V);
    for (int i = 0; i < V; i++) {
        char tok[8];
        if (i == 0) strcpy(tok, "<unk>");
        else if (i == 1) strcpy(tok, "<s>");
        else if (i == 2) strcpy(tok, "</s>");
        else snprintf(tok, sizeof tok, "%c%c", 'a' + (i - 3) % 26, i - 3 >= 26 ? 'x' : 'y');
        tu_str(&b, tok);
    }
    tu_str(&b, "tokenizer.ggml.scores"); tu_u32(&b, 9); tu_u32(&b, 6); tu_u64(&b, V);
    for (int i = 0; i < V; i++) { float sc = -(float)i; tu_put(&b, &sc, 4); }
    tu_str(&b, "tokenizer.ggml.token_type"); tu_u32(&b, 9); tu_u32(&b, 5); tu_u64(&b, V);
    for (int i = 0; i < V; i++) { int32_t ty = i < 3 ? (i == 0 ? 2 : 3) : 1; tu_put(&b, &ty, 4); }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        tu_str(&b, t[i].name);
        bool vec = t[i].ne1 == 1;
        tu_u32(&b, vec ? 1 : 2);
        tu_u64(&b, (uint64_t)t[i].ne0);
        if (!vec) tu_u64(&b, (uint64_t)t[i].ne1);
        tu_u32(&b, 0); /* F32 */
        tu_u64(&b, off);
        off += ((uint64_t)(t[i].ne0 * t[i].ne1 * 4) + 31) / 32 * 32;
    }
    while (b.n % 32) tu_put(&b, "", 1);
    for (int i = 0; i < nt; i++) {
        tu_put(&b, t[i].data, (size_t)(t[i].ne0 * t[i].ne1 * 4));
        while (b.n % 32) tu_put(&b, "", 1);
    }
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    free(b.p);
    return path;
}

/* ---- the reference forward pass, in double ------------------------------------ */

static void matvec(const float *w, const double *x, int rows, int cols, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(long)r * cols + c] * x[c];
        y[r] = s;
    }
}
static void rmsnorm(const double *x, const float *w, double *y) {
    double ss = 0;
    for (int i = 0; i < E; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / E + 1e-6);
    for (int i = 0; i < E; i++) y[i] = x[i] * s * w[i];
}
static void rope(const model *m, double *v, int pos) {
    for (int i = 0; i < m->n_rot / 2; i++) {
        double th = pos * pow(m->base, -2.0 * i / m->n_rot), c = cos(th), s = sin(th);
        int a = m->qwen2 ? i : 2 * i, b = m->qwen2 ? i + m->n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

static void reference(const model *m, const int *ids, int n, double *logits /* n x V */) {
    static double K[NL][T][HKV * HD], Vv[NL][T][HKV * HD];
    for (int t = 0; t < n; t++) {
        double x[E], xb[E], q[H * HD], k[HKV * HD], v[HKV * HD], att[H * HD], o[E], g[FF], u[FF], d[E];
        for (int i = 0; i < E; i++) x[i] = m->emb[(long)ids[t] * E + i];
        for (int l = 0; l < NL; l++) {
            rmsnorm(x, m->attn_norm[l], xb);
            matvec(m->wq[l], xb, H * HD, E, q);
            matvec(m->wk[l], xb, HKV * HD, E, k);
            matvec(m->wv[l], xb, HKV * HD, E, v);
            if (m->qwen2) {
                for (int i = 0; i < H * HD; i++) q[i] += m->bq[l][i];
                for (int i = 0; i < HKV * HD; i++) k[i] += m->bk[l][i], v[i] += m->bv[l][i];
            }
            for (int h = 0; h < H; h++) rope(m, q + h * HD, t);
            for (int h = 0; h < HKV; h++) rope(m, k + h * HD, t);
            memcpy(K[l][t], k, sizeof k);
            memcpy(Vv[l][t], v, sizeof v);
            for (int h = 0; h < H; h++) {
                int kh = h / (H / HKV);
                double sc[T], mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int e = 0; e < HD; e++) s += q[h * HD + e] * K[l][j][kh * HD + e];
                    sc[j] = s / sqrt((double)HD);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= t; j++) sum += sc[j] = exp(sc[j] - mx);
                for (int e = 0; e < HD; e++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++) a += sc[j] / sum * Vv[l][j][kh * HD + e];
                    att[h * HD + e] = a;
                }
            }
            matvec(m->wo[l], att, E, H * HD, o);
            for (int i = 0; i < E; i++) x[i] += o[i];
            rmsnorm(x, m->ffn_norm[l], xb);
            matvec(m->wg[l], xb, FF, E, g);
            matvec(m->wu[l], xb, FF, E, u);
            for (int i = 0; i < FF; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(m->wd[l], g, E, FF, d);
            for (int i = 0; i < E; i++) x[i] += d[i];
        }
        rmsnorm(x, m->out_norm, xb);
        matvec(m->qwen2 ? m->out : m->emb, xb, V, E, logits + (long)t * V);
    }
}

static void run(bool qwen2) {
    model m = {0};
    m.qwen2 = qwen2;
    m.n_rot = qwen2 ? HD : HD / 2; /* llama: rotate only part of each head */
    m.base = qwen2 ? 1000000.0 : 5000.0;
    m.emb = rnd(V * E, 0.5f, 0);
    m.out = rnd(V * E, 0.5f, 0);
    m.out_norm = rnd(E, 0.2f, 1);
    for (int l = 0; l < NL; l++) {
        m.attn_norm[l] = rnd(E, 0.2f, 1);
        m.ffn_norm[l] = rnd(E, 0.2f, 1);
        m.wq[l] = rnd(H * HD * E, 0.3f, 0);
        m.wk[l] = rnd(HKV * HD * E, 0.3f, 0);
        m.wv[l] = rnd(HKV * HD * E, 0.3f, 0);
        m.wo[l] = rnd(E * H * HD, 0.3f, 0);
        m.bq[l] = rnd(H * HD, 0.5f, 0);
        m.bk[l] = rnd(HKV * HD, 0.5f, 0);
        m.bv[l] = rnd(HKV * HD, 0.5f, 0);
        m.wg[l] = rnd(FF * E, 0.3f, 0);
        m.wu[l] = rnd(FF * E, 0.3f, 0);
        m.wd[l] = rnd(E * FF, 0.3f, 0);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/lethe_arch_%s_%d.gguf", qwen2 ? "qwen2" : "llama", (int)getpid());
    write_gguf(&m, path);

    int ids[T] = {1, 5, 9, 3, 20, 31, 7, 7, 12, 39, 4};
    double *ref = malloc(sizeof(double) * T * V);
    reference(&m, ids, T, ref);

    lethe_ctx_params p = lethe_ctx_default_params();
    p.kv_type = LETHE_KV_F32;
    p.n_ctx = 64;
    p.n_threads = 2;
    p.kv_page_slots = 4; /* several pages even for 11 tokens */
    char err[512];
    lethe_ctx *lm = tu_open_ctx(path, &p, err, sizeof err);
    if (CHECKF(lm != NULL, "%s: %s", path, err)) {
        lethe_model_info info;
        lethe_model_get_info(lethe_ctx_model(lm), &info);
        CHECK(!strcmp(info.arch, qwen2 ? "qwen2" : "llama") && info.n_head_kv == HKV && info.head_dim == HD);
        float *batch = malloc(sizeof(float) * T * V), *step = malloc(sizeof(float) * T * V);
        lethe_seq *a = lethe_seq_create(lm, NULL, err, sizeof err), *b = lethe_seq_create(lm, NULL, err, sizeof err);
        CHECK(lethe_seq_append_all_logits(a, ids, T, batch) == LETHE_OK);
        for (int t = 0; t < T; t++) CHECK(lethe_seq_append(b, &ids[t], 1, step + (long)t * V) == LETHE_OK);
        double mb = 0, ms = 0, mag = 0;
        for (int i = 0; i < T * V; i++) {
            mb = fmax(mb, fabs(batch[i] - ref[i]));
            ms = fmax(ms, fabs(step[i] - ref[i]));
            mag = fmax(mag, fabs(ref[i]));
        }
        printf("%s: max|logit| %.2f, batch max|d| %.2e, token-by-token max|d| %.2e\n", qwen2 ? "qwen2" : "llama", mag, mb, ms);
        CHECKF(mb < 1e-4 && ms < 1e-4, "%s logits differ from the reference: %.3g / %.3g", qwen2 ? "qwen2" : "llama", mb, ms);
        CHECK(mag > 0.5); /* the comparison is not vacuous */
        lethe_seq_free(a);
        lethe_seq_free(b);
        free(batch);
        free(step);
        tu_close_ctx(lm);
    }
    remove(path);
    free(ref);
    free(m.emb); free(m.out); free(m.out_norm);
    for (int l = 0; l < NL; l++) {
        free(m.attn_norm[l]); free(m.ffn_norm[l]); free(m.wq[l]); free(m.wk[l]); free(m.wv[l]); free(m.wo[l]);
        free(m.bq[l]); free(m.bk[l]); free(m.bv[l]); free(m.wg[l]); free(m.wu[l]); free(m.wd[l]);
    }
}

int main(void) {
    run(false);
    run(true);
    return tu_finish("test_arch");
}
