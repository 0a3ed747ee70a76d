/* libFuzzer harness for the PyTorch zip reader and its restricted
 * unpickler: parse the input from memory and read every accepted tensor's
 * first and last byte. A crash, a sanitizer report, a tensor outside the
 * input or an unexplained failure is a bug. */
#include <stdint.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bn_tensor_set ts;
    bn_error err;
    bn_tset_init(&ts);
    if (bn_pt_parse(data, size, &ts, &err) == BN_OK) {
        if (ts.n == 0) abort();
        for (size_t i = 0; i < ts.n; i++)
            fuzz_check_tensor(&ts, &ts.t[i], data, size);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    bn_tset_free(&ts);
    return 0;
}
