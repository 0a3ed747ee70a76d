/* Tokenizers against reference vectors: tiktoken / HF / llama.cpp ids for
 * Llama-3 BPE (tokenizer.model, tokenizer.json, a GGUF written here from
 * tokenizer.json), sentencepiece / llama.cpp ids for LLaMA SentencePiece
 * (tokenizer.model and GGUF), GPT-2 through its GGUF; decode round trips,
 * streaming decode, chat format, malformed files, invalid UTF-8 and long
 * inputs. Run from the repository root (data in ../shared/testdata). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bitnet.h"
#include "json.h"
#include "test_util.h"
#include "tokenizer.h"

#define TOK TESTDATA "tokenizers/"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int32_t *encode(const bn_tokenizer *t, const char *s, size_t n, const bn_encode_opts *o,
                       size_t *n_out, bn_status *st_out) {
    bn_error err;
    size_t need = 0;
    int32_t *ids = malloc((n + 4) * sizeof(int32_t));
    bn_status st = bn_tokenize(t, s, n, o, ids, n + 4, &need, &err);
    if (st_out) *st_out = st;
    if (st != BN_OK) {
        if (!st_out) fprintf(stderr, "encode failed: %s\n", err.msg);
        free(ids);
        return NULL;
    }
    *n_out = need;
    return ids;
}

static char *decode(const bn_tokenizer *t, const int32_t *ids, size_t n, int skip, size_t *len) {
    bn_error err;
    size_t need = 0;
    bn_status st = bn_detokenize(t, ids, n, skip, NULL, 0, &need, &err);
    if (st != BN_OK && st != BN_ERR_RANGE) return NULL;
    char *buf = malloc(need + 1);
    st = bn_detokenize(t, ids, n, skip, buf, need, len, &err);
    if (st != BN_OK) {
        free(buf);
        return NULL;
    }
    buf[*len] = 0;
    return buf;
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = bn_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

/* Push ids one by one through a streaming decoder; returns the text. */
static char *stream_decode(const bn_tokenizer *t, const int32_t *ids, size_t n, int skip,
                           size_t *len, int *partial) {
    bn_detok *d;
    bn_error err;
    *partial = 0;
    if (bn_detok_new(t, skip, &d, &err) != BN_OK) return NULL;
    bn_buf out = {0};
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        if (bn_detok_push(d, ids[i], &s, &l, &err) != BN_OK) {
            bn_detok_free(d);
            free(out.p);
            return NULL;
        }
        if (!valid_utf8(s, l)) *partial = 1;
        bn_buf_put(&out, s, l);
    }
    const char *s;
    size_t l;
    bn_detok_flush(d, &s, &l, &err);
    if (!valid_utf8(s, l)) *partial = 1;
    bn_buf_put(&out, s, l);
    bn_buf_put(&out, "", 1);
    bn_detok_free(d);
    *len = out.n - 1;
    return out.p;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Check encode == expected, decode round trip and streaming decode. */
static void check_text(const bn_tokenizer *t, const char *label, const char *text, size_t n,
                       const bn_encode_opts *o, const int32_t *want, size_t n_want, int roundtrip) {
    size_t got_n = 0;
    int32_t *got = encode(t, text, n, o, &got_n, NULL);
    CHECKF(got != NULL, "%s: encode failed", label);
    if (!got) return;
    int same = ids_equal(got, got_n, want, n_want);
    CHECKF(same, "%s: ids differ for '%.60s'", label, text);
    if (!same) {
        print_ids("want", want, n_want);
        print_ids("got ", got, got_n);
    }
    size_t dl = 0;
    char *dec = decode(t, got, got_n, 0, &dl);
    if (roundtrip) {
        CHECKF(dec && dl == n && memcmp(dec, text, n) == 0,
               "%s: decode(encode(x)) != x for '%.60s'", label, text);
    }
    size_t sl = 0;
    int partial = 0;
    char *st = stream_decode(t, got, got_n, 0, &sl, &partial);
    CHECKF(st && !partial, "%s: streaming emitted a partial UTF-8 sequence", label);
    if (dec && st && valid_utf8(dec, dl))
        CHECKF(sl == dl && memcmp(st, dec, dl) == 0, "%s: streamed text differs from the decode",
               label);
    free(st);
    free(dec);
    free(got);
}

/* llama.cpp's .inp/.out: tests separated by "\n__ggml_vocab_test__\n", one
 * line of ids per test. */
static int run_inp_out(const bn_tokenizer *t, const char *base, const bn_encode_opts *o,
                       int roundtrip) {
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s.inp", base);
    snprintf(p2, sizeof p2, "%s.out", base);
    size_t ni, no;
    char *inp = (char *)bn_test_read_file(p1, &ni);
    char *out = (char *)bn_test_read_file(p2, &no);
    CHECKF(inp && out, "cannot read %s", base);
    if (!inp || !out) {
        free(inp);
        free(out);
        return 0;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    char *ip = inp, *op = out;
    int count = 0;
    for (;;) {
        char *e = strstr(ip, sep);
        if (!e) break;
        char *ol = op;
        char *oe = strchr(op, '\n');
        if (!oe) break;
        *oe = 0;
        op = oe + 1;
        int32_t want[4096];
        size_t nw = 0;
        char *q = ol;
        while (*q && nw < 4096) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
            q = end;
        }
        char label[600];
        snprintf(label, sizeof label, "%s #%d", base, count);
        check_text(t, label, ip, (size_t)(e - ip), o, want, nw, roundtrip);
        count++;
        ip = e + sl;
    }
    free(inp);
    free(out);
    return count;
}

static int32_t *read_ids_file(const char *path, size_t *n) {
    size_t sz;
    char *s = (char *)bn_test_read_file(path, &sz);
    if (!s) return NULL;
    int32_t *ids = malloc((sz / 2 + 1) * sizeof(int32_t));
    size_t k = 0;
    char *q = s;
    for (;;) {
        char *end;
        long v = strtol(q, &end, 10);
        if (end == q) break;
        ids[k++] = (int32_t)v;
        q = end;
    }
    free(s);
    *n = k;
    return ids;
}

static void check_botchan(const bn_tokenizer *t, const char *ids_path, const char *label) {
    size_t nt, nw;
    char *text = (char *)bn_test_read_file(TESTDATA "eval/botchan.txt", &nt);
    int32_t *want = read_ids_file(ids_path, &nw);
    CHECKF(text && want && nw > 1000, "%s: cannot read botchan data", label);
    if (text && want) {
        bn_encode_opts o = {0};
        o.disallow_none = 1;
        double t0 = now_s();
        check_text(t, label, text, nt, &o, want, nw, 1);
        printf("  %s: %zu bytes -> %zu ids, checked in %.3f s\n", label, nt, nw, now_s() - t0);
    }
    free(text);
    free(want);
}

static const bn_json_val *load_json(const char *path, bn_json **j) {
    size_t n;
    char *s = (char *)bn_test_read_file(path, &n);
    *j = NULL;
    if (!s) return NULL;
    bn_error err;
    bn_status st = bn_json_parse(s, n, j, &err);
    free(s);
    return st == BN_OK ? bn_json_root(*j) : NULL;
}

static size_t json_ids(const bn_json_val *arr, int32_t *out, size_t cap) {
    size_t k = 0;
    for (const bn_json_val *v = bn_json_first(arr); v && k < cap; v = bn_json_next(v)) {
        int64_t x = 0;
        bn_json_int(v, &x);
        out[k++] = (int32_t)x;
    }
    return k;
}

/* ------------------------------------------------------------------------ */
/* Llama-3                                                                   */
/* ------------------------------------------------------------------------ */

static void llama3_vectors(const bn_tokenizer *t, const char *label) {
    CHECK(bn_tokenizer_get_kind(t) == BN_TOKENIZER_BPE);
    CHECKF(bn_tokenizer_n_vocab(t) == 128256, "%s: n_vocab %d", label, bn_tokenizer_n_vocab(t));
    CHECK(bn_tokenizer_bos(t) == 128000);
    CHECK(bn_tokenizer_eos(t) == 128001);
    CHECK(bn_tokenizer_eot(t) == 128009);
    CHECK(bn_tokenizer_special_id(t, "<|start_header_id|>") == 128006);
    CHECK(bn_tokenizer_special_id(t, "<|end_header_id|>") == 128007);
    CHECK(bn_tokenizer_special_id(t, "<|reserved_special_token_250|>") == 128255);
    CHECK(bn_tokenizer_special_id(t, "<|reserved_special_token_5|>") == 128010);
    CHECK(bn_tokenizer_special_id(t, "hello") == -1);
    CHECK(bn_tokenizer_is_special(t, 128009) && !bn_tokenizer_is_special(t, 9906));

    bn_json *j;
    const bn_json_val *root = load_json(TOK "llama3/llama3_cases.json", &j);
    CHECKF(root != NULL, "cannot load llama3_cases.json");
    int n = 0;
    for (const bn_json_val *c = bn_json_first(bn_json_get(root, "cases")); c; c = bn_json_next(c)) {
        size_t tl;
        const char *text = bn_json_str(bn_json_get(c, "text"), &tl);
        int32_t want[1024];
        char lab[256];
        bn_encode_opts all = {0};
        all.allow_all_special = 1;
        size_t nw = json_ids(bn_json_get(c, "ids_special"), want, 1024);
        snprintf(lab, sizeof lab, "%s cases[%d] special", label, n);
        check_text(t, lab, text, tl, &all, want, nw, 1);
        bn_encode_opts plain = {0};
        plain.disallow_none = 1;
        nw = json_ids(bn_json_get(c, "ids_plain"), want, 1024);
        snprintf(lab, sizeof lab, "%s cases[%d] plain", label, n);
        check_text(t, lab, text, tl, &plain, want, nw, 1);
        n++;
    }
    bn_json_free(j);
    CHECKF(n == 22, "%d llama3 cases", n);
    bn_encode_opts plain = {0};
    plain.disallow_none = 1;
    int a = run_inp_out(t, TOK "llama3/ggml-vocab-llama-bpe.gguf", &plain, 1);
    int b = run_inp_out(t, TOK "llama3/upstream-2026/ggml-vocab-llama-bpe.gguf", &plain, 1);
    CHECKF(a == 46 && b == 46, "%s: %d and %d llama.cpp vectors", label, a, b);
    char lab[128];
    snprintf(lab, sizeof lab, "%s botchan", label);
    check_botchan(t, TOK "llama3/llama3_botchan.ids", lab);
    printf("  %s: %d cases x2, %d + %d llama.cpp vectors, botchan\n", label, n, a, b);
}

static void llama3_specials(const bn_tokenizer *t) {
    const char *text = "a<|eot_id|>b<|begin_of_text|>";
    size_t n = strlen(text), got_n;
    bn_status st;
    /* default: all specials disallowed -> error */
    int32_t *ids = encode(t, text, n, NULL, &got_n, &st);
    CHECK(ids == NULL && st == BN_ERR_TOKENIZER);
    bn_error err;
    size_t need;
    int32_t buf[64];
    st = bn_tokenize(t, text, n, NULL, buf, 64, &need, &err);
    CHECKF(st == BN_ERR_TOKENIZER && strstr(err.msg, "<|eot_id|>"), "message: %s", err.msg);
    /* allowed one: it becomes its id; the other is still disallowed */
    const char *allow[] = {"<|eot_id|>"};
    bn_encode_opts o = {0};
    o.allowed_special = allow;
    o.n_allowed = 1;
    st = bn_tokenize(t, text, n, &o, buf, 64, &need, &err);
    CHECKF(st == BN_ERR_TOKENIZER && strstr(err.msg, "<|begin_of_text|>"), "message: %s", err.msg);
    /* allowed one, disallowed none: the other is plain text */
    o.disallow_none = 1;
    ids = encode(t, text, n, &o, &got_n, NULL);
    CHECK(ids && got_n > 3 && ids[1] == 128009);
    int plain_bot = 1;
    for (size_t i = 0; ids && i < got_n; i++)
        if (ids[i] == 128000) plain_bot = 0;
    CHECK(plain_bot);
    free(ids);
    /* explicit disallowed list: only those raise */
    const char *dis[] = {"<|begin_of_text|>"};
    bn_encode_opts o2 = {0};
    o2.disallowed_special = dis;
    o2.n_disallowed = 1;
    st = bn_tokenize(t, "x<|eot_id|>", 11, &o2, buf, 64, &need, &err);
    CHECK(st == BN_OK && need > 1 && buf[need - 1] != 128009);
    st = bn_tokenize(t, "x<|begin_of_text|>", 18, &o2, buf, 64, &need, &err);
    CHECK(st == BN_ERR_TOKENIZER);
    /* bos / eos */
    bn_encode_opts be = {0};
    be.add_bos = be.add_eos = 1;
    st = bn_tokenize(t, "Hello world", 11, &be, buf, 64, &need, &err);
    CHECK(st == BN_OK && need == 4 && buf[0] == 128000 && buf[1] == 9906 && buf[2] == 1917 &&
          buf[3] == 128001);
    /* sizing: cap 0 tells the size */
    st = bn_tokenize(t, "Hello world", 11, &be, NULL, 0, &need, &err);
    CHECK(st == BN_ERR_RANGE && need == 4);
    st = bn_tokenize(t, "Hello world", 11, &be, buf, 3, &need, &err);
    CHECK(st == BN_ERR_RANGE && need == 4);
    st = bn_tokenize(t, "", 0, NULL, NULL, 0, &need, &err);
    CHECK(st == BN_OK && need == 0);
    /* decode with and without specials */
    int32_t d[] = {128000, 9906, 1917, 128009};
    size_t dl;
    char *s = decode(t, d, 4, 0, &dl);
    CHECK(s && strcmp(s, "<|begin_of_text|>Hello world<|eot_id|>") == 0);
    free(s);
    s = decode(t, d, 4, 1, &dl);
    CHECK(s && strcmp(s, "Hello world") == 0);
    free(s);
    int32_t bad[] = {5, 128256};
    CHECK(bn_detokenize(t, bad, 2, 0, (char *)buf, sizeof buf, &need, &err) == BN_ERR_RANGE);
    CHECK(bn_detokenize(t, bad, 2, 0, (char *)buf, sizeof buf, &need, &err) == BN_ERR_RANGE);
    int32_t neg = -1;
    CHECK(bn_detokenize(t, &neg, 1, 0, (char *)buf, sizeof buf, &need, &err) == BN_ERR_RANGE);
    char tb[64];
    CHECK(bn_token_to_bytes(t, 9906, tb, sizeof tb, &need, &err) == BN_OK && need == 5 &&
          memcmp(tb, "Hello", 5) == 0);
    CHECK(bn_token_to_bytes(t, 128256, tb, sizeof tb, &need, &err) == BN_ERR_RANGE);
    const char *tt;
    size_t tl;
    CHECK(bn_tokenizer_token_text(t, 128009, &tt, &tl, &err) == BN_OK && tl == 10 &&
          memcmp(tt, "<|eot_id|>", 10) == 0);
}

/* The official GGUF's chat template against the ids that transformers'
 * BitNet integration test builds from the same template
 * (../shared/testdata/golden/bitnet-b1.58-2B-4T_hf_expected.json,
 * test_model_generation): header and content are one text there, unlike the
 * original ChatFormat. */
static void llama3_chat_template(const bn_tokenizer *tk) {
    bn_error err;
    const bn_chat_message msg = {"user", "What is your favourite food?"};
    const int32_t want[] = {128000, 1502, 25,     3639,  374, 701, 19214,
                            3691,   30,   128009, 72803, 25,  220};
    int32_t got[64];
    size_t n = 0;
    CHECK_OK(bn_chat_encode_template(tk, &msg, 1, 1, got, 64, &n, &err), &err);
    CHECKF(n == sizeof want / sizeof want[0] && memcmp(got, want, sizeof want) == 0,
           "template ids differ (%zu ids)", n);
    /* The original ChatFormat encodes the header alone: "User: " then "What". */
    CHECK_OK(bn_chat_encode_dialog(tk, &msg, 1, 1, got, 64, &n, &err), &err);
    CHECK(n > 4 && got[3] == 220);
    const bn_chat_message bad = {"tool", "x"};
    CHECK(bn_chat_encode_template(tk, &bad, 1, 1, got, 64, &n, &err) == BN_ERR_INVALID_ARG);
}

static void llama3_chat(const bn_tokenizer *t) {
    bn_chat_message m1[] = {{"system", "You are a helpful assistant"},
                            {"user", "  Hi <|eot_id|>\n\xe3\x80\x80"}};
    static const int32_t w1[] = {128000, 2374,   25,   220, 2675,   527,   264,   11190,
                                 18328,  128009, 1502, 25,  220,    13347, 83739, 68,
                                 354,    851,    91,   29,  128009, 72803, 25,    220};
    int32_t out[128];
    size_t n;
    bn_error err;
    CHECK_OK(bn_chat_encode_dialog(t, m1, 2, 1, out, 128, &n, &err), &err);
    CHECK(ids_equal(out, n, w1, sizeof w1 / sizeof w1[0]));
    bn_chat_message m2[] = {{"user", "What is 2+2?"}, {"assistant", "4"}};
    static const int32_t w2[] = {128000, 1502, 25,     220,   3923, 374, 220, 17,    10,
                                 17,     30,   128009, 72803, 25,   220, 19,  128009};
    CHECK_OK(bn_chat_encode_dialog(t, m2, 2, 0, out, 128, &n, &err), &err);
    CHECK(ids_equal(out, n, w2, sizeof w2 / sizeof w2[0]));
    bn_chat_message m3[] = {{"tool", "x"}};
    CHECK(bn_chat_encode_dialog(t, m3, 1, 1, out, 128, &n, &err) == BN_ERR_INVALID_ARG &&
          strstr(err.msg, "Role tool not implemented"));
    CHECK(bn_chat_encode_dialog(t, m2, 2, 0, out, 3, &n, &err) == BN_ERR_RANGE && n == 17);
}

/* Invalid UTF-8, random bytes, long runs; heap vs quadratic merge. */
static void robustness(const bn_tokenizer *t, const char *label) {
    uint64_t rng = 0x1234567;
    char buf[512];
    int ok_rt = 1, ok_stream = 1;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(rng % 200);
        for (size_t i = 0; i < n; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            unsigned r = (unsigned)(rng >> 33);
            /* mix ASCII, spaces, newlines, multi-byte starts and junk */
            static const char pool[] =
                "aZ9 \t\r\n'sSt.,!\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\x80\xff";
            buf[i] = (r & 3) ? pool[r % (sizeof pool - 1)] : (char)(r >> 8);
        }
        bn_encode_opts o = {0};
        o.disallow_none = 1;
        size_t got_n = 0;
        int32_t *ids = encode(t, buf, n, &o, &got_n, NULL);
        if (!ids) {
            ok_rt = 0;
            continue;
        }
        size_t dl;
        char *d = decode(t, ids, got_n, 0, &dl);
        if (!d || dl != n || memcmp(d, buf, n) != 0) ok_rt = 0;
        size_t sl;
        int partial;
        char *s = stream_decode(t, ids, got_n, 0, &sl, &partial);
        if (!s || partial) ok_stream = 0;
        if (s && d && valid_utf8(d, dl) && (sl != dl || memcmp(s, d, dl) != 0)) ok_stream = 0;
        free(s);
        free(d);
        free(ids);
    }
    CHECKF(ok_rt, "%s: random bytes do not round-trip", label);
    CHECKF(ok_stream, "%s: streaming on random bytes", label);

    /* long inputs: not quadratic */
    size_t big = 1 << 20;
    char *s = malloc(big);
    const char *fills[] = {" ", "a", "\n", "!", "1", " \n"};
    for (int f = 0; f < 6; f++) {
        size_t fl = strlen(fills[f]);
        for (size_t i = 0; i < big; i++)
            s[i] = fills[f][i % fl];
        double t0 = now_s();
        size_t n;
        bn_encode_opts o = {0};
        int32_t *ids = encode(t, s, big, &o, &n, NULL);
        double dt = now_s() - t0;
        CHECKF(ids && dt < 5.0, "%s: 1 MiB of '%s' took %.2f s", label, fills[f], dt);
        if (ids) {
            size_t dl;
            char *d = decode(t, ids, n, 0, &dl);
            CHECK(d && dl == big && memcmp(d, s, big) == 0);
            free(d);
        }
        free(ids);
    }
    free(s);
}

static void merge_equivalence(const bn_tokenizer *t) {
    /* the heap merge must choose exactly as the quadratic one */
    uint64_t rng = 99;
    int same = 1;
    static const char *const alpha[] = {"a", "b", "e", "r", "er", "th", "in", " ", "\xc3\xa9", "x"};
    for (int iter = 0; iter < 2000; iter++) {
        char buf[64];
        size_t n = 0;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t want = 2 + (size_t)(rng >> 58);
        while (n < want) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const char *a = alpha[(rng >> 33) % 10];
            size_t l = strlen(a);
            if (n + l > 60) break;
            memcpy(buf + n, a, l);
            n += l;
        }
        bn_ids x = {0}, y = {0};
        bn_error err;
        bn_bpe_merge_piece(t, buf, n, 1000, &x, &err);
        bn_bpe_merge_piece(t, buf, n, 0, &y, &err);
        if (!ids_equal(x.p, x.n, y.p, y.n)) same = 0;
        free(x.p);
        free(y.p);
    }
    CHECK(same);
}

static void streaming_invalid(const bn_tokenizer *t) {
    /* byte tokens of an emoji one by one, then junk */
    int32_t e[4];
    const unsigned char emoji[] = {0xf0, 0x9f, 0x98, 0x80};
    for (int i = 0; i < 4; i++)
        e[i] = t->byte_id[emoji[i]];
    size_t sl;
    int partial;
    char *s = stream_decode(t, e, 4, 0, &sl, &partial);
    CHECK(s && !partial && sl == 4 && memcmp(s, emoji, 4) == 0);
    free(s);
    /* incomplete at the end: one U+FFFD, as Python's replace does */
    s = stream_decode(t, e, 3, 0, &sl, &partial);
    CHECK(s && sl == 3 && memcmp(s, "\xef\xbf\xbd", 3) == 0);
    free(s);
    /* F0 9F then 'a': U+FFFD then a */
    int32_t f[3] = {e[0], e[1], t->byte_id['a']};
    s = stream_decode(t, f, 3, 0, &sl, &partial);
    CHECK(s && sl == 4 &&
          memcmp(s,
                 "\xef\xbf\xbd"
                 "a",
                 4) == 0);
    free(s);
    /* lone continuation bytes and ED A0 (surrogate): one U+FFFD each byte */
    int32_t g[3] = {t->byte_id[0x80], t->byte_id[0xed], t->byte_id[0xa0]};
    s = stream_decode(t, g, 3, 0, &sl, &partial);
    CHECK(s && sl == 9 && memcmp(s, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9) == 0);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* GGUF vocabulary written from tokenizer.json                               */
/* ------------------------------------------------------------------------ */

static char *gunzip_to_temp(const char *gz) {
    static char path[] = "/tmp/bn_test_tok_XXXXXX.json";
    char *p = malloc(sizeof path);
    memcpy(p, path, sizeof path);
    int fd = mkstemps(p, 5);
    if (fd < 0) {
        free(p);
        return NULL;
    }
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' > '%s'", gz, p);
    if (system(cmd) != 0) {
        unlink(p);
        free(p);
        return NULL;
    }
    return p;
}

/* Write a GGUF "gpt2" vocabulary from a loaded HF tokenizer.json: tokens in
 * byte-level text (specials as they are), types, merges, special ids. */
static int write_gguf_from_json(const char *json_path, const char *out_path) {
    size_t n;
    char *s = (char *)bn_test_read_file(json_path, &n);
    if (!s) return -1;
    bn_json *j;
    bn_error err;
    if (bn_json_parse(s, n, &j, &err) != BN_OK) {
        free(s);
        return -1;
    }
    free(s);
    const bn_json_val *root = bn_json_root(j);
    const bn_json_val *model = bn_json_get(root, "model");
    const bn_json_val *vocab = bn_json_get(model, "vocab");
    const bn_json_val *added = bn_json_get(root, "added_tokens");
    const bn_json_val *merges = bn_json_get(model, "merges");
    size_t nv = bn_json_len(vocab) + bn_json_len(added);
    const char **toks = calloc(nv, sizeof(char *));
    uint64_t *lens = calloc(nv, sizeof(uint64_t));
    int32_t *types = calloc(nv, sizeof(int32_t));
    for (const bn_json_val *v = bn_json_first(vocab); v; v = bn_json_next(v)) {
        int64_t id;
        bn_json_int(v, &id);
        size_t kl;
        toks[id] = bn_json_key(v, &kl); /* already byte-level text */
        lens[id] = kl;
        types[id] = 1;
    }
    for (const bn_json_val *v = bn_json_first(added); v; v = bn_json_next(v)) {
        int64_t id;
        bn_json_int(bn_json_get(v, "id"), &id);
        size_t cl;
        toks[id] = bn_json_str(bn_json_get(v, "content"), &cl);
        lens[id] = cl;
        types[id] = 3;
    }
    size_t nm = bn_json_len(merges);
    const char **ms = calloc(nm, sizeof(char *));
    uint64_t *ml = calloc(nm, sizeof(uint64_t));
    size_t i = 0;
    for (const bn_json_val *v = bn_json_first(merges); v; v = bn_json_next(v), i++) {
        size_t l;
        ms[i] = bn_json_str(v, &l);
        ml[i] = l;
    }
    bn_gguf_writer *w;
    int rc = -1;
    if (bn_gguf_writer_new(&w, &err) == BN_OK) {
        uint32_t bos = 128000, eos = 128001;
        int ok =
            bn_gguf_writer_set_str(w, "general.architecture", "llama", 5, &err) == BN_OK &&
            bn_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4, &err) == BN_OK &&
            bn_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe", 9, &err) == BN_OK &&
            bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, nv, &err) == BN_OK &&
            bn_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types, nv,
                                   &err) == BN_OK &&
            bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", ms, ml, nm, &err) == BN_OK &&
            bn_gguf_writer_set(w, "tokenizer.ggml.bos_token_id", BN_GGUF_UINT32, &bos, &err) ==
                BN_OK &&
            bn_gguf_writer_set(w, "tokenizer.ggml.eos_token_id", BN_GGUF_UINT32, &eos, &err) ==
                BN_OK &&
            bn_gguf_writer_set_str(w, "tokenizer.chat_template", "{{ bos_token }}", 15, &err) ==
                BN_OK &&
            bn_gguf_writer_write(w, out_path, &err) == BN_OK;
        if (!ok) fprintf(stderr, "gguf writer: %s\n", err.msg);
        rc = ok ? 0 : -1;
        bn_gguf_writer_free(w);
    }
    free(toks);
    free(lens);
    free(types);
    free(ms);
    free(ml);
    bn_json_free(j);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* SentencePiece                                                             */
/* ------------------------------------------------------------------------ */

/* Word-by-word SentencePiece encoding (ws_split) must equal the whole-text
 * merge. */
static void spm_split_equivalence(bn_tokenizer *t) {
    CHECK(t->ws_split); /* LLaMA's vocabulary allows it */
    uint64_t rng = 5;
    int same = 1;
    static const char *const words[] = {" ",
                                        "  ",
                                        "the",
                                        " the",
                                        "\n",
                                        "ab",
                                        "\xc3\xa9",
                                        "12",
                                        "\xe2\x96\x81",
                                        "x",
                                        "\xf0\x9f\xa6\x99",
                                        "\xff",
                                        "'s"};
    for (int iter = 0; iter < 1500; iter++) {
        char buf[256];
        size_t n = 0;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = (size_t)(rng >> 59);
        for (size_t i = 0; i < k; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const char *w = words[(rng >> 33) % 13];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
        }
        bn_encode_opts o = {0};
        o.disallow_none = 1;
        size_t na = 0, nb = 0;
        t->ws_split = 1;
        int32_t *a = encode(t, buf, n, &o, &na, NULL);
        t->ws_split = 0;
        int32_t *b = encode(t, buf, n, &o, &nb, NULL);
        t->ws_split = 1;
        if (!a || !b || !ids_equal(a, na, b, nb)) same = 0;
        free(a);
        free(b);
    }
    CHECK(same);
}

static void spm_vectors(const bn_tokenizer *t, const char *label) {
    CHECK(bn_tokenizer_get_kind(t) == BN_TOKENIZER_SPM);
    CHECKF(bn_tokenizer_n_vocab(t) == 32000, "%s: n_vocab %d", label, bn_tokenizer_n_vocab(t));
    CHECK(bn_tokenizer_bos(t) == 1 && bn_tokenizer_eos(t) == 2);
    bn_json *j;
    const bn_json_val *root = load_json(TOK "llama-spm/llama_spm_cases.json", &j);
    CHECKF(root != NULL, "cannot load llama_spm_cases.json");
    int n = 0;
    bn_encode_opts plain = {0};
    plain.disallow_none = 1;
    for (const bn_json_val *c = bn_json_first(bn_json_get(root, "cases")); c; c = bn_json_next(c)) {
        size_t tl, dl;
        const char *text = bn_json_str(bn_json_get(c, "text"), &tl);
        const char *want_dec = bn_json_str(bn_json_get(c, "decoded"), &dl);
        int32_t want[1024];
        size_t nw = json_ids(bn_json_get(c, "ids"), want, 1024);
        char lab[256];
        snprintf(lab, sizeof lab, "%s cases[%d]", label, n);
        check_text(t, lab, text, tl, &plain, want, nw, 0);
        size_t gl;
        char *got = decode(t, want, nw, 1, &gl);
        CHECKF(got && gl == dl && memcmp(got, want_dec, dl) == 0, "%s: decoded '%s' want '%s'", lab,
               got ? got : "(null)", want_dec);
        free(got);
        n++;
    }
    bn_json_free(j);
    CHECKF(n == 18, "%d spm cases", n);
    int a = run_inp_out(t, TOK "llama-spm/ggml-vocab-llama-spm.gguf", &plain, 0);
    int b = run_inp_out(t, TOK "llama-spm/upstream-2026/ggml-vocab-llama-spm.gguf", &plain, 0);
    CHECKF(a == 46 && b == 46, "%s: %d and %d llama.cpp vectors", label, a, b);
    char lab[128];
    snprintf(lab, sizeof lab, "%s botchan", label);
    check_botchan(t, TOK "llama-spm/llama_spm_botchan.ids", lab);
    /* sentencepiece decode rules for the leading space */
    static const struct {
        int32_t ids[4];
        size_t n;
        const char *want;
    } dec[] = {
        {{29871, 15043}, 2, " Hello"},
        {{13, 15043}, 2, "\n Hello"},
        {{1, 29871, 15043}, 3, " Hello"},
        {{1, 15043}, 2, "Hello"},
        {{0, 15043}, 2, " \xe2\x81\x87  Hello"},
        {{29871, 29871, 15043}, 3, "  Hello"},
        {{2, 29871}, 2, ""},
    };
    for (size_t i = 0; i < sizeof dec / sizeof dec[0]; i++) {
        size_t gl;
        char *got = decode(t, dec[i].ids, dec[i].n, 1, &gl);
        CHECKF(got && strcmp(got, dec[i].want) == 0, "%s: decode #%zu gave '%s'", label, i,
               got ? got : "(null)");
        free(got);
        size_t sl;
        int partial;
        char *s = stream_decode(t, dec[i].ids, dec[i].n, 1, &sl, &partial);
        CHECKF(s && strcmp(s, dec[i].want) == 0, "%s: stream #%zu gave '%s'", label, i,
               s ? s : "(null)");
        free(s);
    }
    printf("  %s: %d cases, %d + %d llama.cpp vectors, botchan\n", label, n, a, b);
}

/* ------------------------------------------------------------------------ */
/* Malformed files                                                           */
/* ------------------------------------------------------------------------ */

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static bn_status load_bytes(bn_status (*fn)(const char *, bn_tokenizer **, bn_error *),
                            const void *data, size_t n, bn_error *err) {
    char path[] = "/tmp/bn_test_tok_bad_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return BN_ERR_IO;
    close(fd);
    write_file(path, data, n);
    bn_tokenizer *t = NULL;
    bn_status st = fn(path, &t, err);
    bn_tokenizer_free(t);
    unlink(path);
    return st;
}

static void malformed_tiktoken(void) {
    /* a small valid rank file: 256 bytes, then a few merges */
    bn_buf b = {0};
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 256; i++) {
        char line[32];
        snprintf(line, sizeof line, "%c%c==%s %d\n", b64[i >> 2], b64[(i & 3) << 4], "", i);
        bn_buf_put(&b, line, strlen(line));
    }
    const char *extra = "aGU= 256\n"; /* "he" */
    bn_buf_put(&b, extra, strlen(extra));
    bn_error err;
    CHECKF(load_bytes(bn_tokenizer_load_tiktoken, b.p, b.n, &err) == BN_OK, "small file: %s",
           err.msg);
    struct {
        const char *line;
        const char *msg;
    } bad[] = {
        {"a$U= 257\n", "bad base64"},
        {"aGU 257\n", "bad base64"},
        {"aGVs 300\n", "out of range"},
        {"aGVs 256\n", "duplicate rank"},
        {"aGVs\n", "expected"},
        {"aGVs 12x\n", "bad rank"},
        {"aGU= 257\n", "same token bytes"},
        {"aGVs -1\n", "bad rank"},
        {"aGVs 99999999999\n", "bad rank"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bn_buf c = {0};
        bn_buf_put(&c, b.p, b.n);
        bn_buf_put(&c, bad[i].line, strlen(bad[i].line));
        bn_status st = load_bytes(bn_tokenizer_load_tiktoken, c.p, c.n, &err);
        CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, bad[i].msg), "tiktoken bad line %zu: %s / %s",
               i, bn_status_str(st), err.msg);
        free(c.p);
    }
    /* a missing byte token */
    bn_status st = load_bytes(bn_tokenizer_load_tiktoken, "aGU= 0\n", 7, &err);
    CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, "byte 0x"), "%s", err.msg);
    /* truncated: every prefix of the real file either loads or fails cleanly */
    size_t n;
    unsigned char *real = bn_test_read_file(TOK "llama3/tokenizer.model", &n);
    CHECK(real != NULL);
    if (real) {
        size_t cuts[] = {0, 1, 7, 100, 1001, n / 2 + 3};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            st = load_bytes(bn_tokenizer_load_tiktoken, real, cuts[i], &err);
            CHECKF(st == BN_ERR_FORMAT, "tiktoken cut at %zu: %s", cuts[i], bn_status_str(st));
        }
        free(real);
    }
    bn_tokenizer *t = NULL;
    CHECK(bn_tokenizer_load_tiktoken("/nonexistent/tokenizer.model", &t, &err) == BN_ERR_NOT_FOUND);
    CHECK(bn_tokenizer_load("/nonexistent/tokenizer.model", &t, &err) == BN_ERR_NOT_FOUND);
    free(b.p);
}

static void malformed_spm(void) {
    size_t n;
    unsigned char *real = bn_test_read_file(TOK "llama-spm/tokenizer.model", &n);
    CHECK(real != NULL);
    if (!real) return;
    bn_error err;
    int clean = 1, crash_free = 1;
    /* every cut point in the first 4 KiB and some later ones */
    for (size_t cut = 0; cut < n; cut += cut < 512 ? 1 : 1021) {
        bn_status st = load_bytes(bn_tokenizer_load_spm, real, cut, &err);
        if (st == BN_OK) clean = 0; /* a truncated model must not load */
        /* cut before the trainer spec, the proto default (unigram) applies */
        if (st != BN_ERR_FORMAT && st != BN_ERR_UNSUPPORTED) crash_free = 0;
    }
    CHECK(clean);
    CHECK(crash_free);
    /* flipped bytes: must not crash; errors are clean */
    uint64_t rng = 7;
    unsigned char *c = malloc(n);
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        memcpy(c, real, n);
        for (int k = 0; k < 4; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            c[(rng >> 20) % 4096] ^= (unsigned char)(rng >> 50);
        }
        bn_status st = load_bytes(bn_tokenizer_load_spm, c, n, &err);
        if (st != BN_OK && st != BN_ERR_FORMAT && st != BN_ERR_UNSUPPORTED) ok = 0;
    }
    CHECK(ok);
    free(c);
    /* hand-made broken protobufs */
    static const struct {
        const char *data;
        size_t n;
        const char *msg;
    } bad[] = {
        {"\x0a\x05\x0a\x01", 4, "broken protobuf"},                     /* length past the end */
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11, "broken"}, /* varint too long */
        {"\x0b\x00", 2, "wire type"},                                   /* group start */
        {"\x12\x02\x18\x02", 4, "no pieces"},                           /* trainer only */
        {"\x0a\x04\x0a\x02hi\x12\x02\x18\x02", 10, "unknown piece"},
        {"\x0a\x02\x18\x09\x12\x02\x18\x02", 8, "unknown type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bn_status st = load_bytes(bn_tokenizer_load_spm, bad[i].data, bad[i].n, &err);
        CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, bad[i].msg), "spm bad %zu: %s / %s", i,
               bn_status_str(st), err.msg);
    }
    /* a unigram model is refused clearly */
    static const char uni[] = "\x0a\x09\x0a\x05<unk>\x18\x02\x12\x02\x18\x01";
    bn_status st = load_bytes(bn_tokenizer_load_spm, uni, sizeof uni - 1, &err);
    CHECKF(st == BN_ERR_UNSUPPORTED && strstr(err.msg, "not BPE"), "%s", err.msg);
    free(real);
}

static void malformed_json(void) {
    bn_error err;
    static const char *const bad[] = {
        "{",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": [], \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
        "\"normalizer\": "
        "null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
        "\"normalizer\": "
        "null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": -1}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
        "\"normalizer\": "
        "null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1000000000}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
        "\"normalizer\": "
        "null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bn_status st = load_bytes(bn_tokenizer_load_hf_json, bad[i], strlen(bad[i]), &err);
        CHECKF(st == BN_ERR_FORMAT || st == BN_ERR_UNSUPPORTED, "json bad %zu: %s / %s", i,
               bn_status_str(st), err.msg);
    }
}

static void malformed_gguf(void) {
    /* GGUF vocabularies with inconsistent arrays */
    bn_error err;
    bn_gguf_writer *w;
    const char *toks[] = {"<unk>", "<s>", "</s>", "a"};
    int32_t types_bad[] = {2, 3, 3, 9};
    float scores[] = {0, 0, 0, -1};
    char path[] = "/tmp/bn_test_tok_gguf_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(bn_gguf_writer_new(&w, &err) == BN_OK);
    bn_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", 5, &err);
    bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4, &err);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types_bad, 4, &err);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BN_GGUF_FLOAT32, scores, 3, &err);
    CHECK(bn_gguf_writer_write(w, path, &err) == BN_OK);
    bn_gguf_writer_free(w);
    bn_tokenizer *t = NULL;
    bn_status st = bn_tokenizer_load(path, &t, &err);
    CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, "bad type"), "%s", err.msg);
    /* out-of-range special id */
    uint32_t bos = 77;
    int32_t types[] = {2, 3, 3, 1};
    CHECK(bn_gguf_writer_new(&w, &err) == BN_OK);
    bn_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", 5, &err);
    bn_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4, &err);
    bn_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types, 4, &err);
    bn_gguf_writer_set(w, "tokenizer.ggml.bos_token_id", BN_GGUF_UINT32, &bos, &err);
    CHECK(bn_gguf_writer_write(w, path, &err) == BN_OK);
    bn_gguf_writer_free(w);
    st = bn_tokenizer_load(path, &t, &err);
    CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, "out of range"), "%s", err.msg);
    /* unsupported model */
    CHECK(bn_gguf_writer_new(&w, &err) == BN_OK);
    bn_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert", 4, &err);
    CHECK(bn_gguf_writer_write(w, path, &err) == BN_OK);
    bn_gguf_writer_free(w);
    st = bn_tokenizer_load(path, &t, &err);
    CHECKF(st == BN_ERR_UNSUPPORTED, "%s", err.msg);
    unlink(path);
}

/* Mutated GGUF vocabularies: the reader may accept them; the tokenizer
 * loader must then fail cleanly or give a working tokenizer. */
static void mutated_gguf(const char *path) {
    size_t n;
    unsigned char *real = bn_test_read_file(path, &n);
    CHECK(real != NULL);
    if (!real) return;
    unsigned char *c = malloc(n);
    uint64_t rng = 11;
    int ok = 1, loaded = 0;
    /* aim at the vocabulary: from the tokens key on */
    size_t from = 0;
    for (size_t i = 0; i + 21 < n; i++) {
        if (memcmp(real + i, "tokenizer.ggml.tokens", 21) == 0) {
            from = i;
            break;
        }
    }
    for (int i = 0; i < 300; i++) {
        memcpy(c, real, n);
        for (int k = 0; k < 2; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = from + (size_t)((rng >> 30) % (n - from));
            c[at] ^= (unsigned char)(1u << ((rng >> 20) & 7));
        }
        bn_gguf *g;
        bn_error err;
        if (bn_gguf_open_memory(c, n, &g, &err) != BN_OK) continue;
        bn_tokenizer *t = NULL;
        bn_status st = bn_tokenizer_from_gguf(g, &t, &err);
        if (st == BN_OK) {
            loaded++;
            size_t m;
            int32_t *ids = encode(t, "Hello wor\xc3\xa9ld 123 <|x|>", 22, NULL, &m, NULL);
            if (ids) {
                size_t dl;
                free(decode(t, ids, m, 0, &dl));
            }
            free(ids);
            bn_tokenizer_free(t);
        } else if (st != BN_ERR_FORMAT && st != BN_ERR_UNSUPPORTED && st != BN_ERR_NOT_FOUND &&
                   st != BN_ERR_INVALID_ARG) {
            ok = 0;
        }
        bn_gguf_close(g);
    }
    CHECKF(ok, "%s: unexpected status from a mutated vocabulary", path);
    printf("  mutated %s: %d of 300 still load\n", path, loaded);
    free(c);
    free(real);
}

/* ------------------------------------------------------------------------ */

int main(void) {
    bn_error err;
    bn_tokenizer *tk = NULL;
    printf("test_tokenizer\n");

    /* Llama-3 from the tiktoken file */
    double t0 = now_s();
    CHECK_OK(bn_tokenizer_load_tiktoken(TOK "llama3/tokenizer.model", &tk, &err), &err);
    printf("  tiktoken load: %.3f s\n", now_s() - t0);
    if (tk) {
        llama3_vectors(tk, "tiktoken");
        llama3_specials(tk);
        llama3_chat(tk);
        llama3_chat_template(tk);
        robustness(tk, "tiktoken");
        merge_equivalence(tk);
        streaming_invalid(tk);
        bn_tokenizer *tk2 = NULL;
        CHECK_OK(bn_tokenizer_load(TOK "llama3/tokenizer.model", &tk2, &err), &err);
        CHECK(tk2 && bn_tokenizer_n_vocab(tk2) == 128256);
        bn_tokenizer_free(tk2);
    }

    /* Llama-3 from tokenizer.json, and from a GGUF written from it */
    char *json = gunzip_to_temp(TOK "llama3/tokenizer.json.gz");
    CHECKF(json != NULL, "cannot gunzip tokenizer.json.gz");
    if (json) {
        bn_tokenizer *th = NULL;
        t0 = now_s();
        CHECK_OK(bn_tokenizer_load(json, &th, &err), &err);
        printf("  tokenizer.json load: %.3f s\n", now_s() - t0);
        if (th) {
            llama3_vectors(th, "hf-json");
            llama3_chat(th);
            robustness(th, "hf-json");
            merge_equivalence(th);
            CHECK(bn_tokenizer_pad(th) == 128255);
            bn_tokenizer_free(th);
        }
        char gg[] = "/tmp/bn_test_tok_vocab_XXXXXX";
        int fd = mkstemp(gg);
        close(fd);
        CHECK(write_gguf_from_json(json, gg) == 0);
        bn_tokenizer *tg = NULL;
        CHECK_OK(bn_tokenizer_load(gg, &tg, &err), &err);
        if (tg) {
            llama3_vectors(tg, "gguf-from-json");
            llama3_chat(tg);
            CHECK(tg->chat_template && strcmp(tg->chat_template, "{{ bos_token }}") == 0);
            bn_tokenizer_free(tg);
        }
        unlink(gg);
        unlink(json);
        free(json);
    }
    bn_tokenizer_free(tk);

    /* SentencePiece */
    bn_tokenizer *ts = NULL;
    CHECK_OK(bn_tokenizer_load_spm(TOK "llama-spm/tokenizer.model", &ts, &err), &err);
    if (ts) {
        spm_vectors(ts, "spm-model");
        robustness(ts, "spm-model");
        spm_split_equivalence(ts);
        bn_tokenizer_free(ts);
    }
    ts = NULL;
    CHECK_OK(bn_tokenizer_load(TOK "llama-spm/ggml-vocab-llama-spm.gguf", &ts, &err), &err);
    if (ts) {
        spm_vectors(ts, "spm-gguf");
        robustness(ts, "spm-gguf");
        bn_tokenizer_free(ts);
    }
    ts = NULL;
    CHECK_OK(bn_tokenizer_load(TESTDATA "gguf/llama-2-tiny-random.gguf", &ts, &err), &err);
    if (ts) {
        size_t n;
        int32_t *ids = encode(ts, "Cornell University is", 21, NULL, &n, NULL);
        static const int32_t want[] = {11655, 514, 3014, 338};
        CHECK(ids && ids_equal(ids, n, want, 4));
        free(ids);
        bn_tokenizer_free(ts);
    }

    /* GPT-2 */
    bn_tokenizer *t2 = NULL;
    CHECK_OK(bn_tokenizer_load(TOK "gpt2/ggml-vocab-gpt-2.gguf", &t2, &err), &err);
    if (t2) {
        bn_encode_opts plain = {0};
        plain.disallow_none = 1;
        int n = run_inp_out(t2, TOK "gpt2/ggml-vocab-gpt-2.gguf", &plain, 1);
        CHECKF(n == 46, "%d gpt2 vectors", n);
        printf("  gpt2-gguf: %d llama.cpp vectors\n", n);
        robustness(t2, "gpt2");
        merge_equivalence(t2);
        bn_tokenizer_free(t2);
    }

    malformed_tiktoken();
    malformed_spm();
    malformed_json();
    malformed_gguf();
    mutated_gguf(TOK "llama-spm/ggml-vocab-llama-spm.gguf");
    mutated_gguf(TOK "gpt2/ggml-vocab-gpt-2.gguf");
    return bn_test_finish("test_tokenizer");
}
