/* lethe serve's life cycle: listen first (so /health answers 503 while the
 * model loads), load the model and make the context, start the engine
 * thread, then wait for SIGINT / SIGTERM and shut down in order. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server.h"

void srv_options_init(srv_options *o) {
    *o = (srv_options){0};
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 4;
    o->queue_max = 64;
    o->batch_tokens = 512;
    o->kv_type = LETHE_KV_F16;
    o->kv_page_slots = 32;
    o->max_body = 8u << 20;
    o->keepalive_ms = 5000;
    o->prefix_cache = true;
    o->kv = lethe_seq_default_params().kv;
    o->prune_mode = LETHE_PRUNE_SHIFT;
    o->prune_buffer = lethe_memory_default_params().prune_buffer;
}

/* The model id: --alias, else the file name without folders. */
static void set_model_id(srv_server *s) {
    const char *p = s->opt.alias;
    if (!p) {
        p = strrchr(s->opt.model_path, '/');
        p = p ? p + 1 : s->opt.model_path;
    }
    snprintf(s->model_id, sizeof s->model_id, "%s", p);
}

static bool known_template(const char *name) {
    char names[256] = "";
    for (const char *const *n = lethe_chat_template_names(); *n; n++) {
        if (!strcmp(*n, name)) return true;
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", *n);
    }
    fprintf(stderr, "lethe serve: unknown chat template '%s' (one of: %s)\n", name, names);
    return false;
}

static bool load(srv_server *s) {
    char err[512];
    /* tests of the 503-while-loading answer need a load that takes a while */
    const char *delay = getenv("LETHE_TEST_LOAD_DELAY_MS");
    if (delay && atoi(delay) > 0) usleep((useconds_t)atoi(delay) * 1000);
    lethe_model_params mp = lethe_model_default_params();
    mp.tokenizer_path = s->opt.tokenizer_path;
    s->model = lethe_model_load(s->opt.model_path, &mp, err, sizeof err);
    if (!s->model) {
        fprintf(stderr, "lethe serve: %s\n", err);
        return false;
    }
    lethe_model_get_info(s->model, &s->info);
    /* the chat template: the one asked for, else the model's */
    const char *tmpl = s->opt.chat_template;
    if (!tmpl) {
        tmpl = lethe_chat_template_detect(s->model);
        if (!tmpl && lethe_model_chat_template(s->model)) {
            char names[256] = "";
            for (const char *const *n = lethe_chat_template_names(); *n; n++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", *n);
            fprintf(stderr, "lethe serve: the model's chat template is not one lethe recognises; choose one with --chat-template NAME (%s)\n", names);
            return false;
        }
    }
    s->opt.chat_template = tmpl; /* NULL: no template, chat requests get a 400 */
    if (tmpl) s->eot_text = lethe_chat_template_stop(s->model, tmpl);
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_threads = s->opt.n_threads;
    cp.n_ctx = s->opt.n_ctx;
    cp.kv_type = s->opt.kv_type;
    cp.kv_page_slots = s->opt.kv_page_slots;
    cp.kv_budget_mib = s->opt.kv_budget_mib;
    /* without a MiB cap the pool holds --parallel full contexts; with one,
     * any one sequence may use all of it and admission shares it out */
    cp.n_seq_max = s->opt.kv_budget_mib > 0 ? 1 : s->opt.parallel;
    if (!(s->ctx = lethe_ctx_create(s->model, &cp, err, sizeof err))) {
        fprintf(stderr, "lethe serve: %s\n", err);
        return false;
    }
    lethe_kv_usage u;
    lethe_ctx_kv_usage(s->ctx, &u);
    s->page_slots = u.page_slots;
    s->page_bytes = u.page_bytes;
    s->pages_total = u.page_bytes ? u.bytes_total / u.page_bytes : 0;
    s->streams = (size_t)s->info.n_layer * (size_t)s->info.n_head_kv;
    /* a probe sequence checks the default policy's parameters now, not on the first request */
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv = s->opt.kv;
    lethe_seq *probe = lethe_seq_create(s->ctx, &sp, err, sizeof err);
    if (!probe) {
        fprintf(stderr, "lethe serve: the KV policy: %s\n", err);
        return false;
    }
    lethe_seq_free(probe);
    return (s->pc = srv_pc_create()) != NULL;
}

int srv_run(const srv_options *o) {
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->opt = *o;
    set_model_id(s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake_engine, NULL);
    pthread_cond_init(&s->wake_http, NULL);

    /* every thread made from here on leaves the signals to this one */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1, port = 0;
    char err[256];
    void *http = NULL;
    pthread_t engine;
    bool engine_started = false;
    if (s->opt.chat_template && !known_template(s->opt.chat_template)) goto out;
    if (!(http = srv_http_start(s, &port, err, sizeof err))) {
        fprintf(stderr, "lethe serve: %s\n", err);
        goto out;
    }
    fprintf(stderr, "lethe serve: listening on http://%s:%d (loading %s)\n", s->opt.host, port, s->opt.model_path);
    if (!load(s)) {
        pthread_mutex_lock(&s->lock);
        s->load_failed = true;
        pthread_mutex_unlock(&s->lock);
        goto out;
    }
    if (pthread_create(&engine, NULL, srv_engine_main, s)) {
        fprintf(stderr, "lethe serve: cannot start the engine thread\n");
        goto out;
    }
    engine_started = true;
    pthread_mutex_lock(&s->lock);
    s->ready = true;
    pthread_mutex_unlock(&s->lock);
    lethe_kv_usage u;
    lethe_ctx_kv_usage(s->ctx, &u);
    fprintf(stderr, "lethe serve: ready: model '%s', %d threads, context %d, KV pool %.2f MiB, %d parallel, chat template %s\n",
            s->model_id, lethe_ctx_n_threads(s->ctx), lethe_ctx_n_ctx(s->ctx), u.bytes_total / 1048576.0, s->opt.parallel,
            s->opt.chat_template ? s->opt.chat_template : "(none)");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "lethe serve: signal %d, shutting down\n", sig);
    rc = 0;
out:
    s->stopping = 1;
    if (engine_started) {
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->wake_engine);
        pthread_mutex_unlock(&s->lock);
        pthread_join(engine, NULL);
    }
    if (http) srv_http_stop(http); /* after the engine: every waiting connection has its answer */
    srv_pc_free(s->pc);
    free(s->active);
    free(s->waiting);
    free(s->logits);
    lethe_ctx_free(s->ctx);
    lethe_model_free(s->model);
    pthread_cond_destroy(&s->wake_http);
    pthread_cond_destroy(&s->wake_engine);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rc;
}
