/* GGUF reader: a real file reads back as SOURCES.txt describes it, and
 * malformed files (built here byte by byte, or cut from a valid one) are
 * rejected with an error, never a crash or an out-of-bounds read (the suite
 * also runs under ASan/UBSan). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/gguf.h"
#include "lethe.h"
#include <unistd.h>
#include "testutil.h"
#include "util/error.h"

/* ---- a tiny GGUF writer ---------------------------------------------------- */


/* Knobs for the builder; zero means "valid". */
typedef struct {
    const char *magic;
    uint32_t version;
    int bad_n_tensors, bad_n_kv;
    uint64_t key_len;          /* overrides the first key's length */
    uint32_t value_type;       /* overrides the type of the 'general.name' value */
    uint32_t arr_elem_type;    /* overrides the element type of the array */
    uint64_t arr_count;        /* overrides the array count */
    int nest_depth;            /* adds a nested array of this depth */
    int bool_value;            /* value of the bool key (valid: 0/1) */
    int dup_key;
    int alignment_mode;        /* 1: alignment 0, 2: alignment 3, 3: alignment as string */
    uint32_t n_dims;           /* overrides tensor 0's n_dims */
    uint64_t dim0, dim1;       /* override tensor 0's dims */
    uint32_t ttype;            /* overrides tensor 0's type (0 = F32 valid) */
    int ttype_set;
    uint64_t offset1;          /* overrides tensor 1's offset */
    int offset1_set;
    int dup_tensor;
    int empty_name;
    int truncate_data;         /* drop the last bytes of the data section */
} knobs;

static tu_buf build(const knobs *k) {
    tu_buf b = {0};
    tu_put(&b, k->magic ? k->magic : "GGUF", 4);
    tu_u32(&b, k->version ? k->version : 3);
    uint64_t n_kv = 4 + (k->nest_depth ? 1 : 0) + (k->dup_key ? 1 : 0) + (k->alignment_mode ? 1 : 0);
    tu_u64(&b, k->bad_n_tensors ? (1ull << 62) : 2);
    tu_u64(&b, k->bad_n_kv ? (1ull << 61) : n_kv);
    /* kv 0: string */
    if (k->key_len) { tu_u64(&b, k->key_len); tu_put(&b, "general.name", 12); }
    else tu_str(&b, "general.name");
    tu_u32(&b, k->value_type ? k->value_type : 8);
    tu_str(&b, "tiny");
    /* kv 1: array of u32 */
    tu_str(&b, "test.array");
    tu_u32(&b, 9);
    tu_u32(&b, k->arr_elem_type ? k->arr_elem_type : 4);
    tu_u64(&b, k->arr_count ? k->arr_count : 3);
    tu_u32(&b, 1); tu_u32(&b, 2); tu_u32(&b, 3);
    /* kv 2: bool */
    tu_str(&b, "test.flag");
    tu_u32(&b, 7);
    uint8_t bv = (uint8_t)(k->bool_value ? k->bool_value : 1);
    tu_put(&b, &bv, 1);
    /* kv 3: array of strings */
    tu_str(&b, "test.strings");
    tu_u32(&b, 9); tu_u32(&b, 8); tu_u64(&b, 2);
    tu_str(&b, "a"); tu_str(&b, "bc");
    if (k->nest_depth) {
        tu_str(&b, "test.nested");
        tu_u32(&b, 9);
        for (int d = 0; d < k->nest_depth; d++) { tu_u32(&b, 9); tu_u64(&b, 1); }
        tu_u32(&b, 4); tu_u64(&b, 1); tu_u32(&b, 7);
    }
    if (k->dup_key) { tu_str(&b, "test.flag"); tu_u32(&b, 7); tu_put(&b, "\0", 1); }
    if (k->alignment_mode == 1) { tu_str(&b, "general.alignment"); tu_u32(&b, 4); tu_u32(&b, 0); }
    if (k->alignment_mode == 2) { tu_str(&b, "general.alignment"); tu_u32(&b, 4); tu_u32(&b, 3); }
    if (k->alignment_mode == 3) { tu_str(&b, "general.alignment"); tu_u32(&b, 8); tu_str(&b, "32"); }
    /* tensor 0: F32 [8, 2] at offset 0; tensor 1: F32 [8] at offset 64 */
    tu_str(&b, k->empty_name ? "" : "t0");
    tu_u32(&b, k->n_dims ? k->n_dims : 2);
    tu_u64(&b, k->dim0 ? k->dim0 : 8);
    tu_u64(&b, k->dim1 ? k->dim1 : 2);
    tu_u32(&b, k->ttype_set ? k->ttype : 0);
    tu_u64(&b, 0);
    tu_str(&b, k->dup_tensor ? "t0" : "t1");
    tu_u32(&b, 1);
    tu_u64(&b, 8);
    tu_u32(&b, 0);
    tu_u64(&b, k->offset1_set ? k->offset1 : 64);
    tu_pad(&b, 32);
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    tu_put(&b, data, 16 * 4);          /* t0: 64 bytes */
    tu_put(&b, data + 16, 8 * 4);      /* t1: 32 bytes */
    if (k->truncate_data) b.n -= 4;
    return b;
}

static int expect_reject(const char *what, const knobs *k) {
    tu_buf b = build(k);
    char err[LETHE_ERR_MAX] = "";
    lethe_status st = LETHE_OK;
    lt_gguf_file *f = lt_gguf_open_memory(b.p, b.n, err, &st);
    int ok = CHECKF(f == NULL && st != LETHE_OK && err[0], "%s: should be rejected", what);
    if (ok) printf("  rejected %-32s: %s\n", what, err);
    lt_gguf_close(f);
    free(b.p);
    return ok;
}

static void test_builder_valid(void) {
    knobs k = {0};
    tu_buf b = build(&k);
    char err[LETHE_ERR_MAX] = "";
    lt_gguf_file *f = lt_gguf_open_memory(b.p, b.n, err, NULL);
    CHECKF(f != NULL, "valid built file rejected: %s", err);
    if (f) {
        lt_gguf_str s;
        CHECK(lt_gguf_get_str(f, "general.name", &s) && lt_gguf_str_eq(s, "tiny"));
        const lt_gguf_array *a = lt_gguf_get_arr(f, "test.array");
        CHECK(a && a->n == 3 && lt_gguf_arr_i64(a, 2) == 3);
        bool fl = false;
        CHECK(lt_gguf_get_bool(f, "test.flag", &fl) && fl);
        const lt_gguf_array *ss = lt_gguf_get_arr(f, "test.strings");
        CHECK(ss && ss->n == 2 && lt_gguf_str_eq(ss->strs[1], "bc"));
        const lt_gguf_tensor *t1 = lt_gguf_find_tensor(f, "t1");
        CHECK(t1 && t1->n_bytes == 32 && ((const float *)t1->data)[0] == 16.0f);
        CHECK(lt_gguf_n_tensors(f) == 2 && lt_gguf_alignment(f) == 32);
    }
    /* nested arrays within the depth limit read back */
    knobs kn = {.nest_depth = 3};
    tu_buf b2 = build(&kn);
    lt_gguf_file *f2 = lt_gguf_open_memory(b2.p, b2.n, err, NULL);
    CHECKF(f2 != NULL, "nested arrays rejected: %s", err);
    if (f2) {
        const lt_gguf_array *a = lt_gguf_get_arr(f2, "test.nested");
        CHECK(a && a->type == GGUF_TYPE_ARRAY && a->n == 1 && a->arrs[0].v.arr.type == GGUF_TYPE_ARRAY);
    }
    lt_gguf_close(f2);
    free(b2.p);

    /* every strict prefix of the file is rejected */
    int prefixes_ok = 1;
    for (size_t n = 0; n < b.n; n++) {
        lethe_status st;
        lt_gguf_file *g = lt_gguf_open_memory(b.p, n, err, &st);
        if (g) { prefixes_ok = 0; lt_gguf_close(g); fprintf(stderr, "prefix of %zu bytes accepted\n", n); }
    }
    CHECKF(prefixes_ok, "all %zu truncations rejected", b.n);
    lt_gguf_close(f);
    free(b.p);
}

static void test_malformed(void) {
    int n = 0;
    knobs k;
#define CASE(what, ...) do { memset(&k, 0, sizeof k); knobs t_ = {__VA_ARGS__}; k = t_; n += expect_reject(what, &k); } while (0)
    CASE("bad magic", .magic = "GGUG");
    CASE("magic of another format", .magic = "\x7f" "ELF");
    CASE("version 1", .version = 1);
    CASE("version 99", .version = 99);
    CASE("big-endian version", .version = 0x03000000u);
    CASE("huge tensor count", .bad_n_tensors = 1);
    CASE("huge kv count", .bad_n_kv = 1);
    CASE("key length past EOF", .key_len = 1ull << 40);
    CASE("key length 2^63", .key_len = 1ull << 63);
    CASE("unknown value type", .value_type = 13);
    CASE("value type 0xffffffff", .value_type = 0xffffffffu);
    CASE("unknown array element type", .arr_elem_type = 77);
    CASE("huge array count", .arr_count = 1ull << 62);
    CASE("array count past EOF", .arr_count = 100000);
    CASE("arrays nested too deep", .nest_depth = 20);
    CASE("bool value 2", .bool_value = 2);
    CASE("duplicate key", .dup_key = 1);
    CASE("alignment 0", .alignment_mode = 1);
    CASE("alignment 3", .alignment_mode = 2);
    CASE("alignment of type string", .alignment_mode = 3);
    CASE("tensor with 2^32-1 dims", .n_dims = 0xffffffffu);
    CASE("tensor with 5 dims", .n_dims = 5);
    CASE("negative dimension", .dim0 = 1ull << 63);
    CASE("dimension product overflow", .dim0 = 1ull << 32, .dim1 = 1ull << 32);
    CASE("size past the data section", .dim1 = 1000);
    CASE("unknown tensor type 99", .ttype = 99, .ttype_set = 1);
    CASE("removed tensor type 4", .ttype = 4, .ttype_set = 1);
    CASE("row not a block multiple", .ttype = 2, .ttype_set = 1); /* Q4_0 needs ne0 % 32 */
    CASE("misaligned tensor offset", .offset1 = 65, .offset1_set = 1);
    CASE("tensor offset out of range", .offset1 = 1ull << 40, .offset1_set = 1);
    CASE("offset + size overflows", .offset1 = UINT64_MAX - 31, .offset1_set = 1);
    CASE("overlapping tensors", .offset1 = 32, .offset1_set = 1);
    CASE("duplicate tensor name", .dup_tensor = 1);
    CASE("empty tensor name", .empty_name = 1);
    CASE("data section truncated", .truncate_data = 1);
#undef CASE
    printf("%d malformed files rejected\n", n);
    CHECKF(n >= 25, "at least 25 malformed cases (got %d)", n);
}

/* The shared stories260K.gguf reads back as SOURCES.txt describes it, and
 * cutting it short anywhere is an error. */
static void test_real_file(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    char err[LETHE_ERR_MAX] = "";
    lethe_status st;
    lt_gguf_file *f = lt_gguf_open(path, err, &st);
    CHECKF(f != NULL, "stories260K.gguf: %s", err);
    if (!f) return;
    uint32_t v;
    lt_gguf_str s;
    CHECK(lt_gguf_version(f) == 3 && lt_gguf_n_tensors(f) == 48 && lt_gguf_n_kv(f) == 19);
    CHECK(lt_gguf_data_offset(f) == 14176);
    CHECK(lt_gguf_get_str(f, "general.architecture", &s) && lt_gguf_str_eq(s, "llama"));
    CHECK(lt_gguf_get_u32(f, "llama.embedding_length", &v) && v == 64);
    CHECK(lt_gguf_get_u32(f, "llama.attention.head_count_kv", &v) && v == 4);
    const lt_gguf_array *toks = lt_gguf_get_arr(f, "tokenizer.ggml.tokens");
    CHECK(toks && toks->type == GGUF_TYPE_STRING && toks->n == 512);
    const lt_gguf_tensor *t = lt_gguf_find_tensor(f, "blk.0.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == LT_F32 && t->n_bytes == 172 * 64 * 4);

    /* truncations of the real file at many points */
    size_t size = 0;
    char *bytes = tu_read_file(path, &size);
    int rejected = 0, tried = 0;
    for (size_t cut = 0; bytes && cut < size; cut += (cut < 15000 ? 97 : 40961)) {
        lt_gguf_file *g = lt_gguf_open_memory(bytes, cut, err, &st);
        tried++;
        rejected += g == NULL;
        lt_gguf_close(g);
    }
    CHECKF(rejected == tried, "%d of %d truncations of the real file rejected", rejected, tried);
    free(bytes);
    lt_gguf_close(f);
}

/* Moving a file's bytes to huge pages keeps them where they were: every
 * tensor pointer still reads the file's bytes, the memory is writable, and
 * LETHE_HUGE=0 or a file read from memory leave the mapping alone. */
static void test_huge_pages(void) {
    const char *path = tu_model_path("synthetic/randllama-d256-L2.Q4_0.gguf");
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    char err[LETHE_ERR_MAX] = "";
    lethe_status st;
    size_t size = 0;
    char *bytes = tu_read_file(path, &size);
    lt_gguf_file *f = lt_gguf_open(path, err, &st);
    CHECKF(f && bytes, "%s: %s", path, err);
    if (!f || !bytes) {
        lt_gguf_close(f);
        free(bytes);
        return;
    }
    const int64_t n = lt_gguf_n_tensors(f);
    const void **before = malloc(sizeof *before * (size_t)n);
    for (int64_t i = 0; before && i < n; i++) before[i] = lt_gguf_tensor_at(f, i)->data;
    CHECK(lt_gguf_move_to_huge_pages(f) == 0);
    int same = 0;
    for (int64_t i = 0; before && i < n; i++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(f, i);
        same += t->data == before[i] &&
                memcmp(t->data, bytes + lt_gguf_data_offset(f) + t->offset, t->n_bytes) == 0;
    }
    CHECKF(same == n, "%d of %lld tensors read the file's bytes at their old address", same, (long long)n);
    uint8_t *last = (uint8_t *)lt_gguf_tensor_at(f, n - 1)->data;
    const uint8_t keep = last[0];
    const uint8_t flipped = (uint8_t)~keep;
    last[0] = flipped; /* writable: a read-only mapping would fault here */
    CHECK(last[0] == flipped);
    last[0] = keep;
    free(before);
    lt_gguf_close(f);

    setenv("LETHE_HUGE", "0", 1);
    f = lt_gguf_open(path, err, &st);
    CHECK(f && lt_gguf_move_to_huge_pages(f) == -1);
    lt_gguf_close(f);
    unsetenv("LETHE_HUGE");
    f = lt_gguf_open_memory(bytes, size, err, &st);
    CHECK(f && lt_gguf_move_to_huge_pages(f) == -1);
    lt_gguf_close(f);
    free(bytes);
}

/* Model-level errors on a real file patched in its header: a tensor of a
 * known type lethe does not compute (I32, same size as F32) is a load-time
 * error naming the tensor and the type; a missing tensor is named too. */
static void test_model_errors(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) {
        tu_skip_part("%s not found", path);
        return;
    }
    size_t size = 0;
    char *bytes = tu_read_file(path, &size);
    char err[LETHE_ERR_MAX];
    lt_gguf_file *g = bytes ? lt_gguf_open_memory(bytes, size, err, NULL) : NULL;
    if (!CHECK(g != NULL)) { free(bytes); return; }
    const lt_gguf_tensor *t = lt_gguf_find_tensor(g, "blk.0.attn_q.weight");
    /* header layout after the name: n_dims (4), dims (8 each), type (4) */
    size_t name_off = (size_t)(t->name.data - bytes);
    size_t type_off = name_off + t->name.len + 4 + 8 * t->n_dims;
    lt_gguf_close(g);

    char tmp[128];
    snprintf(tmp, sizeof tmp, "/tmp/lethe_badtype_%d.gguf", (int)getpid());
    struct { const char *what; size_t off; const char *patch; size_t n; const char *expect1, *expect2; } cases[] = {
        {"unsupported type", type_off, "\x1a\0\0\0", 4, "blk.0.attn_q.weight", "I32"},
        {"missing tensor", name_off + 4, "X", 1, "blk.0.attn_q.weight", "missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *copy = malloc(size);
        memcpy(copy, bytes, size);
        memcpy(copy + cases[i].off, cases[i].patch, cases[i].n);
        FILE *f = fopen(tmp, "wb");
        fwrite(copy, 1, size, f);
        fclose(f);
        free(copy);
        char merr[512] = "";
        lethe_model *m = lethe_model_load(tmp, NULL, merr, sizeof merr);
        CHECKF(m == NULL && strstr(merr, cases[i].expect1) && strstr(merr, cases[i].expect2), "%s: '%s'", cases[i].what, merr);
        printf("  %s: %s\n", cases[i].what, merr);
        lethe_model_free(m);
    }
    remove(tmp);
    free(bytes);
}


/* ---- scale: many keys / many tensors ------------------------------------- */

/* A file with n_kv uint32 keys and n_t one-float tensors; dup 1 repeats
 * key 0 as the last key, dup 2 repeats tensor 0's name as the last tensor,
 * dup 3 makes the last tensor overlap the first. */
static tu_buf build_many(int n_kv, int n_t, int dup) {
    tu_buf b = {0};
    char name[32];
    tu_put(&b, "GGUF", 4);
    tu_u32(&b, 3);
    tu_u64(&b, (uint64_t)n_t);
    tu_u64(&b, (uint64_t)n_kv);
    for (int i = 0; i < n_kv; i++) {
        snprintf(name, sizeof name, "k.%d", dup == 1 && i == n_kv - 1 ? 0 : i);
        tu_str(&b, name);
        tu_u32(&b, 4);
        tu_u32(&b, (uint32_t)i);
    }
    for (int i = 0; i < n_t; i++) {
        snprintf(name, sizeof name, "t.%d", dup == 2 && i == n_t - 1 ? 0 : i);
        tu_str(&b, name);
        tu_u32(&b, 1);
        tu_u64(&b, 1);
        tu_u32(&b, 0); /* F32 */
        tu_u64(&b, dup == 3 && i == n_t - 1 ? 0 : (uint64_t)i * 32);
    }
    tu_pad(&b, 32);
    for (int i = 0; i < n_t; i++) {
        float v = (float)i;
        tu_put(&b, &v, 4);
        tu_pad(&b, 32);
    }
    return b;
}

/* This thread's CPU time, which a loaded host does not inflate: the checks
 * below guard against quadratic parsing, not speed. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of three opens of a generated file, in seconds; -1 when rejected. */
static double time_open(int n_kv, int n_t) {
    tu_buf b = build_many(n_kv, n_t, 0);
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        char err[LETHE_ERR_MAX] = "";
        double t0 = now_s();
        lt_gguf_file *f = lt_gguf_open_memory(b.p, b.n, err, NULL);
        double dt = now_s() - t0;
        if (!f) { fprintf(stderr, "generated file rejected: %s\n", err); best = -1; break; }
        lt_gguf_close(f);
        if (dt < best) best = dt;
    }
    free(b.p);
    return best;
}

/* The duplicate and overlap checks were O(n^2): 40K keys took 6.4 s and 40K
 * tensors 8.8 s. 4x the entries must cost far less than 16x the time. */
static void test_scale(void) {
    const struct { const char *what; int kv10, t10, kv40, t40; } runs[] = {
        {"keys", 10000, 0, 40000, 0},
        {"tensors", 1, 10000, 1, 40000},
    };
    for (int r = 0; r < 2; r++) {
        double t10 = time_open(runs[r].kv10, runs[r].t10), t40 = time_open(runs[r].kv40, runs[r].t40);
        printf("  40K %s: %.4f s (10K: %.4f s, ratio %.1f)\n", runs[r].what, t40, t10, t40 / (t10 > 1e-6 ? t10 : 1e-6));
        CHECKF(t10 >= 0 && t40 >= 0, "%s: generated files load", runs[r].what);
        CHECKF(t40 < 2.0, "%s: 40K entries open in under 2 s (took %.2f s)", runs[r].what, t40);
        /* the ratio is only meaningful well above timer and load noise
         * (quadratic took seconds; n log n takes milliseconds) */
        CHECKF(t40 < 0.2 || t40 < 10.0 * t10, "%s: 4x entries cost %.1fx the time (quadratic is 16x)", runs[r].what,
               t40 / t10);
    }
    /* duplicates and overlaps as far apart as possible are still found */
    const struct { int dup; const char *expect; } dups[] = {
        {1, "duplicate metadata key 'k.0'"}, {2, "duplicate tensor name 't.0'"}, {3, "overlap"}};
    for (int d = 0; d < 3; d++) {
        tu_buf b = build_many(40000, 40000, dups[d].dup);
        char err[LETHE_ERR_MAX] = "";
        lt_gguf_file *f = lt_gguf_open_memory(b.p, b.n, err, NULL);
        CHECKF(f == NULL && strstr(err, dups[d].expect), "far-apart case %d: '%s'", dups[d].dup, err);
        printf("  far apart: %s\n", err);
        lt_gguf_close(f);
        free(b.p);
    }
    /* and look-ups find the first, the last and no absent name */
    tu_buf b = build_many(40000, 40000, 0);
    lt_gguf_file *f = lt_gguf_open_memory(b.p, b.n, NULL, NULL);
    uint32_t v = 0;
    CHECK(f && lt_gguf_get_u32(f, "k.0", &v) && v == 0 && lt_gguf_get_u32(f, "k.39999", &v) && v == 39999);
    CHECK(f && lt_gguf_find_key(f, "k.40000") < 0 && lt_gguf_find_key(f, "k.") < 0 && lt_gguf_find_key(f, "") < 0);
    const lt_gguf_tensor *t = f ? lt_gguf_find_tensor(f, "t.39999") : NULL;
    CHECK(t && ((const float *)t->data)[0] == 39999.0f && !lt_gguf_find_tensor(f, "t.40000"));
    lt_gguf_close(f);
    free(b.p);
}

/* ---- integers stored as floats (fuzz finding gguf-1.bin) ----------------- */

/* An array of one float32 or float64 as key "x"; returns the parsed file. */
static lt_gguf_file *one_float_array(tu_buf *b, uint32_t type, double v) {
    b->n = 0;
    tu_put(b, "GGUF", 4);
    tu_u32(b, 3);
    tu_u64(b, 0);
    tu_u64(b, 1);
    tu_str(b, "x");
    tu_u32(b, 9);
    tu_u32(b, type);
    tu_u64(b, 1);
    if (type == 6) { float f = (float)v; tu_put(b, &f, 4); }
    else tu_put(b, &v, 8);
    return lt_gguf_open_memory(b->p, b->n, NULL, NULL);
}

static void test_float_to_int(void) {
    const struct { uint32_t type; double v; int ok; int64_t want; } cases[] = {
        {6, 64.0, 1, 64}, {12, -3.0, 1, -3}, {12, 9007199254740992.0, 1, 9007199254740992LL},
        {6, 1e27, 0, 0}, {12, 9223372036854775808.0, 0, 0}, {12, -9223372036854777856.0, 0, 0},
        {12, -9223372036854775808.0, 1, INT64_MIN}, {6, 1.5, 0, 0}, {12, 0.25, 0, 0},
        {6, INFINITY, 0, 0}, {12, -INFINITY, 0, 0}, {12, NAN, 0, 0},
    };
    tu_buf b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lt_gguf_file *f = one_float_array(&b, cases[i].type, cases[i].v);
        const lt_gguf_array *a = f ? lt_gguf_get_arr(f, "x") : NULL;
        int64_t x = 12345;
        bool ok = a && lt_gguf_arr_int(a, 0, &x);
        CHECKF(a && ok == (bool)cases[i].ok && (!ok || x == cases[i].want), "float %g as integer: %s %lld", cases[i].v,
               ok ? "accepted" : "rejected", (long long)x);
        if (a && !ok) CHECK(lt_gguf_arr_i64(a, 0) == 0);
        lt_gguf_close(f);
    }
    free(b.p);
}

int main(void) {
    test_float_to_int();
    test_scale();
    test_model_errors();
    test_builder_valid();
    test_malformed();
    test_real_file();
    test_huge_pages();
    return tu_finish("test_gguf");
}
