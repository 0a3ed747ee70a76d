/* libFuzzer harness for the SafeTensors reader: parse the input from memory
 * and read every accepted tensor's first and last byte. A crash, a sanitizer
 * report or a tensor outside the input is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bn_tensor_set ts;
    bn_error err;
    bn_tset_init(&ts);
    if (bn_safetensors_parse(data, size, &ts, &err) == BN_OK) {
        for (size_t i = 0; i < ts.n; i++) {
            const bn_ckpt_tensor *t = &ts.t[i];
            if (t->name && strlen(t->name) == 0) abort();
            if (!fuzz_check_tensor(&ts, t, data, size)) continue;
            float f = bn_ckpt_get(t, bn_ckpt_numel(t) - 1);
            sink += f == f; /* NaN-safe use of the value */
        }
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure names its cause */
    }
    bn_tset_free(&ts);
    return 0;
}
