/* TEMPORARY: not to be committed */
#include <stdio.h>
#include <string.h>
#include "lethe.h"

static const char *const names[] = {"chatml", NULL};
const char *const *lethe_chat_template_names(void) { return names; }
const char *lethe_chat_template_detect(const lethe_model *m) { return NULL; }
const char *lethe_model_chat_template(const lethe_model *m) { return NULL; }
const char *lethe_chat_template_stop(const lethe_model *m, const char *name) { return "<|im_end|>"; }
int lethe_chat_apply(const lethe_model *m, const char *name, const lethe_chat_message *msgs, int n, bool agp, char *out, int cap, char *err, size_t es) {
    if (!name) { snprintf(err, es, "no chat template"); return -1; }
    char buf[65536]; int k = 0;
    for (int i = 0; i < n; i++) k += snprintf(buf + k, sizeof buf - k, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
    if (agp) k += snprintf(buf + k, sizeof buf - k, "<|im_start|>assistant\n");
    if (out && cap > 0) snprintf(out, cap, "%s", buf);
    return k;
}
