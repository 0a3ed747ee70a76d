/* SentencePiece BPE (the LLaMA / LLaMA-2 tokenizer), from a SentencePiece
 * tokenizer.model (protobuf) or a GGUF "llama" vocabulary.
 *
 * Encoding follows sentencepiece's normalizer (identity rules only) and
 * bpe_model.cc: spaces become U+2581, a dummy U+2581 is prefixed
 * (add_dummy_prefix), optional removal of extra spaces; the text is split
 * into characters (user-defined pieces are kept whole), then the adjacent
 * pair whose concatenation is a piece with the highest score is merged first,
 * the leftmost on ties; pieces of type UNUSED are split back into the parts
 * they were made of; characters that end up unknown are written as their
 * <0xNN> byte pieces (byte_fallback) or as the unknown id.
 *
 * Invalid UTF-8 input: sentencepiece's normalizer would turn each invalid
 * byte into U+FFFD; here each invalid byte is a one-byte character that is no
 * piece, so it is written as its byte piece and decodes back to itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenizer.h"

static const char spm_space[] = "\xe2\x96\x81"; /* U+2581 */

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct sym {
    uint32_t start, len;
    int32_t prev, next;
    int frozen;
} sym;

typedef struct pair_ent {
    float score;
    int32_t left, right;
    uint32_t size; /* combined length when pushed */
} pair_ent;

/* sentencepiece's agenda: highest score first, then the smallest left. */
static inline int pair_before(const pair_ent *a, const pair_ent *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct agenda {
    pair_ent *h;
    size_t n, cap;
} agenda;

static int agenda_push(agenda *q, pair_ent e) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        pair_ent *h = realloc(q->h, cap * sizeof *h);
        if (!h) return -1;
        q->h = h;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_before(&e, &q->h[p])) break;
        q->h[i] = q->h[p];
        i = p;
    }
    q->h[i] = e;
    return 0;
}

static pair_ent agenda_pop(agenda *q) {
    pair_ent top = q->h[0];
    pair_ent last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && pair_before(&q->h[c + 1], &q->h[c])) c++;
        if (!pair_before(&q->h[c], &last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = last;
    return top;
}

/* rev_merge of sentencepiece: text of an UNUSED piece -> length of its left
 * part, the last one recorded winning. */
typedef struct rev_ent {
    uint32_t start, len, left_len;
} rev_ent;

typedef struct spm_ctx {
    const bn_tokenizer *t;
    const char *s; /* normalized text */
    sym *syms;
    agenda q;
    rev_ent *rev;
    size_t n_rev, cap_rev;
} spm_ctx;

static inline int mergeable(int ty) {
    return ty == BN_TT_NORMAL || ty == BN_TT_USER || ty == BN_TT_UNUSED;
}

static int maybe_add_pair(spm_ctx *c, int32_t left, int32_t right) {
    if (left < 0 || right < 0 || c->syms[left].frozen || c->syms[right].frozen) return 0;
    const sym *l = &c->syms[left], *r = &c->syms[right];
    uint32_t size = l->len + r->len;
    int32_t id = bn_strmap_get(&c->t->map, c->t, c->s + l->start, size);
    if (id < 0 || !mergeable(c->t->type[id])) return 0;
    pair_ent e = {c->t->score ? c->t->score[id] : 0.0f, left, right, size};
    if (agenda_push(&c->q, e)) return -1;
    if (c->t->type[id] == BN_TT_UNUSED) {
        for (size_t i = 0; i < c->n_rev; i++) {
            rev_ent *x = &c->rev[i];
            if (x->len == size && memcmp(c->s + x->start, c->s + l->start, size) == 0) {
                x->start = l->start;
                x->left_len = l->len;
                return 0;
            }
        }
        if (c->n_rev == c->cap_rev) {
            size_t cap = c->cap_rev ? c->cap_rev * 2 : 16;
            rev_ent *p = realloc(c->rev, cap * sizeof *p);
            if (!p) return -1;
            c->rev = p;
            c->cap_rev = cap;
        }
        c->rev[c->n_rev++] = (rev_ent){l->start, size, l->len};
    }
    return 0;
}

/* Emit one final piece s[start..start+len), splitting UNUSED pieces back. */
static bn_status emit_piece(spm_ctx *c, const char *w, uint32_t len, bn_ids *out, int depth,
                            bn_error *err) {
    const bn_tokenizer *t = c->t;
    int32_t id = bn_strmap_get(&t->map, t, w, len);
    if (id >= 0 && t->type[id] == BN_TT_UNUSED && depth < 64) {
        for (size_t i = 0; i < c->n_rev; i++) {
            const rev_ent *x = &c->rev[i];
            if (x->len == len && memcmp(c->s + x->start, w, len) == 0) {
                bn_status st = emit_piece(c, w, x->left_len, out, depth + 1, err);
                if (st) return st;
                return emit_piece(c, w + x->left_len, len - x->left_len, out, depth + 1, err);
            }
        }
    }
    if (id < 0 || t->type[id] == BN_TT_UNKNOWN) {
        if (t->byte_fallback) {
            for (uint32_t k = 0; k < len; k++) {
                int32_t b = t->byte_id[(unsigned char)w[k]];
                if (bn_ids_push(out, b >= 0 ? b : t->unk))
                    return bn_fail(err, BN_ERR_NOMEM, "out of memory");
            }
            return BN_OK;
        }
        id = t->unk;
    }
    if (bn_ids_push(out, id)) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    return BN_OK;
}

/* Longest user-defined piece at s[0..n), 0 if none. */
static size_t match_user(const bn_tokenizer *t, const char *s, size_t n) {
    size_t best = 0;
    for (size_t i = 0; i < t->n_user; i++) {
        int32_t id = t->user[i];
        size_t len = (size_t)(t->text_off[id + 1] - t->text_off[id]);
        if (len > best && len <= n && memcmp(t->text + t->text_off[id], s, len) == 0) best = len;
    }
    return best;
}

static bn_status normalize(const bn_tokenizer *t, const char *s, size_t n, int first, bn_buf *b) {
    size_t i = 0;
    if (t->remove_extra_ws)
        while (i < n && s[i] == ' ')
            i++;
    if (i == n) return BN_OK;
    if (t->add_space_prefix && first && bn_buf_put(b, spm_space, 3)) return BN_ERR_NOMEM;
    int prev_space = t->remove_extra_ws;
    for (; i < n; i++) {
        if (s[i] == ' ') {
            if (prev_space) continue;
            if (bn_buf_put(b, spm_space, 3)) return BN_ERR_NOMEM;
            prev_space = t->remove_extra_ws;
        } else {
            /* copy a run of non-spaces at once */
            size_t j = i + 1;
            while (j < n && s[j] != ' ')
                j++;
            if (bn_buf_put(b, s + i, j - i)) return BN_ERR_NOMEM;
            i = j - 1;
            prev_space = 0;
        }
    }
    if (t->remove_extra_ws)
        while (b->n >= 3 && memcmp(b->p + b->n - 3, spm_space, 3) == 0)
            b->n -= 3;
    return BN_OK;
}

/* Merge the symbols of norm[a..b) (c->syms has room) and emit the ids. */
static bn_status encode_segment(spm_ctx *c, size_t a, size_t b, bn_ids *out, bn_error *err) {
    const bn_tokenizer *t = c->t;
    const unsigned char *u = (const unsigned char *)c->s;
    int32_t ns = 0;
    c->q.n = 0;
    c->n_rev = 0;
    for (size_t i = a; i < b;) {
        size_t l = t->n_user ? match_user(t, c->s + i, b - i) : 0;
        int frozen = l > 0;
        if (!l) {
            uint32_t cp;
            l = bn_utf8_next(u + i, b - i, &cp);
            if (!l) l = 1;
        }
        c->syms[ns] = (sym){(uint32_t)i, (uint32_t)l, ns - 1, -1, frozen};
        if (ns > 0) c->syms[ns - 1].next = ns;
        ns++;
        i += l;
    }
    for (int32_t i = 1; i < ns; i++)
        if (maybe_add_pair(c, i - 1, i)) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    while (c->q.n) {
        pair_ent top = agenda_pop(&c->q);
        sym *l = &c->syms[top.left], *r = &c->syms[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) c->syms[r->next].prev = top.left;
        r->len = 0;
        if (maybe_add_pair(c, l->prev, top.left) || maybe_add_pair(c, top.left, l->next))
            return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i >= 0 && ns > 0; i = c->syms[i].next) {
        bn_status st = emit_piece(c, c->s + c->syms[i].start, c->syms[i].len, out, 0, err);
        if (st) return st;
    }
    return BN_OK;
}

/* Ids of words already encoded in this call (natural text repeats words). */
typedef struct word_ent {
    uint64_t hash;
    uint32_t start, len; /* in the normalized text; len 0 = empty slot */
    uint32_t off, cnt;   /* in the cache's id list */
} word_ent;

typedef struct word_cache {
    word_ent *e;
    size_t cap, n;
    bn_ids ids;
} word_cache;

#define WORD_MAX 48 /* longer words are not cached */

static word_ent *cache_find(word_cache *wc, const char *s, size_t start, size_t len, uint64_t h) {
    for (size_t j = h & (wc->cap - 1);; j = (j + 1) & (wc->cap - 1)) {
        word_ent *e = &wc->e[j];
        if (!e->len) return e;
        if (e->hash == h && e->len == len && memcmp(s + e->start, s + start, len) == 0) return e;
    }
}

static int cache_grow(word_cache *wc) {
    size_t cap = wc->cap ? wc->cap * 2 : 1024;
    word_ent *e = calloc(cap, sizeof *e);
    if (!e) return -1;
    for (size_t i = 0; i < wc->cap; i++) {
        if (!wc->e[i].len) continue;
        size_t j = wc->e[i].hash & (cap - 1);
        while (e[j].len)
            j = (j + 1) & (cap - 1);
        e[j] = wc->e[i];
    }
    free(wc->e);
    wc->e = e;
    wc->cap = cap;
    return 0;
}

static inline int at_space(const char *s, size_t i, size_t n) {
    return n - i >= 3 && memcmp(s + i, spm_space, 3) == 0;
}

bn_status bn_spm_encode(const bn_tokenizer *t, const char *s, size_t n, int first, bn_ids *out,
                        bn_error *err) {
    if (n == 0) return BN_OK;
    bn_buf norm = {0};
    spm_ctx c = {0};
    word_cache wc = {0};
    bn_status st = BN_OK;
    if (normalize(t, s, n, first, &norm)) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (norm.n == 0) goto done;
    if (norm.n >= UINT32_MAX / 2) {
        st = bn_fail(err, BN_ERR_RANGE, "text too long for SentencePiece (%zu bytes)", norm.n);
        goto done;
    }
    c.t = t;
    c.s = norm.p;
    c.syms = malloc(norm.n * sizeof(sym));
    if (!c.syms) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!t->ws_split) {
        st = encode_segment(&c, 0, norm.n, out, err);
        goto done;
    }
    /* Words are independent: no piece spans a character followed by U+2581,
     * so merges never cross that point and encoding words one by one gives
     * the same ids as encoding the whole text. */
    for (size_t i = 0; i < norm.n;) {
        size_t j = i;
        while (at_space(norm.p, j, norm.n))
            j += 3;
        while (j < norm.n && !at_space(norm.p, j, norm.n))
            j++;
        size_t len = j - i;
        if (len > WORD_MAX) {
            st = encode_segment(&c, i, j, out, err);
            if (st) goto done;
            i = j;
            continue;
        }
        if (wc.n * 2 >= wc.cap && cache_grow(&wc)) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
        uint64_t h = bn_hash_bytes(norm.p + i, len);
        word_ent *e = cache_find(&wc, norm.p, i, len, h);
        if (e->len) {
            for (uint32_t k = 0; k < e->cnt; k++) {
                if (bn_ids_push(out, wc.ids.p[e->off + k])) {
                    st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
                    goto done;
                }
            }
        } else {
            size_t before = out->n;
            st = encode_segment(&c, i, j, out, err);
            if (st) goto done;
            *e = (word_ent){h, (uint32_t)i, (uint32_t)len, (uint32_t)wc.ids.n,
                            (uint32_t)(out->n - before)};
            for (size_t k = before; k < out->n; k++) {
                if (bn_ids_push(&wc.ids, out->p[k])) {
                    st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
                    goto done;
                }
            }
            wc.n++;
        }
        i = j;
    }
done:
    free(norm.p);
    free(c.syms);
    free(c.q.h);
    free(c.rev);
    free(wc.e);
    free(wc.ids.p);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Setup shared by the loaders                                               */
/* ------------------------------------------------------------------------ */

/* After texts, types and scores are set: byte pieces, user pieces, maps. */
static bn_status spm_setup(bn_tokenizer *t, const char *what, bn_error *err) {
    size_t n_user = 0;
    int has_bytes = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->type[i] == BN_TT_USER) n_user++;
        if (t->type[i] == BN_TT_BYTE) has_bytes = 1;
        if (t->text_off[i + 1] == t->text_off[i])
            return bn_fail(err, BN_ERR_FORMAT, "%s: piece %ld is empty", what, (long)i);
    }
    if (!has_bytes && t->byte_fallback)
        return bn_fail(err, BN_ERR_FORMAT, "%s: byte_fallback without <0xNN> pieces", what);
    bn_status st = bn_tok_finish(t, err);
    if (st) return st;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->type[i] != BN_TT_BYTE) continue;
        /* build_spm_dec checked the <0xNN> form; its decoded byte is the value */
        unsigned char b = (unsigned char)t->dec[t->dec_off[i]];
        if (t->byte_id[b] < 0) t->byte_id[b] = i;
    }
    if (n_user) {
        t->user = malloc(n_user * sizeof(int32_t));
        if (!t->user) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        for (int32_t i = 0; i < t->n_vocab; i++)
            if (t->type[i] == BN_TT_USER) t->user[t->n_user++] = i;
    }
    if (t->unk < 0) {
        for (int32_t i = 0; i < t->n_vocab && t->unk < 0; i++)
            if (t->type[i] == BN_TT_UNKNOWN) t->unk = i;
    }
    if (t->unk < 0) return bn_fail(err, BN_ERR_FORMAT, "%s: no unknown piece", what);
    /* Word-by-word encoding is exact when no mergeable piece has U+2581 after
     * another character, and no user or unused pieces change the rules. */
    t->ws_split = n_user == 0;
    for (int32_t i = 0; i < t->n_vocab && t->ws_split; i++) {
        if (t->type[i] == BN_TT_UNUSED) t->ws_split = 0;
        if (!mergeable(t->type[i])) continue;
        const char *p = t->text + t->text_off[i];
        size_t len = (size_t)(t->text_off[i + 1] - t->text_off[i]);
        size_t k = 0;
        while (k + 3 <= len && memcmp(p + k, spm_space, 3) == 0)
            k += 3;
        for (; k + 3 <= len; k++)
            if (memcmp(p + k, spm_space, 3) == 0) t->ws_split = 0;
    }
    return BN_OK;
}

/* ------------------------------------------------------------------------ */
/* Protobuf (sentencepiece_model.proto), bounds-checked                      */
/* ------------------------------------------------------------------------ */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) return -1;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static int pb_key(pb *r, uint32_t *field, int *wire) {
    uint64_t k;
    if (pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 0;
}

static int pb_bytes(pb *r, pb *sub) {
    uint64_t n;
    if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

static int pb_skip(pb *r, int wire) {
    uint64_t v;
    pb sub;
    switch (wire) {
    case 0: return pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case 2: return pb_bytes(r, &sub);
    case 5:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default: return -1; /* groups and reserved wire types */
    }
}

static int pb_fixed32(pb *r, float *f) {
    if (r->end - r->p < 4) return -1;
    uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    memcpy(f, &u, 4);
    r->p += 4;
    return 0;
}

typedef struct spm_piece {
    const uint8_t *s;
    size_t n;
    float score;
    int type;
} spm_piece;

typedef struct spm_model {
    spm_piece *pieces;
    size_t n_pieces;
    int model_type, byte_fallback, ws_suffix;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
    pb name;
    pb unk_piece, bos_piece, eos_piece, pad_piece;
} spm_model;

#define PB_FAIL(...)                                                                               \
    do {                                                                                           \
        return bn_fail(err, BN_ERR_FORMAT, __VA_ARGS__);                                           \
    } while (0)

static bn_status parse_piece(pb r, spm_piece *out, size_t idx, const char *path, bn_error *err) {
    out->s = (const uint8_t *)"";
    out->n = 0;
    out->score = 0.0f;
    out->type = BN_TT_NORMAL;
    while (r.p < r.end) {
        uint32_t f;
        int w;
        if (pb_key(&r, &f, &w)) PB_FAIL("%s: piece %zu: broken field key", path, idx);
        if (f == 1 && w == 2) {
            pb s;
            if (pb_bytes(&r, &s)) PB_FAIL("%s: piece %zu: truncated text", path, idx);
            out->s = s.p;
            out->n = (size_t)(s.end - s.p);
        } else if (f == 2 && w == 5) {
            if (pb_fixed32(&r, &out->score)) PB_FAIL("%s: piece %zu: truncated score", path, idx);
        } else if (f == 3 && w == 0) {
            uint64_t v;
            if (pb_varint(&r, &v)) PB_FAIL("%s: piece %zu: broken type", path, idx);
            if (v < BN_TT_NORMAL || v > BN_TT_BYTE)
                PB_FAIL("%s: piece %zu: unknown type %llu", path, idx, (unsigned long long)v);
            out->type = (int)v;
        } else if ((f == 1 || f == 2 || f == 3)) {
            PB_FAIL("%s: piece %zu: field %u has wire type %d", path, idx, f, w);
        } else if (pb_skip(&r, w)) {
            PB_FAIL("%s: piece %zu: broken field %u", path, idx, f);
        }
    }
    return BN_OK;
}

static bn_status parse_trainer(pb r, spm_model *m, const char *path, bn_error *err) {
    while (r.p < r.end) {
        uint32_t f;
        int w;
        if (pb_key(&r, &f, &w)) PB_FAIL("%s: trainer_spec: broken field key", path);
        uint64_t v = 0;
        pb s;
        if (w == 0 && (f == 3 || f == 24 || f == 35)) {
            if (pb_varint(&r, &v)) PB_FAIL("%s: trainer_spec: broken field %u", path, f);
            if (f == 3) m->model_type = (int)(v > 100 ? 100 : v);
            if (f == 24) m->ws_suffix = v != 0;
            if (f == 35) m->byte_fallback = v != 0;
        } else if (w == 2 && f >= 45 && f <= 48) {
            if (pb_bytes(&r, &s)) PB_FAIL("%s: trainer_spec: broken field %u", path, f);
            pb *dst[] = {&m->unk_piece, &m->bos_piece, &m->eos_piece, &m->pad_piece};
            *dst[f - 45] = s;
        } else if (pb_skip(&r, w)) {
            PB_FAIL("%s: trainer_spec: broken field %u", path, f);
        }
    }
    return BN_OK;
}

static bn_status parse_normalizer(pb r, spm_model *m, const char *path, bn_error *err) {
    while (r.p < r.end) {
        uint32_t f;
        int w;
        if (pb_key(&r, &f, &w)) PB_FAIL("%s: normalizer_spec: broken field key", path);
        uint64_t v;
        pb s;
        if (w == 0 && f >= 3 && f <= 5) {
            if (pb_varint(&r, &v)) PB_FAIL("%s: normalizer_spec: broken field %u", path, f);
            if (f == 3) m->add_dummy_prefix = v != 0;
            if (f == 4) m->remove_extra_ws = v != 0;
            if (f == 5) m->escape_ws = v != 0;
        } else if (w == 2 && (f == 1 || f == 2)) {
            if (pb_bytes(&r, &s)) PB_FAIL("%s: normalizer_spec: broken field %u", path, f);
            if (f == 1)
                m->name = s;
            else
                m->charsmap_len = (size_t)(s.end - s.p);
        } else if (pb_skip(&r, w)) {
            PB_FAIL("%s: normalizer_spec: broken field %u", path, f);
        }
    }
    return BN_OK;
}

/* Parse the whole ModelProto; pieces point into `data`. */
static bn_status parse_model(const uint8_t *data, size_t size, spm_model *m, const char *path,
                             bn_error *err) {
    m->model_type = 1; /* UNIGRAM, the proto default */
    m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = 1;
    static const char *const defaults[] = {"<unk>", "<s>", "</s>", "<pad>"};
    pb *names[] = {&m->unk_piece, &m->bos_piece, &m->eos_piece, &m->pad_piece};
    for (int i = 0; i < 4; i++) {
        names[i]->p = (const uint8_t *)defaults[i];
        names[i]->end = names[i]->p + strlen(defaults[i]);
    }
    /* count pieces first */
    pb r = {data, data + size};
    size_t n = 0;
    while (r.p < r.end) {
        uint32_t f;
        int w;
        if (pb_key(&r, &f, &w))
            PB_FAIL("%s: broken protobuf at byte %zu (field key)", path, (size_t)(r.p - data));
        if (f == 1 && w == 2)
            n++;
        else if (f == 1)
            PB_FAIL("%s: pieces field has wire type %d", path, w);
        if (pb_skip(&r, w))
            PB_FAIL("%s: broken protobuf at byte %zu (field %u is truncated or has a bad length)",
                    path, (size_t)(r.p - data), f);
    }
    if (n == 0) PB_FAIL("%s: no pieces: not a SentencePiece model", path);
    m->pieces = malloc(n * sizeof(spm_piece));
    if (!m->pieces) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    r = (pb){data, data + size};
    while (r.p < r.end) {
        uint32_t f = 0;
        int w = 0;
        pb sub;
        if (pb_key(&r, &f, &w)) break; /* validated by the first pass */
        if (w != 2) {
            if (pb_skip(&r, w)) break;
            continue;
        }
        if (pb_bytes(&r, &sub)) break;
        bn_status st = BN_OK;
        if (f == 1) {
            st = parse_piece(sub, &m->pieces[m->n_pieces], m->n_pieces, path, err);
            m->n_pieces++;
        } else if (f == 2) {
            st = parse_trainer(sub, m, path, err);
        } else if (f == 3) {
            st = parse_normalizer(sub, m, path, err);
        }
        if (st) return st;
    }
    return BN_OK;
}

static int32_t find_piece(const bn_tokenizer *t, pb name, int type) {
    int32_t id = bn_strmap_get(&t->map, t, (const char *)name.p, (size_t)(name.end - name.p));
    return id >= 0 && t->type[id] == type ? id : -1;
}

bn_status bn_tokenizer_load_spm(const char *path, bn_tokenizer **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "load_spm: out is NULL");
    *out = NULL;
    if (!path) return bn_fail(err, BN_ERR_INVALID_ARG, "load_spm: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return bn_fail(err, BN_ERR_NOT_FOUND, "cannot open '%s'", path);
    bn_buf data = {0};
    char chunk[65536];
    size_t got;
    int nomem = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (bn_buf_put(&data, chunk, got)) {
            nomem = 1;
            break;
        }
    }
    int ioerr = ferror(f);
    fclose(f);
    if (nomem || ioerr) {
        free(data.p);
        return bn_fail(err, nomem ? BN_ERR_NOMEM : BN_ERR_IO, "cannot read '%s'", path);
    }
    spm_model m = {0};
    bn_tokenizer *t = NULL;
    bn_status st = parse_model((const uint8_t *)data.p, data.n, &m, path, err);
    if (st) goto done;
    if (m.model_type != 2) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED, "%s: SentencePiece model type %d is not BPE (2)",
                     path, m.model_type);
        goto done;
    }
    if (m.ws_suffix || !m.escape_ws) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED,
                     "%s: treat_whitespace_as_suffix / no escape_whitespaces are not supported",
                     path);
        goto done;
    }
    if (m.charsmap_len) {
        st = bn_fail(err, BN_ERR_UNSUPPORTED,
                     "%s: normalization rules (precompiled_charsmap, '%.*s') are not supported; "
                     "only identity",
                     path, (int)(m.name.end - m.name.p > 32 ? 32 : m.name.end - m.name.p),
                     m.name.p ? (const char *)m.name.p : "");
        goto done;
    }
    st = bn_tok_alloc(
        &t, BN_TOKENIZER_SPM,
        (int32_t)(m.n_pieces < (size_t)INT32_MAX / 2 ? m.n_pieces : (size_t)INT32_MAX / 2), err);
    if (st) goto done;
    t->score = malloc(m.n_pieces * sizeof(float));
    bn_buf text = {0};
    if (!t->score) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m.n_pieces; i++) {
        if (bn_buf_put(&text, m.pieces[i].s, m.pieces[i].n)) {
            free(text.p);
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
            goto done;
        }
        t->text_off[i + 1] = text.n;
        t->type[i] = (uint8_t)m.pieces[i].type;
        t->score[i] = m.pieces[i].score;
    }
    t->text = text.p;
    t->add_space_prefix = m.add_dummy_prefix;
    t->remove_extra_ws = m.remove_extra_ws;
    t->byte_fallback = m.byte_fallback;
    for (size_t i = 0; i < m.n_pieces; i++) {
        if (m.pieces[i].type == BN_TT_BYTE && !m.byte_fallback) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: byte piece %zu without byte_fallback", path, i);
            goto done;
        }
    }
    st = spm_setup(t, path, err);
    if (st) goto done;
    /* duplicates are an error in sentencepiece */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len = (size_t)(t->text_off[i + 1] - t->text_off[i]);
        int32_t j = bn_strmap_get(&t->map, t, t->text + t->text_off[i], len);
        if (j != i) {
            st = bn_fail(err, BN_ERR_FORMAT, "%s: pieces %ld and %ld are both '%.*s'", path,
                         (long)j, (long)i, (int)(len > 40 ? 40 : len), t->text + t->text_off[i]);
            goto done;
        }
    }
    t->unk = find_piece(t, m.unk_piece, BN_TT_UNKNOWN);
    if (t->unk < 0) {
        st = bn_fail(err, BN_ERR_FORMAT, "%s: the unknown piece is not defined", path);
        goto done;
    }
    t->bos = find_piece(t, m.bos_piece, BN_TT_CONTROL);
    t->eos = find_piece(t, m.eos_piece, BN_TT_CONTROL);
    t->pad = find_piece(t, m.pad_piece, BN_TT_CONTROL);
    t->eot = t->eos;
    *out = t;
    t = NULL;
    st = bn_ok(err);
done:
    free(m.pieces);
    free(data.p);
    bn_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* GGUF "llama" vocabulary                                                   */
/* ------------------------------------------------------------------------ */

bn_status bn_spm_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err) {
    *out = NULL;
    bn_tokenizer *t;
    bn_status st = bn_gguf_vocab_common(g, BN_TOKENIZER_SPM, &t, 0, err);
    if (st) return st;
    int64_t ks = bn_gguf_find_key(g, "tokenizer.ggml.scores");
    t->score = calloc((size_t)t->n_vocab, sizeof(float));
    if (!t->score) {
        st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (ks >= 0) {
        bn_gguf_vtype et;
        uint64_t n;
        const void *data;
        st = bn_gguf_get_arr(g, ks, &et, &n, &data, err);
        if (st) goto fail;
        if (et != BN_GGUF_FLOAT32 || n != (uint64_t)t->n_vocab) {
            st = bn_fail(err, BN_ERR_FORMAT,
                         "GGUF tokenizer.ggml.scores: %llu entries of type %d "
                         "for %ld tokens",
                         (unsigned long long)n, (int)et, (long)t->n_vocab);
            goto fail;
        }
        memcpy(t->score, data, (size_t)n * sizeof(float));
    }
    t->add_space_prefix = 1;
    int64_t k = bn_gguf_find_key(g, "tokenizer.ggml.add_space_prefix");
    if (k >= 0 && bn_gguf_get_bool(g, k, &t->add_space_prefix, err)) {
        st = BN_ERR_FORMAT;
        goto fail;
    }
    k = bn_gguf_find_key(g, "tokenizer.ggml.remove_extra_whitespaces");
    if (k >= 0 && bn_gguf_get_bool(g, k, &t->remove_extra_ws, err)) {
        st = BN_ERR_FORMAT;
        goto fail;
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == BN_TT_BYTE) t->byte_fallback = 1;
    st = spm_setup(t, "GGUF vocabulary", err);
    if (st) goto fail;
    if (t->type[t->unk] != BN_TT_UNKNOWN && t->type[t->unk] != BN_TT_CONTROL) {
        st = bn_fail(err, BN_ERR_FORMAT, "GGUF unknown_token_id %ld is not an unknown piece",
                     (long)t->unk);
        goto fail;
    }
    *out = t;
    return bn_ok(err);
fail:
    bn_tokenizer_free(t);
    return st;
}
