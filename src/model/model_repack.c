/* Weights repacked at load for the x8 tile kernels (tensor/repack.h): the
 * layer matrices and the output matrix, in place in the file's private
 * mapping (the pages become the process's own, on huge pages where the
 * kernel gives them; the file is untouched). The token embedding is read by
 * rows and stays as it is, and so does an output matrix tied to it. A model
 * larger than 3/4 of the memory available is not repacked (it stays mapped
 * from the file, row-major). A model with nothing to repack moves to huge
 * pages too when it takes at most half the memory available: decode streams
 * every weight per token, and a file larger than that is better left to the
 * page cache. */
#include "model/model.h"
#include "tensor/repack.h"

#include <stdio.h>
#include <unistd.h>

/* MemAvailable (free memory plus the page cache the kernel can drop); the
 * whole memory where /proc is absent. */
static size_t available_bytes(void) {
    unsigned long long kib = 0;
    char line[128];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    if (f) fclose(f);
    if (kib) return (size_t)kib << 10;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

static void repack_one(weight *w) {
    if (w->x8 || !lt_x8_usable(w->type, w->n_rows, w->n_cols)) return;
    if (lt_repack_x8(w->type, (void *)w->data, w->n_rows, w->n_cols) == 0) w->x8 = true;
}

void model_repack(lethe_model *m) {
    if (!m->gguf) return;
    bool any = false;
    for (int l = 0; l < m->hp.n_layer && !any; l++) {
        const layer_weights *L = &m->layers[l];
        const weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) any |= lt_x8_usable(ws[i]->type, ws[i]->n_rows, ws[i]->n_cols);
    }
    if (m->output.data != m->tok_embd.data) any |= lt_x8_usable(m->output.type, m->output.n_rows, m->output.n_cols);
    if (!any) {
        if (lt_gguf_file_size(m->gguf) <= available_bytes() / 2) lt_gguf_move_to_huge_pages(m->gguf);
        return;
    }
    /* Repacking makes every weight page the process's own (anonymous
     * memory, no longer the page cache's to drop), so a model that would
     * take most of the memory stays mapped from the file, row-major. */
    if (lt_gguf_file_size(m->gguf) > available_bytes() / 4 * 3) return;
    if (lt_gguf_make_writable(m->gguf) != 0) return;
    for (int l = 0; l < m->hp.n_layer; l++) {
        layer_weights *L = &m->layers[l];
        weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) repack_one(ws[i]);
    }
    if (m->output.data != m->tok_embd.data) repack_one(&m->output);
}
