/* Model loading: architecture detection, hyperparameters from the GGUF
 * metadata, and binding every tensor to a bn_tensor after checking its name,
 * shape and type. Nothing is copied except what must be: BitLinear master
 * weights (F32/F16/BF16...) are ternarized into a resident I2_S buffer, and
 * norm vectors that are not aligned F32 are converted. */
#include "model.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fmt.h"
#include "gguf_internal.h"
#include "quant.h"

#define MAX_DIM (1 << 20)
#define MAX_FF (1 << 22)
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 24)
#define MAX_LAYERS 4096
#define MAX_HEADS 4096

bn_model_params bn_model_default_params(void) {
    bn_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = 1;
    p.n_layers = 0;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Resident buffers owned by the model                                      */
/* ------------------------------------------------------------------------ */

static int own_reserve(bn_model *m) {
    if (m->n_owned < m->cap_owned) return 1;
    size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
    void **p = realloc(m->owned, cap * sizeof *p);
    if (!p) return 0;
    m->owned = p;
    m->cap_owned = cap;
    return 1;
}

static void *own_alloc(bn_model *m, size_t bytes) {
    if (!own_reserve(m)) return NULL;
    void *b = bn_aligned_alloc(bytes ? bytes : 1);
    if (b) m->owned[m->n_owned++] = b;
    return b;
}

/* Repacked weights, which a decode step streams once per token: one tensor
 * after another, in load order (the order a step reads them), in blocks of
 * 64 MiB that are 2 MiB-aligned and advised for transparent huge pages.
 * Memory that is contiguous in 2 MiB pages streams faster than one
 * 4 KiB-paged allocation per tensor: on the development machine the B3
 * weights of the 2B-4T model streamed at 40.0-42.0 GB/s from such blocks
 * against 35.5-38.9 from separate allocations (one thread). The blocks are
 * anonymous mappings, so they start zeroed without being written, and the
 * pages are faulted in ahead of use (prefault, below); the untouched
 * rest of the last block costs no memory. BITNET_HUGEPAGES=0 leaves
 * out the advice. */
#define ARENA_BLOCK ((size_t)64 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

static void *map_block(bn_model *m, size_t sz) {
    if (m->n_blocks == m->cap_blocks) {
        const size_t cap = m->cap_blocks ? m->cap_blocks * 2 : 16;
        struct bn_block *nb = realloc(m->blocks, cap * sizeof *nb);
        if (!nb) return NULL;
        m->blocks = nb;
        m->cap_blocks = cap;
    }
    /* map one huge page more, then trim to a 2 MiB-aligned block */
    uint8_t *raw =
        mmap(NULL, sz + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *b = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    if (b > raw) munmap(raw, (size_t)(b - raw));
    const size_t tail = (size_t)(raw + sz + HUGE_PAGE - (b + sz));
    if (tail > 0) munmap(b + sz, tail);
#ifdef MADV_HUGEPAGE
    const char *hp = getenv("BITNET_HUGEPAGES");
    m->huge_pages = (!hp || strcmp(hp, "0") != 0) && madvise(b, sz, MADV_HUGEPAGE) == 0;
#endif
    m->blocks[m->n_blocks].p = b;
    m->blocks[m->n_blocks].size = sz;
    m->n_blocks++;
    return b;
}

/* Under AddressSanitizer every tensor keeps its own heap block, so that a
 * kernel reading past a tensor's end is caught rather than reading the
 * next tensor in a block. */
#if defined(__SANITIZE_ADDRESS__)
#define BN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BN_ASAN 1
#endif
#endif

/* Faulting in fresh huge pages is most of the load time when the host
 * backs guest memory lazily (a VM whose free memory was returned to the
 * host: the kernel's zeroing of each 2 MiB page waits for it), and two
 * threads fault about twice as fast as one (development machine, after
 * idling: 1.2-1.6 s for the 2B-4T model's weights on one thread, 0.95 on
 * two). So the blocks are touched ahead of their use, 16 MiB at a time or a
 * whole large tensor, one 4 KiB page in two by a helper thread. */
typedef struct Touch {
    uint8_t *p;
    size_t n;
} Touch;

static void *touch_pages(void *arg) {
    const Touch *t = arg;
    for (size_t o = 0; o < t->n; o += 4096)
        ((volatile uint8_t *)t->p)[o] = 0;
    return NULL;
}

static void prefault(uint8_t *p, size_t n) {
    const size_t half = n / 2 / 4096 * 4096;
    Touch a = {p, half}, b = {p + half, n - half};
    pthread_t th;
    const int started = half > 0 && pthread_create(&th, NULL, touch_pages, &b) == 0;
    touch_pages(&a);
    if (started) {
        pthread_join(th, NULL);
    } else {
        touch_pages(&b);
    }
}

static void *weight_alloc(bn_model *m, size_t bytes) {
#ifdef BN_ASAN
    return own_alloc(m, bytes);
#endif
    if (!m->kernels->bandwidth_bound || bytes == 0 || bytes > SIZE_MAX - 2 * ARENA_BLOCK) {
        return own_alloc(m, bytes);
    }
    bytes = (bytes + 63) & ~(size_t)63;
    if (m->arena_left < bytes) {
        const size_t sz =
            bytes > ARENA_BLOCK ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE : ARENA_BLOCK;
        uint8_t *b = map_block(m, sz);
        if (!b) return own_alloc(m, bytes);
        m->arena_next = b;
        m->arena_left = sz;
        m->arena_faulted = b;
    }
    uint8_t *p = m->arena_next;
    m->arena_next += bytes;
    m->arena_left -= bytes;
    if (m->huge_pages && m->arena_next > m->arena_faulted) {
        const size_t step = (size_t)16 << 20;
        uint8_t *end = m->arena_next + m->arena_left; /* of the block */
        uint8_t *to =
            m->arena_next > m->arena_faulted + step ? m->arena_next : m->arena_faulted + step;
        if (to > end) to = end;
        prefault(m->arena_faulted, (size_t)(to - m->arena_faulted));
        m->arena_faulted = to;
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Hyperparameters                                                          */
/* ------------------------------------------------------------------------ */

/* Integer hparam "<arch>.<suffix>": the default when absent and not required;
 * a clear error when missing, of the wrong type or outside [lo, hi]. */
static bn_status hp_int(const bn_gguf *g, const char *arch, const char *suffix, int required,
                        int64_t def, int64_t lo, int64_t hi, int32_t *out, bn_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = def;
    bn_error e;
    bn_status st = bn_gguf_find_i64(g, key, &v, &e);
    if (st == BN_ERR_NOT_FOUND) {
        if (required) return bn_fail(err, BN_ERR_FORMAT, "missing metadata key '%s'", key);
        v = def;
    } else if (st != BN_OK) {
        return bn_fail(err, BN_ERR_FORMAT, "metadata '%s': %s", key, e.msg);
    }
    if (v < lo || v > hi) {
        return bn_fail(err, BN_ERR_FORMAT, "metadata '%s' = %lld is out of range [%lld, %lld]", key,
                       (long long)v, (long long)lo, (long long)hi);
    }
    *out = (int32_t)v;
    return BN_OK;
}

static bn_status hp_float(const bn_gguf *g, const char *arch, const char *suffix, int required,
                          double def, double lo, double hi, float *out, bn_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v = def;
    bn_error e;
    bn_status st = bn_gguf_find_f64(g, key, &v, &e);
    if (st == BN_ERR_NOT_FOUND) {
        if (required) return bn_fail(err, BN_ERR_FORMAT, "missing metadata key '%s'", key);
        v = def;
    } else if (st != BN_OK) {
        return bn_fail(err, BN_ERR_FORMAT, "metadata '%s': %s", key, e.msg);
    }
    if (!(v >= lo && v <= hi)) {
        return bn_fail(err, BN_ERR_FORMAT, "metadata '%s' = %g is out of range [%g, %g]", key, v,
                       lo, hi);
    }
    *out = (float)v;
    return BN_OK;
}

static bn_status read_config(const bn_gguf *g, const char *arch, Config *c, bn_error *err) {
    bn_status st;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != BN_OK) return st;                                                        \
    } while (0)
    TRY(hp_int(g, arch, "context_length", 1, 0, 1, MAX_CTX, &c->n_ctx_train, err));
    TRY(hp_int(g, arch, "embedding_length", 1, 0, 1, MAX_DIM, &c->n_embd, err));
    TRY(hp_int(g, arch, "block_count", 1, 0, 1, MAX_LAYERS, &c->n_layer_file, err));
    TRY(hp_int(g, arch, "feed_forward_length", 1, 0, 1, MAX_FF, &c->n_ff, err));
    TRY(hp_int(g, arch, "attention.head_count", 1, 0, 1, MAX_HEADS, &c->n_head, err));
    TRY(hp_int(g, arch, "attention.head_count_kv", 0, c->n_head, 1, MAX_HEADS, &c->n_head_kv, err));
    TRY(hp_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, 0.0, 1.0, &c->norm_eps, err));
    TRY(hp_float(g, arch, "rope.freq_base", 0, 10000.0, 1e-3, 1e12, &c->rope_theta, err));
    /* vocab_size is optional: 0 here means "take it from token_embd". */
    TRY(hp_int(g, arch, "vocab_size", 0, 0, 0, MAX_VOCAB, &c->n_vocab, err));
    if (c->n_head % c->n_head_kv != 0) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s.attention.head_count %d is not a multiple of "
                       "head_count_kv %d",
                       arch, c->n_head, c->n_head_kv);
    }
    int32_t def_head = c->n_embd % c->n_head == 0 ? c->n_embd / c->n_head : 0;
    char kl[160];
    snprintf(kl, sizeof kl, "%s.attention.key_length", arch);
    if (def_head == 0 && bn_gguf_find_key(g, kl) < 0) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s.embedding_length %d is not a multiple of head_count %d", arch, c->n_embd,
                       c->n_head);
    }
    TRY(hp_int(g, arch, "attention.key_length", 0, def_head, 1, MAX_DIM, &c->head_dim, err));
    int32_t vlen = 0;
    TRY(hp_int(g, arch, "attention.value_length", 0, c->head_dim, 1, MAX_DIM, &vlen, err));
    if (vlen != c->head_dim) {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "%s: key_length %d != value_length %d", arch,
                       c->head_dim, vlen);
    }
    if ((int64_t)c->n_head * c->head_dim > MAX_DIM) {
        return bn_fail(err, BN_ERR_FORMAT, "%s: n_head %d x head_dim %d is too large", arch,
                       c->n_head, c->head_dim);
    }
    c->q_dim = c->n_head * c->head_dim;
    c->kv_dim = c->n_head_kv * c->head_dim;
    TRY(hp_int(g, arch, "rope.dimension_count", 0, c->head_dim, 0, c->head_dim, &c->rope_dim, err));
    if (c->rope_dim % 2 != 0) {
        return bn_fail(err, BN_ERR_FORMAT, "%s.rope.dimension_count %d is odd", arch, c->rope_dim);
    }
    /* Linear RoPE scaling (the "bitnet" converter writes linear x1.0). */
    c->rope_scale = 1.0f;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *s = NULL;
    uint64_t slen = 0;
    bn_error e;
    if (bn_gguf_find_str(g, key, &s, &slen, &e) == BN_OK) {
        if (slen == 6 && memcmp(s, "linear", 6) == 0) {
            float factor = 1.0f;
            TRY(hp_float(g, arch, "rope.scaling.factor", 0, 1.0, 1e-6, 1e6, &factor, err));
            c->rope_scale = 1.0f / factor;
        } else if (!(slen == 4 && memcmp(s, "none", 4) == 0)) {
            return bn_fail(err, BN_ERR_UNSUPPORTED, "%s = '%.*s' is not supported (only linear)",
                           key, (int)(slen > 32 ? 32 : slen), s);
        }
    } else {
        float factor = 0.0f;
        TRY(hp_float(g, arch, "rope.scale_linear", 0, 0.0, 0.0, 1e6, &factor, err));
        if (factor > 0.0f) c->rope_scale = 1.0f / factor;
    }
#undef TRY
    return BN_OK;
}

/* ------------------------------------------------------------------------ */
/* Tensor binding                                                           */
/* ------------------------------------------------------------------------ */

enum { ROLE_FLOAT, ROLE_BITLINEAR, ROLE_EMBD };

static void shape_str(const bn_gguf *g, int64_t i, char *buf, size_t cap) {
    int nd = bn_gguf_tensor_n_dims(g, i);
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int d = 0; d < nd && d < 4 && o < cap; d++) {
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "",
                              (long long)bn_gguf_tensor_ne(g, i, d));
    }
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Find `name` and check that it has exactly the shape [ne0] or [ne0, ne1]
 * (ne1 < 0: a vector). */
static bn_status find_shaped(const bn_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                             int optional, int64_t *idx, bn_error *err) {
    *idx = bn_gguf_find_tensor(g, name);
    if (*idx < 0) {
        if (optional) return BN_ERR_NOT_FOUND;
        return bn_fail(err, BN_ERR_NOT_FOUND, "missing tensor '%s'", name);
    }
    int nd = bn_gguf_tensor_n_dims(g, *idx);
    int ok = bn_gguf_tensor_ne(g, *idx, 0) == ne0;
    if (ne1 >= 0) {
        ok = ok && nd >= 2 && bn_gguf_tensor_ne(g, *idx, 1) == ne1;
    } else {
        ok = ok && (nd < 2 || bn_gguf_tensor_ne(g, *idx, 1) == 1);
    }
    for (int d = 2; d < 4; d++)
        ok = ok && (nd <= d || bn_gguf_tensor_ne(g, *idx, d) == 1);
    if (!ok) {
        char have[96];
        shape_str(g, *idx, have, sizeof have);
        if (ne1 >= 0) {
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' has shape %s, expected [%lld, %lld]",
                           name, have, (long long)ne0, (long long)ne1);
        }
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' has shape %s, expected [%lld]", name, have,
                       (long long)ne0);
    }
    return BN_OK;
}

/* Name pointer that lives as long as the model (the GGUF's copy). */
static const char *stable_name(const bn_gguf *g, int64_t idx) {
    const char *n = bn_gguf_tensor_name(g, idx);
    return n ? n : "?";
}

/* Ternarize float master weights (absmean, as transformers' BitNet online
 * quantization: integrations/bitnet.py WeightQuant, and bitnet.cpp's
 * converter weight_quant) into a resident I2_S tensor with a per-tensor
 * scale, so that a float file and a ternary file of the same model run the
 * same integer kernels and give the same logits. */
static bn_status ternarize_to_i2s(bn_model *m, const bn_type_traits *tt, const void *data,
                                  size_t row_bytes, bn_tensor *t, bn_error *err) {
    const int64_t nc = t->n_cols, nr = t->n_rows;
    if (nc % BN_QK_I2_S != 0) {
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "tensor '%s': %lld columns; ternarized weights need a multiple of %d",
                       t->name, (long long)nc, BN_QK_I2_S);
    }
    if (!m->kernels->matmul_i8[BN_TYPE_I2_S]) {
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "tensor '%s': no i2_s kernel to run ternarized "
                       "master weights",
                       t->name);
    }
    size_t n, fbytes, packed;
    if (!bn_mul_size((size_t)nc, (size_t)nr, &n) || !bn_mul_size(n, sizeof(float), &fbytes) ||
        !bn_add_size(n / 4, BN_I2_S_EXTRA, &packed)) {
        return bn_fail(err, BN_ERR_NOMEM, "tensor '%s' is too large", t->name);
    }
    float *w = malloc(fbytes);
    int8_t *q = malloc(n);
    float *row = malloc((size_t)nc * sizeof(float));
    uint8_t *out = own_alloc(m, packed);
    if (!w || !q || !row || !out) {
        free(w);
        free(q);
        free(row);
        return bn_fail(err, BN_ERR_NOMEM, "tensor '%s': cannot allocate %zu bytes to ternarize",
                       t->name, fbytes + n);
    }
    for (int64_t r = 0; r < nr; r++) {
        tt->to_float((const uint8_t *)data + (size_t)r * row_bytes, w + (size_t)r * (size_t)nc, nc);
    }
    float s = 0.0f;
    bn_error e;
    bn_status st = bn_ternarize(w, (int64_t)n, q, &s, &e);
    if (st == BN_OK && !isfinite(s)) st = BN_ERR_FORMAT;
    if (st != BN_OK) {
        free(w);
        free(q);
        free(row);
        return bn_fail(err, st == BN_ERR_NOMEM ? st : BN_ERR_FORMAT,
                       "tensor '%s': cannot ternarize (non-finite weights?)", t->name);
    }
    const size_t out_row = (size_t)nc / 4;
    for (int64_t r = 0; r < nr; r++) {
        const int8_t *qr = q + (size_t)r * (size_t)nc;
        for (int64_t j = 0; j < nc; j++)
            row[j] = (float)qr[j];
        bn_i2_s_from_float(row, out + (size_t)r * out_row, nc);
    }
    memcpy(out + n / 4, &s, sizeof s); /* I2_S keeps its scale after the rows */
    free(w);
    free(q);
    free(row);
    t->type = BN_TYPE_I2_S;
    t->row_bytes = out_row;
    t->data = out;
    t->scale = s;
    m->weight_bytes += packed;
    return BN_OK;
}

/* Drops from this process the whole pages inside [p, p + n) when they lie
 * in the model's read-only file mapping: they stay in the page cache, and an
 * access faults them in again (dropping pages of a buffer in memory would
 * zero them instead, so nothing else is touched). Returns where the dropped
 * range ends (p + n rounded down to a page). */
static const uint8_t *drop_file_pages(const bn_model *m, const void *p, size_t n) {
    const long pgl = sysconf(_SC_PAGESIZE);
    const uintptr_t pg = pgl > 0 ? (uintptr_t)pgl : 4096;
    const uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, e = ((uintptr_t)p + n) / pg * pg;
    if (e > a && bn_gguf_in_mapping(m->gguf, p, n))
        madvise((void *)a, (size_t)(e - a), MADV_DONTNEED);
    return (const uint8_t *)e;
}

/* The head, streamed whole every token like the repacked weights: a copy
 * in the weight blocks streams faster than the file's 4 KiB page-cache
 * pages. The file's pages are dropped from this process as they are copied
 * (drop_file_pages), so memory holds one copy and peak memory grows by
 * one chunk. Only a tensor in the file mapping is moved. */
static void own_streamed(bn_model *m, bn_tensor *t) {
    const size_t bytes = t->row_bytes * (size_t)t->n_rows, chunk = (size_t)8 << 20;
    if (!m->kernels->bandwidth_bound || bytes < HUGE_PAGE ||
        !bn_gguf_in_mapping(m->gguf, t->data, bytes)) {
        return;
    }
    uint8_t *dst = weight_alloc(m, bytes);
    if (!dst) return;                          /* keep reading the mapping */
    const uint8_t *src = t->data, *kept = src; /* pages from kept on are still mapped */
    for (size_t o = 0; o < bytes; o += chunk) {
        const size_t n = bytes - o < chunk ? bytes - o : chunk;
        memcpy(dst + o, src + o, n);
        const uint8_t *e = drop_file_pages(m, kept, (size_t)(src + o + n - kept));
        if (e > kept) kept = e;
    }
    t->data = dst;
}

static bn_status bind_matrix(bn_model *m, const char *name, int64_t n_cols, int64_t n_rows,
                             int role, int optional, bn_tensor *t, bn_error *err) {
    const bn_gguf *g = m->gguf;
    int64_t idx;
    bn_status st = find_shaped(g, name, n_cols, n_rows, optional, &idx, err);
    if (st != BN_OK) return st;
    const int type = bn_gguf_tensor_type(g, idx);
    const bn_type_traits *tt = bn_type_get(type);
    if (!tt) {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s' has unknown type %d", name, type);
    }
    const size_t row_bytes = bn_row_bytes(type, n_cols);
    size_t need;
    if (row_bytes == 0 || !bn_mul_size(row_bytes, (size_t)n_rows, &need) ||
        !bn_add_size(need, tt->tensor_extra, &need)) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "tensor '%s': %lld columns do not fit type %s (block %lld)", name,
                       (long long)n_cols, tt->name, (long long)tt->block_size);
    }
    const uint64_t have = bn_gguf_tensor_nbytes(g, idx);
    const void *data = bn_gguf_tensor_data(g, idx);
    if (have < need || !data) {
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' holds %llu bytes, type %s needs %zu", name,
                       (unsigned long long)have, tt->name, need);
    }
    memset(t, 0, sizeof *t);
    t->type = type;
    t->n_cols = n_cols;
    t->n_rows = n_rows;
    t->row_bytes = row_bytes;
    t->data = data;
    t->scale = 1.0f;
    t->name = stable_name(g, idx);
    m->n_params += n_cols * n_rows;

    if (role == ROLE_BITLINEAR) {
        if (tt->is_ternary) {
            if (!m->kernels->matmul_i8[type]) {
                return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s': no kernel for type %s", name,
                               tt->name);
            }
            if (type == BN_TYPE_I2_S) {
                float s;
                memcpy(&s, (const uint8_t *)data + row_bytes * (size_t)n_rows, sizeof s);
                if (!isfinite(s)) {
                    return bn_fail(err, BN_ERR_FORMAT, "tensor '%s': i2_s scale is not finite",
                                   name);
                }
                t->scale = s;
            }
        } else if (tt->to_float) {
            st = ternarize_to_i2s(m, tt, data, row_bytes, t, err);
            if (st != BN_OK) return st;
            need = 0; /* counted by ternarize_to_i2s */
        } else {
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "tensor '%s' has type %s, which BitLinear cannot use", name, tt->name);
        }
        /* The kernel set's own layout, repacked once (bn_kernels.pack). The
         * file's pages of the tensor are then dropped from this process
         * (they stay in the page cache), so that they do not count twice. */
        int layout = 0;
        const size_t packed = m->kernels->packed_size ? m->kernels->packed_size(t, &layout) : 0;
        if (packed > 0 && m->kernels->pack) {
            void *dst = weight_alloc(m, packed);
            if (!dst) return bn_fail(err, BN_ERR_NOMEM, "tensor '%s': out of memory", name);
            const void *src = t->data;
            m->kernels->pack(t, layout, dst);
            if (src == data) drop_file_pages(m, data, need); /* not ternarized: the file's */
            need = packed;
        }
        m->weight_bytes += need;
        return BN_OK;
    }
    if (role == ROLE_EMBD) {
        if (!tt->to_float) {
            return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s': type %s cannot be dequantized",
                           name, tt->name);
        }
    } else if (!m->kernels->matmul_f32[type]) {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s' has type %s, which has no kernel",
                       name, tt->name);
    }
    /* Kernels read whole fields (floats, halves): a file with an odd
     * alignment gets a private aligned copy instead of unaligned loads. */
    if ((uintptr_t)data % 16 != 0) {
        void *copy = own_alloc(m, need);
        if (!copy) return bn_fail(err, BN_ERR_NOMEM, "tensor '%s': out of memory", name);
        memcpy(copy, data, need);
        t->data = copy;
    }
    m->weight_bytes += need;
    return BN_OK;
}

/* Optional one-element `.scale` tensor of llama.cpp's bitnet arch, folded
 * into the matrix's output scale. */
static bn_status bind_scale(bn_model *m, const char *name, bn_tensor *t, bn_error *err) {
    const bn_gguf *g = m->gguf;
    int64_t idx = bn_gguf_find_tensor(g, name);
    if (idx < 0) return BN_OK;
    int64_t ne = 1;
    for (int d = 0; d < bn_gguf_tensor_n_dims(g, idx) && d < 4; d++)
        ne *= bn_gguf_tensor_ne(g, idx, d);
    const int type = bn_gguf_tensor_type(g, idx);
    const void *data = bn_gguf_tensor_data(g, idx);
    if (ne != 1 || !data) {
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' has %lld elements, expected 1", name,
                       (long long)ne);
    }
    float s;
    if (type == BN_TYPE_F32 && bn_gguf_tensor_nbytes(g, idx) >= 4) {
        memcpy(&s, data, 4);
    } else if (type == BN_TYPE_F16 && bn_gguf_tensor_nbytes(g, idx) >= 2) {
        uint16_t h;
        memcpy(&h, data, 2);
        s = bn_fp16_to_fp32(h);
    } else {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s' has type %s, expected f32", name,
                       bn_type_name(type));
    }
    if (!isfinite(s)) return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' is not finite", name);
    t->scale *= s;
    return BN_OK;
}

static bn_status bind_vector(bn_model *m, const char *name, int64_t n, const float **out,
                             bn_error *err) {
    const bn_gguf *g = m->gguf;
    int64_t idx;
    bn_status st = find_shaped(g, name, n, -1, 0, &idx, err);
    if (st != BN_OK) return st;
    const int type = bn_gguf_tensor_type(g, idx);
    const bn_type_traits *tt = bn_type_get(type);
    size_t need = tt ? bn_row_bytes(type, n) : 0;
    const void *data = bn_gguf_tensor_data(g, idx);
    if (!tt || !tt->to_float || need == 0) {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "tensor '%s' has type %s, expected f32", name,
                       bn_type_name(type));
    }
    if (bn_gguf_tensor_nbytes(g, idx) < need || !data) {
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%s' is shorter than %zu bytes", name, need);
    }
    m->n_params += n;
    m->weight_bytes += need;
    if (type == BN_TYPE_F32 && (uintptr_t)data % sizeof(float) == 0) {
        *out = data;
        return BN_OK;
    }
    float *f = own_alloc(m, (size_t)n * sizeof(float));
    if (!f) return bn_fail(err, BN_ERR_NOMEM, "tensor '%s': out of memory", name);
    tt->to_float(data, f, n);
    *out = f;
    return BN_OK;
}

static bn_status bind_layer(bn_model *m, int il, bn_error *err) {
    const Config *c = &m->config;
    LayerWeights *L = &m->layers[il];
    const int role = c->bitlinear ? ROLE_BITLINEAR : ROLE_FLOAT;
    char name[96];
    bn_status st;
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, il), name)
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != BN_OK) return st;                                                        \
    } while (0)
    TRY(bind_vector(m, NAME("attn_norm.weight"), c->n_embd, &L->attn_norm, err));
    TRY(bind_vector(m, NAME("ffn_norm.weight"), c->n_embd, &L->ffn_norm, err));
    if (c->sub_norms) {
        TRY(bind_vector(m, NAME("attn_sub_norm.weight"), c->q_dim, &L->attn_sub_norm, err));
        TRY(bind_vector(m, NAME("ffn_sub_norm.weight"), c->n_ff, &L->ffn_sub_norm, err));
    }
    TRY(bind_matrix(m, NAME("attn_q.weight"), c->n_embd, c->q_dim, role, 0, &L->wq, err));
    TRY(bind_matrix(m, NAME("attn_k.weight"), c->n_embd, c->kv_dim, role, 0, &L->wk, err));
    TRY(bind_matrix(m, NAME("attn_v.weight"), c->n_embd, c->kv_dim, role, 0, &L->wv, err));
    TRY(bind_matrix(m, NAME("attn_output.weight"), c->q_dim, c->n_embd, role, 0, &L->wo, err));
    TRY(bind_matrix(m, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, role, 0, &L->w_gate, err));
    TRY(bind_matrix(m, NAME("ffn_up.weight"), c->n_embd, c->n_ff, role, 0, &L->w_up, err));
    TRY(bind_matrix(m, NAME("ffn_down.weight"), c->n_ff, c->n_embd, role, 0, &L->w_down, err));
    if (c->bitlinear) {
        TRY(bind_scale(m, NAME("attn_q.scale"), &L->wq, err));
        TRY(bind_scale(m, NAME("attn_k.scale"), &L->wk, err));
        TRY(bind_scale(m, NAME("attn_v.scale"), &L->wv, err));
        TRY(bind_scale(m, NAME("attn_output.scale"), &L->wo, err));
        TRY(bind_scale(m, NAME("ffn_gate.scale"), &L->w_gate, err));
        TRY(bind_scale(m, NAME("ffn_up.scale"), &L->w_up, err));
        TRY(bind_scale(m, NAME("ffn_down.scale"), &L->w_down, err));
    }
#undef NAME
#undef TRY
    return BN_OK;
}

/* ------------------------------------------------------------------------ */
/* Load                                                                     */
/* ------------------------------------------------------------------------ */

static bn_status read_whole_file(const char *path, void **out, size_t *size, bn_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bn_fail(err, BN_ERR_IO, "cannot open '%s'", path);
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return bn_fail(err, BN_ERR_IO, "cannot seek '%s'", path);
    }
    void *buf = bn_aligned_alloc(n > 0 ? (size_t)n : 1);
    if (!buf) {
        fclose(f);
        return bn_fail(err, BN_ERR_NOMEM, "cannot allocate %ld bytes for '%s'", n, path);
    }
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        bn_aligned_free(buf);
        return bn_fail(err, BN_ERR_IO, "cannot read '%s'", path);
    }
    fclose(f);
    *out = buf;
    *size = (size_t)n;
    return BN_OK;
}

static int most_common_type(const bn_model *m) {
    int count[BN_TYPE_COUNT_] = {0};
    for (int il = 0; il < m->config.n_layer; il++) {
        const LayerWeights *L = &m->layers[il];
        const bn_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            int64_t idx = bn_gguf_find_tensor(m->gguf, ts[i]->name);
            int t = idx >= 0 ? bn_gguf_tensor_type(m->gguf, idx) : ts[i]->type;
            if (t >= 0 && t < BN_TYPE_COUNT_) count[t]++;
        }
    }
    int best = 0;
    for (int t = 1; t < BN_TYPE_COUNT_; t++) {
        if (count[t] > count[best]) best = t;
    }
    return best;
}

static bn_status load(bn_model *m, const char *path, const bn_model_params *p, bn_error *err) {
    bn_status st = BN_OK;
    if (m->gguf) {
        /* opened by bn_model_load from a converted checkpoint image */
    } else if (p->use_mmap) {
        st = bn_gguf_open(path, &m->gguf, err);
    } else {
        size_t size = 0;
        st = read_whole_file(path, &m->file_buf, &size, err);
        if (st == BN_OK) st = bn_gguf_open_memory(m->file_buf, size, &m->gguf, err);
    }
    if (st != BN_OK) return st;
    const bn_gguf *g = m->gguf;
    Config *c = &m->config;

    const char *arch = NULL;
    uint64_t alen = 0;
    bn_error e;
    if (bn_gguf_find_str(g, "general.architecture", &arch, &alen, &e) != BN_OK) {
        return bn_fail(err, BN_ERR_FORMAT, "missing metadata key 'general.architecture'");
    }
    char archz[32];
    if (alen >= sizeof archz) alen = sizeof archz - 1;
    memcpy(archz, arch, (size_t)alen);
    archz[alen] = '\0';
    for (size_t i = 0; i < alen; i++) {
        if (archz[i] == '\0' || archz[i] == '%') archz[i] = '?';
    }
    if (strcmp(archz, "llama") == 0) {
        c->arch = ARCH_LLAMA;
    } else if (strcmp(archz, "bitnet") == 0) {
        c->arch = ARCH_BITNET;
    } else if (strcmp(archz, "bitnet-b1.58") == 0 || strcmp(archz, "bitnet-25") == 0) {
        c->arch = ARCH_BITNET_B158;
    } else {
        return bn_fail(
            err, BN_ERR_UNSUPPORTED,
            "architecture '%s' is not supported (bitnet-b1.58, bitnet-25, bitnet, llama)", archz);
    }
    c->bitlinear = c->arch != ARCH_LLAMA;
    c->sub_norms = c->arch != ARCH_LLAMA;
    c->ffn_relu2 = c->arch == ARCH_BITNET_B158;
    c->rope_neox = c->arch != ARCH_LLAMA;
    st = read_config(g, archz, c, err);
    if (st != BN_OK) return st;
    if (c->head_dim == 0) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s.embedding_length %d is not a multiple of "
                       "head_count %d",
                       archz, c->n_embd, c->n_head);
    }
    c->n_layer = c->n_layer_file;
    if (p->n_layers > 0) {
        if (p->n_layers > c->n_layer_file) {
            return bn_fail(err, BN_ERR_INVALID_ARG, "n_layers %d exceeds the model's %d layers",
                           p->n_layers, c->n_layer_file);
        }
        c->n_layer = p->n_layers;
    }
    m->kernels = bn_kernels_best();
    if (!m->kernels || (c->bitlinear && !m->kernels->quantize_act)) {
        return bn_fail(err, BN_ERR_INTERNAL, "no kernels for this CPU");
    }

    /* Token embedding: its rows give n_vocab when the metadata does not. */
    int64_t ei = bn_gguf_find_tensor(g, "token_embd.weight");
    if (ei < 0) return bn_fail(err, BN_ERR_NOT_FOUND, "missing tensor 'token_embd.weight'");
    if (c->n_vocab == 0) {
        int64_t nv = bn_gguf_tensor_n_dims(g, ei) >= 2 ? bn_gguf_tensor_ne(g, ei, 1) : 0;
        if (nv <= 0 || nv > MAX_VOCAB) {
            return bn_fail(err, BN_ERR_FORMAT, "tensor 'token_embd.weight' has %lld rows",
                           (long long)nv);
        }
        c->n_vocab = (int32_t)nv;
    }
    st =
        bind_matrix(m, "token_embd.weight", c->n_embd, c->n_vocab, ROLE_EMBD, 0, &m->tok_embd, err);
    if (st != BN_OK) return st;
    st = bind_vector(m, "output_norm.weight", c->n_embd, &m->output_norm, err);
    if (st != BN_OK) return st;
    st = bind_matrix(m, "output.weight", c->n_embd, c->n_vocab, ROLE_FLOAT, 1, &m->output, err);
    if (st == BN_ERR_NOT_FOUND) {
        /* Tied head: reuse the embedding (bitnet-b1.58 files have no
         * output.weight; llama.cpp's build_bitnet_158 multiplies by
         * tok_embd). */
        if (!m->kernels->matmul_f32[m->tok_embd.type]) {
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "tied head: token_embd.weight has type %s, which has no kernel",
                           bn_type_name(m->tok_embd.type));
        }
        own_streamed(m, &m->tok_embd);
        m->output = m->tok_embd;
        m->pub.tied_output = 1;
    } else if (st != BN_OK) {
        return st;
    } else {
        own_streamed(m, &m->output);
    }
    int64_t fi = bn_gguf_find_tensor(g, "rope_freqs.weight");
    if (fi >= 0 && c->rope_dim > 0) {
        st = bind_vector(m, "rope_freqs.weight", c->rope_dim / 2, &m->rope_freqs, err);
        if (st != BN_OK) return st;
    }

    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return bn_fail(err, BN_ERR_NOMEM, "out of memory for %d layers", c->n_layer);
    for (int il = 0; il < c->n_layer; il++) {
        st = bind_layer(m, il, err);
        if (st != BN_OK) return st;
    }

    /* The file's tokenizer, when it has one; a tokenizer we cannot read
     * leaves the model usable with token ids. */
    if (bn_gguf_find_key(g, "tokenizer.ggml.model") >= 0) {
        bn_error terr;
        if (bn_tokenizer_from_gguf(g, &m->tokenizer, &terr) != BN_OK) m->tokenizer = NULL;
    }

    bn_model_config *pc = &m->pub;
    memcpy(pc->arch, archz, sizeof archz);
    pc->n_vocab = c->n_vocab;
    pc->n_ctx_train = c->n_ctx_train;
    pc->n_embd = c->n_embd;
    pc->n_layer = c->n_layer;
    pc->n_head = c->n_head;
    pc->n_head_kv = c->n_head_kv;
    pc->head_dim = c->head_dim;
    pc->n_ff = c->n_ff;
    pc->norm_eps = c->norm_eps;
    pc->rope_theta = c->rope_theta;
    pc->rope_dim = c->rope_dim;
    pc->ffn_act = c->ffn_relu2 ? 1 : 0;
    pc->weight_type = most_common_type(m);
    pc->embd_type = m->tok_embd.type;
    pc->output_type = m->output.type;
    return BN_OK;
}

bn_status bn_model_load(const char *path, const bn_model_params *params, bn_model **out,
                        bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_model_load: out is NULL");
    *out = NULL;
    if (!path) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_model_load: path is NULL");
    bn_model_params p = params ? *params : bn_model_default_params();
    if (p.n_layers < 0) {
        return bn_fail(err, BN_ERR_INVALID_ARG, "n_layers %d is negative", p.n_layers);
    }
    bn_model *m = calloc(1, sizeof *m);
    if (!m) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    bn_status st = BN_OK;
    bn_ckpt_format fmt = bn_checkpoint_sniff(path);
    if (fmt != BN_CKPT_GGUF && fmt != BN_CKPT_UNKNOWN) {
        /* safetensors / Hugging Face directory / the original's .pt: a GGUF
         * image built in memory (checkpoint.c), loaded like a file. */
        size_t size = 0;
        bn_checkpoint_opts co = bn_checkpoint_default_opts();
        co.weight_type = BN_CKPT_TYPE_LOAD;
        st = bn_checkpoint_to_gguf(path, &co, NULL, &m->file_buf, &size, NULL, NULL, err);
        if (st == BN_OK) st = bn_gguf_open_memory(m->file_buf, size, &m->gguf, err);
    }
    if (st == BN_OK) st = load(m, path, &p, err);
    if (st != BN_OK) {
        bn_model_free(m);
        return st;
    }
    *out = m;
    return bn_ok(err);
}

void bn_model_free(bn_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++)
        bn_aligned_free(m->owned[i]);
    free(m->owned);
    for (size_t i = 0; i < m->n_blocks; i++)
        munmap(m->blocks[i].p, m->blocks[i].size);
    free(m->blocks);
    free(m->layers);
    bn_tokenizer_free(m->tokenizer);
    bn_gguf_close(m->gguf);
    bn_aligned_free(m->file_buf);
    free(m);
}

void bn_model_get_config(const bn_model *m, bn_model_config *out) {
    if (!out) return;
    if (!m) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = m->pub;
}

int64_t bn_model_n_params(const bn_model *m) { return m ? m->n_params : 0; }
uint64_t bn_model_weight_bytes(const bn_model *m) { return m ? m->weight_bytes : 0; }
const bn_gguf *bn_model_gguf(const bn_model *m) { return m ? m->gguf : NULL; }
const bn_tokenizer *bn_model_tokenizer(const bn_model *m) { return m ? m->tokenizer : NULL; }
