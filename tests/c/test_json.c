/* JSON parser: valid and invalid documents, escapes, numbers, nesting
 * limits, and the real manifests in the test data. */
#include <locale.h>
#include <stdint.h>
#include <time.h>

#include "json.h"
#include "test_util.h"

static bn_json *parse_ok(const char *text) {
    bn_json *j = NULL;
    bn_error err = {0};
    bn_status st = bn_json_parse(text, strlen(text), &j, &err);
    CHECKF(st == BN_OK, "'%s': %s", text, err.msg);
    return j;
}

static void expect_bad(const char *text, size_t len, const char *what) {
    bn_json *j = NULL;
    bn_error err = {0};
    bn_status st = bn_json_parse(text, len, &j, &err);
    CHECKF(st == BN_ERR_FORMAT, "expected failure for '%.*s' (%s)", (int)len, text, what);
    CHECKF(j == NULL, "no document on failure");
    CHECKF(strstr(err.msg, what) != NULL, "'%.*s': message '%s' lacks '%s'", (int)len, text,
           err.msg, what);
    CHECKF(strstr(err.msg, "offset") != NULL, "message names the offset: %s", err.msg);
    bn_json_free(j);
}

static void expect_bad_s(const char *text, const char *what) {
    expect_bad(text, strlen(text), what);
}

static void test_scalars(void) {
    bn_json *j = parse_ok("  true ");
    CHECK(bn_json_type_of(bn_json_root(j)) == BN_JSON_BOOL);
    CHECK(bn_json_bool(bn_json_root(j)));
    bn_json_free(j);
    j = parse_ok("false");
    CHECK(!bn_json_bool(bn_json_root(j)));
    CHECK(bn_json_type_of(bn_json_root(j)) == BN_JSON_BOOL);
    bn_json_free(j);
    j = parse_ok("null");
    CHECK(bn_json_type_of(bn_json_root(j)) == BN_JSON_NULL);
    CHECK(bn_json_root(j) != NULL);
    bn_json_free(j);
    j = parse_ok("\"abc\"");
    size_t n = 0;
    const char *s = bn_json_str(bn_json_root(j), &n);
    CHECK(s && n == 3 && strcmp(s, "abc") == 0);
    CHECK(bn_json_num(bn_json_root(j)) == 0.0);
    bn_json_free(j);
    /* a BOM is skipped */
    j = parse_ok("\xef\xbb\xbf[1]");
    CHECK(bn_json_len(bn_json_root(j)) == 1);
    bn_json_free(j);
}

static void check_num(const char *text, double d, int is_int, int64_t iv) {
    bn_json *j = parse_ok(text);
    const bn_json_val *v = bn_json_root(j);
    CHECKF(bn_json_type_of(v) == BN_JSON_NUMBER, "%s is a number", text);
    CHECKF(bn_json_num(v) == d, "%s -> %.17g, want %.17g", text, bn_json_num(v), d);
    int64_t got = 0;
    bool ok = bn_json_int(v, &got);
    CHECKF(ok == (is_int != 0), "%s int-ness", text);
    if (is_int) CHECKF(got == iv, "%s -> %lld", text, (long long)got);
    bn_json_free(j);
}

static void test_numbers(void) {
    check_num("0", 0, 1, 0);
    check_num("-0", 0, 1, 0);
    check_num("42", 42, 1, 42);
    check_num("-17", -17, 1, -17);
    check_num("1.5", 1.5, 0, 0);
    check_num("2.0", 2.0, 1, 2);
    check_num("1e3", 1000, 1, 1000);
    check_num("1E+2", 100, 1, 100);
    check_num("25e-1", 2.5, 0, 0);
    check_num("9.999999747378752e-06", 9.999999747378752e-06, 0, 0);
    check_num("9223372036854775807", 9223372036854775807.0, 1, INT64_MAX);
    check_num("-9223372036854775808", -9223372036854775808.0, 1, INT64_MIN);
    check_num("9223372036854775808", 9223372036854775808.0, 0, 0);
    check_num("18446744073709551616", 18446744073709551616.0, 0, 0);
    check_num("123456789012345678901234567890", 123456789012345678901234567890.0, 0, 0);
    check_num("1e-400", 0.0, 1, 0);
    /* a long number goes through the heap copy */
    char big[300];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bn_json *j = parse_ok(big);
    CHECK(bn_json_num(bn_json_root(j)) > 1e298);
    bn_json_free(j);
    /* a number at the very end of an unterminated buffer */
    char digits[3] = {'1', '2', '3'};
    bn_error err = {0};
    CHECK(bn_json_parse(digits, 2, &j, &err) == BN_OK);
    CHECK(bn_json_num(bn_json_root(j)) == 12.0);
    bn_json_free(j);

    expect_bad_s("01", "trailing");
    expect_bad_s("-", "invalid number");
    expect_bad_s("1.", "invalid number");
    expect_bad_s(".5", "unexpected character");
    expect_bad_s("1e", "invalid number");
    expect_bad_s("1e+", "invalid number");
    expect_bad_s("+1", "unexpected character");
    expect_bad_s("1e400", "out of range");
    expect_bad_s("-1e400", "out of range");
    expect_bad_s("NaN", "unexpected character");
    expect_bad_s("Infinity", "unexpected character");
    expect_bad_s("0x10", "trailing");
}

static void test_strings(void) {
    bn_json *j = parse_ok("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\"");
    size_t n = 0;
    const char *s = bn_json_str(bn_json_root(j), &n);
    CHECK(n == 13 && memcmp(s, "a\"b\\c/d\b\f\n\r\te", 13) == 0);
    bn_json_free(j);
    /* \u escapes: ASCII, 2-byte, 3-byte, surrogate pair, NUL */
    j = parse_ok("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\u0000x\"");
    s = bn_json_str(bn_json_root(j), &n);
    const char want[] = "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0x";
    CHECKF(n == sizeof want - 1 && memcmp(s, want, n) == 0, "n=%zu", n);
    CHECK(s[n] == '\0');
    bn_json_free(j);
    /* raw UTF-8 passes through */
    j = parse_ok("\"\xe5\xbc\x98 \xc4\xa0t \xf0\x9f\x98\x80\"");
    s = bn_json_str(bn_json_root(j), &n);
    CHECK(n == 12 && memcmp(s, "\xe5\xbc\x98 \xc4\xa0t \xf0\x9f\x98\x80", 12) == 0);
    bn_json_free(j);
    j = parse_ok("\"\"");
    s = bn_json_str(bn_json_root(j), &n);
    CHECK(s && n == 0 && s[0] == '\0');
    bn_json_free(j);

    expect_bad_s("\"abc", "unterminated string");
    expect_bad_s("\"abc\\", "unterminated string");
    expect_bad_s("\"a\nb\"", "control character");
    expect_bad_s("\"a\tb\"", "control character");
    expect_bad_s("\"\\x\"", "bad escape");
    expect_bad_s("\"\\u12\"", "bad \\u escape");
    expect_bad_s("\"\\u12g4\"", "bad \\u escape");
    expect_bad_s("\"\\ud83d\"", "unpaired high surrogate");
    expect_bad_s("\"\\ud83d\\u0041\"", "unpaired high surrogate");
    expect_bad_s("\"\\ude00\"", "lone low surrogate");
    expect_bad_s("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong */
    expect_bad_s("\"\xe0\x80\xaf\"", "invalid UTF-8");     /* overlong */
    expect_bad_s("\"\xed\xa0\x80\"", "invalid UTF-8");     /* encoded surrogate */
    expect_bad_s("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* > U+10FFFF */
    expect_bad_s("\"\xff\"", "invalid UTF-8");
    expect_bad_s("\"\xe5\xbc\"", "invalid UTF-8"); /* truncated */
    expect_bad_s("\"\x80\"", "invalid UTF-8");
    expect_bad("\"a\0b\"", 5, "control character");
    expect_bad_s("'a'", "unexpected character");
}

static void test_containers(void) {
    bn_json *j = parse_ok("{\"a\": [1, 2, {\"x\": null}], \"b\": {}, \"c\": [], \"d\": \"s\"}");
    const bn_json_val *r = bn_json_root(j);
    CHECK(bn_json_type_of(r) == BN_JSON_OBJECT);
    CHECK(bn_json_len(r) == 4);
    CHECK(bn_json_count(j) == 9);
    const bn_json_val *a = bn_json_get(r, "a");
    CHECK(bn_json_type_of(a) == BN_JSON_ARRAY && bn_json_len(a) == 3);
    size_t kl = 0;
    CHECK(strcmp(bn_json_key(a, &kl), "a") == 0 && kl == 1);
    CHECK(bn_json_num(bn_json_at(a, 1)) == 2.0);
    CHECK(bn_json_key(bn_json_at(a, 1), NULL) == NULL);
    CHECK(bn_json_type_of(bn_json_get(bn_json_at(a, 2), "x")) == BN_JSON_NULL);
    CHECK(bn_json_get(bn_json_at(a, 2), "x") != NULL);
    CHECK(bn_json_at(a, 3) == NULL);
    CHECK(bn_json_len(bn_json_get(r, "b")) == 0);
    CHECK(bn_json_first(bn_json_get(r, "b")) == NULL);
    CHECK(bn_json_type_of(bn_json_get(r, "c")) == BN_JSON_ARRAY);
    CHECK(strcmp(bn_json_str(bn_json_get(r, "d"), NULL), "s") == 0);
    CHECK(bn_json_get(r, "zz") == NULL);
    CHECK(bn_json_get(a, "a") == NULL); /* not an object */
    CHECK(bn_json_get(NULL, "a") == NULL);
    /* iteration visits members in order, skipping nested values */
    const char *keys[] = {"a", "b", "c", "d"};
    int k = 0;
    for (const bn_json_val *v = bn_json_first(r); v; v = bn_json_next(v), k++) {
        CHECK(k < 4 && strcmp(bn_json_key(v, NULL), keys[k]) == 0);
    }
    CHECK(k == 4);
    CHECK(bn_json_next(r) == NULL);
    bn_json_free(j);

    /* keys with escapes and embedded NUL */
    j = parse_ok("{\"a\\u0000b\": 1, \"\\u00e9\": 2}");
    r = bn_json_root(j);
    CHECK(bn_json_num(bn_json_getn(r, "a\0b", 3)) == 1.0);
    CHECK(bn_json_get(r, "a") == NULL);
    CHECK(bn_json_num(bn_json_get(r, "\xc3\xa9")) == 2.0);
    bn_json_free(j);

    expect_bad_s("", "expected a value");
    expect_bad_s("   ", "expected a value");
    expect_bad_s("[1,]", "unexpected character");
    expect_bad_s("[1 2]", "expected ',' or ']'");
    expect_bad_s("[1", "unclosed array");
    expect_bad_s("{\"a\":1,}", "expected string key");
    expect_bad_s("{\"a\" 1}", "expected ':'");
    expect_bad_s("{\"a\":}", "unexpected character");
    expect_bad_s("{a:1}", "expected string key");
    expect_bad_s("{\"a\":1", "unclosed object");
    expect_bad_s("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    expect_bad_s("[1] [2]", "trailing");
    expect_bad_s("tru", "invalid literal");
    expect_bad_s("nul", "invalid literal");
    expect_bad_s("[true false]", "expected ',' or ']'");
    expect_bad_s("/* c */ 1", "unexpected character");
    expect_bad_s("{\"a\":1,\"a\":2}", "duplicate key");
    expect_bad_s("{\"a\":{\"b\":1,\"b\":1}}", "duplicate key");
    expect_bad_s("{\"\\u0061\":1,\"a\":2}", "duplicate key");
    /* duplicates in a large object go through the hash table */
    char big[4096];
    size_t o = 0;
    o += (size_t)snprintf(big + o, sizeof big - o, "{");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "\"k%d\":%d,", i, i);
    memcpy(big + o, "\"k57\":0}", 9);
    expect_bad_s(big, "duplicate key");
    big[o + 2] = 'x'; /* "kx7" is new */
    j = parse_ok(big);
    CHECK(bn_json_len(bn_json_root(j)) == 101);
    CHECK(bn_json_num(bn_json_get(bn_json_root(j), "k99")) == 99.0);
    bn_json_free(j);
    /* same key in different objects is fine */
    j = parse_ok("[{\"a\":1},{\"a\":2}]");
    CHECK(bn_json_num(bn_json_get(bn_json_at(bn_json_root(j), 1), "a")) == 2.0);
    bn_json_free(j);
}

static void test_depth(void) {
    char buf[2 * (BN_JSON_MAX_DEPTH + 2) + 1];
    for (int d = BN_JSON_MAX_DEPTH; d <= BN_JSON_MAX_DEPTH + 1; d++) {
        size_t n = 0;
        for (int i = 0; i < d; i++)
            buf[n++] = '[';
        for (int i = 0; i < d; i++)
            buf[n++] = ']';
        bn_json *j = NULL;
        bn_error err = {0};
        bn_status st = bn_json_parse(buf, n, &j, &err);
        if (d <= BN_JSON_MAX_DEPTH) {
            CHECKF(st == BN_OK, "depth %d: %s", d, err.msg);
        } else {
            CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, "too deep"), "depth %d: %s", d, err.msg);
        }
        bn_json_free(j);
    }
    /* objects count too */
    char obj[8 * (BN_JSON_MAX_DEPTH + 1) + 1];
    size_t n = 0;
    for (int i = 0; i <= BN_JSON_MAX_DEPTH; i++)
        n += (size_t)snprintf(obj + n, sizeof obj - n, "{\"a\":");
    expect_bad(obj, n, "too deep");
    /* a very deep document fails quickly without recursion trouble */
    size_t big = 1000000;
    char *deep = malloc(big);
    CHECK(deep != NULL);
    if (deep) {
        memset(deep, '[', big);
        expect_bad(deep, big, "too deep");
        free(deep);
    }
}

/* Every prefix of a valid document is either valid (a complete value) or an
 * error, never a crash or an over-read (run under ASan). */
static void test_prefixes(void) {
    const char *doc = "{\"k\": [1, -2.5e3, true, false, null, \"\\u00e9\\ud83d\\ude00x\", {}], "
                      "\"z\": {\"y\": []}}";
    size_t n = strlen(doc);
    int ok = 0;
    for (size_t l = 0; l <= n; l++) {
        char *copy = malloc(l ? l : 1);
        if (!copy) continue;
        memcpy(copy, doc, l);
        bn_json *j = NULL;
        bn_error err = {0};
        bn_status st = bn_json_parse(copy, l, &j, &err);
        if (st == BN_OK)
            ok++;
        else
            CHECK(st == BN_ERR_FORMAT && j == NULL);
        bn_json_free(j);
        free(copy);
    }
    CHECKF(ok == 1, "only the full document parses (%d did)", ok);
}

static void test_manifest(void) {
    size_t size = 0;
    unsigned char *buf = bn_test_read_file(TESTDATA "gguf/gguf_manifest.json", &size);
    CHECK(buf != NULL);
    if (!buf) return;
    bn_json *j = NULL;
    bn_error err = {0};
    CHECK_OK(bn_json_parse((const char *)buf, size, &j, &err), &err);
    free(buf); /* the document does not borrow the text */
    const bn_json_val *r = bn_json_root(j);
    CHECK(bn_json_type_of(r) == BN_JSON_ARRAY && bn_json_len(r) == 3);
    const bn_json_val *f0 = bn_json_at(r, 0);
    CHECK(strcmp(bn_json_str(bn_json_get(f0, "file"), NULL), "llama-2-tiny-random.gguf") == 0);
    int64_t v = 0;
    CHECK(bn_json_int(bn_json_get(f0, "size"), &v) && v == 1750560);
    CHECK(bn_json_int(bn_json_get(f0, "n_kv"), &v) && v == 18);
    const bn_json_val *kv = bn_json_get(f0, "kv");
    CHECK(bn_json_len(kv) == 18);
    const bn_json_val *toks = bn_json_get(bn_json_at(kv, 12), "value");
    CHECK(strcmp(bn_json_str(bn_json_at(bn_json_get(toks, "last"), 0), NULL), "\xe5\xbc\x98") == 0);
    CHECK(bn_json_num(bn_json_get(bn_json_at(kv, 9), "value")) == 9.999999747378752e-06);
    bn_json_free(j);

    buf = bn_test_read_file(TESTDATA "gguf/llama-2-tiny-random.reference.json", &size);
    CHECK(buf != NULL);
    if (!buf) return;
    CHECK_OK(bn_json_parse((const char *)buf, size, &j, &err), &err);
    const bn_json_val *runs = bn_json_get(bn_json_root(j), "runs");
    CHECK(bn_json_len(runs) >= 1);
    const bn_json_val *ids = bn_json_get(bn_json_at(runs, 0), "prompt_ids");
    CHECK(bn_json_int(bn_json_at(ids, 1), &v) && v == 15043);
    bn_json_free(j);
    free(buf);
}

/* Parse speed on a synthetic tokenizer.json-sized document (~9 MB). */
static void test_speed(void) {
    size_t cap = 12u << 20, n = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    if (!buf) return;
    n += (size_t)snprintf(buf + n, cap - n, "{\"vocab\": {");
    for (int i = 0; i < 128000; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"\\u0120tok%d\": %d", i ? ", " : "", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "}, \"merges\": [");
    for (int i = 0; i < 280000 && cap - n > 64; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"\xc4\xa0t%d he%d\"", i ? ", " : "", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "]}");
    bn_json *j = NULL;
    bn_error err = {0};
    clock_t t0 = clock();
    CHECK_OK(bn_json_parse(buf, n, &j, &err), &err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("parsed %.1f MB, %zu values in %.3f s\n", (double)n / 1e6, bn_json_count(j), secs);
    const bn_json_val *vocab = bn_json_get(bn_json_root(j), "vocab");
    CHECK(bn_json_len(vocab) == 128000);
    CHECK(bn_json_len(bn_json_get(bn_json_root(j), "merges")) == 280000);
    int64_t id = -1;
    CHECK(bn_json_int(bn_json_get(vocab, "\xc4\xa0tok127999"), &id) && id == 127999);
    bn_json_free(j);
    free(buf);
}

/* Numbers do not depend on the C locale's decimal point. */
static void test_locale(void) {
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (!setlocale(LC_NUMERIC, names[k])) continue;
        check_num("1.5", 1.5, 0, 0);
        check_num("-2.25e2", -225.0, 1, -225);
        setlocale(LC_NUMERIC, "C");
        printf("locale %s: ok\n", names[k]);
        return;
    }
    printf("no comma-decimal locale installed; locale check skipped\n");
}

int main(void) {
    test_scalars();
    test_numbers();
    test_strings();
    test_containers();
    test_depth();
    test_prefixes();
    test_manifest();
    test_speed();
    test_locale();
    return bn_test_finish("test_json");
}
