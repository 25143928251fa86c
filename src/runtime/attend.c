/* Attention of one sequence at one layer: its new keys and values go into
 * its hot streams, the queries attend them, and, for policies with a cold
 * tier, the cold pages the policy picks are attended too, read and
 * dequantised in place by the attention kernels (no staging copy), and
 * merged exactly by log-sum-exp. The decode rows of all sequences go
 * through one dispatch; with shared_prefix_attn, those sharing pages
 * (forks) attend the shared pages once together (attn_decode_shared). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/alloc.h"

lethe_status attend_reserve(lethe_ctx *c, int rows, int max_cold_pages, int max_view_pages) {
    const hparams *hp = &c->m->hp;
    if (rows > FWD_CHUNK) rows = FWD_CHUNK;
    if ((size_t)rows > c->merge_rows) {
        size_t qd = (size_t)hp->n_head * hp->head_dim, nh = (size_t)hp->n_head;
        float *a = lt_realloc(c->att2, (size_t)rows * qd * sizeof *a);
        if (a) c->att2 = a;
        float *l = a ? lt_realloc(c->lse, (size_t)rows * nh * sizeof *l) : NULL;
        if (l) c->lse = l;
        float *l2 = l ? lt_realloc(c->lse2, (size_t)rows * nh * sizeof *l2) : NULL;
        if (l2) c->lse2 = l2;
        if (!l2) return LETHE_ERR_NOMEM;
        c->merge_rows = (size_t)rows;
    }
    if (c->params.shared_prefix_attn && rows >= 2 && (size_t)rows > c->sh_rows) {
        attn_decode_job *j = lt_realloc(c->sh_jobs, (size_t)rows * sizeof *j);
        if (!j) return LETHE_ERR_NOMEM;
        c->sh_jobs = j;
        c->sh_rows = (size_t)rows;
    }
    if (max_cold_pages > 0) {
        size_t need = (size_t)max_cold_pages * (sizeof(page_rank) + sizeof(int));
        if (need > c->rank_bytes) {
            if (need < 2 * c->rank_bytes) need = 2 * c->rank_bytes; /* geometric, for a growing cold tier */
            void *r = lt_realloc(c->rank, need);
            if (!r) return LETHE_ERR_NOMEM;
            c->rank = r;
            c->rank_bytes = need;
        }
        /* the view streams list every chosen page's slots without growing */
        for (int h = 0; h < hp->n_head_kv; h++)
            if (kv_stream_reserve(c->kv, &c->views[h], max_view_pages * kv_pool_page_slots(c->kv))) return LETHE_ERR_NOMEM;
    }
    return LETHE_OK;
}

/* The view of stream h's cold pages that s's policy picks for queries q:
 * page indices of the cold tier (the last, partly filled page last, as a
 * page table needs) and their slots' positions; no K/V is copied. A disk
 * tier's chosen pages are read into s's stage tier for head h first (the
 * view then indexes the stage). LETHE_ERR_IO when a read fails. */
static lethe_status view_cold(lethe_ctx *c, lethe_seq *s, int l, int h, const float *q, int n, kv_stream *view) {
    const hparams *hp = &c->m->hp;
    kv_cold *cold = &s->cold[(long)l * hp->n_head_kv + h];
    const int np = cold->n_pages, P = cold->page_slots;
    view->n = 0;
    if (np == 0) return LETHE_OK;
    int *sel = (int *)(void *)((page_rank *)c->rank + np);
    int n_sel = np;
    if (s->policy->ops->cold_pages)
        n_sel = s->policy->ops->cold_pages(s->policy, cold, q, n, hp->n_head, h, hp->n_head / hp->n_head_kv, sel, c->rank);
    else
        for (int i = 0; i < np; i++) sel[i] = i;
    if (s->stage) { /* full pages first, the partial one last, then read */
        for (int i = 0; i < n_sel; i++)
            if (cold->pages[sel[i]].n < P && i < n_sel - 1) {
                int t = sel[i];
                sel[i] = sel[n_sel - 1];
                sel[n_sel - 1] = t;
                break;
            }
        if (n_sel > s->stage_pages) n_sel = s->stage_pages; /* not expected: the policy picks at most that */
        kv_cold *stg = &s->stage[h];
        if (kv_cold_stage(cold, sel, n_sel, stg)) return LETHE_ERR_IO;
        for (int i = 0; i < n_sel; i++) {
            view->pages[i] = i;
            memcpy(view->pos + view->n, stg->pages[i].pos, (size_t)stg->pages[i].n * sizeof *view->pos);
            view->n += stg->pages[i].n;
        }
        return LETHE_OK;
    }
    int partial = -1;
    for (int i = 0; i < n_sel; i++) {
        int pg = sel[i];
        if (cold->pages[pg].n < P) {
            partial = pg;
            continue;
        }
        view->pages[view->n / P] = pg;
        memcpy(view->pos + view->n, cold->pages[pg].pos, (size_t)P * sizeof *view->pos);
        view->n += P;
    }
    if (partial >= 0) {
        view->pages[view->n / P] = partial;
        memcpy(view->pos + view->n, cold->pages[partial].pos, (size_t)cold->pages[partial].n * sizeof *view->pos);
        view->n += cold->pages[partial].n;
    }
    return LETHE_OK;
}

/* Cold-tier attention of rows [r0, r0 + n) of a chunk: pages picked for
 * these queries, attended, merged into out by log-sum-exp. */
static lethe_status attend_cold_rows(lethe_ctx *c, lethe_seq *s, int l, const float *q, const int32_t *pos, int n, float *out,
                                     const float *lse, char *err) {
    const hparams *hp = &c->m->hp;
    const int H = hp->n_head_kv, hd = hp->head_dim;
    lethe_status st = LETHE_OK;
    for (int h = 0; h < H && !st; h++) st = view_cold(c, s, l, h, q, n, &c->views[h]);
    if (st) {
        for (int h = 0; h < H; h++) c->views[h].n = 0;
        int e = s->cold[(long)l * H].io_errno;
        for (int h = 1; h < H && !e; h++) e = s->cold[(long)l * H + h].io_errno;
        return set_error(err, st, "forward: cannot read the cold tier's pages from disk (%s)", strerror(e ? e : EIO));
    }
    attn_layer al = {c->kv, c->views, hp->n_head, H, hd, 1.0f / sqrtf((float)hd), s->stage ? s->stage : s->cold + (long)l * H};
    if (attn_forward_lse(c->tp, c->attn, &al, q, pos, n, c->att2, c->lse2, NULL) != 0) st = LETHE_ERR_NOMEM;
    else attn_merge_lse(out, (float *)lse, c->att2, c->lse2, n * hp->n_head, hd);
    for (int h = 0; h < H; h++) c->views[h].n = 0; /* the views own no pages */
    return st ? set_error(err, st, "forward: cold-tier attention failed (%s)", lethe_status_name(st)) : LETHE_OK;
}

/* A disk tier's chunk goes ATTEND_COLD_ROWS rows at a time (each block
 * picks and reads its own pages), so its merge buffers stay small; a RAM
 * tier's chunk goes whole. */
static lethe_status attend_cold(lethe_ctx *c, lethe_seq *s, int l, const float *q, const int32_t *pos, int n, float *out,
                                char *err) {
    const hparams *hp = &c->m->hp;
    const int H = hp->n_head_kv, qd = hp->n_head * hp->head_dim;
    bool any = false;
    for (int h = 0; h < H; h++) any |= s->cold[(long)l * H + h].n_pages > 0;
    if (!any) return LETHE_OK;
    const int block = s->stage ? ATTEND_COLD_ROWS : n;
    for (int r0 = 0; r0 < n; r0 += block) {
        const int nb = n - r0 < block ? n - r0 : block;
        lethe_status st = attend_cold_rows(c, s, l, q + (long)r0 * qd, pos + r0, nb, out + (long)r0 * qd,
                                           c->lse + (long)r0 * hp->n_head, err);
        if (st) return st;
    }
    return LETHE_OK;
}

lethe_status attend_rows(void *user, int layer, int r0, int n, const float *q, const float *k, const float *v, float *out,
                         char *err) {
    attend_ctx *a = user;
    lethe_ctx *c = a->c;
    const hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    int n_jobs = 0;
    for (int g = 0; g < a->n_groups; g++) {
        int g0 = a->group_start[g], g1 = a->group_start[g + 1];
        if (g0 < r0) g0 = r0;
        if (g1 > r0 + n) g1 = r0 + n;
        if (g0 >= g1) continue;
        const long o = g0 - r0;
        const int cnt = g1 - g0;
        lethe_seq *s = a->seqs[g];
        kv_stream *streams = s->streams + (long)layer * hp->n_head_kv;
        const int32_t *pos = a->pos + g0;
        for (int h = 0; h < hp->n_head_kv; h++) {
            lethe_status st =
                kv_stream_append(c->kv, &streams[h], k + o * kvd + (long)h * hd, v + o * kvd + (long)h * hd, kvd, kvd, pos, cnt);
            if (st) return set_error(err, st, "forward: cannot append to the KV cache (%s)", lethe_status_name(st));
        }
        const attn_stats_cfg *stats = a->stats[g].enabled ? &a->stats[g] : NULL;
        attn_layer *al = &a->layers[g];
        *al = (attn_layer){c->kv, streams, hp->n_head, hp->n_head_kv, hd, scale, NULL};
        if (cnt == 1 && !s->cold) { /* joins the shared decode dispatch below */
            a->jobs[n_jobs++] = (attn_decode_job){al, q + o * qd, pos[0], out + o * qd, NULL, stats};
            continue;
        }
        if (attn_forward_lse(c->tp, c->attn, al, q + o * qd, pos, cnt, out + o * qd, s->cold ? c->lse : NULL, stats) != 0)
            return set_error(err, LETHE_ERR_NOMEM, "forward: attention scratch allocation failed");
        if (s->cold) {
            lethe_status st = attend_cold(c, s, layer, q + o * qd, pos, cnt, out + o * qd, err);
            if (st) return st;
        }
    }
    if (n_jobs == 0) return LETHE_OK;
    int rc;
    if (c->params.shared_prefix_attn && n_jobs >= 2 && (size_t)n_jobs <= c->sh_rows) {
        rc = attn_decode_shared(c->tp, c->attn, a->jobs, n_jobs, c->sh_jobs);
        if (rc > 0) c->sh_shared += rc, rc = 0;
    } else {
        rc = attn_decode_multi(c->tp, c->attn, a->jobs, n_jobs);
    }
    if (rc < 0) return set_error(err, LETHE_ERR_NOMEM, "forward: attention scratch allocation failed");
    return LETHE_OK;
}
