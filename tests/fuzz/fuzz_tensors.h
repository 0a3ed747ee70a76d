/* Shared by the checkpoint-reader harnesses (fuzz_pt.c, fuzz_safetensors.c):
 * the invariants every tensor of an accepted bn_tensor_set must keep. */
#ifndef BN_FUZZ_TENSORS_H
#define BN_FUZZ_TENSORS_H

#include <stdint.h>
#include <stdlib.h>

#include "checkpoint.h"

static volatile uint64_t sink;

/* Abort unless `t` (a tensor of `ts`, parsed from data[0..size)) has a name
 * that finds it, lies inside the input and holds exactly numel * dtype size
 * bytes. Returns 0 for an empty tensor; otherwise reads its first and last
 * byte and returns 1. */
static inline int fuzz_check_tensor(const bn_tensor_set *ts, const bn_ckpt_tensor *t,
                                    const uint8_t *data, size_t size) {
    if (!t->name || bn_tset_find(ts, t->name) != t) abort();
    if (t->nbytes == 0) return 0;
    if (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size) abort();
    if ((uint64_t)bn_ckpt_numel(t) * bn_dtype_size(t->dtype) != t->nbytes) abort();
    sink += t->data[0] + t->data[t->nbytes - 1];
    return 1;
}

#endif /* BN_FUZZ_TENSORS_H */
