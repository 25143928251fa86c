/* Streaming past the training context (StreamingLLM's re-indexed window):
 * stories260K (trained on 512 tokens) reads 8 x 512 tokens of text with a
 * window of 512 slots whose positions are re-indexed within the cache. No
 * cached or query position may ever reach the cache size, the cache stays
 * bounded, and the perplexity of the tokens after the first 512 must stay
 * within 10% of what the model reaches on the same tokens at its training
 * context: each 512-token block read fresh with the full cache (the first
 * 512 tokens of this text are easier than the rest, so their perplexity is
 * printed but is not the yardstick). The same run without re-indexing
 * (original positions up to 4096) is printed for contrast. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "runtime/engine.h"
#include "testengine.h"
#include "testutil.h"

#define CTX 512
#define N_TEXT (8 * CTX)

/* data/eval/stories.txt beside this source file's folder. */
static char *read_text(size_t *len) {
    const char *dir = getenv("LETHE_DATA_DIR");
    char path[4096];
    if (dir) {
        snprintf(path, sizeof path, "%s/eval/stories.txt", dir);
    } else {
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        if (slash) *slash = 0;
        else snprintf(path, sizeof path, ".");
        strncat(path, "/../data/eval/stories.txt", sizeof path - strlen(path) - 1);
    }
    char *t = tu_read_file(path, len);
    CHECKF(t != NULL, "cannot read %s", path);
    return t;
}

static double nll(const float *lg, int V, int tok) {
    double m = lg[0];
    for (int i = 1; i < V; i++)
        if (lg[i] > m) m = lg[i];
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)lg[i] - m);
    return m + log(z) - lg[tok];
}

/* Streams the text; returns the perplexities of predictions [0, CTX) and
 * [CTX, N_TEXT) in ppl[0], ppl[1]; max_pos the largest position seen. */
static void run(lethe_ctx *c, const lethe_token *ids, bool reindex, double ppl[2], int *max_pos, size_t *max_bytes) {
    lethe_model_info info;
    lethe_model_get_info(lethe_ctx_model(c), &info);
    const int V = info.n_vocab;
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.name = "window";
    sp.kv.budget = CTX;
    sp.kv.reindex = reindex;
    char err[512];
    lethe_seq *s = lethe_seq_create(c, &sp, err, sizeof err);
    if (!CHECKF(s != NULL, "seq: %s", err)) return;
    const int chunk = lethe_seq_max_batch(s);
    float *lg = malloc(sizeof(float) * (size_t)V * chunk);
    double sum[2] = {0, 0};
    int cnt[2] = {0, 0};
    *max_pos = 0;
    *max_bytes = 0;
    lethe_ctx_kv_reset_peak(c);
    for (int done = 0; done < N_TEXT;) {
        int n = N_TEXT - done < chunk ? N_TEXT - done : chunk;
        if (!CHECKF(lethe_seq_append_all_logits(s, ids + done, n, lg) == LETHE_OK, "append at %d: %s", done,
                    lethe_seq_error(s)))
            break;
        /* the positions this chunk ran at and every cached one */
        int top = lethe_seq_n_past(s) - 1;
        if (top > *max_pos) *max_pos = top;
        for (int i = 0; i < s->n_streams; i++)
            for (int j = 0; j < s->streams[i].n; j++)
                if (s->streams[i].pos[j] > *max_pos) *max_pos = s->streams[i].pos[j];
        for (int t = 0; t < n && done + t + 1 < N_TEXT + 1; t++) {
            int k = done + t + 1 < CTX ? 0 : 1; /* prediction of token done + t + 1 */
            sum[k] += nll(lg + (size_t)t * V, V, ids[done + t + 1]);
            cnt[k]++;
        }
        done += n;
    }
    lethe_kv_usage u;
    lethe_ctx_kv_usage(c, &u);
    *max_bytes = u.bytes_peak;
    ppl[0] = exp(sum[0] / cnt[0]);
    ppl[1] = exp(sum[1] / cnt[1]);
    free(lg);
    lethe_seq_free(s);
}

int main(void) {
    const char *path = tu_require_model("stories260K.gguf");
    size_t len;
    char *text = read_text(&len);
    if (!text) return tu_finish("test_stream");
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.kv_type = LETHE_KV_F32;
    cp.n_ctx = CTX;
    cp.n_threads = 2;
    cp.kv_page_slots = 16;
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(c != NULL, "ctx: %s", err)) return tu_finish("test_stream");
    const lethe_model *m = lethe_ctx_model(c);
    /* the text, repeated until there are N_TEXT + 1 tokens (a repeat is
     * ~1800 tokens back, far outside the 512-slot window) */
    lethe_token *ids = malloc(sizeof *ids * (N_TEXT + 4096));
    int n = 0;
    ids[n++] = 1; /* BOS */
    while (n < N_TEXT + 1) {
        int k = lethe_tokenize(m, text, len, ids + n, N_TEXT + 4096 - n, false, false);
        if (!CHECK(k > 0)) break;
        n += k < N_TEXT + 4096 - n ? k : N_TEXT + 4096 - n;
    }
    /* the yardstick: blocks [512 k, 512 (k + 1)) after BOS in fresh full-cache sequences */
    double fresh_sum = 0;
    int fresh_n = 0;
    {
        lethe_model_info info;
        lethe_model_get_info(m, &info);
        float *lg = malloc(sizeof(float) * (size_t)info.n_vocab * CTX);
        lethe_token blk[CTX];
        for (int b0 = CTX; b0 < N_TEXT && lg; b0 += CTX - 1) {
            int len_b = N_TEXT + 1 - b0 < CTX - 1 ? N_TEXT + 1 - b0 : CTX - 1;
            blk[0] = 1;
            memcpy(blk + 1, ids + b0, sizeof *blk * (size_t)len_b);
            lethe_seq *f = lethe_seq_create(c, NULL, err, sizeof err);
            if (!CHECK(f && lethe_seq_append_all_logits(f, blk, len_b + 1, lg) == LETHE_OK)) break;
            for (int t = 0; t < len_b; t++) fresh_sum += nll(lg + (size_t)t * info.n_vocab, info.n_vocab, blk[t + 1]);
            fresh_n += len_b;
            lethe_seq_free(f);
        }
        free(lg);
    }
    const double fresh = exp(fresh_sum / (fresh_n ? fresh_n : 1));
    double ppl[2] = {0, 0}, raw[2] = {0, 0};
    int max_pos = 0, raw_pos = 0;
    size_t bytes = 0, raw_bytes = 0;
    run(c, ids, true, ppl, &max_pos, &bytes);
    run(c, ids, false, raw, &raw_pos, &raw_bytes);
    printf("re-indexed window of %d over %d tokens: ppl first %d %.3f, after %.3f (x%.3f); largest position %d; KV peak %zu bytes\n",
           CTX, N_TEXT, CTX, ppl[0], ppl[1], ppl[1] / ppl[0], max_pos, bytes);
    printf("original positions (contrast):       ppl first %d %.3f, after %.3f (x%.3f); largest position %d\n", CTX, raw[0],
           raw[1], raw[1] / raw[0], raw_pos);
    printf("the tokens after %d read in fresh %d-token windows with the full cache: ppl %.3f; streamed: x%.3f of that\n", CTX,
           CTX, fresh, ppl[1] / fresh);
    CHECKF(max_pos < CTX, "a position reached %d, the cache holds %d", max_pos, CTX);
    CHECKF(ppl[1] <= 1.10 * fresh, "perplexity after the training context %.3f is over 110%% of the model's own %.3f at its context",
           ppl[1], fresh);
    lethe_kv_usage u;
    lethe_ctx_kv_usage(c, &u);
    CHECKF(bytes <= u.bytes_total, "the cache is bounded by its pool");
    free(ids);
    free(text);
    tu_close_ctx(c);
    return tu_finish("test_stream");
}
