/* Tokenizer tests:
 *  - every NAME.gguf in $LETHE_MODELS/vocab with NAME.gguf.inp / .out (llama.cpp's
 *    test vectors, add_special = parse_special = false) must match 100%;
 *  - detokenise(tokenise(x)) == x on those inputs, random valid UTF-8 and
 *    random bytes (SPM: with the added leading space);
 *  - llama2.c tokenizer.bin / tok512.bin against the GGUF and reference ids;
 *  - streaming detokenisation, parse_special, errors, 1 MB timing. */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/gguf.h"
#include "testutil.h"
#include "tokenize/tok_internal.h" /* special_partition, checked against a naive reference */
#include "tokenize/tokenizer.h"

/* ---- helpers ---- */

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* This thread's CPU time: the speed checks below guard against quadratic
 * algorithms (seconds where it should be milliseconds), and CPU time does
 * not count the time a loaded host gives to other programs. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokenises into a malloc'd array; *n = count, NULL on error. */
static lethe_token *encode(const tokenizer *t, const char *s, size_t len, bool add_special, bool parse_special, int *n) {
    int need = tokenizer_encode(t, s, len, NULL, 0, add_special, parse_special);
    *n = need;
    if (need < 0) return NULL;
    lethe_token *ids = malloc((size_t)(need > 0 ? need : 1) * sizeof *ids);
    if (!ids) return NULL;
    int got = tokenizer_encode(t, s, len, ids, need, add_special, parse_special);
    if (got != need) {
        free(ids);
        *n = -1;
        return NULL;
    }
    return ids;
}

/* Concatenated pieces (malloc'd, length in *len). */
static char *decode(const tokenizer *t, const lethe_token *ids, int n, bool render_special, size_t *len) {
    size_t cap = 64, used = 0;
    char *out = malloc(cap);
    for (int i = 0; out && i < n; i++) {
        int k = tokenizer_piece(t, ids[i], NULL, 0, render_special);
        if (k < 0) {
            free(out);
            return NULL;
        }
        while (used + (size_t)k + 1 > cap) {
            char *o = realloc(out, cap *= 2);
            if (!o) {
                free(out);
                return NULL;
            }
            out = o;
        }
        tokenizer_piece(t, ids[i], out + used, k, render_special);
        used += (size_t)k;
    }
    if (out) out[used] = 0;
    *len = used;
    return out;
}

static bool strict_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        int k;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) k = 1;
        else if (c >= 0xC2 && c <= 0xDF) k = 2;
        else if (c >= 0xE0 && c <= 0xEF) k = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) k = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return false;
        if (i + (size_t)k > n) return false;
        for (int j = 1; j < k; j++) {
            unsigned char b = s[i + (size_t)j];
            if (j == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
        }
        i += (size_t)k;
    }
    return true;
}

static size_t put_cp(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Random valid UTF-8: mostly ASCII words and spaces, some Latin-1, Cyrillic,
 * CJK, emoji and arbitrary code points. Returns the length (buf >= 4*maxcp). */
static size_t random_utf8(char *buf, int maxcp) {
    int n = (int)(rnd() % (unsigned)maxcp) + 1;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        uint32_t r = rnd() % 100, cp;
        if (r < 50) cp = "abcdefghijklmnopqrstuvwxyz   ETAOIN.,'!?0123456789"[rnd() % 50];
        else if (r < 60) cp = "\n\t \r"[rnd() % 4];
        else if (r < 70) cp = 0xA0 + rnd() % 0x60;
        else if (r < 78) cp = 0x400 + rnd() % 0x100;
        else if (r < 86) cp = 0x4E00 + rnd() % 0x5000;
        else if (r < 92) cp = 0x1F300 + rnd() % 0x300;
        else {
            do cp = 1 + rnd() % 0x10FFFF;
            while (cp >= 0xD800 && cp <= 0xDFFF);
        }
        len += put_cp(buf + len, cp);
    }
    return len;
}

/* ---- llama.cpp test vectors ---- */

typedef struct {
    char **text;
    size_t *len;
    lethe_token **ids;
    int *n_ids;
    int n;
} cases;

static void free_cases(cases *c) {
    for (int i = 0; i < c->n; i++) free(c->ids[i]);
    free(c->text);
    free(c->len);
    free(c->ids);
    free(c->n_ids);
}

/* Splits the .inp at "\n__ggml_vocab_test__\n" (the file ends with one) and
 * pairs the pieces with the lines of the .out. inp stays owned by the caller. */
static bool load_cases(char *inp, size_t inp_len, char *out, cases *c) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t ls = sizeof sep - 1;
    memset(c, 0, sizeof *c);
    int cap = 0;
    char *p = inp, *end = inp + inp_len;
    while (p < end) {
        char *q = memmem(p, (size_t)(end - p), sep, ls);
        if (!q) break;
        if (c->n == cap) {
            cap = cap ? cap * 2 : 64;
            c->text = realloc(c->text, (size_t)cap * sizeof *c->text);
            c->len = realloc(c->len, (size_t)cap * sizeof *c->len);
            if (!c->text || !c->len) return false;
        }
        c->text[c->n] = p;
        c->len[c->n] = (size_t)(q - p);
        c->n++;
        p = q + ls;
    }
    c->ids = calloc((size_t)c->n + 1, sizeof *c->ids);
    c->n_ids = calloc((size_t)c->n + 1, sizeof *c->n_ids);
    if (!c->ids || !c->n_ids) return false;
    char *line = out;
    for (int i = 0; i < c->n; i++) {
        if (!line || !*line) return false;
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int cap_ids = 16;
        c->ids[i] = malloc((size_t)cap_ids * sizeof(lethe_token));
        char *s = line;
        for (;;) {
            char *e;
            long v = strtol(s, &e, 10);
            if (e == s) break;
            if (c->n_ids[i] == cap_ids) c->ids[i] = realloc(c->ids[i], (size_t)(cap_ids *= 2) * sizeof(lethe_token));
            c->ids[i][c->n_ids[i]++] = (lethe_token)v;
            s = e;
        }
        line = nl ? nl + 1 : NULL;
    }
    return true;
}

static void print_ids(const char *what, const lethe_token *ids, int n) {
    fprintf(stderr, "    %s (%d):", what, n);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* The SPM round trip adds one leading space to non-empty text. */
static bool roundtrip_ok(const tokenizer *t, bool spm, const char *s, size_t len, bool report) {
    int n;
    lethe_token *ids = encode(t, s, len, false, false, &n);
    if (!ids) return false;
    size_t dl;
    char *d = decode(t, ids, n, false, &dl);
    free(ids);
    if (!d) return false;
    size_t off = spm && len > 0 ? 1 : 0;
    bool ok = dl == len + off && (!off || d[0] == ' ') && memcmp(d + off, s, len) == 0;
    if (!ok && report) {
        fprintf(stderr, "    round trip failed:");
        for (size_t i = 0; i < len && i < 48; i++) fprintf(stderr, " %02x", (unsigned char)s[i]);
        fprintf(stderr, " ->");
        for (size_t i = 0; i < dl && i < 48; i++) fprintf(stderr, " %02x", (unsigned char)d[i]);
        fprintf(stderr, "\n");
    }
    free(d);
    return ok;
}

/* Bytes that come back unchanged as a one-byte text: those the vocabulary can
 * represent on their own. */
static void representable_bytes(const tokenizer *t, bool spm, bool rep[256]) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        rep[b] = roundtrip_ok(t, spm, &c, 1, false);
    }
}

/* The bytes README.md says each shared vocabulary cannot round-trip, as
 * ranges lo..hi; "as_latin1": they come back as the UTF-8 of U+00XX,
 * otherwise they are dropped. A vocabulary not listed loses none. */
static const struct {
    const char *name;
    bool as_latin1;
    unsigned char ranges[12][2];
} documented_loss[] = {
    {"ggml-vocab-deepseek-coder.gguf", true, {{0xC0, 0xC1}, {0xF5, 0xFF}}},
    {"ggml-vocab-deepseek-llm.gguf", true, {{0xC0, 0xC1}, {0xF5, 0xFF}}},
    {"ggml-vocab-mpt.gguf", false, {{0xC0, 0xC1}, {0xF5, 0xFF}}},
    {"ggml-vocab-refact.gguf", false, {{0xC0, 0xC1}, {0xF1, 0xF1}, {0xF5, 0xFF}}},
    {"ggml-vocab-starcoder.gguf", false, {{0xC0, 0xC1}, {0xF1, 0xF1}, {0xF5, 0xFF}}},
    {"ggml-vocab-falcon.gguf", false,
     {{0x03, 0x05}, {0x0B, 0x0B}, {0x11, 0x11}, {0x13, 0x17}, {0x19, 0x19}, {0x1C, 0x1E}, {0xC0, 0xC1}, {0xF2, 0xF2}, {0xF5, 0xFF}}},
};

/* Checks that the bytes which do not round-trip are exactly the documented
 * ones, and that they come back as documented. */
static void check_documented_loss(const tokenizer *t, bool spm, const char *name, const bool rep[256]) {
    bool lost[256] = {false};
    bool latin1 = false;
    for (size_t i = 0; i < sizeof documented_loss / sizeof documented_loss[0]; i++) {
        if (strcmp(documented_loss[i].name, name) != 0) continue;
        latin1 = documented_loss[i].as_latin1;
        for (int r = 0; r < 12 && documented_loss[i].ranges[r][0]; r++)
            for (int b = documented_loss[i].ranges[r][0]; b <= documented_loss[i].ranges[r][1]; b++) lost[b] = true;
    }
    int wrong = 0;
    for (int b = 0; b < 256; b++) {
        if (rep[b] == !lost[b]) {
            if (!lost[b]) continue;
            char c = (char)b;
            int n;
            lethe_token *ids = encode(t, &c, 1, false, false, &n);
            size_t dl = 0;
            char *d = ids ? decode(t, ids, n, true, &dl) : NULL;
            size_t off = spm ? 1 : 0;
            bool as_doc = latin1 ? dl == off + 2 && (unsigned char)d[off] == (0xC0 | b >> 6) &&
                                       (unsigned char)d[off + 1] == (0x80 | (b & 0x3F))
                                 : dl == off;
            if (!as_doc) fprintf(stderr, "    byte %02x comes back as %zu other bytes\n", b, dl - off);
            wrong += !as_doc;
            free(ids);
            free(d);
            continue;
        }
        fprintf(stderr, "    byte %02x: %s\n", b, rep[b] ? "documented as lost but round-trips" : "lost but not documented");
        wrong++;
    }
    CHECKF(wrong == 0, "%s: %d bytes differ from README's list of bytes it cannot round-trip", name, wrong);
}

static void test_vocab(const char *dir, const char *name) {
    char path[4096], pinp[4200], pout[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(pinp, sizeof pinp, "%s.inp", path);
    snprintf(pout, sizeof pout, "%s.out", path);
    if (!tu_file_exists(pinp) || !tu_file_exists(pout)) {
        printf("  %s: no .inp/.out, load check only\n", name);
    }
    char err[512] = "";
    lethe_status st;
    lt_gguf_file *f = lt_gguf_open(path, err, &st);
    if (!CHECKF(f != NULL, "%s: lt_gguf_open: %s", name, err)) return;
    tokenizer *t = tokenizer_from_gguf(f, err, &st);
    if (!CHECKF(t != NULL, "%s: tokenizer_from_gguf failed (status %d): %s", name, (int)st, err)) {
        lt_gguf_close(f);
        return;
    }
    lt_gguf_str model;
    bool spm = lt_gguf_get_str(f, "tokenizer.ggml.model", &model) && lt_gguf_str_eq(model, "llama");

    size_t inp_len = 0;
    char *inp = tu_file_exists(pinp) ? tu_read_file(pinp, &inp_len) : NULL;
    char *out = tu_file_exists(pout) ? tu_read_file(pout, NULL) : NULL;
    if (inp && out) {
        cases c;
        bool loaded = load_cases(inp, inp_len, out, &c);
        CHECKF(loaded && c.n > 0, "%s: cannot parse the test vectors", name);
        int matched = 0, shown = 0, rt_ok = 0;
        for (int i = 0; loaded && i < c.n; i++) {
            int n;
            lethe_token *ids = encode(t, c.text[i], c.len[i], false, false, &n);
            bool ok = ids && n == c.n_ids[i] && memcmp(ids, c.ids[i], (size_t)n * sizeof *ids) == 0;
            if (ok) matched++;
            else if (shown++ < 3) {
                fprintf(stderr, "  %s case %d mismatch, text \"%.*s\"\n", name, i, (int)c.len[i], c.text[i]);
                print_ids("expected", c.ids[i], c.n_ids[i]);
                print_ids("got     ", ids, n);
            }
            free(ids);
            if (roundtrip_ok(t, spm, c.text[i], c.len[i], true)) rt_ok++;
        }
        printf("  %-34s %2d/%2d cases match, %2d/%2d round trips\n", name, matched, c.n, rt_ok, c.n);
        CHECKF(loaded && matched == c.n, "%s: %d of %d test vectors differ", name, c.n - matched, c.n);
        CHECKF(loaded && rt_ok == c.n, "%s: %d of %d round trips failed", name, c.n - rt_ok, c.n);
        free_cases(&c);
    }
    free(inp);
    free(out);

    /* Bytes the vocabulary can spell on its own. Some byte-level vocabularies
     * lack a few (falcon, starcoder: e.g. the lead bytes F1..F3 of planes
     * 1..3), and like llama.cpp we then drop them, so the round trips below
     * are only asserted for texts made of representable bytes. */
    bool rep[256];
    representable_bytes(t, spm, rep);
    check_documented_loss(t, spm, name, rep);
    int n_rep = 0;
    for (int b = 0; b < 256; b++) n_rep += rep[b];

    /* random valid UTF-8 */
    char buf[4 * 64 + 8];
    int bad = 0, tried = 0;
    for (int i = 0; i < 300; i++) {
        size_t len = random_utf8(buf, 64);
        bool all = true;
        for (size_t j = 0; j < len; j++) all = all && rep[(unsigned char)buf[j]];
        int n;
        lethe_token *ids = encode(t, buf, len, false, false, &n);
        CHECK(ids != NULL);
        free(ids);
        if (!all) continue;
        tried++;
        if (!roundtrip_ok(t, spm, buf, len, bad == 0)) bad++;
    }
    CHECKF(bad == 0, "%s: %d of %d random UTF-8 strings did not round-trip", name, bad, tried);

    /* random bytes (mostly invalid UTF-8): no crash; round trip where every
     * byte is representable on its own */
    static const char *const edge[] = {"\x80", "\xbf\x80", "\xc0\x80", "\xc3", "\xe2\x82", "\xe2\x82x", "\xed\xa0\x80",
                                       "\xf4\x90\x80\x80", "\xf5\xff", "a\xff b", "\xf0\x9f\x98", "\x00\x01"};
    int crashed = 0, rt_bad = 0, rt_tried = 0;
    for (int i = 0; i < 300 + 12; i++) {
        char raw[48];
        size_t len;
        if (i < 12) {
            len = strlen(edge[i]) + (i == 11 ? 2 : 0);
            memcpy(raw, edge[i], len);
        } else {
            len = rnd() % sizeof raw;
            for (size_t j = 0; j < len; j++) raw[j] = (char)(rnd() % 3 ? 0x80 + rnd() % 0x80 : rnd() % 0x80);
        }
        int n;
        lethe_token *ids = encode(t, raw, len, false, false, &n);
        if (!ids) {
            crashed++;
            continue;
        }
        free(ids);
        bool all = true;
        for (size_t j = 0; j < len; j++) all = all && rep[(unsigned char)raw[j]];
        if (all) {
            rt_tried++;
            if (!roundtrip_ok(t, spm, raw, len, rt_bad == 0)) rt_bad++;
        }
    }
    CHECKF(crashed == 0, "%s: %d invalid UTF-8 inputs failed to tokenise", name, crashed);
    CHECKF(rt_bad == 0, "%s: %d of %d invalid UTF-8 inputs did not round-trip", name, rt_bad, rt_tried);
    printf("  %-34s random UTF-8: %d/%d round-trip, invalid: %d/%d (%d bytes representable alone)\n", "", tried - bad,
           tried, rt_tried - rt_bad, rt_tried, n_rep);
    tokenizer_free(t);
    lt_gguf_close(f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_vocab_dir(void) {
    const char *dir = tu_model_path("vocab");
    DIR *d = opendir(dir);
    if (!d) tu_skip("vocab folder %s absent (set LETHE_MODELS)", dir);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    printf("vocab test vectors (%d files in %s):\n", n, dir);
    for (int i = 0; i < n; i++) {
        test_vocab(dir, names[i]);
        free(names[i]);
    }
    /* README promises the full round trip for the model's own vocabulary too */
    if (tu_file_exists(tu_model_path("stories260K.gguf"))) test_vocab(tu_model_path("."), "stories260K.gguf");
    else tu_skip_part("stories260K.gguf absent: its round trip not checked");
}

/* ---- GGUF / llama2.c specific ---- */

static tokenizer *open_vocab(const char *rel, lt_gguf_file **fp) {
    const char *p = tu_model_path(rel);
    *fp = NULL;
    if (!tu_file_exists(p)) {
        tu_skip_part("%s absent", p);
        return NULL;
    }
    char err[512];
    lethe_status st;
    *fp = lt_gguf_open(p, err, &st);
    if (!*fp) return NULL;
    tokenizer *t = tokenizer_from_gguf(*fp, err, &st);
    CHECKF(t != NULL, "%s: %s", rel, err);
    return t;
}

static bool ids_eq(const lethe_token *a, int na, const lethe_token *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void test_llama2c(void) {
    char err[512];
    lethe_status st;
    const char *tb = tu_model_path("llama2c/tokenizer.bin");
    lt_gguf_file *f;
    tokenizer *spm = open_vocab("vocab/ggml-vocab-llama-spm.gguf", &f);
    if (tu_file_exists(tb) && spm) {
        tokenizer *t = tokenizer_from_llama2c(tb, 32000, err, &st);
        if (CHECKF(t != NULL, "tokenizer.bin: %s", err)) {
            size_t inp_len;
            char *inp = tu_read_file(tu_model_path("vocab/ggml-vocab-llama-spm.gguf.inp"), &inp_len);
            int same = 0, total = 0;
            static const char sep[] = "\n__ggml_vocab_test__\n";
            for (char *p = inp, *q; inp && (q = memmem(p, inp_len - (size_t)(p - inp), sep, sizeof sep - 1));
                 p = q + sizeof sep - 1) {
                for (int mode = 0; mode < 2; mode++) {
                    int na, nb;
                    lethe_token *a = encode(t, p, (size_t)(q - p), mode, mode, &na);
                    lethe_token *b = encode(spm, p, (size_t)(q - p), mode, mode, &nb);
                    total++;
                    if (a && b && ids_eq(a, na, b, nb)) same++;
                    free(a);
                    free(b);
                }
            }
            printf("llama2.c tokenizer.bin vs ggml-vocab-llama-spm.gguf: %d/%d tokenisations identical\n", same, total);
            CHECKF(total > 0 && same == total, "tokenizer.bin differs from the GGUF vocab on %d inputs", total - same);
            CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_is_eog(t, 2));
            free(inp);
            tokenizer_free(t);
        }
    } else {
        tu_skip_part("tokenizer.bin or ggml-vocab-llama-spm.gguf absent");
    }
    tokenizer_free(spm);
    if (f) lt_gguf_close(f);

    const char *t512 = tu_model_path("llama2c/tok512.bin");
    if (!tu_file_exists(t512)) {
        tu_skip_part("tok512.bin absent");
        return;
    }
    tokenizer *t = tokenizer_from_llama2c(t512, 512, err, &st);
    if (!CHECKF(t != NULL, "tok512.bin: %s", err)) return;
    /* prompt_ids of shared/reference/stories260K.greedy.<n>.json */
    static const struct {
        const char *prompt;
        lethe_token ids[12];
        int n;
    } ref[] = {
        {"Once upon a time", {1, 403, 407, 261, 378}, 5},
        {"The little dog", {1, 291, 376, 400, 428}, 5},
        {"Lily and Ben went to the park", {1, 317, 269, 368, 302, 263, 377, 267, 265, 282, 295, 433}, 12},
        {"One day, a big", {1, 385, 328, 432, 261, 370}, 6},
        {"Tom had a red ball", {1, 274, 287, 381, 261, 352, 266, 268, 388}, 9},
        {"", {1}, 1},
    };
    lt_gguf_file *g;
    tokenizer *gt = open_vocab("stories260K.gguf", &g);
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        int n;
        lethe_token *ids = encode(t, ref[i].prompt, strlen(ref[i].prompt), true, false, &n);
        bool same = ids && ids_eq(ids, n, ref[i].ids, ref[i].n);
        if (!same) {
            fprintf(stderr, "  tok512 \"%s\":\n", ref[i].prompt);
            print_ids("expected", ref[i].ids, ref[i].n);
            print_ids("got     ", ids, n);
        }
        ok += same;
        free(ids);
        if (gt) { /* the GGUF carries the same vocabulary */
            ids = encode(gt, ref[i].prompt, strlen(ref[i].prompt), true, false, &n);
            CHECKF(ids && ids_eq(ids, n, ref[i].ids, ref[i].n), "stories260K.gguf prompt %d", i);
            free(ids);
        }
    }
    printf("tok512.bin: %d/6 reference prompts match\n", ok);
    CHECKF(ok == 6, "tok512.bin: %d of 6 prompts differ", 6 - ok);
    /* pieces: BOS renders as "<s>" only with render_special */
    char piece[32];
    CHECK(tokenizer_piece(t, 1, piece, sizeof piece, false) == 0);
    CHECK(tokenizer_piece(t, 1, piece, sizeof piece, true) == 3 && memcmp(piece, "<s>", 3) == 0);
    CHECK(tokenizer_piece(t, 403, piece, sizeof piece, false) > 0 && piece[0] == ' ');
    CHECK(tokenizer_piece(t, 3 + 0x41, piece, sizeof piece, false) == 1 && piece[0] == 'A');
    CHECK(tokenizer_piece(t, 512, piece, sizeof piece, false) == -1);
    tokenizer_free(t);
    tokenizer_free(gt);
    if (g) lt_gguf_close(g);
    t = tokenizer_from_llama2c(t512, 100000, err, &st);
    CHECK(t == NULL && st == LETHE_ERR_FORMAT);
    t = tokenizer_from_llama2c("/nonexistent/tok.bin", 512, err, &st);
    CHECK(t == NULL && st == LETHE_ERR_IO);
}

static void test_stream(const char *rel) {
    lt_gguf_file *f;
    tokenizer *t = open_vocab(rel, &f);
    if (!t) {
        tu_skip_part("%s absent: streaming test skipped", rel);
        if (f) lt_gguf_close(f);
        return;
    }
    static const char *const texts[] = {
        "H\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe2\x82\xac 3\xc2\xbd \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99",
        "\xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
        "bad \xe2\x82x \xff\xfe tail \xf0\x9f\x98", /* invalid: passed through */
    };
    for (int k = 0; k < 3; k++) {
        int n;
        lethe_token *ids = encode(t, texts[k], strlen(texts[k]), false, false, &n);
        if (!CHECK(ids != NULL)) continue;
        size_t full_len;
        char *full = decode(t, ids, n, false, &full_len);
        char cat[1024], chunk[512];
        size_t used = 0;
        bool chunks_valid = true;
        detok_stream d;
        detok_stream_init(&d);
        for (int i = 0; i < n; i++) {
            int m = detok_stream_push(&d, t, ids[i], chunk, sizeof chunk, false);
            if (!CHECK(m >= 0)) break;
            if (k < 2 && !strict_utf8((unsigned char *)chunk, (size_t)m)) chunks_valid = false;
            memcpy(cat + used, chunk, (size_t)m);
            used += (size_t)m;
        }
        int m = detok_stream_flush(&d, chunk, sizeof chunk);
        CHECK(m >= 0);
        if (m > 0) memcpy(cat + used, chunk, (size_t)m), used += (size_t)m;
        CHECKF(chunks_valid, "%s: streaming emitted a broken UTF-8 chunk (text %d)", rel, k);
        CHECKF(full && used == full_len && memcmp(cat, full, used) == 0, "%s: streamed text differs (text %d)", rel, k);
        free(full);
        free(ids);
    }
    /* a buffer too small gets the size needed, and nothing is consumed */
    detok_stream d;
    detok_stream_init(&d);
    int n;
    lethe_token *ids = encode(t, "hello", 5, false, false, &n);
    char small[1];
    if (ids && n > 0) {
        int need = tokenizer_piece(t, ids[0], NULL, 0, false);
        CHECK(need > 0 && detok_stream_push(&d, t, ids[0], small, 0, false) == need && d.n_pending == 0);
        CHECK(need <= tokenizer_max_piece(t));
    }
    free(ids);
    tokenizer_free(t);
    lt_gguf_close(f);
}

static void test_special(void) {
    lt_gguf_file *f;
    tokenizer *t = open_vocab("vocab/ggml-vocab-gpt-2.gguf", &f);
    if (t) {
        int n;
        lethe_token *ids = encode(t, "<|endoftext|>", 13, false, true, &n);
        CHECK(ids && n == 1 && ids[0] == 50256);
        free(ids);
        ids = encode(t, "<|endoftext|>", 13, false, false, &n);
        CHECK(ids && n > 1);
        free(ids);
        ids = encode(t, "a<|endoftext|>b", 15, false, true, &n);
        CHECK(ids && n == 3 && ids[1] == 50256);
        free(ids);
        CHECK(tokenizer_is_eog(t, 50256) && !tokenizer_is_eog(t, 0));
        char p[32];
        CHECK(tokenizer_piece(t, 50256, p, sizeof p, false) == 0);
        CHECK(tokenizer_piece(t, 50256, p, sizeof p, true) == 13);
        /* cap smaller than needed: returns the full count, writes cap ids */
        lethe_token two[2] = {-7, -7};
        int need = tokenizer_encode(t, "Hello world and more", 20, two, 1, false, false);
        CHECK(need > 1 && two[0] >= 0 && two[1] == -7);
        CHECK(tokenizer_encode(t, "", 0, NULL, 0, true, true) == 0);
        tokenizer_free(t);
        lt_gguf_close(f);
    }
    t = open_vocab("vocab/ggml-vocab-llama-spm.gguf", &f);
    if (t) {
        int n;
        lethe_token *ids = encode(t, "<s>Hi", 5, false, true, &n);
        CHECK(ids && n >= 2 && ids[0] == 1);
        free(ids);
        ids = encode(t, "", 0, true, false, &n);
        CHECK(ids && n == 1 && ids[0] == 1);
        free(ids);
        CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_n_vocab(t) == 32000);
        tokenizer_free(t);
        lt_gguf_close(f);
    }
}

/* ---- special-token partition vs llama.cpp's algorithm, done naively ---- */

static bool c_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* tokenizer_st_partition as llama.cpp writes it: one pass per special token
 * over every raw fragment. */
static void naive_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out) {
    fragvec cur = {0}, next = {0};
    cur.v = malloc(sizeof *cur.v);
    cur.cap = 1;
    cur.n = 0;
    if (len) cur.v[cur.n++] = (tok_frag){0, len, -1};
    for (int r = 0; r < t->n_special; r++) {
        lethe_token id = t->special[r];
        if (!parse_special && (t->attr[id] & (TA_CONTROL | TA_UNKNOWN))) continue;
        const char *tt = t->text + t->text_off[id];
        size_t L = t->text_len[id];
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            if (next.n + 3 > next.cap) next.v = realloc(next.v, (next.cap = next.cap * 2 + 8) * sizeof *next.v);
            if (cur.v[i].id >= 0) {
                next.v[next.n++] = cur.v[i];
                continue;
            }
            size_t base = cur.v[i].off, blen = cur.v[i].len;
            for (;;) {
                if (next.n + 3 > next.cap) next.v = realloc(next.v, (next.cap = next.cap * 2 + 8) * sizeof *next.v);
                const char *m = memmem(text + base, blen, tt, L);
                if (!m) {
                    if (blen) next.v[next.n++] = (tok_frag){base, blen, -1};
                    break;
                }
                size_t mp = (size_t)(m - text), ll = mp - base;
                if (t->attr[id] & TA_LSTRIP)
                    while (ll > 0 && c_space((unsigned char)text[base + ll - 1])) ll--;
                if (ll) next.v[next.n++] = (tok_frag){base, ll, -1};
                next.v[next.n++] = (tok_frag){mp, L, id};
                size_t rs = mp + L, rl = base + blen - rs;
                if (t->attr[id] & TA_RSTRIP)
                    while (rl > 0 && c_space((unsigned char)text[rs])) rs++, rl--;
                base = rs;
                blen = rl;
                if (!blen) break;
            }
        }
        fragvec tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.v);
    *out = cur;
}

static void test_partition(const char *rel) {
    lt_gguf_file *f;
    tokenizer *t = open_vocab(rel, &f);
    if (!t) {
        if (f) lt_gguf_close(f);
        return;
    }
    int bad = 0, with_tokens = 0;
    for (int i = 0; i < 400; i++) {
        char buf[512];
        size_t len = 0;
        while (len < 400) {
            uint32_t r = rnd() % 10;
            if (r < 4 && t->n_special > 0) { /* a special text, maybe cut short */
                lethe_token id = t->special[rnd() % (uint32_t)t->n_special];
                size_t L = t->text_len[id];
                if (rnd() % 4 == 0) L = rnd() % L;
                if (L > 64) L = 64;
                memcpy(buf + len, t->text + t->text_off[id], L);
                len += L;
            } else if (r < 7) {
                size_t k = rnd() % 6;
                while (k--) buf[len++] = " \n\t"[rnd() % 3];
            } else {
                buf[len++] = "ab<|>s/"[rnd() % 7];
            }
        }
        for (int mode = 0; mode < 2; mode++) {
            fragvec a = {0}, b = {0};
            bool ok = special_partition(t, buf, len, mode, &a);
            naive_partition(t, buf, len, mode, &b);
            bool same = ok && a.n == b.n;
            for (size_t k = 0; same && k < a.n; k++)
                same = a.v[k].id == b.v[k].id && a.v[k].off == b.v[k].off && a.v[k].len == b.v[k].len;
            for (size_t k = 0; k < b.n; k++)
                if (b.v[k].id >= 0) {
                    with_tokens++;
                    break;
                }
            if (!same) bad++;
            free(a.v);
            free(b.v);
        }
    }
    printf("%s: special-token partition = llama.cpp's algorithm on %d/800 texts (%d with special tokens)\n", rel,
           800 - bad, with_tokens);
    CHECKF(bad == 0, "%s: partition differs on %d texts", rel, bad);
    tokenizer_free(t);
    lt_gguf_close(f);
}

/* ---- a hand-made GGUF with an unknown pre-tokenizer ---- */

typedef struct {
    unsigned char b[1024];
    size_t n;
} gbuf;

static void g_raw(gbuf *g, const void *p, size_t n) {
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void g_u32(gbuf *g, uint32_t v) {
    for (int i = 0; i < 4; i++) g->b[g->n++] = (unsigned char)(v >> (8 * i));
}
static void g_u64(gbuf *g, uint64_t v) {
    for (int i = 0; i < 8; i++) g->b[g->n++] = (unsigned char)(v >> (8 * i));
}
static void g_str(gbuf *g, const char *s) {
    g_u64(g, strlen(s));
    g_raw(g, s, strlen(s));
}
static void g_kv_str(gbuf *g, const char *k, const char *v) {
    g_str(g, k);
    g_u32(g, 8);
    g_str(g, v);
}
static void g_kv_strs(gbuf *g, const char *k, const char *const *v, int n) {
    g_str(g, k);
    g_u32(g, 9);
    g_u32(g, 8);
    g_u64(g, (uint64_t)n);
    for (int i = 0; i < n; i++) g_str(g, v[i]);
}

static void test_unknown_pre(void) {
    static const char *const toks[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a b"};
    const char *pres[] = {"no-such-pre", "gpt-2"};
    for (int i = 0; i < 2; i++) {
        gbuf g = {.n = 0};
        g_raw(&g, "GGUF", 4);
        g_u32(&g, 3);
        g_u64(&g, 0);
        g_u64(&g, 4);
        g_kv_str(&g, "tokenizer.ggml.model", "gpt2");
        g_kv_str(&g, "tokenizer.ggml.pre", pres[i]);
        g_kv_strs(&g, "tokenizer.ggml.tokens", toks, 3);
        g_kv_strs(&g, "tokenizer.ggml.merges", merges, 1);
        while (g.n % 32) g.b[g.n++] = 0;
        char err[512] = "";
        lethe_status st = LETHE_OK;
        lt_gguf_file *f = lt_gguf_open_memory(g.b, g.n, err, &st);
        if (!CHECKF(f != NULL, "hand-made GGUF rejected: %s", err)) return;
        tokenizer *t = tokenizer_from_gguf(f, err, &st);
        if (i == 0) {
            CHECKF(t == NULL && st == LETHE_ERR_UNSUPPORTED && strstr(err, "no-such-pre"),
                   "unknown pre must be LETHE_ERR_UNSUPPORTED (got status %d: %s)", (int)st, err);
        } else if (CHECKF(t != NULL, "tiny gpt-2 vocab: %s", err)) {
            int n;
            lethe_token *ids = encode(t, "abab", 4, false, false, &n);
            CHECK(ids && n == 2 && ids[0] == 2 && ids[1] == 2); /* one pre-token, merged to ab ab */
            free(ids);
        }
        tokenizer_free(t);
        lt_gguf_close(f);
    }
}

/* ---- speed ---- */

static void test_speed(const char *rel) {
    lt_gguf_file *f;
    tokenizer *t = open_vocab(rel, &f);
    if (!t) {
        if (f) lt_gguf_close(f);
        return;
    }
    size_t size = 1 << 20, len = 0;
    char *text = malloc(size);
    while (text && len + 300 < size) len += random_utf8(text + len, 64);
    double t0 = now_s();
    int n = tokenizer_encode(t, text, len, NULL, 0, false, false);
    double dt = now_s() - t0;
    printf("%s: %zu bytes of random text -> %d tokens in %.3f s (%.2f MB/s)\n", rel, len, n, dt, len / 1e6 / dt);
    CHECKF(n > 0 && dt < 5.0, "%s: 1 MB took %.2f s", rel, dt);
    tokenizer_bench(stdout, t);
    free(text);
    tokenizer_free(t);
    lt_gguf_close(f);
}

/* A hostile vocabulary: 1000 USER_DEFINED tokens "a"^L "X" (L = 1..1000,
 * 500 KB of special-token text) and 20 KB of "a"-runs. The scan used to cost
 * text length x total special-token length (48 s for 518 KB / 20 KB); it
 * must now take well under a second, and agree with llama.cpp's algorithm. */
static void test_hostile_specials(void) {
    const int n_spec = 1000, n = n_spec + 3;
    size_t bytes = 0;
    for (int L = 1; L <= n_spec; L++) bytes += (size_t)L + 1;
    tokenizer *t = tok_new(TOK_SPM, n, bytes + 64);
    char *s = malloc((size_t)n_spec + 2);
    if (!CHECK(t && s)) { tokenizer_free(t); free(s); return; }
    tok_set(t, 0, "<unk>", 5, 0, TT_UNKNOWN);
    tok_set(t, 1, "a", 1, -1, TT_NORMAL);
    tok_set(t, 2, "X", 1, -1, TT_NORMAL);
    for (int L = 1; L <= n_spec; L++) {
        memset(s, 'a', (size_t)L);
        s[L] = 'X';
        tok_set(t, 2 + L, s, (size_t)L + 1, 0, TT_USER_DEFINED);
    }
    free(s);
    char err[512] = "";
    if (!CHECKF(tok_finish(t, NULL, NULL, err) == LETHE_OK, "hostile vocabulary: %s", err)) { tokenizer_free(t); return; }

    size_t len = 20000;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++) text[i] = rnd() % 1500 ? 'a' : 'X'; /* runs of ~1500 'a' */
    fragvec a = {0}, b = {0};
    double t0 = now_s();
    bool ok = special_partition(t, text, len, false, &a);
    double dt = now_s() - t0;
    printf("hostile special tokens: %zu bytes against %zu bytes of special text in %.3f s\n", len, bytes, dt);
    CHECKF(ok && dt < 1.0, "hostile vocabulary: partition took %.2f s (the old scan: 3.8 s)", dt);
    /* same fragments as llama.cpp's one-scan-per-token algorithm, on a prefix */
    size_t cut = 4000;
    bool ok2 = special_partition(t, text, cut, false, &a);
    naive_partition(t, text, cut, false, &b);
    bool same = ok2 && a.n == b.n;
    for (size_t k = 0; same && k < a.n; k++) same = a.v[k].id == b.v[k].id && a.v[k].off == b.v[k].off && a.v[k].len == b.v[k].len;
    CHECKF(same, "hostile vocabulary: %zu fragments, llama.cpp's algorithm %zu", a.n, b.n);
    int n_tok = 0;
    for (size_t k = 0; k < a.n; k++) n_tok += a.v[k].id >= 0;
    CHECKF(n_tok > 0, "hostile vocabulary: the text holds special tokens (%d)", n_tok);
    free(a.v);
    free(b.v);
    free(text);
    tokenizer_free(t);
}

int main(void) {
    test_hostile_specials();
    test_vocab_dir();
    test_llama2c();
    test_stream("vocab/ggml-vocab-gpt-2.gguf");
    test_stream("vocab/ggml-vocab-llama-spm.gguf");
    test_special();
    test_partition("vocab/ggml-vocab-phi-3.gguf");
    test_partition("vocab/ggml-vocab-mpt.gguf");
    test_partition("vocab/ggml-vocab-deepseek-coder.gguf");
    test_partition("vocab/ggml-vocab-starcoder.gguf");
    test_unknown_pre();
    test_speed("vocab/ggml-vocab-gpt-2.gguf");
    test_speed("vocab/ggml-vocab-llama-spm.gguf");
    test_speed("vocab/ggml-vocab-deepseek-llm.gguf");
    return tu_finish("test_tokenizer");
}
