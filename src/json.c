/* Strict JSON parser: one linear pass builds a flat, pre-order array of
 * values. A container is followed by its children; `span` (the size of a
 * value's subtree) jumps to the next sibling. All strings are decoded into
 * one arena allocated up front: a decoded string plus its NUL is never
 * longer than its quoted source text, so an arena of len + 1 bytes holds them
 * all and never moves. Recursion is bounded by BN_JSON_MAX_DEPTH. */
#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum { F_LAST = 1, F_INT = 2, F_TRUE = 4, F_KEY = 8 };

struct bn_json_val {
    uint8_t type;
    uint8_t flags;
    size_t span; /* values in this subtree, itself included */
    size_t n;    /* children of a container, bytes of a string */
    size_t off;  /* byte offset in the source */
    const char *s;
    const char *key;
    size_t key_len;
    double d;
    int64_t i;
};

struct bn_json {
    bn_json_val *vals;
    size_t n_vals;
    char *arena;
};

typedef struct parser {
    const unsigned char *p;
    size_t len, pos;
    bn_json_val *vals;
    size_t n_vals, cap;
    char *arena;
    size_t arena_used;
    bn_error *err;
} parser;

static bn_status fail_at(parser *ps, size_t off, const char *what) {
    return bn_fail(ps->err, BN_ERR_FORMAT, "JSON: %s at offset %zu", what, off);
}

static void skip_ws(parser *ps) {
    while (ps->pos < ps->len) {
        unsigned char c = ps->p[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

/* Appends a value and returns its index, or SIZE_MAX when out of memory. */
static size_t new_val(parser *ps, uint8_t type) {
    if (ps->n_vals == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64, bytes;
        if (!bn_mul_size(cap, sizeof *ps->vals, &bytes)) return SIZE_MAX;
        bn_json_val *v = realloc(ps->vals, bytes);
        if (!v) return SIZE_MAX;
        ps->vals = v;
        ps->cap = cap;
    }
    bn_json_val *v = &ps->vals[ps->n_vals];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->span = 1;
    v->off = ps->pos;
    return ps->n_vals++;
}

static int hex4(const unsigned char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence starting at s[0] (>= 0x80), 0 if
 * invalid (overlong forms, surrogates and code points above U+10FFFF are). */
static size_t utf8_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t n;
    uint32_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
    }
    return n;
}

/* ps->pos is at the opening quote. */
static bn_status parse_string(parser *ps, const char **out, size_t *out_len) {
    size_t start = ps->pos++;
    char *o = ps->arena + ps->arena_used, *o0 = o;
    for (;;) {
        if (ps->pos >= ps->len) return fail_at(ps, start, "unterminated string");
        unsigned char c = ps->p[ps->pos];
        if (c == '"') {
            ps->pos++;
            break;
        }
        if (c < 0x20) return fail_at(ps, ps->pos, "control character in string");
        if (c < 0x80 && c != '\\') {
            *o++ = (char)c;
            ps->pos++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(ps->p + ps->pos, ps->len - ps->pos);
            if (n == 0) return fail_at(ps, ps->pos, "invalid UTF-8 in string");
            memcpy(o, ps->p + ps->pos, n);
            o += n;
            ps->pos += n;
            continue;
        }
        size_t esc = ps->pos;
        if (ps->len - ps->pos < 2) return fail_at(ps, start, "unterminated string");
        unsigned char e = ps->p[ps->pos + 1];
        ps->pos += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (ps->len - ps->pos < 4 || !hex4(ps->p + ps->pos, &cp))
                return fail_at(ps, esc, "bad \\u escape");
            ps->pos += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) return fail_at(ps, esc, "lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (ps->len - ps->pos < 6 || ps->p[ps->pos] != '\\' || ps->p[ps->pos + 1] != 'u' ||
                    !hex4(ps->p + ps->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return fail_at(ps, esc, "unpaired high surrogate");
                ps->pos += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            o += put_utf8(o, cp);
            break;
        }
        default: return fail_at(ps, esc, "bad escape");
        }
    }
    *o = '\0';
    *out = o0;
    *out_len = (size_t)(o - o0);
    ps->arena_used += *out_len + 1;
    return BN_OK;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bn_status parse_number(parser *ps, bn_json_val *v) {
    size_t start = ps->pos, len = ps->len;
    const unsigned char *p = ps->p;
    size_t i = start;
    int neg = 0, integral = 1;
    if (i < len && p[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= len || !is_digit(p[i])) return fail_at(ps, start, "invalid number");
    size_t int_start = i;
    if (p[i] == '0') {
        i++;
    } else {
        while (i < len && is_digit(p[i]))
            i++;
    }
    size_t int_end = i;
    if (i < len && p[i] == '.') {
        integral = 0;
        i++;
        if (i >= len || !is_digit(p[i])) return fail_at(ps, start, "invalid number");
        while (i < len && is_digit(p[i]))
            i++;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        integral = 0;
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= len || !is_digit(p[i])) return fail_at(ps, start, "invalid number");
        while (i < len && is_digit(p[i]))
            i++;
    }
    ps->pos = i;

    if (integral) {
        uint64_t mag = 0;
        int fits = 1;
        for (size_t k = int_start; k < int_end && fits; k++) {
            uint64_t d = (uint64_t)(p[k] - '0');
            if (mag > (UINT64_MAX - d) / 10)
                fits = 0;
            else
                mag = mag * 10 + d;
        }
        if (fits && neg && mag <= (uint64_t)INT64_MAX + 1) {
            v->i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
            v->flags |= F_INT;
        } else if (fits && !neg && mag <= (uint64_t)INT64_MAX) {
            v->i = (int64_t)mag;
            v->flags |= F_INT;
        }
    }
    if (v->flags & F_INT) {
        v->d = (double)v->i;
        return BN_OK;
    }
    /* strtod needs a NUL-terminated copy (the source may end right here),
     * and it reads the decimal point of the current locale, so '.' becomes
     * that. */
    const char *dp = localeconv()->decimal_point;
    size_t dp_len = dp && dp[0] ? strlen(dp) : 1;
    if (!dp || !dp[0]) dp = ".";
    char small[96], *buf = small;
    size_t n = i - start, need;
    if (!bn_add_size(n, dp_len + 1, &need))
        return bn_fail(ps->err, BN_ERR_NOMEM, "JSON: out of memory");
    if (need > sizeof small) {
        buf = malloc(need);
        if (!buf) return bn_fail(ps->err, BN_ERR_NOMEM, "JSON: out of memory");
    }
    size_t o = 0;
    for (size_t k = start; k < i; k++) {
        if (p[k] == '.') {
            memcpy(buf + o, dp, dp_len);
            o += dp_len;
        } else {
            buf[o++] = (char)p[k];
        }
    }
    buf[o] = '\0';
    v->d = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(v->d)) return fail_at(ps, start, "number out of range");
    return BN_OK;
}

static int match_lit(parser *ps, const char *lit, size_t n) {
    if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, lit, n) != 0) return 0;
    ps->pos += n;
    return 1;
}

static bn_status parse_value(parser *ps, int depth, const char *key, size_t key_len);

static bn_status parse_container(parser *ps, size_t idx, int depth, int is_obj) {
    size_t open = ps->pos++;
    size_t count = 0, last = SIZE_MAX;
    char close = is_obj ? '}' : ']';
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == (unsigned char)close) {
        ps->pos++;
        return BN_OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(ps);
        if (is_obj) {
            if (ps->pos >= ps->len || ps->p[ps->pos] != '"')
                return fail_at(ps, ps->pos, "expected string key");
            bn_status st = parse_string(ps, &key, &key_len);
            if (st) return st;
            skip_ws(ps);
            if (ps->pos >= ps->len || ps->p[ps->pos] != ':')
                return fail_at(ps, ps->pos, "expected ':'");
            ps->pos++;
            skip_ws(ps);
        }
        last = ps->n_vals;
        bn_status st = parse_value(ps, depth + 1, key, key_len);
        if (st) return st;
        count++;
        skip_ws(ps);
        if (ps->pos >= ps->len)
            return fail_at(ps, open, is_obj ? "unclosed object" : "unclosed array");
        unsigned char c = ps->p[ps->pos];
        if (c == ',') {
            ps->pos++;
            continue;
        }
        if (c == (unsigned char)close) {
            ps->pos++;
            break;
        }
        return fail_at(ps, ps->pos, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->vals[last].flags |= F_LAST;
    ps->vals[idx].n = count;
    return BN_OK;
}

static bn_status parse_value(parser *ps, int depth, const char *key, size_t key_len) {
    if (ps->pos >= ps->len) return fail_at(ps, ps->pos, "expected a value");
    unsigned char c = ps->p[ps->pos];
    uint8_t type;
    switch (c) {
    case '{': type = BN_JSON_OBJECT; break;
    case '[': type = BN_JSON_ARRAY; break;
    case '"': type = BN_JSON_STRING; break;
    case 't':
    case 'f': type = BN_JSON_BOOL; break;
    case 'n': type = BN_JSON_NULL; break;
    default:
        if (c == '-' || is_digit(c)) {
            type = BN_JSON_NUMBER;
            break;
        }
        return fail_at(ps, ps->pos, "unexpected character");
    }
    size_t idx = new_val(ps, type);
    if (idx == SIZE_MAX) return bn_fail(ps->err, BN_ERR_NOMEM, "JSON: out of memory");
    if (key) {
        ps->vals[idx].key = key;
        ps->vals[idx].key_len = key_len;
        ps->vals[idx].flags |= F_KEY;
    }
    bn_status st = BN_OK;
    switch (type) {
    case BN_JSON_OBJECT:
    case BN_JSON_ARRAY:
        if (depth >= BN_JSON_MAX_DEPTH) return fail_at(ps, ps->pos, "nesting too deep");
        st = parse_container(ps, idx, depth, type == BN_JSON_OBJECT);
        ps->vals[idx].span = ps->n_vals - idx;
        return st;
    case BN_JSON_STRING: {
        const char *s;
        size_t n;
        st = parse_string(ps, &s, &n);
        ps->vals[idx].s = s;
        ps->vals[idx].n = n;
        return st;
    }
    case BN_JSON_NUMBER: return parse_number(ps, &ps->vals[idx]);
    case BN_JSON_BOOL:
        if (match_lit(ps, "true", 4)) {
            ps->vals[idx].flags |= F_TRUE;
            return BN_OK;
        }
        if (match_lit(ps, "false", 5)) return BN_OK;
        return fail_at(ps, ps->pos, "invalid literal");
    default:
        if (match_lit(ps, "null", 4)) return BN_OK;
        return fail_at(ps, ps->pos, "invalid literal");
    }
}

static uint64_t hash_key(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)s[k]) * 1099511628211ull;
    return h;
}

/* Duplicate keys: small objects pairwise, large ones through a hash table
 * sized for the object (so the whole check is linear in the document). */
static bn_status check_duplicates(parser *ps) {
    size_t *table = NULL, table_cap = 0;
    bn_status st = BN_OK;
    for (size_t o = 0; o < ps->n_vals && st == BN_OK; o++) {
        const bn_json_val *obj = &ps->vals[o];
        if (obj->type != BN_JSON_OBJECT || obj->n < 2) continue;
        if (obj->n <= 8) {
            for (size_t a = o + 1; a < o + obj->span; a += ps->vals[a].span) {
                for (size_t b = a + ps->vals[a].span; b < o + obj->span; b += ps->vals[b].span) {
                    const bn_json_val *x = &ps->vals[a], *y = &ps->vals[b];
                    if (x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0) {
                        st = fail_at(ps, y->off, "duplicate key");
                        goto done;
                    }
                }
            }
            continue;
        }
        size_t cap = 16;
        while (cap < obj->n * 2)
            cap *= 2;
        if (cap > table_cap) {
            size_t bytes;
            size_t *t = NULL;
            if (bn_mul_size(cap, sizeof *table, &bytes)) t = realloc(table, bytes);
            if (!t) {
                st = bn_fail(ps->err, BN_ERR_NOMEM, "JSON: out of memory");
                goto done;
            }
            table = t;
            table_cap = cap;
        }
        memset(table, 0, cap * sizeof *table);
        for (size_t a = o + 1; a < o + obj->span; a += ps->vals[a].span) {
            const bn_json_val *x = &ps->vals[a];
            size_t h = (size_t)hash_key(x->key, x->key_len) & (cap - 1);
            while (table[h]) {
                const bn_json_val *y = &ps->vals[table[h] - 1];
                if (x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0) {
                    st = fail_at(ps, x->off, "duplicate key");
                    goto done;
                }
                h = (h + 1) & (cap - 1);
            }
            table[h] = a + 1;
        }
    }
done:
    free(table);
    return st;
}

bn_status bn_json_parse(const char *text, size_t len, bn_json **out, bn_error *err) {
    if (!out || (!text && len)) return bn_fail(err, BN_ERR_INVALID_ARG, "JSON: NULL argument");
    *out = NULL;
    if (len == SIZE_MAX) return bn_fail(err, BN_ERR_INVALID_ARG, "JSON: input too large");
    parser ps = {0};
    ps.p = (const unsigned char *)text;
    ps.len = len;
    ps.err = err;
    ps.arena = malloc(len + 1);
    if (!ps.arena) return bn_fail(err, BN_ERR_NOMEM, "JSON: out of memory for %zu bytes", len);
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) ps.pos = 3;
    skip_ws(&ps);
    bn_status st = parse_value(&ps, 0, NULL, 0);
    if (st == BN_OK) {
        ps.vals[0].flags |= F_LAST;
        skip_ws(&ps);
        if (ps.pos != ps.len) st = fail_at(&ps, ps.pos, "trailing characters after the value");
    }
    if (st == BN_OK) st = check_duplicates(&ps);
    bn_json *j = NULL;
    if (st == BN_OK) {
        j = malloc(sizeof *j);
        if (!j) st = bn_fail(err, BN_ERR_NOMEM, "JSON: out of memory");
    }
    if (st != BN_OK) {
        free(ps.vals);
        free(ps.arena);
        return st;
    }
    j->vals = ps.vals;
    j->n_vals = ps.n_vals;
    j->arena = ps.arena;
    *out = j;
    return bn_ok(err);
}

void bn_json_free(bn_json *j) {
    if (!j) return;
    free(j->vals);
    free(j->arena);
    free(j);
}

const bn_json_val *bn_json_root(const bn_json *j) { return j && j->n_vals ? &j->vals[0] : NULL; }

size_t bn_json_count(const bn_json *j) { return j ? j->n_vals : 0; }

bn_json_type bn_json_type_of(const bn_json_val *v) {
    return v ? (bn_json_type)v->type : BN_JSON_NULL;
}

size_t bn_json_offset(const bn_json_val *v) { return v ? v->off : 0; }

static int is_container(const bn_json_val *v) {
    return v && (v->type == BN_JSON_ARRAY || v->type == BN_JSON_OBJECT);
}

size_t bn_json_len(const bn_json_val *v) { return is_container(v) ? v->n : 0; }

const bn_json_val *bn_json_first(const bn_json_val *v) {
    return is_container(v) && v->n > 0 ? v + 1 : NULL;
}

const bn_json_val *bn_json_next(const bn_json_val *v) {
    return v && !(v->flags & F_LAST) ? v + v->span : NULL;
}

const bn_json_val *bn_json_at(const bn_json_val *v, size_t i) {
    if (!is_container(v) || i >= v->n) return NULL;
    const bn_json_val *c = v + 1;
    while (i--)
        c += c->span;
    return c;
}

const bn_json_val *bn_json_getn(const bn_json_val *obj, const char *key, size_t key_len) {
    if (!obj || obj->type != BN_JSON_OBJECT || !key) return NULL;
    for (const bn_json_val *c = bn_json_first(obj); c; c = bn_json_next(c)) {
        if (c->key_len == key_len && memcmp(c->key, key, key_len) == 0) return c;
    }
    return NULL;
}

const bn_json_val *bn_json_get(const bn_json_val *obj, const char *key) {
    return key ? bn_json_getn(obj, key, strlen(key)) : NULL;
}

const char *bn_json_key(const bn_json_val *v, size_t *len) {
    if (!v || !(v->flags & F_KEY)) return NULL;
    if (len) *len = v->key_len;
    return v->key;
}

const char *bn_json_str(const bn_json_val *v, size_t *len) {
    if (!v || v->type != BN_JSON_STRING) return NULL;
    if (len) *len = v->n;
    return v->s;
}

bool bn_json_bool(const bn_json_val *v) {
    return v && v->type == BN_JSON_BOOL && (v->flags & F_TRUE);
}

double bn_json_num(const bn_json_val *v) { return v && v->type == BN_JSON_NUMBER ? v->d : 0.0; }

bool bn_json_int(const bn_json_val *v, int64_t *out) {
    if (!v || v->type != BN_JSON_NUMBER) return false;
    if (v->flags & F_INT) {
        if (out) *out = v->i;
        return true;
    }
    /* -2^63 <= d < 2^63 and integral */
    if (!(v->d >= -9223372036854775808.0 && v->d < 9223372036854775808.0)) return false;
    if (floor(v->d) != v->d) return false;
    if (out) *out = (int64_t)v->d;
    return true;
}
