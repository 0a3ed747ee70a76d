/* PyTorch checkpoint reader (torch.save's zip format), without torch and
 * without running any code from the file.
 *
 * Container (torch/serialization.py _save, PyTorchFileWriter): a zip archive
 * of stored (uncompressed) entries "<name>/data.pkl" (the pickled object),
 * "<name>/data/<key>" (the raw little-endian bytes of each storage),
 * "<name>/byteorder", "<name>/version" ... Local headers may defer their sizes
 * to a data descriptor, so sizes and offsets come from the central directory
 * (zip64 fields honoured).
 *
 * data.pkl is read by a restricted unpickler: a small stack machine that
 * knows only the opcodes a state dict uses (protocol 2, plus the protocol-4
 * framing opcodes) and only these globals:
 *   collections.OrderedDict                    (an empty dict)
 *   torch._utils._rebuild_tensor_v2            (storage, offset, size, stride, ...)
 *   torch._utils._rebuild_parameter            (the tensor itself)
 *   torch.{Float,Half,BFloat16,Char,Byte}Storage, torch.UntypedStorage,
 *   torch.storage.UntypedStorage               (persistent ids: ('storage',
 *                                               type, key, location, numel))
 *   torch.float32/float/float16/half/bfloat16/int8/uint8 (inert dtype values)
 * REDUCE calls only the three callables above, by their meaning (nothing is
 * imported or called); anything else (os.system, builtins.eval, INST, OBJ,
 * NEWOBJ, EXT*, ...) is an error that names the opcode or global and its
 * offset. Memory is bounded by the pickle's size; no recursion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"

#define PK_MAX_MEMO (1u << 22)
#define PK_MAX_DEPTH_MARKS (1u << 20)

/* ------------------------------------------------------------------------ */
/* Zip                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct zentry {
    const char *name;
    size_t name_len;
    const uint8_t *data;
    uint64_t size;
} zentry;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static bn_status zip_read(const uint8_t *p, size_t size, zentry **out, size_t *n_out,
                          bn_error *err) {
    *out = NULL;
    *n_out = 0;
    if (size < 22) return bn_fail(err, BN_ERR_FORMAT, "pt: %zu bytes is too short for a zip", size);
    size_t eocd = SIZE_MAX;
    size_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (size_t i = size - 22 + 1; i-- > lo;) {
        if (rd32(p + i) == 0x06054b50u && i + 22 + (size_t)rd16(p + i + 20) <= size) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX) {
        return bn_fail(err, BN_ERR_FORMAT, "pt: no zip end-of-central-directory record");
    }
    uint64_t n_ent = rd16(p + eocd + 10);
    uint64_t cd_size = rd32(p + eocd + 12);
    uint64_t cd_off = rd32(p + eocd + 16);
    if (n_ent == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(p + eocd - 20) != 0x07064b50u) {
            return bn_fail(err, BN_ERR_FORMAT, "pt: zip64 locator missing before offset %zu", eocd);
        }
        uint64_t r = rd64(p + eocd - 20 + 8);
        if (r > size || size - r < 56 || rd32(p + r) != 0x06064b50u) {
            return bn_fail(err, BN_ERR_FORMAT, "pt: zip64 end record at %llu is invalid",
                           (unsigned long long)r);
        }
        n_ent = rd64(p + r + 32);
        cd_size = rd64(p + r + 40);
        cd_off = rd64(p + r + 48);
    }
    if (cd_off > size || cd_size > size - cd_off || n_ent > cd_size / 46) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "pt: zip central directory (offset %llu, %llu bytes, %llu entries) does "
                       "not fit the file of %zu bytes",
                       (unsigned long long)cd_off, (unsigned long long)cd_size,
                       (unsigned long long)n_ent, size);
    }
    zentry *e = calloc(n_ent ? (size_t)n_ent : 1, sizeof *e);
    if (!e) return bn_fail(err, BN_ERR_NOMEM, "pt: out of memory");
    uint64_t q = cd_off, end = cd_off + cd_size;
    for (uint64_t k = 0; k < n_ent; k++) {
        if (end - q < 46 || rd32(p + q) != 0x02014b50u) {
            free(e);
            return bn_fail(err, BN_ERR_FORMAT, "pt: bad zip central directory entry at %llu",
                           (unsigned long long)q);
        }
        const uint8_t *c = p + q;
        uint16_t method = rd16(c + 10);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24), lho = rd32(c + 42);
        size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
        if (end - q - 46 < (uint64_t)nlen + xlen + clen) {
            free(e);
            return bn_fail(err, BN_ERR_FORMAT, "pt: zip entry %llu at %llu overruns the directory",
                           (unsigned long long)k, (unsigned long long)q);
        }
        /* zip64 extra field: the 0xFFFFFFFF fields, in order usize, csize,
         * local header offset. */
        const uint8_t *x = c + 46 + nlen, *xe = x + xlen;
        while (xe - x >= 4) {
            uint16_t id = rd16(x), len = rd16(x + 2);
            if ((size_t)(xe - x - 4) < len) break;
            if (id == 1) {
                const uint8_t *f = x + 4, *fe = f + len;
                if (usize == 0xFFFFFFFFu && fe - f >= 8) usize = rd64(f), f += 8;
                if (csize == 0xFFFFFFFFu && fe - f >= 8) csize = rd64(f), f += 8;
                if (lho == 0xFFFFFFFFu && fe - f >= 8) lho = rd64(f);
            }
            x += 4 + len;
        }
        if (method != 0 || csize != usize) {
            free(e);
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "pt: zip entry '%.*s' is compressed (method %u); torch.save stores "
                           "entries uncompressed",
                           (int)(nlen > 200 ? 200 : nlen), (const char *)c + 46, method);
        }
        if (lho > size || size - lho < 30 || rd32(p + lho) != 0x04034b50u) {
            free(e);
            return bn_fail(err, BN_ERR_FORMAT, "pt: zip local header of entry %llu at %llu is bad",
                           (unsigned long long)k, (unsigned long long)lho);
        }
        uint64_t data = lho + 30 + (uint64_t)rd16(p + lho + 26) + rd16(p + lho + 28);
        if (data > size || usize > size - data) {
            free(e);
            return bn_fail(
                err, BN_ERR_FORMAT,
                "pt: zip entry '%.*s' (%llu bytes at %llu) runs past the end of the file",
                (int)(nlen > 200 ? 200 : nlen), (const char *)c + 46, (unsigned long long)usize,
                (unsigned long long)data);
        }
        e[k].name = (const char *)c + 46;
        e[k].name_len = nlen;
        e[k].data = p + data;
        e[k].size = usize;
        q += 46 + (uint64_t)nlen + xlen + clen;
    }
    *out = e;
    *n_out = (size_t)n_ent;
    return BN_OK;
}

static const zentry *zip_find(const zentry *e, size_t n, const char *a, size_t alen, const char *b,
                              size_t blen, const char *c, size_t clen) {
    for (size_t i = 0; i < n; i++) {
        if (e[i].name_len == alen + blen + clen && !memcmp(e[i].name, a, alen) &&
            !memcmp(e[i].name + alen, b, blen) && !memcmp(e[i].name + alen + blen, c, clen))
            return &e[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Restricted unpickler                                                     */
/* ------------------------------------------------------------------------ */

enum {
    V_NONE,
    V_BOOL,
    V_INT,
    V_FLOAT,
    V_STR,
    V_TUPLE,
    V_LIST,
    V_DICT,
    V_GLOBAL,
    V_STORAGE,
    V_TENSOR
};

enum {
    G_ORDERED_DICT,
    G_REBUILD_V2,
    G_REBUILD_PARAM,
    G_STORAGE, /* sub: dtype, or -1 for untyped (bytes) */
    G_DTYPE
};

typedef struct pv {
    uint8_t kind;
    int8_t sub; /* global id / dtype */
    int8_t gsub;
    int64_t i;
    const char *s; /* V_STR: into the pickle */
    size_t n;
    uint32_t *items; /* containers: ids; dict: key, value pairs */
    size_t n_items, cap_items;
    /* V_STORAGE: key s/n, dtype sub, numel i. V_TENSOR: storage id in
     * `store`, offset i, shape/stride. */
    uint32_t store;
    int n_dims;
    int64_t shape[BN_CKPT_MAX_DIMS], stride[BN_CKPT_MAX_DIMS];
} pv;

typedef struct pk {
    const uint8_t *p;
    size_t n, pos;
    pv *v;
    size_t nv, capv;
    uint32_t *stack;
    size_t ns, caps;
    size_t *marks;
    size_t nm, capm;
    uint32_t *memo;
    size_t nmemo;
    bn_error *err;
} pk;

static bn_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return BN_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return BN_ERR_NOMEM;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return BN_ERR_NOMEM;
    *p = q;
    *cap = c;
    return BN_OK;
}

static bn_status pk_new(pk *k, int kind, uint32_t *id) {
    if (grow((void **)&k->v, &k->capv, k->nv + 1, sizeof *k->v))
        return bn_fail(k->err, BN_ERR_NOMEM, "pt: out of memory");
    pv *v = &k->v[k->nv];
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    *id = (uint32_t)k->nv++;
    return BN_OK;
}

static bn_status pk_push(pk *k, uint32_t id) {
    if (grow((void **)&k->stack, &k->caps, k->ns + 1, sizeof *k->stack))
        return bn_fail(k->err, BN_ERR_NOMEM, "pt: out of memory");
    k->stack[k->ns++] = id;
    return BN_OK;
}

static bn_status pk_push_new(pk *k, int kind, uint32_t *id) {
    bn_status st = pk_new(k, kind, id);
    return st ? st : pk_push(k, *id);
}

static bn_status bad(pk *k, size_t at, const char *what) {
    return bn_fail(k->err, BN_ERR_FORMAT, "pt: pickle offset %zu: %s", at, what);
}

static bn_status pk_pop(pk *k, size_t at, uint32_t *id) {
    size_t floor = k->nm ? k->marks[k->nm - 1] : 0;
    if (k->ns <= floor) return bad(k, at, "stack underflow");
    *id = k->stack[--k->ns];
    return BN_OK;
}

/* Items above the topmost mark: [*first, ns). Pops the mark. */
static bn_status pk_pop_mark(pk *k, size_t at, size_t *first) {
    if (k->nm == 0) return bad(k, at, "no MARK on the stack");
    *first = k->marks[--k->nm];
    return BN_OK;
}

static bn_status item_add(pk *k, uint32_t cont, uint32_t id) {
    pv *c = &k->v[cont];
    if (grow((void **)&c->items, &c->cap_items, c->n_items + 1, sizeof *c->items))
        return bn_fail(k->err, BN_ERR_NOMEM, "pt: out of memory");
    c->items[c->n_items++] = id;
    return BN_OK;
}

static bn_status make_tuple(pk *k, size_t first, uint32_t *id) {
    bn_status st = pk_new(k, V_TUPLE, id);
    for (size_t i = first; st == BN_OK && i < k->ns; i++)
        st = item_add(k, *id, k->stack[i]);
    if (st == BN_OK) k->ns = first;
    return st;
}

static int str_is(const pv *v, const char *s) {
    return v->kind == V_STR && v->n == strlen(s) && !memcmp(v->s, s, v->n);
}

static bn_status resolve_global(pk *k, size_t at, const char *mod, size_t ml, const char *name,
                                size_t nl, uint32_t *id) {
    static const struct {
        const char *m, *n;
        int g, sub;
    } allow[] = {
        {"collections", "OrderedDict", G_ORDERED_DICT, 0},
        {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, 0},
        {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, 0},
        {"torch", "FloatStorage", G_STORAGE, BN_DT_F32},
        {"torch", "HalfStorage", G_STORAGE, BN_DT_F16},
        {"torch", "BFloat16Storage", G_STORAGE, BN_DT_BF16},
        {"torch", "CharStorage", G_STORAGE, BN_DT_I8},
        {"torch", "ByteStorage", G_STORAGE, BN_DT_U8},
        {"torch", "UntypedStorage", G_STORAGE, -1},
        {"torch.storage", "UntypedStorage", G_STORAGE, -1},
        {"torch", "float32", G_DTYPE, BN_DT_F32},
        {"torch", "float", G_DTYPE, BN_DT_F32},
        {"torch", "float16", G_DTYPE, BN_DT_F16},
        {"torch", "half", G_DTYPE, BN_DT_F16},
        {"torch", "bfloat16", G_DTYPE, BN_DT_BF16},
        {"torch", "int8", G_DTYPE, BN_DT_I8},
        {"torch", "uint8", G_DTYPE, BN_DT_U8},
    };
    for (size_t i = 0; i < sizeof allow / sizeof allow[0]; i++) {
        if (strlen(allow[i].m) == ml && !memcmp(allow[i].m, mod, ml) && strlen(allow[i].n) == nl &&
            !memcmp(allow[i].n, name, nl)) {
            bn_status st = pk_push_new(k, V_GLOBAL, id);
            if (st) return st;
            k->v[*id].sub = (int8_t)allow[i].g;
            k->v[*id].gsub = (int8_t)allow[i].sub;
            return BN_OK;
        }
    }
    char m[64], n[64];
    snprintf(m, sizeof m, "%.*s", (int)(ml > 60 ? 60 : ml), mod);
    snprintf(n, sizeof n, "%.*s", (int)(nl > 60 ? 60 : nl), name);
    for (char *c = m; *c; c++)
        if ((unsigned char)*c < 32 || *c == '%') *c = '?';
    for (char *c = n; *c; c++)
        if ((unsigned char)*c < 32 || *c == '%') *c = '?';
    return bn_fail(k->err, BN_ERR_UNSUPPORTED,
                   "pt: pickle offset %zu: global '%s.%s' is not allowed (only tensors and "
                   "dicts of tensors are read; no code from the file is run)",
                   at, m, n);
}

/* Integer tuple -> dims. */
static bn_status int_tuple(pk *k, size_t at, uint32_t id, int64_t *out, int *n, const char *what) {
    const pv *t = &k->v[id];
    if (t->kind != V_TUPLE || t->n_items > BN_CKPT_MAX_DIMS) {
        return bn_fail(k->err, BN_ERR_UNSUPPORTED,
                       "pt: pickle offset %zu: tensor %s is not a tuple of at most %d ints", at,
                       what, BN_CKPT_MAX_DIMS);
    }
    for (size_t i = 0; i < t->n_items; i++) {
        const pv *e = &k->v[t->items[i]];
        if (e->kind != V_INT || e->i < 0 || e->i > ((int64_t)1 << 40))
            return bad(k, at, "tensor size/stride element is not a valid integer");
        out[i] = e->i;
    }
    *n = (int)t->n_items;
    return BN_OK;
}

static bn_status do_reduce(pk *k, size_t at) {
    uint32_t args = 0, fn = 0;
    bn_status st = pk_pop(k, at, &args);
    if (!st) st = pk_pop(k, at, &fn);
    if (st) return st;
    const pv *f = &k->v[fn], *a = &k->v[args];
    if (f->kind != V_GLOBAL || a->kind != V_TUPLE) return bad(k, at, "REDUCE of a non-callable");
    uint32_t id = 0;
    switch (f->sub) {
    case G_ORDERED_DICT:
        if (a->n_items != 0) return bad(k, at, "OrderedDict() with arguments");
        return pk_push_new(k, V_DICT, &id);
    case G_REBUILD_PARAM:
        if (a->n_items < 1 || k->v[a->items[0]].kind != V_TENSOR)
            return bad(k, at, "_rebuild_parameter without a tensor");
        return pk_push(k, a->items[0]);
    case G_REBUILD_V2: {
        if (a->n_items < 4 || k->v[a->items[0]].kind != V_STORAGE ||
            k->v[a->items[1]].kind != V_INT)
            return bad(k, at, "_rebuild_tensor_v2 arguments are not (storage, offset, size, ...)");
        pv t;
        memset(&t, 0, sizeof t);
        int nd2 = 0;
        st = int_tuple(k, at, a->items[2], t.shape, &t.n_dims, "size");
        if (!st) st = int_tuple(k, at, a->items[3], t.stride, &nd2, "stride");
        if (st) return st;
        if (nd2 != t.n_dims) return bad(k, at, "tensor size and stride differ in length");
        t.kind = V_TENSOR;
        t.store = a->items[0];
        t.i = k->v[a->items[1]].i;
        if (t.i < 0) return bad(k, at, "negative storage offset");
        st = pk_push_new(k, V_TENSOR, &id);
        if (st) return st;
        k->v[id] = t;
        return BN_OK;
    }
    default: return bad(k, at, "REDUCE of a value that is not callable here");
    }
}

static bn_status do_persid(pk *k, size_t at) {
    uint32_t tid = 0;
    bn_status st = pk_pop(k, at, &tid);
    if (st) return st;
    const pv *t = &k->v[tid];
    if (t->kind != V_TUPLE || t->n_items != 5 || !str_is(&k->v[t->items[0]], "storage") ||
        k->v[t->items[1]].kind != V_GLOBAL || k->v[t->items[1]].sub != G_STORAGE ||
        k->v[t->items[2]].kind != V_STR || k->v[t->items[4]].kind != V_INT) {
        return bad(k, at, "persistent id is not ('storage', torch.*Storage, key, location, numel)");
    }
    uint32_t id = 0;
    int dt = k->v[t->items[1]].gsub;
    const pv key = k->v[t->items[2]];
    int64_t numel = k->v[t->items[4]].i;
    st = pk_push_new(k, V_STORAGE, &id);
    if (st) return st;
    pv *s = &k->v[id];
    s->sub = (int8_t)(dt < 0 ? BN_DT_U8 : dt);
    s->s = key.s;
    s->n = key.n;
    s->i = numel;
    return BN_OK;
}

static bn_status need(pk *k, size_t at, size_t n) {
    if (k->n - k->pos < n) return bad(k, at, "truncated opcode argument");
    return BN_OK;
}

static bn_status memo_put(pk *k, size_t at, uint64_t key) {
    if (k->ns == 0) return bad(k, at, "memo put with an empty stack");
    if (key >= PK_MAX_MEMO) return bad(k, at, "memo key too large");
    if (key >= k->nmemo) {
        size_t cap = k->nmemo;
        if (grow((void **)&k->memo, &cap, (size_t)key + 1, sizeof *k->memo))
            return bn_fail(k->err, BN_ERR_NOMEM, "pt: out of memory");
        for (size_t i = k->nmemo; i < cap; i++)
            k->memo[i] = UINT32_MAX;
        k->nmemo = cap;
    }
    k->memo[key] = k->stack[k->ns - 1];
    return BN_OK;
}

static bn_status memo_get(pk *k, size_t at, uint64_t key) {
    if (key >= k->nmemo || k->memo[key] == UINT32_MAX) return bad(k, at, "memo key not defined");
    return pk_push(k, k->memo[key]);
}

static bn_status push_str(pk *k, size_t at, uint64_t len) {
    bn_status st = need(k, at, len);
    uint32_t id = 0;
    if (!st) st = pk_push_new(k, V_STR, &id);
    if (st) return st;
    k->v[id].s = (const char *)k->p + k->pos;
    k->v[id].n = (size_t)len;
    k->pos += (size_t)len;
    return BN_OK;
}

static bn_status push_int(pk *k, int64_t x) {
    uint32_t id = 0;
    bn_status st = pk_push_new(k, V_INT, &id);
    if (!st) k->v[id].i = x;
    return st;
}

/* Runs the pickle; on success *root is the value left by STOP. */
static bn_status unpickle(pk *k, uint32_t *root) {
    bn_status st = BN_OK;
    uint32_t id = 0, a = 0, b = 0;
    size_t first = 0;
    while (st == BN_OK) {
        size_t at = k->pos;
        if (k->pos >= k->n) return bad(k, at, "pickle ends without STOP");
        uint8_t op = k->p[k->pos++];
        switch (op) {
        case 0x80: /* PROTO */
            st = need(k, at, 1);
            if (!st && k->p[k->pos] > 5) st = bad(k, at, "unknown pickle protocol");
            k->pos++;
            break;
        case 0x95: /* FRAME */
            st = need(k, at, 8);
            k->pos += 8;
            break;
        case '.': /* STOP */
            if (k->ns != 1 || k->nm != 0) return bad(k, at, "STOP with a stack not of one value");
            *root = k->stack[0];
            return BN_OK;
        case '(':
            if (k->nm >= PK_MAX_DEPTH_MARKS) return bad(k, at, "too many MARKs");
            if (grow((void **)&k->marks, &k->capm, k->nm + 1, sizeof *k->marks))
                return bn_fail(k->err, BN_ERR_NOMEM, "pt: out of memory");
            k->marks[k->nm++] = k->ns;
            break;
        case '}': st = pk_push_new(k, V_DICT, &id); break;
        case ']': st = pk_push_new(k, V_LIST, &id); break;
        case ')': st = pk_push_new(k, V_TUPLE, &id); break;
        case 't':
            st = pk_pop_mark(k, at, &first);
            if (!st) st = make_tuple(k, first, &id);
            if (!st) st = pk_push(k, id);
            break;
        case 0x85:
        case 0x86:
        case 0x87: {
            size_t cnt = (size_t)(op - 0x84);
            size_t floor = k->nm ? k->marks[k->nm - 1] : 0;
            if (k->ns - floor < cnt) return bad(k, at, "stack underflow");
            st = make_tuple(k, k->ns - cnt, &id);
            if (!st) st = pk_push(k, id);
            break;
        }
        case 'X':
            st = need(k, at, 4);
            if (!st) {
                uint64_t len = rd32(k->p + k->pos);
                k->pos += 4;
                st = push_str(k, at, len);
            }
            break;
        case 0x8c:
            st = need(k, at, 1);
            if (!st) {
                uint64_t len = k->p[k->pos++];
                st = push_str(k, at, len);
            }
            break;
        case 0x8d:
            st = need(k, at, 8);
            if (!st) {
                uint64_t len = rd64(k->p + k->pos);
                k->pos += 8;
                st = push_str(k, at, len);
            }
            break;
        case 'J':
            st = need(k, at, 4);
            if (!st) {
                st = push_int(k, (int32_t)rd32(k->p + k->pos));
                k->pos += 4;
            }
            break;
        case 'K':
            st = need(k, at, 1);
            if (!st) st = push_int(k, k->p[k->pos++]);
            break;
        case 'M':
            st = need(k, at, 2);
            if (!st) {
                st = push_int(k, rd16(k->p + k->pos));
                k->pos += 2;
            }
            break;
        case 0x8a: { /* LONG1: n bytes little-endian two's complement */
            st = need(k, at, 1);
            if (st) break;
            size_t n = k->p[k->pos++];
            if (n > 8) return bad(k, at, "integer wider than 64 bits");
            st = need(k, at, n);
            if (st) break;
            uint64_t u = 0;
            for (size_t i = 0; i < n; i++)
                u |= (uint64_t)k->p[k->pos + i] << (8 * i);
            if (n > 0 && n < 8 && (k->p[k->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
            k->pos += n;
            int64_t x;
            memcpy(&x, &u, sizeof x);
            st = push_int(k, x);
            break;
        }
        case 'G':
            st = need(k, at, 8);
            if (!st) {
                st = pk_push_new(k, V_FLOAT, &id);
                k->pos += 8;
            }
            break;
        case 'N': st = pk_push_new(k, V_NONE, &id); break;
        case 0x88:
        case 0x89:
            st = pk_push_new(k, V_BOOL, &id);
            if (!st) k->v[id].i = op == 0x88;
            break;
        case 'c': { /* GLOBAL "module\nname\n" */
            const char *s = (const char *)k->p + k->pos;
            size_t rem = k->n - k->pos;
            const char *nl1 = memchr(s, '\n', rem);
            if (!nl1) return bad(k, at, "unterminated GLOBAL");
            const char *nl2 = memchr(nl1 + 1, '\n', rem - (size_t)(nl1 + 1 - s));
            if (!nl2) return bad(k, at, "unterminated GLOBAL");
            k->pos += (size_t)(nl2 + 1 - s);
            st = resolve_global(k, at, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1), &id);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            st = pk_pop(k, at, &b);
            if (!st) st = pk_pop(k, at, &a);
            if (st) break;
            if (k->v[a].kind != V_STR || k->v[b].kind != V_STR)
                return bad(k, at, "STACK_GLOBAL of non-strings");
            st = resolve_global(k, at, k->v[a].s, k->v[a].n, k->v[b].s, k->v[b].n, &id);
            break;
        case 'q':
            st = need(k, at, 1);
            if (!st) st = memo_put(k, at, k->p[k->pos++]);
            break;
        case 'r':
            st = need(k, at, 4);
            if (!st) {
                uint64_t key = rd32(k->p + k->pos);
                k->pos += 4;
                st = memo_put(k, at, key);
            }
            break;
        case 0x94: /* MEMOIZE */ st = memo_put(k, at, k->nmemo); break;
        case 'h':
            st = need(k, at, 1);
            if (!st) st = memo_get(k, at, k->p[k->pos++]);
            break;
        case 'j':
            st = need(k, at, 4);
            if (!st) {
                uint64_t key = rd32(k->p + k->pos);
                k->pos += 4;
                st = memo_get(k, at, key);
            }
            break;
        case 's': /* SETITEM */
            st = pk_pop(k, at, &b);
            if (!st) st = pk_pop(k, at, &a);
            if (st) break;
            if (k->ns == 0 || k->v[k->stack[k->ns - 1]].kind != V_DICT)
                return bad(k, at, "SETITEM on a non-dict");
            st = item_add(k, k->stack[k->ns - 1], a);
            if (!st) st = item_add(k, k->stack[k->ns - 1], b);
            break;
        case 'u': /* SETITEMS */
            st = pk_pop_mark(k, at, &first);
            if (st) break;
            if (first == 0 || k->v[k->stack[first - 1]].kind != V_DICT || (k->ns - first) % 2)
                return bad(k, at, "SETITEMS on a non-dict or with an odd item count");
            for (size_t i = first; !st && i < k->ns; i++)
                st = item_add(k, k->stack[first - 1], k->stack[i]);
            k->ns = first;
            break;
        case 'a':
            st = pk_pop(k, at, &a);
            if (st) break;
            if (k->ns == 0 || k->v[k->stack[k->ns - 1]].kind != V_LIST)
                return bad(k, at, "APPEND on a non-list");
            st = item_add(k, k->stack[k->ns - 1], a);
            break;
        case 'e':
            st = pk_pop_mark(k, at, &first);
            if (st) break;
            if (first == 0 || k->v[k->stack[first - 1]].kind != V_LIST)
                return bad(k, at, "APPENDS on a non-list");
            for (size_t i = first; !st && i < k->ns; i++)
                st = item_add(k, k->stack[first - 1], k->stack[i]);
            k->ns = first;
            break;
        case 'R': st = do_reduce(k, at); break;
        case 'Q': st = do_persid(k, at); break;
        case 'b': /* BUILD: only the state of an OrderedDict (its _metadata) */
            st = pk_pop(k, at, &a);
            if (st) break;
            if (k->ns == 0 || k->v[k->stack[k->ns - 1]].kind != V_DICT)
                return bad(k, at, "BUILD of something other than a dict");
            break;
        case '0': st = pk_pop(k, at, &a); break;
        case '1':
            st = pk_pop_mark(k, at, &first);
            if (!st) k->ns = first;
            break;
        default: {
            char c = (op >= 32 && op < 127 && op != '%') ? (char)op : '?';
            return bn_fail(k->err, BN_ERR_UNSUPPORTED,
                           "pt: pickle offset %zu: opcode 0x%02x ('%c') is not allowed in a "
                           "checkpoint (only dicts of tensors are read; no code from the file is "
                           "run)",
                           at, op, c);
        }
        }
    }
    return st;
}

static bn_status add_tensor(pk *k, bn_tensor_set *out, const pv *key, const pv *t,
                            const zentry *ents, size_t n_ents, const char *prefix, size_t plen) {
    if (key->kind != V_STR || key->n == 0 || key->n >= BN_CKPT_MAX_NAME ||
        memchr(key->s, '\0', key->n))
        return bn_fail(k->err, BN_ERR_FORMAT, "pt: a tensor's key is not a valid string");
    const pv *s = &k->v[t->store];
    const zentry *z = zip_find(ents, n_ents, prefix, plen, "data/", 5, s->s, s->n);
    if (!z) {
        return bn_fail(k->err, BN_ERR_FORMAT, "pt: tensor '%.*s': storage '%.*s' is not in the zip",
                       (int)(key->n > 200 ? 200 : key->n), key->s, (int)(s->n > 64 ? 64 : s->n),
                       s->s);
    }
    const size_t es = bn_dtype_size(s->sub);
    uint64_t numel = 1, expect = 1;
    for (int d = t->n_dims - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != (int64_t)expect) {
            return bn_fail(k->err, BN_ERR_UNSUPPORTED, "pt: tensor '%.*s' is not contiguous",
                           (int)(key->n > 200 ? 200 : key->n), key->s);
        }
        if (!bn_mul_u64(expect, (uint64_t)t->shape[d], &expect)) expect = UINT64_MAX;
        if (!bn_mul_u64(numel, (uint64_t)t->shape[d], &numel)) numel = UINT64_MAX;
    }
    uint64_t end, nbytes, off;
    if (numel == UINT64_MAX || !bn_mul_u64(numel, es, &nbytes) ||
        !bn_mul_u64((uint64_t)t->i, es, &off) || !bn_add_u64(off, nbytes, &end) || end > z->size) {
        return bn_fail(k->err, BN_ERR_FORMAT,
                       "pt: tensor '%.*s' (%llu elements at offset %lld) does not fit its "
                       "storage of %llu bytes",
                       (int)(key->n > 200 ? 200 : key->n), key->s, (unsigned long long)numel,
                       (long long)t->i, (unsigned long long)z->size);
    }
    return bn_tset_add(out, key->s, key->n, s->sub, t->n_dims, t->shape, z->data + off, nbytes,
                       k->err);
}

bn_status bn_pt_parse(const void *data, size_t size, bn_tensor_set *out, bn_error *err) {
    if (!out || (!data && size)) return bn_fail(err, BN_ERR_INVALID_ARG, "pt: NULL argument");
    zentry *ents = NULL;
    size_t n_ents = 0;
    bn_status st = zip_read(data, size, &ents, &n_ents, err);
    if (st) return st;
    const zentry *pkl = NULL;
    for (size_t i = 0; i < n_ents; i++) {
        const zentry *e = &ents[i];
        if (e->name_len >= 9 && !memcmp(e->name + e->name_len - 9, "/data.pkl", 9) &&
            memchr(e->name, '/', e->name_len) == e->name + e->name_len - 9) {
            pkl = e;
            break;
        }
    }
    if (!pkl) {
        free(ents);
        return bn_fail(err, BN_ERR_FORMAT,
                       "pt: no '<name>/data.pkl' entry (not a torch.save zip checkpoint; legacy "
                       "non-zip .pt files are not supported)");
    }
    const size_t plen = pkl->name_len - 8; /* keep the '/' */
    const zentry *bo = zip_find(ents, n_ents, pkl->name, plen, "byteorder", 9, "", 0);
    if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6))) {
        free(ents);
        return bn_fail(err, BN_ERR_UNSUPPORTED, "pt: byteorder is not 'little'");
    }
    pk k;
    memset(&k, 0, sizeof k);
    k.p = pkl->data;
    k.n = (size_t)pkl->size;
    k.err = err;
    uint32_t root = 0;
    st = unpickle(&k, &root);
    if (!st) {
        /* The root dict; one level of nesting ({"model": state_dict}) is
         * looked into. Values that are not tensors are ignored. */
        const pv *r = &k.v[root];
        if (r->kind != V_DICT)
            st = bn_fail(err, BN_ERR_FORMAT, "pt: the pickled object is not a dict");
        size_t before = out->n;
        for (size_t i = 0; !st && r->kind == V_DICT && i + 1 < r->n_items; i += 2) {
            const pv *key = &k.v[r->items[i]], *val = &k.v[r->items[i + 1]];
            if (val->kind == V_TENSOR) {
                st = add_tensor(&k, out, key, val, ents, n_ents, pkl->name, plen);
            } else if (val->kind == V_DICT) {
                for (size_t j = 0; !st && j + 1 < val->n_items; j += 2) {
                    const pv *k2 = &k.v[val->items[j]], *v2 = &k.v[val->items[j + 1]];
                    if (v2->kind == V_TENSOR)
                        st = add_tensor(&k, out, k2, v2, ents, n_ents, pkl->name, plen);
                }
            }
        }
        if (!st && out->n == before)
            st = bn_fail(err, BN_ERR_FORMAT, "pt: the dict holds no tensors");
    }
    for (size_t i = 0; i < k.nv; i++)
        free(k.v[i].items);
    free(k.v);
    free(k.stack);
    free(k.marks);
    free(k.memo);
    free(ents);
    return st;
}

bn_status bn_pt_open(const char *path, bn_tensor_set *out, bn_error *err) {
    if (!path || !out) return bn_fail(err, BN_ERR_INVALID_ARG, "pt: NULL argument");
    void *p = NULL;
    size_t size = 0;
    bn_status st = bn_map_file(path, &p, &size, err);
    if (st) return st;
    st = bn_tset_keep(out, p, size, 1, err);
    if (st) {
        bn_unmap_file(p, size);
        return st;
    }
    bn_error e;
    st = bn_pt_parse(p, size, out, &e);
    if (st) return bn_fail(err, st, "%s: %s", path, e.msg);
    return BN_OK;
}
