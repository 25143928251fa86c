/* lethe: a memory-bounded LLM inference engine.
 *
 * This is the only public header of liblethe. Handles are opaque. Every
 * function that can fail returns a lethe_status (or NULL) and leaves a
 * message: in the err buffer passed to a constructor, or in
 * lethe_seq_error() / lethe_ctx_error(). No function exits or aborts on bad
 * input; a NULL handle or buffer is an error (LETHE_ERR_ARG, NULL, -1) or a
 * documented neutral value, never a crash.
 *
 * Ownership: the caller owns what it passes in (strings and structs are
 * copied, never kept); lethe owns what it returns (strings live as long as
 * their handle unless said otherwise). Free a sequence before its context
 * (or let lethe_ctx_free free it), and a context before its model.
 *
 * Typical use:
 *   char err[512];
 *   lethe_model *m = lethe_model_load("model.gguf", NULL, err, sizeof err);
 *   lethe_ctx *c = lethe_ctx_create(m, NULL, err, sizeof err);
 *   lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
 *   int n = lethe_tokenize(m, "Hello", 5, ids, cap, true, false);
 *   lethe_seq_append(s, ids, n, logits);   // prefill, logits of the last token
 *   ... sample, lethe_seq_append(s, &tok, 1, logits) ...
 *   lethe_ctx_free(c); lethe_model_free(m);
 */
#ifndef LETHE_H
#define LETHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t lethe_token;

typedef enum {
    LETHE_OK = 0,
    LETHE_ERR_IO = 1,          /* cannot open / read / map a file */
    LETHE_ERR_FORMAT = 2,      /* malformed file */
    LETHE_ERR_UNSUPPORTED = 3, /* valid file using something lethe does not implement */
    LETHE_ERR_NOMEM = 4,       /* allocation failed */
    LETHE_ERR_ARG = 5,         /* bad argument from the caller */
    LETHE_ERR_BUDGET = 6,      /* the KV budget or context limit would be exceeded */
} lethe_status;

/* A short constant name for a status ("io", "format", ...). */
const char *lethe_status_name(lethe_status s);

/* ---- versions ---------------------------------------------------------- */

#define LETHE_VERSION_MAJOR 0
#define LETHE_VERSION_MINOR 2
#define LETHE_VERSION_PATCH 0
#define LETHE_VERSION_STRING "0.2.0"
/* The library's version string (may differ from the header's when linked
 * against another build). */
const char *lethe_version(void);

/* ---- models ------------------------------------------------------------ */

typedef struct lethe_model lethe_model;

/* Storage type of cached keys and values. */
typedef enum {
    LETHE_KV_F32 = 0,
    LETHE_KV_F16 = 1,
    LETHE_KV_Q8_0 = 2,
    LETHE_KV_Q4_0 = 3, /* per-token 4-bit blocks of 32: 36 bytes a row of 64 against F16's 128 */
} lethe_kv_type;

typedef struct {
    const char *tokenizer_path; /* llama2.c checkpoints: tokenizer.bin (NULL: beside the model); copied */
} lethe_model_params;

lethe_model_params lethe_model_default_params(void);

/* Loads a GGUF file (by magic) or a llama2.c checkpoint (.bin). Returns NULL
 * and writes a message into err on failure. params may be NULL. A model is
 * immutable once loaded: weights, hyper-parameters and tokenizer. */
lethe_model *lethe_model_load(const char *path, const lethe_model_params *params,
                              char *err, size_t err_size);
/* Frees the model. Every context made from it must be freed first. */
void lethe_model_free(lethe_model *m);

typedef struct {
    const char *arch;       /* "llama", "qwen2" (lives as long as the model) */
    const char *name;       /* general.name or "" (likewise) */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rope_freq_base, rms_eps;
    uint64_t n_params;
    uint64_t weight_bytes;
    lethe_token bos, eos;   /* -1 when the vocabulary has none */
    int max_piece_bytes;    /* longest token piece, special tokens rendered */
} lethe_model_info;

/* Fills info (zeroed first). LETHE_ERR_ARG for a NULL model or info. */
lethe_status lethe_model_get_info(const lethe_model *m, lethe_model_info *info);

/* ---- contexts ------------------------------------------------------------
 * A context is one running engine on a model: it owns the KV page pool
 * (under its budget), the worker threads, every scratch buffer and the
 * accounting. Sequences belong to a context.
 *
 * Threads: a model may be shared by any number of contexts on any number of
 * threads at once (it is never written after load). A context, and every
 * sequence in it, must be used by one thread at a time. */

typedef struct lethe_ctx lethe_ctx;

typedef struct {
    int n_threads;        /* worker threads; <= 0 means all online cores */
    int n_ctx;            /* longest sequence; <= 0: the model's training context (capped at 4096) */
    int n_seq_max;        /* sequences that may hold n_ctx tokens at once (sizes the KV pool) */
    lethe_kv_type kv_type;
    int kv_page_slots;    /* cache slots per KV page */
    double kv_budget_mib; /* > 0: the KV pool holds at most this many MiB (overrides n_ctx sizing) */
    /* Shared-prefix attention (Hydragen): in a batched step, the decode
     * rows of sequences that share cached pages (forks) attend the shared
     * pages once for all of them. Results equal the unshared computation
     * within float rounding, not bit for bit. Sequences whose policy needs
     * attention statistics (h2o, tova, ...) or has a cold tier (quest,
     * mixed) never share. Default true. */
    bool shared_prefix_attn;
} lethe_ctx_params;

/* Defaults: all cores, context from the model, one sequence, F16 KV in
 * pages of 32 slots, shared-prefix attention on. */
lethe_ctx_params lethe_ctx_default_params(void);
lethe_ctx *lethe_ctx_create(const lethe_model *m, const lethe_ctx_params *params, char *err, size_t err_size);
/* Frees the context and every sequence still in it. */
void lethe_ctx_free(lethe_ctx *c);
const lethe_model *lethe_ctx_model(const lethe_ctx *c);
int lethe_ctx_n_threads(const lethe_ctx *c);   /* 0 for NULL */
int lethe_ctx_n_ctx(const lethe_ctx *c);       /* resolved n_ctx; 0 for NULL */
/* The last error of a batched step (lethe_ctx_decode); "" when none. The
 * string lives until the next call on the context. */
const char *lethe_ctx_error(const lethe_ctx *c);

/* ---- tokens ------------------------------------------------------------ */

/* Tokenises text (len bytes). add_special: add BOS/EOS as the vocabulary
 * asks; parse_special: recognise special-token text such as "<s>" as single
 * tokens. Writes at most cap ids and returns the total number needed
 * (which may exceed cap: call again with a larger buffer), or -1 on error. */
int lethe_tokenize(const lethe_model *m, const char *text, size_t len,
                   lethe_token *ids, int cap, bool add_special, bool parse_special);

/* The bytes of one token's piece (special tokens rendered as their text when
 * render_special). Returns the byte count (may exceed cap), or -1. */
int lethe_token_piece(const lethe_model *m, lethe_token id, char *buf, int cap, bool render_special);
bool lethe_token_is_eog(const lethe_model *m, lethe_token id);

/* Streaming detokeniser: turns generated ids into bytes that are safe to
 * print, holding back a multi-byte UTF-8 character until it is complete. */
typedef struct lethe_detok lethe_detok;
lethe_detok *lethe_detok_create(const lethe_model *m, bool render_special);
/* Writes the printable bytes for id into out and returns their count; when
 * that count is larger than cap nothing is written and id is not consumed
 * (call again with a buffer of that size, as with snprintf). cap >=
 * lethe_model_info.max_piece_bytes + 3 is always enough. -1 for an id out of
 * range or bad arguments. */
int lethe_detok_push(lethe_detok *d, lethe_token id, char *out, int cap);
/* Writes whatever is held back (an incomplete character at the end, at most
 * 3 bytes); the same rule when cap is too small. */
int lethe_detok_flush(lethe_detok *d, char *out, int cap);
void lethe_detok_free(lethe_detok *d);

/* ---- sequences ----------------------------------------------------------- */

typedef struct lethe_seq lethe_seq;

/* Which KV slots a sequence keeps once its budget is reached, and the
 * parameters of the policies (each uses the ones it needs). */
typedef struct {
    const char *name;     /* "full" (default), "window", "h2o", ...: lethe_kv_policy_names() */
    int budget;           /* slots per layer and KV head; 0: the context (or the pool's share) */
    int sink;             /* attention sinks kept (default 4) */
    int window;           /* most recent slots kept; < 0: a quarter of the budget (default) */
    float hit_threshold;  /* attention probability that counts as a hit (lazy; default 0.02) */
    int lag;              /* lazy: evict once every `lag` steps (default 16) */
    int obs_window;       /* snapkv: observation window of last prompt queries (default 16) */
    int pool_kernel;      /* snapkv: pooling width (default 7) */
    bool keyformer;       /* h2o: Keyformer's Gumbel-regularised score */
    float keyformer_tau;  /* Keyformer temperature (default 1) */
    uint64_t seed;
    const char *calib_path; /* headwise: calibration file */
    int quest_pages;      /* quest: cold pages attended per step; 0: budget / page size */
    float hot_fraction;   /* mixed: share of the budget's bytes kept at full precision (default 0.5) */
    bool reindex;         /* window: re-index cached positions within the cache after each eviction
                           * (StreamingLLM), so no position exceeds the budget and a sequence can run
                           * far past the model's training context */
    /* snapkv and mixed (issue 12, question-aware selection): */
    int snap_votes;       /* snapkv: who votes while a long prompt streams through in chunks:
                           * LETHE_SNAP_PROBE (default) the prompt's last obs_window tokens (the question),
                           * run after each chunk and dropped; LETHE_SNAP_CHUNK each chunk's own last
                           * obs_window queries */
    int snap_alloc;       /* snapkv: per-stream budgets: LETHE_SNAP_UNIFORM (default), LETHE_SNAP_PYRAMID
                           * (falling with depth, PyramidKV) or LETHE_SNAP_RETRIEVAL (retrieval heads found
                           * by a calibration pass get the room, RazorAttention / DuoAttention style) */
    float pyramid_ratio;  /* snapkv pyramid: first layer's budget over the last layer's, in [0.001, 1000]; below 1
                           * the deep layers get more (default 3; 0: 3) */
    bool mixed_question;  /* mixed: rank by snapkv's question votes (probe, pooled) instead of the
                           * accumulated attention of every query */
    /* Added for per-sequence byte budgets and quest's cold storage (fields
     * at the end keep older initialisers valid). */
    size_t budget_bytes;  /* > 0: every RAM byte the sequence holds for its KV (hot pool pages, cold
                           * tier, staging, policy state: lethe_seq_bytes.ram_bytes) stays within this;
                           * the runtime derives the slot budget (and quest's pages) from it and a step
                           * that would pass it fails with LETHE_ERR_BUDGET. 0: slot budget only */
    const char *cold;     /* quest: cold storage, "q8_0" (default, RAM), "q4" (RAM, Q4_0 with per-channel
                           * keys), "disk-q8_0", "disk-q4" (pages in a file, bounds in RAM); NULL: default */
    const char *cold_dir; /* disk cold storage: directory of its files (NULL: $TMPDIR, else /tmp) */
    bool snap_ada;        /* snapkv: head-adaptive budgets (Ada-KV): the KV heads of a layer share the
                           * layer's slots per prompt, by their votes, each keeping at least a fifth of
                           * its share (at least a page); on top of snap_alloc's layer budgets */
} lethe_kv_policy_params;

enum { LETHE_SNAP_PROBE = 0, LETHE_SNAP_CHUNK = 1 };
enum { LETHE_SNAP_UNIFORM = 0, LETHE_SNAP_PYRAMID = 1, LETHE_SNAP_RETRIEVAL = 2 };

typedef struct {
    int n_ctx;            /* max slots this sequence holds without a policy; <= 0: the model's n_ctx */
    lethe_kv_policy_params kv;
} lethe_seq_params;

/* NULL-terminated list of policy names, and a one-line summary of each. */
const char *const *lethe_kv_policy_names(void);
const char *lethe_kv_policy_summary(const char *name);
/* Whether policy `name` reads parameter `param`, named as the CLI's --kv-*
 * flag without its prefix ("sink", "window", "lag", "threshold",
 * "obs-window", "pool", "keyformer", "calib", "quest-pages",
 * "hot-fraction", "reindex", "cold", "cold-dir", "snap-votes", "snap-alloc",
 * "pyramid-ratio", "snap-ada"; every policy reads
 * "budget"). */
bool lethe_kv_policy_uses(const char *name, const char *param);

lethe_seq_params lethe_seq_default_params(void);
/* A new, empty sequence in context c. params may be NULL; every string in
 * it is copied. */
lethe_seq *lethe_seq_create(lethe_ctx *c, const lethe_seq_params *params, char *err, size_t err_size);
/* A new sequence in the same context sharing every cached page of s (copy on
 * write), with the same policy and positions. */
lethe_seq *lethe_seq_fork(lethe_seq *s, char *err, size_t err_size);
void lethe_seq_free(lethe_seq *s);

/* Every call below that returns a status leaves the sequence exactly as it
 * was when it fails (the message is in lethe_seq_error). One exception: a
 * prompt that an evicting policy streams through in several chunks keeps
 * the chunks before the one that failed (each chunk is all or nothing; the
 * ids are checked before the first runs). */

/* Runs n tokens through the model at the next positions. When logits is
 * non-NULL it receives the n_vocab logits after the last token. A prompt
 * longer than an evicting policy's budget streams through in chunks. */
lethe_status lethe_seq_append(lethe_seq *s, const lethe_token *ids, int n, float *logits);
/* One decode step: lethe_seq_append of a single token. */
lethe_status lethe_seq_decode(lethe_seq *s, lethe_token id, float *logits);
/* Like lethe_seq_append, but writes n x n_vocab logits (one row per token). */
lethe_status lethe_seq_append_all_logits(lethe_seq *s, const lethe_token *ids, int n, float *logits);

/* Positions. Each cached token keeps its position; the next token goes to
 * lethe_seq_n_past (the next position). Editing positions re-rotates the
 * cached keys with the model's RoPE (F16 / Q8_0 caches round again). */
int lethe_seq_n_past(const lethe_seq *s);     /* the next position */
int lethe_seq_n_tokens(const lethe_seq *s);   /* tokens run so far (the statistics clock, never decreases) */
int lethe_seq_n_cached(const lethe_seq *s);   /* cache slots held (most over layers and KV heads) */
/* Most rows this sequence may have in one batched step (lethe_ctx_decode). */
int lethe_seq_max_batch(const lethe_seq *s);
/* Every byte a sequence holds for its KV, by kind. Pool pages are counted
 * whole (a page shared with a fork counts for each holder); staging is the
 * context's cold-tier scratch (staged pages, page lists, ranking, merge
 * buffers) attributed to each sequence with a cold tier. */
typedef struct {
    size_t hot_bytes;       /* pool pages of the sequence's streams */
    size_t cold_bytes;      /* cold tier in RAM: pages (or, on disk, their bounds) and its scratch */
    size_t staging_bytes;   /* buffers the cold tier is attended through */
    size_t state_bytes;     /* positions, page tables, statistics, aux channels, plan masks, policy scratch */
    size_t ram_bytes;       /* the sum of the four: what budget_bytes bounds */
    size_t ram_peak;        /* most ram_bytes after any step since creation (or the last reset) */
    size_t budget_bytes;    /* the sequence's byte budget, 0: none */
    size_t disk_bytes;      /* cold tier on disk (file bytes) */
    uint64_t disk_read_bytes, disk_write_bytes; /* disk traffic since creation */
} lethe_seq_bytes;
/* Fills b (zeroed first). LETHE_ERR_ARG for NULL. */
lethe_status lethe_seq_get_bytes(const lethe_seq *s, lethe_seq_bytes *b);
/* Starts ram_peak again from the bytes held now. */
void lethe_seq_reset_bytes_peak(lethe_seq *s);

/* Drops the cached tokens at positions [p0, p1). When p1 reaches the next
 * position, the next position becomes p0. */
lethe_status lethe_seq_remove(lethe_seq *s, int p0, int p1);
/* Moves the cached tokens at positions [p0, p1) by delta (new positions must
 * stay >= 0). When p1 reaches the next position, it moves by delta too. */
lethe_status lethe_seq_shift(lethe_seq *s, int p0, int p1, int delta);
/* Rollback: drops every cached token at position >= pos; the next position
 * becomes pos. */
lethe_status lethe_seq_truncate(lethe_seq *s, int pos);

/* ---- batched steps --------------------------------------------------------
 * One forward pass for tokens of many sequences of one context: every weight
 * matrix is read once for all rows. Row r runs tokens[r] for seqs[r] at that
 * sequence's next position; rows of one sequence run in row order (prompt
 * chunks and single decode tokens mix freely). Each sequence's KV policy
 * makes room before the step. Results do not depend on what else is in the
 * batch, bit for bit, when the context's shared_prefix_attn is off; with it
 * on, a sequence whose decode row shares cached pages with others in the
 * batch gets them within float rounding (|d logits| ~ 1e-6). */
typedef struct {
    int n;                        /* rows */
    const lethe_token *tokens;    /* n ids */
    lethe_seq *const *seqs;       /* n sequences, all of this context */
    const bool *logits;           /* NULL: each sequence's last row; else which rows want logits */
} lethe_batch;

/* Writes one n_vocab row of logits per row that wants them, in row order.
 * On failure no sequence has changed (message in lethe_ctx_error). */
lethe_status lethe_ctx_decode(lethe_ctx *c, const lethe_batch *batch, float *logits);

/* KV memory of a context: bytes held by all its sequences (shared pages
 * once), the pool's capacity, and the peak since creation. */
typedef struct {
    size_t bytes_used, bytes_total, bytes_peak; /* the pool (hot tier) */
    size_t page_bytes;
    int page_slots;
    size_t cold_bytes, cold_peak;               /* cold tiers of all sequences (quest, mixed) */
    size_t staging_bytes;                       /* scratch that cold pages are loaded into to be attended */
} lethe_kv_usage;
/* Fills u (zeroed first); LETHE_ERR_ARG for NULL. */
lethe_status lethe_ctx_kv_usage(const lethe_ctx *c, lethe_kv_usage *u);
/* Restarts the peaks from the bytes held now (to measure one run). */
void lethe_ctx_kv_reset_peak(lethe_ctx *c);
/* The last error on this sequence, "" when none; lives until the next call
 * on it. A NULL sequence gives a constant message. */
const char *lethe_seq_error(const lethe_seq *s);

/* ---- sampling ------------------------------------------------------------ */

typedef struct {
    float temperature;     /* 0: greedy */
    int top_k;             /* 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    int repeat_last_n;     /* how many recent tokens the penalty looks at */
    uint64_t seed;
} lethe_sampler_params;

typedef struct lethe_sampler lethe_sampler;

lethe_sampler_params lethe_sampler_default_params(void);
/* NULL for n_vocab <= 0 or parameters out of range (temperature >= 0,
 * top_k >= 0, top_p and min_p in [0, 1], repeat_penalty > 0). */
lethe_sampler *lethe_sampler_create(const lethe_sampler_params *p, int n_vocab);
void lethe_sampler_free(lethe_sampler *s);
/* Picks a token from logits (modified in place); remembers it for the
 * repetition penalty. -1 for a NULL sampler or logits. */
lethe_token lethe_sampler_sample(lethe_sampler *s, float *logits);
/* Tells the sampler about tokens it did not pick (the prompt). */
void lethe_sampler_accept(lethe_sampler *s, lethe_token t);

/* ---- chat templates --------------------------------------------------------
 * A chat model is trained on conversations written in one fixed format; its
 * GGUF file usually stores that format as a Jinja template
 * (tokenizer.chat_template). lethe does not run Jinja: it recognises the
 * template's family by its distinctive markers and renders the family in C,
 * exactly as llama.cpp's llama_chat_apply_template renders it (the family
 * names are llama.cpp's too, so a name that works with `llama-server
 * --chat-template` works here).
 *
 * BOS: the rendered text never holds the BOS token, even for families whose
 * template starts with {{ bos_token }} (llama2, llama3, mistral, gemma, ...).
 * Tokenise it with lethe_tokenize(m, text, len, ids, cap, add_special = true,
 * parse_special = true): add_special puts the vocabulary's BOS in front where
 * the vocabulary asks for one (what the template's bos_token does), and
 * parse_special turns the markers (<|im_start|>, [INST], <|eot_id|>, ...)
 * into their special tokens. (llama2-sys-bos writes "<s>" before every turn
 * after the first, as its template does; parse_special makes it the BOS.)
 *
 * Roles: "system", "developer" (rendered exactly as "system"), "user",
 * "assistant" and "tool"; any other role is an error. Families without a
 * system role merge it as llama.cpp does: gemma puts the system text (trimmed)
 * at the top of the next user turn followed by a blank line; llama2 and
 * mistral-v1/v3/v3-tekken write it inside the [INST] block before the user's
 * text (llama2-sys and its variants within <<SYS>> ... <</SYS>>); deepseek,
 * deepseek2/3, openchat and vicuna write it bare at its place; the others
 * have a system turn of their own. "tool" messages (a tool's
 * result): families that write the role's name (chatml, phi3, phi4, zephyr)
 * write "tool"; llama3 writes it as its "ipython" role (Llama 3.1's tool
 * results); every other family renders it as a user turn. */

typedef struct {
    const char *role;    /* system, developer, user, assistant, tool */
    const char *content; /* UTF-8 text; NUL-terminated */
} lethe_chat_message;

/* Every chat-template call only reads the model: any thread, any time.
 *
 * The built-in template families, NULL-terminated (constant strings):
 * chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, llama3,
 * mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken,
 * phi3, phi4, zephyr, gemma, openchat, vicuna, vicuna-orca, deepseek,
 * deepseek2, deepseek3, command-r. (llama2 is Mistral-7B-Instruct v0.1/v0.2's
 * [INST] format without a system block; the llama2-sys variants have one,
 * and Llama-2-chat's own template, which strips the messages, is detected
 * as llama2-sys-strip.) */
const char *const *lethe_chat_template_names(void);

/* The model's tokenizer.chat_template as stored in the GGUF file, or NULL when
 * it has none (llama2.c checkpoints never do). Lives as long as the model. */
const char *lethe_model_chat_template(const lethe_model *m);

/* The family of a chat template's text, recognised by its markers as
 * llama.cpp's detection does ("<|im_start|>" -> chatml, "<|start_header_id|>"
 * -> llama3, "[INST]" with "<<SYS>>" -> llama2-sys, "<start_of_turn>" ->
 * gemma, ...; a family's name is its own family). NULL for NULL, or a template
 * that is none of the built-in families. */
const char *lethe_chat_template_detect_text(const char *tmpl);
/* lethe_chat_template_detect_text of the model's template; NULL when the
 * model has none or it is not recognised (or m is NULL). */
const char *lethe_chat_template_detect(const lethe_model *m);

/* The text that ends an assistant turn in family `name` (NULL: the model's
 * detected one; m may be NULL when name is given): "<|im_end|>" for chatml,
 * "<|eot_id|>" for llama3, "</s>" for llama2 and mistral, "<end_of_turn>"
 * for gemma, ... A generation loop stops there: in most vocabularies it is
 * one end-of-generation token (lethe_token_is_eog), but when it is not (the
 * text spelt by several tokens, or a special token not flagged as EOG), stop
 * when the generated text contains it. NULL for an unknown name. */
const char *lethe_chat_template_stop(const lethe_model *m, const char *name);

/* Renders n messages with family `name` (NULL: the model's detected family;
 * m may be NULL when name is given). add_generation_prompt appends the header
 * of an assistant turn, so the model's continuation is the reply (families
 * whose format has no such header, llama2 and mistral, add nothing).
 * Like snprintf: writes at most cap bytes into out including the terminating
 * NUL (out may be NULL when cap is 0) and returns the full length without the
 * NUL, which may be >= cap (call again with cap > the result). Returns -1 and
 * writes a message into err for an unknown template name, a model without a
 * recognised template and no name, an unknown role, a NULL message, role or
 * content, msgs NULL with n > 0, n or cap < 0, or a result over INT_MAX
 * bytes. */
int lethe_chat_apply(const lethe_model *m, const char *name, const lethe_chat_message *msgs, int n,
                     bool add_generation_prompt, char *out, int cap, char *err, size_t err_size);

/* ---- structured memory ---------------------------------------------------
 * A working memory over one sequence (docs/memory.md): a token log, named
 * spans over the token stream, and pruning that frees a span's slots and
 * pages at once and compacts the positions of everything after it, so a
 * sequence can generate many times its context while what it holds stays
 * under it. Spans are opened and closed by the caller (positions) or by rule
 * sets matching markers on the decoded text (so they do not depend on how
 * a marker tokenises):
 *   "tim"   TIM's JSON reasoning tree: a "subtasks" list closes with its
 *           closing bracket; the prune buffer keeps the prune_buffer most
 *           recent closed lists and prunes older ones (a task's own
 *           "thought" and "conclusion" are never inside its list).
 *   "think" <think> ... </think>: a closed block is pruned once the answer
 *           after it has started, keeping the think_keep most recent.
 *   "tool"  a tool result (TIM's "tool_result" value, or a
 *           <tool_response> block) is pruned once the conclusion that
 *           consumed it has closed (TIM: the task's "conclusion" string;
 *           Hermes form: the next </think> or <|im_end|>).
 * Rule sets combine with commas ("tim,tool"). A span holds the tokens whose
 * decoded text lies wholly inside it.
 *
 * Tool calls: when the text completes a TIM "tooluse" ("tool_name" and
 * "parameters") or a <tool_call>{"name": ..., "arguments": ...}</tool_call>,
 * the registered tool runs on the arguments' JSON and its result (or an
 * error text) is prefilled into the same sequence before the next token:
 * TIM: `, "tool_result": RESULT` (RESULT as a JSON string unless it is a
 * JSON object or array); Hermes: `\n<tool_response>\nRESULT\n</tool_response>\n`.
 *
 * Any KV policy but window --kv-reindex: open spans are protected from its
 * eviction (a step they leave no room for fails with LETHE_ERR_BUDGET). */

typedef struct lethe_memory lethe_memory;

typedef enum {
    LETHE_PRUNE_SHIFT = 0,    /* remove the span, shift what follows (keys re-rotated): cheap, approximate */
    LETHE_PRUNE_REENCODE = 1, /* truncate at the span, re-run the tokens after it: exact */
} lethe_prune_mode;

typedef struct {
    const char *rules;        /* NULL or "": caller spans only; "tim", "think", "tool", combined with ',' */
    lethe_prune_mode mode;
    int prune_buffer;         /* tim: closed subtask lists kept (default 2) */
    int think_keep;           /* think: closed blocks kept (default 0) */
    int tool_timeout_ms;      /* exec tools: wall-clock limit (default 10000) */
    size_t tool_output_max;   /* tool results are cut at this many bytes (default 65536) */
} lethe_memory_params;

typedef enum {
    LETHE_SPAN_USER = 0,
    LETHE_SPAN_SUBTASKS,      /* tim: the inside of a "subtasks" list */
    LETHE_SPAN_THOUGHT,       /* tim: a "thought" string value */
    LETHE_SPAN_CONCLUSION,    /* tim: a "conclusion" string value */
    LETHE_SPAN_THINK,         /* <think> ... </think> and the blank after it */
    LETHE_SPAN_TOOL_RESULT,   /* a tool result (TIM value or <tool_response> block) */
} lethe_span_kind;

typedef enum { LETHE_SPAN_OPEN = 0, LETHE_SPAN_CLOSED = 1, LETHE_SPAN_PRUNED = 2 } lethe_span_state;

typedef struct {
    int id;
    lethe_span_kind kind;
    lethe_span_state state;
    char name[32];            /* user spans: the caller's name; rule spans: the kind */
    int depth;                /* tim: nesting depth of the list (1 = the top-level reasoning's) */
    int p0, p1;               /* current positions [p0, p1); p1 = the next position while open; -1 once pruned */
    long opened_at, closed_at, pruned_at; /* the memory's token clock (tokens appended before the event); -1: not yet */
} lethe_span_info;

typedef struct {
    long tokens_appended;     /* tokens given to the memory, tool results included */
    long tokens_processed;    /* tokens the model ran (re-encoded and re-decoded ones included) */
    long tokens_reencoded;    /* of those, re-runs caused by pruning */
    int slots_held, slots_peak;
    int spans_opened, spans_pruned;
    long tokens_pruned;
    size_t bytes_freed;       /* KV pool bytes released by pruning */
    double prune_seconds;     /* wall time spent pruning (shift or re-encode) */
    int tool_calls, tool_errors;
    double tool_seconds;
} lethe_memory_stats;

/* A tool: writes at most cap bytes of result into out and returns the count,
 * or -1 with a NUL-terminated error text in out (the model is given it).
 * args_json is the call's arguments ("parameters" / "arguments") as JSON. */
typedef int (*lethe_tool_fn)(void *user, const char *name, const char *args_json, char *out, size_t cap);

/* Defaults: no rules, shift mode, prune buffer 2, no think block kept,
 * tool timeout 10 s, tool output cap 64 KiB. */
lethe_memory_params lethe_memory_default_params(void);
/* A memory over s (which it uses but does not own: free the memory before
 * s). Tokens already in s stay, never pruned. NULL (message in err) for an
 * unknown rule set, bad parameters or a re-indexing window policy. A memory
 * follows its sequence's thread rule: one thread at a time, the one using
 * the context. Returned strings (lethe_memory_error) live until the next
 * call on the memory. */
lethe_memory *lethe_memory_create(lethe_seq *s, const lethe_memory_params *p, char *err, size_t err_size);
void lethe_memory_free(lethe_memory *mem);
/* Feeds n tokens (a prompt, a generated token, a teacher-forced trace) as
 * lethe_seq_append does, scanning their text: rules open, close and prune
 * spans and tool calls run at the token where they complete. logits, when
 * non-NULL, receives the next-token logits after all of it. On failure the
 * sequence keeps what ran before the failing chunk (prunes and tool results
 * already applied stay), and the rules' scanners may have read the text of
 * tokens that never reached the cache: after a failure, free the memory
 * rather than feed it more. */
lethe_status lethe_memory_append(lethe_memory *mem, const lethe_token *ids, int n, float *logits);
/* Caller spans: opens a span at position pos (< 0: the next position);
 * returns its id, or -1. */
int lethe_memory_span_open(lethe_memory *mem, const char *name, int pos);
/* Closes span id at position pos (exclusive; < 0: the next position). */
lethe_status lethe_memory_span_close(lethe_memory *mem, int id, int pos);
/* Prunes a span (open or closed) in the memory's mode; logits, when
 * non-NULL, receives the next-token logits afterwards. */
lethe_status lethe_memory_span_prune(lethe_memory *mem, int id, float *logits);
/* Spans recorded so far (every state), and one of them by index. */
int lethe_memory_n_spans(const lethe_memory *mem);
lethe_status lethe_memory_span_get(const lethe_memory *mem, int index, lethe_span_info *info);
/* The memory's live tokens in position order (from the position the
 * sequence had at lethe_memory_create): writes at most cap, returns the
 * count (-1 for bad arguments). */
int lethe_memory_tokens(const lethe_memory *mem, lethe_token *out, int cap);
/* Registers a tool (name NULL or "*": any name not registered otherwise). */
lethe_status lethe_memory_add_tool(lethe_memory *mem, const char *name, lethe_tool_fn fn, void *user);
/* A tool that runs a program (no shell): command split on spaces into argv,
 * the arguments' JSON on its stdin, the result read from its stdout, killed
 * after the memory's tool_timeout_ms, output cut at tool_output_max. */
lethe_status lethe_memory_add_exec_tool(lethe_memory *mem, const char *name, const char *command);
/* Fills st (zeroed first); LETHE_ERR_ARG for NULL. */
lethe_status lethe_memory_get_stats(const lethe_memory *mem, lethe_memory_stats *st);
/* The last error, "" when none; a constant message for NULL. */
const char *lethe_memory_error(const lethe_memory *mem);

#ifdef __cplusplus
}
#endif

#endif
