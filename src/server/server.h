/* lethe serve: an OpenAI-compatible HTTP server on the batched engine.
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads only
 * parse, validate, tokenise and queue a request, then stream what the engine
 * thread writes into the request's output. One engine thread owns the
 * context and every sequence: it admits queued requests by KV budget, runs
 * one batched step at a time (a decode token of every running sequence plus
 * prefill chunks of newcomers) and samples.
 *
 * A request is shared by its HTTP thread and the engine thread; it is freed
 * by whichever lets go last (refcount under the server's lock). */
#ifndef LETHE_SERVER_H
#define LETHE_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

struct cJSON;

/* ---- options (lethe serve's flags) ---- */
typedef struct {
    const char *model_path, *tokenizer_path;
    const char *host;
    int port;
    int parallel;          /* sequences running at once */
    int queue_max;         /* requests waiting beyond those */
    int batch_tokens;      /* tokens per step: decodes first, then prefill chunks */
    int n_threads, n_ctx;
    lethe_kv_type kv_type;
    int kv_page_slots;
    double kv_budget_mib;  /* > 0: the pool's hard cap */
    lethe_kv_policy_params kv; /* default policy of a request */
    const char *api_key;
    const char *chat_template; /* NULL: the model's */
    const char *alias;         /* the model id served; NULL: the file name */
    size_t max_body;           /* bytes */
    int keepalive_ms;          /* SSE comment after this long without data */
    bool prefix_cache;
    bool verbose;
    /* structured memory (docs/memory.md): every request's default rules
     * ("" none), prune mode and buffer; tools run inside the inference */
    const char *memory;
    lethe_prune_mode prune_mode;
    int prune_buffer;
    const char *tools[16];     /* "NAME=COMMAND" */
    int n_tools;
} srv_options;

void srv_options_init(srv_options *o);
/* Runs until SIGINT/SIGTERM. Returns a process exit status. */
int srv_run(const srv_options *o);

/* ---- growable byte buffer ---- */
typedef struct {
    char *v;
    size_t n, cap;
    bool oom;   /* an append failed: the content is incomplete */
} sbuf;
void sbuf_put(sbuf *b, const void *p, size_t n);
void sbuf_puts(sbuf *b, const char *s);
void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf *b);

/* ---- UTF-8 and stop strings (stop.c) ---- */
bool srv_utf8_valid(const char *s, size_t n);
/* Appends s to b with every invalid UTF-8 byte replaced by U+FFFD. */
void srv_utf8_sanitize(sbuf *b, const char *s, size_t n);

/* Holds generated text back while it may be the start of a stop string.
 * push() adds text and returns how many bytes of the held text may now be
 * released; once a stop string is found, `stopped` is set and the text
 * before it is all that is released. */
typedef struct {
    char **stops;
    int n_stops;
    size_t max_stop;
    sbuf held;      /* text not yet released */
    bool stopped;
} srv_stop;
void srv_stop_init(srv_stop *s, char **stops, int n_stops);
/* Adds text; writes the releasable bytes to out. */
void srv_stop_push(srv_stop *s, const char *text, size_t n, sbuf *out);
/* At the end: releases what is held (nothing past a stop). */
void srv_stop_flush(srv_stop *s, sbuf *out);
void srv_stop_free(srv_stop *s);

/* Client-declared tools: <tool_call>{"name": ..., "arguments": ...}</tool_call>
 * blocks are taken out of the text and returned as tool_calls (tools.c). */
typedef struct {
    sbuf block;          /* text of the block being read */
    bool inside;
    bool ended;          /* after the calls, other text came: the choice ends */
    sbuf hold;           /* text that may be the start of "<tool_call>" */
    struct cJSON *list;  /* the calls found: [{id, type, function: {name, arguments}}] */
    int n;
} srv_toolscan;
/* Passes generated text through: text outside blocks goes to out; each
 * completed block becomes a call in list (t->n counts them). */
void srv_tools_push(srv_toolscan *t, const char *text, size_t n, sbuf *out);
void srv_tools_flush(srv_toolscan *t, sbuf *out);
void srv_tools_free(srv_toolscan *t);

/* ---- requests ---- */
enum srv_kind { SRV_COMPLETION, SRV_CHAT };
enum srv_finish { SRV_RUNNING = 0, SRV_STOP, SRV_LENGTH, SRV_TOOL_CALLS, SRV_FAILED };

typedef struct srv_choice {
    int group;           /* the prompt it continues */
    lethe_seq *seq;
    lethe_sampler *smp;
    lethe_detok *dt;
    srv_stop stop;
    int n_gen;
    lethe_token next;    /* sampled, to run in the next step */
    bool pending;        /* next is to run */
    enum srv_finish finish;
    sbuf text;           /* non-streamed: the whole text */
    struct cJSON *lp;    /* non-streamed logprobs: chat's content list, or completions' parallel lists */
    size_t text_offset;  /* completions logprobs: bytes of text so far */
    int *counts;         /* presence / frequency penalties: times each token was generated (n_vocab) */
    lethe_memory *mem;   /* structured memory over seq (requests with "memory") */
    int n_forced;        /* force_text tokens used */
    srv_toolscan calls;  /* client tools: <tool_call> blocks found in the text */
    lethe_token *ran;    /* generated tokens run through the model (for the prefix cache) */
    int n_ran, ran_cap;
} srv_choice;

/* One prompt of a request and the sequence that prefills it; its n choices
 * fork from that sequence once the prompt is in. */
typedef struct {
    lethe_token *toks;
    int n_toks;
    char *text;          /* completions with echo: the prompt text */
    lethe_seq *seq;      /* while prefilling */
    int n_prefilled;     /* prompt tokens in the cache (reused ones included) */
    int n_cached;        /* reused from the prefix cache */
    bool done;           /* prefilled and forked into its choices */
} srv_group;

typedef struct srv_request {
    /* set by the HTTP thread before queueing; read-only afterwards */
    enum srv_kind kind;
    bool stream, include_usage;
    int n;                  /* choices per prompt */
    int max_tokens;         /* resolved */
    lethe_sampler_params sp;
    float presence_penalty, frequency_penalty;
    bool logprobs;
    int top_logprobs;
    bool echo, ignore_eos, use_prefix_cache;
    char **stops;
    int n_stops;
    lethe_seq_params seq_params;
    char policy_name[32];
    srv_group *groups;
    int n_groups;
    char memory[32];        /* structured-memory rules ("" none) */
    lethe_memory_params mem_params;
    char *force_text;
    lethe_token *forced;    /* lethe.force_text: the reply, teacher-forced */
    int n_forced;
    bool client_tools;      /* the request declared tools: <tool_call> blocks become tool_calls */
    srv_choice *choices;    /* n_groups x n */
    int n_choices;
    size_t reserve_pages;   /* admission: the most pool pages this request may hold */
    char id[48];
    long long created;
    const char *model_id;
    double t_arrival;

    /* engine state (engine thread only) */
    bool started;           /* the first chunk went out */
    double t_first;         /* first token time */

    /* shared, under the server lock */
    sbuf out;               /* bytes for the client not yet taken */
    bool done;              /* out holds everything */
    int http_status;        /* non-streamed: status of out */
    bool cancelled;         /* the client went away */
    int refs;
    struct srv_request *next_q; /* the incoming queue */
} srv_request;

/* ---- the server ---- */
typedef struct srv_metrics {
    uint64_t requests_ok, requests_4xx, requests_5xx, requests_cancelled, requests_429;
    uint64_t prompt_tokens, generated_tokens, cached_tokens, prefix_hits, prefix_lookups;
    uint64_t steps, evictions_prefix, evicted_tokens;
    uint64_t mem_spans_pruned, mem_tokens_pruned, mem_bytes_freed, mem_tool_calls, mem_tool_errors, tool_calls_returned;
    double mem_tool_seconds;
    double step_seconds, prefill_seconds;
    size_t kv_used, kv_total, kv_peak, kv_cold, kv_staging, kv_reserved, prefix_bytes;
    int prefix_entries;
    uint64_t by_status[600];  /* responses by HTTP status */
    int queue_len, active;
} srv_metrics;

typedef struct srv_prefix_cache srv_prefix_cache;

typedef struct srv_server {
    srv_options opt;
    lethe_model *model;
    lethe_ctx *ctx;
    lethe_model_info info;
    char model_id[256];
    const char *eot_text;   /* the chat template's end-of-turn text (NULL when none) */
    int page_slots;
    size_t page_bytes;
    bool ready;             /* model loaded */
    bool load_failed;
    char load_error[512];
    volatile int stopping;

    pthread_mutex_t lock;   /* requests' shared fields, the queue, metrics */
    pthread_cond_t wake_engine, wake_http;
    srv_request *q_head, *q_tail;
    int q_len;              /* queued, not yet admitted */
    srv_metrics met;

    /* engine thread only */
    srv_request **active;
    int n_active;
    srv_request **waiting;  /* taken off the queue, not admitted yet (FIFO) */
    int n_waiting, cap_waiting;
    size_t pages_total, pages_reserved, streams;
    srv_prefix_cache *pc;
    float *logits;
    int logits_rows;
    float *mem_logits;      /* one row, for choices run through structured memory */
} srv_server;

/* request.c: parse a request body into r; on failure returns the HTTP status
 * and writes the error JSON into err_body. */
int srv_parse_request(srv_server *s, enum srv_kind kind, const char *body, size_t len, srv_request *r, sbuf *err_body);
void srv_request_free(srv_request *r);
/* request.c: the admission rule's size of a request, or 0 with a reason
 * when it can never fit. */
size_t srv_request_pages(const srv_server *s, const srv_request *r, char *why, size_t why_size);

/* respond.c: OpenAI-shaped JSON. */
void srv_error_json(sbuf *b, const char *message, const char *type, const char *param, const char *code);
/* The engine calls these as a request advances; they write into r->out
 * under the server lock and wake the HTTP thread. */
void srv_emit_start(srv_server *s, srv_request *r);
/* One generated token of choice ci: its released text (maybe empty) and,
 * when asked, its log-probabilities from the raw logits. */
void srv_emit_token(srv_server *s, srv_request *r, int ci, const char *text, size_t n, const float *raw_logits, lethe_token tok);
/* Choice ci found client tool call number k (streams send it at once). */
void srv_emit_tool_call(srv_server *s, srv_request *r, int ci, int k);
/* Choice ci finished (its finish field set): the text it still held. */
void srv_emit_choice_end(srv_server *s, srv_request *r, int ci, const char *text, size_t n);
/* Every choice finished: usage and the end of the stream, or the body. */
void srv_emit_done(srv_server *s, srv_request *r);
/* A request that failed in the engine: an error event or body. */
void srv_emit_failure(srv_server *s, srv_request *r, const char *message);

/* engine.c */
void *srv_engine_main(void *arg);
/* Queues r (takes a reference). Returns 0, or 429 when the queue is full. */
int srv_enqueue(srv_server *s, srv_request *r);
/* Drops one reference (either side); frees on the last. Server lock held. */
void srv_request_unref_locked(srv_request *r);

/* prefix_cache.c: finished sequences kept for their pages, by token prefix. */
srv_prefix_cache *srv_pc_create(void);
void srv_pc_free(srv_prefix_cache *pc);
/* A sequence ready to continue `toks` with up to n_reuse tokens already
 * cached (fork of the best entry, truncated), or NULL. */
lethe_seq *srv_pc_take(srv_prefix_cache *pc, const lethe_token *toks, int n, const char *policy, int *n_reuse, char *err,
                       size_t err_size);
/* Keeps seq (ownership passes) holding toks. */
void srv_pc_put(srv_prefix_cache *pc, lethe_seq *seq, const lethe_token *toks, int n, const char *policy, size_t pages);
/* Frees the least recently used entry; false when empty. */
bool srv_pc_evict_one(srv_prefix_cache *pc);
size_t srv_pc_pages(const srv_prefix_cache *pc);
int srv_pc_entries(const srv_prefix_cache *pc);

/* http.c: the listening daemon (port 0: any free port, written to *port). */
void *srv_http_start(srv_server *s, int *port, char *err, size_t err_size);
void srv_http_stop(void *daemon);

/* metrics.c */
void srv_metrics_text(srv_server *s, sbuf *b);

double srv_now(void);

#endif
