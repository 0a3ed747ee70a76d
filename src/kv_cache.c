#include "kv_cache.h"

#include <stdlib.h>

bn_status kv_cache_init(KVCache *kv, int32_t n_seq, int32_t n_layer, int32_t n_ctx,
                        int32_t n_head_kv, int32_t head_dim, int f16, bn_error *err) {
    memset(kv, 0, sizeof *kv);
    if (n_seq <= 0 || n_layer <= 0 || n_ctx <= 0 || n_head_kv <= 0 || head_dim <= 0) {
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "kv cache: bad size n_seq=%d n_layer=%d n_ctx=%d n_head_kv=%d head_dim=%d",
                       n_seq, n_layer, n_ctx, n_head_kv, head_dim);
    }
    size_t n = 1, bytes;
    if (!bn_mul_size(n, (size_t)n_seq, &n) || !bn_mul_size(n, (size_t)n_layer, &n) ||
        !bn_mul_size(n, (size_t)n_ctx, &n) || !bn_mul_size(n, (size_t)n_head_kv, &n) ||
        !bn_mul_size(n, (size_t)head_dim, &n) || !bn_mul_size(n, f16 ? 2 : 4, &bytes)) {
        return bn_fail(err, BN_ERR_NOMEM, "kv cache: size overflows (n_seq=%d n_ctx=%d)", n_seq,
                       n_ctx);
    }
    /* calloc, not an aligned zeroing allocator: large blocks come from mmap
     * as lazily zeroed pages, so a long context costs memory only for the
     * positions it actually uses. */
    kv->k = calloc(1, bytes);
    kv->v = calloc(1, bytes);
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) {
        kv_cache_free(kv);
        return bn_fail(err, BN_ERR_NOMEM, "kv cache: cannot allocate 2 x %zu bytes", bytes);
    }
    kv->n_seq = n_seq;
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->n_head_kv = n_head_kv;
    kv->head_dim = head_dim;
    kv->kv_dim = n_head_kv * head_dim;
    kv->f16 = f16 != 0;
    return bn_ok(err);
}

void kv_cache_free(KVCache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->len);
    memset(kv, 0, sizeof *kv);
}

uint64_t kv_cache_bytes(const KVCache *kv) {
    return 2ull * (uint64_t)kv->n_seq * (uint64_t)kv->n_layer * (uint64_t)kv->n_ctx *
           (uint64_t)kv->kv_dim * kv_cache_esize(kv);
}

void kv_cache_copy_seq(KVCache *kv, int32_t src, int32_t dst, int32_t n) {
    if (src == dst) {
        kv->len[dst] = n;
        return;
    }
    const size_t bytes = (size_t)n * (size_t)kv->head_dim * kv_cache_esize(kv);
    for (int32_t l = 0; l < kv->n_layer && n > 0; l++) {
        for (int32_t h = 0; h < kv->n_head_kv; h++) {
            const size_t d = kv_cache_offset(kv, dst, l, h, 0),
                         s = kv_cache_offset(kv, src, l, h, 0);
            memcpy(kv_cache_k(kv, d), kv_cache_k(kv, s), bytes);
            memcpy(kv_cache_v(kv, d), kv_cache_v(kv, s), bytes);
        }
    }
    kv->len[dst] = n;
}
