/* GGUF reader: a real file reads back as SOURCES.txt describes it, and
 * malformed files (built here byte by byte, or cut from a valid one) are
 * rejected with an error, never a crash or an out-of-bounds read (the suite
 * also runs under ASan/UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    gguf_file *f = gguf_open_memory(b.p, b.n, err, &st);
    int ok = CHECKF(f == NULL && st != LETHE_OK && err[0], "%s: should be rejected", what);
    if (ok) printf("  rejected %-32s: %s\n", what, err);
    gguf_close(f);
    free(b.p);
    return ok;
}

static void test_builder_valid(void) {
    knobs k = {0};
    tu_buf b = build(&k);
    char err[LETHE_ERR_MAX] = "";
    gguf_file *f = gguf_open_memory(b.p, b.n, err, NULL);
    CHECKF(f != NULL, "valid built file rejected: %s", err);
    if (f) {
        gguf_str s;
        CHECK(gguf_get_str(f, "general.name", &s) && gguf_str_eq(s, "tiny"));
        const gguf_array *a = gguf_get_arr(f, "test.array");
        CHECK(a && a->n == 3 && gguf_arr_i64(a, 2) == 3);
        bool fl = false;
        CHECK(gguf_get_bool(f, "test.flag", &fl) && fl);
        const gguf_array *ss = gguf_get_arr(f, "test.strings");
        CHECK(ss && ss->n == 2 && gguf_str_eq(ss->strs[1], "bc"));
        const gguf_tensor *t1 = gguf_find_tensor(f, "t1");
        CHECK(t1 && t1->n_bytes == 32 && ((const float *)t1->data)[0] == 16.0f);
        CHECK(gguf_n_tensors(f) == 2 && gguf_alignment(f) == 32);
    }
    /* nested arrays within the depth limit read back */
    knobs kn = {.nest_depth = 3};
    tu_buf b2 = build(&kn);
    gguf_file *f2 = gguf_open_memory(b2.p, b2.n, err, NULL);
    CHECKF(f2 != NULL, "nested arrays rejected: %s", err);
    if (f2) {
        const gguf_array *a = gguf_get_arr(f2, "test.nested");
        CHECK(a && a->type == GGUF_TYPE_ARRAY && a->n == 1 && a->arrs[0].v.arr.type == GGUF_TYPE_ARRAY);
    }
    gguf_close(f2);
    free(b2.p);

    /* every strict prefix of the file is rejected */
    int prefixes_ok = 1;
    for (size_t n = 0; n < b.n; n++) {
        lethe_status st;
        gguf_file *g = gguf_open_memory(b.p, n, err, &st);
        if (g) { prefixes_ok = 0; gguf_close(g); fprintf(stderr, "prefix of %zu bytes accepted\n", n); }
    }
    CHECKF(prefixes_ok, "all %zu truncations rejected", b.n);
    gguf_close(f);
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
        printf("SKIPPED part: %s not found\n", path);
        return;
    }
    char err[LETHE_ERR_MAX] = "";
    lethe_status st;
    gguf_file *f = gguf_open(path, err, &st);
    CHECKF(f != NULL, "stories260K.gguf: %s", err);
    if (!f) return;
    uint32_t v;
    gguf_str s;
    CHECK(gguf_version(f) == 3 && gguf_n_tensors(f) == 48 && gguf_n_kv(f) == 19);
    CHECK(gguf_data_offset(f) == 14176);
    CHECK(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, "llama"));
    CHECK(gguf_get_u32(f, "llama.embedding_length", &v) && v == 64);
    CHECK(gguf_get_u32(f, "llama.attention.head_count_kv", &v) && v == 4);
    const gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
    CHECK(toks && toks->type == GGUF_TYPE_STRING && toks->n == 512);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == LT_F32 && t->n_bytes == 172 * 64 * 4);

    /* truncations of the real file at many points */
    size_t size = 0;
    char *bytes = tu_read_file(path, &size);
    int rejected = 0, tried = 0;
    for (size_t cut = 0; bytes && cut < size; cut += (cut < 15000 ? 97 : 40961)) {
        gguf_file *g = gguf_open_memory(bytes, cut, err, &st);
        tried++;
        rejected += g == NULL;
        gguf_close(g);
    }
    CHECKF(rejected == tried, "%d of %d truncations of the real file rejected", rejected, tried);
    free(bytes);
    gguf_close(f);
}

/* Model-level errors on a real file patched in its header: a tensor of a
 * known type lethe does not compute (I32, same size as F32) is a load-time
 * error naming the tensor and the type; a missing tensor is named too. */
static void test_model_errors(void) {
    const char *path = tu_model_path("stories260K.gguf");
    if (!tu_file_exists(path)) {
        printf("SKIPPED part: %s not found\n", path);
        return;
    }
    size_t size = 0;
    char *bytes = tu_read_file(path, &size);
    char err[LETHE_ERR_MAX];
    gguf_file *g = bytes ? gguf_open_memory(bytes, size, err, NULL) : NULL;
    if (!CHECK(g != NULL)) { free(bytes); return; }
    const gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    /* header layout after the name: n_dims (4), dims (8 each), type (4) */
    size_t name_off = (size_t)(t->name.data - bytes);
    size_t type_off = name_off + t->name.len + 4 + 8 * t->n_dims;
    gguf_close(g);

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

int main(void) {
    test_model_errors();
    test_builder_valid();
    test_malformed();
    test_real_file();
    return tu_finish("test_gguf");
}
