/* Structured working memory: the token log, spans, pruning (shift or
 * re-encode), tool calls and their injection, statistics. See memory.h for
 * how positions and spans are kept. */
#include "memory/memory.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/engine.h"
#include "util/alloc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

lethe_memory_params lethe_memory_default_params(void) {
    lethe_memory_params p;
    memset(&p, 0, sizeof p);
    p.mode = LETHE_PRUNE_SHIFT;
    p.prune_buffer = 2;
    p.think_keep = 0;
    p.tool_timeout_ms = 10000;
    p.tool_output_max = 65536;
    return p;
}

static bool parse_rules(const char *r, bool *tim, bool *think, bool *tool) {
    *tim = *think = *tool = false;
    if (!r) return true;
    while (*r) {
        const char *e = strchr(r, ',');
        size_t n = e ? (size_t)(e - r) : strlen(r);
        if (n == 3 && !strncmp(r, "tim", 3)) *tim = true;
        else if (n == 5 && !strncmp(r, "think", 5)) *think = true;
        else if (n == 4 && !strncmp(r, "tool", 4)) *tool = true;
        else if (n == 4 && !strncmp(r, "none", 4)) {
        } else if (n) return false;
        r += n + (e ? 1 : 0);
    }
    return true;
}

lethe_memory *lethe_memory_create(lethe_seq *s, const lethe_memory_params *params, char *err, size_t err_size) {
    lethe_memory_params p = params ? *params : lethe_memory_default_params();
    bool tim, think, tool;
    char msg[256];
    if (!s) { copy_error(err, err_size, "memory: NULL sequence"); return NULL; }
    if (!parse_rules(p.rules, &tim, &think, &tool)) {
        snprintf(msg, sizeof msg, "memory: unknown rule set '%.64s' (tim, think, tool, combined with ',')", p.rules);
        copy_error(err, err_size, msg);
        return NULL;
    }
    if ((p.mode != LETHE_PRUNE_SHIFT && p.mode != LETHE_PRUNE_REENCODE) || p.prune_buffer < 0 || p.think_keep < 0 ||
        p.tool_timeout_ms <= 0 || p.tool_output_max == 0 || p.tool_output_max > ((size_t)1 << 30)) {
        copy_error(err, err_size, "memory: parameter out of range (mode, prune_buffer >= 0, think_keep >= 0, tool limits > 0)");
        return NULL;
    }
    if (s->policy->params.reindex) {
        /* re-indexing renumbers every cached position after each eviction,
         * while the memory's spans and its log keep positions base + index
         * (and protects its open spans by position) */
        snprintf(msg, sizeof msg,
                 "memory: KV policy %s with re-indexed positions (--kv-reindex) renumbers the cache after every "
                 "eviction, which the memory's spans (kept by position) cannot follow; use it without re-indexing",
                 s->policy->ops->name);
        copy_error(err, err_size, msg);
        return NULL;
    }
    lethe_memory *mem = lt_calloc(1, sizeof *mem);
    if (!mem) { copy_error(err, err_size, "out of memory"); return NULL; }
    mem->s = s;
    mem->c = s->c;
    mem->m = s->c->m;
    mem->p = p;
    mem->p.rules = NULL; /* not kept */
    mem->r_tim = tim, mem->r_think = think, mem->r_tool = tool;
    lethe_model_info info;
    lethe_model_get_info(mem->m, &info);
    mem->n_vocab = info.n_vocab;
    mem->base = lethe_seq_n_past(s);
    mem->dt = lethe_detok_create(mem->m, true);
    mem->piece_cap = info.max_piece_bytes + 8;
    mem->piece = lt_malloc((size_t)mem->piece_cap);
    if (!mem->dt || !mem->piece) {
        lethe_memory_free(mem);
        copy_error(err, err_size, "out of memory");
        return NULL;
    }
    json_scan_init(&mem->js);
    tag_scan_init(&mem->ts);
    return mem;
}

void lethe_memory_free(lethe_memory *mem) {
    if (!mem) return;
    seq_protect_set(mem->s, NULL, 0); /* the sequence outlives its memory */
    for (int i = 0; i < mem->n_tools; i++) {
        lt_free(mem->tools[i].name);
        lt_free(mem->tools[i].command);
    }
    lt_free(mem->tools);
    lt_free(mem->log);
    lt_free(mem->spans);
    lt_free(mem->prune_q);
    lt_free(mem->tim_fifo);
    lt_free(mem->think_fifo);
    lt_free(mem->cap);
    lt_free(mem->piece);
    lethe_detok_free(mem->dt);
    lt_free(mem);
}

const char *lethe_memory_error(const lethe_memory *mem) { return mem ? mem->err : "NULL memory"; }

bool mem_fifo_push(int **a, int *n, int *cap, int v) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        int *p = lt_realloc(*a, (size_t)nc * sizeof *p);
        if (!p) return false;
        *a = p;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
    return true;
}

static void fifo_remove(int *a, int *n, int v) {
    int k = 0;
    for (int i = 0; i < *n; i++)
        if (a[i] != v) a[k++] = a[i];
    *n = k;
}

void mem_capture(lethe_memory *mem, const char *p, size_t n) {
    if (mem->n_cap + n + 1 > mem->cap_cap) {
        size_t nc = mem->cap_cap ? mem->cap_cap * 2 : 256;
        while (nc < mem->n_cap + n + 1) nc *= 2;
        if (nc > ((size_t)1 << 20)) { mem->cap_overflow = true; return; }
        char *q = lt_realloc(mem->cap, nc);
        if (!q) { mem->cap_overflow = true; return; }
        mem->cap = q;
        mem->cap_cap = nc;
    }
    memcpy(mem->cap + mem->n_cap, p, n);
    mem->n_cap += n;
    mem->cap[mem->n_cap] = 0;
}

/* Index in the log of the first token with serial >= sr. */
static int log_lower(const lethe_memory *mem, long sr) {
    int a = 0, b = mem->n_log;
    while (a < b) {
        int m = a + (b - a) / 2;
        if (mem->log[m].serial < sr) a = m + 1;
        else b = m;
    }
    return a;
}

/* Open spans are protected from the KV policy's eviction (seq_protect_set):
 * an open span runs from its first position to the end of the log and on
 * (it grows with every token), so the union of the open spans is one
 * open-ended range from the first of them. Closed spans are ordinary slots.
 * Called whenever a span opens or closes and whenever a prune moves
 * positions. The range needs no allocation (the sequence keeps up to four
 * inline), so this cannot fail. */
static void sync_protect(lethe_memory *mem) {
    int p0 = -1;
    for (int k = 0; k < mem->n_spans; k++) {
        const mem_span *sp = &mem->spans[k];
        if (sp->info.state != LETHE_SPAN_OPEN) continue;
        int p = mem->base + log_lower(mem, sp->s0);
        if (p0 < 0 || p < p0) p0 = p;
    }
    const int r[2] = {p0, INT32_MAX};
    seq_protect_set(mem->s, r, p0 >= 0 ? 1 : 0);
}

/* The first serial whose token starts at or after byte x (the span's first
 * token), or the next serial. */
static long serial_from_byte(const lethe_memory *mem, long x) {
    int j = mem->n_log;
    while (j > 0 && mem->log[j - 1].c0 >= x) j--;
    return j < mem->n_log ? mem->log[j].serial : mem->serial;
}

/* The first serial whose token ends after byte y (one past the span). */
static long serial_end_at_byte(const lethe_memory *mem, long y) {
    int j = mem->n_log;
    while (j > 0 && mem->log[j - 1].c1 > y) j--;
    return j < mem->n_log ? mem->log[j].serial : mem->serial;
}

static const char *kind_name(lethe_span_kind k) {
    switch (k) {
    case LETHE_SPAN_SUBTASKS: return "subtasks";
    case LETHE_SPAN_THOUGHT: return "thought";
    case LETHE_SPAN_CONCLUSION: return "conclusion";
    case LETHE_SPAN_THINK: return "think";
    case LETHE_SPAN_TOOL_RESULT: return "tool_result";
    default: return "user";
    }
}

static int span_new(lethe_memory *mem, lethe_span_kind kind, const char *name, long s0, int depth) {
    if (mem->n_spans == mem->cap_spans) {
        int nc = mem->cap_spans ? mem->cap_spans * 2 : 32;
        mem_span *p = lt_realloc(mem->spans, (size_t)nc * sizeof *p);
        if (!p) return -1;
        mem->spans = p;
        mem->cap_spans = nc;
    }
    int id = mem->n_spans++;
    mem_span *sp = &mem->spans[id];
    memset(sp, 0, sizeof *sp);
    sp->info.id = id;
    sp->info.kind = kind;
    sp->info.state = LETHE_SPAN_OPEN;
    snprintf(sp->info.name, sizeof sp->info.name, "%s", name ? name : kind_name(kind));
    sp->info.depth = depth;
    sp->info.opened_at = mem->serial;
    sp->info.closed_at = sp->info.pruned_at = -1;
    sp->s0 = s0;
    sp->s1 = -1;
    sp->owner = -1;
    mem->st.spans_opened++;
    sync_protect(mem);
    return id;
}

int mem_span_open_at(lethe_memory *mem, lethe_span_kind kind, long x, int depth) {
    return span_new(mem, kind, NULL, serial_from_byte(mem, x), depth);
}

void mem_span_close_at(lethe_memory *mem, int id, long y) {
    if (id < 0 || id >= mem->n_spans || mem->spans[id].info.state != LETHE_SPAN_OPEN) return;
    mem_span *sp = &mem->spans[id];
    sp->s1 = serial_end_at_byte(mem, y);
    if (sp->s1 < sp->s0) sp->s1 = sp->s0;
    sp->info.state = LETHE_SPAN_CLOSED;
    sp->info.closed_at = mem->serial;
    sync_protect(mem);
}

void mem_request_prune(lethe_memory *mem, int id) {
    if (id < 0 || id >= mem->n_spans || mem->spans[id].info.state == LETHE_SPAN_PRUNED) return;
    for (int i = 0; i < mem->n_prune_q; i++)
        if (mem->prune_q[i] == id) return;
    if (!mem_fifo_push(&mem->prune_q, &mem->n_prune_q, &mem->cap_prune_q, id))
        set_error(mem->err, LETHE_ERR_NOMEM, "out of memory queueing a prune");
}

static lethe_status log_push(lethe_memory *mem, lethe_token t) {
    if (mem->n_log == mem->cap_log) {
        int nc = mem->cap_log ? mem->cap_log * 2 : 256;
        mem_tok *p = lt_realloc(mem->log, (size_t)nc * sizeof *p);
        if (!p) return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory for the token log");
        mem->log = p;
        mem->cap_log = nc;
    }
    mem_tok *e = &mem->log[mem->n_log++];
    e->tok = t;
    e->serial = mem->serial++;
    e->c0 = e->c1 = mem->chars;
    return LETHE_OK;
}

static void note_slots(lethe_memory *mem) {
    int n = lethe_seq_n_cached(mem->s);
    mem->st.slots_held = n;
    if (n > mem->st.slots_peak) mem->st.slots_peak = n;
}

/* Runs log entries [i0, n_log) through the model. */
static lethe_status run_log(lethe_memory *mem, int i0, float *logits, bool reencode) {
    int n = mem->n_log - i0;
    if (n <= 0) return LETHE_OK;
    lethe_token buf[256];
    for (int k = 0; k < n;) {
        int m = n - k < 256 ? n - k : 256;
        /* an evicting policy: at most one chunk a call, sized afresh, so
         * that the room the protected open spans leave shrinks as they
         * grow, and a span that outgrows the budget gets its own error */
        if (mem->s->policy->ops->may_evict) {
            const int mb = lethe_seq_max_batch(mem->s);
            if (m > mb) m = mb;
        }
        for (int j = 0; j < m; j++) buf[j] = mem->log[i0 + k + j].tok;
        lethe_status st = lethe_seq_append(mem->s, buf, m, k + m == n ? logits : NULL);
        if (st) return set_error(mem->err, st, "%s", lethe_seq_error(mem->s));
        k += m;
    }
    mem->st.tokens_processed += n;
    if (reencode) mem->st.tokens_reencoded += n;
    if (logits) mem->logits_stale = false;
    note_slots(mem);
    return LETHE_OK;
}

/* Re-runs the last cached token so that logits reflect the cache as it is. */
static lethe_status refresh_logits(lethe_memory *mem, float *logits) {
    if (!logits || !mem->logits_stale || mem->n_log == 0) return LETHE_OK;
    int last = mem->base + mem->n_log - 1;
    lethe_status st = lethe_seq_truncate(mem->s, last);
    if (!st) st = lethe_seq_decode(mem->s, mem->log[mem->n_log - 1].tok, logits);
    if (st) return set_error(mem->err, st, "%s", lethe_seq_error(mem->s));
    mem->st.tokens_processed++;
    mem->st.tokens_reencoded++;
    mem->logits_stale = false;
    return LETHE_OK;
}

static lethe_status prune_span(lethe_memory *mem, int id, float *logits) {
    mem_span *sp = &mem->spans[id];
    if (sp->info.state == LETHE_SPAN_PRUNED) return LETHE_OK;
    long s1 = sp->s1 >= 0 ? sp->s1 : mem->serial;
    int i0 = log_lower(mem, sp->s0), i1 = log_lower(mem, s1);
    double t0 = now_s();
    lethe_kv_usage u0, u1;
    lethe_ctx_kv_usage(mem->c, &u0);
    if (i1 > i0) {
        const int p0 = mem->base + i0, p1 = mem->base + i1, end = mem->base + mem->n_log;
        lethe_status st;
        if (mem->p.mode == LETHE_PRUNE_SHIFT) {
            st = lethe_seq_remove(mem->s, p0, p1);
            if (!st && p1 < end) st = lethe_seq_shift(mem->s, p1, end, -(p1 - p0));
            if (st) return set_error(mem->err, st, "prune: %s", lethe_seq_error(mem->s));
            memmove(mem->log + i0, mem->log + i1, (size_t)(mem->n_log - i1) * sizeof *mem->log);
            mem->n_log -= i1 - i0;
            mem->logits_stale = true;
            sync_protect(mem); /* what followed the span moved down */
        } else {
            st = lethe_seq_truncate(mem->s, p0);
            if (st) return set_error(mem->err, st, "prune: %s", lethe_seq_error(mem->s));
            memmove(mem->log + i0, mem->log + i1, (size_t)(mem->n_log - i1) * sizeof *mem->log);
            mem->n_log -= i1 - i0;
            mem->logits_stale = true;
            sync_protect(mem); /* before the re-run: open spans after the span start lower now */
            st = run_log(mem, i0, logits, true);
            if (st) return st;
            if (i0 == mem->n_log) mem->logits_stale = true; /* nothing after the span: the last token's logits are old */
        }
        mem->st.tokens_pruned += i1 - i0;
    }
    lethe_ctx_kv_usage(mem->c, &u1);
    if (u0.bytes_used > u1.bytes_used) mem->st.bytes_freed += u0.bytes_used - u1.bytes_used;
    mem->st.prune_seconds += now_s() - t0;
    /* the span and every span inside it are gone */
    for (int k = 0; k < mem->n_spans; k++) {
        mem_span *q = &mem->spans[k];
        if (q->info.state == LETHE_SPAN_PRUNED) continue;
        bool inside = k == id || (q->info.state == LETHE_SPAN_CLOSED && q->s0 >= sp->s0 && q->s1 <= s1 && q->s1 > q->s0);
        if (!inside) continue;
        q->info.state = LETHE_SPAN_PRUNED;
        q->info.pruned_at = mem->serial;
        mem->st.spans_pruned++;
        fifo_remove(mem->tim_fifo, &mem->n_tim_fifo, k);
        fifo_remove(mem->think_fifo, &mem->n_think_fifo, k);
    }
    sync_protect(mem); /* a pruned span that was open is no longer protected */
    note_slots(mem);
    return LETHE_OK;
}

/* ---- tools ---------------------------------------------------------------- */

static const mem_tool *find_tool(const lethe_memory *mem, const char *name) {
    const mem_tool *any = NULL;
    for (int i = 0; i < mem->n_tools; i++) {
        if (!mem->tools[i].name) any = &mem->tools[i];
        else if (!strcmp(mem->tools[i].name, name)) return &mem->tools[i];
    }
    return any;
}

lethe_status lethe_memory_add_tool(lethe_memory *mem, const char *name, lethe_tool_fn fn, void *user) {
    if (!mem || !fn) return LETHE_ERR_ARG;
    mem_tool *t = lt_realloc(mem->tools, (size_t)(mem->n_tools + 1) * sizeof *t);
    if (!t) return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory");
    mem->tools = t;
    mem_tool *e = &t[mem->n_tools];
    memset(e, 0, sizeof *e);
    if (name && *name && strcmp(name, "*")) {
        size_t n = strlen(name) + 1;
        if (!(e->name = lt_malloc(n))) return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory");
        memcpy(e->name, name, n);
    }
    e->fn = fn;
    e->user = user;
    mem->n_tools++;
    return LETHE_OK;
}

/* The exec tools' callback: user is the memory, the command found by name. */
static int exec_tool_fn(void *user, const char *name, const char *args, char *out, size_t cap) {
    lethe_memory *mem = user;
    const mem_tool *t = find_tool(mem, name);
    if (!t || !t->command) { snprintf(out, cap, "no program for tool '%s'", name); return -1; }
    size_t n = 0;
    bool cut = false;
    char err[512];
    const size_t room = cap > 96 ? cap - 48 : cap; /* the rest for the note below */
    if (tool_exec_run(t->command, args, strlen(args), mem->p.tool_timeout_ms, out, room, &n, &cut, err, sizeof err)) {
        snprintf(out, cap, "tool '%s': %s", name, err);
        return -1;
    }
    if (cut && room < cap) n += (size_t)snprintf(out + n, cap - n, "\n[output cut at %zu bytes]", n);
    return (int)(n < cap ? n : cap);
}

lethe_status lethe_memory_add_exec_tool(lethe_memory *mem, const char *name, const char *command) {
    if (!mem || !command || !*command) return LETHE_ERR_ARG;
    lethe_status st = lethe_memory_add_tool(mem, name, exec_tool_fn, mem);
    if (st) return st;
    size_t n = strlen(command) + 1;
    mem_tool *e = &mem->tools[mem->n_tools - 1];
    if (!(e->command = lt_malloc(n))) {
        lt_free(e->name);
        mem->n_tools--;
        return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory");
    }
    memcpy(e->command, command, n);
    return LETHE_OK;
}

/* Appends s as a JSON string literal. */
static void json_quote(char *dst, size_t *n, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    dst[(*n)++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') dst[(*n)++] = '\\', dst[(*n)++] = (char)ch;
        else if (ch == '\n') dst[(*n)++] = '\\', dst[(*n)++] = 'n';
        else if (ch == '\t') dst[(*n)++] = '\\', dst[(*n)++] = 't';
        else if (ch < 0x20) {
            memcpy(dst + *n, "\\u00", 4);
            *n += 4;
            dst[(*n)++] = hex[ch >> 4];
            dst[(*n)++] = hex[ch & 15];
        } else dst[(*n)++] = (char)ch;
    }
    dst[(*n)++] = '"';
}

static lethe_status feed(lethe_memory *mem, const lethe_token *ids, int n, float *logits);

/* Runs the tool call the scanners completed and prefills its result. */
static lethe_status run_tool_call(lethe_memory *mem, float *logits) {
    mem->call_ready = false;
    char name[128];
    snprintf(name, sizeof name, "%s", mem->call_name);
    char *args = NULL;
    long a0 = 0, a1 = 0;
    if (mem->call_form == 1) { /* Hermes: the captured body is the JSON object */
        long nc = (long)mem->n_cap;
        if (mem->cap && json_member(mem->cap, nc, "name", &a0, &a1) && a1 - a0 >= 2 && mem->cap[a0] == '"') {
            long k = a1 - a0 - 2 < (long)sizeof name - 1 ? a1 - a0 - 2 : (long)sizeof name - 1;
            memcpy(name, mem->cap + a0 + 1, (size_t)k);
            name[k] = 0;
        } else name[0] = 0;
        if (!mem->cap || !json_member(mem->cap, nc, "arguments", &a0, &a1)) a0 = a1 = 0;
    } else {
        a0 = 0, a1 = (long)mem->n_cap;
    }
    const mem_tool *t = name[0] ? find_tool(mem, name) : NULL;
    mem->n_cap = 0;
    if (!t && mem->n_tools == 0) return LETHE_OK; /* no tools: the text is just text */
    size_t cap = mem->p.tool_output_max;
    char *out = lt_malloc(cap + 1);
    args = lt_malloc((size_t)(a1 - a0) + 3);
    if (!out || !args) {
        lt_free(out);
        lt_free(args);
        return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory for a tool call");
    }
    if (a1 > a0) memcpy(args, mem->cap + a0, (size_t)(a1 - a0)), args[a1 - a0] = 0;
    else strcpy(args, "{}");
    double t0 = now_s();
    int r;
    if (mem->cap_overflow) {
        snprintf(out, cap, "the tool call is longer than 1 MiB");
        r = -1;
    } else if (!t) {
        snprintf(out, cap, "unknown tool '%s'", name);
        r = -1;
    } else {
        out[0] = 0;
        r = t->fn(t->user, name, args, out, cap);
        if (r > (int)cap) r = (int)cap;
    }
    mem->cap_overflow = false;
    mem->st.tool_seconds += now_s() - t0;
    mem->st.tool_calls++;
    if (r < 0) {
        mem->st.tool_errors++;
        out[cap] = 0;
    }
    const char *res = out;
    size_t rl = r < 0 ? strnlen(out, cap) : (size_t)r;
    /* the text to prefill: worst case 6 bytes per result byte (\u00XX) */
    char *inj = lt_malloc(rl * 6 + 128);
    if (!inj) {
        lt_free(out);
        lt_free(args);
        return set_error(mem->err, LETHE_ERR_NOMEM, "out of memory for a tool result");
    }
    size_t n = 0;
    const bool as_json = r >= 0 && rl > 0 && (res[0] == '{' || res[0] == '[') && json_value_end(res, (long)rl, 0) == (long)rl;
    if (mem->call_form == 0) {
        memcpy(inj, ", \"tool_result\": ", 17), n = 17;
        if (r < 0) {
            memcpy(inj + n, "{\"error\": ", 10), n += 10;
            json_quote(inj, &n, res, rl);
            inj[n++] = '}';
        } else if (as_json) memcpy(inj + n, res, rl), n += rl;
        else json_quote(inj, &n, res, rl);
    } else {
        memcpy(inj, "\n<tool_response>\n", 17), n = 17;
        if (r < 0) {
            memcpy(inj + n, "{\"error\": ", 10), n += 10;
            json_quote(inj, &n, res, rl);
            inj[n++] = '}';
        } else {
            for (size_t i = 0; i < rl; i++) inj[n++] = res[i] ? res[i] : ' ';
        }
        memcpy(inj + n, "\n</tool_response>\n", 18), n += 18;
    }
    lt_free(out);
    lt_free(args);
    int nt = lethe_tokenize(mem->m, inj, n, NULL, 0, false, true);
    lethe_token *toks = nt > 0 ? lt_malloc((size_t)nt * sizeof *toks) : NULL;
    lethe_status st = LETHE_OK;
    if (nt < 0) st = set_error(mem->err, LETHE_ERR_ARG, "cannot tokenise the tool result");
    else if (nt > 0 && !toks) st = set_error(mem->err, LETHE_ERR_NOMEM, "out of memory for a tool result");
    else if (nt > 0) {
        lethe_tokenize(mem->m, inj, n, toks, nt, false, true);
        /* a SentencePiece vocabulary puts a blank before the text: not part of the result */
        char pc[8];
        lethe_token *tk = toks;
        if (nt > 1 && inj[0] != ' ' && lethe_token_piece(mem->m, toks[0], pc, sizeof pc, false) == 1 && pc[0] == ' ') tk++, nt--;
        mem->tools_busy = true; /* the result's own text starts no call */
        st = feed(mem, tk, nt, logits);
        mem->tools_busy = false;
    }
    lt_free(inj);
    lt_free(toks);
    return st;
}

/* ---- feeding tokens ------------------------------------------------------- */

static bool pending(const lethe_memory *mem) { return mem->n_prune_q > 0 || mem->call_ready; }

static lethe_status do_pending(lethe_memory *mem, float *logits) {
    while (mem->n_prune_q > 0) {
        int id = mem->prune_q[0];
        mem->n_prune_q--;
        memmove(mem->prune_q, mem->prune_q + 1, (size_t)mem->n_prune_q * sizeof *mem->prune_q);
        lethe_status st = prune_span(mem, id, logits);
        if (st) return st;
    }
    if (mem->call_ready) return run_tool_call(mem, logits);
    return LETHE_OK;
}

static lethe_status feed(lethe_memory *mem, const lethe_token *ids, int n, float *logits) {
    int run_from = mem->n_log; /* log entries not yet in the cache */
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= mem->n_vocab) {
            lethe_status st = run_log(mem, run_from, logits, false);
            if (st) return st;
            return set_error(mem->err, LETHE_ERR_ARG, "token %d is out of the vocabulary", ids[i]);
        }
        lethe_status st = log_push(mem, ids[i]);
        if (st) return st;
        mem->st.tokens_appended++;
        int k = lethe_detok_push(mem->dt, ids[i], mem->piece, mem->piece_cap);
        if (k < 0) k = 0;
        mem->log[mem->n_log - 1].c1 = mem->chars + k;
        for (int b = 0; b < k; b++) {
            long off = mem->chars + b;
            if (mem->r_tim || mem->r_tool || mem->n_tools) json_scan_byte(mem, &mem->js, mem->piece[b], off);
            tag_scan_byte(mem, &mem->ts, mem->piece[b], off);
        }
        mem->chars += k;
        if (pending(mem)) {
            st = run_log(mem, run_from, logits, false);
            if (!st) st = do_pending(mem, logits);
            if (st) return st;
            run_from = mem->n_log;
        }
    }
    return run_log(mem, run_from, logits, false);
}

lethe_status lethe_memory_append(lethe_memory *mem, const lethe_token *ids, int n, float *logits) {
    if (!mem) return LETHE_ERR_ARG;
    mem->err[0] = 0;
    if (n < 0 || (n > 0 && !ids)) return set_error(mem->err, LETHE_ERR_ARG, "append: bad token array");
    lethe_status st = feed(mem, ids, n, logits);
    if (!st) st = refresh_logits(mem, logits);
    return st;
}

/* ---- caller spans ---------------------------------------------------------- */

static long serial_at_pos(const lethe_memory *mem, int pos) {
    int i = pos - mem->base;
    if (i < 0) i = 0;
    return i < mem->n_log ? mem->log[i].serial : mem->serial;
}

int lethe_memory_span_open(lethe_memory *mem, const char *name, int pos) {
    if (!mem) return -1;
    mem->err[0] = 0;
    int next = mem->base + mem->n_log;
    if (pos < 0) pos = next;
    if (pos < mem->base || pos > next) {
        set_error(mem->err, LETHE_ERR_ARG, "span: position %d is outside the memory's [%d, %d]", pos, mem->base, next);
        return -1;
    }
    int id = span_new(mem, LETHE_SPAN_USER, name && *name ? name : "user", serial_at_pos(mem, pos), 0);
    if (id < 0) set_error(mem->err, LETHE_ERR_NOMEM, "out of memory");
    return id;
}

lethe_status lethe_memory_span_close(lethe_memory *mem, int id, int pos) {
    if (!mem) return LETHE_ERR_ARG;
    mem->err[0] = 0;
    if (id < 0 || id >= mem->n_spans || mem->spans[id].info.state != LETHE_SPAN_OPEN)
        return set_error(mem->err, LETHE_ERR_ARG, "span %d is not open", id);
    int next = mem->base + mem->n_log;
    if (pos < 0) pos = next;
    mem_span *sp = &mem->spans[id];
    long s1 = serial_at_pos(mem, pos);
    if (pos > next || s1 < sp->s0) return set_error(mem->err, LETHE_ERR_ARG, "span %d cannot close at position %d", id, pos);
    sp->s1 = s1;
    sp->info.state = LETHE_SPAN_CLOSED;
    sp->info.closed_at = mem->serial;
    sync_protect(mem);
    return LETHE_OK;
}

lethe_status lethe_memory_span_prune(lethe_memory *mem, int id, float *logits) {
    if (!mem) return LETHE_ERR_ARG;
    mem->err[0] = 0;
    if (id < 0 || id >= mem->n_spans) return set_error(mem->err, LETHE_ERR_ARG, "no span %d", id);
    if (mem->spans[id].info.state == LETHE_SPAN_OPEN) mem_span_close_at(mem, id, mem->chars);
    lethe_status st = prune_span(mem, id, logits);
    if (!st) st = refresh_logits(mem, logits);
    return st;
}

int lethe_memory_n_spans(const lethe_memory *mem) { return mem ? mem->n_spans : 0; }

lethe_status lethe_memory_span_get(const lethe_memory *mem, int index, lethe_span_info *info) {
    if (info) memset(info, 0, sizeof *info);
    if (!mem || !info || index < 0 || index >= mem->n_spans) return LETHE_ERR_ARG;
    const mem_span *sp = &mem->spans[index];
    *info = sp->info;
    if (sp->info.state == LETHE_SPAN_PRUNED) info->p0 = info->p1 = -1;
    else {
        info->p0 = mem->base + log_lower(mem, sp->s0);
        info->p1 = mem->base + (sp->s1 >= 0 ? log_lower(mem, sp->s1) : mem->n_log);
    }
    return LETHE_OK;
}

int lethe_memory_tokens(const lethe_memory *mem, lethe_token *out, int cap) {
    if (!mem || (cap > 0 && !out)) return -1;
    for (int i = 0; i < mem->n_log && i < cap; i++) out[i] = mem->log[i].tok;
    return mem->n_log;
}

lethe_status lethe_memory_get_stats(const lethe_memory *mem, lethe_memory_stats *st) {
    if (st) memset(st, 0, sizeof *st);
    if (!mem || !st) return LETHE_ERR_ARG;
    *st = mem->st;
    st->slots_held = lethe_seq_n_cached(mem->s);
    return LETHE_OK;
}
