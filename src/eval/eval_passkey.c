/* The pass-key retrieval test (Mohtashami & Jaggi, "Landmark Attention",
 * 2023; used by LongLoRA and others): a 5-digit key hidden at some depth of
 * repeated filler, then the question. The model answers by greedy decoding;
 * a case is correct when the key's digits appear in the answer. Under a KV
 * budget smaller than the prompt, the policy decides whether the key
 * survives the prefill. Keys come from the seed, so every policy and budget
 * sees the same prompts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static const char INTRO[] = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                            "I will quiz you about the important information there.";
/* The filler, repeated sentence by sentence (so prompt lengths land within
 * a sentence of the target). */
static const char *const FILLER[] = {" The grass is green.", " The sky is blue.", " The sun is yellow.", " Here we go.",
                                     " There and back again."};
enum { N_FILLER = sizeof FILLER / sizeof FILLER[0] };
static const char KEY_FMT[] = " The pass key is %d. Remember it. %d is the pass key.";
static const char QUESTION[] = " What is the pass key? The pass key is";

int eval_passkey_n_cases(const eval_passkey_cfg *cfg) { return cfg->n_lengths * cfg->n_depths * cfg->trials; }

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int eval_passkey_key(uint64_t seed, int case_index) {
    uint64_t x = splitmix64(seed ^ splitmix64((uint64_t)case_index + 1));
    return 10000 + (int)(x % 90000u);
}

/* INTRO, k1 filler sentences, the key, n_rep - k1 more, QUESTION. */
static char *build(int n_rep, int k1, int key) {
    char key_text[96];
    snprintf(key_text, sizeof key_text, KEY_FMT, key, key);
    size_t len = strlen(INTRO) + strlen(key_text) + strlen(QUESTION) + 1;
    for (int i = 0; i < n_rep; i++) len += strlen(FILLER[i % N_FILLER]);
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "%s", INTRO);
    for (int i = 0; i < n_rep; i++) {
        if (i == k1) p += sprintf(p, "%s", key_text);
        p += sprintf(p, "%s", FILLER[i % N_FILLER]);
    }
    if (k1 >= n_rep) p += sprintf(p, "%s", key_text);
    sprintf(p, "%s", QUESTION);
    return s;
}

static int count_tokens(const lethe_model *m, const char *s) { return lethe_tokenize(m, s, strlen(s), NULL, 0, true, false); }

static int depth_reps(double depth, int n_rep) {
    int k = (int)(depth * n_rep + 0.5);
    return k < 0 ? 0 : k > n_rep ? n_rep : k;
}

char *eval_passkey_prompt(const lethe_model *m, int length, double depth, int key, int *n_tokens, char *err,
                          size_t err_size) {
    char *s = build(0, 0, key);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    const int base = count_tokens(m, s);
    free(s);
    if (base < 0 || base > length) {
        snprintf(err, err_size, "a pass-key prompt of %d tokens is shorter than the prompt without filler (%d tokens)",
                 length, base);
        return NULL;
    }
    /* tokens per filler sentence, from forty of them */
    if (!(s = build(8 * N_FILLER, 0, key))) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    int unit = (count_tokens(m, s) - base) / (8 * N_FILLER);
    free(s);
    if (unit < 1) unit = 1;
    int n_rep = (length - base) / unit;
    /* settle on the most repetitions that stay within length */
    s = build(n_rep, depth_reps(depth, n_rep), key);
    int n = s ? count_tokens(m, s) : -1;
    while (s && n > length && n_rep > 0) {
        free(s);
        n_rep--;
        s = build(n_rep, depth_reps(depth, n_rep), key);
        n = s ? count_tokens(m, s) : -1;
    }
    while (s && n >= 0) {
        char *t = build(n_rep + 1, depth_reps(depth, n_rep + 1), key);
        int n_more = t ? count_tokens(m, t) : -1;
        if (n_more < 0 || n_more > length) {
            free(t);
            break;
        }
        free(s);
        s = t;
        n = n_more;
        n_rep++;
    }
    if (!s || n < 0 || n > length) {
        if (s) snprintf(err, err_size, "cannot build a pass-key prompt of %d tokens", length);
        else snprintf(err, err_size, "out of memory");
        free(s);
        return NULL;
    }
    *n_tokens = n;
    return s;
}

/* Runs one case; *ok is set when the answer holds the key. */
static lethe_status run_case(lethe_ctx *ctx, const lethe_seq_params *sp, const char *prompt, int n_prompt, int key,
                             int n_gen, FILE *log, bool *ok, eval_cost *cost, char *err, size_t err_size) {
    char answer[4096];
    *ok = false;
    lethe_status st = eval_greedy_answer(ctx, sp, prompt, n_prompt, n_gen, answer, sizeof answer, cost, err, err_size);
    if (st) return st;
    char digits[16];
    snprintf(digits, sizeof digits, "%d", key);
    *ok = strstr(answer, digits) != NULL;
    if (log) {
        for (char *p = answer; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        fprintf(log, "passkey %s: %d tokens, key %d, answer \"%s\"\n", *ok ? "right" : "wrong", n_prompt, key, answer);
    }
    return LETHE_OK;
}

lethe_status eval_passkey(lethe_ctx *ctx, const lethe_seq_params *sp, const eval_passkey_cfg *cfg, eval_progress *pg,
                          eval_passkey_result *r, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    memset(r, 0, sizeof *r);
    if (cfg->n_lengths < 1 || cfg->n_depths < 1 || cfg->trials < 1 || cfg->n_gen < 1) {
        snprintf(err, err_size, "the pass-key test needs lengths, depths, trials and generated tokens");
        return LETHE_ERR_ARG;
    }
    lethe_model_info info;
    lethe_model_get_info(m, &info);
    r->correct = calloc((size_t)cfg->n_lengths * (size_t)cfg->n_depths, sizeof *r->correct);
    r->prompt_len = calloc((size_t)cfg->n_lengths, sizeof *r->prompt_len);
    if (!r->correct || !r->prompt_len) {
        eval_passkey_result_free(r);
        snprintf(err, err_size, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    lethe_status st = LETHE_OK;
    int case_index = 0;
    for (int li = 0; li < cfg->n_lengths && !st; li++) {
        for (int di = 0; di < cfg->n_depths && !st; di++) {
            for (int t = 0; t < cfg->trials && !st; t++, case_index++) {
                int key = eval_passkey_key(cfg->seed, case_index), n_prompt = 0;
                char *prompt = eval_passkey_prompt(m, cfg->lengths[li], cfg->depths[di], key, &n_prompt, err, err_size);
                if (!prompt) {
                    st = LETHE_ERR_ARG;
                    break;
                }
                if (n_prompt > r->prompt_len[li]) r->prompt_len[li] = n_prompt;
                bool ok = false;
                st = run_case(ctx, sp, prompt, n_prompt, key, cfg->n_gen, cfg->log, &ok, &r->cost, err, err_size);
                free(prompt);
                if (st) break;
                r->correct[li * cfg->n_depths + di] += ok;
                r->n_correct += ok;
                r->n_total++;
                eval_progress_step(pg, 1);
            }
        }
    }
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, err_size, "length %d: %s", cfg->lengths[case_index / (cfg->n_depths * cfg->trials)], msg);
        return st;
    }
    r->accuracy = r->n_total ? 100.0 * r->n_correct / r->n_total : 0.0;
    return LETHE_OK;
}

void eval_passkey_result_free(eval_passkey_result *r) {
    free(r->correct);
    free(r->prompt_len);
    r->correct = NULL;
    r->prompt_len = NULL;
}
