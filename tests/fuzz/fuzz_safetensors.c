/* libFuzzer harness for the SafeTensors reader: parse the input from memory
 * and read every accepted tensor's first and last byte. A crash, a sanitizer
 * report or a tensor outside the input is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bn_tensor_set ts;
    bn_error err;
    bn_tset_init(&ts);
    if (bn_safetensors_parse(data, size, &ts, &err) == BN_OK) {
        for (size_t i = 0; i < ts.n; i++) {
            const bn_ckpt_tensor *t = &ts.t[i];
            if (!t->name || strlen(t->name) == 0 || bn_tset_find(&ts, t->name) != t) abort();
            if (t->nbytes == 0) continue;
            if (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size) abort();
            if ((uint64_t)bn_ckpt_numel(t) * bn_dtype_size(t->dtype) != t->nbytes) abort();
            sink += t->data[0] + t->data[t->nbytes - 1];
            float f = bn_ckpt_get(t, bn_ckpt_numel(t) - 1);
            sink += f == f; /* NaN-safe use of the value */
        }
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure names its cause */
    }
    bn_tset_free(&ts);
    return 0;
}
