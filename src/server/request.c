/* Parsing and validating an OpenAI request body (chat or completion) into a
 * srv_request: every field the official SDKs send is accepted, the ones
 * lethe uses are checked for type and range, unknown ones are ignored.
 * Prompts are rendered (chat template) and tokenised here, on the HTTP
 * thread, so a bad or oversized request is answered at once. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "server/server.h"

#define MAX_STOPS 16
#define MAX_N 16
#define MAX_PROMPTS 16

typedef struct {
    int status;
    sbuf *body;
} perr;

static int fail(perr *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(perr *e, int status, const char *param, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_error_json(e->body, msg, status >= 500 ? "server_error" : "invalid_request_error", param, code);
    e->status = status;
    return status;
}

/* Optional number field in [lo, hi]; integral when integral. 0 if absent or
 * fine (out set), else the status. JSON null counts as absent. */
static int get_num(perr *e, const cJSON *o, const char *name, double lo, double hi, bool integral, double *out, bool *present) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (present) *present = false;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return fail(e, 400, name, NULL, "'%s' must be a number", name);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi)
        return fail(e, 400, name, NULL, "'%s' is %g; it must be in [%g, %g]", name, x, lo, hi);
    if (integral && x != floor(x)) return fail(e, 400, name, NULL, "'%s' must be an integer", name);
    *out = x;
    if (present) *present = true;
    return 0;
}

static int get_bool(perr *e, const cJSON *o, const char *name, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fail(e, 400, name, NULL, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "stop": a string or a list of strings. */
static int parse_stop(perr *e, const cJSON *root, srv_request *r) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!v || cJSON_IsNull(v)) return 0;
    const cJSON *items[MAX_STOPS];
    int n = 0;
    if (cJSON_IsString(v)) items[n++] = v;
    else if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it)) return fail(e, 400, "stop", NULL, "'stop' must be a string or a list of strings");
            if (n == MAX_STOPS) return fail(e, 400, "stop", NULL, "at most %d stop strings", MAX_STOPS);
            items[n++] = it;
        }
    } else
        return fail(e, 400, "stop", NULL, "'stop' must be a string or a list of strings");
    r->stops = calloc((size_t)n + 1, sizeof *r->stops);
    if (!r->stops) return fail(e, 500, NULL, NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!items[i]->valuestring[0]) return fail(e, 400, "stop", NULL, "stop strings must not be empty");
        if (!(r->stops[r->n_stops++] = dup_str(items[i]->valuestring))) return fail(e, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

/* Adds one more stop string (the chat template's end of turn). */
static int add_stop(perr *e, srv_request *r, const char *s) {
    char **v = realloc(r->stops, ((size_t)r->n_stops + 2) * sizeof *v);
    if (!v) return fail(e, 500, NULL, NULL, "out of memory");
    r->stops = v;
    if (!(v[r->n_stops] = dup_str(s))) return fail(e, 500, NULL, NULL, "out of memory");
    v[++r->n_stops] = NULL;
    return 0;
}

static int tokenize_into(perr *e, srv_server *s, srv_group *g, const char *text, size_t len, bool add_special,
                         bool parse_special) {
    int n = lethe_tokenize(s->model, text, len, NULL, 0, add_special, parse_special);
    if (n < 0) return fail(e, 400, "prompt", NULL, "the prompt cannot be tokenised");
    g->toks = malloc(((size_t)n + 1) * sizeof *g->toks);
    if (!g->toks) return fail(e, 500, NULL, NULL, "out of memory");
    lethe_tokenize(s->model, text, len, g->toks, n, add_special, parse_special);
    if (n == 0) {
        if (s->info.bos < 0) return fail(e, 400, "prompt", NULL, "empty prompt and the vocabulary has no BOS token");
        g->toks[n++] = s->info.bos;
    }
    g->n_toks = n;
    return 0;
}

/* "prompt": a string, a list of strings, a list of token ids or a list of
 * such lists. */
static int parse_prompt(perr *e, srv_server *s, const cJSON *root, srv_request *r) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return fail(e, 400, "prompt", NULL, "'prompt' is required");
    const cJSON *list[MAX_PROMPTS];
    int n = 0;
    if (cJSON_IsString(p)) list[n++] = p;
    else if (cJSON_IsArray(p)) {
        const cJSON *first = cJSON_GetArrayItem(p, 0);
        if (!first) return fail(e, 400, "prompt", NULL, "'prompt' must not be an empty list");
        if (cJSON_IsNumber(first)) list[n++] = p; /* one prompt of token ids */
        else {
            const cJSON *it;
            cJSON_ArrayForEach(it, p) {
                if (n == MAX_PROMPTS) return fail(e, 400, "prompt", NULL, "at most %d prompts per request", MAX_PROMPTS);
                if (!cJSON_IsString(it) && !cJSON_IsArray(it))
                    return fail(e, 400, "prompt", NULL, "'prompt' must be a string, a list of strings or token ids");
                list[n++] = it;
            }
        }
    } else
        return fail(e, 400, "prompt", NULL, "'prompt' must be a string, a list of strings or token ids");
    r->groups = calloc((size_t)n, sizeof *r->groups);
    if (!r->groups) return fail(e, 500, NULL, NULL, "out of memory");
    r->n_groups = n;
    for (int i = 0; i < n; i++) {
        srv_group *g = &r->groups[i];
        const cJSON *it = list[i];
        if (cJSON_IsString(it)) {
            int st = tokenize_into(e, s, g, it->valuestring, strlen(it->valuestring), true, false);
            if (st) return st;
            if (r->echo && !(g->text = dup_str(it->valuestring))) return fail(e, 500, NULL, NULL, "out of memory");
            continue;
        }
        int k = cJSON_GetArraySize(it);
        if (k <= 0) return fail(e, 400, "prompt", NULL, "a token-id prompt must not be empty");
        if (!(g->toks = malloc((size_t)k * sizeof *g->toks))) return fail(e, 500, NULL, NULL, "out of memory");
        const cJSON *t;
        cJSON_ArrayForEach(t, it) {
            if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
                t->valuedouble >= s->info.n_vocab)
                return fail(e, 400, "prompt", NULL, "token ids must be integers in [0, %d)", s->info.n_vocab);
            g->toks[g->n_toks++] = (lethe_token)t->valuedouble;
        }
    }
    return 0;
}

/* The text of a message's content: a string, a list of text parts, or null. */
static int content_text(perr *e, const cJSON *c, sbuf *out) {
    if (!c || cJSON_IsNull(c)) return 0;
    if (cJSON_IsString(c)) { sbuf_puts(out, c->valuestring); return 0; }
    if (!cJSON_IsArray(c)) return fail(e, 400, "messages", NULL, "message content must be a string or a list of parts");
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type)) return fail(e, 400, "messages", NULL, "a content part needs a 'type'");
        if (strcmp(type->valuestring, "text"))
            return fail(e, 400, "messages", NULL, "content parts of type '%s' are not supported (text only)", type->valuestring);
        if (!cJSON_IsString(text)) return fail(e, 400, "messages", NULL, "a text part needs a string 'text'");
        sbuf_puts(out, text->valuestring);
    }
    return 0;
}

/* An assistant message's tool_calls, written back as the <tool_call>
 * blocks the model produced them from. */
static int tool_calls_text(perr *e, const cJSON *calls, sbuf *out) {
    if (!calls || cJSON_IsNull(calls)) return 0;
    if (!cJSON_IsArray(calls)) return fail(e, 400, "messages", NULL, "'tool_calls' must be a list");
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(name)) return fail(e, 400, "messages", NULL, "a tool call needs function.name");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name->valuestring);
        cJSON *a = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
        if (a) cJSON_AddItemToObject(o, "arguments", a);
        else if (cJSON_IsString(args)) cJSON_AddStringToObject(o, "arguments", args->valuestring);
        else cJSON_AddItemToObject(o, "arguments", cJSON_CreateObject());
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!txt) return fail(e, 500, NULL, NULL, "out of memory");
        if (out->n) sbuf_puts(out, "\n");
        sbuf_printf(out, "<tool_call>\n%s\n</tool_call>", txt);
        free(txt);
    }
    return 0;
}

/* The request's tools, described to the model the way Hermes / Qwen 2.5
 * templates do, as system text. Returns 0 with *out empty when none. */
static int tools_text(perr *e, const cJSON *root, srv_request *r, sbuf *out) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (!tools || cJSON_IsNull(tools)) return 0;
    if (!cJSON_IsArray(tools)) return fail(e, 400, "tools", NULL, "'tools' must be a list");
    if (cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")) return 0;
    sbuf_puts(out, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
                   "function signatures within <tools></tools> XML tags:\n<tools>");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t) || !cJSON_IsObject(fn) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name")))
            return fail(e, 400, "tools", NULL, "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
        char *txt = cJSON_PrintUnformatted(t);
        if (!txt) return fail(e, 500, NULL, NULL, "out of memory");
        sbuf_printf(out, "\n%s", txt);
        free(txt);
    }
    sbuf_puts(out, "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                   "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                   "<args-json-object>}\n</tool_call>");
    r->client_tools = true;
    return 0;
}

static int parse_messages(perr *e, srv_server *s, const cJSON *root, srv_request *r) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(msgs)) return fail(e, 400, "messages", NULL, "'messages' must be a list of messages");
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) return fail(e, 400, "messages", NULL, "'messages' must not be empty");
    lethe_chat_message *cm = calloc((size_t)n + 1, sizeof *cm);
    sbuf *texts = calloc((size_t)n + 1, sizeof *texts);
    sbuf tools = {0};
    int st = 0, i = 0;
    if (!cm || !texts) { st = fail(e, 500, NULL, NULL, "out of memory"); goto out; }
    if ((st = tools_text(e, root, r, &tools))) goto out;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) { st = fail(e, 400, "messages", NULL, "message %d needs a string 'role'", i); goto out; }
        const char *ro = role->valuestring;
        if (strcmp(ro, "system") && strcmp(ro, "developer") && strcmp(ro, "user") && strcmp(ro, "assistant") && strcmp(ro, "tool")) {
            st = fail(e, 400, "messages", NULL, "message %d has role '%s' (system, developer, user, assistant or tool)", i, ro);
            goto out;
        }
        int k = i + 1; /* slot 0: a system message for the tools, when needed */
        if ((st = content_text(e, cJSON_GetObjectItemCaseSensitive(m, "content"), &texts[k]))) goto out;
        if (!strcmp(ro, "assistant") && (st = tool_calls_text(e, cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), &texts[k]))) goto out;
        if (texts[k].oom) { st = fail(e, 500, NULL, NULL, "out of memory"); goto out; }
        cm[k].role = ro;
        cm[k].content = texts[k].v ? texts[k].v : "";
        i++;
    }
    const lethe_chat_message *list = cm + 1;
    int nm = n;
    if (tools.n) {
        /* the tools go into the system message (a first one is made when there is none) */
        if (!strcmp(cm[1].role, "system") || !strcmp(cm[1].role, "developer")) {
            sbuf_puts(&texts[1], "\n\n");
            sbuf_put(&texts[1], tools.v, tools.n);
            cm[1].content = texts[1].v;
        } else {
            cm[0] = (lethe_chat_message){"system", tools.v};
            list = cm;
            nm = n + 1;
        }
        if (texts[1].oom || tools.oom) { st = fail(e, 500, NULL, NULL, "out of memory"); goto out; }
    }
    char err[256] = "";
    int len = lethe_chat_apply(s->model, s->opt.chat_template, list, nm, true, NULL, 0, err, sizeof err);
    if (len < 0) { st = fail(e, 400, "messages", NULL, "%s", err); goto out; }
    char *text = malloc((size_t)len + 1);
    if (!text) { st = fail(e, 500, NULL, NULL, "out of memory"); goto out; }
    lethe_chat_apply(s->model, s->opt.chat_template, list, nm, true, text, len + 1, err, sizeof err);
    r->groups = calloc(1, sizeof *r->groups);
    if (!r->groups) { free(text); st = fail(e, 500, NULL, NULL, "out of memory"); goto out; }
    r->n_groups = 1;
    /* the rendered text has no BOS: the vocabulary's is added where it asks for one */
    st = tokenize_into(e, s, &r->groups[0], text, (size_t)len, true, true);
    free(text);
out:
    for (int k = 0; texts && k <= n; k++) sbuf_free(&texts[k]);
    sbuf_free(&tools);
    free(texts);
    free(cm);
    return st;
}

/* The "lethe" extension object: the KV policy and budget of this request. */
static int parse_extension(perr *e, const cJSON *root, srv_request *r) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "lethe");
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsObject(x)) return fail(e, 400, "lethe", NULL, "'lethe' must be an object");
    lethe_kv_policy_params *kv = &r->seq_params.kv;
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(x, "kv_policy");
    if (pol && !cJSON_IsNull(pol)) {
        if (!cJSON_IsString(pol) || !lethe_kv_policy_summary(pol->valuestring))
            return fail(e, 400, "lethe.kv_policy", NULL, "unknown KV policy (see GET /v1/models: lethe.kv_policies)");
        snprintf(r->policy_name, sizeof r->policy_name, "%s", pol->valuestring);
    }
    double v;
    bool has;
    int st;
    if ((st = get_num(e, x, "kv_budget", 1, 1 << 24, true, &v, &has))) return st;
    if (has) kv->budget = (int)v;
    if ((st = get_num(e, x, "kv_sink", 0, 1 << 24, true, &v, &has))) return st;
    if (has) kv->sink = (int)v;
    if ((st = get_num(e, x, "kv_window", 0, 1 << 24, true, &v, &has))) return st;
    if (has) kv->window = (int)v;
    if ((st = get_num(e, x, "kv_hot_fraction", 0, 1, false, &v, &has))) return st;
    if (has) kv->hot_fraction = (float)v;
    if ((st = get_bool(e, x, "kv_reindex", &kv->reindex))) return st;
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(x, "memory");
    if (mem && !cJSON_IsNull(mem)) {
        if (!cJSON_IsString(mem) || strlen(mem->valuestring) >= sizeof r->memory)
            return fail(e, 400, "lethe.memory", NULL, "'memory' must be rule names: tim, think, tool (comma-separated) or \"\"");
        snprintf(r->memory, sizeof r->memory, "%s", mem->valuestring);
    }
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(x, "prune_mode");
    if (pm && !cJSON_IsNull(pm)) {
        if (cJSON_IsString(pm) && !strcmp(pm->valuestring, "shift")) r->mem_params.mode = LETHE_PRUNE_SHIFT;
        else if (cJSON_IsString(pm) && !strcmp(pm->valuestring, "reencode")) r->mem_params.mode = LETHE_PRUNE_REENCODE;
        else return fail(e, 400, "lethe.prune_mode", NULL, "'prune_mode' must be \"shift\" or \"reencode\"");
    }
    if ((st = get_num(e, x, "prune_buffer", 0, 1 << 20, true, &v, &has))) return st;
    if (has) r->mem_params.prune_buffer = (int)v;
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(x, "force_text");
    if (ft && !cJSON_IsNull(ft)) {
        if (!cJSON_IsString(ft)) return fail(e, 400, "lethe.force_text", NULL, "'force_text' must be a string");
        r->force_text = dup_str(ft->valuestring);
        if (!r->force_text) return fail(e, 500, NULL, NULL, "out of memory");
    }
    if ((st = get_bool(e, x, "prefix_cache", &r->use_prefix_cache))) return st;
    if ((st = get_bool(e, x, "ignore_eos", &r->ignore_eos))) return st;
    return 0;
}

static void make_id(char *out, size_t cap, const char *prefix) {
    static unsigned long long counter;
    unsigned long long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long x = (unsigned long long)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ c * 0xbf58476d1ce4e5b9ull;
    snprintf(out, cap, "%s-%016llx%04llx", prefix, x, c & 0xffff);
}

int srv_parse_request(srv_server *s, enum srv_kind kind, const char *body, size_t len, srv_request *r, sbuf *err_body) {
    perr e = {0, err_body};
    cJSON *root = NULL;
    int st = 0;
    r->kind = kind;
    r->n = 1;
    r->sp = lethe_sampler_default_params();
    r->seq_params = lethe_seq_default_params();
    r->seq_params.kv = s->opt.kv;
    snprintf(r->policy_name, sizeof r->policy_name, "%s", s->opt.kv.name ? s->opt.kv.name : "full");
    r->use_prefix_cache = s->opt.prefix_cache;
    snprintf(r->memory, sizeof r->memory, "%s", s->opt.memory ? s->opt.memory : "");
    r->mem_params = lethe_memory_default_params();
    r->mem_params.mode = s->opt.prune_mode;
    r->mem_params.prune_buffer = s->opt.prune_buffer;
    r->model_id = s->model_id;
    r->created = (long long)time(NULL);
    make_id(r->id, sizeof r->id, kind == SRV_CHAT ? "chatcmpl" : "cmpl");

    if (!srv_utf8_valid(body, len)) { st = fail(&e, 400, NULL, "invalid_utf8", "the request body is not valid UTF-8"); goto out; }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) { st = fail(&e, 400, NULL, "invalid_json", "the request body is not valid JSON (near byte %zu)", end ? (size_t)(end - body) : 0); goto out; }
    if (!cJSON_IsObject(root)) { st = fail(&e, 400, NULL, "invalid_json", "the request body must be a JSON object"); goto out; }

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) { st = fail(&e, 400, "model", NULL, "'model' must be a string"); goto out; }
        if (strcmp(model->valuestring, s->model_id)) {
            st = fail(&e, 404, "model", "model_not_found", "the model '%s' does not exist (this server has '%s')", model->valuestring, s->model_id);
            goto out;
        }
    }
    double v;
    bool has;
    if ((st = get_bool(&e, root, "stream", &r->stream))) goto out;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) { st = fail(&e, 400, "stream_options", NULL, "'stream_options' must be an object"); goto out; }
        if ((st = get_bool(&e, so, "include_usage", &r->include_usage))) goto out;
    }
    if ((st = get_num(&e, root, "n", 1, MAX_N, true, &v, &has))) goto out;
    if (has) r->n = (int)v;
    if ((st = get_num(&e, root, "temperature", 0, 2, false, &v, &has))) goto out;
    if (has) r->sp.temperature = (float)v;
    if ((st = get_num(&e, root, "top_p", 0, 1, false, &v, &has))) goto out;
    if (has) r->sp.top_p = (float)v;
    if ((st = get_num(&e, root, "min_p", 0, 1, false, &v, &has))) goto out;
    if (has) r->sp.min_p = (float)v;
    if ((st = get_num(&e, root, "top_k", 0, 1 << 24, true, &v, &has))) goto out;
    if (has) r->sp.top_k = (int)v;
    if ((st = get_num(&e, root, "repeat_penalty", 0.01, 100, false, &v, &has))) goto out;
    if (has) r->sp.repeat_penalty = (float)v;
    if ((st = get_num(&e, root, "seed", -9.2e18, 1.8e19, true, &v, &has))) goto out;
    if (has) r->sp.seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
    if ((st = get_num(&e, root, "presence_penalty", -2, 2, false, &v, &has))) goto out;
    if (has) r->presence_penalty = (float)v;
    if ((st = get_num(&e, root, "frequency_penalty", -2, 2, false, &v, &has))) goto out;
    if (has) r->frequency_penalty = (float)v;
    if (kind == SRV_CHAT) {
        if ((st = get_bool(&e, root, "logprobs", &r->logprobs))) goto out;
        if ((st = get_num(&e, root, "top_logprobs", 0, 20, true, &v, &has))) goto out;
        if (has) r->top_logprobs = (int)v;
        if (has && !r->logprobs) { st = fail(&e, 400, "top_logprobs", NULL, "'top_logprobs' needs 'logprobs': true"); goto out; }
    } else {
        const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
        if (cJSON_IsBool(lp)) r->logprobs = cJSON_IsTrue(lp);
        else if ((st = get_num(&e, root, "logprobs", 0, 5, true, &v, &has))) goto out;
        else if (has) { r->logprobs = true; r->top_logprobs = (int)v; }
        if ((st = get_bool(&e, root, "echo", &r->echo))) goto out;
        if (r->echo && r->stream) { st = fail(&e, 400, "echo", NULL, "'echo' is not supported with 'stream'"); goto out; }
    }
    if ((st = parse_stop(&e, root, r))) goto out;
    if ((st = parse_extension(&e, root, r))) goto out;
    r->seq_params.kv.name = r->policy_name;

    int max_tokens = -1;
    if ((st = get_num(&e, root, "max_tokens", 1, 1e12, true, &v, &has))) goto out;
    if (has) max_tokens = v > 1 << 30 ? 1 << 30 : (int)v;
    if ((st = get_num(&e, root, "max_completion_tokens", 1, 1e12, true, &v, &has))) goto out;
    if (has) max_tokens = v > 1 << 30 ? 1 << 30 : (int)v;

    if (kind == SRV_CHAT) st = parse_messages(&e, s, root, r);
    else st = parse_prompt(&e, s, root, r);
    if (st) goto out;
    if (kind == SRV_CHAT && s->eot_text && s->eot_text[0] && (st = add_stop(&e, r, s->eot_text))) goto out;
    if (r->force_text) {
        /* the reply is teacher-forced: these tokens replace the sampled ones (tests, replaying traces) */
        size_t fl = strlen(r->force_text);
        int nf = lethe_tokenize(s->model, r->force_text, fl, NULL, 0, false, true);
        if (nf < 0 || !(r->forced = malloc(((size_t)nf + 1) * sizeof *r->forced))) { st = fail(&e, 400, "lethe.force_text", NULL, "cannot tokenise force_text"); goto out; }
        r->n_forced = lethe_tokenize(s->model, r->force_text, fl, r->forced, nf, false, true);
    }
    if (r->memory[0]) {
        if (r->seq_params.kv.reindex) {
            st = fail(&e, 400, "lethe.memory", NULL,
                      "structured memory tracks spans by position: it cannot run with re-indexed positions (kv_reindex)");
            goto out;
        }
        r->use_prefix_cache = false; /* pruned positions: not what a fresh prefill gives */
    }

    /* positions: without re-indexing a sequence cannot pass the context */
    int n_ctx = lethe_ctx_n_ctx(s->ctx), longest = 0;
    for (int i = 0; i < r->n_groups; i++)
        if (r->groups[i].n_toks > longest) longest = r->groups[i].n_toks;
    bool reindex = r->seq_params.kv.reindex;
    if (!reindex && longest >= n_ctx) {
        st = fail(&e, 400, "messages", "context_length_exceeded", "the prompt has %d tokens; this server's context is %d", longest, n_ctx);
        goto out;
    }
    /* structured memory reuses positions: a reply may run past the context */
    int room = reindex || r->memory[0] ? 1 << 30 : n_ctx - longest;
    if (max_tokens < 0) {
        /* no max_tokens: up to the context, but no more than the pool can
         * ever hold for this prompt (so the request is admissible) */
        max_tokens = room;
        size_t pool_slots = s->pages_total / s->streams * (size_t)s->page_slots;
        size_t need = (size_t)longest + 2 * (size_t)s->page_slots;
        bool evicting = strcmp(r->policy_name, "full") != 0;
        if (!evicting && pool_slots / (size_t)r->n_groups / (size_t)r->n > need) {
            size_t fit = pool_slots / (size_t)r->n_groups / (size_t)r->n - need;
            if ((size_t)max_tokens > fit) max_tokens = (int)fit;
        }
        if (max_tokens < 1) max_tokens = 1;
    } else if (max_tokens > room) {
        st = fail(&e, 400, "max_tokens", "context_length_exceeded",
                  "max_tokens is %d but the prompt (%d tokens) leaves room for %d in this server's context of %d", max_tokens,
                  longest, room, n_ctx);
        goto out;
    }
    r->max_tokens = max_tokens;
    r->n_choices = r->n_groups * r->n;
    char why[256];
    if (!(r->reserve_pages = srv_request_pages(s, r, why, sizeof why))) {
        st = fail(&e, 400, NULL, "context_length_exceeded", "%s", why);
        goto out;
    }
out:
    cJSON_Delete(root);
    return st;
}

/* Pages one sequence of `slots` cache slots may hold, plus a page per
 * stream for copy on write of a shared last page. */
static size_t seq_pages(const srv_server *s, size_t slots) {
    size_t P = (size_t)s->page_slots;
    return s->streams * ((slots + P - 1) / P + 1);
}

size_t srv_request_pages(const srv_server *s, const srv_request *r, char *why, size_t why_size) {
    const lethe_kv_policy_params *kv = &r->seq_params.kv;
    bool evicting = strcmp(r->policy_name, "full") != 0;
    size_t total = 0;
    for (int i = 0; i < r->n_groups; i++) {
        size_t slots = (size_t)r->groups[i].n_toks + (size_t)r->max_tokens;
        size_t n_ctx = (size_t)lethe_ctx_n_ctx(s->ctx);
        if (slots > n_ctx) slots = n_ctx; /* no sequence holds more (memory reuses positions) */
        if (evicting) {
            /* an evicting policy holds at most its budget (the pool's when 0) */
            size_t cap = kv->budget > 0 ? (size_t)kv->budget : s->pages_total / s->streams * (size_t)s->page_slots;
            if (slots > cap) slots = cap;
        }
        /* the prompt's pages are shared by the choices; each grows its own */
        size_t pages = seq_pages(s, slots) + (size_t)(r->n - 1) * seq_pages(s, evicting ? slots : (size_t)r->max_tokens);
        total += pages;
    }
    if (total > s->pages_total) {
        snprintf(why, why_size,
                 "this request may hold %zu KV pages (%.1f MiB) but the server's pool has %zu (%.1f MiB): shorten the prompt, "
                 "lower max_tokens or n, or choose an evicting KV policy",
                 total, total * (double)s->page_bytes / 1048576.0, s->pages_total, s->pages_total * (double)s->page_bytes / 1048576.0);
        return 0;
    }
    return total;
}

void srv_request_free(srv_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n_groups; i++) {
        free(r->groups[i].toks);
        free(r->groups[i].text);
        lethe_seq_free(r->groups[i].seq);
    }
    free(r->groups);
    for (int i = 0; i < r->n_choices && r->choices; i++) {
        srv_choice *c = &r->choices[i];
        lethe_memory_free(c->mem); /* before its sequence */
        lethe_seq_free(c->seq);
        lethe_sampler_free(c->smp);
        lethe_detok_free(c->dt);
        srv_stop_free(&c->stop);
        sbuf_free(&c->text);
        cJSON_Delete(c->lp);
        free(c->counts);
        free(c->ran);
        srv_tools_free(&c->calls);
    }
    free(r->choices);
    free(r->force_text);
    free(r->forced);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->stops);
    sbuf_free(&r->out);
    free(r);
}
