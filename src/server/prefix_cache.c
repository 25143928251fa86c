/* The prefix cache: sequences of finished requests, kept with the tokens
 * they hold. A new request whose tokens begin with a kept sequence's forks
 * it (every page shared, copy on write) and truncates the fork to the common
 * prefix, so only the rest of its prompt is prefilled: the next turn of a
 * chat, a shared system prompt. Entries are dropped least recently used
 * first when the engine needs their pages.
 *
 * Only sequences whose cache is exactly what a fresh prefill of their
 * tokens gives are kept (the engine checks: a policy that never evicted, no
 * re-indexed positions), so a fork of one equals a fresh prefill. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define PC_MAX_ENTRIES 64

typedef struct {
    lethe_seq *seq;
    lethe_token *toks;
    int n;
    char policy[32];
    size_t pages;
    uint64_t last_use;
} pc_entry;

struct srv_prefix_cache {
    pc_entry e[PC_MAX_ENTRIES];
    int n;
    uint64_t clock;
    size_t pages;
};

srv_prefix_cache *srv_pc_create(void) { return calloc(1, sizeof(srv_prefix_cache)); }

static void drop(srv_prefix_cache *pc, int i) {
    lethe_seq_free(pc->e[i].seq);
    free(pc->e[i].toks);
    pc->pages -= pc->e[i].pages;
    pc->e[i] = pc->e[--pc->n];
}

void srv_pc_free(srv_prefix_cache *pc) {
    if (!pc) return;
    while (pc->n) drop(pc, 0);
    free(pc);
}

static int common_prefix(const lethe_token *a, int na, const lethe_token *b, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

lethe_seq *srv_pc_take(srv_prefix_cache *pc, const lethe_token *toks, int n, const char *policy, int *n_reuse, char *err,
                       size_t err_size) {
    *n_reuse = 0;
    int best = -1, best_len = 0;
    for (int i = 0; i < pc->n; i++) {
        if (strcmp(pc->e[i].policy, policy)) continue;
        int l = common_prefix(pc->e[i].toks, pc->e[i].n, toks, n);
        if (l > best_len) { best = i; best_len = l; }
    }
    if (best < 0) return NULL;
    pc_entry *e = &pc->e[best];
    lethe_seq *f = lethe_seq_fork(e->seq, err, err_size);
    if (!f) return NULL;
    if (best_len < lethe_seq_n_past(f) && lethe_seq_truncate(f, best_len) != LETHE_OK) {
        lethe_seq_free(f);
        return NULL;
    }
    e->last_use = ++pc->clock;
    *n_reuse = best_len;
    return f;
}

void srv_pc_put(srv_prefix_cache *pc, lethe_seq *seq, const lethe_token *toks, int n, const char *policy, size_t pages) {
    for (int i = 0; i < pc->n; i++) {
        pc_entry *e = &pc->e[i];
        if (strcmp(e->policy, policy)) continue;
        int l = common_prefix(e->toks, e->n, toks, n);
        if (l == n) { /* already covered by a longer entry */
            e->last_use = ++pc->clock;
            lethe_seq_free(seq);
            return;
        }
        if (l == e->n) { drop(pc, i); i--; } /* the new entry covers this one */
    }
    lethe_token *copy = malloc((size_t)n * sizeof *copy);
    if (!copy) { lethe_seq_free(seq); return; }
    memcpy(copy, toks, (size_t)n * sizeof *copy);
    if (pc->n == PC_MAX_ENTRIES) srv_pc_evict_one(pc);
    pc_entry *e = &pc->e[pc->n++];
    *e = (pc_entry){seq, copy, n, "", pages, ++pc->clock};
    snprintf(e->policy, sizeof e->policy, "%s", policy);
    pc->pages += pages;
}

bool srv_pc_evict_one(srv_prefix_cache *pc) {
    if (!pc->n) return false;
    int lru = 0;
    for (int i = 1; i < pc->n; i++)
        if (pc->e[i].last_use < pc->e[lru].last_use) lru = i;
    drop(pc, lru);
    return true;
}

size_t srv_pc_pages(const srv_prefix_cache *pc) { return pc->pages; }
int srv_pc_entries(const srv_prefix_cache *pc) { return pc->n; }
