/* Policy registry, defaults and the selection helper most policies share. */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/alloc.h"

extern const kv_policy_ops policy_full_ops;
extern const kv_policy_ops policy_window_ops;
extern const kv_policy_ops policy_h2o_ops;
extern const kv_policy_ops policy_tova_ops;
extern const kv_policy_ops policy_snapkv_ops;
extern const kv_policy_ops policy_lazy_ops;
extern const kv_policy_ops policy_knorm_ops;
extern const kv_policy_ops policy_headwise_ops;
extern const kv_policy_ops policy_quest_ops;
extern const kv_policy_ops policy_mixed_ops;

static const kv_policy_ops *const POLICIES[] = {
    &policy_full_ops,
    &policy_window_ops,
    &policy_h2o_ops,
    &policy_tova_ops,
    &policy_snapkv_ops,
    &policy_lazy_ops,
    &policy_knorm_ops,
    &policy_headwise_ops,
    &policy_quest_ops,
    &policy_mixed_ops,
    NULL,
};

const kv_policy_ops *const *policy_list(void) { return POLICIES; }

const kv_policy_ops *policy_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; POLICIES[i]; i++)
        if (!strcmp(POLICIES[i]->name, name)) return POLICIES[i];
    return NULL;
}

policy_params policy_default_params(void) {
    policy_params p;
    memset(&p, 0, sizeof p);
    p.name = "full";
    p.sink = 4;
    p.window = -1;
    p.hit_threshold = 0.02f;
    p.lag = 16;
    p.obs_window = 16;
    p.pool_kernel = 7;
    p.keyformer = false;
    p.keyformer_tau = 1.0f;
    p.seed = 0;
    p.quest_pages = 0;
    p.hot_fraction = 0.5f;
    p.snap_votes = LETHE_SNAP_PROBE;
    p.snap_alloc = LETHE_SNAP_UNIFORM;
    p.pyramid_ratio = 3.0f;
    return p;
}

kv_policy *policy_create(const kv_policy_ops *ops, const policy_params *params) {
    kv_policy *p = lt_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ops = ops;
    p->params = params ? *params : policy_default_params();
    return p;
}

void policy_free(kv_policy *p) {
    if (!p) return;
    if (p->ops->destroy) p->ops->destroy(p);
    lt_free(p->rank);
    lt_free(p);
}

int policy_window_for(const policy_params *pp, int target) {
    int w = pp->window >= 0 ? pp->window : target / 4;
    if (w < 1) w = 1;
    return w;
}

typedef struct {
    float score;
    int32_t pos;
    int idx;
} ranked;

/* lowest score first; among equals the older slot goes first */
static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void swap_ranked(ranked *x, ranked *y) {
    ranked t = *x;
    *x = *y;
    *y = t;
}

static int by_score(const ranked *x, const ranked *y) { return cmp_ranked(x, y); }
static int by_pos(const ranked *x, const ranked *y) { return (x->pos > y->pos) - (x->pos < y->pos); }

/* Moves the k lowest of r[0, m) (in cmp's order) to r[0, k), 0 < k < m:
 * quickselect with a median-of-three pivot, expected O(m). */
static void select_lowest(ranked *r, int m, int k, int (*cmp)(const ranked *, const ranked *)) {
    int a = 0, b = m - 1;
    const int t = k - 1;
    while (a < b) {
        int mid = a + (b - a) / 2;
        if (cmp(&r[mid], &r[a]) < 0) swap_ranked(&r[mid], &r[a]);
        if (cmp(&r[b], &r[a]) < 0) swap_ranked(&r[b], &r[a]);
        if (cmp(&r[b], &r[mid]) < 0) swap_ranked(&r[b], &r[mid]);
        const ranked piv = r[mid];
        int i = a, j = b;
        while (i <= j) {
            while (cmp(&r[i], &piv) < 0) i++;
            while (cmp(&r[j], &piv) > 0) j--;
            if (i <= j) swap_ranked(&r[i++], &r[j--]);
        }
        /* r[a, j] <= pivot <= r[i, b], and r[j+1, i-1] equal to it */
        if (t <= j) b = j;
        else if (t >= i) a = i;
        else break;
    }
}

bool policy_pos_protected(const int32_t *ranges, int n, int32_t pos) {
    int a = 0, b = n; /* the first range whose end is past pos */
    while (a < b) {
        int m = a + (b - a) / 2;
        if (ranges[2 * m + 1] <= pos) a = m + 1;
        else b = m;
    }
    return a < n && ranges[2 * a] <= pos;
}

int policy_protected_slots(const policy_view *v, const kv_stream *s, const uint8_t *keep) {
    if (!v || v->n_protect <= 0) return 0;
    int k = 0;
    for (int i = 0; i < s->n; i++) k += (!keep || keep[i]) && policy_pos_protected(v->protect, v->n_protect, s->pos[i]);
    return k;
}

size_t policy_rank_bytes(size_t n) { return n * sizeof(ranked); }

size_t policy_state_reach(const kv_policy_ops *ops, const policy_params *kp, const policy_reach *r) {
    return ops->state_bytes ? ops->state_bytes(kp, r) : 0;
}

size_t policy_keep_top_state(const policy_params *kp, const policy_reach *r) {
    (void)kp;
    return policy_rank_bytes(r->slots);
}

lethe_status policy_keep_top_in(const policy_view *v, const kv_stream *s, const float *score, int target, int sink,
                                int window, uint8_t *keep, void **buf, size_t *cap) {
    const bool prot = v && v->n_protect > 0;
    int n = s->n, kept = 0;
    for (int i = 0; i < n; i++) kept += keep[i] != 0;
    if (kept <= target) return LETHE_OK;
    if (target < 0) target = 0;
    if (sink < 0) sink = 0;
    if (window < 0) window = 0;
    size_t need = (size_t)n * sizeof(ranked);
    if (need > *cap) {
        void *b = lt_realloc(*buf, need);
        if (!b) return LETHE_ERR_NOMEM;
        *buf = b;
        *cap = need;
    }
    ranked *r = *buf;
    bool sorted = true;
    /* protected slots stay out of the ranking and take their share of the
     * target first: the rest is a plain selection over the others */
    int m0 = 0;
    for (int i = 0; i < n; i++) {
        if (prot && policy_pos_protected(v->protect, v->n_protect, s->pos[i])) {
            if (keep[i]) kept--, target--;
            continue;
        }
        r[m0] = (ranked){score ? score[i] : 0.0f, s->pos[i], i};
        if (m0 > 0 && r[m0].pos < r[m0 - 1].pos) sorted = false;
        m0++;
    }
    n = m0;
    if (target < 0) target = 0;
    if (kept <= target) return LETHE_OK;
    if (sink + window > target) { /* not enough room: shrink the window first, then the sinks */
        window = target - sink > 0 ? target - sink : 0;
        if (sink > target) sink = target;
    }
    int lo = sink < n ? sink : n, hi = n - window > lo ? n - window : lo;
    /* protect sinks (oldest) and window (newest) by position: r[0, lo) the
     * lo oldest, r[hi, n) the newest; O(n) selections, since evictions leave
     * slots out of position order */
    if (!sorted) {
        if (lo > 0 && lo < n) select_lowest(r, n, lo, by_pos);
        if (hi > lo && hi < n) select_lowest(r + lo, n - lo, hi - lo, by_pos);
    }
    /* candidates: the slots in r[lo, hi) still kept; drop the lowest scores */
    int m = 0;
    for (int i = lo; i < hi; i++)
        if (keep[r[i].idx]) r[lo + m++] = r[i];
    int k = kept - target < m ? kept - target : m;
    if (k <= 0) return LETHE_OK;
    if (k < m) select_lowest(r + lo, m, k, by_score);
    for (int i = lo; i < lo + k; i++) keep[r[i].idx] = 0;
    return LETHE_OK;
}

lethe_status policy_keep_top_buf(const kv_stream *s, const float *score, int target, int sink, int window, uint8_t *keep,
                                 void **buf, size_t *cap) {
    return policy_keep_top_in(NULL, s, score, target, sink, window, keep, buf, cap);
}

lethe_status policy_oom(kv_policy *p) {
    snprintf(p->err, sizeof p->err, "out of memory");
    return LETHE_ERR_NOMEM;
}

lethe_status policy_keep_top(kv_policy *p, const policy_view *v, const kv_stream *s, const float *score, int target,
                             int sink, int window, uint8_t *keep) {
    lethe_status st = policy_keep_top_in(v, s, score, target, sink, window, keep, &p->rank, &p->rank_cap);
    if (st) snprintf(p->err, sizeof p->err, "out of memory ranking %d slots", s->n);
    return st;
}

const char *const *lethe_kv_policy_names(void) {
    static const char *names[sizeof POLICIES / sizeof POLICIES[0]];
    for (size_t i = 0; POLICIES[i]; i++) names[i] = POLICIES[i]->name;
    return names;
}

bool lethe_kv_policy_uses(const char *name, const char *param) {
    const kv_policy_ops *ops = policy_find(name);
    if (!ops || !param || !*param) return false;
    if (!strcmp(param, "budget")) return true;
    size_t n = strlen(param);
    for (const char *f = ops->flags; f && *f;) {
        const char *end = strchr(f, ' ');
        size_t len = end ? (size_t)(end - f) : strlen(f);
        if (len == n && !strncmp(f, param, n)) return true;
        f += len + (end ? 1 : 0);
    }
    return false;
}

const char *lethe_kv_policy_summary(const char *name) {
    const kv_policy_ops *ops = policy_find(name);
    return ops ? ops->summary : NULL;
}
