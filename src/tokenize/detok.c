/* Token -> bytes (llama.cpp's token_to_piece) and the streaming detokeniser.
 *
 * Pieces are computed once at load time, as llama.cpp caches them:
 *   CONTROL / UNKNOWN / USER_DEFINED: the token text itself (CONTROL and
 *     UNKNOWN only when render_special is set, else nothing);
 *   SPM NORMAL: the text with U+2581 turned back into spaces;
 *   SPM BYTE "<0xNN>": the byte NN;
 *   BPE NORMAL: each code point of the text mapped back through GPT-2's byte
 *     alphabet (a code point outside it is copied as UTF-8: llama.cpp writes
 *     an "[UNK_BYTE_...]" marker there instead);
 *   anything else (UNUSED, undefined, BPE BYTE): nothing. */
#include <stdlib.h>
#include <string.h>

#include "tokenize/tok_internal.h"

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Writes the piece of id into o (room for text_len bytes); returns its size. */
static size_t make_piece(const tokenizer *t, lethe_token id, const int16_t *inv, char *o) {
    const char *s = tok_text(t, id);
    size_t n = t->text_len[id];
    uint16_t a = t->attr[id];
    if (a & (TA_CONTROL | TA_UNKNOWN | TA_USER_DEFINED)) {
        memcpy(o, s, n);
        return n;
    }
    if (t->model == TOK_SPM) {
        if (a & TA_NORMAL) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    o[k++] = ' ';
                    i += 2;
                } else {
                    o[k++] = s[i];
                }
            }
            return k;
        }
        if (a & TA_BYTE) {
            /* like strtol(text.substr(3, 2), 16) */
            int v = 0;
            for (size_t i = 3; i < 5 && i < n && hexval(s[i]) >= 0; i++) v = v * 16 + hexval(s[i]);
            o[0] = (char)v;
            return 1;
        }
        return 0;
    }
    if (!(a & TA_NORMAL)) return 0;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) { /* not UTF-8: keep the byte */
            o[k++] = s[i++];
            continue;
        }
        if (cp < GPT2_N_CP && inv[cp] >= 0) {
            o[k++] = (char)inv[cp];
        } else {
            memcpy(o + k, s + i, (size_t)len);
            k += (size_t)len;
        }
        i += (size_t)len;
    }
    return k;
}

bool tok_build_pieces(tokenizer *t) {
    int16_t inv[GPT2_N_CP];
    gpt2_byte_inverse(inv);
    /* a piece is never longer than its text */
    t->piece = malloc(t->text_used ? t->text_used : 1);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece || !t->piece_off || !t->piece_len) return false;
    size_t used = 0;
    t->max_piece = 0;
    for (lethe_token id = 0; id < t->n_vocab; id++) {
        size_t k = make_piece(t, id, inv, t->piece + used);
        t->piece_off[id] = used;
        t->piece_len[id] = (uint32_t)k;
        used += k;
        if (k > t->max_piece) t->max_piece = k;
    }
    /* keeps piece sizes, and the detokeniser's counts, within int */
    return t->max_piece <= INT32_MAX - 8;
}

int tokenizer_max_piece(const tokenizer *t) { return t ? (int)t->max_piece : -1; }

const char *tok_piece_ref(const tokenizer *t, lethe_token id, bool render_special, size_t *n) {
    if (!render_special && (t->attr[id] & (TA_CONTROL | TA_UNKNOWN))) {
        *n = 0;
        return "";
    }
    *n = t->piece_len[id];
    return t->piece + t->piece_off[id];
}

int tokenizer_piece(const tokenizer *t, lethe_token id, char *buf, int cap, bool render_special) {
    if (!t || id < 0 || id >= t->n_vocab || cap < 0 || (cap > 0 && !buf)) return -1;
    size_t n;
    const char *p = tok_piece_ref(t, id, render_special, &n);
    if (n > 0 && cap > 0) memcpy(buf, p, n < (size_t)cap ? n : (size_t)cap);
    return (int)n;
}

/* ---- streaming ----------------------------------------------------------
 * Rule: a byte is emitted as soon as it is known to be either part of a
 * complete, valid UTF-8 character or invalid. The only bytes held back are
 * a trailing lead byte plus the continuation bytes seen so far while they
 * are still a valid prefix (at most 3 bytes, e.g. E2 82 of "€"). When the
 * next byte cannot continue it, the lead byte is emitted on its own as-is
 * (invalid bytes are passed through, never dropped or replaced) and
 * scanning resumes at the byte after it. detok_stream_flush emits whatever
 * is still held. So the concatenated output equals the concatenated pieces,
 * and it never splits a valid character across two calls. */

void detok_stream_init(detok_stream *d) {
    if (d) d->n_pending = 0;
}

static unsigned char byte_at(const detok_stream *d, const char *p, size_t i) {
    return (unsigned char)(i < (size_t)d->n_pending ? d->pending[i] : p[i - (size_t)d->n_pending]);
}

int detok_stream_push(detok_stream *d, const tokenizer *t, lethe_token id, char *out, int cap,
                      bool render_special) {
    if (!d || !t || id < 0 || id >= t->n_vocab || cap < 0 || (cap > 0 && !out)) return -1;
    if (d->n_pending < 0 || d->n_pending > 3) return -1;
    size_t n;
    const char *p = tok_piece_ref(t, id, render_special, &n);
    size_t total = (size_t)d->n_pending + n, i = 0;
    while (i < total) {
        unsigned char c = byte_at(d, p, i);
        if (c < 0x80) {
            i++;
            continue;
        }
        unsigned char tmp[4];
        size_t m = total - i < 4 ? total - i : 4;
        for (size_t j = 0; j < m; j++) tmp[j] = byte_at(d, p, i + j);
        int k = utf8_check(tmp, m);
        if (k < 0) break;          /* valid but incomplete: hold from i */
        i += k > 0 ? (size_t)k : 1; /* complete character, or one invalid byte */
    }
    if (i > (size_t)cap) return (int)i; /* nothing consumed: retry with cap >= i */
    for (size_t j = 0; j < i; j++) out[j] = (char)byte_at(d, p, j);
    char keep[8];
    size_t nk = total - i;
    for (size_t j = 0; j < nk; j++) keep[j] = (char)byte_at(d, p, i + j);
    memcpy(d->pending, keep, nk);
    d->n_pending = (int)nk;
    return (int)i;
}

int detok_stream_flush(detok_stream *d, char *out, int cap) {
    if (!d || cap < 0 || (cap > 0 && !out) || d->n_pending < 0 || d->n_pending > 3) return -1;
    if (d->n_pending > cap) return d->n_pending; /* nothing consumed */
    if (d->n_pending > 0) memcpy(out, d->pending, (size_t)d->n_pending);
    int n = d->n_pending;
    d->n_pending = 0;
    return n;
}
