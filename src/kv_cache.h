/* The KV cache of a context: the keys and values (float32, or IEEE half
 * when f16) of every layer for every position of every sequence, laid out
 * [seq][layer][kv head][pos][head_dim], so the history that one KV head's
 * attention reads is one contiguous stream (the hardware prefetcher follows
 * it; with [pos][kv_dim] rows it would be a strided walk of head_dim-sized
 * pieces). */
#ifndef BN_KV_CACHE_H
#define BN_KV_CACHE_H

#include "common.h"

typedef struct KVCache {
    int32_t n_seq;
    int32_t n_layer;
    int32_t n_ctx;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t kv_dim; /* n_head_kv * head_dim */
    int f16;        /* elements are IEEE half (uint16_t), else float */
    void *k;
    void *v;
    int32_t *len; /* [n_seq] positions cached per sequence */
} KVCache;

bn_status kv_cache_init(KVCache *kv, int32_t n_seq, int32_t n_layer, int32_t n_ctx,
                        int32_t n_head_kv, int32_t head_dim, int f16, bn_error *err);
void kv_cache_free(KVCache *kv);
uint64_t kv_cache_bytes(const KVCache *kv);

/* Bytes per element. */
static inline size_t kv_cache_esize(const KVCache *kv) { return kv->f16 ? 2 : 4; }

/* The element offset of the head_dim elements of KV head `head` at
 * position `pos` of sequence `seq` in layer `layer`; positions of one head
 * follow each other head_dim elements apart. */
static inline size_t kv_cache_offset(const KVCache *kv, int32_t seq, int32_t layer, int32_t head,
                                     int32_t pos) {
    const size_t block =
        ((size_t)seq * (size_t)kv->n_layer + (size_t)layer) * (size_t)kv->n_head_kv;
    return ((block + (size_t)head) * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->head_dim;
}

/* The K (or V) element at element offset off. */
static inline void *kv_cache_k(const KVCache *kv, size_t off) {
    return (char *)kv->k + off * kv_cache_esize(kv);
}
static inline void *kv_cache_v(const KVCache *kv, size_t off) {
    return (char *)kv->v + off * kv_cache_esize(kv);
}

/* Copy positions [0, n) of `src` into `dst` in every layer; dst's length
 * becomes n. */
void kv_cache_copy_seq(KVCache *kv, int32_t src, int32_t dst, int32_t n);

#endif /* BN_KV_CACHE_H */
