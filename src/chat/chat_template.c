/* Chat templates (lethe.h, "chat templates"): the families llama.cpp's
 * llama_chat_apply_template renders without a Jinja engine, recognised from
 * a model's tokenizer.chat_template by their markers and rendered in C into
 * a caller's buffer (snprintf-style: nothing is allocated). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "util/error.h"

typedef enum {
    T_CHATML,
    T_LLAMA2,
    T_LLAMA2_SYS,
    T_LLAMA2_SYS_BOS,
    T_LLAMA2_SYS_STRIP,
    T_LLAMA3,
    T_MISTRAL_V1,
    T_MISTRAL_V3,
    T_MISTRAL_V3_TEKKEN,
    T_MISTRAL_V7,
    T_MISTRAL_V7_TEKKEN,
    T_PHI3,
    T_PHI4,
    T_ZEPHYR,
    T_GEMMA,
    T_OPENCHAT,
    T_VICUNA,
    T_VICUNA_ORCA,
    T_DEEPSEEK,
    T_DEEPSEEK2,
    T_DEEPSEEK3,
    T_COMMAND_R,
    T_COUNT
} family;

/* DeepSeek's markers use U+FF5C (fullwidth vertical line) and U+2581. */
#define FW_BAR "\xEF\xBD\x9C"
#define SPM_SPACE "\xE2\x96\x81"
#define DS_EOS FW_BAR "end" SPM_SPACE "of" SPM_SPACE "sentence" FW_BAR

/* In family order; NULL-terminated for lethe_chat_template_names. */
static const char *const NAMES[T_COUNT + 1] = {
    "chatml",     "llama2",     "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "llama3",   "mistral-v1",
    "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4", "zephyr", "gemma",
    "openchat",   "vicuna",     "vicuna-orca", "deepseek", "deepseek2", "deepseek3", "command-r", NULL,
};

/* The end of an assistant turn in each family. */
static const char *const STOPS[T_COUNT] = {
    [T_CHATML] = "<|im_end|>",         [T_LLAMA2] = "</s>",         [T_LLAMA2_SYS] = "</s>",
    [T_LLAMA2_SYS_BOS] = "</s>",       [T_LLAMA2_SYS_STRIP] = "</s>", [T_LLAMA3] = "<|eot_id|>",
    [T_MISTRAL_V1] = "</s>",           [T_MISTRAL_V3] = "</s>",     [T_MISTRAL_V3_TEKKEN] = "</s>",
    [T_MISTRAL_V7] = "</s>",           [T_MISTRAL_V7_TEKKEN] = "</s>", [T_PHI3] = "<|end|>",        [T_PHI4] = "<|im_end|>",
    [T_ZEPHYR] = "<|endoftext|>",      [T_GEMMA] = "<end_of_turn>", [T_OPENCHAT] = "<|end_of_turn|>",
    [T_VICUNA] = "</s>",               [T_VICUNA_ORCA] = "</s>",    [T_DEEPSEEK] = "<|EOT|>",
    [T_DEEPSEEK2] = DS_EOS,            [T_DEEPSEEK3] = DS_EOS,      [T_COMMAND_R] = "<|END_OF_TURN_TOKEN|>",
};

const char *const *lethe_chat_template_names(void) { return NAMES; }

static int family_of(const char *name) {
    if (!name) return -1;
    for (int f = 0; f < T_COUNT; f++)
        if (!strcmp(NAMES[f], name)) return f;
    return -1;
}

/* ---- detection ------------------------------------------------------------
 * The order and the markers are llama.cpp's (llm_chat_detect_template), so a
 * template lands in the family llama.cpp would put it in; the families
 * llama.cpp knows but lethe does not build in (smolvlm, chatglm, glmedge,
 * falcon3, monarch, orion, minicpm, ...) answer NULL at their place in the
 * order rather than falling through to a later, wrong match. */

static int detect(const char *t) {
    int f = family_of(t);
    if (f >= 0) return f;
#define HAS(s) (strstr(t, (s)) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>")) return T_PHI4;
        if (HAS("<end_of_utterance>")) return -1; /* smolvlm: <|im_start|> as BOS, not chatml */
        return T_CHATML;
    }
    if (!strncmp(t, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return T_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return T_MISTRAL_V1;
            if (HAS("\"[INST]\"")) return T_MISTRAL_V3_TEKKEN;
            return T_MISTRAL_V3;
        }
        if (HAS("content.strip()")) return T_LLAMA2_SYS_STRIP;
        if (HAS("bos_token + '[INST]")) return T_LLAMA2_SYS_BOS;
        if (HAS("<<SYS>>")) return T_LLAMA2_SYS;
        return T_LLAMA2;
    }
    if (HAS("<|assistant|>") && HAS("<|end|>")) return T_PHI3;
    if (HAS("[gMASK]<sop>")) return -1;                           /* chatglm4 */
    if (HAS("<|assistant|>") && HAS("<|user|>")) return -1;       /* falcon3, glmedge */
    if (HAS("<|{{ item['role'] }}|>") && HAS("<|begin_of_image|>")) return -1; /* glmedge */
    if (HAS("<|user|>") && HAS("<|endoftext|>")) return T_ZEPHYR;
    if (HAS("bos_token + message['role']")) return -1;           /* monarch */
    if (HAS("<start_of_turn>")) return T_GEMMA;
    if (HAS("'\\n\\nAssistant: ' + eos_token")) return -1;       /* orion */
    if (HAS("GPT4 Correct ")) return T_OPENCHAT;
    if (HAS("USER: ") && HAS("ASSISTANT: ")) return HAS("SYSTEM: ") ? T_VICUNA_ORCA : T_VICUNA;
    if (HAS("### Instruction:") && HAS("<|EOT|>")) return T_DEEPSEEK;
    if (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")) return T_COMMAND_R;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return T_LLAMA3;
    if (HAS("[gMASK]sop")) return -1;                             /* chatglm3 */
    if (HAS("<\xE7\x94\xA8\xE6\x88\xB7>")) return -1;             /* minicpm: <用户> */
    if (HAS("'Assistant: ' + message['content'] + eos_token")) return T_DEEPSEEK2;
    if (HAS(FW_BAR "Assistant" FW_BAR) && HAS(FW_BAR "User" FW_BAR) && HAS(DS_EOS)) return T_DEEPSEEK3;
#undef HAS
    return -1;
}

const char *lethe_chat_template_detect_text(const char *tmpl) {
    if (!tmpl) return NULL;
    int f = detect(tmpl);
    return f < 0 ? NULL : NAMES[f];
}

const char *lethe_chat_template_detect(const lethe_model *m) {
    return lethe_chat_template_detect_text(lethe_model_chat_template(m));
}

/* name, or the model's detected family; -1 when neither names one. */
static int resolve(const lethe_model *m, const char *name) {
    return name ? family_of(name) : family_of(lethe_chat_template_detect(m));
}

const char *lethe_chat_template_stop(const lethe_model *m, const char *name) {
    int f = resolve(m, name);
    return f < 0 ? NULL : STOPS[f];
}

/* ---- rendering ------------------------------------------------------------ */

/* The output: bytes past cap - 1 are counted, not written. */
typedef struct {
    char *out;
    size_t cap, n;
} sink;

static void put_n(sink *s, const char *p, size_t len) {
    if (s->n < s->cap) {
        size_t room = s->cap - 1 - s->n, k = len < room ? len : room;
        memcpy(s->out + s->n, p, k);
    }
    s->n += len;
}
static void put(sink *s, const char *p) { put_n(s, p, strlen(p)); }

/* isspace in the C locale, as llama.cpp's trim. */
static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static void put_trim(sink *s, const char *p) {
    size_t a = 0, b = strlen(p);
    while (a < b && space(p[a])) a++;
    while (b > a && space(p[b - 1])) b--;
    put_n(s, p + a, b - a);
}

static bool blank(const char *p) {
    for (; *p; p++)
        if (!space(*p)) return false;
    return true;
}

typedef enum { R_SYSTEM, R_USER, R_ASSISTANT, R_TOOL } role;

static int role_of(const char *r) {
    if (!strcmp(r, "system") || !strcmp(r, "developer")) return R_SYSTEM;
    if (!strcmp(r, "user")) return R_USER;
    if (!strcmp(r, "assistant")) return R_ASSISTANT;
    if (!strcmp(r, "tool")) return R_TOOL;
    return -1;
}

/* The role's name for the families that write it: developer as system. */
static const char *role_name(int r) {
    static const char *const n[] = {"system", "user", "assistant", "tool"};
    return n[r];
}

/* A turn the family has no role for ("tool" outside the families that name
 * roles) is a user turn. */
static int as_user(int r) { return r == R_TOOL ? R_USER : r; }

static void render_llama2(sink *s, int f, const lethe_chat_message *msgs, const int *roles, int n) {
    bool sys_block = f != T_LLAMA2, bos_inside = f == T_LLAMA2_SYS_BOS, strip = f == T_LLAMA2_SYS_STRIP;
    bool inside = true; /* the first [INST] is written up front; the tokeniser adds BOS */
    put(s, "[INST] ");
    for (int i = 0; i < n; i++) {
        int r = as_user(roles[i]);
        if (!inside) {
            inside = true;
            put(s, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        void (*body)(sink *, const char *) = strip ? put_trim : put;
        if (r == R_SYSTEM) {
            if (sys_block) {
                put(s, "<<SYS>>\n");
                body(s, msgs[i].content);
                put(s, "\n<</SYS>>\n\n");
            } else {
                body(s, msgs[i].content);
                put(s, "\n");
            }
        } else if (r == R_USER) {
            body(s, msgs[i].content);
            put(s, " [/INST]");
        } else {
            body(s, msgs[i].content);
            put(s, "</s>");
            inside = false;
        }
    }
}

static void render_mistral(sink *s, int f, const lethe_chat_message *msgs, const int *roles, int n) {
    if (f == T_MISTRAL_V7 || f == T_MISTRAL_V7_TEKKEN) {
        const char *sp = f == T_MISTRAL_V7 ? " " : "";
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM) put(s, "[SYSTEM_PROMPT]"), put(s, sp), put(s, msgs[i].content), put(s, "[/SYSTEM_PROMPT]");
            else if (r == R_USER) put(s, "[INST]"), put(s, sp), put(s, msgs[i].content), put(s, "[/INST]");
            else put(s, sp), put(s, msgs[i].content), put(s, "</s>");
        }
        return;
    }
    const char *lead = f == T_MISTRAL_V1 ? " " : "", *trail = f == T_MISTRAL_V3_TEKKEN ? "" : " ";
    bool inside = false;
    for (int i = 0; i < n; i++) {
        int r = as_user(roles[i]);
        if (!inside) {
            put(s, lead), put(s, "[INST]"), put(s, trail);
            inside = true;
        }
        if (r == R_SYSTEM) put(s, msgs[i].content), put(s, "\n\n");
        else if (r == R_USER) put(s, msgs[i].content), put(s, lead), put(s, "[/INST]");
        else {
            put(s, trail);
            if (f == T_MISTRAL_V3) put_trim(s, msgs[i].content);
            else put(s, msgs[i].content);
            put(s, "</s>");
            inside = false;
        }
    }
}

/* Gemma has user and model turns only: the system texts (trimmed, joined)
 * open the next user turn, followed by a blank line. */
static void render_gemma(sink *s, const lethe_chat_message *msgs, const int *roles, int n, bool gen) {
    int sys_from = 0; /* system messages in [sys_from, i) are still to be written */
    for (int i = 0; i < n; i++) {
        int r = as_user(roles[i]);
        if (r == R_SYSTEM) continue;
        put(s, "<start_of_turn>");
        put(s, r == R_ASSISTANT ? "model" : "user");
        put(s, "\n");
        if (r == R_USER) {
            bool any = false;
            for (int j = sys_from; j < i; j++)
                if (roles[j] == R_SYSTEM) {
                    put_trim(s, msgs[j].content);
                    any |= !blank(msgs[j].content);
                }
            if (any) put(s, "\n\n");
            if (any) sys_from = i + 1;
        }
        put_trim(s, msgs[i].content);
        put(s, "<end_of_turn>\n");
    }
    if (gen) put(s, "<start_of_turn>model\n");
}

static void render(sink *s, int f, const lethe_chat_message *msgs, const int *roles, int n, bool gen) {
    switch (f) {
    case T_CHATML:
        for (int i = 0; i < n; i++)
            put(s, "<|im_start|>"), put(s, role_name(roles[i])), put(s, "\n"), put(s, msgs[i].content), put(s, "<|im_end|>\n");
        if (gen) put(s, "<|im_start|>assistant\n");
        break;
    case T_PHI4:
        for (int i = 0; i < n; i++)
            put(s, "<|im_start|>"), put(s, role_name(roles[i])), put(s, "<|im_sep|>"), put(s, msgs[i].content), put(s, "<|im_end|>");
        if (gen) put(s, "<|im_start|>assistant<|im_sep|>");
        break;
    case T_LLAMA2:
    case T_LLAMA2_SYS:
    case T_LLAMA2_SYS_BOS:
    case T_LLAMA2_SYS_STRIP: render_llama2(s, f, msgs, roles, n); break;
    case T_MISTRAL_V1:
    case T_MISTRAL_V3:
    case T_MISTRAL_V3_TEKKEN:
    case T_MISTRAL_V7:
    case T_MISTRAL_V7_TEKKEN: render_mistral(s, f, msgs, roles, n); break;
    case T_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(s, "<|start_header_id|>");
            put(s, roles[i] == R_TOOL ? "ipython" : role_name(roles[i]));
            put(s, "<|end_header_id|>\n\n");
            put_trim(s, msgs[i].content);
            put(s, "<|eot_id|>");
        }
        if (gen) put(s, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case T_PHI3:
        for (int i = 0; i < n; i++)
            put(s, "<|"), put(s, role_name(roles[i])), put(s, "|>\n"), put(s, msgs[i].content), put(s, "<|end|>\n");
        if (gen) put(s, "<|assistant|>\n");
        break;
    case T_ZEPHYR:
        for (int i = 0; i < n; i++)
            put(s, "<|"), put(s, role_name(roles[i])), put(s, "|>\n"), put(s, msgs[i].content), put(s, "<|endoftext|>\n");
        if (gen) put(s, "<|assistant|>\n");
        break;
    case T_GEMMA: render_gemma(s, msgs, roles, n, gen); break;
    case T_OPENCHAT:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM) put(s, msgs[i].content);
            else put(s, r == R_USER ? "GPT4 Correct User: " : "GPT4 Correct Assistant: "), put(s, msgs[i].content);
            put(s, "<|end_of_turn|>");
        }
        if (gen) put(s, "GPT4 Correct Assistant:");
        break;
    case T_VICUNA:
    case T_VICUNA_ORCA:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM && f == T_VICUNA_ORCA) put(s, "SYSTEM: "), put(s, msgs[i].content), put(s, "\n");
            else if (r == R_SYSTEM) put(s, msgs[i].content), put(s, "\n\n");
            else if (r == R_USER) put(s, "USER: "), put(s, msgs[i].content), put(s, "\n");
            else put(s, "ASSISTANT: "), put(s, msgs[i].content), put(s, "</s>\n");
        }
        if (gen) put(s, "ASSISTANT:");
        break;
    case T_DEEPSEEK:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM) put(s, msgs[i].content);
            else if (r == R_USER) put(s, "### Instruction:\n"), put(s, msgs[i].content), put(s, "\n");
            else put(s, "### Response:\n"), put(s, msgs[i].content), put(s, "\n<|EOT|>\n");
        }
        if (gen) put(s, "### Response:\n");
        break;
    case T_DEEPSEEK2:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM) put(s, msgs[i].content), put(s, "\n\n");
            else if (r == R_USER) put(s, "User: "), put(s, msgs[i].content), put(s, "\n\n");
            else put(s, "Assistant: "), put(s, msgs[i].content), put(s, DS_EOS);
        }
        if (gen) put(s, "Assistant:");
        break;
    case T_DEEPSEEK3:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            if (r == R_SYSTEM) put(s, msgs[i].content), put(s, "\n\n");
            else if (r == R_USER) put(s, FW_BAR "User" FW_BAR), put(s, msgs[i].content);
            else put(s, FW_BAR "Assistant" FW_BAR), put(s, msgs[i].content), put(s, DS_EOS);
        }
        if (gen) put(s, FW_BAR "Assistant" FW_BAR);
        break;
    case T_COMMAND_R:
        for (int i = 0; i < n; i++) {
            int r = as_user(roles[i]);
            put(s, r == R_SYSTEM ? "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>"
                   : r == R_USER ? "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"
                                 : "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
            put_trim(s, msgs[i].content);
            put(s, "<|END_OF_TURN_TOKEN|>");
        }
        if (gen) put(s, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
        break;
    }
}

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...) {
    char msg[LETHE_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    copy_error(err, err_size, msg);
    return -1;
}

/* "chatml, llama2, ..." into buf. */
static const char *name_list(char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int f = 0; f < T_COUNT && k < cap; f++) k += (size_t)snprintf(buf + k, cap - k, "%s%s", f ? ", " : "", NAMES[f]);
    return buf;
}

int lethe_chat_apply(const lethe_model *m, const char *name, const lethe_chat_message *msgs, int n,
                     bool add_generation_prompt, char *out, int cap, char *err, size_t err_size) {
    char names[512];
    if (n < 0 || (n > 0 && !msgs)) return fail(err, err_size, "lethe_chat_apply: no messages (n = %d)", n);
    if (cap < 0 || (cap > 0 && !out)) return fail(err, err_size, "lethe_chat_apply: no output buffer (cap = %d)", cap);
    int f;
    if (name) {
        if ((f = family_of(name)) < 0)
            return fail(err, err_size, "unknown chat template '%s' (%s)", name, name_list(names, sizeof names));
    } else if (!m) {
        return fail(err, err_size, "lethe_chat_apply: no model and no template name");
    } else if ((f = resolve(m, NULL)) < 0) {
        return fail(err, err_size, "%s: name a template (%s)",
                    lethe_model_chat_template(m) ? "the model's chat template is not one lethe recognises"
                                                 : "the model has no chat template",
                    name_list(names, sizeof names));
    }
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return fail(err, err_size, "message %d has no %s", i, msgs[i].role ? "content" : "role");
        if (role_of(msgs[i].role) < 0)
            return fail(err, err_size, "message %d: unknown role '%.64s' (system, developer, user, assistant, tool)", i,
                        msgs[i].role);
    }
    enum { STACK_ROLES = 256 };
    int stack_roles[STACK_ROLES], *roles = stack_roles;
    if (n > STACK_ROLES && !(roles = malloc((size_t)n * sizeof *roles))) return fail(err, err_size, "out of memory");
    for (int i = 0; i < n; i++) roles[i] = role_of(msgs[i].role);
    sink s = {out, (size_t)cap, 0};
    render(&s, f, msgs, roles, n, add_generation_prompt);
    if (roles != stack_roles) free(roles);
    if (cap > 0) out[s.n < s.cap ? s.n : s.cap - 1] = 0;
    if (s.n > INT_MAX) return fail(err, err_size, "lethe_chat_apply: the rendered chat is over %d bytes", INT_MAX);
    return (int)s.n;
}
