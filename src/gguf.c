/* GGUF v2/v3 reader and v3 writer.
 *
 * The reader validates the whole header in one pass before anything is
 * used: every count, length, shape and offset is checked against the bytes
 * that remain, with overflow-checked arithmetic, and no allocation is sized
 * by a count that the file could not possibly hold. Values stay in the file
 * (mapped or caller-owned); we keep only their offsets, plus NUL-terminated
 * copies of keys and tensor names and hash tables over them.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * n_kv x (string key, u32 type, value), n_tensors x (string name, u32 n_dims,
 * u64 ne[n_dims], u32 type, u64 offset), padding to the alignment, data.
 * A string is u64 length + bytes; an array is u32 type + u64 n + elements. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"
#include "quant.h"

#define HEADER_BYTES 24
/* Smallest possible KV: key length, 1 key byte, type, 1-byte value. */
#define MIN_KV_BYTES 14
/* Smallest possible tensor info: name length, n_dims, one dim, type, offset. */
#define MIN_TENSOR_BYTES 32
#define N_VTYPES 13

typedef struct gkv {
    char *key;
    size_t key_len;
    uint32_t type;
    uint64_t off;       /* scalar: the value; string: its bytes; array: first element */
    uint64_t len;       /* string: bytes; array: elements */
    uint32_t elem_type; /* arrays */
    uint64_t *str_off;  /* string arrays: offset of each element's length field */
} gkv;

typedef struct gtensor {
    char *name;
    size_t name_len;
    int type;
    int n_dims;
    int64_t ne[BN_GGUF_MAX_DIMS];
    uint64_t offset, nbytes;
} gtensor;

struct bn_gguf {
    const uint8_t *data;
    uint64_t size;
    void *map;
    size_t map_len;
    uint32_t version, alignment;
    uint64_t data_start;
    int64_t n_kv, n_tensors;
    gkv *kv;
    gtensor *tensors;
    int64_t *kv_tab; /* open addressing: index + 1, 0 when empty */
    int64_t *t_tab;
    size_t kv_cap, t_cap;
};

static const char *const k_vtype_names[N_VTYPES] = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};

size_t bn_gguf_vtype_size(uint32_t t) {
    switch (t) {
    case BN_GGUF_UINT8:
    case BN_GGUF_INT8:
    case BN_GGUF_BOOL: return 1;
    case BN_GGUF_UINT16:
    case BN_GGUF_INT16: return 2;
    case BN_GGUF_UINT32:
    case BN_GGUF_INT32:
    case BN_GGUF_FLOAT32: return 4;
    case BN_GGUF_UINT64:
    case BN_GGUF_INT64:
    case BN_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *bn_gguf_vtype_name(uint32_t t) { return t < N_VTYPES ? k_vtype_names[t] : "?"; }

/* ---------------------------------------------------------------------- */
/* Hash tables over keys and tensor names                                  */
/* ---------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)s[k]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t table_cap_for(int64_t n) {
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    return cap;
}

/* Names of the entries a table indexes: keys or tensor names. */
static const char *entry_name(const bn_gguf *g, int is_kv, int64_t i, size_t *len) {
    if (is_kv) {
        *len = g->kv[i].key_len;
        return g->kv[i].key;
    }
    *len = g->tensors[i].name_len;
    return g->tensors[i].name;
}

/* Index of `s` in the table, or -1; *slot receives where it would go. */
static int64_t table_find(const bn_gguf *g, int is_kv, const char *s, size_t n, size_t *slot) {
    const int64_t *tab = is_kv ? g->kv_tab : g->t_tab;
    size_t cap = is_kv ? g->kv_cap : g->t_cap;
    if (!tab) return -1;
    size_t h = (size_t)hash_bytes(s, n) & (cap - 1);
    while (tab[h]) {
        size_t len;
        const char *name = entry_name(g, is_kv, tab[h] - 1, &len);
        if (len == n && memcmp(name, s, n) == 0) {
            if (slot) *slot = h;
            return tab[h] - 1;
        }
        h = (h + 1) & (cap - 1);
    }
    if (slot) *slot = h;
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Reader                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct cur {
    const uint8_t *p;
    uint64_t size, pos; /* pos <= size always */
} cur;

static int has(const cur *c, uint64_t n) { return n <= c->size - c->pos; }

static uint32_t rd_u32(cur *c) {
    uint32_t v;
    memcpy(&v, c->p + c->pos, 4);
    c->pos += 4;
    return v;
}

static uint64_t rd_u64(cur *c) {
    uint64_t v;
    memcpy(&v, c->p + c->pos, 8);
    c->pos += 8;
    return v;
}

typedef unsigned long long ull;

static bn_status past_end(bn_error *err, const char *ctx, const char *field, const cur *c) {
    return bn_fail(err, BN_ERR_FORMAT, "%s: %s at offset %llu past end of file (size %llu)", ctx,
                   field, (ull)c->pos, (ull)c->size);
}

/* Validates an array at c->pos (u32 type, u64 n, elements) and moves past
 * it. */
static bn_status parse_array(cur *c, const char *ctx, int depth, uint32_t *elem_type, uint64_t *n,
                             uint64_t *first, bn_error *err) {
    if (!has(c, 12)) return past_end(err, ctx, "array header", c);
    uint64_t at = c->pos;
    uint32_t et = rd_u32(c);
    uint64_t count = rd_u64(c);
    if (et >= N_VTYPES)
        return bn_fail(err, BN_ERR_FORMAT, "%s: bad array element type %u at offset %llu", ctx, et,
                       (ull)at);
    uint64_t rem = c->size - c->pos;
    size_t esz = bn_gguf_vtype_size(et);
    uint64_t min_elem = esz ? esz : et == BN_GGUF_STRING ? 8 : 12;
    if (count > rem / min_elem)
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: array of %llu %s at offset %llu runs past end of file (size %llu)", ctx,
                       (ull)count, bn_gguf_vtype_name(et), (ull)at, (ull)c->size);
    *elem_type = et;
    *n = count;
    *first = c->pos;
    if (esz) {
        if (et == BN_GGUF_BOOL) {
            for (uint64_t j = 0; j < count; j++) {
                if (c->p[c->pos + j] > 1)
                    return bn_fail(err, BN_ERR_FORMAT,
                                   "%s: element %llu: bool value %u at offset "
                                   "%llu is not 0 or 1",
                                   ctx, (ull)j, c->p[c->pos + j], (ull)(c->pos + j));
            }
        }
        c->pos += count * esz;
        return BN_OK;
    }
    if (et == BN_GGUF_STRING) {
        for (uint64_t j = 0; j < count; j++) {
            if (c->size - c->pos < 8)
                return bn_fail(err, BN_ERR_FORMAT,
                               "%s: element %llu: string length at offset %llu past end of file "
                               "(size %llu)",
                               ctx, (ull)j, (ull)c->pos, (ull)c->size);
            uint64_t len;
            memcpy(&len, c->p + c->pos, 8);
            if (len > c->size - c->pos - 8)
                return bn_fail(err, BN_ERR_FORMAT,
                               "%s: element %llu: string length %llu at offset %llu runs past end "
                               "of file (size %llu)",
                               ctx, (ull)j, (ull)len, (ull)c->pos, (ull)c->size);
            c->pos += 8 + len;
        }
        return BN_OK;
    }
    /* arrays of arrays */
    if (depth >= BN_GGUF_MAX_ARRAY_DEPTH)
        return bn_fail(err, BN_ERR_FORMAT, "%s: arrays nested deeper than %d at offset %llu", ctx,
                       BN_GGUF_MAX_ARRAY_DEPTH, (ull)at);
    char sub[384];
    for (uint64_t j = 0; j < count; j++) {
        uint32_t t2;
        uint64_t n2, f2;
        snprintf(sub, sizeof sub, "%s element %llu", ctx, (ull)j);
        bn_status st = parse_array(c, sub, depth + 1, &t2, &n2, &f2, err);
        if (st) return st;
    }
    return BN_OK;
}

/* Reads a u64-length string into a malloc'd NUL-terminated copy. */
static bn_status read_name(cur *c, const char *ctx, const char *what, char **out, size_t *out_len,
                           int allow_empty, bn_error *err) {
    char field[64];
    snprintf(field, sizeof field, "%s length", what);
    if (!has(c, 8)) return past_end(err, ctx, field, c);
    uint64_t at = c->pos;
    uint64_t len = rd_u64(c);
    if (len == 0 && !allow_empty)
        return bn_fail(err, BN_ERR_FORMAT, "%s: %s length 0 at offset %llu", ctx, what, (ull)at);
    if (!has(c, len))
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: %s length %llu at offset %llu runs past end of file (size %llu)", ctx,
                       what, (ull)len, (ull)at, (ull)c->size);
    if (memchr(c->p + c->pos, 0, (size_t)len))
        return bn_fail(err, BN_ERR_FORMAT, "%s: %s at offset %llu contains a NUL byte", ctx, what,
                       (ull)at);
    char *s = malloc((size_t)len + 1);
    if (!s) return bn_fail(err, BN_ERR_NOMEM, "%s: out of memory for a %s", ctx, what);
    memcpy(s, c->p + c->pos, (size_t)len);
    s[len] = '\0';
    c->pos += len;
    *out = s;
    *out_len = (size_t)len;
    return BN_OK;
}

static bn_status parse_kvs(bn_gguf *g, cur *c, const char **arch, size_t *arch_len, bn_error *err) {
    char ctx[160];
    for (int64_t i = 0; i < g->n_kv; i++) {
        gkv *kv = &g->kv[i];
        snprintf(ctx, sizeof ctx, "KV %lld", (long long)i);
        uint64_t key_at = c->pos;
        bn_status st = read_name(c, ctx, "key", &kv->key, &kv->key_len, 0, err);
        if (st) return st;
        snprintf(ctx, sizeof ctx, "KV %lld ('%.100s')", (long long)i, kv->key);
        size_t slot;
        int64_t prev = table_find(g, 1, kv->key, kv->key_len, &slot);
        if (prev >= 0)
            return bn_fail(err, BN_ERR_FORMAT, "%s: duplicate key at offset %llu (also KV %lld)",
                           ctx, (ull)key_at, (long long)prev);
        g->kv_tab[slot] = i + 1;
        if (!has(c, 4)) return past_end(err, ctx, "value type", c);
        uint64_t type_at = c->pos;
        kv->type = rd_u32(c);
        if (kv->type >= N_VTYPES)
            return bn_fail(err, BN_ERR_FORMAT, "%s: bad value type %u at offset %llu", ctx,
                           kv->type, (ull)type_at);
        size_t esz = bn_gguf_vtype_size(kv->type);
        if (esz) {
            if (!has(c, esz)) return past_end(err, ctx, "value", c);
            kv->off = c->pos;
            if (kv->type == BN_GGUF_BOOL && c->p[c->pos] > 1)
                return bn_fail(err, BN_ERR_FORMAT, "%s: bool value %u at offset %llu is not 0 or 1",
                               ctx, c->p[c->pos], (ull)c->pos);
            c->pos += esz;
        } else if (kv->type == BN_GGUF_STRING) {
            if (!has(c, 8)) return past_end(err, ctx, "string length", c);
            uint64_t len_at = c->pos;
            kv->len = rd_u64(c);
            if (!has(c, kv->len))
                return bn_fail(err, BN_ERR_FORMAT,
                               "%s: string length %llu at offset %llu runs past end of file "
                               "(size %llu)",
                               ctx, (ull)kv->len, (ull)len_at, (ull)c->size);
            kv->off = c->pos;
            c->pos += kv->len;
        } else {
            st = parse_array(c, ctx, 1, &kv->elem_type, &kv->len, &kv->off, err);
            if (st) return st;
        }
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (kv->type != BN_GGUF_UINT32)
                return bn_fail(err, BN_ERR_FORMAT, "%s: type %s at offset %llu, expected UINT32",
                               ctx, bn_gguf_vtype_name(kv->type), (ull)type_at);
            uint32_t a;
            memcpy(&a, c->p + kv->off, 4);
            if (a == 0 || (a & (a - 1)) != 0)
                return bn_fail(err, BN_ERR_FORMAT,
                               "%s: alignment %u at offset %llu is not a nonzero power of two", ctx,
                               a, (ull)kv->off);
            g->alignment = a;
        } else if (strcmp(kv->key, "general.architecture") == 0 && kv->type == BN_GGUF_STRING) {
            *arch = (const char *)c->p + kv->off;
            *arch_len = (size_t)kv->len;
        }
    }
    return BN_OK;
}

static int is_bitnet_arch(const char *arch, size_t len) {
    return arch && ((len == 12 && memcmp(arch, "bitnet-b1.58", 12) == 0) ||
                    (len == 9 && memcmp(arch, "bitnet-25", 9) == 0));
}

static bn_status parse_tensors(bn_gguf *g, cur *c, const char *arch, size_t arch_len,
                               bn_error *err) {
    char ctx[160];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gtensor *t = &g->tensors[i];
        snprintf(ctx, sizeof ctx, "tensor %lld", (long long)i);
        uint64_t name_at = c->pos;
        bn_status st = read_name(c, ctx, "name", &t->name, &t->name_len, 1, err);
        if (st) return st;
        snprintf(ctx, sizeof ctx, "tensor %lld ('%.100s')", (long long)i, t->name);
        size_t slot;
        int64_t prev = table_find(g, 0, t->name, t->name_len, &slot);
        if (prev >= 0)
            return bn_fail(err, BN_ERR_FORMAT,
                           "%s: duplicate tensor name at offset %llu (also tensor %lld)", ctx,
                           (ull)name_at, (long long)prev);
        g->t_tab[slot] = i + 1;

        if (!has(c, 4)) return past_end(err, ctx, "n_dims", c);
        uint64_t at = c->pos;
        uint32_t n_dims = rd_u32(c);
        if (n_dims == 0 || n_dims > BN_GGUF_MAX_DIMS)
            return bn_fail(err, BN_ERR_FORMAT, "%s: n_dims %u at offset %llu (must be 1..%d)", ctx,
                           n_dims, (ull)at, BN_GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        if (!has(c, 8ull * n_dims)) return past_end(err, ctx, "shape", c);
        int64_t rows = 1;
        for (int d = 0; d < BN_GGUF_MAX_DIMS; d++) {
            if ((uint32_t)d >= n_dims) {
                t->ne[d] = 1;
                continue;
            }
            uint64_t dim_at = c->pos;
            uint64_t v = rd_u64(c);
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return bn_fail(err, BN_ERR_FORMAT,
                               "%s: dimension %d is %lld at offset %llu (must be positive)", ctx, d,
                               (long long)v, (ull)dim_at);
            t->ne[d] = (int64_t)v;
            if (d > 0) {
                if (rows > INT64_MAX / t->ne[d])
                    return bn_fail(err, BN_ERR_FORMAT,
                                   "%s: shape overflows at dimension %d (offset %llu)", ctx, d,
                                   (ull)dim_at);
                rows *= t->ne[d];
            }
        }
        if (rows > INT64_MAX / t->ne[0])
            return bn_fail(err, BN_ERR_FORMAT,
                           "%s: element count of the shape at offset %llu overflows", ctx,
                           (ull)(at + 4));

        if (!has(c, 4)) return past_end(err, ctx, "type", c);
        at = c->pos;
        uint32_t type = rd_u32(c);
        const bn_type_traits *tr = type < 1024 ? bn_type_get((int)type) : NULL;
        if (!tr)
            return bn_fail(err, BN_ERR_UNSUPPORTED, "%s: unknown tensor type %u at offset %llu",
                           ctx, type, (ull)at);
        if (type == BN_TYPE_I2_S && !is_bitnet_arch(arch, arch_len))
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "%s: tensor type 36 at offset %llu is I2_S only in bitnet-b1.58 or "
                           "bitnet-25 files (general.architecture is '%.*s')",
                           ctx, (ull)at, arch ? (int)(arch_len > 64 ? 64 : arch_len) : 6,
                           arch ? arch : "(none)");
        t->type = (int)type;
        if (t->ne[0] % tr->block_size != 0)
            return bn_fail(err, BN_ERR_FORMAT,
                           "%s: row length %lld is not a multiple of the %s block size %lld", ctx,
                           (long long)t->ne[0], tr->name, (long long)tr->block_size);
        bn_error e2;
        size_t nbytes = bn_type_nbytes(t->type, t->ne[0], rows, &e2);
        if (nbytes == 0) return bn_fail(err, BN_ERR_FORMAT, "%s: %s", ctx, e2.msg);
        t->nbytes = nbytes;

        if (!has(c, 8)) return past_end(err, ctx, "data offset", c);
        at = c->pos;
        t->offset = rd_u64(c);
        if (t->offset % g->alignment != 0)
            return bn_fail(err, BN_ERR_FORMAT,
                           "%s: data offset %llu at offset %llu is not a multiple of the "
                           "alignment %u",
                           ctx, (ull)t->offset, (ull)at, g->alignment);
    }
    return BN_OK;
}

/* Element offsets of string arrays, for O(1) access. Built only once the
 * whole file has been validated, so rejected files cost no allocation. */
static bn_status index_string_arrays(bn_gguf *g, bn_error *err) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        gkv *kv = &g->kv[i];
        if (kv->type != BN_GGUF_ARRAY || kv->elem_type != BN_GGUF_STRING) continue;
        /* validated: len strings of at least 8 bytes each lie within the file */
        kv->str_off = malloc((size_t)(kv->len ? kv->len : 1) * sizeof *kv->str_off);
        if (!kv->str_off)
            return bn_fail(err, BN_ERR_NOMEM, "KV %lld ('%.100s'): out of memory for %llu strings",
                           (long long)i, kv->key, (ull)kv->len);
        uint64_t at = kv->off;
        for (uint64_t j = 0; j < kv->len; j++) {
            uint64_t len;
            memcpy(&len, g->data + at, 8);
            kv->str_off[j] = at;
            at += 8 + len;
        }
    }
    return BN_OK;
}

static bn_status parse(bn_gguf *g, bn_error *err) {
    cur c = {g->data, g->size, 0};
    const char *ctx = "GGUF header";
    if (!has(&c, 4))
        return bn_fail(err, BN_ERR_FORMAT, "%s: file of %llu bytes is too short for the magic", ctx,
                       (ull)g->size);
    if (memcmp(g->data, "GGUF", 4) != 0)
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: bad magic %02x %02x %02x %02x at offset 0 (expected 'GGUF')", ctx,
                       g->data[0], g->data[1], g->data[2], g->data[3]);
    c.pos = 4;
    if (!has(&c, 4)) return past_end(err, ctx, "version", &c);
    g->version = rd_u32(&c);
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "%s: version at offset 4 reads as 0x%08x: big-endian GGUF is not supported",
                       ctx, g->version);
    if (g->version == 0)
        return bn_fail(err, BN_ERR_FORMAT, "%s: version 0 at offset 4 is invalid", ctx);
    if (g->version == 1 || g->version > 3)
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "%s: version %u at offset 4 is not supported (only 2 and 3)", ctx,
                       g->version);
    if (!has(&c, 8)) return past_end(err, ctx, "tensor count", &c);
    uint64_t n_tensors = rd_u64(&c);
    if (!has(&c, 8)) return past_end(err, ctx, "KV count", &c);
    uint64_t n_kv = rd_u64(&c);
    /* Bound both counts by what the rest of the file could hold before any
     * allocation is sized by them. */
    uint64_t rem = c.size - c.pos;
    if (n_kv > rem / MIN_KV_BYTES)
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: KV count %llu at offset 16 is more than the %llu remaining bytes can "
                       "hold",
                       ctx, (ull)n_kv, (ull)rem);
    if (n_tensors > rem / MIN_TENSOR_BYTES ||
        n_tensors * MIN_TENSOR_BYTES > rem - n_kv * MIN_KV_BYTES)
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: tensor count %llu at offset 8 (with %llu KVs) is more than the %llu "
                       "remaining bytes can hold",
                       ctx, (ull)n_tensors, (ull)n_kv, (ull)rem);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv = calloc((size_t)n_kv + 1, sizeof *g->kv);
    g->tensors = calloc((size_t)n_tensors + 1, sizeof *g->tensors);
    g->kv_cap = table_cap_for(g->n_kv);
    g->t_cap = table_cap_for(g->n_tensors);
    g->kv_tab = calloc(g->kv_cap, sizeof *g->kv_tab);
    g->t_tab = calloc(g->t_cap, sizeof *g->t_tab);
    if (!g->kv || !g->tensors || !g->kv_tab || !g->t_tab)
        return bn_fail(err, BN_ERR_NOMEM, "%s: out of memory for %llu KVs and %llu tensors", ctx,
                       (ull)n_kv, (ull)n_tensors);

    g->alignment = BN_GGUF_DEFAULT_ALIGNMENT;
    const char *arch = NULL;
    size_t arch_len = 0;
    bn_status st = parse_kvs(g, &c, &arch, &arch_len, err);
    if (st) return st;
    st = parse_tensors(g, &c, arch, arch_len, err);
    if (st) return st;

    uint64_t header_end = c.pos, pad = (g->alignment - header_end % g->alignment) % g->alignment;
    g->data_start = header_end + pad; /* header_end <= size, so this cannot overflow */
    if (g->data_start > g->size) {
        if (g->n_tensors > 0)
            return bn_fail(err, BN_ERR_FORMAT,
                           "GGUF: data section start %llu (header end %llu padded to %u) is past "
                           "end of file (size %llu)",
                           (ull)g->data_start, (ull)header_end, g->alignment, (ull)g->size);
        g->data_start = g->size; /* no tensors: the padding may be left out */
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gtensor *t = &g->tensors[i];
        uint64_t start, end;
        if (!bn_add_u64(g->data_start, t->offset, &start) || !bn_add_u64(start, t->nbytes, &end) ||
            end > g->size)
            return bn_fail(err, BN_ERR_FORMAT,
                           "tensor %lld ('%.100s'): data offset %llu + %llu bytes (from data start "
                           "%llu) past end of file at offset %llu",
                           (long long)i, t->name, (ull)t->offset, (ull)t->nbytes,
                           (ull)g->data_start, (ull)g->size);
    }
    return index_string_arrays(g, err);
}

void bn_gguf_close(bn_gguf *g) {
    if (!g) return;
    if (g->kv) {
        for (int64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].str_off);
        }
    }
    if (g->tensors) {
        for (int64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    }
    free(g->kv);
    free(g->tensors);
    free(g->kv_tab);
    free(g->t_tab);
    if (g->map) munmap(g->map, g->map_len);
    free(g);
}

static bn_status open_common(const uint8_t *data, uint64_t size, void *map, size_t map_len,
                             bn_gguf **out, bn_error *err) {
    bn_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        if (map) munmap(map, map_len);
        return bn_fail(err, BN_ERR_NOMEM, "GGUF: out of memory");
    }
    g->data = data;
    g->size = size;
    g->map = map;
    g->map_len = map_len;
    bn_status st = parse(g, err);
    if (st) {
        bn_gguf_close(g);
        return st;
    }
    *out = g;
    return bn_ok(err);
}

bn_status bn_gguf_open_memory(const void *data, size_t size, bn_gguf **out, bn_error *err) {
    static const uint8_t empty[1] = {0};
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: out is NULL");
    *out = NULL;
    if (!data && size) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: data is NULL");
    return open_common(data ? data : empty, size, NULL, 0, out, err);
}

bn_status bn_gguf_open(const char *path, bn_gguf **out, bn_error *err) {
    static const uint8_t empty[1] = {0};
    if (!out || !path) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: path or out is NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bn_fail(err, errno == ENOENT ? BN_ERR_NOT_FOUND : BN_ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        bn_status st = bn_fail(err, BN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return st;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return bn_fail(err, BN_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return bn_fail(err, BN_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            bn_status st = bn_fail(err, BN_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size,
                                   strerror(errno));
            close(fd);
            return st;
        }
    }
    close(fd);
    bn_status st = open_common(map ? map : empty, size, map, size, out, err);
    if (st && err) {
        /* Name the file in front of the message. */
        char msg[BN_ERROR_MSG_MAX];
        size_t plen = strnlen(path, 200), mlen = strnlen(err->msg, sizeof err->msg);
        if (plen + 2 + mlen >= sizeof msg) mlen = sizeof msg - plen - 3;
        memcpy(msg, path, plen);
        memcpy(msg + plen, ": ", 2);
        memcpy(msg + plen + 2, err->msg, mlen);
        msg[plen + 2 + mlen] = '\0';
        memcpy(err->msg, msg, sizeof msg);
    }
    return st;
}

uint32_t bn_gguf_version(const bn_gguf *g) { return g ? g->version : 0; }
uint32_t bn_gguf_alignment(const bn_gguf *g) { return g ? g->alignment : 0; }
uint64_t bn_gguf_file_size(const bn_gguf *g) { return g ? g->size : 0; }
uint64_t bn_gguf_data_offset(const bn_gguf *g) { return g ? g->data_start : 0; }
int64_t bn_gguf_n_kv(const bn_gguf *g) { return g ? g->n_kv : 0; }
int64_t bn_gguf_n_tensors(const bn_gguf *g) { return g ? g->n_tensors : 0; }

int64_t bn_gguf_find_key(const bn_gguf *g, const char *key) {
    if (!g || !key) return -1;
    return table_find(g, 1, key, strlen(key), NULL);
}

static const gkv *kv_at(const bn_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const char *bn_gguf_key(const bn_gguf *g, int64_t i) {
    const gkv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

bn_gguf_vtype bn_gguf_kv_type(const bn_gguf *g, int64_t i) {
    const gkv *kv = kv_at(g, i);
    return kv ? (bn_gguf_vtype)kv->type : (bn_gguf_vtype)-1;
}

static bn_status kv_check(const bn_gguf *g, int64_t i, const gkv **out, bn_error *err) {
    *out = kv_at(g, i);
    if (!*out)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: KV index %lld out of range (%lld KVs)",
                       (long long)i, (long long)(g ? g->n_kv : 0));
    return BN_OK;
}

static bn_status wrong_type(bn_error *err, const gkv *kv, const char *want) {
    return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: KV '%.100s' has type %s, not %s", kv->key,
                   bn_gguf_vtype_name(kv->type), want);
}

/* Integer value as a sign flag and magnitude. Returns 0 for non-integers. */
static int kv_int(const bn_gguf *g, const gkv *kv, int *neg, uint64_t *mag) {
    const uint8_t *p = g->data + kv->off;
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 1;
    switch (kv->type) {
    case BN_GGUF_UINT8: u = p[0], is_signed = 0; break;
    case BN_GGUF_INT8: s = (int8_t)p[0]; break;
    case BN_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        u = v, is_signed = 0;
        break;
    }
    case BN_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        s = v;
        break;
    }
    case BN_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        u = v, is_signed = 0;
        break;
    }
    case BN_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        s = v;
        break;
    }
    case BN_GGUF_UINT64: memcpy(&u, p, 8), is_signed = 0; break;
    case BN_GGUF_INT64: memcpy(&s, p, 8); break;
    default: return 0;
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0;
        *mag = u;
    }
    return 1;
}

bn_status bn_gguf_get_i64(const bn_gguf *g, int64_t i, int64_t *out, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    int neg;
    uint64_t mag;
    if (!kv_int(g, kv, &neg, &mag)) return wrong_type(err, kv, "an integer");
    if (neg) {
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "GGUF: KV '%.100s' value %llu does not fit int64", kv->key, (ull)mag);
        *out = (int64_t)mag;
    }
    return bn_ok(err);
}

bn_status bn_gguf_get_u64(const bn_gguf *g, int64_t i, uint64_t *out, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    int neg;
    uint64_t mag;
    if (!kv_int(g, kv, &neg, &mag)) return wrong_type(err, kv, "an integer");
    if (neg && mag)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: KV '%.100s' value -%llu does not fit uint64",
                       kv->key, (ull)mag);
    *out = mag;
    return bn_ok(err);
}

bn_status bn_gguf_get_f64(const bn_gguf *g, int64_t i, double *out, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    if (kv->type == BN_GGUF_FLOAT32) {
        float f;
        memcpy(&f, g->data + kv->off, 4);
        *out = f;
    } else if (kv->type == BN_GGUF_FLOAT64) {
        memcpy(out, g->data + kv->off, 8);
    } else {
        return wrong_type(err, kv, "a float");
    }
    return bn_ok(err);
}

bn_status bn_gguf_get_bool(const bn_gguf *g, int64_t i, int *out, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    if (kv->type != BN_GGUF_BOOL) return wrong_type(err, kv, "BOOL");
    *out = g->data[kv->off] != 0;
    return bn_ok(err);
}

bn_status bn_gguf_get_str(const bn_gguf *g, int64_t i, const char **s, uint64_t *len,
                          bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    if (kv->type != BN_GGUF_STRING) return wrong_type(err, kv, "STRING");
    *s = (const char *)g->data + kv->off;
    if (len) *len = kv->len;
    return bn_ok(err);
}

bn_status bn_gguf_get_arr(const bn_gguf *g, int64_t i, bn_gguf_vtype *elem_type, uint64_t *n,
                          const void **data, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    if (kv->type != BN_GGUF_ARRAY) return wrong_type(err, kv, "ARRAY");
    if (elem_type) *elem_type = (bn_gguf_vtype)kv->elem_type;
    if (n) *n = kv->len;
    if (data) *data = g->data + kv->off;
    return bn_ok(err);
}

bn_status bn_gguf_get_arr_str(const bn_gguf *g, int64_t i, uint64_t j, const char **s,
                              uint64_t *len, bn_error *err) {
    const gkv *kv;
    if (kv_check(g, i, &kv, err)) return BN_ERR_INVALID_ARG;
    if (kv->type != BN_GGUF_ARRAY || kv->elem_type != BN_GGUF_STRING)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: KV '%.100s' is not an array of strings",
                       kv->key);
    if (j >= kv->len)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "GGUF: index %llu out of range for KV '%.100s' (%llu strings)", (ull)j,
                       kv->key, (ull)kv->len);
    uint64_t at = kv->str_off[j], l;
    memcpy(&l, g->data + at, 8);
    *s = (const char *)g->data + at + 8;
    if (len) *len = l;
    return bn_ok(err);
}

static bn_status find(const bn_gguf *g, const char *key, int64_t *i, bn_error *err) {
    if (!g || !key) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF: NULL handle or key");
    *i = bn_gguf_find_key(g, key);
    if (*i < 0) return bn_fail(err, BN_ERR_NOT_FOUND, "GGUF: key '%.200s' not found", key);
    return BN_OK;
}

bn_status bn_gguf_find_i64(const bn_gguf *g, const char *key, int64_t *out, bn_error *err) {
    int64_t i = -1;
    bn_status st = find(g, key, &i, err);
    return st ? st : bn_gguf_get_i64(g, i, out, err);
}

bn_status bn_gguf_find_f64(const bn_gguf *g, const char *key, double *out, bn_error *err) {
    int64_t i = -1;
    bn_status st = find(g, key, &i, err);
    return st ? st : bn_gguf_get_f64(g, i, out, err);
}

bn_status bn_gguf_find_str(const bn_gguf *g, const char *key, const char **s, uint64_t *len,
                           bn_error *err) {
    int64_t i = -1;
    bn_status st = find(g, key, &i, err);
    return st ? st : bn_gguf_get_str(g, i, s, len, err);
}

int64_t bn_gguf_find_tensor(const bn_gguf *g, const char *name) {
    if (!g || !name) return -1;
    return table_find(g, 0, name, strlen(name), NULL);
}

static const gtensor *tensor_at(const bn_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const char *bn_gguf_tensor_name(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? t->name : NULL;
}

int bn_gguf_tensor_type(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? t->type : -1;
}

int bn_gguf_tensor_n_dims(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? t->n_dims : 0;
}

int64_t bn_gguf_tensor_ne(const bn_gguf *g, int64_t i, int dim) {
    const gtensor *t = tensor_at(g, i);
    if (!t || dim < 0) return 0;
    return dim < BN_GGUF_MAX_DIMS ? t->ne[dim] : 1;
}

uint64_t bn_gguf_tensor_offset(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? t->offset : 0;
}

uint64_t bn_gguf_tensor_nbytes(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? t->nbytes : 0;
}

const void *bn_gguf_tensor_data(const bn_gguf *g, int64_t i) {
    const gtensor *t = tensor_at(g, i);
    return t ? g->data + g->data_start + t->offset : NULL;
}

/* ---------------------------------------------------------------------- */
/* Writer                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct wkv {
    char *key;
    size_t key_len;
    uint32_t type;
    uint8_t *payload; /* the value as stored after the type field */
    size_t size;
} wkv;

typedef struct wtensor {
    char *name;
    size_t name_len;
    int type, n_dims;
    int64_t ne[BN_GGUF_MAX_DIMS];
    void *data;
    size_t nbytes;
} wtensor;

struct bn_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

bn_status bn_gguf_writer_new(bn_gguf_writer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
    return bn_ok(err);
}

void bn_gguf_writer_free(bn_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].payload);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static const wkv *writer_find(const bn_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) return &w->kv[i];
    }
    return NULL;
}

static bn_status check_key(bn_gguf_writer *w, const char *key, bn_error *err) {
    if (!w || !key) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: NULL writer or key");
    if (!key[0]) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: empty key");
    if (writer_find(w, key))
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s' is already set", key);
    return BN_OK;
}

/* Takes ownership of payload (freed on failure). */
static bn_status add_kv(bn_gguf_writer *w, const char *key, uint32_t type, uint8_t *payload,
                        size_t size, bn_error *err) {
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(payload);
            return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    size_t klen = strlen(key);
    char *k = malloc(klen + 1);
    if (!k) {
        free(payload);
        return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
    }
    memcpy(k, key, klen + 1);
    w->kv[w->n_kv++] = (wkv){k, klen, type, payload, size};
    return bn_ok(err);
}

static uint8_t *alloc_payload(size_t size, bn_error *err) {
    uint8_t *p = malloc(size ? size : 1);
    if (!p) bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory for %zu bytes", size);
    return p;
}

bn_status bn_gguf_writer_set(bn_gguf_writer *w, const char *key, bn_gguf_vtype type,
                             const void *value, bn_error *err) {
    bn_status st = check_key(w, key, err);
    if (st) return st;
    size_t esz = bn_gguf_vtype_size((uint32_t)type);
    if (!esz)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "GGUF writer: key '%.200s': type %d is not a scalar type (use set_str / "
                       "set_arr)",
                       key, (int)type);
    if (!value)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': NULL value", key);
    if (type == BN_GGUF_BOOL && *(const uint8_t *)value > 1)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': bool value %u", key,
                       *(const uint8_t *)value);
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        if (type != BN_GGUF_UINT32)
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "GGUF writer: general.alignment must be UINT32, not %s",
                           bn_gguf_vtype_name((uint32_t)type));
        memcpy(&a, value, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "GGUF writer: general.alignment %u is not a nonzero power of two", a);
    }
    uint8_t *p = alloc_payload(esz, err);
    if (!p) return BN_ERR_NOMEM;
    memcpy(p, value, esz);
    return add_kv(w, key, (uint32_t)type, p, esz, err);
}

bn_status bn_gguf_writer_set_str(bn_gguf_writer *w, const char *key, const char *s, uint64_t len,
                                 bn_error *err) {
    bn_status st = check_key(w, key, err);
    if (st) return st;
    if (!s && len)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': NULL string", key);
    size_t size;
    if (len > SIZE_MAX - 8 || !bn_add_size(8, (size_t)len, &size))
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': string too long", key);
    uint8_t *p = alloc_payload(size, err);
    if (!p) return BN_ERR_NOMEM;
    memcpy(p, &len, 8);
    if (len) memcpy(p + 8, s, (size_t)len);
    return add_kv(w, key, BN_GGUF_STRING, p, size, err);
}

bn_status bn_gguf_writer_set_arr(bn_gguf_writer *w, const char *key, bn_gguf_vtype elem_type,
                                 const void *data, uint64_t n, bn_error *err) {
    bn_status st = check_key(w, key, err);
    if (st) return st;
    size_t esz = bn_gguf_vtype_size((uint32_t)elem_type), bytes, size;
    if (!esz)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "GGUF writer: key '%.200s': element type %d is not numeric (use "
                       "set_arr_str for strings)",
                       key, (int)elem_type);
    if (!data && n)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': NULL data", key);
    if (n > SIZE_MAX || !bn_mul_size((size_t)n, esz, &bytes) || !bn_add_size(bytes, 12, &size))
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': array too large", key);
    if (elem_type == BN_GGUF_BOOL) {
        for (uint64_t j = 0; j < n; j++) {
            if (((const uint8_t *)data)[j] > 1)
                return bn_fail(err, BN_ERR_INVALID_ARG,
                               "GGUF writer: key '%.200s': element %llu: bool value %u", key,
                               (ull)j, ((const uint8_t *)data)[j]);
        }
    }
    uint8_t *p = alloc_payload(size, err);
    if (!p) return BN_ERR_NOMEM;
    uint32_t et = (uint32_t)elem_type;
    memcpy(p, &et, 4);
    memcpy(p + 4, &n, 8);
    if (bytes) memcpy(p + 12, data, bytes);
    return add_kv(w, key, BN_GGUF_ARRAY, p, size, err);
}

bn_status bn_gguf_writer_set_arr_str(bn_gguf_writer *w, const char *key, const char *const *strs,
                                     const uint64_t *lens, uint64_t n, bn_error *err) {
    bn_status st = check_key(w, key, err);
    if (st) return st;
    if (!strs && n)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': NULL strings", key);
    size_t size = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (!strs[j])
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "GGUF writer: key '%.200s': string %llu is NULL", key, (ull)j);
        uint64_t len = lens ? lens[j] : strlen(strs[j]);
        if (len > SIZE_MAX || !bn_add_size(size, 8, &size) ||
            !bn_add_size(size, (size_t)len, &size))
            return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: key '%.200s': array too large",
                           key);
    }
    uint8_t *p = alloc_payload(size, err);
    if (!p) return BN_ERR_NOMEM;
    uint32_t et = BN_GGUF_STRING;
    memcpy(p, &et, 4);
    memcpy(p + 4, &n, 8);
    size_t o = 12;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t len = lens ? lens[j] : strlen(strs[j]);
        memcpy(p + o, &len, 8);
        if (len) memcpy(p + o + 8, strs[j], (size_t)len);
        o += 8 + (size_t)len;
    }
    return add_kv(w, key, BN_GGUF_ARRAY, p, size, err);
}

bn_status bn_gguf_writer_set_raw(bn_gguf_writer *w, const char *key, bn_gguf_vtype type,
                                 const void *payload, size_t size, bn_error *err) {
    bn_status st = check_key(w, key, err);
    if (st) return st;
    if (!payload && size) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: NULL payload");
    uint8_t *p = alloc_payload(size, err);
    if (!p) return BN_ERR_NOMEM;
    if (size) memcpy(p, payload, size);
    return add_kv(w, key, (uint32_t)type, p, size, err);
}

bn_status bn_gguf_writer_add_tensor(bn_gguf_writer *w, const char *name, int type, int n_dims,
                                    const int64_t *ne, const void *data, size_t nbytes,
                                    bn_error *err) {
    if (!w || !name) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: NULL writer or name");
    if (!name[0]) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: empty tensor name");
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: tensor '%.200s' already added",
                           name);
    }
    const bn_type_traits *tr = bn_type_get(type);
    if (!tr)
        return bn_fail(err, BN_ERR_UNSUPPORTED, "GGUF writer: tensor '%.200s': unknown type %d",
                       name, type);
    if (n_dims < 1 || n_dims > BN_GGUF_MAX_DIMS || !ne)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "GGUF writer: tensor '%.200s': n_dims %d (must be 1..%d with a shape)", name,
                       n_dims, BN_GGUF_MAX_DIMS);
    int64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "GGUF writer: tensor '%.200s': dimension %d is %lld", name, d,
                           (long long)ne[d]);
        if (d > 0) {
            if (rows > INT64_MAX / ne[d])
                return bn_fail(err, BN_ERR_INVALID_ARG,
                               "GGUF writer: tensor '%.200s': shape overflows", name);
            rows *= ne[d];
        }
    }
    bn_error e2;
    size_t want = bn_type_nbytes(type, ne[0], rows, &e2);
    if (!want)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: tensor '%.200s': %s", name, e2.msg);
    if (nbytes != want)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "GGUF writer: tensor '%.200s': %zu bytes given, a %s tensor of this shape "
                       "takes %zu",
                       name, nbytes, tr->name, want);
    if (!data)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: tensor '%.200s': NULL data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    size_t nlen = strlen(name);
    char *nm = malloc(nlen + 1);
    void *copy = malloc(nbytes);
    if (!nm || !copy) {
        free(nm);
        free(copy);
        return bn_fail(err, BN_ERR_NOMEM,
                       "GGUF writer: tensor '%.200s': out of memory for %zu bytes", name, nbytes);
    }
    memcpy(nm, name, nlen + 1);
    memcpy(copy, data, nbytes);
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->name_len = nlen;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < BN_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = copy;
    t->nbytes = nbytes;
    return bn_ok(err);
}

/* Output to a FILE or into a buffer of precomputed size. */
typedef struct emit {
    FILE *f;
    uint8_t *buf;
    size_t pos;
    int failed;
} emit;

static void put(emit *e, const void *p, size_t n) {
    if (e->failed || n == 0) return;
    if (e->f) {
        if (fwrite(p, 1, n, e->f) != n) e->failed = 1;
    } else {
        memcpy(e->buf + e->pos, p, n);
    }
    e->pos += n;
}

static void put_u32(emit *e, uint32_t v) { put(e, &v, 4); }
static void put_u64(emit *e, uint64_t v) { put(e, &v, 8); }

static void put_zeros(emit *e, size_t n) {
    static const uint8_t zeros[64] = {0};
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(e, zeros, k);
        n -= k;
    }
}

typedef struct layout {
    uint32_t alignment;
    size_t header_end, data_start, total;
    size_t *offsets; /* per tensor, from data start */
} layout;

static int align_size(size_t v, uint32_t a, size_t *out) {
    size_t pad = (a - v % a) % a;
    return bn_add_size(v, pad, out);
}

static bn_status plan(const bn_gguf_writer *w, layout *L, bn_error *err) {
    memset(L, 0, sizeof *L);
    L->alignment = BN_GGUF_DEFAULT_ALIGNMENT;
    const wkv *a = writer_find(w, "general.alignment");
    if (a && a->type == BN_GGUF_UINT32 && a->size == 4) memcpy(&L->alignment, a->payload, 4);
    if (L->alignment == 0 || (L->alignment & (L->alignment - 1)) != 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: bad general.alignment %u",
                       L->alignment);
    const wkv *arch = writer_find(w, "general.architecture");
    for (size_t i = 0; i < w->n_t; i++) {
        if (w->t[i].type != BN_TYPE_I2_S) continue;
        const char *s = NULL;
        size_t len = 0;
        if (arch && arch->type == BN_GGUF_STRING) {
            s = (const char *)arch->payload + 8;
            len = arch->size - 8;
        }
        if (!is_bitnet_arch(s, len))
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "GGUF writer: tensor '%.200s' is I2_S, which needs "
                           "general.architecture 'bitnet-b1.58' or 'bitnet-25'",
                           w->t[i].name);
    }
    size_t s = HEADER_BYTES;
    int ok = 1;
    for (size_t i = 0; i < w->n_kv && ok; i++) {
        ok = bn_add_size(s, 12 + w->kv[i].key_len, &s) && bn_add_size(s, w->kv[i].size, &s);
    }
    for (size_t i = 0; i < w->n_t && ok; i++) {
        ok = bn_add_size(s, 8 + w->t[i].name_len + 4 + 8 * (size_t)w->t[i].n_dims + 12, &s);
    }
    L->header_end = s;
    ok = ok && align_size(s, L->alignment, &L->data_start);
    L->offsets = malloc((w->n_t ? w->n_t : 1) * sizeof *L->offsets);
    if (!L->offsets) return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
    size_t off = 0;
    for (size_t i = 0; i < w->n_t && ok; i++) {
        L->offsets[i] = off;
        ok = bn_add_size(off, w->t[i].nbytes, &off) && align_size(off, L->alignment, &off);
    }
    ok = ok && bn_add_size(L->data_start, off, &L->total);
    if (!ok) {
        free(L->offsets);
        L->offsets = NULL;
        return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: file size overflows");
    }
    return BN_OK;
}

static void emit_all(const bn_gguf_writer *w, const layout *L, emit *e) {
    put(e, "GGUF", 4);
    put_u32(e, 3);
    put_u64(e, w->n_t);
    put_u64(e, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_u64(e, w->kv[i].key_len);
        put(e, w->kv[i].key, w->kv[i].key_len);
        put_u32(e, w->kv[i].type);
        put(e, w->kv[i].payload, w->kv[i].size);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_u64(e, t->name_len);
        put(e, t->name, t->name_len);
        put_u32(e, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(e, (uint64_t)t->ne[d]);
        put_u32(e, (uint32_t)t->type);
        put_u64(e, L->offsets[i]);
    }
    put_zeros(e, L->data_start - L->header_end);
    for (size_t i = 0; i < w->n_t; i++) {
        put(e, w->t[i].data, w->t[i].nbytes);
        size_t end = i + 1 < w->n_t ? L->offsets[i + 1] : L->total - L->data_start;
        put_zeros(e, end - L->offsets[i] - w->t[i].nbytes);
    }
}

bn_status bn_gguf_writer_write_memory(bn_gguf_writer *w, void **out, size_t *size, bn_error *err) {
    if (!w || !out || !size) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: NULL argument");
    layout L;
    bn_status st = plan(w, &L, err);
    if (st) return st;
    uint8_t *buf = malloc(L.total);
    if (!buf) {
        free(L.offsets);
        return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory for %zu bytes", L.total);
    }
    emit e = {NULL, buf, 0, 0};
    emit_all(w, &L, &e);
    free(L.offsets);
    *out = buf;
    *size = L.total;
    return bn_ok(err);
}

bn_status bn_gguf_writer_write(bn_gguf_writer *w, const char *path, bn_error *err) {
    if (!w || !path) return bn_fail(err, BN_ERR_INVALID_ARG, "GGUF writer: NULL writer or path");
    layout L;
    bn_status st = plan(w, &L, err);
    if (st) return st;
    /* Write beside the target and rename, so a failure leaves no partial
     * file under the final name. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(L.offsets);
        return bn_fail(err, BN_ERR_NOMEM, "GGUF writer: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = bn_fail(err, BN_ERR_IO, "%s: cannot create a temporary file: %s", path,
                     strerror(errno));
        free(tmp);
        free(L.offsets);
        return st;
    }
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        st = bn_fail(err, BN_ERR_IO, "%s: fdopen failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        free(L.offsets);
        return st;
    }
    emit e = {f, NULL, 0, 0};
    emit_all(w, &L, &e);
    free(L.offsets);
    int failed = e.failed || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        unlink(tmp);
        free(tmp);
        return bn_fail(err, BN_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        st = bn_fail(err, BN_ERR_IO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return bn_ok(err);
}

int bn_gguf_in_mapping(const bn_gguf *g, const void *p, size_t n) {
    if (!g || !g->map || !p) return 0;
    const uintptr_t a = (uintptr_t)p, lo = (uintptr_t)g->map;
    return a >= lo && a - lo <= g->map_len && n <= g->map_len - (a - lo);
}
