/* HTTP with libmicrohttpd: routing, the API key, body limits, and the
 * waits of the connection threads (one per connection) for what the engine
 * writes. A client that goes away is noticed by polling its socket while
 * waiting; its request is then cancelled and its sequences freed. */
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "server/server.h"

typedef struct {
    sbuf body;
    bool too_big;
} conn_state;

static void count_status(srv_server *s, int status) {
    pthread_mutex_lock(&s->lock);
    if (status >= 0 && status < 600) s->met.by_status[status]++;
    pthread_mutex_unlock(&s->lock);
}

static enum MHD_Result send_bytes(srv_server *s, struct MHD_Connection *c, int status, const char *type, const char *p, size_t n,
                                  const char *extra_name, const char *extra_value) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)p, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (extra_name) MHD_add_response_header(resp, extra_name, extra_value);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    count_status(s, status);
    return ok;
}

static enum MHD_Result send_json(srv_server *s, struct MHD_Connection *c, int status, const sbuf *b) {
    return send_bytes(s, c, status, "application/json", b->v ? b->v : "{}", b->n, NULL, NULL);
}

static enum MHD_Result send_error(srv_server *s, struct MHD_Connection *c, int status, const char *msg, const char *type,
                                  const char *code, const char *extra_name, const char *extra_value) {
    sbuf b = {0};
    srv_error_json(&b, msg, type, NULL, code);
    enum MHD_Result ok = send_bytes(s, c, status, "application/json", b.v ? b.v : "{}", b.n, extra_name, extra_value);
    sbuf_free(&b);
    return ok;
}

static enum MHD_Result send_cjson(srv_server *s, struct MHD_Connection *c, int status, cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt) return send_error(s, c, 500, "out of memory", "server_error", NULL, NULL, NULL);
    enum MHD_Result ok = send_bytes(s, c, status, "application/json", txt, strlen(txt), NULL, NULL);
    free(txt);
    return ok;
}

/* The peer closed its end (or the socket failed). */
static bool peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) < 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* Marks r cancelled and lets go of the HTTP side's reference. Lock held. */
static void cancel_locked(srv_server *s, srv_request *r) {
    if (!r->done) r->cancelled = true;
    pthread_cond_signal(&s->wake_engine);
    srv_request_unref_locked(r);
}

/* ---- streamed responses ---- */

typedef struct {
    srv_server *s;
    srv_request *r;
    struct MHD_Connection *conn;
    double last_data;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_state *st = cls;
    srv_server *s = st->s;
    srv_request *r = st->r;
    pthread_mutex_lock(&s->lock);
    long wait_ms = s->opt.keepalive_ms < 100 ? s->opt.keepalive_ms : 100;
    while (r->out.n == 0 && !r->done) {
        struct timespec ts;
        deadline_in(&ts, wait_ms);
        pthread_cond_timedwait(&s->wake_http, &s->lock, &ts);
        if (r->out.n || r->done) break;
        pthread_mutex_unlock(&s->lock);
        bool gone = peer_gone(st->conn) || s->stopping;
        pthread_mutex_lock(&s->lock);
        if (gone) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the free callback cancels */
        }
        if (srv_now() - st->last_data > s->opt.keepalive_ms / 1000.0) {
            /* a comment line keeps proxies and clients from timing out on a long prefill */
            static const char ka[] = ": keep-alive\n\n";
            st->last_data = srv_now();
            pthread_mutex_unlock(&s->lock);
            size_t n = sizeof ka - 1 < max ? sizeof ka - 1 : max;
            memcpy(buf, ka, n);
            return (ssize_t)n;
        }
    }
    size_t n = r->out.n < max ? r->out.n : max;
    if (n == 0 && r->done) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    memcpy(buf, r->out.v, n);
    memmove(r->out.v, r->out.v + n, r->out.n - n);
    r->out.n -= n;
    st->last_data = srv_now();
    pthread_mutex_unlock(&s->lock);
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    pthread_mutex_lock(&st->s->lock);
    cancel_locked(st->s, st->r);
    pthread_mutex_unlock(&st->s->lock);
    free(st);
}

/* ---- generation ---- */

static enum MHD_Result handle_generate(srv_server *s, struct MHD_Connection *c, enum srv_kind kind, const conn_state *cs) {
    srv_request *r = calloc(1, sizeof *r);
    if (!r) return send_error(s, c, 500, "out of memory", "server_error", NULL, NULL, NULL);
    sbuf err = {0};
    int st = srv_parse_request(s, kind, cs->body.v ? cs->body.v : "", cs->body.n, r, &err);
    if (st) {
        srv_request_free(r);
        enum MHD_Result ok = send_json(s, c, st, &err);
        sbuf_free(&err);
        return ok;
    }
    sbuf_free(&err);
    if (srv_enqueue(s, r)) {
        srv_request_free(r);
        pthread_mutex_lock(&s->lock);
        s->met.requests_429++;
        pthread_mutex_unlock(&s->lock);
        return send_error(s, c, 429, "the server's queue is full; retry later", "rate_limit_exceeded", "rate_limit_exceeded",
                          "Retry-After", "1");
    }
    if (r->stream) {
        stream_state *ss = malloc(sizeof *ss);
        struct MHD_Response *resp = ss ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, ss, stream_free) : NULL;
        if (!resp) {
            free(ss);
            pthread_mutex_lock(&s->lock);
            cancel_locked(s, r);
            pthread_mutex_unlock(&s->lock);
            return MHD_NO;
        }
        *ss = (stream_state){s, r, c, srv_now()};
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        count_status(s, 200);
        return ok;
    }
    /* not streamed: wait for the whole body, watching the client */
    pthread_mutex_lock(&s->lock);
    while (!r->done) {
        struct timespec ts;
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&s->wake_http, &s->lock, &ts);
        if (r->done) break;
        pthread_mutex_unlock(&s->lock);
        bool gone = peer_gone(c);
        pthread_mutex_lock(&s->lock);
        if (gone) {
            cancel_locked(s, r);
            pthread_mutex_unlock(&s->lock);
            return MHD_NO; /* closes the connection */
        }
    }
    sbuf body = r->out;
    int status = r->http_status ? r->http_status : 200;
    r->out = (sbuf){0};
    srv_request_unref_locked(r);
    pthread_mutex_unlock(&s->lock);
    enum MHD_Result ok = send_json(s, c, status, &body);
    sbuf_free(&body);
    return ok;
}

/* ---- other routes ---- */

static cJSON *model_object(srv_server *s) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "lethe");
    cJSON *x = cJSON_AddObjectToObject(m, "lethe");
    cJSON_AddStringToObject(x, "arch", s->info.arch);
    cJSON_AddNumberToObject(x, "n_ctx", lethe_ctx_n_ctx(s->ctx));
    cJSON_AddNumberToObject(x, "n_ctx_train", s->info.n_ctx_train);
    cJSON_AddNumberToObject(x, "n_vocab", s->info.n_vocab);
    cJSON_AddNumberToObject(x, "n_params", (double)s->info.n_params);
    cJSON_AddStringToObject(x, "chat_template", s->opt.chat_template ? s->opt.chat_template : "");
    cJSON *pol = cJSON_AddArrayToObject(x, "kv_policies");
    for (const char *const *n = lethe_kv_policy_names(); *n; n++) cJSON_AddItemToArray(pol, cJSON_CreateString(*n));
    return m;
}

static enum MHD_Result handle_models(srv_server *s, struct MHD_Connection *c, const char *id) {
    if (id) {
        if (strcmp(id, s->model_id)) return send_error(s, c, 404, "no such model", "invalid_request_error", "model_not_found", NULL, NULL);
        return send_cjson(s, c, 200, model_object(s));
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), model_object(s));
    return send_cjson(s, c, 200, o);
}

static cJSON *parse_body(srv_server *s, struct MHD_Connection *c, const conn_state *cs, enum MHD_Result *res) {
    const char *body = cs->body.v ? cs->body.v : "";
    cJSON *o = NULL;
    if (srv_utf8_valid(body, cs->body.n)) o = cJSON_ParseWithLength(body, cs->body.n);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *res = send_error(s, c, 400, "the request body must be a JSON object (valid UTF-8)", "invalid_request_error", "invalid_json", NULL, NULL);
        return NULL;
    }
    return o;
}

static enum MHD_Result handle_tokenize(srv_server *s, struct MHD_Connection *c, const conn_state *cs) {
    enum MHD_Result res;
    cJSON *o = parse_body(s, c, cs, &res);
    if (!o) return res;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(o, "add_special");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "parse_special");
    const cJSON *wp = cJSON_GetObjectItemCaseSensitive(o, "with_pieces");
    if (!cJSON_IsString(content) || (as && !cJSON_IsBool(as)) || (ps && !cJSON_IsBool(ps)) || (wp && !cJSON_IsBool(wp))) {
        cJSON_Delete(o);
        return send_error(s, c, 400, "'content' must be a string; add_special, parse_special and with_pieces booleans",
                          "invalid_request_error", NULL, NULL, NULL);
    }
    const char *text = content->valuestring;
    size_t len = strlen(text);
    bool add = as ? cJSON_IsTrue(as) : false, parse = ps ? cJSON_IsTrue(ps) : true;
    int n = lethe_tokenize(s->model, text, len, NULL, 0, add, parse);
    lethe_token *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
    if (!ids) {
        cJSON_Delete(o);
        return send_error(s, c, n < 0 ? 400 : 500, n < 0 ? "cannot tokenise the text" : "out of memory", "invalid_request_error", NULL, NULL, NULL);
    }
    lethe_tokenize(s->model, text, len, ids, n, add, parse);
    cJSON *out = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(out, "tokens");
    for (int i = 0; i < n; i++) {
        if (wp && cJSON_IsTrue(wp)) {
            char buf[512];
            int k = lethe_token_piece(s->model, ids[i], buf, sizeof buf, true);
            sbuf p = {0};
            srv_utf8_sanitize(&p, buf, k < 0 ? 0 : k > (int)sizeof buf ? sizeof buf : (size_t)k);
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "id", ids[i]);
            cJSON_AddStringToObject(t, "piece", p.v ? p.v : "");
            sbuf_free(&p);
            cJSON_AddItemToArray(list, t);
        } else
            cJSON_AddItemToArray(list, cJSON_CreateNumber(ids[i]));
    }
    free(ids);
    cJSON_Delete(o);
    return send_cjson(s, c, 200, out);
}

static enum MHD_Result handle_detokenize(srv_server *s, struct MHD_Connection *c, const conn_state *cs) {
    enum MHD_Result res;
    cJSON *o = parse_body(s, c, cs, &res);
    if (!o) return res;
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens"), *t;
    if (!cJSON_IsArray(toks)) {
        cJSON_Delete(o);
        return send_error(s, c, 400, "'tokens' must be a list of token ids", "invalid_request_error", NULL, NULL, NULL);
    }
    sbuf text = {0};
    cJSON_ArrayForEach(t, toks) {
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= s->info.n_vocab || t->valuedouble != (int)t->valuedouble) {
            sbuf_free(&text);
            cJSON_Delete(o);
            return send_error(s, c, 400, "token ids must be integers in [0, n_vocab)", "invalid_request_error", NULL, NULL, NULL);
        }
        char buf[512];
        int k = lethe_token_piece(s->model, (lethe_token)t->valuedouble, buf, sizeof buf, false);
        if (k > 0) sbuf_put(&text, buf, k > (int)sizeof buf ? sizeof buf : (size_t)k);
    }
    cJSON_Delete(o);
    cJSON *out = cJSON_CreateObject();
    sbuf clean = {0};
    srv_utf8_sanitize(&clean, text.v ? text.v : "", text.n);
    cJSON_AddStringToObject(out, "content", clean.v ? clean.v : "");
    sbuf_free(&clean);
    sbuf_free(&text);
    return send_cjson(s, c, 200, out);
}

/* ---- routing ---- */

typedef enum { R_HEALTH, R_METRICS, R_MODELS, R_MODEL, R_CHAT, R_COMPLETIONS, R_TOKENIZE, R_DETOKENIZE, R_NONE } route;

static route find_route(const char *url, const char **model_id) {
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) return R_HEALTH;
    if (!strcmp(url, "/metrics")) return R_METRICS;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return R_MODELS;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) { *model_id = url + 11; return R_MODEL; }
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) return R_CHAT;
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) return R_COMPLETIONS;
    if (!strcmp(url, "/tokenize")) return R_TOKENIZE;
    if (!strcmp(url, "/detokenize")) return R_DETOKENIZE;
    return R_NONE;
}

static bool route_is_post(route r) { return r == R_CHAT || r == R_COMPLETIONS || r == R_TOKENIZE || r == R_DETOKENIZE; }

static bool authorised(srv_server *s, struct MHD_Connection *c) {
    if (!s->opt.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    const char *k = h + 7, *want = s->opt.api_key;
    /* constant-time compare: the key's length is all a timing can tell */
    size_t lk = strlen(k), lw = strlen(want);
    unsigned diff = (unsigned)(lk != lw);
    for (size_t i = 0; i < lw; i++) diff |= (unsigned)(unsigned char)want[i] ^ (unsigned)(unsigned char)(i < lk ? k[i] : 0);
    return diff == 0;
}

static enum MHD_Result dispatch(srv_server *s, struct MHD_Connection *c, const char *url, const char *method, conn_state *cs) {
    const char *model_id = NULL;
    route rt = find_route(url, &model_id);
    if (rt == R_NONE) return send_error(s, c, 404, "no such route", "invalid_request_error", "not_found", NULL, NULL);
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (route_is_post(rt) ? !post : !get)
        return send_error(s, c, 405, "method not allowed on this route", "invalid_request_error", "method_not_allowed", "Allow",
                          route_is_post(rt) ? "POST" : "GET, HEAD");
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than this server's limit of %zu bytes", s->opt.max_body);
        return send_error(s, c, 413, msg, "invalid_request_error", "request_too_large", NULL, NULL);
    }
    bool ready, failed;
    pthread_mutex_lock(&s->lock);
    ready = s->ready;
    failed = s->load_failed;
    pthread_mutex_unlock(&s->lock);
    if (rt == R_HEALTH) {
        if (ready) return send_bytes(s, c, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL, NULL);
        return send_error(s, c, 503, failed ? "the model failed to load" : "loading the model", "unavailable_error", "loading", NULL, NULL);
    }
    if (rt != R_METRICS && !authorised(s, c))
        return send_error(s, c, 401, "a valid API key is needed: send 'Authorization: Bearer KEY'", "invalid_request_error",
                          "invalid_api_key", NULL, NULL);
    if (!ready)
        return send_error(s, c, 503, "loading the model; retry shortly", "unavailable_error", "loading", "Retry-After", "1");
    switch (rt) {
    case R_METRICS: {
        sbuf b = {0};
        srv_metrics_text(s, &b);
        enum MHD_Result ok = send_bytes(s, c, 200, "text/plain; version=0.0.4", b.v ? b.v : "", b.n, NULL, NULL);
        sbuf_free(&b);
        return ok;
    }
    case R_MODELS: return handle_models(s, c, NULL);
    case R_MODEL: return handle_models(s, c, model_id);
    case R_CHAT: return handle_generate(s, c, SRV_CHAT, cs);
    case R_COMPLETIONS: return handle_generate(s, c, SRV_COMPLETION, cs);
    case R_TOKENIZE: return handle_tokenize(s, c, cs);
    case R_DETOKENIZE: return handle_detokenize(s, c, cs);
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    srv_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->opt.max_body) cs->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cs->too_big || cs->body.n + *upload_size > s->opt.max_body) {
            cs->too_big = true;
            sbuf_free(&cs->body);
        } else {
            sbuf_put(&cs->body, upload, *upload_size);
            if (cs->body.oom) return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(s, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn_state *cs = *con_cls;
    if (!cs) return;
    sbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

void *srv_http_start(srv_server *s, int *port_out, char *err, size_t err_size) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->opt.port);
    const char *host = !strcmp(s->opt.host, "localhost") ? "127.0.0.1" : s->opt.host;
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(err, err_size, "--host '%s' is not an IPv4 address", s->opt.host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!d) {
        snprintf(err, err_size, "cannot listen on %s:%d (in use, or not allowed)", s->opt.host, s->opt.port);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di ? di->port : s->opt.port;
    return d;
}

void srv_http_stop(void *daemon) { MHD_stop_daemon(daemon); }
