/* Internal tokenizer representation, shared by tokenizer.c (common object,
 * special tokens, decoding, chat format), tokenizer_bpe.c (byte-level BPE) and
 * tokenizer_spm.c (SentencePiece BPE). */
#ifndef BN_TOKENIZER_H
#define BN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bitnet.h"

/* Token types, numbered as SentencePiece and GGUF (tokenizer.ggml.token_type)
 * number them. */
enum {
    BN_TT_NORMAL = 1,
    BN_TT_UNKNOWN = 2,
    BN_TT_CONTROL = 3,
    BN_TT_USER = 4,
    BN_TT_UNUSED = 5,
    BN_TT_BYTE = 6
};

/* Pre-tokenizer split patterns of the byte-level BPE. */
enum { BN_PRE_LLAMA3 = 1, BN_PRE_GPT2 = 2 };

/* Open-addressing hash map from byte strings (token texts stored in the
 * tokenizer) to ids. */
typedef struct bn_strslot {
    uint64_t head; /* the key's first 8 bytes, zero-padded: short keys need no
                      look at the token text */
    uint32_t tag;  /* hash bits << 8 | min(length, 255) */
    uint32_t id1;  /* id + 1; 0 = empty */
} bn_strslot;

typedef struct bn_strmap {
    bn_strslot *slots;
    uint64_t mask;
} bn_strmap;

/* Hash map from a pair of ids to (merge rank, merged id). */
typedef struct bn_pairmap {
    uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
    int32_t *rank;
    int32_t *merged;
    uint64_t mask;
} bn_pairmap;

struct bn_tokenizer {
    bn_tokenizer_kind kind;
    int32_t n_vocab;
    /* Stored text of each token: raw bytes for BPE, the piece for SPM. */
    char *text;
    uint64_t *text_off; /* n_vocab + 1 */
    /* Bytes of each token in decoded text (SPM: U+2581 -> ' ', <0xNN> -> the
     * byte, unknown -> " \xE2\x81\x87 ", control -> its text). */
    char *dec;
    uint64_t *dec_off; /* n_vocab + 1 */
    uint8_t *type;     /* BN_TT_* per id */
    float *score;      /* SPM merge scores, NULL for BPE */

    int32_t bos, eos, eot, pad, unk;

    /* Special tokens (matched in text under bn_encode_opts), sorted by id. */
    int32_t *special;
    size_t n_special;
    uint8_t special_first[256]; /* 1 where some special starts with that byte */

    /* BPE: bytes -> id of mergeable tokens. SPM: piece -> id of every piece
     * (first one wins). */
    bn_strmap map;

    /* BPE */
    int pre;           /* BN_PRE_* */
    int use_merges;    /* 1: merges from a list (HF / GGUF); 0: tiktoken ranks */
    int ignore_merges; /* whole piece in the vocabulary wins (Llama-3) */
    bn_pairmap pairs;
    /* (rank, merged id) of every pair of single bytes: [b0 << 8 | b1][2];
     * most pair lookups are of two bytes. */
    int32_t *pair2;
    int32_t byte_id[256]; /* BPE: single-byte token; SPM: <0xNN> (-1: none) */

    /* SPM */
    int add_space_prefix;
    int remove_extra_ws;
    int byte_fallback;
    int ws_split;  /* no piece joins a character to a following U+2581: encode
                      words ("\u2581*" + the rest) one by one */
    int32_t *user; /* user-defined pieces, matched whole before merging */
    size_t n_user;

    char *chat_template; /* from GGUF tokenizer.chat_template, or NULL */
};

/* Allocate an empty tokenizer of n_vocab ids (type NORMAL, ids -1). The
 * loader fills text/text_off (malloc'd), type, score and the special ids,
 * then calls bn_tok_finish. */
bn_status bn_tok_alloc(bn_tokenizer **out, bn_tokenizer_kind kind, int32_t n_vocab, bn_error *err);
/* Finish loading: build the decode table, the special list and the lookup
 * map; check the special ids. Frees nothing on failure (the caller frees). */
bn_status bn_tok_finish(bn_tokenizer *t, bn_error *err);

/* A growable byte buffer. */
typedef struct bn_buf {
    char *p;
    size_t n, cap;
} bn_buf;
int bn_buf_put(bn_buf *b, const void *s, size_t n); /* 0 on success, -1 out of memory */

/* Hash maps. */
uint64_t bn_hash_bytes(const void *p, size_t n);
bn_status bn_strmap_build(bn_strmap *m, const bn_tokenizer *t, const uint8_t *include,
                          bn_error *err);
int32_t bn_strmap_get(const bn_strmap *m, const bn_tokenizer *t, const char *s, size_t n);
void bn_strmap_free(bn_strmap *m);

/* Per-kind encoders of plain text (no special-token handling): append ids
 * through the sink. */
typedef struct bn_ids {
    int32_t *p;
    size_t n, cap;
} bn_ids;
int bn_ids_push(bn_ids *v, int32_t id); /* 0 on success */

/* `first` tells the SPM encoder whether this fragment starts the text (or
 * follows a special token), which is when the dummy prefix is added. */
bn_status bn_bpe_encode(const bn_tokenizer *t, const char *s, size_t n, bn_ids *out, bn_error *err);
bn_status bn_spm_encode(const bn_tokenizer *t, const char *s, size_t n, int first, bn_ids *out,
                        bn_error *err);

/* BPE internals exposed for tests: the pre-tokenizer (end of the piece that
 * starts at `pos`) and the merge of one piece with a given threshold between
 * the quadratic and the heap algorithm. */
size_t bn_bpe_next_piece(int pre, const char *s, size_t n, size_t pos);
bn_status bn_bpe_merge_piece(const bn_tokenizer *t, const char *s, size_t n, size_t heap_from,
                             bn_ids *out, bn_error *err);

/* Loaders of BPE vocabularies from GGUF / HF JSON, and SPM from GGUF. */
bn_status bn_bpe_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err);
bn_status bn_spm_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err);
/* Shared by both: tokens (byte-level decoded when asked), token types,
 * special ids and the chat template; the caller sets the rest and calls
 * bn_tok_finish. */
bn_status bn_gguf_vocab_common(const bn_gguf *g, bn_tokenizer_kind kind, bn_tokenizer **out,
                               int byte_level, bn_error *err);

/* Base64 (RFC 4648, with padding) decode; returns decoded length or -1. */
long bn_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap);

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when invalid
 * (then the byte counts as one invalid "character"). *cp gets the code point. */
static inline size_t bn_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xc2 || c > 0xf4) return 0;
    if (c < 0xe0) {
        if (n < 2 || (s[1] & 0xc0) != 0x80) return 0;
        *cp = ((c & 0x1fu) << 6) | (s[1] & 0x3fu);
        return 2;
    }
    if (c < 0xf0) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
        if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
        *cp = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        return 3;
    }
    if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) return 0;
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* past U+10FFFF */
    *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
    return 4;
}

#endif /* BN_TOKENIZER_H */
