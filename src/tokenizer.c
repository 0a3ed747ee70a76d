/* The tokenizer object shared by both kinds: loading dispatch, special
 * tokens with tiktoken's allowed/disallowed semantics, decoding (whole and
 * streaming) and the original BitNet chat format.
 *
 * Decoding gives bytes. BPE tokens decode to their bytes. SentencePiece
 * pieces decode as sentencepiece's DecodeIds does: U+2581 becomes a space,
 * <0xNN> pieces become the byte, the unknown piece becomes " \xE2\x81\x87 ",
 * and the leading space of the first piece is dropped when the model adds a
 * dummy prefix. Control tokens (both kinds) appear as their text unless
 * skip_special is set; they never affect the leading-space rule, so with
 * skip_special the text equals sentencepiece's. Invalid UTF-8 stays as raw
 * bytes in bn_detokenize; the streaming decoder replaces it with U+FFFD the
 * way Python's bytes.decode("utf-8", "replace") does, so a stream equals the
 * replace-decoded whole. */
#include "tokenizer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ------------------------------------------------------------------------ */
/* Small containers                                                          */
/* ------------------------------------------------------------------------ */

int bn_buf_put(bn_buf *b, const void *s, size_t n) {
    if (n == 0) return 0;
    if (n > SIZE_MAX - b->n) return -1;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

int bn_ids_push(bn_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(int32_t)) return -1;
        int32_t *p = realloc(v->p, cap * sizeof(int32_t));
        if (!p) return -1;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = id;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Hash map from token text to id                                           */
/* ------------------------------------------------------------------------ */

static inline uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

uint64_t bn_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        h = (h ^ rd64(s)) * 0xbf58476d1ce4e5b9ull;
        h = (h << 31) | (h >> 33);
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    switch (n) {                       /* little-endian tail, up to 7 bytes */
    case 7: v |= (uint64_t)s[6] << 48; /* fall through */
    case 6: v |= (uint64_t)s[5] << 40; /* fall through */
    case 5: v |= (uint64_t)s[4] << 32; /* fall through */
    case 4: v |= (uint64_t)s[3] << 24; /* fall through */
    case 3: v |= (uint64_t)s[2] << 16; /* fall through */
    case 2: v |= (uint64_t)s[1] << 8;  /* fall through */
    case 1: v |= (uint64_t)s[0]; break;
    default: break;
    }
    return mix64(h ^ v);
}

/* First 8 bytes of s[0..n), zero-padded, little-endian. */
static inline uint64_t key_head(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 8) return rd64(u);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)u[i] << (8 * i);
    return v;
}

static inline uint32_t key_tag(uint64_t h, size_t n) {
    return (uint32_t)(h >> 40) << 8 | (uint32_t)(n < 255 ? n : 255);
}

bn_status bn_strmap_build(bn_strmap *m, const bn_tokenizer *t, const uint8_t *include,
                          bn_error *err) {
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (!include || include[i]) n++;
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    m->slots = calloc((size_t)cap, sizeof(bn_strslot));
    if (!m->slots) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory (hash map)");
    m->mask = cap - 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (include && !include[i]) continue;
        const char *s = t->text + t->text_off[i];
        size_t len = (size_t)(t->text_off[i + 1] - t->text_off[i]);
        if (bn_strmap_get(m, t, s, len) >= 0) continue; /* first id wins */
        uint64_t h = bn_hash_bytes(s, len);
        uint64_t j = h & m->mask;
        while (m->slots[j].id1)
            j = (j + 1) & m->mask;
        m->slots[j] = (bn_strslot){key_head(s, len), key_tag(h, len), (uint32_t)i + 1};
    }
    return BN_OK;
}

int32_t bn_strmap_get(const bn_strmap *m, const bn_tokenizer *t, const char *s, size_t n) {
    uint64_t h = bn_hash_bytes(s, n);
    uint32_t tag = key_tag(h, n);
    uint64_t head = key_head(s, n);
    for (uint64_t j = h & m->mask;; j = (j + 1) & m->mask) {
        const bn_strslot *e = &m->slots[j];
        if (!e->id1) return -1;
        if (e->tag != tag || e->head != head) continue;
        int32_t id = (int32_t)(e->id1 - 1);
        if (n <= 8) return id; /* the tag holds the length, head the bytes */
        uint64_t a = t->text_off[id], b = t->text_off[id + 1];
        if (b - a != n) continue;
        const char *x = t->text + a;
        if (n <= 24) { /* short keys: a call to memcmp costs more */
            size_t i = 8;
            while (i < n && x[i] == s[i])
                i++;
            if (i == n) return id;
        } else if (memcmp(x + 8, s + 8, n - 8) == 0) {
            return id;
        }
    }
}

void bn_strmap_free(bn_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

/* ------------------------------------------------------------------------ */
/* Object                                                                    */
/* ------------------------------------------------------------------------ */

bn_status bn_tok_alloc(bn_tokenizer **out, bn_tokenizer_kind kind, int32_t n_vocab, bn_error *err) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab >= INT32_MAX - 1)
        return bn_fail(err, BN_ERR_FORMAT, "tokenizer: bad vocabulary size %ld", (long)n_vocab);
    bn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->type = malloc((size_t)n_vocab);
    t->text_off = calloc((size_t)n_vocab + 1, sizeof(uint64_t));
    if (!t->type || !t->text_off) {
        bn_tokenizer_free(t);
        return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    }
    memset(t->type, BN_TT_NORMAL, (size_t)n_vocab);
    t->bos = t->eos = t->eot = t->pad = t->unk = -1;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    *out = t;
    return BN_OK;
}

void bn_tokenizer_free(bn_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->dec);
    free(t->dec_off);
    free(t->type);
    free(t->score);
    free(t->special);
    bn_strmap_free(&t->map);
    free(t->pairs.keys);
    free(t->pairs.rank);
    free(t->pairs.merged);
    free(t->pair2);
    free(t->user);
    free(t->chat_template);
    free(t);
}

static inline const char *tok_text(const bn_tokenizer *t, int32_t id, size_t *len) {
    *len = (size_t)(t->text_off[id + 1] - t->text_off[id]);
    return t->text + t->text_off[id];
}

/* Decoded bytes of a token (no leading-space rule). */
static inline const char *tok_dec(const bn_tokenizer *t, int32_t id, size_t *len) {
    if (!t->dec) return tok_text(t, id, len);
    *len = (size_t)(t->dec_off[id + 1] - t->dec_off[id]);
    return t->dec + t->dec_off[id];
}

static int hex_digit(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; /* c is known to be a hex digit */
}

static const char spm_space[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */

static bn_status build_spm_dec(bn_tokenizer *t, bn_error *err) {
    bn_buf b = {0};
    t->dec_off = calloc((size_t)t->n_vocab + 1, sizeof(uint64_t));
    if (!t->dec_off) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        const char *s = tok_text(t, i, &len);
        int bad = 0;
        switch (t->type[i]) {
        case BN_TT_BYTE: {
            /* Token text is not NUL-terminated: check the six bytes by hand. */
            if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' ||
                !isxdigit((unsigned char)s[3]) || !isxdigit((unsigned char)s[4])) {
                free(b.p);
                return bn_fail(err, BN_ERR_FORMAT,
                               "tokenizer: byte piece %ld is '%.*s', not <0xNN>", (long)i,
                               (int)(len > 32 ? 32 : len), s);
            }
            unsigned char c = (unsigned char)(hex_digit(s[3]) << 4 | hex_digit(s[4]));
            bad = bn_buf_put(&b, &c, 1);
            break;
        }
        case BN_TT_UNKNOWN: bad = bn_buf_put(&b, " \xe2\x81\x87 ", 5); break;
        case BN_TT_CONTROL: bad = bn_buf_put(&b, s, len); break;
        default:
            for (size_t k = 0; k < len && !bad;) {
                if (len - k >= 3 && memcmp(s + k, spm_space, 3) == 0) {
                    bad = bn_buf_put(&b, " ", 1);
                    k += 3;
                } else {
                    bad = bn_buf_put(&b, s + k, 1);
                    k++;
                }
            }
        }
        if (bad) {
            free(b.p);
            return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
        }
        t->dec_off[i + 1] = b.n;
    }
    if (!b.p) b.p = malloc(1);
    if (!b.p) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    t->dec = b.p;
    return BN_OK;
}

bn_status bn_tok_finish(bn_tokenizer *t, bn_error *err) {
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->pad, &t->unk};
    static const char *const names[] = {"bos", "eos", "eot", "pad", "unknown"};
    for (int i = 0; i < 5; i++)
        if (*ids[i] < -1 || *ids[i] >= t->n_vocab)
            return bn_fail(err, BN_ERR_FORMAT, "tokenizer: %s id %ld out of range [0, %ld)",
                           names[i], (long)*ids[i], (long)t->n_vocab);
    if (t->eot < 0) t->eot = t->eos;

    /* Special tokens: control tokens, and for BPE user-defined (added) ones. */
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        if (ty == BN_TT_CONTROL || (ty == BN_TT_USER && t->kind == BN_TOKENIZER_BPE)) {
            if (t->text_off[i + 1] > t->text_off[i]) n++;
        }
    }
    t->special = malloc((n ? n : 1) * sizeof(int32_t));
    if (!t->special) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    t->n_special = 0;
    memset(t->special_first, 0, sizeof t->special_first);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        if ((ty == BN_TT_CONTROL || (ty == BN_TT_USER && t->kind == BN_TOKENIZER_BPE)) &&
            t->text_off[i + 1] > t->text_off[i]) {
            t->special[t->n_special++] = i;
            t->special_first[(unsigned char)t->text[t->text_off[i]]] = 1;
        }
    }

    if (t->kind == BN_TOKENIZER_SPM) {
        bn_status st = build_spm_dec(t, err);
        if (st) return st;
        return bn_strmap_build(&t->map, t, NULL, err);
    }
    uint8_t *inc = malloc((size_t)t->n_vocab);
    if (!inc) return bn_fail(err, BN_ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t i = 0; i < t->n_vocab; i++)
        inc[i] = t->type[i] != BN_TT_CONTROL && t->type[i] != BN_TT_USER;
    bn_status st = bn_strmap_build(&t->map, t, inc, err);
    free(inc);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Loading dispatch                                                          */
/* ------------------------------------------------------------------------ */

bn_status bn_tokenizer_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_tokenizer_from_gguf: out is NULL");
    *out = NULL;
    if (!g) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_tokenizer_from_gguf: gguf is NULL");
    const char *model;
    uint64_t len;
    bn_status st = bn_gguf_find_str(g, "tokenizer.ggml.model", &model, &len, err);
    if (st == BN_ERR_NOT_FOUND)
        return bn_fail(err, BN_ERR_NOT_FOUND, "GGUF has no tokenizer (tokenizer.ggml.model)");
    if (st) return st;
    if (len == 4 && memcmp(model, "gpt2", 4) == 0) return bn_bpe_from_gguf(g, out, err);
    if (len == 5 && memcmp(model, "llama", 5) == 0) return bn_spm_from_gguf(g, out, err);
    return bn_fail(err, BN_ERR_UNSUPPORTED, "GGUF tokenizer model '%.*s' is not supported",
                   (int)(len > 64 ? 64 : len), model);
}

bn_status bn_tokenizer_load(const char *path, bn_tokenizer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_tokenizer_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return bn_fail(err, BN_ERR_NOT_FOUND, "cannot open tokenizer file '%s'", path);
    unsigned char head[16];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) {
        bn_gguf *g;
        bn_status st = bn_gguf_open(path, &g, err);
        if (st) return st;
        st = bn_tokenizer_from_gguf(g, out, err);
        bn_gguf_close(g);
        return st;
    }
    size_t i = 0;
    if (n >= 3 && memcmp(head, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n'))
        i++;
    if (i < n && head[i] == '{') return bn_tokenizer_load_hf_json(path, out, err);
    if (n >= 1 && head[0] == 0x0a) return bn_tokenizer_load_spm(path, out, err);
    if (n == 0) return bn_fail(err, BN_ERR_FORMAT, "tokenizer file '%s' is empty", path);
    return bn_tokenizer_load_tiktoken(path, out, err);
}

/* ------------------------------------------------------------------------ */
/* Getters                                                                   */
/* ------------------------------------------------------------------------ */

bn_tokenizer_kind bn_tokenizer_get_kind(const bn_tokenizer *t) {
    return t ? t->kind : (bn_tokenizer_kind)0;
}
int32_t bn_tokenizer_n_vocab(const bn_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t bn_tokenizer_bos(const bn_tokenizer *t) { return t ? t->bos : -1; }
int32_t bn_tokenizer_eos(const bn_tokenizer *t) { return t ? t->eos : -1; }
int32_t bn_tokenizer_eot(const bn_tokenizer *t) { return t ? t->eot : -1; }
int32_t bn_tokenizer_pad(const bn_tokenizer *t) { return t ? t->pad : -1; }

int32_t bn_tokenizer_special_id(const bn_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    size_t n = strlen(text);
    for (size_t i = 0; i < t->n_special; i++) {
        size_t len;
        const char *s = tok_text(t, t->special[i], &len);
        if (len == n && memcmp(s, text, n) == 0) return t->special[i];
    }
    return -1;
}

static int is_special_id(const bn_tokenizer *t, int32_t id) {
    size_t lo = 0, hi = t->n_special;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->special[mid] == id) return 1;
        if (t->special[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int bn_tokenizer_is_special(const bn_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    return is_special_id(t, id) || t->type[id] == BN_TT_CONTROL;
}

bn_status bn_tokenizer_token_text(const bn_tokenizer *t, int32_t id, const char **s, size_t *len,
                                  bn_error *err) {
    if (!t || !s || !len) return bn_fail(err, BN_ERR_INVALID_ARG, "token_text: NULL argument");
    if (id < 0 || id >= t->n_vocab)
        return bn_fail(err, BN_ERR_RANGE, "token id %ld out of range [0, %ld)", (long)id,
                       (long)t->n_vocab);
    *s = tok_text(t, id, len);
    return bn_ok(err);
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

/* Longest special token at s[0..n) for which want(idx) holds; -1 if none. */
typedef struct special_set {
    const bn_tokenizer *t;
    uint8_t *allowed;    /* per index into t->special */
    uint8_t *disallowed; /* per index into t->special */
} special_set;

static long match_special(const bn_tokenizer *t, const char *s, size_t n, const uint8_t *want,
                          size_t *mlen) {
    long best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < t->n_special; i++) {
        if (!want[i]) continue;
        size_t len;
        const char *x = tok_text(t, t->special[i], &len);
        if (len <= n && len > best_len && memcmp(x, s, len) == 0) {
            best = (long)i;
            best_len = len;
        }
    }
    *mlen = best_len;
    return best;
}

/* Index of special tokens named in a list; unknown names are ignored, as
 * tiktoken ignores them. */
static void mark_specials(const bn_tokenizer *t, const char *const *names, size_t n,
                          uint8_t *mark) {
    for (size_t k = 0; k < n; k++) {
        if (!names[k]) continue;
        size_t len = strlen(names[k]);
        for (size_t i = 0; i < t->n_special; i++) {
            size_t l;
            const char *x = tok_text(t, t->special[i], &l);
            if (l == len && memcmp(x, names[k], len) == 0) mark[i] = 1;
        }
    }
}

static bn_status encode_plain(const bn_tokenizer *t, const char *s, size_t n, int first,
                              bn_ids *out, bn_error *err) {
    if (t->kind == BN_TOKENIZER_SPM) return bn_spm_encode(t, s, n, first, out, err);
    return bn_bpe_encode(t, s, n, out, err);
}

static bn_status tokenize_ids(const bn_tokenizer *t, const char *text, size_t len,
                              const bn_encode_opts *opts, bn_ids *ids, bn_error *err) {
    static const bn_encode_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (opts->add_bos) {
        if (t->bos < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "tokenizer has no bos token");
        if (bn_ids_push(ids, t->bos)) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    }
    size_t ns = t->n_special;
    uint8_t *allowed = NULL, *disallowed = NULL;
    int any_allowed = 0, any_disallowed = 0;
    if (ns) {
        allowed = calloc(ns * 2, 1);
        if (!allowed) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        disallowed = allowed + ns;
        if (opts->allow_all_special)
            memset(allowed, 1, ns);
        else
            mark_specials(t, opts->allowed_special, opts->n_allowed, allowed);
        if (!opts->disallow_none) {
            if (opts->disallowed_special) {
                mark_specials(t, opts->disallowed_special, opts->n_disallowed, disallowed);
            } else {
                for (size_t i = 0; i < ns; i++)
                    disallowed[i] = !allowed[i];
            }
        }
        for (size_t i = 0; i < ns; i++) {
            any_allowed |= allowed[i];
            any_disallowed |= disallowed[i];
        }
    }
    bn_status st = BN_OK;
    /* tiktoken raises when disallowed special text occurs anywhere. */
    if (any_disallowed) {
        for (size_t p = 0; p < len; p++) {
            if (!t->special_first[(unsigned char)text[p]]) continue;
            size_t ml;
            long k = match_special(t, text + p, len - p, disallowed, &ml);
            if (k >= 0) {
                st = bn_fail(err, BN_ERR_TOKENIZER,
                             "text contains the special token '%.*s' (at byte %zu), which is "
                             "disallowed; allow it to encode it as a special token, or disallow "
                             "none to encode it as plain text",
                             (int)ml, text + p, p);
                goto done;
            }
        }
    }
    size_t frag = 0;
    int first = 1;
    if (any_allowed) {
        for (size_t p = 0; p < len; p++) {
            if (!t->special_first[(unsigned char)text[p]]) continue;
            size_t ml;
            long k = match_special(t, text + p, len - p, allowed, &ml);
            if (k < 0) continue;
            st = encode_plain(t, text + frag, p - frag, first, ids, err);
            if (st) goto done;
            if (bn_ids_push(ids, t->special[k])) {
                st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
                goto done;
            }
            first = 1; /* SPM: a dummy prefix follows a special token, as llama.cpp does */
            frag = p + ml;
            p = frag - 1;
        }
    }
    st = encode_plain(t, text + frag, len - frag, first, ids, err);
    if (st) goto done;
    if (opts->add_eos) {
        if (t->eos < 0) {
            st = bn_fail(err, BN_ERR_INVALID_ARG, "tokenizer has no eos token");
            goto done;
        }
        if (bn_ids_push(ids, t->eos)) st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
    }
done:
    free(allowed);
    return st;
}

static bn_status copy_out(const bn_ids *ids, int32_t *out, size_t cap, size_t *n_out,
                          bn_error *err) {
    *n_out = ids->n;
    if (ids->n > cap)
        return bn_fail(err, BN_ERR_RANGE, "output buffer holds %zu ids, %zu needed", cap, ids->n);
    if (ids->n) memcpy(out, ids->p, ids->n * sizeof(int32_t));
    return bn_ok(err);
}

bn_status bn_tokenize(const bn_tokenizer *t, const char *text, size_t len,
                      const bn_encode_opts *opts, int32_t *out, size_t cap, size_t *n_out,
                      bn_error *err) {
    if (!t || !n_out || (!text && len) || (!out && cap))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_tokenize: NULL argument");
    *n_out = 0;
    bn_ids ids = {0};
    bn_status st = tokenize_ids(t, text ? text : "", len, opts, &ids, err);
    if (st == BN_OK) st = copy_out(&ids, out, cap, n_out, err);
    free(ids.p);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

bn_status bn_token_to_bytes(const bn_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *n_out,
                            bn_error *err) {
    if (!t || !n_out || (!buf && cap))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_token_to_bytes: NULL argument");
    *n_out = 0;
    if (id < 0 || id >= t->n_vocab)
        return bn_fail(err, BN_ERR_RANGE, "token id %ld out of range [0, %ld)", (long)id,
                       (long)t->n_vocab);
    size_t len;
    const char *s = tok_dec(t, id, &len);
    *n_out = len;
    if (len > cap)
        return bn_fail(err, BN_ERR_RANGE, "buffer holds %zu bytes, %zu needed", cap, len);
    if (len) memcpy(buf, s, len);
    return bn_ok(err);
}

/* Leading-space state of SentencePiece decoding (see the file comment). */
typedef struct dec_state {
    int is_bos_ws, bos_ws_seen, text_seen;
} dec_state;

/* The bytes one id contributes to the decoded text. */
static bn_status piece_bytes(const bn_tokenizer *t, dec_state *ds, int32_t id, int skip_special,
                             const char **s, size_t *len, bn_error *err) {
    if (id < 0 || id >= t->n_vocab)
        return bn_fail(err, BN_ERR_RANGE, "token id %ld out of range [0, %ld)", (long)id,
                       (long)t->n_vocab);
    *s = tok_dec(t, id, len);
    int special =
        t->type[id] == BN_TT_CONTROL || (t->kind == BN_TOKENIZER_BPE && is_special_id(t, id));
    if (special && skip_special) *len = 0;
    if (t->kind != BN_TOKENIZER_SPM) return BN_OK;
    int ty = t->type[id];
    if (ty == BN_TT_BYTE) {
        ds->text_seen = 1;
        return BN_OK;
    }
    if (ds->bos_ws_seen || ds->text_seen) ds->is_bos_ws = 0;
    if (ty == BN_TT_CONTROL) {
        ds->bos_ws_seen = 0;
        return BN_OK;
    }
    if (ty == BN_TT_UNKNOWN) {
        ds->bos_ws_seen = 0;
        ds->text_seen = 1;
        return BN_OK;
    }
    int has = 0;
    if (ds->is_bos_ws && (t->add_space_prefix || t->remove_extra_ws)) {
        size_t tl;
        const char *raw = tok_text(t, id, &tl);
        if (tl >= 3 && memcmp(raw, spm_space, 3) == 0) {
            has = 1;
            (*s)++;
            (*len)--;
        }
        if (t->remove_extra_ws) has = 0;
    }
    ds->bos_ws_seen = has;
    if (*len) ds->text_seen = 1;
    return BN_OK;
}

bn_status bn_detokenize(const bn_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                        char *buf, size_t cap, size_t *n_out, bn_error *err) {
    if (!t || !n_out || (!ids && n) || (!buf && cap))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_detokenize: NULL argument");
    *n_out = 0;
    dec_state ds = {1, 0, 0};
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = "";
        size_t len = 0;
        bn_status st = piece_bytes(t, &ds, ids[i], skip_special, &s, &len, err);
        if (st) return st;
        if (len && total + len <= cap) memcpy(buf + total, s, len);
        total += len;
    }
    *n_out = total;
    if (total > cap)
        return bn_fail(err, BN_ERR_RANGE, "buffer holds %zu bytes, %zu needed", cap, total);
    return bn_ok(err);
}

/* ------------------------------------------------------------------------ */
/* Streaming decoder                                                         */
/* ------------------------------------------------------------------------ */

struct bn_detok {
    const bn_tokenizer *t;
    int skip_special;
    dec_state ds;
    unsigned char held[4]; /* a valid but incomplete UTF-8 prefix */
    size_t n_held;
    bn_buf out, scratch;
};

bn_status bn_detok_new(const bn_tokenizer *t, int skip_special, bn_detok **out, bn_error *err) {
    if (!t || !out) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_detok_new: NULL argument");
    bn_detok *d = calloc(1, sizeof *d);
    if (!d) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    d->t = t;
    d->skip_special = skip_special;
    d->ds.is_bos_ws = 1;
    *out = d;
    return bn_ok(err);
}

void bn_detok_free(bn_detok *d) {
    if (!d) return;
    free(d->out.p);
    free(d->scratch.p);
    free(d);
}

/* Expected length of a UTF-8 sequence from its lead byte (0: invalid). */
static int utf8_seq_len(unsigned c) {
    if (c < 0x80) return 1;
    if (c < 0xc2) return 0;
    if (c < 0xe0) return 2;
    if (c < 0xf0) return 3;
    if (c < 0xf5) return 4;
    return 0;
}

static int utf8_cont_ok(unsigned lead, int k, unsigned b) {
    if (k == 1) {
        if (lead == 0xe0) return b >= 0xa0 && b <= 0xbf;
        if (lead == 0xed) return b >= 0x80 && b <= 0x9f;
        if (lead == 0xf0) return b >= 0x90 && b <= 0xbf;
        if (lead == 0xf4) return b >= 0x80 && b <= 0x8f;
    }
    return (b & 0xc0) == 0x80;
}

static const char replacement[] = "\xef\xbf\xbd";

/* Append s[0..n) to d->out with invalid sequences replaced by U+FFFD (one per
 * maximal subpart, as Python does); keep an incomplete tail in d->held
 * unless `final`. s may contain d->held's bytes first. */
static int sanitize(bn_detok *d, const unsigned char *s, size_t n, int final) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int L = utf8_seq_len(c);
        if (L == 1) {
            size_t j = i + 1;
            while (j < n && s[j] < 0x80)
                j++;
            if (bn_buf_put(&d->out, s + i, j - i)) return -1;
            i = j;
            continue;
        }
        if (L == 0) {
            if (bn_buf_put(&d->out, replacement, 3)) return -1;
            i++;
            continue;
        }
        int k = 1;
        while (k < L && i + (size_t)k < n && utf8_cont_ok(c, k, s[i + (size_t)k]))
            k++;
        if (k == L) {
            if (bn_buf_put(&d->out, s + i, (size_t)L)) return -1;
        } else if (i + (size_t)k == n && !final) {
            memcpy(d->held, s + i, (size_t)k);
            d->n_held = (size_t)k;
            return 0;
        } else {
            if (bn_buf_put(&d->out, replacement, 3)) return -1;
        }
        i += (size_t)k;
    }
    return 0;
}

bn_status bn_detok_push(bn_detok *d, int32_t id, const char **text, size_t *len, bn_error *err) {
    if (!d || !text || !len)
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_detok_push: NULL argument");
    *text = "";
    *len = 0;
    const char *s = "";
    size_t n = 0;
    bn_status st = piece_bytes(d->t, &d->ds, id, d->skip_special, &s, &n, err);
    if (st) return st;
    d->out.n = 0;
    d->scratch.n = 0;
    int bad = bn_buf_put(&d->scratch, d->held, d->n_held) || bn_buf_put(&d->scratch, s, n);
    d->n_held = 0;
    if (!bad && d->scratch.n)
        bad = sanitize(d, (const unsigned char *)d->scratch.p, d->scratch.n, 0);
    if (bad) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    *text = d->out.p ? d->out.p : "";
    *len = d->out.n;
    return bn_ok(err);
}

bn_status bn_detok_flush(bn_detok *d, const char **text, size_t *len, bn_error *err) {
    if (!d || !text || !len)
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_detok_flush: NULL argument");
    d->out.n = 0;
    if (d->n_held) {
        unsigned char tmp[4];
        size_t h = d->n_held;
        memcpy(tmp, d->held, h);
        d->n_held = 0;
        if (sanitize(d, tmp, h, 1)) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    }
    *text = d->out.p ? d->out.p : "";
    *len = d->out.n;
    d->ds.is_bos_ws = 1;
    d->ds.bos_ws_seen = d->ds.text_seen = 0;
    return bn_ok(err);
}

/* ------------------------------------------------------------------------ */
/* Chat format                                                               */
/* ------------------------------------------------------------------------ */

/* Python's str.isspace() for one code point (what the original's
 * content.strip() removes). */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

static void py_strip(const char *s, size_t n, size_t *a, size_t *b) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = bn_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!l || !py_isspace(cp)) break;
        i += l;
    }
    size_t j = n;
    while (j > i) {
        /* step back one UTF-8 character */
        size_t k = j - 1;
        while (k > i && ((unsigned char)s[k] & 0xc0) == 0x80 && j - k < 4)
            k--;
        uint32_t cp;
        size_t l = bn_utf8_next((const unsigned char *)s + k, j - k, &cp);
        if (l != j - k || !py_isspace(cp)) break;
        j = k;
    }
    *a = i;
    *b = j;
}

/* "System: ", "User: " or "Assistant: ", the header both chat encoders put
 * before a message of that role; NULL for any other role. */
static const char *chat_role_header(const char *role) {
    if (strcmp(role, "system") == 0) return "System: ";
    if (strcmp(role, "user") == 0) return "User: ";
    if (strcmp(role, "assistant") == 0) return "Assistant: ";
    return NULL;
}

/* The chat template of the official bitnet-b1.58-2B-4T GGUF / tokenizer_config:
 * "<|begin_of_text|>" then "{Role}: {content}<|eot_id|>" per message, and
 * "Assistant: " to prompt a reply. Unlike the original ChatFormat, header and
 * content are one text, so "User: What" encodes as "User", ":", " What". */
bn_status bn_chat_encode_template(const bn_tokenizer *t, const bn_chat_message *msgs, size_t n,
                                  int add_generation_prompt, int32_t *out, size_t cap,
                                  size_t *n_out, bn_error *err) {
    if (!t || !n_out || (!msgs && n) || (!out && cap))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_chat_encode_template: NULL argument");
    *n_out = 0;
    if (t->bos < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "tokenizer has no bos token");
    bn_encode_opts plain = {0};
    plain.disallow_none = 1;
    bn_ids ids = {0};
    char *text = NULL;
    bn_status st = BN_OK;
    if (bn_ids_push(&ids, t->bos)) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i <= n; i++) {
        if (i == n && !add_generation_prompt) break;
        const char *role = i < n ? msgs[i].role : "assistant";
        if (!role) {
            st = bn_fail(err, BN_ERR_INVALID_ARG, "chat message %zu has no role", i);
            goto done;
        }
        const char *hdr = chat_role_header(role);
        if (!hdr) {
            st = bn_fail(err, BN_ERR_INVALID_ARG, "chat role '%.64s' is not in the template", role);
            goto done;
        }
        const char *c = i < n && msgs[i].content ? msgs[i].content : "";
        const size_t hl = strlen(hdr), cl = strlen(c);
        free(text);
        text = malloc(hl + cl + 1);
        if (!text) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(text, hdr, hl);
        memcpy(text + hl, c, cl);
        st = tokenize_ids(t, text, hl + cl, &plain, &ids, err);
        if (st) goto done;
        if (i == n) break;
        if (bn_ids_push(&ids, t->eot)) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    st = copy_out(&ids, out, cap, n_out, err);
done:
    free(text);
    free(ids.p);
    return st;
}

bn_status bn_chat_encode_dialog(const bn_tokenizer *t, const bn_chat_message *msgs, size_t n,
                                int add_generation_prompt, int32_t *out, size_t cap, size_t *n_out,
                                bn_error *err) {
    if (!t || !n_out || (!msgs && n) || (!out && cap))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_chat_encode_dialog: NULL argument");
    *n_out = 0;
    if (t->bos < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "tokenizer has no bos token");
    /* The original encodes with allowed_special=set(), disallowed_special=():
     * special-token text in messages is plain text. */
    bn_encode_opts plain = {0};
    plain.disallow_none = 1;
    bn_ids ids = {0};
    bn_status st = BN_OK;
    if (bn_ids_push(&ids, t->bos)) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i <= n; i++) {
        const char *role = i < n ? msgs[i].role : "assistant";
        if (i == n && !add_generation_prompt) break;
        if (!role) {
            st = bn_fail(err, BN_ERR_INVALID_ARG, "chat message %zu has no role", i);
            goto done;
        }
        const char *hdr = chat_role_header(role);
        if (!hdr) {
            st = bn_fail(err, BN_ERR_INVALID_ARG, "Role %.64s not implemented.", role);
            goto done;
        }
        st = tokenize_ids(t, hdr, strlen(hdr), &plain, &ids, err);
        if (st) goto done;
        if (i == n) break;
        const char *c = msgs[i].content ? msgs[i].content : "";
        size_t a, b;
        py_strip(c, strlen(c), &a, &b);
        st = tokenize_ids(t, c + a, b - a, &plain, &ids, err);
        if (st) goto done;
        if (bn_ids_push(&ids, t->eot)) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    st = copy_out(&ids, out, cap, n_out, err);
done:
    free(ids.p);
    return st;
}
