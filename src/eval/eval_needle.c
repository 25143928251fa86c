/* Retrieval beside the pass key: a needle in natural text and multi-key
 * retrieval with distractors (RULER's NIAH and MK-NIAH, Hsieh et al. 2024,
 * in miniature). Prompts come from seeded generators with several phrasings
 * of the needle and of the question, numbers (3-7 digits) and words as
 * values, and filler drawn sentence by sentence from story-like text, so no
 * one phrasing is measured. A case is right when the greedy answer holds the
 * asked value as a whole token run (not inside a longer number or word).
 * Every policy and budget sees the same prompts for a seed. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* story-like filler: no digits, and none of the value words below */
static const char *const STORY[] = {
    " Once upon a time, there was a little girl named Lily.",
    " She liked to play in the park with her friends.",
    " One day, a big dog came running across the grass.",
    " The dog was friendly and wanted to play.",
    " Tom had a red ball that he loved very much.",
    " His mom said it was time to go home for dinner.",
    " The sun was warm and the birds were singing in the trees.",
    " They laughed and ran around until they were tired.",
    " A small bird sat on the fence and looked at them.",
    " Ben wanted to build a tall tower with his blocks.",
    " The tower fell down, but he did not give up.",
    " Mia found a shiny rock near the river.",
    " She put it in her pocket and smiled.",
    " The cat slept on the soft bed all afternoon.",
    " After lunch, they went to see the ducks at the pond.",
    " The old man in the garden grew big carrots.",
    " He gave some to the children, and they said thank you.",
    " It started to rain, so everyone went inside.",
    " They sat by the window and watched the drops fall.",
    " Sue drew a picture of her family and the house.",
    " Her dad hung it on the wall in the kitchen.",
    " The little boat floated down the stream.",
    " A frog jumped from one leaf to another.",
    " At night, the stars were bright in the dark sky.",
    " Sam was sad because he lost his toy car.",
    " His sister helped him look under the bed.",
    " They found it behind the big chair and cheered.",
    " The bunny hopped into the woods to find food.",
    " Grandma baked a cake that smelled very good.",
    " Everyone shared the cake and felt happy.",
    " The wind blew the leaves all over the yard.",
    " Max and Anna made a fort out of pillows.",
    " They pretended it was a castle with a king.",
    " The teacher read a story about a brave bear.",
    " When the story ended, the kids clapped their hands.",
    " A butterfly landed on a yellow flower.",
    " The girl wanted to catch it, but it flew away.",
    " In the morning, the farm was quiet and calm.",
    " The cow said moo and the pig rolled in the mud.",
    " They learned that being kind is the best thing to do.",
};
enum { N_STORY = sizeof STORY / sizeof STORY[0] };

static const char *const WORDS[] = {"apple",  "banjo",  "copper", "dragon", "ember",  "falcon", "glacier", "harbor",
                                    "igloo",  "jasmine", "kettle", "lemon",  "marble", "nutmeg", "orchid", "pepper",
                                    "quartz", "rocket", "saddle", "tulip",  "velvet", "walnut", "zebra",  "violet"};
enum { N_WORDS = sizeof WORDS / sizeof WORDS[0] };

/* needle: the noun that names the value, by kind of value */
static const char *const NUM_NOUNS[] = {"secret number", "magic number", "special number", "door code", "lucky number"};
static const char *const WORD_NOUNS[] = {"code word", "secret word", "password", "magic word"};
/* @N noun, @V value */
static const char *const NEEDLES[] = {
    " The @N is @V.",
    " Remember: the @N is @V.",
    " @V is the @N.",
    " Do not forget that the @N is @V.",
    " Here is something important: the @N is @V. Keep it in mind.",
    " Lily whispered that the @N was @V.",
};
static const char *const QUESTIONS[] = {
    " What is the @N? The @N is",
    " Tell me the @N. The @N is",
    " Question: what was the @N? Answer: the @N is",
    " Do you remember the @N? The @N is",
};

/* multi-key: @N noun, @K key, @V value */
static const char *const KEYS[] = {"ALPHA", "BRAVO", "DELTA", "ECHO",  "FOXTROT", "HOTEL", "KILO", "OSCAR",
                                   "SIERRA", "TANGO", "VICTOR", "YANKEE", "Zara",   "Otto",  "Rex",  "Ivy"};
enum { N_KEYS = sizeof KEYS / sizeof KEYS[0] };
static const char *const MK_NOUNS[] = {"value", "magic number", "secret code", "special number", "lucky number"};
static const char *const MK_NEEDLES[] = {
    " The @N for @K is @V.",
    " For @K, the @N is @V.",
    " Remember that the @N for @K is @V.",
    " @V is the @N for @K.",
};
static const char *const MK_QUESTIONS[] = {
    " What is the @N for @K? The @N for @K is",
    " Tell me the @N for @K. The @N for @K is",
    " Question: what is the @N for @K? Answer: the @N for @K is",
};
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct {
    uint64_t s;
} rng;
static uint64_t next(rng *r) { return mix(r->s += 0x632be59bd9b4e019ull); }
static int below(rng *r, int n) { return (int)(next(r) % (uint64_t)n); }
static double unit(rng *r) { return (double)(next(r) >> 11) / 9007199254740992.0; }

/* a value: a 3-7 digit number or a word */
static void draw_value(rng *r, bool word, char *out, size_t size) {
    if (word) {
        snprintf(out, size, "%s", WORDS[below(r, N_WORDS)]);
        return;
    }
    int digits = 3 + below(r, 5);
    long lo = 1;
    for (int i = 1; i < digits; i++) lo *= 10;
    snprintf(out, size, "%ld", lo + (long)(next(r) % (uint64_t)(9 * lo)));
}

/* Writes tmpl with @N, @K and @V replaced by noun, key and value. */
static void fill(char *out, size_t size, const char *tmpl, const char *noun, const char *key, const char *value) {
    size_t n = 0;
    for (const char *t = tmpl; *t && n + 1 < size; t++) {
        const char *sub = NULL;
        if (t[0] == '@' && t[1] == 'N') sub = noun;
        else if (t[0] == '@' && t[1] == 'K') sub = key;
        else if (t[0] == '@' && t[1] == 'V') sub = value;
        if (!sub) {
            out[n++] = *t;
            continue;
        }
        for (; *sub && n + 1 < size; sub++) out[n++] = *sub;
        t++;
    }
    out[n] = 0;
}

static bool is_word_char(char c) { return isalnum((unsigned char)c) != 0; }

int eval_retrieval_count(const char *text, const char *value) {
    int n = 0;
    size_t len = strlen(value);
    if (!len) return 0;
    for (const char *p = strstr(text, value); p; p = strstr(p + 1, value))
        if ((p == text || !is_word_char(p[-1])) && !is_word_char(p[len])) n++;
    return n;
}

/* One case's plan: sentences, needles and question; the filler sentence i is
 * STORY[order[i]], drawn so that the prefix of a plan does not change with
 * its length. */
typedef struct {
    bool multikey;
    uint64_t fill_seed;
    int n_keys;
    char needle[EVAL_MAX_KEYS][160];
    double where[EVAL_MAX_KEYS]; /* depth of each needle; [0] is the asked one */
    char question[200];
} plan;

static int filler_index(const plan *p, int i) {
    /* no sentence twice in a row */
    static const int stride = 7;
    uint64_t h = mix(p->fill_seed ^ mix((uint64_t)i + 11));
    int a = (int)(h % N_STORY);
    return (a + (i % 2) * stride) % N_STORY;
}

static int pos_of(double depth, int n_rep) {
    int k = (int)(depth * n_rep + 0.5);
    return k < 0 ? 0 : k > n_rep ? n_rep : k;
}

/* Builds the text with n_rep filler sentences; *asked_at: byte offset of the
 * asked needle, *before: filler sentences before it. */
static char *build(const plan *p, int n_rep, int *asked_at, int *before) {
    size_t len = strlen(p->question) + 1;
    for (int k = 0; k < p->n_keys; k++) len += strlen(p->needle[k]);
    for (int i = 0; i < n_rep; i++) len += strlen(STORY[filler_index(p, i)]);
    char *s = malloc(len), *o = s;
    if (!s) return NULL;
    for (int i = 0; i <= n_rep; i++) {
        for (int k = 0; k < p->n_keys; k++) {
            if (pos_of(p->where[k], n_rep) != i) continue;
            if (k == 0) {
                if (asked_at) *asked_at = (int)(o - s);
                if (before) *before = i;
            }
            o += sprintf(o, "%s", p->needle[k]);
        }
        if (i < n_rep) o += sprintf(o, "%s", STORY[filler_index(p, i)]);
    }
    sprintf(o, "%s", p->question);
    return s;
}

static int count_tokens(const lethe_model *m, const char *s) { return lethe_tokenize(m, s, strlen(s), NULL, 0, true, false); }

static void make_plan(plan *p, bool multikey, int n_keys, uint64_t seed, int case_index, double depth, eval_retrieval_case *c) {
    rng r = {mix(seed ^ mix((uint64_t)case_index * 2 + 1 + (multikey ? 0x5151 : 0)))};
    memset(p, 0, sizeof *p);
    p->multikey = multikey;
    p->fill_seed = next(&r);
    bool word = below(&r, 3) == 0; /* a third of the values are words */
    c->is_word = word;
    if (!multikey) {
        p->n_keys = 1;
        const char *noun = word ? WORD_NOUNS[below(&r, COUNT(WORD_NOUNS))] : NUM_NOUNS[below(&r, COUNT(NUM_NOUNS))];
        draw_value(&r, word, c->value, sizeof c->value);
        c->phrasing = below(&r, COUNT(NEEDLES));
        c->question_phrasing = below(&r, COUNT(QUESTIONS));
        fill(p->needle[0], sizeof p->needle[0], NEEDLES[c->phrasing], noun, "", c->value);
        fill(p->question, sizeof p->question, QUESTIONS[c->question_phrasing], noun, "", "");
        snprintf(c->key, sizeof c->key, "%s", noun);
        p->where[0] = depth;
        return;
    }
    if (n_keys < 1) n_keys = 1;
    if (n_keys > EVAL_MAX_KEYS) n_keys = EVAL_MAX_KEYS;
    p->n_keys = n_keys;
    const char *noun = MK_NOUNS[below(&r, COUNT(MK_NOUNS))];
    c->question_phrasing = below(&r, COUNT(MK_QUESTIONS));
    int keys[EVAL_MAX_KEYS];
    char values[EVAL_MAX_KEYS][24];
    for (int k = 0; k < n_keys; k++) {
        bool fresh;
        do { /* distinct keys and values */
            keys[k] = below(&r, N_KEYS);
            draw_value(&r, word, values[k], sizeof values[k]);
            fresh = true;
            for (int j = 0; j < k; j++)
                if (keys[j] == keys[k] || !strcmp(values[j], values[k]) || strstr(values[j], values[k]) ||
                    strstr(values[k], values[j]))
                    fresh = false;
        } while (!fresh);
        int ph = below(&r, COUNT(MK_NEEDLES));
        if (k == 0) c->phrasing = ph;
        fill(p->needle[k], sizeof p->needle[k], MK_NEEDLES[ph], noun, KEYS[keys[k]], values[k]);
        p->where[k] = k == 0 ? depth : unit(&r);
    }
    snprintf(c->value, sizeof c->value, "%s", values[0]);
    snprintf(c->key, sizeof c->key, "%s", KEYS[keys[0]]);
    fill(p->question, sizeof p->question, MK_QUESTIONS[c->question_phrasing], noun, KEYS[keys[0]], "");
}

lethe_status eval_retrieval_case_make(const lethe_model *m, eval_task task, int n_keys, uint64_t seed, int case_index,
                                      int length, double depth, eval_retrieval_case *c, char *err, size_t err_size) {
    memset(c, 0, sizeof *c);
    plan p;
    make_plan(&p, task == EVAL_TASK_MULTIKEY, n_keys, seed, case_index, depth, c);
    char *s = build(&p, 0, NULL, NULL);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    const int base = count_tokens(m, s);
    free(s);
    if (base < 0 || base > length) {
        snprintf(err, err_size, "a prompt of %d tokens is shorter than its needles and question (%d tokens)", length, base);
        return LETHE_ERR_ARG;
    }
    if (!(s = build(&p, 40, NULL, NULL))) {
        snprintf(err, err_size, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    int unit_tokens = (count_tokens(m, s) - base) / 40;
    free(s);
    if (unit_tokens < 1) unit_tokens = 1;
    int n_rep = (length - base) / unit_tokens, n = -1;
    s = build(&p, n_rep, NULL, NULL);
    n = s ? count_tokens(m, s) : -1;
    while (s && n > length && n_rep > 0) {
        free(s);
        s = build(&p, --n_rep, NULL, NULL);
        n = s ? count_tokens(m, s) : -1;
    }
    while (s && n >= 0) {
        char *t = build(&p, n_rep + 1, NULL, NULL);
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
        if (s) snprintf(err, err_size, "cannot build a prompt of %d tokens", length);
        else snprintf(err, err_size, "out of memory");
        free(s);
        return s ? LETHE_ERR_ARG : LETHE_ERR_NOMEM;
    }
    free(s);
    c->text = build(&p, n_rep, &c->needle_offset, &c->filler_before);
    if (!c->text) {
        snprintf(err, err_size, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    c->n_tokens = n;
    c->n_filler = n_rep;
    return LETHE_OK;
}

void eval_retrieval_case_free(eval_retrieval_case *c) {
    free(c->text);
    c->text = NULL;
}

const char *eval_task_name(eval_task t) { return t == EVAL_TASK_MULTIKEY ? "multikey" : "needle"; }

/* Runs one case; *ok is set when the answer holds the value. */
static lethe_status run_case(lethe_ctx *ctx, const lethe_seq_params *sp, const eval_retrieval_case *c, eval_task task,
                             int n_gen, FILE *log, bool *ok, eval_cost *cost, char *err, size_t err_size) {
    char answer[4096];
    *ok = false;
    lethe_status st = eval_greedy_answer(ctx, sp, c->text, c->n_tokens, n_gen, answer, sizeof answer, cost, err, err_size);
    if (st) return st;
    *ok = eval_retrieval_count(answer, c->value) > 0;
    if (log) {
        for (char *p = answer; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        fprintf(log, "%s %s: %d tokens, %s %s, answer \"%s\"\n", eval_task_name(task), *ok ? "right" : "wrong", c->n_tokens,
                c->key, c->value, answer);
    }
    return LETHE_OK;
}

lethe_status eval_retrieval(lethe_ctx *ctx, const lethe_seq_params *sp, eval_task task, const eval_passkey_cfg *cfg,
                            eval_progress *pg, eval_passkey_result *r, char *err, size_t err_size) {
    const lethe_model *m = lethe_ctx_model(ctx);
    memset(r, 0, sizeof *r);
    if (cfg->n_lengths < 1 || cfg->n_depths < 1 || cfg->trials < 1 || cfg->n_gen < 1) {
        snprintf(err, err_size, "the %s test needs lengths, depths, trials and generated tokens", eval_task_name(task));
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
    const int n_keys = cfg->n_keys > 0 ? cfg->n_keys : EVAL_DEFAULT_KEYS;
    lethe_status st = LETHE_OK;
    int case_index = 0;
    for (int li = 0; li < cfg->n_lengths && !st; li++) {
        for (int di = 0; di < cfg->n_depths && !st; di++) {
            for (int t = 0; t < cfg->trials && !st; t++, case_index++) {
                eval_retrieval_case c;
                st = eval_retrieval_case_make(m, task, n_keys, cfg->seed, case_index, cfg->lengths[li], cfg->depths[di], &c,
                                              err, err_size);
                if (st) break;
                if (c.n_tokens > r->prompt_len[li]) r->prompt_len[li] = c.n_tokens;
                bool ok = false;
                st = run_case(ctx, sp, &c, task, cfg->n_gen, cfg->log, &ok, &r->cost, err, err_size);
                eval_retrieval_case_free(&c);
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
