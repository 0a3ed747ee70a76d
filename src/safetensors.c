/* SafeTensors reader.
 *
 * Format (huggingface/safetensors, docs "format"): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON, then the byte buffer. The JSON is
 * an object: "__metadata__" (optional, string -> string) and, per tensor,
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets
 * relative to the start of the byte buffer. The reference implementation
 * requires the tensors to be non-overlapping and to cover the buffer; we
 * require non-overlap and bounds, and allow unused gaps. Little-endian data,
 * C order.
 *
 * Sharded checkpoints (transformers' save_pretrained) add
 * model.safetensors.index.json: {"metadata": {...}, "weight_map":
 * {tensor: shard file}}; each shard is a plain safetensors file in the same
 * directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "json.h"

#define ST_MAX_HEADER (100u << 20) /* as the reference (100 MB) */
#define ST_MAX_SHARDS 4096

static int parse_dtype(const char *s) {
    if (!strcmp(s, "F32")) return BN_DT_F32;
    if (!strcmp(s, "F16")) return BN_DT_F16;
    if (!strcmp(s, "BF16")) return BN_DT_BF16;
    if (!strcmp(s, "I8")) return BN_DT_I8;
    if (!strcmp(s, "U8")) return BN_DT_U8;
    return -1;
}

typedef struct span {
    uint64_t b, e;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

bn_status bn_safetensors_parse(const void *data, size_t size, bn_tensor_set *out, bn_error *err) {
    const uint8_t *p = data;
    if (!p && size) return bn_fail(err, BN_ERR_INVALID_ARG, "safetensors: NULL data");
    if (size < 8) {
        return bn_fail(err, BN_ERR_FORMAT, "safetensors: file of %zu bytes has no header length",
                       size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > size - 8) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "safetensors: header length %llu at offset 0 does not fit the file of %zu "
                       "bytes (or exceeds %u)",
                       (unsigned long long)hlen, size, ST_MAX_HEADER);
    }
    if (p[8] != '{') {
        return bn_fail(err, BN_ERR_FORMAT, "safetensors: header at offset 8 is not a JSON object");
    }
    const uint8_t *buf = p + 8 + hlen;
    const uint64_t buf_size = size - 8 - hlen;
    bn_json *j = NULL;
    bn_error je;
    if (bn_json_parse((const char *)p + 8, (size_t)hlen, &j, &je) != BN_OK) {
        return bn_fail(err, BN_ERR_FORMAT, "safetensors: header JSON (at file offset 8): %s",
                       je.msg);
    }
    const bn_json_val *root = bn_json_root(j);
    bn_status st = BN_OK;
    size_t n_tensors = bn_json_len(root);
    span *spans = calloc(n_tensors ? n_tensors : 1, sizeof *spans);
    size_t n_spans = 0;
    if (!spans) {
        bn_json_free(j);
        return bn_fail(err, BN_ERR_NOMEM, "safetensors: out of memory");
    }
    for (const bn_json_val *v = bn_json_first(root); v; v = bn_json_next(v)) {
        size_t klen = 0;
        const char *key = bn_json_key(v, &klen);
        if (klen == 12 && !memcmp(key, "__metadata__", 12)) {
            if (bn_json_type_of(v) != BN_JSON_OBJECT) {
                st = bn_fail(err, BN_ERR_FORMAT, "safetensors: __metadata__ is not an object");
                break;
            }
            continue;
        }
        if (klen == 0 || klen >= BN_CKPT_MAX_NAME || memchr(key, '\0', klen)) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "safetensors: tensor name of %zu bytes at header offset %zu is empty, "
                         "too long or holds NUL",
                         klen, bn_json_offset(v));
            break;
        }
        const bn_json_val *dt = bn_json_get(v, "dtype");
        const bn_json_val *sh = bn_json_get(v, "shape");
        const bn_json_val *of = bn_json_get(v, "data_offsets");
        if (bn_json_type_of(v) != BN_JSON_OBJECT || bn_json_type_of(dt) != BN_JSON_STRING ||
            bn_json_type_of(sh) != BN_JSON_ARRAY || bn_json_type_of(of) != BN_JSON_ARRAY ||
            bn_json_len(of) != 2) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "safetensors: tensor '%.200s' needs dtype, shape and data_offsets "
                         "[begin, end] (header offset %zu)",
                         key, bn_json_offset(v));
            break;
        }
        const char *dts = bn_json_str(dt, NULL);
        int dtype = parse_dtype(dts);
        if (dtype < 0) {
            st = bn_fail(err, BN_ERR_UNSUPPORTED,
                         "safetensors: tensor '%.200s' has dtype '%.16s' (supported: F32, F16, "
                         "BF16, I8, U8)",
                         key, dts);
            break;
        }
        size_t nd = bn_json_len(sh);
        if (nd > BN_CKPT_MAX_DIMS) {
            st = bn_fail(err, BN_ERR_UNSUPPORTED,
                         "safetensors: tensor '%.200s' has %zu dims (max %d)", key, nd,
                         BN_CKPT_MAX_DIMS);
            break;
        }
        int64_t shape[BN_CKPT_MAX_DIMS] = {0};
        uint64_t numel = 1;
        size_t d = 0;
        for (const bn_json_val *e = bn_json_first(sh); e; e = bn_json_next(e), d++) {
            int64_t x;
            if (!bn_json_int(e, &x) || x < 0 || x > ((int64_t)1 << 40) ||
                !bn_mul_u64(numel, (uint64_t)x, &numel)) {
                st =
                    bn_fail(err, BN_ERR_FORMAT,
                            "safetensors: tensor '%.200s': shape[%zu] is not a valid size", key, d);
                break;
            }
            shape[d] = x;
        }
        if (st != BN_OK) break;
        int64_t b, e;
        if (!bn_json_int(bn_json_at(of, 0), &b) || !bn_json_int(bn_json_at(of, 1), &e) || b < 0 ||
            e < b || (uint64_t)e > buf_size) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "safetensors: tensor '%.200s': data_offsets do not fit the %llu-byte "
                         "buffer",
                         key, (unsigned long long)buf_size);
            break;
        }
        uint64_t nbytes;
        if (!bn_mul_u64(numel, bn_dtype_size(dtype), &nbytes) || nbytes != (uint64_t)(e - b)) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "safetensors: tensor '%.200s': %lld bytes for %llu elements of %s", key,
                         (long long)(e - b), (unsigned long long)numel, dts);
            break;
        }
        st = bn_tset_add(out, key, klen, dtype, (int)nd, shape, buf + b, nbytes, err);
        if (st != BN_OK) break;
        spans[n_spans].b = (uint64_t)b;
        spans[n_spans].e = (uint64_t)e;
        spans[n_spans].idx = out->n - 1;
        n_spans++;
    }
    if (st == BN_OK && n_spans > 1) {
        qsort(spans, n_spans, sizeof *spans, cmp_span);
        for (size_t i = 1; i < n_spans; i++) {
            if (spans[i].b < spans[i - 1].e && spans[i].e > spans[i].b) {
                st = bn_fail(err, BN_ERR_FORMAT,
                             "safetensors: tensors '%.200s' and '%.200s' overlap",
                             out->t[spans[i - 1].idx].name, out->t[spans[i].idx].name);
                break;
            }
        }
    }
    free(spans);
    bn_json_free(j);
    return st;
}

static bn_status open_one(const char *path, bn_tensor_set *out, bn_error *err) {
    void *p = NULL;
    size_t size = 0;
    bn_status st = bn_map_file(path, &p, &size, err);
    if (st != BN_OK) return st;
    st = bn_tset_keep(out, p, size, 1, err);
    if (st != BN_OK) {
        bn_unmap_file(p, size);
        return st;
    }
    bn_error e;
    st = bn_safetensors_parse(p, size, out, &e);
    if (st != BN_OK) return bn_fail(err, st, "%s: %s", path, e.msg);
    return BN_OK;
}

/* Shard file names must stay inside the directory. */
static int safe_name(const char *s, size_t n) {
    if (n == 0 || n > 255 || memchr(s, '/', n) || memchr(s, '\\', n) || memchr(s, '\0', n))
        return 0;
    if (s[0] == '.') return 0;
    return 1;
}

static bn_status open_index(const char *dir, const char *index, bn_tensor_set *out, bn_error *err) {
    void *p = NULL;
    size_t size = 0;
    bn_status st = bn_map_file(index, &p, &size, err);
    if (st != BN_OK) return st;
    bn_json *j = NULL;
    bn_error je;
    st = bn_json_parse(p, size, &j, &je);
    bn_unmap_file(p, size);
    if (st != BN_OK) return bn_fail(err, BN_ERR_FORMAT, "%s: %s", index, je.msg);
    const bn_json_val *wm = bn_json_get(bn_json_root(j), "weight_map");
    if (bn_json_type_of(wm) != BN_JSON_OBJECT || bn_json_len(wm) == 0) {
        bn_json_free(j);
        return bn_fail(err, BN_ERR_FORMAT, "%s: no weight_map object", index);
    }
    /* Distinct shard files, in order of first mention. */
    const char **files = calloc(ST_MAX_SHARDS, sizeof *files);
    size_t n_files = 0;
    if (!files) {
        bn_json_free(j);
        return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    }
    for (const bn_json_val *v = bn_json_first(wm); v && st == BN_OK; v = bn_json_next(v)) {
        size_t n = 0;
        const char *f = bn_json_str(v, &n);
        if (!f || !safe_name(f, n)) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: weight_map entry '%.200s' names no valid shard",
                         index, bn_json_key(v, NULL));
            break;
        }
        size_t k = 0;
        while (k < n_files && strcmp(files[k], f) != 0)
            k++;
        if (k == n_files) {
            if (n_files == ST_MAX_SHARDS) {
                st = bn_fail(err, BN_ERR_FORMAT, "%s: more than %d shards", index, ST_MAX_SHARDS);
                break;
            }
            files[n_files++] = f;
        }
    }
    for (size_t k = 0; k < n_files && st == BN_OK; k++) {
        size_t need = strlen(dir) + strlen(files[k]) + 2;
        char *path = malloc(need);
        if (!path) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(path, need, "%s/%s", dir, files[k]);
        size_t before = out->n;
        st = open_one(path, out, err);
        /* Every tensor of a shard must be listed for that shard. */
        for (size_t i = before; st == BN_OK && i < out->n; i++) {
            const char *f = bn_json_str(bn_json_get(wm, out->t[i].name), NULL);
            if (!f || strcmp(f, files[k]) != 0) {
                st = bn_fail(err, BN_ERR_FORMAT,
                             "%s: tensor '%.200s' is not mapped to this shard by the index", path,
                             out->t[i].name);
            }
        }
        free(path);
    }
    /* And every listed tensor must exist. */
    for (const bn_json_val *v = bn_json_first(wm); v && st == BN_OK; v = bn_json_next(v)) {
        if (!bn_tset_find(out, bn_json_key(v, NULL))) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: tensor '%.200s' is missing from its shard", index,
                         bn_json_key(v, NULL));
        }
    }
    free(files);
    bn_json_free(j);
    return st;
}

bn_status bn_safetensors_open(const char *path, bn_tensor_set *out, bn_error *err) {
    if (!path || !out) return bn_fail(err, BN_ERR_INVALID_ARG, "safetensors: NULL argument");
    if (!bn_is_dir(path)) {
        size_t n = strlen(path);
        if (n > 11 && !strcmp(path + n - 11, ".index.json")) {
            char *dir = malloc(n + 2);
            if (!dir) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
            memcpy(dir, path, n + 1);
            char *slash = strrchr(dir, '/');
            if (slash) {
                *slash = '\0';
            } else {
                memcpy(dir, ".", 2);
            }
            bn_status st = open_index(dir, path, out, err);
            free(dir);
            return st;
        }
        return open_one(path, out, err);
    }
    size_t need = strlen(path) + 64;
    char *p = malloc(need);
    if (!p) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    bn_status st;
    snprintf(p, need, "%s/model.safetensors.index.json", path);
    if (bn_is_file(p)) {
        st = open_index(path, p, out, err);
    } else {
        snprintf(p, need, "%s/model.safetensors", path);
        if (bn_is_file(p)) {
            st = open_one(p, out, err);
        } else {
            st = bn_fail(err, BN_ERR_NOT_FOUND,
                         "%s: no model.safetensors or model.safetensors.index.json", path);
        }
    }
    free(p);
    return st;
}
