/* tokenizer_from_llama2c: llama2.c's tokenizer.bin
 *   uint32 max_token_length, then per token: float32 score, int32 length,
 *   the bytes (little-endian, no terminator).
 * llama2.c's exporter writes pieces with ' ' for U+2581 and ids 1 / 2 as
 * "\n<s>\n" / "\n</s>\n". We rebuild the SPM vocabulary that llama.cpp's
 * convert-llama2c-to-ggml makes from it: id 0 "<unk>" (UNKNOWN), 1 "<s>"
 * and 2 "</s>" (CONTROL), "<0xNN>" pieces BYTE, empty pieces CONTROL, the
 * rest NORMAL; spaces back to U+2581; BOS 1, EOS 2, UNK 0, add BOS. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenize/tok_internal.h"
#include "util/error.h"

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The whole file; only a regular file is read (O_NONBLOCK: a named pipe
 * is refused, not waited on). */
static unsigned char *read_all(const char *path, size_t *size, char *err, lethe_status *st) {
    *size = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        *st = set_error(err, LETHE_ERR_IO, "cannot open tokenizer '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    unsigned char *buf = NULL;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        *st = set_error(err, LETHE_ERR_IO, "tokenizer '%s' is not a regular file", path);
    } else if (!(buf = malloc((size_t)sb.st_size + 1))) {
        *st = set_error(err, LETHE_ERR_NOMEM, "out of memory reading %s", path);
    } else {
        size_t n = (size_t)sb.st_size, got = 0;
        while (got < n) {
            ssize_t r = read(fd, buf + got, n - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got != n) {
            *st = set_error(err, LETHE_ERR_IO, "short read on %s", path);
            free(buf);
            buf = NULL;
        }
        *size = n;
    }
    close(fd);
    return buf;
}

/* Whole token records from off to the end, or -1 when the rest is not
 * made of them: tells "more tokens than the checkpoint" from garbage. */
static long count_records(const unsigned char *buf, size_t size, size_t off) {
    long n = 0;
    while (off < size) {
        if (size - off < 8) return -1;
        int32_t len = (int32_t)le32(buf + off + 4);
        if (len < 0 || (size_t)len > size - off - 8) return -1;
        off += 8 + (size_t)len;
        n++;
    }
    return n;
}

static bool is_byte_piece(const unsigned char *s, size_t n) {
    /* sscanf(text, "<0x%02hhX>") == 1 in the converter */
    return n >= 4 && memcmp(s, "<0x", 3) == 0 && isxdigit(s[3]);
}

/* Piece i as the GGUF converter stores it; returns its length in out. */
static size_t convert_piece(int i, const unsigned char *s, size_t n, char *out, int *type) {
    static const char *const fixed[3] = {"<unk>", "<s>", "</s>"};
    static const int fixed_type[3] = {TT_UNKNOWN, TT_CONTROL, TT_CONTROL};
    if (i < 3) {
        *type = fixed_type[i];
        strcpy(out, fixed[i]);
        return strlen(fixed[i]);
    }
    if (n == 0) *type = TT_CONTROL;
    else if (is_byte_piece(s, n)) *type = TT_BYTE;
    else *type = TT_NORMAL;
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (s[j] == ' ') {
            memcpy(out + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            out[k++] = (char)s[j];
        }
    }
    return k;
}

tokenizer *tokenizer_from_llama2c(const char *path, int n_vocab, char *err, lethe_status *status) {
    lethe_status st = LETHE_OK, dummy;
    if (!status) status = &dummy;
    if (!path || n_vocab <= 0) {
        *status = set_error(err, LETHE_ERR_ARG, "tokenizer_from_llama2c: bad arguments");
        return NULL;
    }
    size_t size;
    unsigned char *buf = read_all(path, &size, err, &st);
    if (!buf) {
        *status = st;
        return NULL;
    }

    /* pass 1: validate and size */
    size_t off = 4, bytes = 0, max_piece = 0;
    if (size < 4) goto bad;
    for (int i = 0; i < n_vocab; i++) {
        if (size - off < 8) goto bad;
        int32_t len = (int32_t)le32(buf + off + 4);
        if (len < 0 || (size_t)len > size - off - 8) goto bad;
        size_t conv = (size_t)len * 3 + 8;
        bytes += conv + 24;
        if (conv > max_piece) max_piece = conv;
        off += 8 + (size_t)len;
    }
    if (off != size) {
        /* e.g. the 32000-token tokenizer.bin beside a 512-token checkpoint */
        long more = count_records(buf, size, off);
        free(buf);
        if (more > 0)
            *status = set_error(err, LETHE_ERR_FORMAT, "%s holds %ld tokens but the checkpoint's vocabulary has %d: wrong tokenizer for this model",
                                path, n_vocab + more, n_vocab);
        else
            *status = set_error(err, LETHE_ERR_FORMAT, "%s: %zu bytes left over after the %d tokens of the checkpoint's vocabulary", path,
                                size - off, n_vocab);
        return NULL;
    }

    tokenizer *t = tok_new(TOK_SPM, n_vocab, bytes);
    char *piece = malloc(max_piece + 32);
    if (!t || !piece) {
        free(piece);
        tokenizer_free(t);
        free(buf);
        *status = set_error(err, LETHE_ERR_NOMEM, "out of memory (llama2.c vocabulary)");
        return NULL;
    }
    off = 4;
    for (int i = 0; i < n_vocab; i++) {
        uint32_t bits = le32(buf + off);
        float score;
        memcpy(&score, &bits, sizeof score);
        size_t len = le32(buf + off + 4);
        int type;
        size_t k = convert_piece(i, buf + off + 8, len, piece, &type);
        tok_set(t, i, piece, k, score, type); /* cannot fail: sized in pass 1 */
        off += 8 + len;
    }
    free(piece);
    free(buf);

    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    t->add_bos = true;
    t->add_eos = false;
    t->add_space_prefix = true;
    st = tok_finish(t, "llama", NULL, err);
    if (st != LETHE_OK) {
        tokenizer_free(t);
        *status = st;
        return NULL;
    }
    *status = LETHE_OK;
    return t;

bad:;
    long have = size >= 4 ? count_records(buf, size, 4) : -1;
    free(buf);
    if (have >= 0)
        *status = set_error(err, LETHE_ERR_FORMAT, "%s holds %ld tokens but the checkpoint's vocabulary has %d: wrong tokenizer for this model",
                            path, have, n_vocab);
    else
        *status = set_error(err, LETHE_ERR_FORMAT, "%s: not a llama2.c tokenizer with %d tokens", path, n_vocab);
    return NULL;
}
