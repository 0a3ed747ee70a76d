/* The KV cache of a context: float32 keys and values of every layer for
 * every position of every sequence, laid out [seq][layer][pos][kv_dim] so a
 * sequence's history of one layer is one contiguous block that attention
 * streams through. */
#ifndef BN_KV_CACHE_H
#define BN_KV_CACHE_H

#include "common.h"

typedef struct KVCache {
    int32_t n_seq;
    int32_t n_layer;
    int32_t n_ctx;
    int32_t kv_dim; /* n_head_kv * head_dim */
    float *k;
    float *v;
    int32_t *len; /* [n_seq] positions cached per sequence */
} KVCache;

bn_status kv_cache_init(KVCache *kv, int32_t n_seq, int32_t n_layer, int32_t n_ctx, int32_t kv_dim,
                        bn_error *err);
void kv_cache_free(KVCache *kv);
uint64_t kv_cache_bytes(const KVCache *kv);

/* Row of position `pos` of sequence `seq` in layer `layer`. */
static inline size_t kv_cache_offset(const KVCache *kv, int32_t seq, int32_t layer, int32_t pos) {
    return ((((size_t)seq * (size_t)kv->n_layer + (size_t)layer) * (size_t)kv->n_ctx) +
            (size_t)pos) *
           (size_t)kv->kv_dim;
}

/* Copy positions [0, n) of `src` into `dst` in every layer; dst's length
 * becomes n. */
void kv_cache_copy_seq(KVCache *kv, int32_t src, int32_t dst, int32_t n);

#endif /* BN_KV_CACHE_H */
