/* Editable positions (lethe_seq_remove / _shift / _truncate).
 *
 * - Rollback: truncating to n tokens and appending the same tokens again
 *   reproduces the original logits bit for bit.
 * - RoPE is relative: shifting every cached token by +d (and so the next
 *   position) leaves the next token's logits unchanged: within 1e-4 on an
 *   F32 cache; F16 and Q8_0 caches round the rotated keys again, bound 2e-2
 *   on stories260K's logits (measured ~1e-3, printed).
 * - A cached key shifted from p to p + d equals the key computed at p + d
 *   within 1e-5 (F32).
 * - Remove then shift of a middle span: the sequence A (B removed) C with C
 *   shifted left onto A is compared with a reference built by other edits:
 *   B removed and A shifted right onto C instead. Every query-key distance is
 *   the same in both, so the next logits must agree (1e-4, F32): this proves
 *   the removal keeps exactly the other tokens and that the shift of either
 *   side is the same relative move; it also shows the gap matters (without
 *   any shift the logits differ).
 * - The cold tier (quest, mixed) follows the shifts: its keys are
 *   dequantised, rotated and quantised again (bounds recomputed), so the
 *   logits after a +d shift move by about one rounding of the cold dtype:
 *   bound 0.1 for Q8_0 (quest; measured ~0.02), 1.0 for Q4_0 (mixed;
 *   measured ~0.5 on stories260K's logits of magnitude ~10). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "testutil.h"

static const char *model_path;
static int V;

static lethe_ctx *open_ctx(lethe_kv_type kv) {
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.kv_type = kv;
    cp.n_ctx = 256;
    cp.n_seq_max = 3;
    cp.n_threads = 2;
    cp.kv_page_slots = 8;
    char err[512];
    lethe_ctx *c = tu_open_ctx(model_path, &cp, err, sizeof err);
    CHECKF(c != NULL, "ctx: %s", err);
    if (c) {
        lethe_model_info info;
        lethe_model_get_info(lethe_ctx_model(c), &info);
        V = info.n_vocab;
    }
    return c;
}

static lethe_seq *open_seq(lethe_ctx *c, const char *policy, int budget) {
    char err[512];
    lethe_seq *s = tu_open_seq(c, policy, budget, err, sizeof err);
    CHECKF(s != NULL, "seq: %s", err);
    return s;
}

static lethe_token toks[160];

static void rollback(lethe_kv_type kv) {
    lethe_ctx *c = open_ctx(kv);
    if (!c) return;
    lethe_seq *s = open_seq(c, "full", 0);
    float *a = malloc(sizeof(float) * V * 40), *b = malloc(sizeof(float) * V * 40);
    CHECK(lethe_seq_append(s, toks, 60, NULL) == LETHE_OK);
    CHECK(lethe_seq_append_all_logits(s, toks + 60, 40, a) == LETHE_OK);
    CHECK(lethe_seq_truncate(s, 60) == LETHE_OK);
    CHECK(lethe_seq_n_past(s) == 60 && lethe_seq_n_cached(s) == 60);
    CHECK(lethe_seq_append_all_logits(s, toks + 60, 40, b) == LETHE_OK);
    CHECKF(!memcmp(a, b, sizeof(float) * V * 40), "truncate + re-append: max|d| %.3g", tu_max_diff(a, b, V * 40));
    /* rollback token by token, as speculative decoding does */
    CHECK(lethe_seq_truncate(s, 97) == LETHE_OK);
    for (int i = 97; i < 100; i++) CHECK(lethe_seq_decode(s, toks[i], b) == LETHE_OK);
    /* decode steps run another attention kernel than a prompt chunk: equal to rounding */
    double dd = tu_max_diff(a + (size_t)39 * V, b, V);
    CHECKF(dd <= (kv == LETHE_KV_F32 ? 1e-4 : 1e-2), "decode after truncate differs by %.3g", dd);
    CHECK(lethe_seq_truncate(s, -1) == LETHE_ERR_ARG && lethe_seq_n_past(s) == 100);
    free(a);
    free(b);
    tu_close_ctx(c);
}

/* Next logits after a prompt, with every cached token moved by +d. */
static void shift_all(lethe_kv_type kv, const char *policy, int budget, double bound, const char *what) {
    lethe_ctx *c = open_ctx(kv);
    if (!c) return;
    lethe_seq *s = open_seq(c, policy, budget), *r = open_seq(c, policy, budget);
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    CHECK(lethe_seq_append(s, toks, 100, NULL) == LETHE_OK);
    CHECK(lethe_seq_append(r, toks, 100, NULL) == LETHE_OK);
    const int d = 37;
    lethe_status st = lethe_seq_shift(s, 0, lethe_seq_n_past(s), d);
    CHECKF(st == LETHE_OK, "shift: %s", lethe_seq_error(s));
    CHECK(lethe_seq_n_past(s) == lethe_seq_n_past(r) + d);
    CHECK(lethe_seq_decode(s, toks[100], a) == LETHE_OK && lethe_seq_decode(r, toks[100], b) == LETHE_OK);
    double m = tu_max_diff(a, b, V);
    printf("shift all by +%d, %s: max|d| next logits %.3g (bound %.0e)\n", d, what, m, bound);
    CHECKF(m <= bound, "%s: shift changed the logits by %.3g", what, m);
    free(a);
    free(b);
    tu_close_ctx(c);
}

/* A key cached at p and shifted by d equals the key computed at p + d. */
static void key_at_shifted_position(void) {
    lethe_ctx *c = open_ctx(LETHE_KV_F32);
    if (!c) return;
    lethe_seq *s = open_seq(c, "full", 0), *r = open_seq(c, "full", 0);
    const int d = 23;
    CHECK(lethe_seq_shift(r, 0, 1, d) == LETHE_OK && lethe_seq_n_past(r) == d); /* r starts at position d */
    CHECK(lethe_seq_append(s, toks, 30, NULL) == LETHE_OK && lethe_seq_append(r, toks, 30, NULL) == LETHE_OK);
    CHECK(lethe_seq_shift(s, 0, 30, d) == LETHE_OK);
    /* layer 0's keys depend on the token and position only */
    const lethe_ctx *cc = c;
    const int H = cc->m->hp.n_head_kv, hd = cc->m->hp.head_dim;
    double worst = 0;
    for (int h = 0; h < H; h++) {
        const kv_stream *a = &s->streams[h], *b = &r->streams[h];
        for (int i = 0; i < a->n; i++) {
            int j = 0;
            while (j < b->n && b->pos[j] != a->pos[i]) j++;
            if (!CHECKF(j < b->n, "no key at position %d", a->pos[i])) continue;
            const float *ka = kv_stream_k(cc->kv, a, i), *kb = kv_stream_k(cc->kv, b, j);
            for (int e = 0; e < hd; e++) {
                double dd = fabs((double)ka[e] - kb[e]);
                if (dd > worst) worst = dd;
            }
        }
    }
    printf("key shifted from p to p+%d vs computed at p+%d: max|d| %.3g\n", d, d, worst);
    CHECKF(worst <= 1e-5, "shifted keys differ by %.3g", worst);
    tu_close_ctx(c);
}

static void remove_then_shift(void) {
    lethe_ctx *c = open_ctx(LETHE_KV_F32);
    if (!c) return;
    const int A = 40, B = 25, C = 30;
    lethe_seq *e = open_seq(c, "full", 0), *r = open_seq(c, "full", 0), *g = open_seq(c, "full", 0);
    float *le = malloc(sizeof(float) * V), *lr = malloc(sizeof(float) * V), *lg = malloc(sizeof(float) * V);
    for (int k = 0; k < 3; k++) {
        lethe_seq *s = k == 0 ? e : k == 1 ? r : g;
        CHECK(lethe_seq_append(s, toks, A + B + C, NULL) == LETHE_OK);
        CHECK(lethe_seq_remove(s, A, A + B) == LETHE_OK);
        CHECK(lethe_seq_n_cached(s) == A + C && lethe_seq_n_past(s) == A + B + C);
    }
    CHECK(lethe_seq_shift(e, A + B, A + B + C, -B) == LETHE_OK && lethe_seq_n_past(e) == A + C); /* C onto A */
    CHECK(lethe_seq_shift(r, 0, A, B) == LETHE_OK && lethe_seq_n_past(r) == A + B + C);          /* A onto C */
    CHECK(lethe_seq_decode(e, toks[100], le) == LETHE_OK);
    CHECK(lethe_seq_decode(r, toks[100], lr) == LETHE_OK);
    CHECK(lethe_seq_decode(g, toks[100], lg) == LETHE_OK);
    double m = tu_max_diff(le, lr, V), gap = tu_max_diff(le, lg, V);
    printf("remove [%d, %d) + shift: max|d| %.3g against the other-side reference; %.3g against no shift\n", A, A + B, m,
           gap);
    CHECKF(m <= 1e-4, "remove + shift differs from its reference by %.3g", m);
    CHECKF(gap > 1e-3, "the gap left by the removal made no difference (%.3g)", gap);
    /* bad ranges change nothing */
    CHECK(lethe_seq_shift(e, 0, 5, -1) == LETHE_ERR_ARG);
    CHECK(lethe_seq_remove(e, 10, 5) == LETHE_ERR_ARG);
    CHECK(lethe_seq_n_cached(e) == A + C + 1);
    free(le);
    free(lr);
    free(lg);
    tu_close_ctx(c);
}

int main(void) {
    model_path = tu_require_model("stories260K.gguf");
    for (int i = 0; i < 160; i++) toks[i] = 1 + (i * 53 + 7) % 500;
    rollback(LETHE_KV_F32);
    rollback(LETHE_KV_F16);
    shift_all(LETHE_KV_F32, "full", 0, 1e-4, "F32");
    shift_all(LETHE_KV_F16, "full", 0, 2e-2, "F16");
    /* Q8_0 rows need a head dimension divisible by 32: the synthetic model */
    const char *stories = model_path;
    model_path = tu_model_path("synthetic/randllama-d256-L2.F16.gguf");
    if (tu_file_exists(model_path)) shift_all(LETHE_KV_Q8_0, "full", 0, 2e-2, "Q8_0 (synthetic)");
    else tu_skip_part("%s not found", model_path);
    model_path = stories;
    shift_all(LETHE_KV_F32, "window", 48, 1e-4, "window F32");
    shift_all(LETHE_KV_F32, "quest", 32, 0.1, "quest (Q8_0 cold tier)");
    shift_all(LETHE_KV_F32, "mixed", 48, 1.0, "mixed (Q4_0 cold tier)");
    key_at_shifted_position();
    remove_then_shift();
    return tu_finish("test_edit");
}
