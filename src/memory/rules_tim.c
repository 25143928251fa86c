/* The "tim" and "tool" rules on TIM's JSON reasoning tree: an incremental
 * JSON scanner over the decoded text, one byte at a time. It tracks strings
 * and escapes and a stack of containers, each with the key that opened it:
 *   "subtasks": [ ... ]   a span over the inside of the list, closed at its
 *                         closing bracket and pushed to the prune buffer;
 *                         once the buffer holds more than prune_buffer lists
 *                         the oldest is pruned;
 *   "thought" / "conclusion" string values: spans (never pruned themselves);
 *   "tooluse": {"tool_name": ..., "parameters": ...}: a tool call, ready
 *                         when the parameters' value ends;
 *   "tool_result": VALUE  a span, pruned ("tool" rule) once the "conclusion"
 *                         of the task holding it has closed.
 * Text outside any container (prose around the JSON) is ignored. */
#include <string.h>

#include "memory/memory.h"

void json_scan_init(json_scan *j) {
    memset(j, 0, sizeof *j);
    j->value_span = -1;
}

static json_frame *top(json_scan *j) { return j->depth > 0 ? &j->stack[j->depth - 1] : NULL; }

static bool is_tooluse(const json_frame *f) { return f && f->type == '{' && !strcmp(f->key, "tooluse"); }

/* The byte offset of the task object a tool result belongs to. */
static long task_owner(json_scan *j) {
    json_frame *t = top(j);
    if (!t) return -1;
    if (is_tooluse(t) && j->depth >= 2) return j->stack[j->depth - 2].open_off;
    return t->open_off;
}

static const char *value_key(json_scan *j) {
    json_frame *t = top(j);
    return t && t->type == '{' ? j->cur_key : "";
}

static bool want_calls(const lethe_memory *mem) { return mem->n_tools > 0 && !mem->tools_busy; }

static void start_call_capture(lethe_memory *mem, json_scan *j, char ch) {
    mem->n_cap = 0;
    mem->cap_overflow = false;
    mem_capture(mem, &ch, 1);
    j->cap_params = true;
    j->params_depth = j->depth;
}

static void value_start(lethe_memory *mem, json_scan *j, char ch, long off) {
    const char *k = value_key(j);
    j->value_span = -1;
    if (!strcmp(k, "thought")) j->value_span = mem_span_open_at(mem, LETHE_SPAN_THOUGHT, off, 0);
    else if (!strcmp(k, "conclusion")) j->value_span = mem_span_open_at(mem, LETHE_SPAN_CONCLUSION, off, 0);
    else if (!strcmp(k, "tool_result")) {
        j->value_span = mem_span_open_at(mem, LETHE_SPAN_TOOL_RESULT, off, 0);
        if (j->value_span >= 0) mem->spans[j->value_span].owner = task_owner(j);
    } else if (!strcmp(k, "tool_name") && is_tooluse(top(j))) {
        j->cap_name = true;
        mem->call_name[0] = 0;
    } else if (!strcmp(k, "parameters") && is_tooluse(top(j)) && want_calls(mem)) {
        start_call_capture(mem, j, ch); /* a string as the parameters */
        j->params_depth = -1;
    }
}

static void prune_consumed_results(lethe_memory *mem, long owner) {
    for (int k = 0; k < mem->n_spans; k++) {
        const mem_span *sp = &mem->spans[k];
        if (sp->info.kind == LETHE_SPAN_TOOL_RESULT && sp->info.state == LETHE_SPAN_CLOSED && sp->owner == owner && owner >= 0)
            mem_request_prune(mem, k);
    }
}

static void string_end(lethe_memory *mem, json_scan *j, long off) {
    if (j->str_is_key) return; /* strbuf holds the key until its ':' */
    if (j->value_span >= 0) {
        int id = j->value_span;
        mem_span_close_at(mem, id, off + 1);
        if (mem->r_tool && mem->spans[id].info.kind == LETHE_SPAN_CONCLUSION && top(j)) prune_consumed_results(mem, top(j)->open_off);
        j->value_span = -1;
    }
    j->cap_name = false;
    if (j->cap_params && j->params_depth == -1) {
        j->cap_params = false;
        mem->call_ready = true;
        mem->call_form = 0;
    }
}

static void add_str(lethe_memory *mem, json_scan *j, char ch) {
    if (j->str_is_key) {
        if (j->strlen_ < JSON_KEY_MAX - 1) j->strbuf[j->strlen_++] = ch;
        j->strbuf[j->strlen_] = 0;
    } else if (j->cap_name) {
        size_t n = strlen(mem->call_name);
        if (n + 1 < sizeof mem->call_name) mem->call_name[n] = ch, mem->call_name[n + 1] = 0;
    }
}

static void open_container(lethe_memory *mem, json_scan *j, char ch, long off) {
    if (j->depth >= JSON_MAX_DEPTH) { j->overflow++; return; }
    const char *k = value_key(j);
    const bool parent_tooluse = is_tooluse(top(j));
    long owner = task_owner(j);
    json_frame *f = &j->stack[j->depth++];
    memset(f, 0, sizeof *f);
    f->type = ch;
    strcpy(f->key, k);
    f->span = -1;
    f->open_off = off;
    if (ch == '[' && !strcmp(f->key, "subtasks")) {
        int lvl = 1;
        for (int d = 0; d < j->depth - 1; d++) lvl += j->stack[d].span >= 0 && mem->spans[j->stack[d].span].info.kind == LETHE_SPAN_SUBTASKS;
        f->span = mem_span_open_at(mem, LETHE_SPAN_SUBTASKS, off + 1, lvl);
    } else if (!strcmp(f->key, "tool_result")) {
        f->span = mem_span_open_at(mem, LETHE_SPAN_TOOL_RESULT, off, 0);
        if (f->span >= 0) mem->spans[f->span].owner = owner;
    }
    if (!strcmp(f->key, "parameters") && parent_tooluse && want_calls(mem) && !j->cap_params) start_call_capture(mem, j, ch);
    j->expect_key = ch == '{';
    j->cur_key[0] = 0;
}

static void close_container(lethe_memory *mem, json_scan *j, long off) {
    if (j->overflow) { j->overflow--; return; }
    if (j->depth == 0) return;
    json_frame f = j->stack[--j->depth];
    if (f.span >= 0) {
        if (mem->spans[f.span].info.kind == LETHE_SPAN_SUBTASKS) {
            mem_span_close_at(mem, f.span, off);
            if (mem->r_tim && mem_fifo_push(&mem->tim_fifo, &mem->n_tim_fifo, &mem->cap_tim_fifo, f.span)) {
                while (mem->n_tim_fifo > mem->p.prune_buffer) {
                    int id = mem->tim_fifo[0];
                    memmove(mem->tim_fifo, mem->tim_fifo + 1, (size_t)--mem->n_tim_fifo * sizeof *mem->tim_fifo);
                    mem_request_prune(mem, id);
                }
            }
        } else {
            mem_span_close_at(mem, f.span, off + 1);
        }
    }
    if (j->cap_params && j->params_depth == j->depth + 1) {
        j->cap_params = false;
        mem->call_ready = true;
        mem->call_form = 0;
    }
    j->expect_key = false;
    j->cur_key[0] = 0;
}

void json_scan_byte(lethe_memory *mem, json_scan *j, char ch, long off) {
    if (j->cap_params) mem_capture(mem, &ch, 1);
    if (j->in_str) {
        if (j->esc) j->esc = false, add_str(mem, j, ch);
        else if (ch == '\\') j->esc = true;
        else if (ch == '"') j->in_str = false, string_end(mem, j, off);
        else add_str(mem, j, ch);
        return;
    }
    if (j->depth == 0 && !j->overflow && ch != '{' && ch != '[') return; /* prose */
    json_frame *t = top(j);
    switch (ch) {
    case '"':
        j->in_str = true;
        j->esc = false;
        j->strlen_ = 0;
        j->strbuf[0] = 0;
        j->str_is_key = t && t->type == '{' && j->expect_key;
        if (!j->str_is_key) value_start(mem, j, ch, off);
        break;
    case ':':
        if (t && t->type == '{') {
            strcpy(j->cur_key, j->strbuf);
            j->expect_key = false;
        }
        break;
    case ',':
        if (t && t->type == '{') {
            j->expect_key = true;
            j->cur_key[0] = 0;
        }
        break;
    case '{':
    case '[': open_container(mem, j, ch, off); break;
    case '}':
    case ']': close_container(mem, j, off); break;
    default: break;
    }
}

/* ---- small JSON helpers --------------------------------------------------- */

static long skip_ws(const char *s, long n, long i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static long string_end_at(const char *s, long n, long i) { /* s[i] == '"' */
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return -1;
}

long json_value_end(const char *s, long n, long i) {
    i = skip_ws(s, n, i);
    if (i >= n) return -1;
    if (s[i] == '"') return string_end_at(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        for (; i < n; i++) {
            char ch = s[i];
            if (ch == '"') {
                long e = string_end_at(s, n, i);
                if (e < 0) return -1;
                i = e - 1;
            } else if (ch == '{' || ch == '[') depth++;
            else if (ch == '}' || ch == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return -1;
    }
    long e = i;
    while (e < n && (s[e] == '-' || s[e] == '+' || s[e] == '.' || (s[e] >= '0' && s[e] <= '9') || (s[e] >= 'a' && s[e] <= 'z') ||
                     (s[e] >= 'A' && s[e] <= 'Z')))
        e++;
    return e > i ? e : -1;
}

bool json_member(const char *s, long n, const char *key, long *v0, long *v1) {
    long i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{') return false;
    i++;
    size_t kl = strlen(key);
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != '"') return false;
        long ke = string_end_at(s, n, i);
        if (ke < 0) return false;
        bool match = (size_t)(ke - i - 2) == kl && !memcmp(s + i + 1, key, kl);
        i = skip_ws(s, n, ke);
        if (i >= n || s[i] != ':') return false;
        i = skip_ws(s, n, i + 1);
        long e = json_value_end(s, n, i);
        if (e < 0) return false;
        if (match) {
            *v0 = i;
            *v1 = e;
            return true;
        }
        i = skip_ws(s, n, e);
        if (i >= n || s[i] != ',') return false;
        i++;
    }
}
