/* Tag markers on the decoded text, matched byte by byte over a small window
 * (so a tag split across tokens, or spelt in several tokens, still matches):
 *   <think> ... </think>      "think": a span from the '<' of <think> to the
 *                             first byte of the answer after </think> (the
 *                             blank between belongs to the block); once the
 *                             answer starts the block joins a FIFO of closed
 *                             blocks and the oldest beyond think_keep are
 *                             pruned;
 *   <tool_call> ... </tool_call>      a Hermes / Qwen tool call (its body is
 *                             the JSON {"name": ..., "arguments": ...});
 *   <tool_response> ... </tool_response>   a tool result span, pruned
 *                             ("tool") at the next </think> or <|im_end|>,
 *                             the end of the text that consumed it. */
#include <string.h>

#include "memory/memory.h"

#define HERMES_OWNER (-2)

void tag_scan_init(tag_scan *t) {
    memset(t, 0, sizeof *t);
    t->think_open = t->think_wait = t->response_open = -1;
}

static bool ends_with(const tag_scan *t, const char *tag) {
    int n = (int)strlen(tag);
    return t->n_win >= n && !memcmp(t->win + t->n_win - n, tag, (size_t)n);
}

static void prune_responses(lethe_memory *mem) {
    if (!mem->r_tool) return;
    for (int k = 0; k < mem->n_spans; k++) {
        const mem_span *sp = &mem->spans[k];
        if (sp->info.kind == LETHE_SPAN_TOOL_RESULT && sp->owner == HERMES_OWNER && sp->info.state == LETHE_SPAN_CLOSED)
            mem_request_prune(mem, k);
    }
}

void tag_scan_byte(lethe_memory *mem, tag_scan *t, char ch, long off) {
    if (t->think_wait >= 0 && ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r') {
        int id = t->think_wait;
        t->think_wait = -1;
        mem_span_close_at(mem, id, off);
        if (mem->r_think && mem_fifo_push(&mem->think_fifo, &mem->n_think_fifo, &mem->cap_think_fifo, id)) {
            while (mem->n_think_fifo > mem->p.think_keep) {
                int old = mem->think_fifo[0];
                memmove(mem->think_fifo, mem->think_fifo + 1, (size_t)--mem->n_think_fifo * sizeof *mem->think_fifo);
                mem_request_prune(mem, old);
            }
        }
    }
    if (t->cap_call) mem_capture(mem, &ch, 1);
    if (t->n_win == (int)sizeof t->win) {
        memmove(t->win, t->win + 1, sizeof t->win - 1);
        t->n_win--;
    }
    t->win[t->n_win++] = ch;
    if (ch != '>') return;
    if (ends_with(t, "</think>")) {
        if (t->think_open >= 0) {
            t->think_wait = t->think_open;
            t->think_open = -1;
        }
        prune_responses(mem);
    } else if (ends_with(t, "<think>")) {
        if (t->think_open < 0) t->think_open = mem_span_open_at(mem, LETHE_SPAN_THINK, off - 6, 0);
    } else if (ends_with(t, "</tool_call>")) {
        if (t->cap_call) {
            t->cap_call = false;
            mem->n_cap = mem->n_cap >= 12 ? mem->n_cap - 12 : 0;
            if (mem->cap) mem->cap[mem->n_cap] = 0;
            mem->call_ready = true;
            mem->call_form = 1;
        }
    } else if (ends_with(t, "<tool_call>")) {
        if (mem->n_tools > 0 && !mem->tools_busy) {
            t->cap_call = true;
            mem->n_cap = 0;
            mem->cap_overflow = false;
        }
    } else if (ends_with(t, "</tool_response>")) {
        if (t->response_open >= 0) mem_span_close_at(mem, t->response_open, off + 1);
        t->response_open = -1;
    } else if (ends_with(t, "<tool_response>")) {
        if (t->response_open < 0) {
            t->response_open = mem_span_open_at(mem, LETHE_SPAN_TOOL_RESULT, off - 14, 0);
            if (t->response_open >= 0) mem->spans[t->response_open].owner = HERMES_OWNER;
        }
    } else if (ends_with(t, "<|im_end|>")) {
        prune_responses(mem);
    }
}
