/* Sampling: greedy picks the lowest id on ties, a seed reproduces a run,
 * each cut (top-k, top-p, min-p) removes exactly the tokens it should, the
 * temperature-1 distribution matches softmax, and the repetition penalty
 * acts on recent tokens only. */
#include <math.h>
#include <string.h>

#include "lethe.h"
#include "testutil.h"

#define V 6

static lethe_sampler *mk(float temp, int top_k, float top_p, float min_p, float rep, uint64_t seed) {
    lethe_sampler_params p = lethe_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = rep;
    p.repeat_last_n = 4;
    p.seed = seed;
    return lethe_sampler_create(&p, V);
}

/* logits with probabilities proportional to 8:4:2:1:0.5:0.25 */
static void fill(float *l) {
    for (int i = 0; i < V; i++) l[i] = (float)((V - 1 - i) * log(2.0));
}

static void counts(lethe_sampler *s, int n, int *c) {
    memset(c, 0, sizeof(int) * V);
    float l[V];
    for (int i = 0; i < n; i++) {
        fill(l);
        lethe_token t = lethe_sampler_sample(s, l);
        if (t >= 0 && t < V) c[t]++;
    }
}

int main(void) {
    float l[V] = {1, 3, 3, 0, -1, 2};
    lethe_sampler *s = mk(0, 0, 1, 0, 1, 0);
    CHECK(lethe_sampler_sample(s, l) == 1); /* tie between 1 and 2: lowest id */
    lethe_sampler_free(s);

    /* same seed, same sequence; other seed, different sequence */
    int a[64], b[64], c[64], differ = 0;
    lethe_sampler *s1 = mk(1, 0, 1, 0, 1, 7), *s2 = mk(1, 0, 1, 0, 1, 7), *s3 = mk(1, 0, 1, 0, 1, 8);
    for (int i = 0; i < 64; i++) {
        fill(l); a[i] = lethe_sampler_sample(s1, l);
        fill(l); b[i] = lethe_sampler_sample(s2, l);
        fill(l); c[i] = lethe_sampler_sample(s3, l);
        CHECK(a[i] == b[i]);
        differ += a[i] != c[i];
    }
    CHECK(differ > 0);
    lethe_sampler_free(s1);
    lethe_sampler_free(s2);
    lethe_sampler_free(s3);

    int cnt[V];
    const int N = 40000;
    /* temperature 1, no cuts: frequencies follow 8:4:2:1:.5:.25 / 15.75 */
    s = mk(1, 0, 1, 0, 1, 1);
    counts(s, N, cnt);
    for (int i = 0; i < V; i++) {
        double expect = N * pow(0.5, i) * 8 / 15.75;
        CHECKF(fabs(cnt[i] - expect) < 5 * sqrt(expect) + 5, "token %d drawn %d times, expected %.0f", i, cnt[i], expect);
    }
    lethe_sampler_free(s);
    /* top-k 2: only tokens 0 and 1, in ratio 2:1 */
    s = mk(1, 2, 1, 0, 1, 2);
    counts(s, N, cnt);
    CHECK(cnt[0] + cnt[1] == N);
    CHECKF(fabs(cnt[0] / (double)N - 2.0 / 3) < 0.02, "top-k ratio %d:%d", cnt[0], cnt[1]);
    lethe_sampler_free(s);
    /* top-p 0.8: 8/15.75 = .508, + 4/15.75 -> .762, + 2/15.75 -> .889 >= .8: keeps 3 */
    s = mk(1, 0, 0.8f, 0, 1, 3);
    counts(s, N, cnt);
    CHECK(cnt[3] == 0 && cnt[4] == 0 && cnt[5] == 0 && cnt[2] > 0);
    lethe_sampler_free(s);
    /* min-p 0.2: keeps p >= 0.2 * p_max, i.e. tokens 0, 1, 2 (ratios 1, .5, .25) */
    s = mk(1, 0, 1, 0.2f, 1, 4);
    counts(s, N, cnt);
    CHECK(cnt[3] == 0 && cnt[2] > 0);
    lethe_sampler_free(s);
    /* low temperature sharpens: token 0 dominates */
    s = mk(0.1f, 0, 1, 0, 1, 5);
    counts(s, 2000, cnt);
    CHECK(cnt[0] > 1990);
    lethe_sampler_free(s);

    /* repetition penalty: a recently seen best token loses to the runner-up */
    s = mk(0, 0, 1, 0, 4.0f, 0);
    float r[V] = {2.0f, 1.0f, 0, 0, 0, 0};
    lethe_sampler_accept(s, 0);
    CHECK(lethe_sampler_sample(s, r) == 1); /* 2/4 = 0.5 < 1 */
    /* after 4 more tokens token 0 leaves the window of 4 */
    for (int i = 0; i < 4; i++) lethe_sampler_accept(s, 5);
    float r2[V] = {2.0f, 1.0f, 0, 0, 0, 0};
    CHECK(lethe_sampler_sample(s, r2) == 0);
    lethe_sampler_free(s);
    return tu_finish("test_sample");
}
