/* Structured working memory over one sequence (lethe_memory, lethe.h):
 * the token log, spans, prune modes (memory.c); the rule sets' scanners on
 * the decoded text (rules_tim.c: an incremental JSON scanner; rules_think.c:
 * tag markers); tools (tool_exec.c: programs run with fork / exec).
 *
 * Positions. The memory's tokens sit at positions base .. base + n_log - 1
 * in log order (pruning keeps them dense). Each token has a serial number
 * (the memory's token clock when it was appended) and the byte range
 * [c0, c1) of its text in the decoded stream. A span is a serial range
 * [s0, s1): the tokens whose text lies wholly inside the span's bytes. Its
 * positions follow from the log (a lower bound on the serials), so they stay
 * current across prunes without being rewritten.
 *
 * Eviction. The sequence's KV policy may evict (positions are never
 * renumbered: window --kv-reindex is refused), but not the open spans: the
 * memory keeps the sequence's protected range (seq_protect_set,
 * runtime/engine.h) at [first open span's position, end) and resets it
 * whenever a span opens, closes or a prune moves positions. */
#ifndef LETHE_MEMORY_H
#define LETHE_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "lethe.h"
#include "util/error.h"

typedef struct {
    lethe_token tok;
    long serial;
    long c0, c1;
} mem_tok;

typedef struct {
    lethe_span_info info;
    long s0, s1;   /* serial range; s1 = -1 while open */
    long owner;    /* tool results: byte offset of the task object that holds them (-1: Hermes form) */
} mem_span;

typedef struct {
    char *name;    /* NULL: any name */
    lethe_tool_fn fn;
    void *user;
    char *command; /* exec tools */
} mem_tool;

#define JSON_MAX_DEPTH 64
#define JSON_KEY_MAX 24

typedef struct {
    char type;               /* '{' or '[' */
    char key[JSON_KEY_MAX];  /* the key whose value this container is ("" in an array) */
    int span;                /* subtasks list: its span; else -1 */
    long open_off;
} json_frame;

typedef struct {
    json_frame stack[JSON_MAX_DEPTH];
    int depth, overflow;     /* overflow: levels beyond the stack, ignored */
    bool in_str, esc, str_is_key, expect_key;
    char strbuf[JSON_KEY_MAX];
    int strlen_;
    char cur_key[JSON_KEY_MAX];
    int value_span;          /* span of the string value being read, or -1 */
    bool cap_name;           /* reading a tooluse's "tool_name" string */
    bool cap_params;         /* capturing a tooluse's "parameters" text */
    int params_depth;        /* stack depth of the parameters container */
} json_scan;

typedef struct {
    char win[24];            /* the last bytes, for tag matching */
    int n_win;
    int think_open;          /* span of an open <think>, -1 */
    int think_wait;          /* closed think span waiting for the answer to start, -1 */
    int response_open;       /* span of an open <tool_response>, -1 */
    bool cap_call;           /* inside <tool_call> */
} tag_scan;

struct lethe_memory {
    lethe_seq *s;
    lethe_ctx *c;
    const lethe_model *m;
    lethe_memory_params p;
    bool r_tim, r_think, r_tool;
    int n_vocab;
    int base;                /* position of log[0] */
    mem_tok *log;
    int n_log, cap_log;
    long serial;             /* the token clock: tokens appended so far */
    long chars;              /* bytes of decoded text so far */
    mem_span *spans;
    int n_spans, cap_spans;
    lethe_detok *dt;
    char *piece;
    int piece_cap;
    /* prune decisions of the rules for the current token, and FIFOs */
    int *prune_q;
    int n_prune_q, cap_prune_q;
    int *tim_fifo, n_tim_fifo, cap_tim_fifo;
    int *think_fifo, n_think_fifo, cap_think_fifo;
    /* a tool call completed by the current token */
    bool call_ready;
    int call_form;           /* 0 TIM, 1 Hermes */
    char *cap;               /* captured text (tool name / parameters / tool_call body) */
    size_t n_cap, cap_cap;
    char call_name[128];
    bool cap_overflow;
    mem_tool *tools;
    int n_tools;
    bool tools_busy;         /* inside a tool's injection: no nested calls */
    json_scan js;
    tag_scan ts;
    bool logits_stale;
    lethe_memory_stats st;
    char err[LETHE_ERR_MAX];
};

/* memory.c, for the scanners: a span opened at byte x (its first byte) of
 * the stream, closed at byte y (exclusive); a prune request (done once the
 * current token is in the cache). Return -1 / nothing on allocation failure
 * (the span is then not recorded). */
int mem_span_open_at(lethe_memory *mem, lethe_span_kind kind, long x, int depth);
void mem_span_close_at(lethe_memory *mem, int id, long y);
void mem_request_prune(lethe_memory *mem, int id);
bool mem_fifo_push(int **a, int *n, int *cap, int v);
void mem_capture(lethe_memory *mem, const char *p, size_t n);

/* rules_tim.c / rules_think.c: one byte at stream offset off. */
void json_scan_init(json_scan *j);
void json_scan_byte(lethe_memory *mem, json_scan *j, char ch, long off);
void tag_scan_init(tag_scan *t);
void tag_scan_byte(lethe_memory *mem, tag_scan *t, char ch, long off);

/* Small JSON helpers (rules_tim.c): the end of the JSON value starting at
 * s[i] (after blanks), or -1 when it is not one complete value; the raw
 * text of member `key` of the top-level object in s. */
long json_value_end(const char *s, long n, long i);
bool json_member(const char *s, long n, const char *key, long *v0, long *v1);

/* tool_exec.c: runs command (split on spaces, no shell) with input on its
 * stdin; the output (at most cap bytes) into out, *n_out its length. Returns
 * 0, or -1 with an error text in err (timed out, exit status, cannot run).
 * *cut is set when the output reached cap (the program was killed). */
int tool_exec_run(const char *command, const char *input, size_t n_in, int timeout_ms, char *out, size_t cap,
                  size_t *n_out, bool *cut, char *err, size_t err_size);

#endif
