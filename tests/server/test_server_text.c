/* The server's text handling: stop strings (held back while they may still
 * begin, cut exactly at the first one, split across tokens at any point)
 * and UTF-8 (validation, replacement of invalid bytes). */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "testutil.h"

/* Feeds text in pieces of `step` bytes; returns what was released. */
static char *run_stop(const char *text, size_t step, char **stops, int n, bool *stopped) {
    srv_stop st;
    srv_stop_init(&st, stops, n);
    sbuf out = {0};
    size_t len = strlen(text);
    for (size_t i = 0; i < len && !st.stopped; i += step) {
        size_t k = len - i < step ? len - i : step;
        size_t before = out.n;
        srv_stop_push(&st, text + i, k, &out);
        /* nothing released may be the start of a stop string still open */
        CHECK(out.n >= before);
    }
    *stopped = st.stopped;
    srv_stop_flush(&st, &out);
    srv_stop_free(&st);
    char *r = strdup(out.v ? out.v : "");
    sbuf_free(&out);
    return r;
}

static void test_stops(void) {
    char *stops[] = {"STOP", "\n\n", "abc"};
    const char *text = "hello ab world\nfoo\n\nbar STOP baz";
    for (size_t step = 1; step <= 8; step++) {
        bool stopped;
        char *r = run_stop(text, step, stops, 3, &stopped);
        CHECKF(!strcmp(r, "hello ab world\nfoo") && stopped, "step %zu: '%s'", step, r);
        free(r);
    }
    /* no stop: everything comes out, held text included at the end */
    bool stopped;
    char *r = run_stop("it ends with ab", 3, stops, 3, &stopped);
    CHECK(!strcmp(r, "it ends with ab") && !stopped);
    free(r);
    /* the earliest of two overlapping stops wins */
    char *st2[] = {"bcd", "abcx"};
    r = run_stop("xxabcd", 1, st2, 2, &stopped);
    CHECKF(!strcmp(r, "xxa") && stopped, "'%s'", r);
    free(r);
    /* held back, then released when the stop turns out not to come */
    srv_stop st;
    char *one[] = {"END"};
    srv_stop_init(&st, one, 1);
    sbuf out = {0};
    srv_stop_push(&st, "the EN", 6, &out);
    CHECK(out.n == 4 && !memcmp(out.v, "the ", 4));
    srv_stop_push(&st, "D", 1, &out);
    CHECK(st.stopped && out.n == 4);
    sbuf_free(&out);
    srv_stop_free(&st);
    /* a multi-byte stop never splits a character */
    char *u[] = {"\xc3\xa9t\xc3\xa9"}; /* "été" */
    r = run_stop("un \xc3\xa9l\xc3\xa9phant, un \xc3\xa9t\xc3\xa9", 1, u, 1, &stopped);
    CHECKF(!strcmp(r, "un \xc3\xa9l\xc3\xa9phant, un ") && stopped, "'%s'", r);
    CHECK(srv_utf8_valid(r, strlen(r)));
    free(r);
}

static void test_utf8(void) {
    CHECK(srv_utf8_valid("plain", 5));
    CHECK(srv_utf8_valid("\xe2\x82\xac \xf0\x9f\x98\x80", 8));
    CHECK(!srv_utf8_valid("\xff", 1));
    CHECK(!srv_utf8_valid("\xc3", 1));             /* truncated */
    CHECK(!srv_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!srv_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!srv_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    sbuf b = {0};
    srv_utf8_sanitize(&b, "a\xff" "b\xc3", 4);
    CHECK(b.n == 8 && !memcmp(b.v, "a\xef\xbf\xbd" "b\xef\xbf\xbd", 8));
    CHECK(srv_utf8_valid(b.v, b.n));
    sbuf_free(&b);
}

int main(void) {
    test_stops();
    test_utf8();
    return tu_finish("test_server_text");
}
