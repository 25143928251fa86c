/* Pre-tokenisers of byte-level BPE vocabularies, chosen by tokenizer.ggml.pre.
 *
 * Each value names a list of regexes (llama.cpp's llm_tokenizer_bpe, kept
 * verbatim below). They are applied one after the other: every regex splits
 * each piece left by the previous one into its matches and the text between
 * matches (llama.cpp's unicode_regex_split). A regex only sees its piece, so
 * "$" and "(?!\S)" stop at the piece's end.
 *
 * llama.cpp runs these through std::regex on a "collapsed" text (one byte per
 * code point, non-ASCII letters / numbers / punctuation / whitespace / other
 * replaced by class placeholders) or through hand-written equivalents for the
 * GPT-2 and Llama-3 patterns. Both amount to matching the pattern with
 * Unicode classes, which is what PCRE2 (UTF + UCP) does here, with two
 * adjustments that keep the semantics identical:
 *  - \s / \S are rewritten to llama.cpp's whitespace set (Unicode
 *    White_Space: \t..\r, space, U+0085, U+00A0, U+1680, U+2000..U+200A,
 *    U+2028, U+2029, U+202F, U+205F, U+3000). PCRE2's \s would add U+180E.
 *  - "$" matches only at the very end (ECMAScript), via DOLLAR_ENDONLY.
 * Matching uses PCRE2's JIT when available. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"
#include "util/error.h"

/* ---- the regexes (llama.cpp's, with non-ASCII characters written as
 * \x{...} escapes so that no editor or tool can normalise them: the
 * deepseek-llm class holds canonical singletons such as U+1F7D, U+1FBE,
 * U+2126 and U+212A that NFC would turn into other code points) ---- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                            \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                             \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "      \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

static const char *const set_gpt2[] = {RE_GPT2, NULL};
static const char *const set_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const set_llama3[] = {RE_LLAMA3, NULL};
static const char *const set_qwen2[] = {RE_QWEN2, NULL};
static const char *const set_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const set_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const set_deepseek_coder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}", NULL};
static const char *const set_deepseek_llm[] = {
    "[\r\n]",
    "\\s?["
        "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
        "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"
        "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}"
        "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
        "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
        "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"
        "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
        "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
        "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
        "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
        "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
        "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
        "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
        "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
        "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
        "\\x{1E900}-\\x{1E943}]+",
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}+",
    NULL};
static const char *const set_bloom[] = {RE_BLOOM, NULL};
static const char *const set_viking[] = {RE_BLOOM, "\\p{N}", NULL};
static const char *const set_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+("
    "(?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const set_chameleon[] = {"<sentinel:[0-9]+>",
                                            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                                            "([\\t\\n]|    |  )",
                                            "\\p{N}",
                                            "[\\p{P}!-/:-@\\[-`{-~]",
                                            RE_GPT2,
                                            NULL};

enum { PRE_IGNORE_MERGES = 1, PRE_ADD_BOS = 2, PRE_NO_BOS = 4 };

typedef struct {
    const char *name;
    const char *const *set;
    int flags;
} pre_def;

/* Every value llama.cpp c392e509 accepts, except deepseek-v3 (below). */
static const pre_def pre_defs[] = {
    {"default", set_default, 0},
    {"llama3", set_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", set_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", set_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", set_llama3, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"deepseek-llm", set_deepseek_llm, 0},
    {"deepseek-coder", set_deepseek_coder, 0},
    {"falcon", set_falcon, 0},
    {"mpt", set_gpt2, 0},
    {"starcoder", set_starcoder, 0},
    {"gpt-2", set_gpt2, 0},
    {"phi-2", set_gpt2, 0},
    {"jina-es", set_gpt2, 0},
    {"jina-de", set_gpt2, 0},
    {"gigachat", set_gpt2, 0},
    {"jina-v1-en", set_gpt2, 0},
    {"jina-v2-es", set_gpt2, 0},
    {"jina-v2-de", set_gpt2, 0},
    {"jina-v2-code", set_gpt2, 0},
    {"roberta-bpe", set_gpt2, 0},
    {"refact", set_starcoder, 0},
    {"command-r", set_starcoder, 0},
    {"qwen2", set_qwen2, 0},
    {"megrez", set_qwen2, 0},
    {"stablelm2", set_qwen2, 0},
    {"olmo", set_gpt2, 0},
    {"dbrx", set_llama3, 0},
    {"smaug-bpe", set_llama3, 0},
    {"poro-chat", set_bloom, 0},
    {"chatglm-bpe", set_llama3, PRE_NO_BOS},
    {"viking", set_viking, 0},
    {"jais", set_gpt2, 0},
    {"tekken", set_tekken, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"smollm", set_starcoder, 0},
    {"codeshell", set_starcoder, 0},
    {"bloom", set_bloom, 0},
    {"gpt3-finnish", set_bloom, 0},
    {"exaone", set_starcoder, 0},
    {"chameleon", set_chameleon, PRE_ADD_BOS},
    {"minerva-7b", set_starcoder, 0},
};

#define PRE_MAX_RE 8

struct pretok {
    int n;
    pcre2_code *re[PRE_MAX_RE];
};

/* ---- pattern translation ---- */

#define WS_CLASS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static bool put(bytebuf *b, const char *s) {
    size_t n = strlen(s);
    if (!bytebuf_reserve(b, b->n + n + 1)) return false;
    memcpy(b->v + b->n, s, n + 1);
    b->n += n;
    return true;
}

/* Rewrites \s and \S (see the top of the file). False on failure. */
static bool translate(const char *src, bytebuf *out) {
    bool in_class = false;
    out->n = 0;
    if (!put(out, "")) return false;
    for (const char *p = src; *p; p++) {
        char two[3] = {p[0], p[1], 0};
        if (p[0] == '\\' && p[1] == 's') {
            if (!put(out, in_class ? WS_CLASS : "[" WS_CLASS "]")) return false;
            p++;
        } else if (p[0] == '\\' && p[1] == 'S') {
            if (in_class || !put(out, "[^" WS_CLASS "]")) return false;
            p++;
        } else if (p[0] == '\\' && p[1]) {
            if (!put(out, two)) return false;
            p++;
        } else {
            if (p[0] == '[' && !in_class) in_class = true;
            else if (p[0] == ']' && in_class) in_class = false;
            two[1] = 0;
            if (!put(out, two)) return false;
        }
    }
    return true;
}

void pretok_free(pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    free(p);
}

pretok *pretok_create(const char *pre, tokenizer *t, char *err, lethe_status *status) {
    const pre_def *def = NULL;
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
        if (strcmp(pre, pre_defs[i].name) == 0) def = &pre_defs[i];
    if (!def) {
        *status = set_error(err, LETHE_ERR_UNSUPPORTED,
                            strcmp(pre, "deepseek-v3") == 0
                                ? "pre-tokenizer 'deepseek-v3' is not supported (its regex relies on std::regex quirks)"
                                : "unknown pre-tokenizer type '%s' (tokenizer.ggml.pre)",
                            pre);
        return NULL;
    }
    if (def->flags & PRE_IGNORE_MERGES) t->ignore_merges = true;
    if (def->flags & PRE_ADD_BOS) t->add_bos = true;
    if (def->flags & PRE_NO_BOS) t->bos = -1;

    pretok *p = calloc(1, sizeof *p);
    bytebuf pat = {0};
    if (!p) goto nomem;
    uint32_t jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &jit);
    for (const char *const *r = def->set; *r; r++) {
        if (p->n == PRE_MAX_RE || !translate(*r, &pat)) goto nomem;
        int ec;
        PCRE2_SIZE eo;
        p->re[p->n] = pcre2_compile((PCRE2_SPTR)pat.v, pat.n, PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!p->re[p->n]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            *status = set_error(err, LETHE_ERR_UNSUPPORTED, "pre-tokenizer '%s': regex %d: %s at %zu", pre, p->n,
                                (const char *)msg, (size_t)eo);
            free(pat.v);
            pretok_free(p);
            return NULL;
        }
        if (jit) pcre2_jit_compile(p->re[p->n], PCRE2_JIT_COMPLETE); /* on failure the interpreter runs */
        p->n++;
    }
    free(pat.v);
    *status = LETHE_OK;
    return p;
nomem:
    free(pat.v);
    pretok_free(p);
    *status = set_error(err, LETHE_ERR_NOMEM, "out of memory (pre-tokenizer)");
    return NULL;
}

/* ---- splitting ---- */

void pretok_work_free(tok_work *w) {
    pcre2_match_data_free(w->pcre_md);
    w->pcre_md = NULL;
}

static bool span_push(size_t **v, size_t *n, size_t *cap, size_t off, size_t len) {
    if (*n + 2 > *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        size_t *nv = realloc(*v, c * sizeof *nv);
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = off;
    (*v)[(*n)++] = len;
    return true;
}

/* Next match of re in subject[0..len) at or after start: 1 found, 0 none, -1 error. */
static int next_match(const pcre2_code *re, pcre2_match_data *md, const unsigned char *subject, size_t len,
                      size_t start, size_t *ms, size_t *me) {
    int rc = pcre2_match(re, subject, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep patterns: the interpreter uses the heap */
        rc = pcre2_match(re, subject, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

bool pretok_split(const pretok *p, tok_work *w, const char *text, size_t len) {
    const unsigned char *u = (const unsigned char *)text;
    w->spans_n = 0;
    if (len == 0) return true;
    if (!w->pcre_md && !(w->pcre_md = pcre2_match_data_create(1, NULL))) return false;

    /* PCRE2 needs valid UTF-8: give it a copy in which every byte outside a
     * valid sequence is \x01, a control character that every pattern here
     * treats like U+FFFD (not space, letter, number or punctuation). Offsets
     * stay the same, so the spans apply to the original text. */
    size_t bad = utf8_first_invalid(u, len);
    if (bad < len) {
        if (!bytebuf_reserve(&w->clean, len)) return false;
        memcpy(w->clean.v, text, len);
        unsigned char *c = (unsigned char *)w->clean.v;
        size_t i = bad;
        while (i < len) {
            int k = utf8_check(c + i, len - i);
            if (k <= 0) c[i++] = 0x01;
            else i += (size_t)k;
        }
        u = c;
    }

    if (!span_push(&w->spans, &w->spans_n, &w->spans_cap, 0, len)) return false;
    for (int r = 0; r < p->n; r++) {
        size_t n2 = 0;
        for (size_t s = 0; s < w->spans_n; s += 2) {
            size_t off = w->spans[s], l = w->spans[s + 1], pos = 0, last = 0;
            while (pos < l) {
                size_t ms, me;
                int rc = next_match(p->re[r], w->pcre_md, u + off, l, pos, &ms, &me);
                if (rc < 0) return false;
                if (rc == 0) break;
                if (me == ms) { /* empty match (no pattern here has one): step over a character */
                    int k = utf8_check(u + off + ms, l - ms);
                    pos = ms + (k > 0 ? (size_t)k : 1);
                    continue;
                }
                if (ms > last && !span_push(&w->spans2, &n2, &w->spans2_cap, off + last, ms - last)) return false;
                if (!span_push(&w->spans2, &n2, &w->spans2_cap, off + ms, me - ms)) return false;
                last = pos = me;
            }
            if (last < l && !span_push(&w->spans2, &n2, &w->spans2_cap, off + last, l - last)) return false;
        }
        size_t *tmp = w->spans;
        w->spans = w->spans2;
        w->spans2 = tmp;
        size_t tc = w->spans_cap;
        w->spans_cap = w->spans2_cap;
        w->spans2_cap = tc;
        w->spans_n = n2;
    }
    return true;
}
