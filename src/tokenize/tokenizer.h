/* Tokenisers: SentencePiece-style (tokenizer.ggml.model = "llama") and
 * byte-level BPE ("gpt2") with the pre-tokeniser named by
 * tokenizer.ggml.pre. Independent of the model code. */
#ifndef LETHE_TOKENIZER_H
#define LETHE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "format/gguf.h"
#include "lethe.h"

typedef struct tokenizer tokenizer;

/* Builds the tokeniser described by a GGUF's tokenizer.* metadata. An
 * unknown model or pre-tokeniser is an error (LETHE_ERR_UNSUPPORTED). */
tokenizer *tokenizer_from_gguf(const lt_gguf_file *f, char *err, lethe_status *status);
/* llama2.c tokenizer.bin (as written by llama2.c's tokenizer.py); n_vocab
 * comes from the checkpoint header. Behaves as the equivalent SPM vocab. */
tokenizer *tokenizer_from_llama2c(const char *path, int n_vocab, char *err, lethe_status *status);
void tokenizer_free(tokenizer *t);

int tokenizer_n_vocab(const tokenizer *t);
lethe_token tokenizer_bos(const tokenizer *t); /* -1 when none */
lethe_token tokenizer_eos(const tokenizer *t);
bool tokenizer_is_eog(const tokenizer *t, lethe_token id); /* EOS, EOT, ... */

/* As lethe_tokenize(): returns the number of ids needed (writing at most
 * cap), or -1 on error. Invalid UTF-8 never crashes (see docs). */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, lethe_token *ids, int cap,
                     bool add_special, bool parse_special);
/* Bytes of a token's piece; control tokens give "" unless render_special.
 * Returns the byte count (may exceed cap), or -1 for an id out of range. */
int tokenizer_piece(const tokenizer *t, lethe_token id, char *buf, int cap, bool render_special);
/* Bytes of the longest piece of the vocabulary (render_special on, so it
 * bounds every piece), for sizing buffers; -1 for NULL. */
int tokenizer_max_piece(const tokenizer *t);

/* Streaming detokeniser: feeds pieces and emits only complete UTF-8
 * sequences, holding back a partial multi-byte character until it completes. */
typedef struct {
    char pending[8];
    int n_pending;
} detok_stream;

void detok_stream_init(detok_stream *d);
/* Appends the piece of id and writes the bytes now safe to print into out.
 * Returns their count n. When n > cap nothing is written and nothing
 * changes: call again with cap >= n (as snprintf). cap >=
 * tokenizer_max_piece(t) + 3 always suffices (at most 3 bytes are held
 * back). -1 for an id out of range or bad arguments. */
int detok_stream_push(detok_stream *d, const tokenizer *t, lethe_token id, char *out, int cap,
                      bool render_special);
/* Flushes whatever is held back (an incomplete sequence at the end, at
 * most 3 bytes); returns its size, which when above cap means nothing was
 * written (retry), or -1. */
int detok_stream_flush(detok_stream *d, char *out, int cap);

/* Tokenises ~1 MB of generated text and prints MB/s and tokens/s to out
 * (`lethe bench`). */
void tokenizer_bench(FILE *out, const tokenizer *t);

#endif
