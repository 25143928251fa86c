/* A sequence's bytes, honestly: every byte it holds for its KV in RAM (hot
 * pool pages counted whole, the cold tier, the staging its cold tier is
 * attended through, the per-slot and per-policy state), and apart from
 * them the disk tier's file and traffic. A byte budget bounds the RAM sum:
 * seq_budget_from_bytes turns it into a slot budget (and quest's pages)
 * with a model of the same sum, and seq_bytes_check refuses a step whose
 * reserved bytes would pass it. */
#include <string.h>

#include "runtime/engine.h"

/* The page array slack of a cold tier beyond its allocated pages. */
static size_t cold_array_slack(const kv_cold *c) {
    return c->cap_pages > c->n_alloc ? (size_t)(c->cap_pages - c->n_alloc) * sizeof(kv_cold_page) : 0;
}

/* A slot's bytes beside its KV rows: its position, the statistics (attn_last
 * and the channels beside it) and the policy's aux floats. */
static size_t slot_bytes(bool stats, unsigned channels, int aux) {
    size_t b = sizeof(int32_t) + (size_t)aux * sizeof(float);
    if (stats) b += sizeof(float) + (channels & KV_STATS_ACC ? sizeof(float) : 0) + (channels & KV_STATS_HIT ? sizeof(int32_t) : 0);
    return b;
}

static size_t stream_state(const kv_stream *st) {
    const size_t per_slot = slot_bytes(st->attn_last != NULL, kv_stream_stats_channels(st), st->aux_width);
    return (size_t)st->cap * per_slot + (size_t)st->pages_cap * sizeof(int32_t);
}

/* The rows of the context's merge buffers a sequence's chunks use: its
 * largest chunk (the hot attention's lse), of which a disk tier merges
 * ATTEND_COLD_ROWS at a time (the cold output and lse). */
static size_t merge_bytes(const lethe_seq *s, size_t rows) {
    const hparams *hp = &s->c->m->hp;
    size_t cold_rows = s->stage && rows > ATTEND_COLD_ROWS ? ATTEND_COLD_ROWS : rows;
    return (rows * (size_t)hp->n_head + cold_rows * ((size_t)hp->n_head * hp->head_dim + (size_t)hp->n_head)) * sizeof(float);
}

/* The context's cold-tier scratch (views, ranking, merge buffers): what a
 * sequence with a cold tier is attended through; the merge buffers are
 * shared by the context's sequences, each counts the rows it uses. */
static size_t ctx_cold_staging(const lethe_seq *s) {
    const lethe_ctx *c = s->c;
    const hparams *hp = &c->m->hp;
    size_t rows = (size_t)lethe_seq_max_batch(s);
    if (rows > c->merge_rows) rows = c->merge_rows;
    size_t b = c->rank_bytes + merge_bytes(s, rows);
    for (int h = 0; c->views && h < hp->n_head_kv; h++)
        b += (size_t)c->views[h].cap * sizeof(int32_t) + (size_t)c->views[h].pages_cap * sizeof(int32_t);
    return b;
}

static size_t str_bytes(const char *x) { return x ? strlen(x) + 1 : 0; }

/* The sequence's own structs: itself, its streams' headers, its policy's,
 * the strings it keeps (policy name, calibration path, cold kind and
 * directory) and, with a cold tier, the tiers' headers (one per stream,
 * and on disk one stage per KV head). */
static size_t own_structs(size_t S, size_t H, bool cold, bool disk, const char *name, const char *calib, const char *kind,
                          const char *dir) {
    return sizeof(lethe_seq) + S * sizeof(kv_stream) + sizeof(kv_policy) + str_bytes(name) + str_bytes(calib) +
           str_bytes(kind) + str_bytes(dir) + (cold ? S * sizeof(kv_cold) : 0) + (disk ? H * sizeof(kv_cold) : 0);
}

void seq_bytes_get(const lethe_seq *s, lethe_seq_bytes *b) {
    memset(b, 0, sizeof *b);
    const kv_pool *pool = s->c->kv;
    const size_t P = (size_t)kv_pool_page_slots(pool), pb = kv_pool_page_bytes(pool);
    const int H = s->c->m->hp.n_head_kv;
    size_t max_n = 0;
    for (int i = 0; i < s->n_streams; i++) {
        const kv_stream *st = &s->streams[i];
        b->hot_bytes += ((size_t)st->n + P - 1) / P * pb;
        b->state_bytes += stream_state(st);
        if ((size_t)st->cap > max_n) max_n = (size_t)st->cap;
        if (s->cold) {
            b->cold_bytes += kv_cold_bytes_reserved(&s->cold[i]) + cold_array_slack(&s->cold[i]);
            b->disk_bytes += kv_cold_disk_bytes(&s->cold[i]);
            b->disk_read_bytes += s->cold[i].read_bytes;
            b->disk_write_bytes += s->cold[i].write_bytes;
        }
    }
    if (s->cold) b->staging_bytes = ctx_cold_staging(s);
    for (int h = 0; s->stage && h < H; h++)
        b->staging_bytes += kv_cold_bytes_reserved(&s->stage[h]) + cold_array_slack(&s->stage[h]);
    b->state_bytes += kv_plan_bytes(s->plan) + 3 * (size_t)s->n_streams * sizeof(int) + (size_t)s->order_cap * sizeof(int);
    if (s->head_reach) b->state_bytes += (size_t)s->n_streams * sizeof(float);
    if (s->protect_heap) b->state_bytes += 2 * (size_t)s->cap_protect * sizeof(int32_t);
    b->state_bytes += own_structs((size_t)s->n_streams, (size_t)H, s->cold != NULL, s->stage != NULL, s->policy_name,
                                  s->calib_path, s->cold_kind, s->cold_dir);
    if (s->policy) {
        const policy_reach r = {max_n, s->n_streams, s->c->m->hp.head_dim, s->c->m->hp.n_head_kv};
        b->state_bytes += policy_state_reach(s->policy->ops, &s->policy->params, &r);
    }
    b->ram_bytes = b->hot_bytes + b->cold_bytes + b->staging_bytes + b->state_bytes;
    b->ram_peak = s->ram_peak > b->ram_bytes ? s->ram_peak : b->ram_bytes;
    b->budget_bytes = s->budget_bytes;
}

lethe_status lethe_seq_get_bytes(const lethe_seq *s, lethe_seq_bytes *b) {
    if (!s || !b) return LETHE_ERR_ARG;
    seq_bytes_get(s, b);
    return LETHE_OK;
}

void lethe_seq_reset_bytes_peak(lethe_seq *s) {
    if (!s) return;
    s->ram_peak = 0;
    seq_bytes_note(s);
}

void seq_bytes_note(lethe_seq *s) {
    lethe_seq_bytes b;
    seq_bytes_get(s, &b);
    s->ram_peak = b.ram_peak;
}

lethe_status seq_bytes_check(lethe_seq *s, int c, bool planned) {
    if (!s->budget_bytes) return LETHE_OK;
    const size_t P = (size_t)kv_pool_page_slots(s->c->kv), pb = kv_pool_page_bytes(s->c->kv);
    lethe_seq_bytes b;
    seq_bytes_get(s, &b);
    /* the pages the streams hold once the chunk is in (a planned stream keeps
     * at most its target); everything else is reserved already */
    size_t hot = 0;
    for (int i = 0; i < s->n_streams; i++) {
        size_t n = (size_t)s->streams[i].n;
        if (planned && (size_t)s->target[i] < n) n = (size_t)s->target[i];
        hot += (n + (size_t)c + P - 1) / P * pb;
    }
    size_t ram = b.ram_bytes - b.hot_bytes + hot;
    if (ram > s->budget_bytes)
        return set_error(s->err, LETHE_ERR_BUDGET,
                         "%d token%s would make the sequence hold %zu bytes of KV (hot %zu, cold %zu, staging %zu, state "
                         "%zu), over its byte budget of %zu",
                         c, c == 1 ? "" : "s", ram, hot, b.cold_bytes, b.staging_bytes, b.state_bytes, s->budget_bytes);
    return LETHE_OK;
}

/* The model of seq_bytes_get for a slot budget b per stream: every array at
 * the size it reaches under that budget (the per-slot arrays are reserved
 * to it at creation; geometric growth elsewhere is counted doubled). */
typedef struct {
    size_t P, pb, S, H, hd, n_head, n_ctx;
    const kv_policy_ops *ops;
    const lethe_kv_policy_params *kp;
    int aux;
    bool disk, ram_cold;
    size_t cold_page;  /* RAM bytes of one cold page (its bounds on disk) with its array entry */
    size_t cold_fixed; /* the cold tier's scratch (+ record buffers on disk) */
    size_t stage_page; /* RAM bytes of one staged page */
} byte_model;

static size_t pages_of(size_t n, size_t P) { return (n + P - 1) / P; }

/* One stream under slot budget b that may hold cap slots (b, unless its
 * layer's streams share their room): its hot pages, its per-slot arrays and
 * page table (reserved to cap), its plan masks. */
static size_t stream_part(const byte_model *m, size_t b, size_t cap) {
    const size_t P = m->P, pcap = pages_of(cap, P); /* reserved exactly (kv_stream_reserve_exact) */
    const size_t per_slot = slot_bytes(m->ops->needs_stats, m->ops->stats, m->aux);
    return pages_of(b, P) * m->pb + cap * per_slot + pcap * sizeof(int32_t) + cap * (m->ops->cold_tier ? 2 : 1); /* keep (+ demote) */
}

/* What the sequence holds once, sized by its largest stream budget: plan
 * scratch, the policy's state, the sequence's arrays. */
static size_t shared_part(const byte_model *m, size_t bmax) {
    const policy_reach r = {bmax, (int)m->S, (int)m->hd, (int)m->H};
    return kv_plan_fixed_bytes((int)m->S, m->ops->cold_tier) +
           (m->ops->cold_tier ? bmax * (sizeof(int) + sizeof(float)) : 0) /* the plan's demotion scratch */ +
           policy_state_reach(m->ops, m->kp, &r) + 3 * m->S * sizeof(int) +
           own_structs(m->S, m->H, m->ops->cold_tier, m->disk, m->ops->name, m->kp->calib_path, m->kp->cold, m->kp->cold_dir) +
           (m->kp->reindex ? bmax * sizeof(int) : 0); /* the re-index order */
}

static size_t model_bytes(const byte_model *m, size_t b, size_t want, size_t cold_slots) {
    const size_t P = m->P, S = m->S;
    size_t bytes = S * stream_part(m, b, b) + shared_part(m, b);
    if (!m->ops->cold_tier) return bytes;
    /* cold tier: pages it may hold, its mask, the ranking over them */
    size_t cold_pages = m->ram_cold ? pages_of(cold_slots, P) : pages_of(m->n_ctx, P);
    if (m->ops->cold_in_budget) cold_pages = 0; /* inside the hot pages' bytes (mixed) */
    size_t arr = m->disk ? sizeof(kv_cold_page) : 2 * (cold_pages > 8 ? cold_pages : 8) * sizeof(kv_cold_page);
    bytes += S * (cold_pages * m->cold_page + arr) + m->cold_fixed + S * cold_pages * P;
    size_t rank_pages = cold_pages + pages_of(b, P) + 2;
    bytes += 2 * rank_pages * (sizeof(page_rank) + sizeof(int));
    /* views (at most the staged pages, else every cold page), merge rows */
    size_t view_pages = m->disk ? want : rank_pages;
    bytes += m->H * 2 * (view_pages * P + view_pages) * sizeof(int32_t);
    size_t rows = b / 2 > 1 ? b / 2 : 1, cold_rows = m->disk && rows > ATTEND_COLD_ROWS ? ATTEND_COLD_ROWS : rows;
    bytes += (rows * m->n_head + cold_rows * (m->n_head * m->hd + m->n_head)) * sizeof(float);
    if (m->disk) bytes += m->H * (want * m->stage_page + (want > 8 ? want : 8) * sizeof(kv_cold_page));
    return bytes;
}

/* The hot pages' bytes under slot budget b. */
#define S_HOT(m, b) ((m)->S * pages_of((b), (m)->P) * (m)->pb)

static byte_model model_of(const lethe_seq *s, const kv_policy_ops *ops, const lethe_kv_policy_params *kp, bool cold_disk) {
    const hparams *hp = &s->c->m->hp;
    return (byte_model){.P = (size_t)kv_pool_page_slots(s->c->kv), .pb = kv_pool_page_bytes(s->c->kv),
                        .S = (size_t)s->n_streams, .H = (size_t)hp->n_head_kv, .hd = (size_t)hp->head_dim,
                        .n_head = (size_t)hp->n_head, .n_ctx = (size_t)s->n_ctx, .ops = ops, .kp = kp,
                        .aux = ops->aux_width, .disk = cold_disk,
                        .ram_cold = ops->cold_tier && !cold_disk && !ops->cold_in_budget};
}

size_t seq_bytes_model_streams(const lethe_seq *s, const kv_policy_ops *ops, const lethe_kv_policy_params *kp,
                               const int *budgets, const int *caps) {
    const byte_model m = model_of(s, ops, kp, false);
    size_t bytes = 0, cmax = 0;
    for (size_t i = 0; i < m.S; i++) {
        const size_t cap = (size_t)(caps ? caps[i] : budgets[i]);
        bytes += stream_part(&m, (size_t)budgets[i], cap);
        if (cap > cmax) cmax = cap;
    }
    /* a layer sharing its room holds its budgets' pages in all, however they fall (whole pages each) */
    return bytes + shared_part(&m, cmax);
}

void seq_layer_caps(const lethe_seq *s, const int *budget, int *floor, int *cap) {
    const int H = s->c->m->hp.n_head_kv, P = kv_pool_page_slots(s->c->kv);
    for (int l = 0; l < s->n_streams / H; l++) {
        int room = 0, floors = 0;
        for (int h = 0; h < H; h++) {
            const int b = budget[l * H + h];
            int f = (b / 5 + P - 1) / P * P;
            if (f < P) f = P;
            if (f > b) f = b;
            floor[l * H + h] = f;
            room += b, floors += f;
        }
        for (int h = 0; h < H; h++) cap[l * H + h] = room - (floors - floor[l * H + h]);
    }
}

lethe_status seq_budget_from_bytes(lethe_seq *s, const kv_policy_ops *ops, const lethe_kv_policy_params *kp, lt_type cold_dt,
                                   bool cold_disk, size_t bytes, int *budget, int *quest_pages, int *cold_slots) {
    byte_model m = model_of(s, ops, kp, cold_disk);
    *cold_slots = -1;
    if (ops->cold_tier) { /* one tier's sizes */
        const size_t scratch = kv_cold_scratch_bytes((int)m.P, (int)m.hd);
        const size_t block = kv_cold_block_bytes(cold_dt, (int)m.P, (int)m.hd);
        if (!scratch || !block) return set_error(s->err, LETHE_ERR_ARG, "cold tier: bad page shape");
        size_t bounds = 2 * m.hd, ram_page = ((bounds + 7) & ~(size_t)7) + 2 * block + m.P * (sizeof(int32_t) + sizeof(float));
        m.cold_page = (cold_disk ? bounds : ram_page) + sizeof(kv_cold_page);
        m.cold_fixed = scratch + (cold_disk ? m.P * (sizeof(int32_t) + sizeof(float)) + 2 * block : 0); /* one record buffer */
        m.stage_page = ram_page + sizeof(kv_cold_page);
    }
    const size_t P = m.P, max_b = pages_of(m.n_ctx, P) * P;
    /* quest: the hot tier takes at most hot_fraction of the bytes (at least
     * a page per stream); the rest goes to the cold tier in RAM, or on disk
     * to the pages staged per step (unless quest_pages is given) */
    const bool stage_fill = m.disk && ops->cold_pages && kp->quest_pages <= 0;
    const double hot_share = m.ram_cold || stage_fill ? (kp->hot_fraction > 0 ? kp->hot_fraction : 0.5) : 1.0;
    size_t best = 0, best_want = 0, best_cold = 0;
    for (size_t b = P; b <= max_b; b += P) {
        size_t want = kp->quest_pages > 0 ? (size_t)kp->quest_pages : stage_fill ? 1 : b / P;
        size_t cold = 0;
        size_t base = model_bytes(&m, b, want, 0);
        if (base > bytes) break;
        if (hot_share < 1.0 && b > P && (double)(S_HOT(&m, b)) > hot_share * (double)bytes) break;
        if (stage_fill)
            while (want < pages_of(m.n_ctx, P) && model_bytes(&m, b, want + 1, 0) <= bytes) want++;
        if (m.ram_cold) {
            /* whole cold pages in what is left (each also costs its mask, ranking and view entries) */
            size_t per = m.S * (m.cold_page + 2 * sizeof(kv_cold_page) + P) + 2 * (sizeof(page_rank) + sizeof(int)) +
                         m.H * 2 * (P + 1) * sizeof(int32_t);
            size_t pages = (bytes - base) / per;
            while (pages > 0 && model_bytes(&m, b, want, pages * P) > bytes) pages--;
            cold = pages * P;
        }
        best = b, best_want = want, best_cold = cold;
    }
    if (!best)
        return set_error(s->err, LETHE_ERR_BUDGET,
                         "a byte budget of %zu bytes does not hold one KV page per layer and KV head for %s (%zu bytes "
                         "needed)",
                         bytes, ops->name, model_bytes(&m, P, 1, 0));
    *budget = (int)best;
    if (ops->cold_pages) *quest_pages = (int)(best_want > 0 ? best_want : 1);
    if (m.ram_cold) *cold_slots = (int)best_cold;
    return LETHE_OK;
}
