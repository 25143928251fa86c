/* Internals shared by the cold-tier files (kv_cold.c, kv_cold_edit.c). */
#ifndef LETHE_KV_COLD_IMPL_H
#define LETHE_KV_COLD_IMPL_H

#include "kv/kv_cold.h"

/* Quantises F32 blocks (page_slots rows of head_dim) into page p; the K
 * variant also recomputes the bounds over p->n slots from the stored values. */
void kv_cold_store_k(kv_cold *c, kv_cold_page *p, const float *k);
void kv_cold_store_v(kv_cold *c, kv_cold_page *p, const float *v);
/* Dequantises page p into F32 blocks (either may be NULL). */
void kv_cold_load_page(const kv_cold *c, const kv_cold_page *p, float *k, float *v);

#endif
