/* Batched steps: many sequences of one context run through one forward pass
 * per step must give each sequence exactly what it gets alone.
 *
 * 16 sequences (different prompt lengths and policies, some forked from a
 * shared prefix) take turns in batches that mix prompt chunks and decode
 * tokens, with their rows interleaved; each step's logits are recorded.
 * Then every sequence is replayed alone (same chunks, same policy, same
 * context parameters) in a fresh context: its greedy tokens must be
 * identical and its logits within 1e-5 (F32 KV). For 1, 2 and 3 threads, on
 * stories260K and on a synthetic GQA model (8 query heads, 4 KV heads).
 *
 * Also: two threads with a context each on one shared model produce what
 * they produce one after the other, and the caller's policy strings are
 * copied (freeing them before a fork is safe: ASan checks it). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

#define N_SEQ 16
#define N_PARENT 2
#define MAX_STEPS 64
#define N_GEN 12

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int rnd(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

typedef struct {
    const char *policy;
    int budget;          /* 0: the context */
    int parent;          /* -1, or the parent sequence it forks from */
    int fork_round;
    int n_prompt;        /* tokens it appends itself (after the fork, for children) */
    lethe_token prompt[96];
    /* what happened in the batch: chunk sizes in order, tokens, logits after each chunk */
    int n_steps, chunk[MAX_STEPS];
    lethe_token toks[MAX_STEPS * 24];
    int n_toks;
    float *logits;       /* n_steps x V */
    int gen[N_GEN], n_gen;
    lethe_seq *s;
    int done_prompt;
    bool started;
} spec;

static const char *POLICIES[] = {"full", "window", "h2o", "tova", "snapkv", "lazy", "knorm", "quest", "mixed"};

static void make_specs(spec *sp, int V) {
    memset(sp, 0, sizeof(spec) * N_SEQ);
    for (int i = 0; i < N_SEQ; i++) {
        spec *x = &sp[i];
        x->parent = -1;
        if (i < N_PARENT) {
            x->policy = i == 0 ? "full" : "window";
            x->budget = i == 0 ? 0 : 48;
            x->n_prompt = 40 + 7 * i;
        } else if (i < N_PARENT + 4) {
            x->parent = (i - N_PARENT) % N_PARENT; /* children share the parent's prefix */
            x->policy = sp[x->parent].policy;
            x->budget = sp[x->parent].budget;
            x->fork_round = 3;
            x->n_prompt = 3 + 5 * (i - N_PARENT);
        } else {
            x->policy = POLICIES[(i - N_PARENT - 4) % (int)(sizeof POLICIES / sizeof *POLICIES)];
            x->budget = strcmp(x->policy, "full") ? 32 + 16 * (i % 3) : 0;
            x->n_prompt = 5 + 9 * (i % 7);
        }
        for (int k = 0; k < x->n_prompt; k++) x->prompt[k] = 1 + rnd(V - 1);
    }
}

static lethe_seq_params seq_params(const spec *x) {
    lethe_seq_params p = lethe_seq_default_params();
    p.kv.name = x->policy;
    p.kv.budget = x->budget;
    return p;
}

static lethe_ctx_params ctx_params(int threads) {
    lethe_ctx_params p = lethe_ctx_default_params();
    p.kv_type = LETHE_KV_F32;
    p.n_ctx = 160;
    p.n_seq_max = N_SEQ;
    p.n_threads = threads;
    p.kv_page_slots = 16;
    return p;
}

/* The next chunk of x: prompt tokens (a random size its budget allows), or
 * the greedy token after its last logits. */
static int next_chunk(spec *x, int V, lethe_token *out) {
    if (x->done_prompt < x->n_prompt) {
        int cap = lethe_seq_max_batch(x->s), left = x->n_prompt - x->done_prompt;
        int c = 1 + rnd(left < 24 ? left : 24);
        if (c > cap) c = cap;
        memcpy(out, x->prompt + x->done_prompt, (size_t)c * sizeof *out);
        x->done_prompt += c;
        return c;
    }
    if (x->n_gen >= N_GEN) return 0;
    out[0] = argmax(x->logits + (size_t)(x->n_steps - 1) * V, V);
    x->gen[x->n_gen++] = out[0];
    return 1;
}

static void record(spec *x, const lethe_token *t, int c, const float *lg, int V) {
    if (x->n_steps >= MAX_STEPS) return;
    memcpy(x->toks + x->n_toks, t, (size_t)c * sizeof *t);
    x->n_toks += c;
    x->chunk[x->n_steps] = c;
    memcpy(x->logits + (size_t)x->n_steps * V, lg, (size_t)V * sizeof *lg);
    x->n_steps++;
}

/* Runs every spec in shared batches. Returns 0 on failure. */
static int run_batched(lethe_ctx *c, spec *sp, int V) {
    char err[512];
    lethe_token rows_tok[N_SEQ * 24];
    lethe_seq *rows_seq[N_SEQ * 24];
    float *lg = malloc(sizeof(float) * (size_t)V * N_SEQ);
    int ok = 1;
    for (int round = 0; round < 200 && ok; round++) {
        /* forks happen at their round, before the batch */
        for (int i = 0; i < N_SEQ; i++) {
            spec *x = &sp[i];
            if (x->started) continue;
            if (x->parent < 0) {
                lethe_seq_params p = seq_params(x);
                x->s = lethe_seq_create(c, &p, err, sizeof err);
            } else if (round == x->fork_round) {
                spec *par = &sp[x->parent];
                x->s = lethe_seq_fork(par->s, err, sizeof err);
                /* the child inherits the parent's history so far */
                memcpy(x->toks, par->toks, (size_t)par->n_toks * sizeof *x->toks);
                x->n_toks = par->n_toks;
                memcpy(x->chunk, par->chunk, (size_t)par->n_steps * sizeof *x->chunk);
                memcpy(x->logits, par->logits, (size_t)par->n_steps * V * sizeof(float));
                x->n_steps = par->n_steps;
            } else {
                continue;
            }
            if (!CHECKF(x->s != NULL, "seq %d: %s", i, err)) { ok = 0; break; }
            x->started = true;
        }
        /* this round's chunks, then rows interleaved with each sequence's order kept */
        lethe_token chunks[N_SEQ][24];
        int len[N_SEQ], pos[N_SEQ], n_rows = 0, active = 0;
        for (int i = 0; i < N_SEQ; i++) {
            spec *x = &sp[i];
            bool parent_waits = false; /* parents do not move on before their children fork */
            for (int j = 0; j < N_SEQ; j++) parent_waits |= sp[j].parent == i && !sp[j].started && round >= 2;
            len[i] = x->started && !parent_waits && rnd(4) ? next_chunk(x, V, chunks[i]) : 0;
            pos[i] = 0;
            n_rows += len[i];
            active += x->started && (x->done_prompt < x->n_prompt || x->n_gen < N_GEN);
        }
        if (!active && n_rows == 0) break;
        if (n_rows == 0) continue;
        int order[N_SEQ * 24], k = 0;
        for (int i = 0; i < N_SEQ; i++)
            for (int j = 0; j < len[i]; j++) order[k++] = i;
        for (int r = n_rows - 1; r > 0; r--) { /* shuffle which sequence comes next */
            int q = rnd(r + 1), t = order[r];
            order[r] = order[q];
            order[q] = t;
        }
        for (int r = 0; r < n_rows; r++) {
            int i = order[r];
            rows_tok[r] = chunks[i][pos[i]++];
            rows_seq[r] = sp[i].s;
        }
        lethe_batch b = {n_rows, rows_tok, rows_seq, NULL};
        lethe_status st = lethe_ctx_decode(c, &b, lg);
        if (!CHECKF(st == LETHE_OK, "batch of %d rows: %s", n_rows, lethe_ctx_error(c))) { ok = 0; break; }
        /* logits come in the order of each sequence's last row */
        int seen[N_SEQ] = {0}, out_i = 0;
        int last_row[N_SEQ];
        for (int i = 0; i < N_SEQ; i++) last_row[i] = -1;
        for (int r = 0; r < n_rows; r++) last_row[order[r]] = r;
        for (int r = 0; r < n_rows; r++) {
            int i = order[r];
            if (last_row[i] != r || seen[i]) continue;
            seen[i] = 1;
            record(&sp[i], chunks[i], len[i], lg + (size_t)out_i++ * V, V);
        }
    }
    free(lg);
    return ok;
}

/* Replays spec x alone in a fresh context and compares. */
static double replay_alone(const char *path, int threads, const spec *sp, int i, int V, bool *same_tokens) {
    const spec *x = &sp[i];
    lethe_ctx_params cp = ctx_params(threads);
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(c != NULL, "alone ctx: %s", err)) return 1e9;
    lethe_seq_params p = seq_params(x);
    lethe_seq *s = lethe_seq_create(c, &p, err, sizeof err);
    float *lg = malloc(sizeof(float) * (size_t)V);
    double worst = 0;
    *same_tokens = true;
    int off = 0;
    for (int k = 0; s && k < x->n_steps; k++) {
        if (!CHECKF(lethe_seq_append(s, x->toks + off, x->chunk[k], lg) == LETHE_OK, "alone seq %d step %d: %s", i, k,
                    lethe_seq_error(s)))
            break;
        off += x->chunk[k];
        const float *ref = x->logits + (size_t)k * V;
        for (int v = 0; v < V; v++) {
            double d = lg[v] > ref[v] ? lg[v] - ref[v] : ref[v] - lg[v];
            if (d > worst) worst = d;
        }
        *same_tokens &= argmax(lg, V) == argmax(ref, V);
    }
    free(lg);
    lethe_seq_free(s);
    tu_close_ctx(c);
    return worst;
}

static void batched_equals_alone(const char *rel) {
    const char *path = tu_model_path(rel);
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    for (int threads = 1; threads <= 3; threads++) {
        lethe_ctx_params cp = ctx_params(threads);
        char err[512];
        lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
        if (!CHECKF(c != NULL, "ctx: %s", err)) return;
        lethe_model_info info;
        lethe_model_get_info(lethe_ctx_model(c), &info);
        const int V = info.n_vocab;
        rng = 0x9e3779b97f4a7c15ull + (uint64_t)threads;
        spec *sp = calloc(N_SEQ, sizeof *sp);
        make_specs(sp, V);
        for (int i = 0; i < N_SEQ; i++) sp[i].logits = malloc(sizeof(float) * (size_t)V * MAX_STEPS);
        int ok = run_batched(c, sp, V);
        tu_close_ctx(c); /* frees the sequences too */
        double worst = 0;
        int all_same = 1, steps = 0;
        for (int i = 0; ok && i < N_SEQ; i++) {
            bool same = false;
            double d = replay_alone(path, threads, sp, i, V, &same);
            CHECKF(same, "%s, %d threads: sequence %d (%s) picks other greedy tokens alone", rel, threads, i, sp[i].policy);
            CHECKF(d <= 1e-5, "%s, %d threads: sequence %d (%s) logits differ by %.3g alone", rel, threads, i, sp[i].policy, d);
            CHECKF(sp[i].n_gen == N_GEN, "sequence %d generated %d tokens", i, sp[i].n_gen);
            if (d > worst) worst = d;
            all_same &= same;
            steps += sp[i].n_steps;
        }
        printf("%s, %d threads: %d sequences, %d steps, greedy %s, max|d| logits %.3g\n", rel, threads, N_SEQ, steps,
               all_same ? "identical" : "DIFFERENT", worst);
        for (int i = 0; i < N_SEQ; i++) free(sp[i].logits);
        free(sp);
    }
}

/* ---- two contexts on one model, two threads ---- */

typedef struct {
    const lethe_model *m;
    const char *prompt;
    int out[48];
    float last[4];
    int ok;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 128;
    char err[512];
    lethe_ctx *c = lethe_ctx_create(j->m, &cp, err, sizeof err);
    lethe_seq *s = c ? lethe_seq_create(c, NULL, err, sizeof err) : NULL;
    lethe_model_info info;
    lethe_model_get_info(j->m, &info);
    float *lg = malloc(sizeof(float) * (size_t)info.n_vocab);
    lethe_token ids[64];
    int n = lethe_tokenize(j->m, j->prompt, strlen(j->prompt), ids, 64, true, false);
    j->ok = s && lg && n > 0 && n <= 64 && lethe_seq_append(s, ids, n, lg) == LETHE_OK;
    for (int i = 0; j->ok && i < 48; i++) {
        j->out[i] = argmax(lg, info.n_vocab);
        j->ok = lethe_seq_decode(s, j->out[i], lg) == LETHE_OK;
    }
    if (j->ok) memcpy(j->last, lg, sizeof j->last);
    free(lg);
    lethe_ctx_free(c);
    return NULL;
}

static void two_threads(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    char err[512];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    job seq_a = {m, "Once upon a time, there was a little fox", {0}, {0}, 0};
    job seq_b = {m, "Tom had a red ball. He", {0}, {0}, 0};
    job par_a = seq_a, par_b = seq_b;
    run_job(&seq_a);
    run_job(&seq_b);
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, run_job, &par_a) == 0);
    CHECK(pthread_create(&tb, NULL, run_job, &par_b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(seq_a.ok && seq_b.ok && par_a.ok && par_b.ok);
    CHECK(!memcmp(seq_a.out, par_a.out, sizeof seq_a.out) && !memcmp(seq_a.last, par_a.last, sizeof seq_a.last));
    CHECK(!memcmp(seq_b.out, par_b.out, sizeof seq_b.out) && !memcmp(seq_b.last, par_b.last, sizeof seq_b.last));
    CHECK(memcmp(seq_a.out, seq_b.out, sizeof seq_a.out) != 0); /* the prompts lead apart */
    lethe_model_free(m);
}

/* The policy name and calibration path are copied at creation: freeing the
 * caller's strings before a fork must be harmless (a use-after-free before). */
static void strings_copied(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) return;
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 128;
    cp.n_seq_max = 2;
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECKF(c != NULL, "ctx: %s", err)) return;
    char *name = malloc(16), *calib = malloc(64);
    strcpy(name, "window");
    strcpy(calib, "/nonexistent/never-read.calib");
    lethe_seq_params p = lethe_seq_default_params();
    p.kv.name = name;
    p.kv.calib_path = calib;
    p.kv.budget = 32;
    lethe_seq *a = lethe_seq_create(c, &p, err, sizeof err);
    memset(name, 'x', 15); /* the caller reuses its buffers */
    free(name);
    free(calib);
    CHECK(a != NULL);
    lethe_token ids[8] = {1, 20, 30, 40, 50, 60, 70, 80};
    CHECK(a && lethe_seq_append(a, ids, 8, NULL) == LETHE_OK);
    lethe_seq *b = a ? lethe_seq_fork(a, err, sizeof err) : NULL;
    CHECKF(b != NULL, "fork: %s", err);
    CHECK(b && lethe_seq_max_batch(b) == 16); /* still a window policy of budget 32 */
    tu_close_ctx(c);
}

/* Bad batches are refused before anything runs. */
static void bad_batches(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) return;
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq_max = 2;
    char err[512];
    lethe_ctx *c = tu_open_ctx(path, &cp, err, sizeof err);
    lethe_ctx *other = tu_open_ctx(path, &cp, err, sizeof err);
    if (!CHECK(c && other)) return;
    lethe_seq *a = lethe_seq_create(c, NULL, err, sizeof err), *x = lethe_seq_create(other, NULL, err, sizeof err);
    float lg[512 * 4];
    lethe_token t[3] = {1, 2, 3};
    lethe_seq *rows[3] = {a, x, a};
    lethe_batch b = {3, t, rows, NULL};
    CHECK(lethe_ctx_decode(c, &b, lg) == LETHE_ERR_ARG); /* a sequence of another context */
    CHECK(lethe_seq_n_past(a) == 0);
    lethe_token bad[2] = {5, 99999};
    lethe_seq *rows2[2] = {a, a};
    lethe_batch b2 = {2, bad, rows2, NULL};
    CHECK(lethe_ctx_decode(c, &b2, lg) == LETHE_ERR_ARG && lethe_seq_n_past(a) == 0);
    CHECK(lethe_ctx_decode(c, NULL, lg) == LETHE_ERR_ARG);
    CHECK(lethe_ctx_decode(NULL, &b2, lg) == LETHE_ERR_ARG);
    /* forward-1 of the fuzz findings: an id out of range in a streamed append changes nothing */
    lethe_seq_params p = lethe_seq_default_params();
    p.kv.name = "window";
    p.kv.budget = 4;
    lethe_seq *w = lethe_seq_create(c, &p, err, sizeof err);
    lethe_token ids[4] = {5, 6, 7, -1};
    CHECK(w && lethe_seq_append(w, ids, 4, NULL) == LETHE_ERR_ARG);
    CHECK(lethe_seq_n_past(w) == 0 && lethe_seq_n_tokens(w) == 0 && lethe_seq_n_cached(w) == 0);
    tu_close_ctx(other);
    tu_close_ctx(c);
}

int main(void) {
    strings_copied();
    bad_batches();
    two_threads();
    batched_equals_alone("stories260K.gguf");
    batched_equals_alone("synthetic/randllama-d256-L2.F16.gguf");
    return tu_finish("test_batch");
}
