/* PyTorch zip reader and restricted unpickler: the committed fixture
 * (tests/data/pt_fixture, written by torch.save), hand-made zips (zip64
 * included), malicious pickles (refused by name, nothing called), truncation
 * and mutations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "test_util.h"

#define FIX "tests/data/pt_fixture/"

/* ---- a tiny stored-zip writer ------------------------------------------ */

typedef struct zbuf {
    unsigned char *p;
    size_t n, cap;
} zbuf;

static void put(zbuf *z, const void *s, size_t n) {
    if (z->n + n > z->cap) {
        size_t c = z->cap ? z->cap : 256;
        while (c < z->n + n)
            c *= 2;
        unsigned char *q = realloc(z->p, c);
        if (!q) exit(2);
        z->p = q;
        z->cap = c;
    }
    memcpy(z->p + z->n, s, n);
    z->n += n;
}
static void put16(zbuf *z, unsigned v) {
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(z, b, 2);
}
static void put32(zbuf *z, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(z, b, 4);
}
static void put64(zbuf *z, uint64_t v) {
    put32(z, (uint32_t)v);
    put32(z, (uint32_t)(v >> 32));
}

typedef struct zent {
    const char *name;
    const void *data;
    size_t size;
} zent;

/* zip64: central directory sizes/offsets as 0xFFFFFFFF + zip64 extra, and a
 * zip64 end record + locator. */
static unsigned char *make_zip(const zent *e, int n, int zip64, size_t *size) {
    zbuf z = {0};
    uint32_t off[16];
    for (int i = 0; i < n; i++) {
        off[i] = (uint32_t)z.n;
        put32(&z, 0x04034b50u);
        put16(&z, 20), put16(&z, 0x0808), put16(&z, 0), put32(&z, 0);
        put32(&z, 0), put32(&z, 0), put32(&z, 0); /* sizes in the data descriptor */
        put16(&z, (unsigned)strlen(e[i].name)), put16(&z, 0);
        put(&z, e[i].name, strlen(e[i].name));
        put(&z, e[i].data, e[i].size);
    }
    size_t cd = z.n;
    for (int i = 0; i < n; i++) {
        put32(&z, 0x02014b50u);
        put16(&z, 45), put16(&z, 45), put16(&z, 0x0808), put16(&z, 0), put32(&z, 0);
        put32(&z, 0);
        if (zip64) {
            put32(&z, 0xFFFFFFFFu), put32(&z, 0xFFFFFFFFu);
        } else {
            put32(&z, (uint32_t)e[i].size), put32(&z, (uint32_t)e[i].size);
        }
        put16(&z, (unsigned)strlen(e[i].name)), put16(&z, zip64 ? 28 : 0), put16(&z, 0);
        put16(&z, 0), put16(&z, 0), put32(&z, 0);
        put32(&z, zip64 ? 0xFFFFFFFFu : off[i]);
        put(&z, e[i].name, strlen(e[i].name));
        if (zip64) {
            put16(&z, 1), put16(&z, 24);
            put64(&z, e[i].size), put64(&z, e[i].size), put64(&z, off[i]);
        }
    }
    size_t cd_size = z.n - cd;
    if (zip64) {
        size_t rec = z.n;
        put32(&z, 0x06064b50u), put64(&z, 44), put16(&z, 45), put16(&z, 45), put32(&z, 0);
        put32(&z, 0), put64(&z, (uint64_t)n), put64(&z, (uint64_t)n), put64(&z, cd_size);
        put64(&z, cd);
        put32(&z, 0x07064b50u), put32(&z, 0), put64(&z, rec), put32(&z, 1);
    }
    put32(&z, 0x06054b50u), put16(&z, 0), put16(&z, 0);
    put16(&z, zip64 ? 0xFFFF : (unsigned)n), put16(&z, zip64 ? 0xFFFF : (unsigned)n);
    put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
    put32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd), put16(&z, 0);
    *size = z.n;
    return z.p;
}

/* A state dict {"w": bf16 tensor [2, 3] at storage offset 1} by hand
 * (protocol 2, as torch.save writes it). */
static const char PKL_OK[] = "\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01"
                             "ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00"
                             "\x00storageq\x03"
                             "ctorch\nBFloat16Storage\nq\x04X\x01\x00\x00\x00"
                             "0q\x05X\x03\x00\x00\x00"
                             "cpuq"
                             "\x06K\x07tq\x07QK\x01K\x02K\x03\x86q\x08K\x03K\x01\x86q\t\x89"
                             "ccollections\nOrderedDict\nq\n)Rq"
                             "\x0btq\x0cRq\ru.";

static int g_verify = 1; /* check the tensor of PKL_OK after a successful parse */

static bn_status parse_zip(const char *pkl, size_t pkl_len, const void *store, size_t store_len,
                           int zip64, bn_tensor_set *ts, bn_error *err) {
    zent e[3] = {{"archive/data.pkl", pkl, pkl_len},
                 {"archive/byteorder", "little", 6},
                 {"archive/data/0", store, store_len}};
    size_t n;
    unsigned char *z = make_zip(e, 3, zip64, &n);
    bn_tset_init(ts);
    bn_status st = bn_pt_parse(z, n, ts, err);
    /* the tensors point into z: check them before freeing */
    if (st == BN_OK && g_verify) {
        const bn_ckpt_tensor *t = bn_tset_find(ts, "w");
        CHECK(t && t->dtype == BN_DT_BF16 && t->n_dims == 2 && t->shape[0] == 2 &&
              t->shape[1] == 3 && t->nbytes == 12);
        /* storage offset 1 element = 2 bytes in */
        CHECK(t && t->data[0] == 2 && t->data[11] == 13);
    }
    bn_tset_free(ts);
    free(z);
    return st;
}

static void test_handmade(void) {
    unsigned char store[14];
    for (int i = 0; i < 14; i++)
        store[i] = (unsigned char)i;
    bn_tensor_set ts;
    bn_error err;
    for (int zip64 = 0; zip64 < 2; zip64++) {
        CHECK_OK(parse_zip(PKL_OK, sizeof PKL_OK - 1, store, sizeof store, zip64, &ts, &err), &err);
    }
    /* storage too small for offset + numel */
    CHECK(parse_zip(PKL_OK, sizeof PKL_OK - 1, store, 13, 0, &ts, &err) == BN_ERR_FORMAT &&
          strstr(err.msg, "does not fit"));
    /* Every truncation of the pickle is an error. */
    int all = 1;
    for (size_t cut = 0; cut + 1 < sizeof PKL_OK; cut++) {
        if (parse_zip(PKL_OK, cut, store, sizeof store, 0, &ts, &err) == BN_OK) all = 0;
    }
    CHECK(all);
    /* Byte mutations of the pickle never crash. */
    char m[sizeof PKL_OK];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int ok = 0;
    g_verify = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, PKL_OK, sizeof PKL_OK);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        m[x % (sizeof PKL_OK - 1)] = (char)(x >> 32);
        if (parse_zip(m, sizeof PKL_OK - 1, store, sizeof store, (int)(x & 1), &ts, &err) == BN_OK)
            ok++;
    }
    g_verify = 1;
    printf("pickle mutations: %d of 20000 still valid\n", ok);
}

static size_t cd_method_offset(const unsigned char *z, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++) {
        if (z[i] == 0x50 && z[i + 1] == 0x4b && z[i + 2] == 1 && z[i + 3] == 2) return i + 10;
    }
    return 0;
}

#define PK(s) s, sizeof(s) - 1

static void test_malicious(void) {
    bn_tensor_set ts;
    bn_error err;
    unsigned char store[14] = {0};
    struct {
        const char *pkl;
        size_t len;
        const char *msg;
    } cases[] = {
        /* os.system("touch pwned") via GLOBAL + REDUCE (protocol 2) */
        {PK("\x80\x02}q\x00X\x01\x00\x00\x00xcos\nsystem\nX\x0b\x00\x00\x00touch pwned\x85Rs."),
         "global 'os.system' is not allowed"},
        {PK("\x80\x02"
            "cposix\nsystem\nX\x02\x00\x00\x00id\x85R."),
         "'posix.system'"},
        {PK("\x80\x02"
            "c__builtin__\neval\n."),
         "'__builtin__.eval'"},
        /* STACK_GLOBAL (protocol 4) builtins.exec */
        {PK("\x80\x04\x8c\x08"
            "builtins\x8c\x04"
            "exec\x93."),
         "'builtins.exec'"},
        /* INST, OBJ, NEWOBJ, EXT1 opcodes */
        {PK("(cos\nsystem\n."), "'os.system'"},
        {PK("(ios\nsystem\nS'id'\n."), "opcode 0x69"},
        {PK("\x80\x02)\x81."), "opcode 0x81"},
        {PK("\x80\x02\x82\x01."), "opcode 0x82"},
        {PK("\x80\x02o."), "opcode 0x6f"},
        /* torch globals outside the list */
        {PK("\x80\x02"
            "ctorch\nload\n."),
         "'torch.load'"},
        {PK("\x80\x02"
            "ctorch._utils\n_rebuild_qtensor\n."),
         "not allowed"},
        /* REDUCE of OrderedDict with arguments */
        {PK("\x80\x02"
            "ccollections\nOrderedDict\nK\x01\x85R."),
         "arguments"},
        /* persistent id of the wrong shape */
        {PK("\x80\x02X\x01\x00\x00\x00"
            "aQ."),
         "persistent id"},
        /* not a dict at the top */
        {PK("\x80\x02]q\x00."), "not a dict"},
        {PK("\x80\x02}q\x00."), "no tensors"},
        {PK("\x80\x02}q\x00"), "without STOP"},
        {PK("\x80\x02h\x05."), "memo"},
        {PK("\x80\x02s."), "underflow"},
        {PK("\x80\x02u."), "MARK"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bn_status st = parse_zip(cases[i].pkl, cases[i].len, store, sizeof store, 0, &ts, &err);
        CHECKF(st != BN_OK && strstr(err.msg, cases[i].msg), "case %zu: %s: %s", i,
               bn_status_str(st), err.msg);
    }
    /* Not a zip / no data.pkl / compressed entries. */
    bn_tset_init(&ts);
    CHECK(bn_pt_parse("hello", 5, &ts, &err) == BN_ERR_FORMAT);
    bn_tset_free(&ts);
    zent e[1] = {{"archive/other", "x", 1}};
    size_t n;
    unsigned char *z = make_zip(e, 1, 0, &n);
    bn_tset_init(&ts);
    CHECK(bn_pt_parse(z, n, &ts, &err) == BN_ERR_FORMAT && strstr(err.msg, "data.pkl"));
    bn_tset_free(&ts);
    z[cd_method_offset(z, n)] = 8; /* deflate */
    bn_tset_init(&ts);
    CHECK(bn_pt_parse(z, n, &ts, &err) == BN_ERR_UNSUPPORTED && strstr(err.msg, "compressed"));
    bn_tset_free(&ts);
    free(z);
}

static void test_fixture(void) {
    size_t n = 0;
    unsigned char *b = bn_test_read_file(FIX "model_state_int2.pt", &n);
    CHECKF(b != NULL, "cannot read " FIX "model_state_int2.pt (run from the repository root)");
    if (!b) return;
    bn_tensor_set ts;
    bn_error err;
    bn_tset_init(&ts);
    CHECK_OK(bn_pt_parse(b, n, &ts, &err), &err);
    /* 1 layer: wqkv, wqkv scale, wo, wo scale, w13, w13 scale, w2, w2 scale,
     * 4 norms; tok_embeddings, output, norm. */
    CHECK(ts.n == 15);
    const bn_ckpt_tensor *t = bn_tset_find(&ts, "layers.0.attention.wqkv.weight");
    CHECK(t && t->dtype == BN_DT_I8 && t->shape[0] == 256 && t->shape[1] == 32);
    t = bn_tset_find(&ts, "layers.0.attention.wqkv.weight_scale");
    CHECK(t && t->dtype == BN_DT_BF16 && t->n_dims == 1 && t->shape[0] == 4);
    CHECK(t && bn_ckpt_get(t, 0) > 0 && bn_ckpt_get(t, 3) == 0.0f);
    t = bn_tset_find(&ts, "tok_embeddings.weight");
    CHECK(t && t->dtype == BN_DT_F32 && t->shape[0] == 128 && t->shape[1] == 128);
    bn_tset_free(&ts);
    /* Truncations: a stride through the file and every cut near its end
     * (the central directory). */
    int all = 1;
    for (size_t cut = 0; cut < n; cut += (cut + 400 < n ? 97 : 1)) {
        bn_tset_init(&ts);
        if (bn_pt_parse(b, cut, &ts, &err) == BN_OK) all = 0;
        bn_tset_free(&ts);
    }
    CHECK(all);
    free(b);

    b = bn_test_read_file(FIX "model_state_fp16.pt", &n);
    CHECK(b != NULL);
    if (!b) return;
    bn_tset_init(&ts);
    CHECK_OK(bn_pt_parse(b, n, &ts, &err), &err);
    t = bn_tset_find(&ts, "layers.0.feed_forward.w13.weight");
    CHECK(t && t->dtype == BN_DT_BF16 && t->shape[0] == 512 && t->shape[1] == 128);
    /* gate part: ternary times one value */
    if (t) {
        float c = 0.0f;
        int tern = 1;
        for (int64_t i = 0; i < 256 * 128; i++) {
            float v = bn_ckpt_get(t, i);
            v = v < 0 ? -v : v;
            if (v == 0.0f) continue;
            if (c == 0.0f) c = v;
            tern &= v == c;
        }
        CHECK(tern && c > 0.0f);
    }
    bn_tset_free(&ts);
    free(b);

    /* The whole thing as a model, three ways: identical logits. */
    const char *paths[] = {FIX "model_state_int2.pt", FIX "model_state_fp16.pt", FIX};
    float *ref = NULL;
    for (int k = 0; k < 3; k++) {
        CHECK(bn_checkpoint_sniff(paths[k]) == (k < 2 ? BN_CKPT_PT : BN_CKPT_PT_DIR));
        bn_model *m = NULL;
        CHECK_OK(bn_model_load(paths[k], NULL, &m, &err), &err);
        if (!m) continue;
        bn_model_config cfg;
        bn_model_get_config(m, &cfg);
        CHECK(strcmp(cfg.arch, "bitnet-b1.58") == 0 && cfg.n_head == 2 && cfg.n_head_kv == 1 &&
              cfg.weight_type == BN_TYPE_I2_S && cfg.tied_output == 1);
        bn_context_params cp = bn_context_default_params();
        cp.n_ctx = 16;
        cp.n_threads = 1;
        bn_context *c = NULL;
        CHECK_OK(bn_context_new(m, &cp, &c, &err), &err);
        int32_t toks[4] = {3, 9, 27, 81};
        bn_batch bt = {4, toks, NULL, NULL, NULL};
        if (c) CHECK_OK(bn_decode(c, &bt, &err), &err);
        const float *lg = c ? bn_get_logits(c, -1) : NULL;
        if (lg && !ref) {
            ref = malloc(sizeof(float) * (size_t)cfg.n_vocab);
            if (ref) memcpy(ref, lg, sizeof(float) * (size_t)cfg.n_vocab);
        } else if (lg && ref) {
            CHECK(memcmp(ref, lg, sizeof(float) * (size_t)cfg.n_vocab) == 0);
        }
        bn_context_free(c);
        bn_model_free(m);
    }
    free(ref);
}

/* The fuzz seeds (torch.save of small dicts: bf16, int8, a Linear's
 * state_dict with its _metadata, a nested {"model": ...}, two tensors sharing
 * one storage, an nn.Parameter) all parse. */
static void test_seeds(void) {
    const char *seeds[] = {"bf16.pt",   "int8.pt",   "state_dict.pt",
                           "nested.pt", "shared.pt", "param.pt"};
    const size_t want[] = {1, 2, 2, 1, 2, 1};
    for (int i = 0; i < 6; i++) {
        char p[256];
        snprintf(p, sizeof p, "tests/fuzz/corpus/pt/%s", seeds[i]);
        size_t n = 0;
        unsigned char *b = bn_test_read_file(p, &n);
        CHECKF(b != NULL, "cannot read %s", p);
        if (!b) continue;
        bn_tensor_set ts;
        bn_error err;
        bn_tset_init(&ts);
        CHECK_OK(bn_pt_parse(b, n, &ts, &err), &err);
        CHECKF(ts.n == want[i], "%s: %zu tensors", seeds[i], ts.n);
        if (i == 4) {
            const bn_ckpt_tensor *a = bn_tset_find(&ts, "a"), *c = bn_tset_find(&ts, "b");
            CHECK(a && c && c->data == a->data + 2 && c->nbytes == 4 && c->data[0] == 2);
        }
        bn_tset_free(&ts);
        free(b);
    }
}

/* The fuzz seed of the checkpoint mapping (pt-int2) converts to a GGUF image
 * that the reader accepts; every truncation of it is refused cleanly. */
static void test_image_seed(void) { bn_test_image_seed(1, "tests/fuzz/corpus/ckpt/pt-int2"); }

int main(void) {
    test_image_seed();
    test_seeds();
    test_handmade();
    test_malicious();
    test_fixture();
    return bn_test_finish("test_pt_reader");
}
