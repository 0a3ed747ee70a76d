/* Byte-level BPE: Llama-3 (tiktoken ranks, the BitNet tokenizer.model), and
 * vocabularies with merge lists (Hugging Face tokenizer.json, GGUF "gpt2").
 *
 * Encoding = pre-tokenize, then merge each piece:
 * - The pre-tokenizers are hand-written matchers equivalent to the split
 *   regexes (leftmost-first alternation with backtracking, as tiktoken's
 *   fancy-regex and HF's Oniguruma evaluate them):
 *   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   \p{L}, \p{N} and \s come from unicode_tables.c (Unicode 16.0.0, the
 *   version of tiktoken's and HF tokenizers' regex engines). The case-
 *   insensitive contractions match what the Rust regex crate matches:
 *   ASCII case and U+017F (long s) for 's'.
 * - Merging: tiktoken's byte-pair merge (lowest rank first, leftmost on
 *   ties), where the rank of two adjacent parts is the rank of their
 *   concatenated bytes; or, with a merge list, the rank of the (left, right)
 *   pair. Short pieces use the quadratic scan tiktoken uses; long ones a heap
 *   with lazy deletion (same choices, O(n log n)), so long runs of spaces,
 *   letters or digits-free punctuation are not quadratic.
 *
 * Invalid UTF-8 input (tiktoken's encode takes a Python str, so it never sees
 * any): each byte that does not start a valid UTF-8 sequence counts as one
 * character of class "other" (not a letter, number or whitespace, like
 * U+FFFD would be), and is kept as its raw byte, so decode(encode(x)) == x
 * for any bytes. Valid UTF-8 encodes exactly as tiktoken does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "json.h"
#include "tokenizer.h"
#include "unicode.h"

/* ------------------------------------------------------------------------ */
/* Pre-tokenizers                                                            */
/* ------------------------------------------------------------------------ */

/* Classes of ASCII characters (White_Space: \t \n \v \f \r and space). */
static const uint8_t ascii_cls[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* 0x50 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* 0x70 */
};

typedef struct uch {
    uint32_t cp; /* 0xffffffff for an invalid byte */
    uint32_t len;
    int cls;
} uch;

static inline uch uch_at(const unsigned char *s, size_t n, size_t i) {
    uch r;
    unsigned c = s[i];
    if (c < 0x80) {
        r.cp = c;
        r.len = 1;
        r.cls = ascii_cls[c];
        return r;
    }
    size_t l = bn_utf8_next(s + i, n - i, &r.cp);
    if (!l) {
        r.cp = 0xffffffffu;
        r.len = 1;
        r.cls = BN_UC_OTHER;
        return r;
    }
    r.len = (uint32_t)l;
    r.cls = bn_uc_class(r.cp);
    return r;
}

/* End of the run of characters of class `cls` starting at i. */
static inline size_t scan_class(const unsigned char *s, size_t n, size_t i, int cls) {
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (ascii_cls[c] != cls) break;
            i++;
            continue;
        }
        uch u = uch_at(s, n, i);
        if (u.cls != cls) break;
        i += u.len;
    }
    return i;
}

static inline unsigned lower_ascii(unsigned c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* \s*[\r\n]+ | \s+(?!\S) | \s+ at a whitespace character. */
static inline size_t whitespace_piece(const unsigned char *s, size_t n, size_t pos, int nl_alt) {
    size_t e = pos, last_nl = (size_t)-1, last_start = pos;
    while (e < n) {
        uch f = uch_at(s, n, e);
        if (f.cls != BN_UC_SPACE) break;
        if (f.cp == '\r' || f.cp == '\n') last_nl = e;
        last_start = e;
        e += f.len;
    }
    if (nl_alt && last_nl != (size_t)-1) return last_nl + 1;
    if (e == n) return e;
    if (last_start > pos) return last_start; /* leave the last space to the next piece */
    return e;
}

static size_t llama3_next(const unsigned char *s, size_t n, size_t pos) {
    uch c = uch_at(s, n, pos);
    size_t p1 = pos + c.len;
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (c.cp == '\'' && p1 < n) {
        unsigned a = lower_ascii(s[p1]);
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return p1 + 1;
        if (s[p1] == 0xc5 && p1 + 1 < n && s[p1 + 1] == 0xbf) return p1 + 2; /* U+017F */
        if (p1 + 1 < n) {
            unsigned b = lower_ascii(s[p1 + 1]);
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return p1 + 2;
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c.cls == BN_UC_LETTER) return scan_class(s, n, p1, BN_UC_LETTER);
    if (c.cls != BN_UC_NUMBER && c.cp != '\r' && c.cp != '\n' && p1 < n) {
        uch d = uch_at(s, n, p1);
        if (d.cls == BN_UC_LETTER) return scan_class(s, n, p1 + d.len, BN_UC_LETTER);
    }
    /* \p{N}{1,3} */
    if (c.cls == BN_UC_NUMBER) {
        size_t e = p1;
        for (int k = 1; k < 3 && e < n; k++) {
            uch d = uch_at(s, n, e);
            if (d.cls != BN_UC_NUMBER) break;
            e += d.len;
        }
        return e;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t q = pos;
    int qcls = c.cls;
    if (c.cp == ' ' && p1 < n) {
        uch d = uch_at(s, n, p1);
        if (d.cls == BN_UC_OTHER) {
            q = p1;
            qcls = BN_UC_OTHER;
        }
    }
    if (qcls == BN_UC_OTHER) {
        q = scan_class(s, n, q, BN_UC_OTHER);
        while (q < n && (s[q] == '\r' || s[q] == '\n'))
            q++;
        return q;
    }
    /* \s*[\r\n]+ | \s+(?!\S) | \s+ */
    return whitespace_piece(s, n, pos, 1);
}

static size_t gpt2_next(const unsigned char *s, size_t n, size_t pos) {
    uch c = uch_at(s, n, pos);
    size_t p1 = pos + c.len;
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (c.cp == '\'' && p1 < n) {
        unsigned a = s[p1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return p1 + 1;
        if (p1 + 1 < n) {
            unsigned b = s[p1 + 1];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return p1 + 2;
        }
    }
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ */
    size_t q = pos;
    int qcls = c.cls;
    if (c.cp == ' ' && p1 < n) {
        uch d = uch_at(s, n, p1);
        if (d.cls != BN_UC_SPACE) {
            q = p1;
            qcls = d.cls;
        }
    }
    if (qcls != BN_UC_SPACE) return scan_class(s, n, q, qcls);
    /* \s+(?!\S) | \s+ */
    return whitespace_piece(s, n, pos, 0);
}

size_t bn_bpe_next_piece(int pre, const char *s, size_t n, size_t pos) {
    if (pos >= n) return n;
    const unsigned char *u = (const unsigned char *)s;
    return pre == BN_PRE_GPT2 ? gpt2_next(u, n, pos) : llama3_next(u, n, pos);
}

/* ------------------------------------------------------------------------ */
/* Merging                                                                   */
/* ------------------------------------------------------------------------ */

#define NO_RANK INT32_MAX

static int64_t pairmap_find(const bn_pairmap *m, int32_t a, int32_t b) {
    if (!m->keys) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t j = (key * 0x9e3779b97f4a7c15ull >> 20) & m->mask;; j = (j + 1) & m->mask) {
        if (m->keys[j] == key) return (int64_t)j;
        if (!m->keys[j]) return -1;
    }
}

/* Rank of merging the adjacent parts s[a..b) and s[b..c) with ids ia, ib;
 * the merged id goes to *merged. */
static inline int32_t pair_rank(const bn_tokenizer *t, const char *s, size_t a, size_t c,
                                int32_t ia, int32_t ib, int32_t *merged) {
    if (!t->use_merges) {
        int32_t id = bn_strmap_get(&t->map, t, s + a, c - a);
        if (id < 0) return NO_RANK;
        *merged = id;
        return id;
    }
    int64_t j = pairmap_find(&t->pairs, ia, ib);
    if (j < 0) return NO_RANK;
    *merged = t->pairs.merged[j];
    return t->pairs.rank[j];
}

/* tiktoken's loop: fine for short pieces. */
static bn_status merge_small(const bn_tokenizer *t, const char *s, size_t n, bn_ids *out,
                             bn_error *err) {
    size_t start[65];
    int32_t id[64], rank[64], mid[64];
    size_t m = n;
    for (size_t i = 0; i < n; i++) {
        start[i] = i;
        id[i] = t->byte_id[(unsigned char)s[i]];
    }
    start[n] = n;
    for (size_t i = 0; i + 1 < m; i++) {
        const int32_t *p2 =
            t->pair2 + 2 * ((unsigned)(unsigned char)s[i] << 8 | (unsigned char)s[i + 1]);
        rank[i] = p2[0];
        mid[i] = p2[1];
    }
    rank[m - 1] = NO_RANK;
    for (;;) {
        int32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        }
        if (best == NO_RANK) break;
        id[bi] = mid[bi];
        /* remove part bi + 1 */
        memmove(start + bi + 1, start + bi + 2, (m - bi - 1) * sizeof start[0]);
        memmove(id + bi + 1, id + bi + 2, (m - bi - 2) * sizeof id[0]);
        memmove(rank + bi + 1, rank + bi + 2, (m - bi - 2) * sizeof rank[0]);
        memmove(mid + bi + 1, mid + bi + 2, (m - bi - 2) * sizeof mid[0]);
        m--;
        rank[bi] = bi + 1 < m
                       ? pair_rank(t, s, start[bi], start[bi + 2], id[bi], id[bi + 1], &mid[bi])
                       : NO_RANK;
        if (bi > 0)
            rank[bi - 1] =
                pair_rank(t, s, start[bi - 1], start[bi + 1], id[bi - 1], id[bi], &mid[bi - 1]);
    }
    for (size_t i = 0; i < m; i++)
        if (bn_ids_push(out, id[i])) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    return BN_OK;
}

typedef struct heap_ent {
    int32_t rank;
    uint32_t left;  /* symbol index = its first byte */
    uint32_t right; /* right neighbour when pushed */
    uint32_t end;   /* end of the right neighbour when pushed */
    int32_t merged;
} heap_ent;

static inline int heap_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0];
    heap_ent last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Same choices as merge_small, in O(n log n): symbols form a linked list,
 * candidate pairs sit in a heap keyed by (rank, position) and are checked
 * for staleness when popped. */
static bn_status merge_heap(const bn_tokenizer *t, const char *s, size_t n, bn_ids *out,
                            bn_error *err) {
    if (n >= UINT32_MAX / 4) return bn_fail(err, BN_ERR_RANGE, "piece too long (%zu bytes)", n);
    uint32_t *next = malloc(n * sizeof(uint32_t));
    uint32_t *prev = malloc(n * sizeof(uint32_t));
    int32_t *id = malloc(n * sizeof(int32_t));
    uint8_t *alive = malloc(n);
    heap_ent *h = malloc(3 * n * sizeof(heap_ent));
    bn_status st = BN_OK;
    if (!next || !prev || !id || !alive || !h) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = (uint32_t)(i + 1);
        prev[i] = (uint32_t)i - 1;
        id[i] = t->byte_id[(unsigned char)s[i]];
        alive[i] = 1;
    }
    /* symbols end where the next begins; next == n marks the last one */
#define SYM_END(j) ((size_t)next[j])
    for (size_t i = 0; i + 1 < n; i++) {
        const int32_t *p2 =
            t->pair2 + 2 * ((unsigned)(unsigned char)s[i] << 8 | (unsigned char)s[i + 1]);
        heap_ent e = {p2[0], (uint32_t)i, (uint32_t)(i + 1), (uint32_t)(i + 2), p2[1]};
        if (e.rank != NO_RANK) heap_push(h, &hn, e);
    }
    while (hn) {
        heap_ent e = heap_pop(h, &hn);
        size_t i = e.left, j = e.right;
        if (!alive[i] || next[i] != j || j >= n || !alive[j] || SYM_END(j) != e.end) continue;
        /* merge j into i */
        id[i] = e.merged;
        alive[j] = 0;
        next[i] = next[j];
        if (next[j] < n) prev[next[j]] = (uint32_t)i;
        if (next[i] < n) {
            size_t k = next[i];
            heap_ent f = {0, (uint32_t)i, (uint32_t)k, (uint32_t)SYM_END(k), -1};
            f.rank = pair_rank(t, s, i, SYM_END(k), id[i], id[k], &f.merged);
            if (f.rank != NO_RANK) heap_push(h, &hn, f);
        }
        if (i > 0) {
            size_t p = prev[i];
            heap_ent f = {0, (uint32_t)p, (uint32_t)i, (uint32_t)SYM_END(i), -1};
            f.rank = pair_rank(t, s, p, SYM_END(i), id[p], id[i], &f.merged);
            if (f.rank != NO_RANK) heap_push(h, &hn, f);
        }
    }
#undef SYM_END
    for (size_t i = 0; i < n; i = next[i]) {
        if (bn_ids_push(out, id[i])) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            break;
        }
    }
done:
    free(next);
    free(prev);
    free(id);
    free(alive);
    free(h);
    return st;
}

bn_status bn_bpe_merge_piece(const bn_tokenizer *t, const char *s, size_t n, size_t heap_from,
                             bn_ids *out, bn_error *err) {
    if (n == 0) return BN_OK;
    if (n == 1) {
        if (bn_ids_push(out, t->byte_id[(unsigned char)s[0]]))
            return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        return BN_OK;
    }
    if (n < heap_from && n <= 64) return merge_small(t, s, n, out, err);
    return merge_heap(t, s, n, out, err);
}

bn_status bn_bpe_encode(const bn_tokenizer *t, const char *s, size_t n, bn_ids *out,
                        bn_error *err) {
    const unsigned char *u = (const unsigned char *)s;
    int whole = !t->use_merges || t->ignore_merges;
    size_t pos = 0;
    while (pos < n) {
        size_t end = t->pre == BN_PRE_GPT2 ? gpt2_next(u, n, pos) : llama3_next(u, n, pos);
        size_t len = end - pos;
        if (whole) {
            int32_t id = len == 1 ? t->byte_id[u[pos]] : bn_strmap_get(&t->map, t, s + pos, len);
            if (id >= 0) {
                if (bn_ids_push(out, id)) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
                pos = end;
                continue;
            }
        }
        bn_status st = bn_bpe_merge_piece(t, s + pos, len, 48, out, err);
        if (st) return st;
        pos = end;
    }
    return BN_OK;
}

/* ------------------------------------------------------------------------ */
/* Loading helpers                                                           */
/* ------------------------------------------------------------------------ */

static int b64_val(unsigned c) {
    if (c >= 'A' && c <= 'Z') return (int)(c - 'A');
    if (c >= 'a' && c <= 'z') return (int)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (int)(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long bn_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap) {
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned c = (unsigned char)s[i + (size_t)k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1; /* data after padding */
            v[k] = b64_val(c);
            if (v[k] < 0) return -1;
        }
        unsigned w = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) | ((unsigned)v[2] << 6) |
                     (unsigned)v[3];
        size_t m = 3 - (size_t)pad;
        if (o + m > cap) return -1;
        out[o] = (unsigned char)(w >> 16);
        if (m > 1) out[o + 1] = (unsigned char)(w >> 8);
        if (m > 2) out[o + 2] = (unsigned char)w;
        /* non-canonical padding bits are an error, as strict decoders say */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -1;
        o += m;
    }
    return (long)o;
}

static bn_status read_file(const char *path, char **data, size_t *size, bn_error *err) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return bn_fail(err, e == ENOENT ? BN_ERR_NOT_FOUND : BN_ERR_IO, "cannot open '%s': %s",
                       path, strerror(e));
    }
    bn_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (bn_buf_put(&b, chunk, got)) {
            fclose(f);
            free(b.p);
            return bn_fail(err, BN_ERR_NOMEM, "out of memory reading '%s'", path);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b.p);
        return bn_fail(err, BN_ERR_IO, "read error on '%s'", path);
    }
    if (!b.p) b.p = malloc(1);
    if (!b.p) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    *data = b.p;
    *size = b.n;
    return BN_OK;
}

/* Byte ids of the single-byte tokens, required by byte-level BPE. */
static bn_status set_byte_ids(bn_tokenizer *t, const char *what, bn_error *err) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = bn_strmap_get(&t->map, t, &c, 1);
        if (t->byte_id[b] < 0)
            return bn_fail(err, BN_ERR_FORMAT, "%s: byte 0x%02x has no token", what, b);
    }
    return BN_OK;
}

/* The two-byte pair table; after byte ids and merges are known. */
static bn_status build_pair2(bn_tokenizer *t, bn_error *err) {
    t->pair2 = malloc(65536 * 2 * sizeof(int32_t));
    if (!t->pair2) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            char s[2] = {(char)a, (char)b};
            int32_t merged = -1;
            int32_t r = pair_rank(t, s, 0, 2, t->byte_id[a], t->byte_id[b], &merged);
            t->pair2[2 * (a << 8 | b)] = r;
            t->pair2[2 * (a << 8 | b) + 1] = merged;
        }
    }
    return BN_OK;
}

/* ------------------------------------------------------------------------ */
/* tiktoken rank file                                                        */
/* ------------------------------------------------------------------------ */

/* The 256 special tokens of the original tokenizer (gpu/tokenizer.py). */
static void llama3_special_name(int i, char *buf, size_t cap) {
    static const char *const first[10] = {"<|begin_of_text|>",
                                          "<|end_of_text|>",
                                          "<|reserved_special_token_0|>",
                                          "<|reserved_special_token_1|>",
                                          "<|reserved_special_token_2|>",
                                          "<|reserved_special_token_3|>",
                                          "<|start_header_id|>",
                                          "<|end_header_id|>",
                                          "<|reserved_special_token_4|>",
                                          "<|eot_id|>"};
    if (i < 10)
        snprintf(buf, cap, "%s", first[i]);
    else
        snprintf(buf, cap, "<|reserved_special_token_%d|>", i - 5);
}

bn_status bn_tokenizer_load_tiktoken(const char *path, bn_tokenizer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "load_tiktoken: out is NULL");
    *out = NULL;
    if (!path) return bn_fail(err, BN_ERR_INVALID_ARG, "load_tiktoken: path is NULL");
    char *data;
    size_t size;
    bn_status st = read_file(path, &data, &size, err);
    if (st) return st;

    /* First pass: count lines. */
    size_t n_lines = 0;
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (e > i && !(e == i + 1 && data[i] == '\r')) n_lines++;
        i = e + 1;
    }
    bn_tokenizer *t = NULL;
    int32_t *rank_of = NULL; /* line -> rank */
    uint64_t *loff = NULL;   /* line -> offset, length of decoded bytes in `raw` */
    unsigned char *raw = NULL;
    size_t raw_n = 0;
    if (n_lines == 0) {
        st = bn_fail(err, BN_ERR_FORMAT, "%s: no tokens in tiktoken file", path);
        goto fail;
    }
    if (n_lines > (size_t)INT32_MAX - 1024) {
        st = bn_fail(err, BN_ERR_FORMAT, "%s: too many lines", path);
        goto fail;
    }
    rank_of = malloc(n_lines * sizeof(int32_t));
    loff = malloc((n_lines + 1) * sizeof(uint64_t));
    raw = malloc(size + 1);
    if (!rank_of || !loff || !raw) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t line = 0, lineno = 0;
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        size_t next = e + 1;
        lineno++;
        if (e > i && data[e - 1] == '\r') e--;
        if (e == i) {
            i = next;
            continue;
        }
        /* "base64 rank" */
        size_t sp = i;
        while (sp < e && data[sp] != ' ' && data[sp] != '\t')
            sp++;
        size_t r0 = sp;
        while (r0 < e && (data[r0] == ' ' || data[r0] == '\t'))
            r0++;
        if (sp == i || r0 == sp || r0 == e) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: line %zu: expected 'base64 rank'", path, lineno);
            goto fail;
        }
        long m = bn_base64_decode(data + i, sp - i, raw + raw_n, size + 1 - raw_n);
        if (m <= 0) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: line %zu: bad base64 token '%.*s'", path, lineno,
                         (int)(sp - i > 40 ? 40 : sp - i), data + i);
            goto fail;
        }
        uint64_t r = 0;
        size_t k = r0;
        for (; k < e && data[k] >= '0' && data[k] <= '9'; k++) {
            r = r * 10 + (uint64_t)(data[k] - '0');
            if (r > (uint64_t)INT32_MAX) break;
        }
        if (k != e || r > (uint64_t)INT32_MAX) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: line %zu: bad rank '%.*s'", path, lineno,
                         (int)(e - r0 > 20 ? 20 : e - r0), data + r0);
            goto fail;
        }
        if (r >= n_lines) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "%s: line %zu: rank %llu out of range (the file has %zu tokens, ranks "
                         "must be 0..%zu)",
                         path, lineno, (unsigned long long)r, n_lines, n_lines - 1);
            goto fail;
        }
        rank_of[line] = (int32_t)r;
        loff[line] = raw_n;
        raw_n += (size_t)m;
        line++;
        i = next;
    }
    loff[line] = raw_n;
    const int n_special = 256;
    st = bn_tok_alloc(&t, BN_TOKENIZER_BPE, (int32_t)(n_lines + (size_t)n_special), err);
    if (st) goto fail;
    /* Order by rank: id = rank. */
    int32_t *line_of = malloc(n_lines * sizeof(int32_t));
    if (!line_of) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t r = 0; r < n_lines; r++)
        line_of[r] = -1;
    for (size_t l = 0; l < n_lines; l++) {
        int32_t r = rank_of[l];
        if (line_of[r] >= 0) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: duplicate rank %ld (lines %ld and %zu)", path,
                         (long)r, (long)line_of[r] + 1, l + 1);
            free(line_of);
            goto fail;
        }
        line_of[r] = (int32_t)l;
    }
    bn_buf text = {0};
    for (size_t r = 0; r < n_lines; r++) {
        size_t l = (size_t)line_of[r];
        if (bn_buf_put(&text, raw + loff[l], (size_t)(loff[l + 1] - loff[l]))) goto nomem_text;
        t->text_off[r + 1] = text.n;
    }
    free(line_of);
    line_of = NULL;
    for (int i = 0; i < n_special; i++) {
        char name[64];
        llama3_special_name(i, name, sizeof name);
        if (bn_buf_put(&text, name, strlen(name))) goto nomem_text;
        t->text_off[n_lines + (size_t)i + 1] = text.n;
        t->type[n_lines + (size_t)i] = BN_TT_CONTROL;
    }
    t->text = text.p;
    t->pre = BN_PRE_LLAMA3;
    t->use_merges = 0;
    t->ignore_merges = 1;
    t->bos = (int32_t)n_lines;
    t->eos = (int32_t)n_lines + 1;
    t->eot = (int32_t)n_lines + 9;
    t->pad = (int32_t)n_lines + n_special - 1;
    st = bn_tok_finish(t, err);
    if (st) goto fail;
    for (int32_t r = 0; r < (int32_t)n_lines; r++) {
        size_t len;
        const char *s = t->text + t->text_off[r];
        len = (size_t)(t->text_off[r + 1] - t->text_off[r]);
        int32_t other = bn_strmap_get(&t->map, t, s, len);
        if (other != r) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: ranks %ld and %ld have the same token bytes",
                         path, (long)other, (long)r);
            goto fail;
        }
    }
    st = set_byte_ids(t, path, err);
    if (!st) st = build_pair2(t, err);
    if (st) goto fail;
    free(data);
    free(rank_of);
    free(loff);
    free(raw);
    *out = t;
    return bn_ok(err);
nomem_text:
    free(text.p);
    free(line_of);
    st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
fail:
    free(data);
    free(rank_of);
    free(loff);
    free(raw);
    bn_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Byte-level alphabet (GPT-2's bytes_to_unicode) and merge lists            */
/* ------------------------------------------------------------------------ */

/* Code point that stands for byte b in byte-level vocabularies. */
static uint32_t byte_to_cp(unsigned b) {
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) return b;
    /* the others, in order, map to 256, 257, ... */
    unsigned k = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff)))
            k++;
    return 256 + k;
}

/* Inverse table: code point (< 0x200) -> byte + 1, 0 when not in the alphabet. */
static void byte_level_table(uint16_t inv[0x200]) {
    memset(inv, 0, 0x200 * sizeof(uint16_t));
    for (unsigned b = 0; b < 256; b++)
        inv[byte_to_cp(b)] = (uint16_t)(b + 1);
}

/* Decode a byte-level string into raw bytes appended to `b`; -1 when a
 * character is outside the alphabet, -2 out of memory. */
static int byte_level_decode(const uint16_t *inv, const char *s, size_t n, bn_buf *b) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = bn_utf8_next(u + i, n - i, &cp);
        if (!l || cp >= 0x200 || !inv[cp]) return -1;
        unsigned char c = (unsigned char)(inv[cp] - 1);
        if (bn_buf_put(b, &c, 1)) return -2;
        i += l;
    }
    return 0;
}

static bn_status pairmap_init(bn_pairmap *m, size_t n, bn_error *err) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    m->keys = calloc((size_t)cap, sizeof(uint64_t));
    m->rank = malloc((size_t)cap * sizeof(int32_t));
    m->merged = malloc((size_t)cap * sizeof(int32_t));
    if (!m->keys || !m->rank || !m->merged)
        return bn_fail(err, BN_ERR_NOMEM, "out of memory (merges)");
    m->mask = cap - 1;
    return BN_OK;
}

/* Add merge number `rank`: (a, b) -> a+b. First occurrence wins. */
static bn_status add_merge(bn_tokenizer *t, const uint16_t *inv, const char *a, size_t na,
                           const char *b, size_t nb, int32_t rank, bn_buf *tmp, bn_error *err) {
    tmp->n = 0;
    int r = byte_level_decode(inv, a, na, tmp);
    size_t la = tmp->n;
    if (r == 0) r = byte_level_decode(inv, b, nb, tmp);
    if (r == -2) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    if (r)
        return bn_fail(err, BN_ERR_FORMAT, "merge %ld ('%.*s' '%.*s') is not byte-level text",
                       (long)rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b);
    int32_t ia = bn_strmap_get(&t->map, t, tmp->p, la);
    int32_t ib = bn_strmap_get(&t->map, t, tmp->p + la, tmp->n - la);
    int32_t im = bn_strmap_get(&t->map, t, tmp->p, tmp->n);
    if (ia < 0 || ib < 0 || im < 0)
        return bn_fail(err, BN_ERR_FORMAT, "merge %ld ('%.*s' '%.*s'): %s not in the vocabulary",
                       (long)rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b,
                       ia < 0   ? "left part"
                       : ib < 0 ? "right part"
                                : "merged token");
    uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
    bn_pairmap *m = &t->pairs;
    for (uint64_t j = (key * 0x9e3779b97f4a7c15ull >> 20) & m->mask;; j = (j + 1) & m->mask) {
        if (m->keys[j] == key) return BN_OK;
        if (!m->keys[j]) {
            m->keys[j] = key;
            m->rank[j] = rank;
            m->merged[j] = im;
            return BN_OK;
        }
    }
}

/* Names of the usual special tokens, for vocabularies that do not say. */
static void guess_specials(bn_tokenizer *t) {
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<|endoftext|>"};
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<|endoftext|>"};
    for (size_t i = 0; i < 3 && t->bos < 0; i++)
        t->bos = bn_tokenizer_special_id(t, bos[i]);
    for (size_t i = 0; i < 3 && t->eos < 0; i++)
        t->eos = bn_tokenizer_special_id(t, eos[i]);
    int32_t eot = bn_tokenizer_special_id(t, "<|eot_id|>");
    if (eot >= 0 && (t->eot < 0 || t->eot == t->eos)) t->eot = eot;
    if (t->eot < 0) t->eot = t->eos;
}

/* ------------------------------------------------------------------------ */
/* Hugging Face tokenizer.json                                               */
/* ------------------------------------------------------------------------ */

static const char llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int str_is(const bn_json_val *v, const char *s) {
    size_t n;
    const char *x = bn_json_str(v, &n);
    return x && n == strlen(s) && memcmp(x, s, n) == 0;
}

/* Which split the pre_tokenizer performs: BN_PRE_*, or 0 when unsupported. */
static int hf_pre(const bn_json_val *pt) {
    if (!pt) return 0;
    const bn_json_val *type = bn_json_get(pt, "type");
    if (str_is(type, "Sequence")) {
        int pre = 0;
        for (const bn_json_val *v = bn_json_first(bn_json_get(pt, "pretokenizers")); v;
             v = bn_json_next(v)) {
            const bn_json_val *ty = bn_json_get(v, "type");
            if (str_is(ty, "Split")) {
                const bn_json_val *re = bn_json_get(bn_json_get(v, "pattern"), "Regex");
                if (str_is(re, llama3_pattern))
                    pre = BN_PRE_LLAMA3;
                else if (str_is(re, gpt2_pattern))
                    pre = BN_PRE_GPT2;
                else
                    return 0;
            } else if (str_is(ty, "ByteLevel")) {
                if (bn_json_bool(bn_json_get(v, "add_prefix_space"))) return 0;
                if (bn_json_bool(bn_json_get(v, "use_regex"))) {
                    if (pre) return 0;
                    pre = BN_PRE_GPT2;
                }
            } else {
                return 0;
            }
        }
        return pre;
    }
    if (str_is(type, "ByteLevel")) {
        if (bn_json_bool(bn_json_get(pt, "add_prefix_space"))) return 0;
        const bn_json_val *ur = bn_json_get(pt, "use_regex");
        if (ur && !bn_json_bool(ur)) return 0;
        return BN_PRE_GPT2;
    }
    return 0;
}

bn_status bn_tokenizer_load_hf_json(const char *path, bn_tokenizer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "load_hf_json: out is NULL");
    *out = NULL;
    if (!path) return bn_fail(err, BN_ERR_INVALID_ARG, "load_hf_json: path is NULL");
    char *data;
    size_t size;
    bn_status st = read_file(path, &data, &size, err);
    if (st) return st;
    bn_json *j = NULL;
    st = bn_json_parse(data, size, &j, err);
    free(data);
    if (st) return st;
    bn_tokenizer *t = NULL;
    int32_t *owner = NULL; /* id -> index of its source (for duplicate checks) */
    uint64_t *soff = NULL;
    bn_buf raw = {0}, tmp = {0};
    uint16_t inv[0x200];
    byte_level_table(inv);

    const bn_json_val *root = bn_json_root(j);
    const bn_json_val *model = bn_json_get(root, "model");
    const bn_json_val *mtype = bn_json_get(model, "type");
    const bn_json_val *vocab = bn_json_get(model, "vocab");
    const bn_json_val *merges = bn_json_get(model, "merges");
    const bn_json_val *added = bn_json_get(root, "added_tokens");
    if (!model || (mtype && !str_is(mtype, "BPE")) || bn_json_type_of(vocab) != BN_JSON_OBJECT ||
        bn_json_type_of(merges) != BN_JSON_ARRAY) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED,
                     "%s: not a BPE tokenizer.json (model.type, "
                     "model.vocab, model.merges)",
                     path);
        goto done;
    }
    static const char *const must_be_null[] = {"continuing_subword_prefix", "end_of_word_suffix",
                                               "dropout"};
    for (size_t i = 0; i < 3; i++) {
        const bn_json_val *v = bn_json_get(model, must_be_null[i]);
        if (v && bn_json_type_of(v) != BN_JSON_NULL) {
            st = bn_fail(err, BN_ERR_UNSUPPORTED, "%s: BPE option model.%s is not supported", path,
                         must_be_null[i]);
            goto done;
        }
    }
    if (bn_json_bool(bn_json_get(model, "byte_fallback"))) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED, "%s: BPE with byte_fallback is not supported", path);
        goto done;
    }
    int pre = hf_pre(bn_json_get(root, "pre_tokenizer"));
    if (!pre) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED,
                     "%s: pre_tokenizer is neither the Llama-3 split nor GPT-2 byte-level", path);
        goto done;
    }
    if (bn_json_type_of(bn_json_get(root, "normalizer")) != BN_JSON_NULL) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED, "%s: normalizers are not supported", path);
        goto done;
    }
    /* Size the vocabulary. */
    int64_t max_id = -1;
    size_t n_entries = bn_json_len(vocab) + bn_json_len(added);
    for (const bn_json_val *v = bn_json_first(vocab); v; v = bn_json_next(v)) {
        int64_t id;
        if (!bn_json_int(v, &id) || id < 0 || id >= INT32_MAX / 2) {
            size_t kl;
            const char *k = bn_json_key(v, &kl);
            st = bn_fail(err, BN_ERR_FORMAT, "%s: vocab entry '%.*s' has a bad id", path,
                         (int)(kl > 40 ? 40 : kl), k);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    for (const bn_json_val *v = bn_json_first(added); v; v = bn_json_next(v)) {
        int64_t id;
        if (!bn_json_int(bn_json_get(v, "id"), &id) || id < 0 || id >= INT32_MAX / 2 ||
            !bn_json_str(bn_json_get(v, "content"), NULL)) {
            st =
                bn_fail(err, BN_ERR_FORMAT, "%s: added token at offset %zu has a bad id or content",
                        path, bn_json_offset(v));
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) {
        st = bn_fail(err, BN_ERR_FORMAT, "%s: empty vocabulary", path);
        goto done;
    }
    if ((uint64_t)max_id >= (uint64_t)n_entries) {
        /* ids must be dense, so the largest is below the number of entries */
        st = bn_fail(err, BN_ERR_FORMAT, "%s: id %lld but only %zu tokens (ids must be dense)",
                     path, (long long)max_id, n_entries);
        goto done;
    }
    int32_t n_vocab = (int32_t)max_id + 1;
    owner = malloc((size_t)n_vocab * sizeof(int32_t));
    soff = malloc(((size_t)n_entries + 1) * 2 * sizeof(uint64_t));
    if (!owner || !soff) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = bn_tok_alloc(&t, BN_TOKENIZER_BPE, n_vocab, err);
    if (st) goto done;
    for (int32_t i = 0; i < n_vocab; i++)
        owner[i] = -1;
    /* Collect decoded texts in `raw`, entry e at soff[2e], soff[2e+1]. */
    size_t e = 0;
    for (const bn_json_val *v = bn_json_first(vocab); v; v = bn_json_next(v), e++) {
        int64_t id;
        bn_json_int(v, &id);
        size_t kl;
        const char *k = bn_json_key(v, &kl);
        soff[2 * e] = raw.n;
        int r = byte_level_decode(inv, k, kl, &raw);
        if (r) {
            st = r == -2
                     ? bn_fail(err, BN_ERR_NOMEM, "out of memory")
                     : bn_fail(err, BN_ERR_FORMAT, "%s: vocab entry '%.*s' is not byte-level text",
                               path, (int)(kl > 40 ? 40 : kl), k);
            goto done;
        }
        soff[2 * e + 1] = raw.n;
        if (owner[id] >= 0) {
            st =
                bn_fail(err, BN_ERR_FORMAT, "%s: id %lld used twice in vocab", path, (long long)id);
            goto done;
        }
        owner[id] = (int32_t)e;
    }
    for (const bn_json_val *v = bn_json_first(added); v; v = bn_json_next(v), e++) {
        int64_t id;
        bn_json_int(bn_json_get(v, "id"), &id);
        size_t cl;
        const char *c = bn_json_str(bn_json_get(v, "content"), &cl);
        soff[2 * e] = raw.n;
        if (bn_buf_put(&raw, c, cl)) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
        soff[2 * e + 1] = raw.n;
        if (owner[id] >= 0) {
            size_t a = (size_t)owner[id];
            if (soff[2 * a + 1] - soff[2 * a] != cl || memcmp(raw.p + soff[2 * a], c, cl) != 0) {
                st = bn_fail(err, BN_ERR_FORMAT, "%s: id %lld is both '%.*s' and another token",
                             path, (long long)id, (int)(cl > 40 ? 40 : cl), c);
                goto done;
            }
        }
        owner[id] = (int32_t)e;
        t->type[id] = bn_json_bool(bn_json_get(v, "special")) ? BN_TT_CONTROL : BN_TT_USER;
    }
    bn_buf text = {0};
    for (int32_t i = 0; i < n_vocab; i++) {
        if (owner[i] < 0) {
            free(text.p);
            st = bn_fail(err, BN_ERR_FORMAT, "%s: no token has id %ld (ids must be dense)", path,
                         (long)i);
            goto done;
        }
        size_t a = (size_t)owner[i];
        if (bn_buf_put(&text, raw.p + soff[2 * a], (size_t)(soff[2 * a + 1] - soff[2 * a]))) {
            free(text.p);
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
        t->text_off[i + 1] = text.n;
    }
    if (!text.p) text.p = malloc(1);
    if (!text.p) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    t->text = text.p;
    t->pre = pre;
    t->use_merges = 1;
    t->ignore_merges = bn_json_bool(bn_json_get(model, "ignore_merges"));
    st = bn_tok_finish(t, err);
    if (st) goto done;
    st = set_byte_ids(t, path, err);
    if (st) goto done;
    st = pairmap_init(&t->pairs, bn_json_len(merges), err);
    if (st) goto done;
    int32_t rank = 0;
    for (const bn_json_val *v = bn_json_first(merges); v; v = bn_json_next(v), rank++) {
        const char *a, *b;
        size_t na, nb;
        if (bn_json_type_of(v) == BN_JSON_STRING) {
            size_t n;
            const char *s = bn_json_str(v, &n);
            const char *sp = memchr(s, ' ', n);
            if (!sp) {
                st = bn_fail(err, BN_ERR_FORMAT, "%s: merge %ld '%.*s' is not 'a b'", path,
                             (long)rank, (int)(n > 40 ? 40 : n), s);
                goto done;
            }
            a = s;
            na = (size_t)(sp - s);
            b = sp + 1;
            nb = n - na - 1;
        } else if (bn_json_type_of(v) == BN_JSON_ARRAY && bn_json_len(v) == 2 &&
                   bn_json_str(bn_json_at(v, 0), NULL) && bn_json_str(bn_json_at(v, 1), NULL)) {
            a = bn_json_str(bn_json_at(v, 0), &na);
            b = bn_json_str(bn_json_at(v, 1), &nb);
        } else {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: merge %ld is neither 'a b' nor [a, b]", path,
                         (long)rank);
            goto done;
        }
        st = add_merge(t, inv, a, na, b, nb, rank, &tmp, err);
        if (st) goto done;
    }
    st = build_pair2(t, err);
    if (st) goto done;
    guess_specials(t);
    if (t->eot >= 0 && bn_tokenizer_special_id(t, "<|eot_id|>") == t->eot) t->pad = n_vocab - 1;
    *out = t;
    t = NULL;
    st = bn_ok(err);
done:
    bn_json_free(j);
    free(owner);
    free(soff);
    free(raw.p);
    free(tmp.p);
    bn_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* GGUF "gpt2" vocabulary                                                    */
/* ------------------------------------------------------------------------ */

static bn_status gguf_ids(const bn_gguf *g, bn_tokenizer *t, bn_error *err) {
    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};
    int32_t *dst[] = {&t->bos, &t->eos, &t->eot, &t->pad, &t->unk};
    for (int i = 0; i < 5; i++) {
        int64_t v;
        bn_status st = bn_gguf_find_i64(g, keys[i], &v, err);
        if (st == BN_ERR_NOT_FOUND) continue;
        if (st) return st;
        if (v < 0 || v >= t->n_vocab)
            return bn_fail(err, BN_ERR_FORMAT, "GGUF %s = %lld out of range [0, %ld)", keys[i],
                           (long long)v, (long)t->n_vocab);
        *dst[i] = (int32_t)v;
    }
    return BN_OK;
}

bn_status bn_gguf_vocab_common(const bn_gguf *g, bn_tokenizer_kind kind, bn_tokenizer **out,
                               int byte_level, bn_error *err) {
    *out = NULL;
    int64_t ki = bn_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ki < 0) return bn_fail(err, BN_ERR_FORMAT, "GGUF has no tokenizer.ggml.tokens");
    bn_gguf_vtype et;
    uint64_t n;
    const void *data;
    bn_status st = bn_gguf_get_arr(g, ki, &et, &n, &data, err);
    if (st) return st;
    if (et != BN_GGUF_STRING || n == 0 || n >= (uint64_t)INT32_MAX / 2)
        return bn_fail(err, BN_ERR_FORMAT,
                       "GGUF tokenizer.ggml.tokens: not a string array of a "
                       "sane size");
    bn_tokenizer *t;
    st = bn_tok_alloc(&t, kind, (int32_t)n, err);
    if (st) return st;
    /* token types */
    int64_t kt = bn_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (kt >= 0) {
        bn_gguf_vtype tt;
        uint64_t tn;
        const void *td;
        st = bn_gguf_get_arr(g, kt, &tt, &tn, &td, err);
        if (st) goto fail;
        if (tn != n || (tt != BN_GGUF_INT32 && tt != BN_GGUF_UINT32)) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "GGUF tokenizer.ggml.token_type: %llu entries of type "
                         "%d for %llu tokens",
                         (unsigned long long)tn, (int)tt, (unsigned long long)n);
            goto fail;
        }
        for (uint64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, (const char *)td + i * 4, 4);
            if (v < BN_TT_NORMAL || v > BN_TT_BYTE) {
                st = bn_fail(err, BN_ERR_FORMAT, "GGUF token %llu has bad type %ld",
                             (unsigned long long)i, (long)v);
                goto fail;
            }
            t->type[i] = (uint8_t)v;
        }
    }
    uint16_t inv[0x200];
    byte_level_table(inv);
    bn_buf text = {0};
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        st = bn_gguf_get_arr_str(g, ki, i, &s, &len, err);
        if (st) {
            free(text.p);
            goto fail;
        }
        int ty = t->type[i];
        if (byte_level && ty != BN_TT_CONTROL && ty != BN_TT_USER) {
            int r = byte_level_decode(inv, s, (size_t)len, &text);
            if (r) {
                free(text.p);
                st = r == -2 ? bn_fail(err, BN_ERR_NOMEM, "out of memory")
                             : bn_fail(err, BN_ERR_FORMAT,
                                       "GGUF token %llu '%.*s' is not "
                                       "byte-level text",
                                       (unsigned long long)i, (int)(len > 40 ? 40 : len), s);
                goto fail;
            }
        } else if (bn_buf_put(&text, s, (size_t)len)) {
            free(text.p);
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto fail;
        }
        t->text_off[i + 1] = text.n;
    }
    if (!text.p) text.p = malloc(1);
    if (!text.p) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    t->text = text.p;
    st = gguf_ids(g, t, err);
    if (st) goto fail;
    const char *tmpl;
    uint64_t tl;
    if (bn_gguf_find_str(g, "tokenizer.chat_template", &tmpl, &tl, NULL) == BN_OK) {
        t->chat_template = malloc((size_t)tl + 1);
        if (!t->chat_template) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(t->chat_template, tmpl, (size_t)tl);
        t->chat_template[tl] = 0;
    }
    *out = t;
    return BN_OK;
fail:
    bn_tokenizer_free(t);
    return st;
}

bn_status bn_bpe_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err) {
    *out = NULL;
    /* Without tokenizer.ggml.pre: GPT-2's split, the byte-level default.
     * llama.cpp's own "default" split is a different one: refused. */
    int pre = BN_PRE_GPT2;
    const char *p;
    uint64_t pl;
    bn_status st = bn_gguf_find_str(g, "tokenizer.ggml.pre", &p, &pl, NULL);
    if (st == BN_OK) {
        if ((pl == 9 && memcmp(p, "llama-bpe", 9) == 0) || (pl == 6 && memcmp(p, "llama3", 6) == 0))
            pre = BN_PRE_LLAMA3;
        else if ((pl == 5 && memcmp(p, "gpt-2", 5) == 0) || (pl == 4 && memcmp(p, "gpt2", 4) == 0))
            pre = BN_PRE_GPT2;
        else
            return bn_fail(err, BN_ERR_UNSUPPORTED,
                           "GGUF pre-tokenizer '%.*s' is not supported "
                           "(llama-bpe, gpt-2)",
                           (int)(pl > 40 ? 40 : pl), p);
    }
    bn_tokenizer *t;
    st = bn_gguf_vocab_common(g, BN_TOKENIZER_BPE, &t, 1, err);
    if (st) return st;
    t->pre = pre;
    t->use_merges = 1;
    t->ignore_merges = pre == BN_PRE_LLAMA3; /* as llama.cpp does */
    bn_buf tmp = {0};
    st = bn_tok_finish(t, err);
    if (st) goto fail;
    st = set_byte_ids(t, "GGUF vocabulary", err);
    if (st) goto fail;
    int64_t km = bn_gguf_find_key(g, "tokenizer.ggml.merges");
    if (km < 0) {
        st = bn_fail(err, BN_ERR_FORMAT, "GGUF gpt2 vocabulary has no tokenizer.ggml.merges");
        goto fail;
    }
    bn_gguf_vtype et;
    uint64_t n;
    const void *data;
    st = bn_gguf_get_arr(g, km, &et, &n, &data, err);
    if (st) goto fail;
    if (et != BN_GGUF_STRING || n >= (uint64_t)INT32_MAX / 4) {
        st = bn_fail(err, BN_ERR_FORMAT, "GGUF tokenizer.ggml.merges is not a string array");
        goto fail;
    }
    st = pairmap_init(&t->pairs, (size_t)n, err);
    if (st) goto fail;
    uint16_t inv[0x200];
    byte_level_table(inv);
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        st = bn_gguf_get_arr_str(g, km, i, &s, &len, err);
        if (st) goto fail;
        const char *sp = memchr(s, ' ', (size_t)len);
        if (!sp || sp == s) {
            st = bn_fail(err, BN_ERR_FORMAT, "GGUF merge %llu '%.*s' is not 'a b'",
                         (unsigned long long)i, (int)(len > 40 ? 40 : len), s);
            goto fail;
        }
        size_t na = (size_t)(sp - s);
        st = add_merge(t, inv, s, na, sp + 1, (size_t)len - na - 1, (int32_t)i, &tmp, err);
        if (st) goto fail;
    }
    free(tmp.p);
    tmp.p = NULL;
    st = build_pair2(t, err);
    if (st) goto fail;
    guess_specials(t);
    *out = t;
    return bn_ok(err);
fail:
    free(tmp.p);
    bn_tokenizer_free(t);
    return st;
}
