/* GGUF reader + model loader on arbitrary bytes. The reader runs from
 * memory; when it accepts the bytes, every view it returns is walked (ASan
 * checks they lie inside the input) and the model loader runs on the same
 * bytes from a file, as `lethe run -m` would. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "format/gguf.h"
#include "fuzz_common.h"
#include "lethe.h"

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    for (uint64_t i = 0; i < n; i += n > 4096 ? 4093 : 1) sink ^= b[i];
    if (n) sink ^= b[n - 1];
}

static void walk(const lt_gguf_file *f) {
    for (int64_t i = 0; i < lt_gguf_n_kv(f); i++) {
        const lt_gguf_kv *kv = lt_gguf_kv_at(f, i);
        char key[256];
        touch(kv->key.data, kv->key.len);
        lt_gguf_str_copy(kv->key, key, sizeof key);
        if (lt_gguf_find_key(f, key) < 0 && strlen(key) == kv->key.len) fuzz_fail("key '%s' not found", key);
        if (kv->value.type == GGUF_TYPE_STRING) touch(kv->value.v.str.data, kv->value.v.str.len);
        if (kv->value.type != GGUF_TYPE_ARRAY) continue;
        const lt_gguf_array *a = &kv->value.v.arr;
        for (uint64_t j = 0; j < a->n && j < 64; j++) {
            int64_t x;
            (void)lt_gguf_arr_f64(a, j);
            (void)lt_gguf_arr_int(a, j, &x);
            if (a->strs) touch(a->strs[j].data, a->strs[j].len);
        }
    }
    for (int64_t i = 0; i < lt_gguf_n_tensors(f); i++) {
        const lt_gguf_tensor *t = lt_gguf_tensor_at(f, i);
        touch(t->data, t->n_bytes);
        if (lt_gguf_find_tensor(f, t->cname) != t) fuzz_fail("tensor '%s' not found by name", t->cname);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[LETHE_ERR_MAX];
    lethe_status st;
    lt_gguf_file *f = lt_gguf_open_memory(data, size, err, &st);
    if (!f) {
        if (st == LETHE_OK || !err[0]) fuzz_fail("rejected without a status and message");
        return 0;
    }
    walk(f);
    lt_gguf_close(f);

    lethe_model_params p = lethe_model_default_params();
    lethe_model *m = lethe_model_load(fuzz_write_file(0, ".gguf", data, size), &p, err, sizeof err);
    if (m) {
        lethe_token ids[8];
        int n = lethe_tokenize(m, "Hi there", 8, ids, 8, true, true);
        if (n < 0) fuzz_fail("a loaded model cannot tokenise ASCII");
    } else if (!err[0]) {
        fuzz_fail("model load failed without a message");
    }
    lethe_model_free(m);
    return 0;
}
