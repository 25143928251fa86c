/* The engine thread: continuous batching under the KV budget.
 *
 * Each turn of the loop
 *   1. takes new requests off the queue and drops cancelled ones;
 *   2. admits waiting requests in arrival order while their worst-case KV
 *      pages (srv_request_pages) fit beside the running ones, dropping
 *      least recently used prefix-cache entries to make room; a request
 *      that does not fit waits (the pool is a hard cap, and a running
 *      stream never runs out of memory);
 *   3. runs one batched step: a decode token of every running choice
 *      first, then prefill chunks of newcomers up to the step's token
 *      budget, so a long prompt never stalls the others;
 *   4. samples each choice (penalties, then the sampler), detokenises,
 *      applies stop strings and hands the text to the HTTP side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int srv_enqueue(srv_server *s, srv_request *r) {
    pthread_mutex_lock(&s->lock);
    if (s->q_len >= s->opt.queue_max) {
        pthread_mutex_unlock(&s->lock);
        return 429;
    }
    r->refs = 2; /* the HTTP thread's and the engine's */
    r->t_arrival = srv_now();
    r->next_q = NULL;
    if (s->q_tail) s->q_tail->next_q = r;
    else s->q_head = r;
    s->q_tail = r;
    s->q_len++;
    s->met.queue_len = s->q_len;
    pthread_cond_signal(&s->wake_engine);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void srv_request_unref_locked(srv_request *r) {
    if (--r->refs == 0) srv_request_free(r);
}

static void unref(srv_server *s, srv_request *r) {
    pthread_mutex_lock(&s->lock);
    srv_request_unref_locked(r);
    pthread_mutex_unlock(&s->lock);
}

/* ---- admission ---- */

static bool setup_choices(srv_server *s, srv_request *r, char *err, size_t err_size) {
    r->choices = calloc((size_t)r->n_choices, sizeof *r->choices);
    if (!r->choices) return false;
    for (int i = 0; i < r->n_choices; i++) {
        srv_choice *c = &r->choices[i];
        c->group = i / r->n;
        lethe_sampler_params sp = r->sp;
        sp.seed += (uint64_t)(i % r->n); /* choice 0 draws exactly what lethe run draws */
        c->smp = lethe_sampler_create(&sp, s->info.n_vocab);
        c->dt = lethe_detok_create(s->model, false);
        if (r->presence_penalty != 0 || r->frequency_penalty != 0) c->counts = calloc((size_t)s->info.n_vocab, sizeof *c->counts);
        c->ran_cap = r->max_tokens < 4096 ? r->max_tokens + 1 : 4096;
        c->ran = malloc((size_t)c->ran_cap * sizeof *c->ran);
        if (!c->smp || !c->dt || !c->ran || ((r->presence_penalty != 0 || r->frequency_penalty != 0) && !c->counts)) {
            snprintf(err, err_size, "out of memory");
            return false;
        }
        srv_stop_init(&c->stop, r->stops, r->n_stops);
        const srv_group *g = &r->groups[c->group];
        for (int k = 0; k < g->n_toks; k++) lethe_sampler_accept(c->smp, g->toks[k]);
    }
    return true;
}

/* Sequences for the request's prompts, forked from the prefix cache where
 * a kept sequence shares their beginning. */
static bool setup_request(srv_server *s, srv_request *r, char *err, size_t err_size) {
    for (int i = 0; i < r->n_groups; i++) {
        srv_group *g = &r->groups[i];
        int reuse = 0;
        if (r->use_prefix_cache && !r->seq_params.kv.reindex) {
            s->met.prefix_lookups++;
            /* at least the last prompt token runs: its logits start the reply */
            g->seq = srv_pc_take(s->pc, g->toks, g->n_toks - 1, r->policy_name, &reuse, err, err_size);
            if (g->seq) s->met.prefix_hits++;
        }
        if (!g->seq && !(g->seq = lethe_seq_create(s->ctx, &r->seq_params, err, err_size))) return false;
        g->n_prefilled = g->n_cached = reuse;
        s->met.cached_tokens += (uint64_t)reuse;
    }
    return setup_choices(s, r, err, err_size);
}

static void remove_waiting(srv_server *s, int i) {
    memmove(s->waiting + i, s->waiting + i + 1, (size_t)(s->n_waiting - i - 1) * sizeof *s->waiting);
    s->n_waiting--;
    pthread_mutex_lock(&s->lock);
    s->q_len--;
    s->met.queue_len = s->q_len;
    pthread_mutex_unlock(&s->lock);
}

static void admit(srv_server *s) {
    while (s->n_waiting > 0 && s->n_active < s->opt.parallel) {
        srv_request *r = s->waiting[0];
        if (s->pages_reserved + r->reserve_pages > s->pages_total) break; /* waits for running ones to finish */
        char err[256] = "";
        bool ok = setup_request(s, r, err, sizeof err);
        /* kept prefixes give way to admitted requests (a fork above holds what it reuses) */
        while (ok && s->pages_reserved + r->reserve_pages + srv_pc_pages(s->pc) > s->pages_total && srv_pc_evict_one(s->pc))
            s->met.evictions_prefix++;
        remove_waiting(s, 0);
        if (!ok) {
            srv_emit_failure(s, r, err[0] ? err : "cannot set up the request");
            unref(s, r);
            continue;
        }
        s->pages_reserved += r->reserve_pages;
        s->active[s->n_active++] = r;
    }
}

/* ---- finishing ---- */

static void free_choice_seq(srv_choice *c) {
    lethe_memory_free(c->mem); /* before the sequence it works on */
    c->mem = NULL;
    lethe_seq_free(c->seq);
    c->seq = NULL;
}

/* Keeps the sequence of group g's first choice in the prefix cache when its
 * cache is what a fresh prefill of its tokens would give. */
static void park(srv_server *s, srv_request *r, int g) {
    srv_choice *c = &r->choices[g * r->n];
    srv_group *gr = &r->groups[g];
    lethe_seq *seq = c->seq;
    if (!seq || !r->use_prefix_cache || r->seq_params.kv.reindex) return;
    int n = gr->n_toks + c->n_ran;
    if (c->n_ran > c->ran_cap || lethe_seq_n_past(seq) != n || lethe_seq_n_cached(seq) != n) return; /* something was evicted */
    if (strcmp(r->policy_name, "full") && strcmp(r->policy_name, "window")) return; /* statistics depend on the future */
    lethe_token *toks = malloc((size_t)n * sizeof *toks);
    if (!toks) return;
    memcpy(toks, gr->toks, (size_t)gr->n_toks * sizeof *toks);
    memcpy(toks + gr->n_toks, c->ran, (size_t)c->n_ran * sizeof *toks);
    size_t P = (size_t)s->page_slots;
    srv_pc_put(s->pc, seq, toks, n, r->policy_name, s->streams * (((size_t)n + P - 1) / P));
    c->seq = NULL;
    free(toks);
}

/* The gauge leaves a request before its client hears the end: a client
 * that reads /metrics right after its response must not count itself. */
static void gauge_leaving(srv_server *s) {
    pthread_mutex_lock(&s->lock);
    s->met.active = s->n_active - 1;
    pthread_mutex_unlock(&s->lock);
}

static void finish_request(srv_server *s, int ai) {
    srv_request *r = s->active[ai];
    gauge_leaving(s);
    srv_emit_done(s, r);
    uint64_t gen = 0;
    uint64_t evicted = 0;
    for (int i = 0; i < r->n_choices; i++) {
        gen += (uint64_t)r->choices[i].n_gen;
        lethe_seq *q = r->choices[i].seq;
        if (q && lethe_seq_n_tokens(q) > lethe_seq_n_cached(q)) evicted += (uint64_t)(lethe_seq_n_tokens(q) - lethe_seq_n_cached(q));
    }
    uint64_t prompt = 0;
    for (int g = 0; g < r->n_groups; g++) {
        prompt += (uint64_t)r->groups[g].n_toks;
        park(s, r, g);
    }
    for (int i = 0; i < r->n_choices; i++) free_choice_seq(&r->choices[i]);
    pthread_mutex_lock(&s->lock);
    s->met.generated_tokens += gen;
    s->met.prompt_tokens += prompt;
    s->met.evicted_tokens += evicted;
    pthread_mutex_unlock(&s->lock);
    s->pages_reserved -= r->reserve_pages;
    s->active[ai] = s->active[--s->n_active];
    unref(s, r);
}

/* A request leaves without finishing (the client went away, or it failed). */
static void drop_active(srv_server *s, int ai, const char *failure) {
    srv_request *r = s->active[ai];
    gauge_leaving(s);
    if (failure) srv_emit_failure(s, r, failure);
    for (int g = 0; g < r->n_groups; g++) {
        lethe_seq_free(r->groups[g].seq);
        r->groups[g].seq = NULL;
    }
    for (int i = 0; i < r->n_choices && r->choices; i++) free_choice_seq(&r->choices[i]);
    s->pages_reserved -= r->reserve_pages;
    s->active[ai] = s->active[--s->n_active];
    unref(s, r);
}

/* ---- sampling ---- */

/* A finished choice's structured-memory figures and tool calls, into /metrics. */
static void account_choice(srv_server *s, const srv_choice *c) {
    lethe_memory_stats ms = {0};
    if (c->mem) lethe_memory_get_stats(c->mem, &ms);
    pthread_mutex_lock(&s->lock);
    s->met.mem_spans_pruned += (uint64_t)ms.spans_pruned;
    s->met.mem_tokens_pruned += (uint64_t)ms.tokens_pruned;
    s->met.mem_bytes_freed += ms.bytes_freed;
    s->met.mem_tool_calls += (uint64_t)ms.tool_calls;
    s->met.mem_tool_errors += (uint64_t)ms.tool_errors;
    s->met.mem_tool_seconds += ms.tool_seconds;
    s->met.tool_calls_returned += (uint64_t)c->calls.n;
    pthread_mutex_unlock(&s->lock);
}

static void end_choice(srv_server *s, srv_request *r, int ci, enum srv_finish why) {
    srv_choice *c = &r->choices[ci];
    c->finish = why;
    c->pending = false;
    char buf[16];
    sbuf rest = {0};
    int k = lethe_detok_flush(c->dt, buf, sizeof buf);
    if (r->client_tools) {
        sbuf text = {0};
        int before = c->calls.n;
        if (k > 0) srv_tools_push(&c->calls, buf, (size_t)k, &text);
        srv_tools_flush(&c->calls, &text);
        if (text.n) srv_stop_push(&c->stop, text.v, text.n, &rest);
        sbuf_free(&text);
        for (int i = before; i < c->calls.n; i++) srv_emit_tool_call(s, r, ci, i);
        if (c->calls.n > 0 && (why == SRV_STOP || why == SRV_LENGTH)) c->finish = SRV_TOOL_CALLS;
    } else if (k > 0)
        srv_stop_push(&c->stop, buf, (size_t)k, &rest);
    srv_stop_flush(&c->stop, &rest);
    srv_emit_choice_end(s, r, ci, rest.v ? rest.v : "", rest.n);
    sbuf_free(&rest);
    account_choice(s, c);
    if (ci % r->n != 0) free_choice_seq(c); /* the first choice's may be kept */
}

/* One token for choice ci from the logits row (left as it is: the raw
 * log-probabilities are reported from it). */
static void sample_choice(srv_server *s, srv_request *r, int ci, const float *row, float *work) {
    srv_choice *c = &r->choices[ci];
    const int V = s->info.n_vocab;
    memcpy(work, row, (size_t)V * sizeof *work);
    if (c->counts)
        for (int t = 0; t < V; t++)
            if (c->counts[t]) work[t] -= r->presence_penalty + r->frequency_penalty * (float)c->counts[t];
    lethe_token t;
    if (c->n_forced < r->n_forced) { /* teacher-forced reply */
        t = r->forced[c->n_forced++];
        lethe_sampler_accept(c->smp, t);
    } else
        t = lethe_sampler_sample(c->smp, work);
    c->n_gen++;
    if (t < 0 || (!r->ignore_eos && lethe_token_is_eog(s->model, t))) {
        if (t >= 0 && r->logprobs) srv_emit_token(s, r, ci, "", 0, row, t);
        end_choice(s, r, ci, SRV_STOP);
        return;
    }
    if (c->counts) c->counts[t]++;
    char piece[512];
    int k = lethe_detok_push(c->dt, t, piece, sizeof piece);
    sbuf out = {0};
    if (k > 0 && r->client_tools) {
        /* <tool_call> blocks leave the text and become tool_calls */
        sbuf text = {0};
        int before = c->calls.n;
        srv_tools_push(&c->calls, piece, (size_t)k, &text);
        if (text.n) srv_stop_push(&c->stop, text.v, text.n, &out);
        sbuf_free(&text);
        for (int i = before; i < c->calls.n; i++) srv_emit_tool_call(s, r, ci, i);
    } else if (k > 0)
        srv_stop_push(&c->stop, piece, (size_t)k, &out);
    srv_emit_token(s, r, ci, out.v ? out.v : "", out.n, r->logprobs ? row : NULL, t);
    sbuf_free(&out);
    if (c->stop.stopped || c->calls.ended) end_choice(s, r, ci, SRV_STOP);
    else if (c->n_gen >= r->max_tokens) end_choice(s, r, ci, SRV_LENGTH);
    else {
        c->next = t;
        c->pending = true;
    }
}

/* Group g's prompt is in: its choices fork from its sequence and draw their
 * first tokens from the same logits. */
static bool start_group(srv_server *s, srv_request *r, int g, const float *row, float *work, char *err, size_t err_size) {
    srv_group *gr = &r->groups[g];
    for (int j = 1; j < r->n; j++) {
        srv_choice *c = &r->choices[g * r->n + j];
        if (!(c->seq = lethe_seq_fork(gr->seq, err, err_size))) return false;
    }
    r->choices[g * r->n].seq = gr->seq;
    gr->seq = NULL;
    gr->done = true;
    if (r->memory[0])
        for (int j = 0; j < r->n; j++) {
            /* the prompt stays as it is; the rules act on the reply */
            srv_choice *c = &r->choices[g * r->n + j];
            lethe_memory_params mp = r->mem_params;
            mp.rules = r->memory;
            if (!(c->mem = lethe_memory_create(c->seq, &mp, err, err_size))) return false;
            for (int t = 0; t < s->opt.n_tools; t++) {
                char name[64];
                const char *eq = strchr(s->opt.tools[t], '=');
                snprintf(name, sizeof name, "%.*s", (int)(eq - s->opt.tools[t]), s->opt.tools[t]);
                if (lethe_memory_add_exec_tool(c->mem, name, eq + 1) != LETHE_OK) {
                    snprintf(err, err_size, "tool %s: %s", name, lethe_memory_error(c->mem));
                    return false;
                }
            }
        }
    if (!r->started) {
        r->started = true;
        r->t_first = srv_now();
        pthread_mutex_lock(&s->lock);
        s->met.prefill_seconds += r->t_first - r->t_arrival;
        pthread_mutex_unlock(&s->lock);
        srv_emit_start(s, r);
    }
    for (int j = 0; j < r->n; j++) sample_choice(s, r, g * r->n + j, row, work);
    return true;
}

/* ---- the step ---- */

typedef struct {
    srv_request *r;
    int choice; /* >= 0: a decode row of this choice */
    int group;  /* >= 0: a prefill row of this group */
    bool last;  /* the prompt's last token: logits wanted */
} row_owner;

typedef struct {
    lethe_token *tok;
    lethe_seq **seq;
    bool *want;
    row_owner *own;
    int n, cap;
    float *work;
} step_rows;

static bool rows_push(step_rows *b, lethe_token t, lethe_seq *seq, bool want, row_owner o) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        lethe_token *tok = realloc(b->tok, (size_t)cap * sizeof *tok);
        if (tok) b->tok = tok;
        lethe_seq **sq = realloc(b->seq, (size_t)cap * sizeof *sq);
        if (sq) b->seq = sq;
        bool *w = realloc(b->want, (size_t)cap * sizeof *w);
        if (w) b->want = w;
        row_owner *ow = realloc(b->own, (size_t)cap * sizeof *ow);
        if (ow) b->own = ow;
        if (!tok || !sq || !w || !ow) return false;
        b->cap = cap;
    }
    b->tok[b->n] = t;
    b->seq[b->n] = seq;
    b->want[b->n] = want;
    b->own[b->n] = o;
    b->n++;
    return true;
}

static int find_active(const srv_server *s, const srv_request *r) {
    for (int i = 0; i < s->n_active; i++)
        if (s->active[i] == r) return i;
    return -1;
}

/* Runs rows idx[0..n) of b as one batch and hands out the results. Returns
 * false (nothing changed) when the batch failed. */
static bool run_rows(srv_server *s, step_rows *b, const int *idx, int n) {
    lethe_token *tok = malloc((size_t)n * sizeof *tok);
    lethe_seq **seq = malloc((size_t)n * sizeof *seq);
    bool *want = malloc((size_t)n * sizeof *want);
    int n_want = 0;
    bool ok = false;
    if (!tok || !seq || !want) goto out;
    for (int i = 0; i < n; i++) {
        tok[i] = b->tok[idx[i]];
        seq[i] = b->seq[idx[i]];
        want[i] = b->want[idx[i]];
        n_want += want[i];
    }
    if (n_want > s->logits_rows) {
        float *l = realloc(s->logits, (size_t)n_want * (size_t)s->info.n_vocab * sizeof *l);
        if (!l) goto out;
        s->logits = l;
        s->logits_rows = n_want;
    }
    lethe_batch batch = {n, tok, seq, want};
    double t0 = srv_now();
    if (lethe_ctx_decode(s->ctx, &batch, s->logits) != LETHE_OK) goto out;
    double dt = srv_now() - t0;
    pthread_mutex_lock(&s->lock);
    s->met.steps++;
    s->met.step_seconds += dt;
    pthread_mutex_unlock(&s->lock);
    ok = true;
    /* prefill progress first (a group's choices start from its last row) */
    for (int i = 0; i < n; i++) {
        row_owner *o = &b->own[idx[i]];
        if (o->group >= 0) o->r->groups[o->group].n_prefilled++;
    }
    int w = 0;
    for (int i = 0; i < n; i++) {
        row_owner *o = &b->own[idx[i]];
        const float *row = want[i] ? s->logits + (size_t)w++ * (size_t)s->info.n_vocab : NULL;
        if (!row) continue;
        srv_request *r = o->r;
        if (find_active(s, r) < 0) continue; /* failed earlier in this step */
        if (o->choice >= 0) {
            srv_choice *c = &r->choices[o->choice];
            if (c->n_ran < c->ran_cap) c->ran[c->n_ran] = b->tok[idx[i]];
            c->n_ran++;
            sample_choice(s, r, o->choice, row, b->work);
        } else {
            char err[256] = "";
            if (!start_group(s, r, o->group, row, b->work, err, sizeof err)) drop_active(s, find_active(s, r), err);
        }
    }
out:
    free(tok);
    free(seq);
    free(want);
    return ok;
}

/* Requests whose choices all ended. */
static void finish_done(srv_server *s) {
    for (int a = s->n_active - 1; a >= 0; a--) {
        srv_request *r = s->active[a];
        bool all = r->choices != NULL;
        for (int g = 0; g < r->n_groups && all; g++) all = r->groups[g].done;
        for (int i = 0; i < r->n_choices && all; i++) all = r->choices[i].finish != SRV_RUNNING;
        if (all) finish_request(s, a);
    }
}

/* Choices with structured memory run their token through it, one at a
 * time (its rules may prune or run a tool between tokens). */
static void step_memory(srv_server *s, step_rows *b) {
    for (int a = s->n_active - 1; a >= 0; a--) {
        srv_request *r = s->active[a];
        for (int i = 0; i < r->n_choices; i++) {
            srv_choice *c = &r->choices[i];
            if (!c->mem || !c->pending) continue;
            c->pending = false;
            lethe_status st = lethe_memory_append(c->mem, &c->next, 1, s->mem_logits);
            if (st == LETHE_ERR_BUDGET) { /* positions ran out before pruning made room */
                end_choice(s, r, i, SRV_LENGTH);
                continue;
            }
            if (st) {
                char msg[512];
                snprintf(msg, sizeof msg, "structured memory: %s", lethe_memory_error(c->mem));
                drop_active(s, a, msg);
                break;
            }
            sample_choice(s, r, i, s->mem_logits, b->work);
        }
    }
}

static void step(srv_server *s, step_rows *b) {
    b->n = 0;
    int budget = s->opt.batch_tokens;
    /* decode rows first: every running choice advances every step */
    for (int a = 0; a < s->n_active; a++) {
        srv_request *r = s->active[a];
        for (int i = 0; i < r->n_choices; i++)
            if (r->choices[i].pending && !r->choices[i].mem &&
                !rows_push(b, r->choices[i].next, r->choices[i].seq, true, (row_owner){r, i, -1, false}))
                return;
    }
    budget -= b->n;
    if (budget < 16) budget = 16; /* prefill always makes some progress */
    for (int a = 0; a < s->n_active && budget > 0; a++) {
        srv_request *r = s->active[a];
        for (int g = 0; g < r->n_groups && budget > 0; g++) {
            srv_group *gr = &r->groups[g];
            if (gr->done) continue;
            int left = gr->n_toks - gr->n_prefilled, chunk = left < budget ? left : budget;
            int most = lethe_seq_max_batch(gr->seq);
            if (chunk > most) chunk = most;
            for (int k = 0; k < chunk; k++) {
                int pos = gr->n_prefilled + k;
                if (!rows_push(b, gr->toks[pos], gr->seq, pos == gr->n_toks - 1, (row_owner){r, -1, g, pos == gr->n_toks - 1}))
                    return;
            }
            budget -= chunk;
        }
    }
    step_memory(s, b);
    if (b->n == 0) {
        finish_done(s);
        return;
    }
    /* the decode of the sampled tokens: choices whose token ran this step */
    int *idx = malloc((size_t)b->n * sizeof *idx);
    if (!idx) return;
    for (int i = 0; i < b->n; i++) idx[i] = i;
    for (int i = 0; i < b->n; i++)
        if (b->own[i].choice >= 0) b->own[i].r->choices[b->own[i].choice].pending = false;
    if (!run_rows(s, b, idx, b->n)) {
        /* should not happen under the admission rule; find the request it is
         * and fail only that one (a failed step changes nothing) */
        for (int a = s->n_active - 1; a >= 0; a--) {
            srv_request *r = s->active[a];
            int n = 0;
            for (int i = 0; i < b->n; i++)
                if (b->own[i].r == r) idx[n++] = i;
            if (n && !run_rows(s, b, idx, n)) {
                char msg[512];
                snprintf(msg, sizeof msg, "the engine failed: %s", lethe_ctx_error(s->ctx));
                int ai = find_active(s, r);
                if (ai >= 0) drop_active(s, ai, msg);
            }
        }
    }
    free(idx);
    finish_done(s);
}

static void update_kv_metrics(srv_server *s) {
    lethe_kv_usage u;
    lethe_ctx_kv_usage(s->ctx, &u);
    pthread_mutex_lock(&s->lock);
    s->met.kv_used = u.bytes_used;
    s->met.kv_total = u.bytes_total;
    s->met.kv_peak = u.bytes_peak;
    s->met.kv_cold = u.cold_bytes;
    s->met.kv_staging = u.staging_bytes;
    s->met.active = s->n_active;
    s->met.kv_reserved = s->pages_reserved * s->page_bytes;
    s->met.prefix_entries = srv_pc_entries(s->pc);
    s->met.prefix_bytes = srv_pc_pages(s->pc) * s->page_bytes;
    pthread_mutex_unlock(&s->lock);
}

void *srv_engine_main(void *arg) {
    srv_server *s = arg;
    step_rows b = {0};
    b.work = malloc((size_t)s->info.n_vocab * sizeof *b.work);
    s->mem_logits = malloc((size_t)s->info.n_vocab * sizeof *s->mem_logits);
    s->active = calloc((size_t)s->opt.parallel, sizeof *s->active);
    if (!b.work || !s->active || !s->mem_logits) {
        fprintf(stderr, "lethe serve: out of memory\n");
        s->stopping = 1;
    }
    update_kv_metrics(s);
    while (!s->stopping) {
        pthread_mutex_lock(&s->lock);
        /* new requests, in arrival order */
        while (s->q_head) {
            srv_request *r = s->q_head;
            s->q_head = r->next_q;
            if (!s->q_head) s->q_tail = NULL;
            if (s->n_waiting == s->cap_waiting) {
                int cap = s->cap_waiting ? 2 * s->cap_waiting : 64;
                srv_request **w = realloc(s->waiting, (size_t)cap * sizeof *w);
                if (!w) { /* cannot hold it: the client gets a failure */
                    r->next_q = s->q_head;
                    s->q_head = r;
                    if (!s->q_tail) s->q_tail = r;
                    break;
                }
                s->waiting = w;
                s->cap_waiting = cap;
            }
            s->waiting[s->n_waiting++] = r;
        }
        if (!s->n_active && !s->n_waiting) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->wake_engine, &s->lock, &ts);
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        /* clients that went away */
        bool gone_w[64] = {0}, gone_a[1024] = {0};
        for (int i = 0; i < s->n_waiting && i < 64; i++) gone_w[i] = s->waiting[i]->cancelled;
        for (int i = 0; i < s->n_active && i < 1024; i++) gone_a[i] = s->active[i]->cancelled;
        pthread_mutex_unlock(&s->lock);
        for (int i = (s->n_waiting < 64 ? s->n_waiting : 64) - 1; i >= 0; i--)
            if (gone_w[i]) {
                srv_request *r = s->waiting[i];
                remove_waiting(s, i);
                unref(s, r);
            }
        for (int i = (s->n_active < 1024 ? s->n_active : 1024) - 1; i >= 0; i--)
            if (gone_a[i]) {
                pthread_mutex_lock(&s->lock);
                s->met.requests_cancelled++;
                pthread_mutex_unlock(&s->lock);
                drop_active(s, i, NULL);
            }
        admit(s);
        step(s, &b);
        update_kv_metrics(s);
    }
    /* shutting down: every request gets an answer, every sequence is freed */
    while (s->n_active) drop_active(s, s->n_active - 1, "the server is shutting down");
    pthread_mutex_lock(&s->lock);
    while (s->q_head) { /* never admitted: answered here */
        srv_request *r = s->q_head;
        s->q_head = r->next_q;
        s->q_len--;
        pthread_mutex_unlock(&s->lock);
        srv_emit_failure(s, r, "the server is shutting down");
        pthread_mutex_lock(&s->lock);
        srv_request_unref_locked(r);
    }
    pthread_mutex_unlock(&s->lock);
    while (s->n_waiting) {
        srv_request *r = s->waiting[s->n_waiting - 1];
        remove_waiting(s, s->n_waiting - 1);
        srv_emit_failure(s, r, "the server is shutting down");
        unref(s, r);
    }
    free(b.tok);
    free(b.seq);
    free(b.want);
    free(b.own);
    free(b.work);
    free(s->mem_logits);
    return NULL;
}
