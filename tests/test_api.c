/* The public API's contract on bad input: every function given a NULL
 * handle or buffer returns an error or its documented neutral value, never
 * crashes (before this test about 16 of them segfaulted); the version is
 * the header's; a model outlives its contexts and a context frees the
 * sequences left in it. */
#include <string.h>

#include "lethe.h"
#include "testengine.h"
#include "testutil.h"

static void nulls(void) {
    char err[256];
    CHECK(strcmp(lethe_version(), LETHE_VERSION_STRING) == 0);
    CHECK(lethe_model_load(NULL, NULL, err, sizeof err) == NULL && err[0]);
    CHECK(lethe_model_load(NULL, NULL, NULL, 0) == NULL);
    lethe_model_free(NULL);
    lethe_model_info info;
    CHECK(lethe_model_get_info(NULL, &info) == LETHE_ERR_ARG && info.n_vocab == 0);
    CHECK(lethe_model_get_info(NULL, NULL) == LETHE_ERR_ARG);
    lethe_token ids[4];
    char buf[16];
    CHECK(lethe_tokenize(NULL, "hi", 2, ids, 4, true, false) == -1);
    CHECK(lethe_token_piece(NULL, 1, buf, sizeof buf, false) == -1);
    CHECK(!lethe_token_is_eog(NULL, 1));
    CHECK(lethe_detok_create(NULL, false) == NULL);
    CHECK(lethe_detok_push(NULL, 1, buf, sizeof buf) == -1);
    CHECK(lethe_detok_flush(NULL, buf, sizeof buf) == -1);
    lethe_detok_free(NULL);

    CHECK(lethe_ctx_create(NULL, NULL, err, sizeof err) == NULL && err[0]);
    lethe_ctx_free(NULL);
    CHECK(lethe_ctx_model(NULL) == NULL && lethe_ctx_n_threads(NULL) == 0 && lethe_ctx_n_ctx(NULL) == 0);
    CHECK(lethe_ctx_error(NULL) != NULL);
    lethe_kv_usage u;
    CHECK(lethe_ctx_kv_usage(NULL, &u) == LETHE_ERR_ARG);
    lethe_ctx_kv_reset_peak(NULL);
    lethe_batch b = {0, NULL, NULL, NULL};
    CHECK(lethe_ctx_decode(NULL, &b, NULL) == LETHE_ERR_ARG);

    CHECK(lethe_seq_create(NULL, NULL, err, sizeof err) == NULL && err[0]);
    CHECK(lethe_seq_fork(NULL, err, sizeof err) == NULL);
    lethe_seq_free(NULL);
    float lg[4];
    CHECK(lethe_seq_append(NULL, ids, 1, lg) == LETHE_ERR_ARG);
    CHECK(lethe_seq_decode(NULL, 1, lg) == LETHE_ERR_ARG);
    CHECK(lethe_seq_append_all_logits(NULL, ids, 1, lg) == LETHE_ERR_ARG);
    CHECK(lethe_seq_n_past(NULL) == 0 && lethe_seq_n_tokens(NULL) == 0 && lethe_seq_n_cached(NULL) == 0);
    CHECK(lethe_seq_max_batch(NULL) == 0);
    CHECK(lethe_seq_remove(NULL, 0, 1) == LETHE_ERR_ARG);
    CHECK(lethe_seq_shift(NULL, 0, 1, 1) == LETHE_ERR_ARG);
    CHECK(lethe_seq_truncate(NULL, 0) == LETHE_ERR_ARG);
    CHECK(lethe_seq_error(NULL) != NULL);
    lethe_seq_bytes sb;
    CHECK(lethe_seq_get_bytes(NULL, &sb) == LETHE_ERR_ARG);
    lethe_seq_reset_bytes_peak(NULL);

    CHECK(lethe_sampler_create(NULL, 0) == NULL);
    lethe_sampler_params sp = lethe_sampler_default_params();
    sp.top_p = 2.0f;
    CHECK(lethe_sampler_create(&sp, 10) == NULL);
    sp = lethe_sampler_default_params();
    sp.temperature = -1.0f / 0.0f;
    CHECK(lethe_sampler_create(&sp, 10) == NULL);
    CHECK(lethe_sampler_sample(NULL, lg) == -1);
    lethe_sampler *s = lethe_sampler_create(NULL, 4);
    CHECK(s && lethe_sampler_sample(s, NULL) == -1);
    lethe_sampler_accept(NULL, 1);
    lethe_sampler_free(s);
    lethe_sampler_free(NULL);
    CHECK(lethe_kv_policy_summary(NULL) == NULL);
    CHECK(lethe_kv_policy_summary("no such policy") == NULL);
}

static void with_model(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    char err[256];
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    if (!CHECKF(m != NULL, "load: %s", err)) return;
    lethe_ctx_params cp = lethe_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq_max = 2;
    lethe_ctx *c = lethe_ctx_create(m, &cp, err, sizeof err);
    if (!CHECKF(c != NULL, "ctx: %s", err)) return;
    lethe_seq *s = lethe_seq_create(c, NULL, err, sizeof err);
    CHECK(s != NULL);
    CHECK(lethe_seq_append(s, NULL, 3, NULL) == LETHE_ERR_ARG && lethe_seq_error(s)[0]);
    CHECK(lethe_seq_append_all_logits(s, (lethe_token[]){1, 2}, 2, NULL) == LETHE_ERR_ARG);
    lethe_token t = 1;
    CHECK(lethe_seq_append(s, &t, 1, NULL) == LETHE_OK && lethe_seq_error(s)[0] == 0);
    CHECK(lethe_tokenize(m, NULL, 3, NULL, 0, false, false) == -1);
    CHECK(lethe_tokenize(m, "abc", 3, NULL, 4, false, false) == -1); /* cap without a buffer */
    CHECK(lethe_ctx_decode(c, NULL, NULL) == LETHE_ERR_ARG && lethe_ctx_error(c)[0]);
    lethe_model_info info;
    CHECK(lethe_model_get_info(m, &info) == LETHE_OK && info.max_piece_bytes > 0);
    /* bad context parameters are refused with the range */
    cp.kv_type = (lethe_kv_type)7;
    CHECK(lethe_ctx_create(m, &cp, err, sizeof err) == NULL && strstr(err, "KV type"));
    cp = lethe_ctx_default_params();
    cp.kv_budget_mib = -1;
    CHECK(lethe_ctx_create(m, &cp, err, sizeof err) == NULL && strstr(err, "kv_budget_mib"));
    /* bad policy parameters too */
    lethe_seq_params sp = lethe_seq_default_params();
    sp.kv.sink = -5;
    CHECK(lethe_seq_create(c, &sp, err, sizeof err) == NULL && strstr(err, "sink"));
    sp = lethe_seq_default_params();
    sp.kv.name = "nope";
    CHECK(lethe_seq_create(c, &sp, err, sizeof err) == NULL && strstr(err, "window")); /* lists the valid ones */
    /* which policy reads which parameter */
    CHECK(lethe_kv_policy_uses("snapkv", "snap-ada") && lethe_kv_policy_uses("snapkv", "pyramid-ratio"));
    CHECK(!lethe_kv_policy_uses("window", "snap-ada") && lethe_kv_policy_uses("window", "budget"));
    CHECK(!lethe_kv_policy_uses("nope", "budget"));
    lethe_ctx_free(c); /* frees s too (ASan: no leak) */
    lethe_model_free(m);
}

int main(void) {
    nulls();
    with_model();
    return tu_finish("test_api");
}
