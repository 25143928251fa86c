/* Per-head reach calibration for the headwise policy (Task-KV /
 * RazorAttention / HACK idea: a few heads look far back, most look at the
 * recent window and the sinks). One token at a time through a calibration
 * text with the full cache and the attention statistics on; for every
 * stream we add up the probability mass that went to slots older than the
 * window. The result is a small text file, reused on later runs. */
#include "runtime/calibrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define CALIB_MAGIC "lethe-headwise-calibration v1"
/* The calibration reads the built-in text, repeated, for twice the window
 * (the reach of a head is the mass it sends beyond the window), at least
 * CALIB_MIN_TOKENS and at most CALIB_MAX_TOKENS tokens. */
#define CALIB_MIN_TOKENS 256
#define CALIB_MAX_TOKENS 4096

/* Plain narrative text: long enough to give every head something to look back at. */
static const char CALIB_TEXT[] =
    "Once upon a time, in a small town near the sea, there lived a girl named Mia. Every morning Mia walked to the "
    "harbour with her grandfather, who had been a fisherman for fifty years. He told her about the storms he had seen, "
    "the whales that followed his boat, and the lighthouse keeper who sang to the ships at night. One day Mia found a "
    "small wooden box on the beach. Inside the box was a map, a brass key and a letter that began with the words: "
    "\"To whoever finds this, the treasure is where the lighthouse keeper sang.\" Mia ran home to show her "
    "grandfather. He read the letter twice, then smiled. \"The lighthouse keeper was my friend,\" he said. \"He sang "
    "from the top of the old tower, above the rocks.\" The next morning they climbed the tower together. At the top "
    "there was a door with a brass lock. Mia took out the key from the box, and it turned. Behind the door they found "
    "a chest full of letters, drawings and songs that the keeper had written for the sailors. It was not gold, but "
    "Mia and her grandfather thought it was the best treasure in the world, and they shared the songs with the whole "
    "town.";

static lethe_status load(const char *path, const hparams *hp, int window, float *reach, char *err) {
    FILE *f = fopen(path, "r");
    if (!f) return set_error(err, LETHE_ERR_IO, "cannot read calibration '%s': %s", path, strerror(errno));
    char magic[64];
    int L, H, W;
    lethe_status st = LETHE_OK;
    if (!fgets(magic, sizeof magic, f) || strncmp(magic, CALIB_MAGIC, strlen(CALIB_MAGIC)) != 0 ||
        fscanf(f, " n_layer %d n_head_kv %d window %d", &L, &H, &W) != 3) {
        st = set_error(err, LETHE_ERR_FORMAT, "'%s' is not a lethe headwise calibration file", path);
    } else if (L != hp->n_layer || H != hp->n_head_kv) {
        st = set_error(err, LETHE_ERR_ARG, "calibration '%s' is for %d layers x %d KV heads, the model has %d x %d", path, L,
                       H, hp->n_layer, hp->n_head_kv);
    } else if (W != window) {
        st = set_error(err, LETHE_ERR_ARG, "calibration '%s' was measured with window %d, this run uses %d", path, W, window);
    } else {
        for (int i = 0; i < L * H && !st; i++)
            if (fscanf(f, "%f", &reach[i]) != 1 || !(reach[i] >= 0.0f && reach[i] <= 1.0f))
                st = set_error(err, LETHE_ERR_FORMAT, "calibration '%s': value %d missing or outside [0, 1]", path, i);
    }
    fclose(f);
    return st;
}

static lethe_status save(const char *path, const hparams *hp, int window, const float *reach, char *err) {
    FILE *f = fopen(path, "w");
    if (!f) return set_error(err, LETHE_ERR_IO, "cannot write calibration '%s': %s", path, strerror(errno));
    fprintf(f, "%s\nn_layer %d n_head_kv %d window %d\n", CALIB_MAGIC, hp->n_layer, hp->n_head_kv, window);
    for (int l = 0; l < hp->n_layer; l++) {
        for (int h = 0; h < hp->n_head_kv; h++) fprintf(f, "%s%.6f", h ? " " : "", reach[l * hp->n_head_kv + h]);
        fputc('\n', f);
    }
    bool ok = fclose(f) == 0;
    return ok ? LETHE_OK : set_error(err, LETHE_ERR_IO, "cannot write calibration '%s'", path);
}

static lethe_status measure(lethe_ctx *c, int window, float *reach, char *err) {
    const lethe_model *m = c->m;
    const hparams *hp = &m->hp;
    const int n_streams = hp->n_layer * hp->n_head_kv;
    const size_t P = (size_t)kv_pool_page_slots(c->kv);
    /* the tokens must fit in the pool next to what it holds already */
    size_t fit = kv_pool_pages_free(c->kv) / (size_t)n_streams * P;
    int want = 2 * window + 2;
    if (want < CALIB_MIN_TOKENS) want = CALIB_MIN_TOKENS;
    if (want > CALIB_MAX_TOKENS) want = CALIB_MAX_TOKENS;
    lethe_token *ids = lt_malloc(sizeof *ids * (size_t)want);
    if (!ids) return set_error(err, LETHE_ERR_NOMEM, "calibration: out of memory");
    int n = tokenizer_encode(m->tok, CALIB_TEXT, strlen(CALIB_TEXT), ids, want, true, false);
    if (n > want) n = want;
    while (n > 1 && n < want) { /* the text again, without its BOS */
        int k = tokenizer_encode(m->tok, CALIB_TEXT, strlen(CALIB_TEXT), ids + n, want - n, false, false);
        if (k <= 0) break;
        n += k < want - n ? k : want - n;
    }
    if ((size_t)n > fit) n = (int)fit;
    if (n > c->params.n_ctx) n = c->params.n_ctx;
    if (n <= window + 1) {
        lt_free(ids);
        return set_error(err, LETHE_ERR_BUDGET,
                         "calibration needs more than %d tokens of KV room (window %d), the context gives %d; "
                         "use a smaller --kv-window or a calibration file made with a larger context",
                         window + 1, window, n);
    }
    lethe_seq_params sp = lethe_seq_default_params();
    char serr[LETHE_ERR_MAX];
    lethe_seq *s = lethe_seq_create(c, &sp, serr, sizeof serr);
    double *far = lt_calloc((size_t)n_streams, sizeof *far), *total = lt_calloc((size_t)n_streams, sizeof *total);
    lethe_status st = s && far && total ? LETHE_OK : LETHE_ERR_NOMEM;
    for (int i = 0; i < n_streams && !st; i++) st = kv_stream_enable_stats(&s->streams[i], 0);
    if (s) s->calibrating = true;
    for (int t = 0; t < n && !st; t++) {
        if ((st = lethe_seq_decode(s, ids[t], NULL))) {
            snprintf(err, LETHE_ERR_MAX, "calibration: %.400s", s->err);
            break;
        }
        for (int i = 0; i < n_streams; i++) {
            const kv_stream *k = &s->streams[i];
            for (int j = 0; j < k->n; j++) {
                total[i] += k->attn_last[j];
                if (k->pos[j] < t - window) far[i] += k->attn_last[j];
            }
        }
    }
    for (int i = 0; i < n_streams && !st; i++) reach[i] = total[i] > 0 ? (float)(far[i] / total[i]) : 0.0f;
    lethe_seq_free(s);
    lt_free(ids);
    lt_free(far);
    lt_free(total);
    if (st == LETHE_ERR_NOMEM) set_error(err, st, "calibration: out of memory");
    return st;
}

lethe_status calibrate_load_or_run(lethe_ctx *c, const policy_params *params, float *reach, char *err) {
    const lethe_model *m = c->m;
    const int window = policy_window_for(params, params->budget); /* the window the policy will keep */
    FILE *f = params->calib_path ? fopen(params->calib_path, "r") : NULL;
    if (f) {
        fclose(f);
        return load(params->calib_path, &m->hp, window, reach, err);
    }
    lethe_status st = measure(c, window, reach, err);
    if (!st && params->calib_path) st = save(params->calib_path, &m->hp, window, reach, err);
    return st;
}

/* Retrieval heads (RazorAttention, Tang et al. 2024; DuoAttention, Xiao et
 * al. 2024, which calibrates on synthetic pass-key retrieval): a random
 * 6-digit value stated once inside the calibration text ("The value is
 * D."), asked after more text ("What is the value? The value is"), and
 * its digits then fed one at a time. A head that retrieves sends its
 * attention, while the value is repeated, back to the value's statement;
 * its score is the mean share of its mass that went there. The wording is
 * this file's own, neither the eval harness's nor any task's. */
#define RETRIEVAL_TEXT 192 /* tokens of text before the value and between the value and the question */

static int encode_piece(lethe_ctx *c, const char *text, bool bos, lethe_token *ids, int cap) {
    int n = tokenizer_encode(c->m->tok, text, strlen(text), ids, cap, bos, false);
    return n > cap ? cap : n;
}

lethe_status calibrate_retrieval(lethe_ctx *c, float *score, char *err) {
    const hparams *hp = &c->m->hp;
    const int n_streams = hp->n_layer * hp->n_head_kv;
    if (c->retrieval) {
        memcpy(score, c->retrieval, (size_t)n_streams * sizeof *score);
        return LETHE_OK;
    }
    enum { CAP = 1024 };
    lethe_token *ids = lt_malloc(sizeof *ids * CAP), *text = lt_malloc(sizeof *text * CAP);
    float *acc = lt_calloc((size_t)n_streams, sizeof *acc);
    lethe_status st = ids && acc && text ? LETHE_OK : LETHE_ERR_NOMEM;
    char value[32], stated[64];
    uint32_t x = 12345u; /* fixed seed: the same heads on every run */
    for (int i = 0; i < 6; i++) {
        x = x * 1664525u + 1013904223u;
        value[i] = (char)('1' + (x >> 8) % 9);
    }
    value[6] = 0;
    snprintf(stated, sizeof stated, " The value is %s.", value);
    int n = 0, a0 = 0, a1 = 0, rep = 0, nt = st ? 0 : encode_piece(c, CALIB_TEXT, false, text, CAP);
    if (!st && nt < 2 * RETRIEVAL_TEXT / 2) st = set_error(err, LETHE_ERR_ARG, "retrieval calibration: the text is too short");
    if (!st) {
        const int half = nt / 2 < RETRIEVAL_TEXT ? nt / 2 : RETRIEVAL_TEXT;
        n = encode_piece(c, "", true, ids, CAP); /* BOS */
        memcpy(ids + n, text, (size_t)half * sizeof *ids), n += half;
        a0 = n;
        n += encode_piece(c, stated, false, ids + n, CAP - n);
        a1 = n;
        memcpy(ids + n, text + half, (size_t)half * sizeof *ids), n += half;
        n += encode_piece(c, " What is the value? The value is", false, ids + n, CAP - n);
        rep = n;
        snprintf(stated, sizeof stated, " %s.", value);
        n += encode_piece(c, stated, false, ids + n, CAP - n);
    }
    const size_t P = (size_t)kv_pool_page_slots(c->kv);
    if (!st && (n > c->params.n_ctx || kv_pool_pages_free(c->kv) < (size_t)n_streams * (((size_t)n + P - 1) / P)))
        st = set_error(err, LETHE_ERR_BUDGET, "retrieval calibration needs %d tokens of KV room, the context or pool has less", n);
    lethe_seq_params sp = lethe_seq_default_params();
    char serr[LETHE_ERR_MAX];
    lethe_seq *s = st ? NULL : lethe_seq_create(c, &sp, serr, sizeof serr);
    if (!st && !s) st = set_error(err, LETHE_ERR_NOMEM, "retrieval calibration: %.400s", serr);
    for (int i = 0; i < n_streams && !st; i++) st = kv_stream_enable_stats(&s->streams[i], 0);
    if (!st && (st = lethe_seq_append(s, ids, rep - 1, NULL))) set_error(err, st, "retrieval calibration: %.400s", s->err);
    if (s) s->calibrating = true;
    for (int t = rep - 1; t < n && !st; t++) { /* from the question's last token through the value */
        if ((st = lethe_seq_decode(s, ids[t], NULL))) {
            set_error(err, st, "retrieval calibration: %.400s", s->err);
            break;
        }
        for (int i = 0; i < n_streams; i++) {
            const kv_stream *kv = &s->streams[i];
            double on = 0.0, all = 0.0;
            for (int j = 0; j < kv->n; j++) {
                all += kv->attn_last[j];
                if (kv->pos[j] >= a0 && kv->pos[j] < a1) on += kv->attn_last[j];
            }
            acc[i] += all > 0 ? (float)(on / all / (n - rep + 1)) : 0.0f;
        }
    }
    if (!st && (c->retrieval = lt_malloc((size_t)n_streams * sizeof *c->retrieval))) {
        memcpy(c->retrieval, acc, (size_t)n_streams * sizeof *acc);
        memcpy(score, acc, (size_t)n_streams * sizeof *acc);
    } else if (!st) st = set_error(err, LETHE_ERR_NOMEM, "retrieval calibration: out of memory");
    lethe_seq_free(s);
    lt_free(ids);
    lt_free(text);
    lt_free(acc);
    return st;
}
