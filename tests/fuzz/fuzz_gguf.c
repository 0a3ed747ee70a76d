/* libFuzzer harness for the GGUF reader: open the input from memory and
 * walk every accessor of every KV and tensor. Any crash, sanitizer report
 * or out-of-file pointer is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitnet.h"
#include "gguf_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void touch(const void *p, uint64_t n, const uint8_t *base, size_t size) {
    const uint8_t *b = p;
    if (n == 0) return;
    if (b < base || b + n > base + size) abort(); /* points outside the file */
    sink += b[0] + b[n - 1];
}

static void walk(const bn_gguf *g, const uint8_t *data, size_t size) {
    bn_error err;
    sink += bn_gguf_version(g) + bn_gguf_alignment(g) + bn_gguf_file_size(g);
    if (bn_gguf_data_offset(g) > size) abort();
    for (int64_t i = 0; i < bn_gguf_n_kv(g); i++) {
        const char *key = bn_gguf_key(g, i);
        if (!key || bn_gguf_find_key(g, key) != i) abort();
        int64_t iv;
        uint64_t uv;
        double dv;
        int bv;
        const char *s;
        uint64_t len = 0;
        if (bn_gguf_get_i64(g, i, &iv, &err) == BN_OK) sink += (uint64_t)iv;
        if (bn_gguf_get_u64(g, i, &uv, &err) == BN_OK) sink += uv;
        if (bn_gguf_get_f64(g, i, &dv, &err) == BN_OK) sink += dv > 0;
        if (bn_gguf_get_bool(g, i, &bv, &err) == BN_OK) sink += (uint64_t)bv;
        if (bn_gguf_get_str(g, i, &s, &len, &err) == BN_OK) touch(s, len, data, size);
        bn_gguf_vtype et;
        uint64_t n;
        const void *arr;
        if (bn_gguf_get_arr(g, i, &et, &n, &arr, &err) == BN_OK) {
            size_t esz = bn_gguf_vtype_size(et);
            if (esz) touch(arr, n * esz, data, size);
            for (uint64_t j = 0; et == BN_GGUF_STRING && j < n; j++) {
                if (bn_gguf_get_arr_str(g, i, j, &s, &len, &err) != BN_OK) abort();
                touch(s, len, data, size);
            }
            if (bn_gguf_get_arr_str(g, i, n, &s, &len, &err) == BN_OK) abort();
        }
        (void)bn_gguf_kv_type(g, i);
    }
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        const char *name = bn_gguf_tensor_name(g, i);
        if (!name || bn_gguf_find_tensor(g, name) != i) abort();
        int type = bn_gguf_tensor_type(g, i);
        int64_t rows = 1;
        for (int d = 1; d < 4; d++)
            rows *= bn_gguf_tensor_ne(g, i, d);
        size_t want = bn_type_nbytes(type, bn_gguf_tensor_ne(g, i, 0), rows, &err);
        if (want != bn_gguf_tensor_nbytes(g, i)) abort();
        sink += (uint64_t)bn_gguf_tensor_n_dims(g, i) + bn_gguf_tensor_offset(g, i);
        touch(bn_gguf_tensor_data(g, i), bn_gguf_tensor_nbytes(g, i), data, size);
    }
    int64_t x;
    double d;
    const char *s;
    uint64_t len;
    (void)bn_gguf_find_i64(g, "general.alignment", &x, &err);
    (void)bn_gguf_find_f64(g, "general.architecture", &d, &err);
    (void)bn_gguf_find_str(g, "general.architecture", &s, &len, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bn_gguf *g = NULL;
    bn_error err;
    /* copy so that the buffer is exactly `size` bytes for ASan */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    bn_status st = bn_gguf_open_memory(copy, size, &g, &err);
    if (st == BN_OK) {
        walk(g, copy, size);
        bn_gguf_close(g);
    } else if (g != NULL || err.msg[0] == '\0') {
        abort();
    }
    free(copy);
    return 0;
}
