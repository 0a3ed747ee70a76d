/* libFuzzer harness for the JSON parser: parse, then walk every value with
 * every accessor. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static size_t walk(const bn_json_val *v, int depth) {
    size_t count = 1, len = 0;
    if (depth > BN_JSON_MAX_DEPTH + 1) abort();
    const char *s = bn_json_str(v, &len);
    if (s) {
        if (s[len] != '\0') abort();
        sink += len ? (unsigned char)s[len - 1] : 0;
    }
    const char *k = bn_json_key(v, &len);
    if (k && k[len] != '\0') abort();
    int64_t iv;
    if (bn_json_int(v, &iv)) sink += (uint64_t)iv;
    sink += bn_json_bool(v) + (bn_json_num(v) > 0) + bn_json_offset(v);
    size_t n = 0;
    for (const bn_json_val *c = bn_json_first(v); c; c = bn_json_next(c), n++) {
        if (bn_json_type_of(v) == BN_JSON_OBJECT) {
            k = bn_json_key(c, &len);
            if (!k || bn_json_getn(v, k, len) != c) abort(); /* keys are unique */
        }
        count += walk(c, depth + 1);
    }
    if (n != bn_json_len(v)) abort();
    if (n && bn_json_at(v, n - 1) == NULL) abort();
    if (bn_json_at(v, n) != NULL) abort();
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    bn_json *j = NULL;
    bn_error err;
    bn_status st = bn_json_parse((const char *)copy, size, &j, &err);
    if (st == BN_OK) {
        if (walk(bn_json_root(j), 0) != bn_json_count(j)) abort();
        bn_json_free(j);
    } else if (j != NULL || err.msg[0] == '\0') {
        abort();
    }
    free(copy);
    return 0;
}
