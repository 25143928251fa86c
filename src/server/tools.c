/* Client-declared tools. A request that declares `tools` gets the model's
 * calls back as OpenAI tool_calls: the Hermes / Qwen form
 * <tool_call>{"name": ..., "arguments": {...}}</tool_call> is taken out of
 * the generated text, parsed, and turned into
 * {"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}.
 * Text before the blocks stays the message's content; once a call has been
 * made, anything but another block (or white space) ends the turn, so
 * parallel calls are kept and nothing after them is. (Tools the server
 * was started with run inside the inference instead: src/memory.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "server/server.h"

static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";

/* Longest k < strlen(tag) with the last k bytes of h a prefix of tag. */
static size_t partial(const char *h, size_t n, const char *tag) {
    size_t l = strlen(tag);
    for (size_t k = l - 1 < n ? l - 1 : n; k > 0; k--)
        if (!memcmp(h + n - k, tag, k)) return k;
    return 0;
}

static bool add_call(srv_toolscan *t, const char *json, size_t n) {
    cJSON *o = cJSON_ParseWithLength(json, n);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!cJSON_IsString(name)) { /* not a call: give the text back as it was */
        cJSON_Delete(o);
        return false;
    }
    if (!t->list) t->list = cJSON_CreateArray();
    cJSON *call = cJSON_CreateObject(), *fn;
    char id[40];
    snprintf(id, sizeof id, "call_%08lx%04x", (unsigned long)time(NULL) ^ (unsigned long)(uintptr_t)t, (unsigned)t->n);
    cJSON_AddStringToObject(call, "id", id);
    cJSON_AddStringToObject(call, "type", "function");
    fn = cJSON_AddObjectToObject(call, "function");
    cJSON_AddStringToObject(fn, "name", name->valuestring);
    char *a = args ? (cJSON_IsString(args) ? NULL : cJSON_PrintUnformatted(args)) : NULL;
    cJSON_AddStringToObject(fn, "arguments", a ? a : cJSON_IsString(args) ? args->valuestring : "{}");
    free(a);
    cJSON_AddItemToArray(t->list, call);
    t->n++;
    cJSON_Delete(o);
    return true;
}

static bool blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\n' && p[i] != '\t' && p[i] != '\r') return false;
    return true;
}

void srv_tools_push(srv_toolscan *t, const char *text, size_t n, sbuf *out) {
    if (t->ended) return;
    sbuf_put(&t->hold, text, n);
    for (;;) {
        if (t->ended) { t->hold.n = 0; return; }
        const char *h = t->hold.v ? t->hold.v : "";
        size_t hn = t->hold.n;
        const char *tag = t->inside ? CLOSE : OPEN;
        const char *at = hn ? memmem(h, hn, tag, strlen(tag)) : NULL;
        if (!at) {
            size_t keep = partial(h, hn, tag);
            if (t->inside) sbuf_put(&t->block, h, hn - keep);
            else if (t->n && !blank(h, hn - keep)) t->ended = true; /* after the calls: the turn is over */
            else if (!t->n) sbuf_put(out, h, hn - keep);
            memmove(t->hold.v, h + hn - keep, keep);
            t->hold.n = keep;
            return;
        }
        size_t before = (size_t)(at - h), after = before + strlen(tag);
        if (t->inside) {
            sbuf_put(&t->block, h, before);
            if (!add_call(t, t->block.v ? t->block.v : "", t->block.n)) { /* not JSON of a call: the text was content after all */
                sbuf_puts(out, OPEN);
                sbuf_put(out, t->block.v, t->block.n);
                sbuf_puts(out, CLOSE);
            }
            t->block.n = 0;
            t->inside = false;
        } else {
            if (t->n && !blank(h, before)) t->ended = true;
            else if (!t->n) sbuf_put(out, h, before);
            t->inside = true;
        }
        memmove(t->hold.v, h + after, hn - after);
        t->hold.n = hn - after;
    }
}

void srv_tools_flush(srv_toolscan *t, sbuf *out) {
    srv_tools_push(t, "", 0, out);
    if (t->ended || t->n) { /* text after the calls is dropped */
        t->hold.n = t->block.n = 0;
        t->inside = false;
        return;
    }
    if (t->inside) { /* an unfinished block is text */
        sbuf_puts(out, OPEN);
        sbuf_put(out, t->block.v, t->block.n);
    }
    sbuf_put(out, t->hold.v, t->hold.n);
    t->hold.n = t->block.n = 0;
    t->inside = false;
}

void srv_tools_free(srv_toolscan *t) {
    sbuf_free(&t->block);
    sbuf_free(&t->hold);
    cJSON_Delete(t->list);
    t->list = NULL;
}
