/* Token sampling. The order follows common practice (and llama.cpp's default
 * chain): repetition penalty, top-k, top-p, min-p, temperature, then a draw
 * from a seeded xoshiro256** generator, so a seed reproduces a run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"

struct lethe_sampler {
    lethe_sampler_params p;
    int n_vocab;
    uint64_t rng[4];
    lethe_token *recent; /* ring of the last repeat_last_n tokens */
    int n_recent, head;
    struct cand { float logit; int id; } *cand;
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

lethe_sampler_params lethe_sampler_default_params(void) {
    lethe_sampler_params p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

lethe_sampler *lethe_sampler_create(const lethe_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    if (p && (p->repeat_last_n > (1 << 20) || !(p->temperature >= 0.0f && p->temperature < 1e6f) || p->top_k < 0 ||
              !(p->top_p >= 0.0f && p->top_p <= 1.0f) || !(p->min_p >= 0.0f && p->min_p <= 1.0f) ||
              !(p->repeat_penalty > 0.0f && p->repeat_penalty < 1e6f)))
        return NULL; /* out-of-range parameters (NaN included) */
    lethe_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : lethe_sampler_default_params();
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->recent = malloc((size_t)(s->p.repeat_last_n > 0 ? s->p.repeat_last_n : 1) * sizeof *s->recent);
    if (!s->cand || !s->recent) {
        lethe_sampler_free(s);
        return NULL;
    }
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    return s;
}

void lethe_sampler_free(lethe_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->recent);
    free(s);
}

void lethe_sampler_accept(lethe_sampler *s, lethe_token t) {
    if (!s || s->p.repeat_last_n <= 0) return;
    s->recent[s->head] = t;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* CTRL-style penalty: divide positive logits, multiply negative ones, once
 * per distinct recent token. */
static void apply_repeat_penalty(lethe_sampler *s, float *logits) {
    const float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->n_recent == 0) return;
    for (int i = 0; i < s->n_recent; i++) {
        lethe_token t = s->recent[i];
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= s->recent[j] == t;
        if (seen || t < 0 || t >= s->n_vocab) continue;
        logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
    }
}

static int cmp_cand(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Moves the k best candidates (by cmp_cand order) to the front in O(n log k)
 * with a heap whose root is the worst of those kept. Returns k. */
static void sift_down(struct cand *h, int k, int i) {
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && cmp_cand(&h[l], &h[w]) > 0) w = l;
        if (r < k && cmp_cand(&h[r], &h[w]) > 0) w = r;
        if (w == i) return;
        struct cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static int select_top(struct cand *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++)
        if (cmp_cand(&c[i], &c[0]) < 0) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    return k;
}

static lethe_token argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

lethe_token lethe_sampler_sample(lethe_sampler *s, float *logits) {
    if (!s || !logits) return -1;
    apply_repeat_penalty(s, logits);
    lethe_token tok;
    if (s->p.temperature <= 0.0f) {
        tok = argmax(logits, s->n_vocab);
        lethe_sampler_accept(s, tok);
        return tok;
    }
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) s->cand[i] = (struct cand){logits[i], i};
    if (s->p.top_k > 0 && s->p.top_k < n) {
        n = select_top(s->cand, n, s->p.top_k);
        qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_cand);
    } else {
        qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_cand);
    }
    /* softmax over candidates (at temperature 1 for the top-p / min-p cuts, as llama.cpp) */
    double sum = 0.0;
    const float max = s->cand[0].logit;
    double *prob = malloc((size_t)n * sizeof *prob);
    if (!prob) { /* degrade to greedy rather than fail */
        tok = s->cand[0].id;
        lethe_sampler_accept(s, tok);
        return tok;
    }
    for (int i = 0; i < n; i++) sum += prob[i] = exp((double)s->cand[i].logit - max);
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += prob[i] / sum;
            if (cum >= s->p.top_p) { n = i + 1; break; }
        }
    }
    if (s->p.min_p > 0.0f) {
        int keep = 1;
        while (keep < n && prob[keep] >= s->p.min_p * prob[0]) keep++;
        n = keep;
    }
    /* temperature, then draw */
    sum = 0.0;
    for (int i = 0; i < n; i++) sum += prob[i] = exp(((double)s->cand[i].logit - max) / s->p.temperature);
    double r = next_unit(s->rng) * sum, acc = 0.0;
    tok = s->cand[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += prob[i];
        if (r < acc) { tok = s->cand[i].id; break; }
    }
    free(prob);
    lethe_sampler_accept(s, tok);
    return tok;
}
