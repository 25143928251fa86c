/* Responses in OpenAI's shapes: error objects, chat.completion /
 * text_completion bodies, their streamed chunks (server-sent events) and
 * log-probabilities. The engine thread calls the srv_emit_* functions; the
 * bytes go to the request's output under the server lock. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/server.h"

void srv_error_json(sbuf *b, const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *txt = cJSON_PrintUnformatted(root);
    b->n = 0;
    if (txt) sbuf_puts(b, txt);
    else sbuf_puts(b, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    free(txt);
    cJSON_Delete(root);
}

/* Hands bytes to the client's side. */
static void push_out(srv_server *s, srv_request *r, const char *p, size_t n, bool done, int status) {
    pthread_mutex_lock(&s->lock);
    sbuf_put(&r->out, p, n);
    if (done) {
        r->done = true;
        r->http_status = status;
    }
    pthread_cond_broadcast(&s->wake_http);
    pthread_mutex_unlock(&s->lock);
}

static void push_event(srv_server *s, srv_request *r, cJSON *obj) {
    char *txt = cJSON_PrintUnformatted(obj);
    sbuf ev = {0};
    sbuf_puts(&ev, "data: ");
    if (txt) sbuf_puts(&ev, txt);
    sbuf_puts(&ev, "\n\n");
    if (!ev.oom && txt) push_out(s, r, ev.v, ev.n, false, 0);
    free(txt);
    sbuf_free(&ev);
}

static cJSON *add_text(cJSON *o, const char *name, const char *s, size_t n) {
    sbuf t = {0};
    srv_utf8_sanitize(&t, s, n);
    cJSON *item = cJSON_AddStringToObject(o, name, t.v ? t.v : "");
    sbuf_free(&t);
    return item;
}

/* The envelope shared by bodies and chunks. */
static cJSON *envelope(const srv_request *r, bool chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object",
                            r->kind == SRV_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "lethe-" LETHE_VERSION_STRING);
    return o;
}

static const char *finish_name(enum srv_finish f) {
    return f == SRV_LENGTH ? "length" : f == SRV_TOOL_CALLS ? "tool_calls" : "stop";
}

static cJSON *usage_json(const srv_request *r) {
    int prompt = 0, cached = 0, gen = 0;
    for (int i = 0; i < r->n_groups; i++) {
        prompt += r->groups[i].n_toks;
        cached += r->groups[i].n_cached;
    }
    for (int i = 0; i < r->n_choices; i++) gen += r->choices[i].n_gen;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + gen);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", cached);
    return u;
}

/* ---- log-probabilities ---- */

static void piece_of(srv_server *s, lethe_token t, char *buf, int cap, int *n) {
    int k = lethe_token_piece(s->model, t, buf, cap, false);
    *n = k < 0 ? 0 : k > cap ? cap : k;
}

static cJSON *bytes_json(const char *p, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)p[i]));
    return a;
}

/* log-softmax normaliser of the raw logits */
static double log_norm(const float *l, int n) {
    float mx = l[0];
    for (int i = 1; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)l[i] - mx);
    return mx + log(sum);
}

/* The k most likely ids, best first (k <= 20: a short insertion list). */
static int top_ids(const float *l, int n, int k, int *ids) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && l[i] <= l[ids[m - 1]]) continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && l[ids[j - 1]] < l[i]) { ids[j] = ids[j - 1]; j--; }
        ids[j] = i;
    }
    return m;
}

/* Chat: {"token","logprob","bytes","top_logprobs":[...]} for one token. */
static cJSON *chat_logprob(srv_server *s, const srv_request *r, const float *l, lethe_token tok) {
    int V = s->info.n_vocab, ids[20], n;
    char buf[512];
    double z = log_norm(l, V);
    cJSON *o = cJSON_CreateObject();
    piece_of(s, tok, buf, sizeof buf, &n);
    add_text(o, "token", buf, (size_t)n);
    cJSON_AddNumberToObject(o, "logprob", l[tok] - z);
    cJSON_AddItemToObject(o, "bytes", bytes_json(buf, n));
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
    int k = top_ids(l, V, r->top_logprobs, ids);
    for (int i = 0; i < k; i++) {
        cJSON *t = cJSON_CreateObject();
        piece_of(s, ids[i], buf, sizeof buf, &n);
        add_text(t, "token", buf, (size_t)n);
        cJSON_AddNumberToObject(t, "logprob", l[ids[i]] - z);
        cJSON_AddItemToObject(t, "bytes", bytes_json(buf, n));
        cJSON_AddItemToArray(top, t);
    }
    return o;
}

/* Completions: appends one token to the parallel lists of lp. */
static void completion_logprob(srv_server *s, const srv_request *r, cJSON *lp, const float *l, lethe_token tok, size_t offset) {
    int V = s->info.n_vocab, ids[20], n;
    char buf[512];
    double z = log_norm(l, V);
    piece_of(s, tok, buf, sizeof buf, &n);
    sbuf t = {0};
    srv_utf8_sanitize(&t, buf, (size_t)n);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "tokens"), cJSON_CreateString(t.v ? t.v : ""));
    sbuf_free(&t);
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "token_logprobs"), cJSON_CreateNumber(l[tok] - z));
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "text_offset"), cJSON_CreateNumber((double)offset));
    cJSON *top = cJSON_CreateObject();
    int k = top_ids(l, V, r->top_logprobs, ids);
    for (int i = 0; i < k; i++) {
        piece_of(s, ids[i], buf, sizeof buf, &n);
        sbuf p = {0};
        srv_utf8_sanitize(&p, buf, (size_t)n);
        if (!cJSON_GetObjectItemCaseSensitive(top, p.v ? p.v : "")) cJSON_AddNumberToObject(top, p.v ? p.v : "", l[ids[i]] - z);
        sbuf_free(&p);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(lp, "top_logprobs"), top);
}

static cJSON *new_completion_lp(void) {
    cJSON *lp = cJSON_CreateObject();
    cJSON_AddArrayToObject(lp, "tokens");
    cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON_AddArrayToObject(lp, "text_offset");
    return lp;
}

/* ---- streamed chunks ---- */

static cJSON *chunk_choice(srv_request *r, cJSON *env, int ci) {
    cJSON *choices = cJSON_AddArrayToObject(env, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", ci);
    cJSON_AddItemToArray(choices, c);
    return c;
}

void srv_emit_start(srv_server *s, srv_request *r) {
    if (r->stream && r->kind == SRV_CHAT)
        for (int i = 0; i < r->n_choices; i++) {
            cJSON *env = envelope(r, true), *c = chunk_choice(r, env, i), *d = cJSON_AddObjectToObject(c, "delta");
            cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddStringToObject(d, "content", "");
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddNullToObject(c, "finish_reason");
            push_event(s, r, env);
            cJSON_Delete(env);
        }
    if (!r->stream && r->echo)
        for (int i = 0; i < r->n_choices; i++) {
            const char *t = r->groups[r->choices[i].group].text;
            if (t) sbuf_puts(&r->choices[i].text, t);
            r->choices[i].text_offset = r->choices[i].text.n;
        }
}

void srv_emit_token(srv_server *s, srv_request *r, int ci, const char *text, size_t n, const float *raw_logits, lethe_token tok) {
    srv_choice *ch = &r->choices[ci];
    if (!r->stream) {
        if (r->logprobs && raw_logits) {
            if (!ch->lp) ch->lp = r->kind == SRV_CHAT ? cJSON_CreateArray() : new_completion_lp();
            if (r->kind == SRV_CHAT) cJSON_AddItemToArray(ch->lp, chat_logprob(s, r, raw_logits, tok));
            else completion_logprob(s, r, ch->lp, raw_logits, tok, ch->text_offset);
        }
        sbuf_put(&ch->text, text, n);
        ch->text_offset = ch->text.n;
        return;
    }
    if (n == 0 && !(r->logprobs && raw_logits)) return;
    cJSON *env = envelope(r, true), *c = chunk_choice(r, env, ci);
    if (r->kind == SRV_CHAT) {
        add_text(cJSON_AddObjectToObject(c, "delta"), "content", text, n);
        if (r->logprobs && raw_logits) {
            cJSON *lp = cJSON_AddObjectToObject(c, "logprobs"), *list = cJSON_AddArrayToObject(lp, "content");
            cJSON_AddItemToArray(list, chat_logprob(s, r, raw_logits, tok));
        } else
            cJSON_AddNullToObject(c, "logprobs");
    } else {
        add_text(c, "text", text, n);
        if (r->logprobs && raw_logits) {
            cJSON *lp = new_completion_lp();
            completion_logprob(s, r, lp, raw_logits, tok, ch->text_offset);
            cJSON_AddItemToObject(c, "logprobs", lp);
        } else
            cJSON_AddNullToObject(c, "logprobs");
    }
    ch->text_offset += n;
    cJSON_AddNullToObject(c, "finish_reason");
    push_event(s, r, env);
    cJSON_Delete(env);
}

void srv_emit_tool_call(srv_server *s, srv_request *r, int ci, int k) {
    if (!r->stream || r->kind != SRV_CHAT) return; /* the body carries them at the end */
    const cJSON *call = cJSON_GetArrayItem(r->choices[ci].calls.list, k);
    if (!call) return;
    cJSON *env = envelope(r, true), *c = chunk_choice(r, env, ci), *d = cJSON_AddObjectToObject(c, "delta");
    cJSON *list = cJSON_AddArrayToObject(d, "tool_calls"), *item = cJSON_Duplicate(call, true);
    cJSON_AddNumberToObject(item, "index", k);
    cJSON_AddItemToArray(list, item);
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddNullToObject(c, "finish_reason");
    push_event(s, r, env);
    cJSON_Delete(env);
}

void srv_emit_choice_end(srv_server *s, srv_request *r, int ci, const char *text, size_t n) {
    srv_choice *ch = &r->choices[ci];
    if (!r->stream) {
        sbuf_put(&ch->text, text, n);
        return;
    }
    if (n) srv_emit_token(s, r, ci, text, n, NULL, 0);
    cJSON *env = envelope(r, true), *c = chunk_choice(r, env, ci);
    if (r->kind == SRV_CHAT) cJSON_AddObjectToObject(c, "delta");
    else cJSON_AddStringToObject(c, "text", "");
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_name(ch->finish));
    push_event(s, r, env);
    cJSON_Delete(env);
}

void srv_emit_done(srv_server *s, srv_request *r) {
    if (r->stream) {
        if (r->include_usage) {
            cJSON *env = envelope(r, true);
            cJSON_AddArrayToObject(env, "choices");
            cJSON_AddItemToObject(env, "usage", usage_json(r));
            push_event(s, r, env);
            cJSON_Delete(env);
        }
        static const char end[] = "data: [DONE]\n\n";
        push_out(s, r, end, sizeof end - 1, true, 200);
        return;
    }
    cJSON *env = envelope(r, false), *choices = cJSON_AddArrayToObject(env, "choices");
    for (int i = 0; i < r->n_choices; i++) {
        srv_choice *ch = &r->choices[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (r->kind == SRV_CHAT) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (ch->calls.n && ch->text.n == 0) cJSON_AddNullToObject(m, "content");
            else add_text(m, "content", ch->text.v ? ch->text.v : "", ch->text.n);
            if (ch->calls.n) {
                cJSON_AddItemToObject(m, "tool_calls", ch->calls.list);
                ch->calls.list = NULL;
            }
            if (ch->lp) {
                cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
                cJSON_AddItemToObject(lp, "content", ch->lp);
                ch->lp = NULL;
            } else if (r->logprobs) {
                cJSON_AddArrayToObject(cJSON_AddObjectToObject(c, "logprobs"), "content");
            } else
                cJSON_AddNullToObject(c, "logprobs");
        } else {
            add_text(c, "text", ch->text.v ? ch->text.v : "", ch->text.n);
            if (ch->lp) {
                cJSON_AddItemToObject(c, "logprobs", ch->lp);
                ch->lp = NULL;
            } else if (r->logprobs)
                cJSON_AddItemToObject(c, "logprobs", new_completion_lp());
            else
                cJSON_AddNullToObject(c, "logprobs");
        }
        cJSON_AddStringToObject(c, "finish_reason", finish_name(ch->finish));
        cJSON_AddItemToArray(choices, c);
    }
    cJSON_AddItemToObject(env, "usage", usage_json(r));
    char *txt = cJSON_PrintUnformatted(env);
    cJSON_Delete(env);
    if (txt) push_out(s, r, txt, strlen(txt), true, 200);
    else srv_emit_failure(s, r, "out of memory");
    free(txt);
}

void srv_emit_failure(srv_server *s, srv_request *r, const char *message) {
    sbuf b = {0};
    srv_error_json(&b, message, "server_error", NULL, NULL);
    if (r->stream) {
        sbuf ev = {0};
        sbuf_puts(&ev, "data: ");
        sbuf_put(&ev, b.v, b.n);
        sbuf_puts(&ev, "\n\ndata: [DONE]\n\n");
        push_out(s, r, ev.v ? ev.v : "", ev.n, true, 500);
        sbuf_free(&ev);
    } else {
        pthread_mutex_lock(&s->lock);
        r->out.n = 0;
        pthread_mutex_unlock(&s->lock);
        push_out(s, r, b.v ? b.v : "", b.n, true, 500);
    }
    sbuf_free(&b);
}
