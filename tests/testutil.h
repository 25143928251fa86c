/* Small helpers shared by the test programs: checks that count failures,
 * the SKIPPED convention (exit 77, which CTest reports as skipped), and
 * paths to the shared models, the reference outputs and the tree's data.
 *
 * A skip never hides a failure: tu_skip after a failed check exits 1. With
 * LETHE_REQUIRE_MODELS=1 in the environment (CI sets it) every skip, whole or
 * partial, is a failure, so "all passed" cannot mean "nothing ran". */
#ifndef LETHE_TESTUTIL_H
#define LETHE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond) tu_check((cond), #cond, __FILE__, __LINE__)
#define CHECKF(cond, ...) tu_checkf((cond), __FILE__, __LINE__, __VA_ARGS__)

int tu_check(int ok, const char *expr, const char *file, int line);
int tu_checkf(int ok, const char *file, int line, const char *fmt, ...);

/* Prints "SKIPPED: reason" and exits with 77; exits 1 instead (with the
 * reason) when a check has already failed or LETHE_REQUIRE_MODELS is set. */
void tu_skip(const char *fmt, ...);
/* Skips one part of a test: prints "SKIPPED part: reason" and carries on;
 * counts as a failed check when LETHE_REQUIRE_MODELS is set. */
void tu_skip_part(const char *fmt, ...);
/* True when LETHE_REQUIRE_MODELS is set to anything but "" or "0". */
int tu_require_all(void);
/* Prints the summary line and returns the exit status for main(). */
int tu_finish(const char *name);

/* $LETHE_MODELS/rel (default ../shared/models); the returned string is
 * static storage from a ring of 16 buffers (valid for the next 15 calls). */
const char *tu_model_path(const char *rel);
const char *tu_reference_path(const char *rel);
/* Like tu_model_path, but skips the whole test when the file is absent. */
const char *tu_require_model(const char *rel);
const char *tu_require_reference(const char *rel);
/* tu_model_path when the file exists; otherwise tu_skip_part's message and
 * NULL, for a test that runs its other parts without the file. */
const char *tu_optional_model(const char *rel);
/* $LETHE_DATA_DIR/rel: the tree's data/ folder (set by CTest; default
 * "data" in the working directory), same ring of buffers. */
const char *tu_data_path(const char *rel);
int tu_file_exists(const char *path);

/* Runs "BIN ARGS" through the shell with stdout and stderr into the two
 * files and stdin from in_path (NULL: /dev/null); the exit status, or -1. */
int tu_run_cli(const char *bin, const char *args, const char *out_path, const char *err_path, const char *in_path);
/* Runs "BIN ARGS" as tu_run_cli (stdin /dev/null) and checks that it exits
 * with code and that its stderr says want (and not unwanted, when not NULL). */
void tu_expect_cli_msg(const char *bin, const char *args, const char *out_path, const char *err_path, int code,
                       const char *want, const char *unwanted);

/* Largest |a[i] - b[i]| over n values. */
double tu_max_diff(const float *a, const float *b, int n);

/* Reads a whole file; returns malloc'd buffer (NUL-terminated) or NULL. */
char *tu_read_file(const char *path, size_t *size);

/* A growing byte buffer for tests that write files (GGUF headers) byte by
 * byte, little-endian as GGUF is. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} tu_buf;

void tu_put(tu_buf *b, const void *src, size_t n);
void tu_u32(tu_buf *b, uint32_t v);
void tu_u64(tu_buf *b, uint64_t v);
/* A GGUF string: uint64 length, then the bytes. */
void tu_str(tu_buf *b, const char *s);
/* Zero bytes up to the next multiple of align. */
void tu_pad(tu_buf *b, size_t align);

/* Minimal readers for the flat reference JSON files (not a JSON parser):
 * the integer array / number / string value of "key". Return the count, the
 * value, or NULL/-1 when the key is absent. */
int tu_json_int_array(const char *json, const char *key, int *out, int cap);
double tu_json_number(const char *json, const char *key, double dflt);
/* Copies the string value (escapes \" \\ \n \uXXXX-ASCII decoded) into out. */
int tu_json_string(const char *json, const char *key, char *out, int cap);

#endif
