/* Supported architectures, as data. Mistral, TinyLlama, SmolLM and Llama 2/3
 * GGUFs all say "llama". */
#include <string.h>

#include "model/model.h"

static const arch_desc ARCHS[] = {
    {"llama", ROPE_NORM, false, 10000.0f},
    {"qwen2", ROPE_NEOX, true, 1000000.0f},
};

const arch_desc *arch_find(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}
