/* SafeTensors reader: valid files, every prefix truncation, inconsistent
 * headers, sharded directories with an index, random mutations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test_util.h"

/* Build a safetensors buffer from a header JSON and `data_len` bytes of
 * data (0, 1, 2, ...). */
static unsigned char *make_st(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    unsigned char *b = malloc(*size);
    if (!b) return NULL;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)i;
    return b;
}

static bn_status parse(const char *header, size_t data_len, bn_tensor_set *ts, bn_error *err) {
    size_t n;
    unsigned char *b = make_st(header, data_len, &n);
    bn_tset_init(ts);
    bn_status st = bn_safetensors_parse(b, n, ts, err);
    bn_tset_free(ts);
    free(b);
    return st;
}

static const char *VALID =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"c\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[32,36]},"
    "\"d\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[36,37]},"
    "\"e\":{\"dtype\":\"F16\",\"shape\":[1,1,1,2],\"data_offsets\":[38,42]}}";

static void test_valid(void) {
    size_t n;
    unsigned char *b = make_st(VALID, 42, &n);
    bn_tensor_set ts;
    bn_tset_init(&ts);
    bn_error err;
    CHECK_OK(bn_safetensors_parse(b, n, &ts, &err), &err);
    CHECK(ts.n == 5);
    const bn_ckpt_tensor *a = bn_tset_find(&ts, "a");
    CHECK(a && a->dtype == BN_DT_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3);
    CHECK(a && a->nbytes == 24 && a->data == b + 8 + strlen(VALID));
    const bn_ckpt_tensor *c = bn_tset_find(&ts, "c");
    CHECK(c && c->dtype == BN_DT_U8 && bn_ckpt_numel(c) == 4 && bn_ckpt_get(c, 1) == 33.0f);
    const bn_ckpt_tensor *d = bn_tset_find(&ts, "d");
    CHECK(d && d->n_dims == 0 && bn_ckpt_numel(d) == 1 && bn_ckpt_get(d, 0) == 36.0f);
    const bn_ckpt_tensor *e = bn_tset_find(&ts, "e");
    CHECK(e && e->n_dims == 4 && e->dtype == BN_DT_F16);
    CHECK(!bn_tset_find(&ts, "__metadata__"));
    bn_tset_free(&ts);

    /* Every truncation is rejected (never crashes). */
    int all_rejected = 1;
    for (size_t cut = 0; cut < n; cut++) {
        bn_tset_init(&ts);
        if (bn_safetensors_parse(b, cut, &ts, &err) == BN_OK) all_rejected = 0;
        bn_tset_free(&ts);
    }
    CHECK(all_rejected);
    free(b);
}

static void test_bad_headers(void) {
    bn_tensor_set ts;
    bn_error err;
    struct {
        const char *h;
        size_t data;
        bn_status want;
        const char *msg;
    } cases[] = {
        {"[1]", 0, BN_ERR_FORMAT, "not a JSON object"},
        {"{\"a\":", 0, BN_ERR_FORMAT, "JSON"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, BN_ERR_UNSUPPORTED,
         "F64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, BN_ERR_FORMAT,
         "bytes for"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, BN_ERR_FORMAT,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, BN_ERR_FORMAT,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, BN_ERR_FORMAT,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, BN_ERR_FORMAT,
         "shape"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,"
         "8]}}",
         8, BN_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         BN_ERR_UNSUPPORTED, "dims"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
         8, BN_ERR_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
         8, BN_ERR_FORMAT, "uplicate"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4]}}", 8, BN_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 8, BN_ERR_FORMAT,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8, BN_ERR_FORMAT,
         "shape"},
        {"{\"__metadata__\":[1]}", 0, BN_ERR_FORMAT, "__metadata__"},
        {"{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, BN_ERR_FORMAT,
         "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bn_status st = parse(cases[i].h, cases[i].data, &ts, &err);
        CHECKF(st == cases[i].want && strstr(err.msg, cases[i].msg), "case %zu: %s: %s", i,
               bn_status_str(st), st ? err.msg : "ok");
    }
    /* Header length larger than the file, and absurd. */
    unsigned char b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    bn_tset_init(&ts);
    CHECK(bn_safetensors_parse(b, sizeof b, &ts, &err) == BN_ERR_FORMAT);
    CHECK(strstr(err.msg, "header length") != NULL);
    bn_tset_free(&ts);
    /* A valid empty file. */
    CHECK(parse("{}", 0, &ts, &err) == BN_OK);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void test_sharded(void) {
    char dir[] = "/tmp/bn_st_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char p[256];
    size_t n;
    unsigned char *a =
        make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &n);
    snprintf(p, sizeof p, "%s/m-1.safetensors", dir);
    write_file(p, a, n);
    free(a);
    a = make_st("{\"y\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, &n);
    snprintf(p, sizeof p, "%s/m-2.safetensors", dir);
    write_file(p, a, n);
    free(a);
    const char *idx =
        "{\"metadata\":{},\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-2.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, idx, strlen(idx));
    bn_tensor_set ts;
    bn_error err;
    bn_tset_init(&ts);
    CHECK_OK(bn_safetensors_open(dir, &ts, &err), &err);
    CHECK(ts.n == 2 && bn_tset_find(&ts, "x") && bn_tset_find(&ts, "y"));
    bn_tset_free(&ts);
    /* Bad indexes: each refused with the status (and message part, if any). */
    const struct {
        const char *idx;
        bn_status want;
        const char *msg;
    } bad[] = {
        /* Index naming a tensor its shard does not hold. */
        {"{\"weight_map\":{\"x\":\"m-1.safetensors\",\"z\":\"m-1.safetensors\",\"y\":\"m-2."
         "safetensors\"}}",
         BN_ERR_FORMAT, "'z'"},
        /* A shard outside the directory. */
        {"{\"weight_map\":{\"x\":\"../m-1.safetensors\"}}", BN_ERR_FORMAT, NULL},
        /* A tensor in a shard that the index maps elsewhere. */
        {"{\"weight_map\":{\"x\":\"m-2.safetensors\",\"y\":\"m-2.safetensors\"}}", BN_ERR_FORMAT,
         NULL},
        /* Missing shard file. */
        {"{\"weight_map\":{\"x\":\"m-3.safetensors\"}}", BN_ERR_IO, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(p, bad[i].idx, strlen(bad[i].idx));
        bn_tset_init(&ts);
        bn_status st = bn_safetensors_open(dir, &ts, &err);
        CHECKF(st == bad[i].want && (!bad[i].msg || strstr(err.msg, bad[i].msg)),
               "bad index %zu: %s: %s", i, bn_status_str(st), st ? err.msg : "ok");
        bn_tset_free(&ts);
    }
    /* Sniffing: a directory with an index is a Hugging Face directory. */
    CHECK(bn_checkpoint_sniff(dir) == BN_CKPT_HF_DIR);
    snprintf(p, sizeof p, "%s/m-1.safetensors", dir);
    CHECK(bn_checkpoint_sniff(p) == BN_CKPT_SAFETENSORS);
    /* Loading it as a model: no config.json. */
    bn_model *m = NULL;
    CHECK(bn_model_load(dir, NULL, &m, &err) != BN_OK && m == NULL);
    const char *names[] = {"m-1.safetensors", "m-2.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_mutations(void) {
    size_t n;
    unsigned char *b = make_st(VALID, 42, &n);
    unsigned char *m = malloc(n);
    uint64_t x = 88172645463325252ull;
    int ok = 0;
    for (int it = 0; it < 20000 && m; it++) {
        memcpy(m, b, n);
        for (int k = 0; k < 3; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            m[x % n] = (unsigned char)(x >> 24);
        }
        bn_tensor_set ts;
        bn_error err;
        bn_tset_init(&ts);
        if (bn_safetensors_parse(m, n, &ts, &err) == BN_OK) {
            /* Whatever was accepted lies inside the buffer. */
            for (size_t i = 0; i < ts.n; i++) {
                const bn_ckpt_tensor *t = &ts.t[i];
                CHECK(t->data >= m && t->data + t->nbytes <= m + n);
            }
            ok++;
        }
        bn_tset_free(&ts);
    }
    printf("mutations: %d of 20000 still valid\n", ok);
    free(m);
    free(b);
}

/* The fuzz seed of the checkpoint mapping (hf-packed) converts to a GGUF image
 * that the reader accepts; every truncation of it is refused cleanly. */
static void test_image_seed(void) { bn_test_image_seed(0, "tests/fuzz/corpus/ckpt/hf-packed"); }

int main(void) {
    test_image_seed();
    test_valid();
    test_bad_headers();
    test_sharded();
    test_mutations();
    return bn_test_finish("test_safetensors");
}
