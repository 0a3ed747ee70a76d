/* GGUF reader and writer: the real files against the manifest, every prefix
 * truncation (with a guard page right after the prefix, so over-reads fault),
 * generated faults for each rejection rule, and a writer round trip. */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf_internal.h"
#include "json.h"
#include "quant.h"
#include "test_util.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int quick_mode(void) { return getenv("BN_TEST_QUICK") != NULL; }

/* ---------------------------------------------------------------------- */
/* Real files against gguf_manifest.json                                   */
/* ---------------------------------------------------------------------- */

static const char *manifest_path(const char *file) {
    if (strcmp(file, "llama-2-tiny-random.gguf") == 0)
        return TESTDATA "gguf/llama-2-tiny-random.gguf";
    if (strcmp(file, "ggml-vocab-llama-spm.gguf") == 0)
        return TESTDATA "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf";
    if (strcmp(file, "ggml-vocab-gpt-2.gguf") == 0)
        return TESTDATA "tokenizers/gpt2/ggml-vocab-gpt-2.gguf";
    return NULL;
}

static int64_t jint(const bn_json_val *v) {
    int64_t x = INT64_MIN;
    CHECKF(bn_json_int(v, &x), "JSON value at offset %zu is an integer", bn_json_offset(v));
    return x;
}

static int vtype_from_name(const char *name) {
    for (uint32_t t = 0; t < 13; t++) {
        if (name && strcmp(bn_gguf_vtype_name(t), name) == 0) return (int)t;
    }
    return -1;
}

/* Element j of a numeric array as double / exact integer. */
static double arr_num(bn_gguf_vtype et, const void *data, uint64_t j, int64_t *iv) {
    const uint8_t *p = (const uint8_t *)data + j * bn_gguf_vtype_size(et);
    double d = 0;
    int64_t i = 0;
    switch (et) {
    case BN_GGUF_UINT8: i = p[0]; break;
    case BN_GGUF_INT8: i = (int8_t)p[0]; break;
    case BN_GGUF_BOOL: i = p[0]; break;
    case BN_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        i = v;
        break;
    }
    case BN_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        i = v;
        break;
    }
    case BN_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        i = v;
        break;
    }
    case BN_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        i = v;
        break;
    }
    case BN_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        i = (int64_t)v;
        break;
    }
    case BN_GGUF_INT64: memcpy(&i, p, 8); break;
    case BN_GGUF_FLOAT32: {
        float v;
        memcpy(&v, p, 4);
        d = v;
        *iv = 0;
        return d;
    }
    case BN_GGUF_FLOAT64:
        memcpy(&d, p, 8);
        *iv = 0;
        return d;
    default: break;
    }
    *iv = i;
    return (double)i;
}

static void check_arr_elems(const bn_gguf *g, int64_t i, const bn_json_val *list, uint64_t start,
                            const char *key) {
    bn_gguf_vtype et;
    uint64_t n;
    const void *data;
    bn_error err;
    CHECK_OK(bn_gguf_get_arr(g, i, &et, &n, &data, &err), &err);
    uint64_t j = start;
    for (const bn_json_val *e = bn_json_first(list); e; e = bn_json_next(e), j++) {
        if (et == BN_GGUF_STRING) {
            const char *s = NULL;
            uint64_t len = 0;
            CHECK_OK(bn_gguf_get_arr_str(g, i, j, &s, &len, &err), &err);
            size_t jl = 0;
            const char *js = bn_json_str(e, &jl);
            CHECKF(js && s && len == jl && memcmp(s, js, jl) == 0, "%s[%llu]", key,
                   (unsigned long long)j);
        } else {
            int64_t iv;
            double d = arr_num(et, data, j, &iv);
            if (et == BN_GGUF_FLOAT32 || et == BN_GGUF_FLOAT64)
                CHECKF(d == bn_json_num(e), "%s[%llu] = %g, manifest %g", key,
                       (unsigned long long)j, d, bn_json_num(e));
            else
                CHECKF(iv == jint(e), "%s[%llu] = %lld", key, (unsigned long long)j, (long long)iv);
        }
    }
}

static void check_kv(const bn_gguf *g, int64_t i, const bn_json_val *jkv) {
    const char *key = bn_json_str(bn_json_get(jkv, "key"), NULL);
    const char *tname = bn_json_str(bn_json_get(jkv, "type"), NULL);
    const bn_json_val *val = bn_json_get(jkv, "value");
    CHECKF(key && strcmp(bn_gguf_key(g, i), key) == 0, "KV %lld key %s", (long long)i, key);
    if (!key || !tname) return;
    CHECKF(bn_gguf_find_key(g, key) == i, "find_key(%s)", key);
    int t = vtype_from_name(tname);
    CHECKF((int)bn_gguf_kv_type(g, i) == t, "%s type %s", key, tname);
    bn_error err;
    switch (t) {
    case BN_GGUF_STRING: {
        const char *s = NULL;
        uint64_t len = 0;
        size_t jl = 0;
        const char *js = bn_json_str(val, &jl);
        CHECK_OK(bn_gguf_get_str(g, i, &s, &len, &err), &err);
        CHECKF(js && len == jl && memcmp(s, js, jl) == 0, "%s = '%.*s'", key, (int)len, s);
        CHECK_OK(bn_gguf_find_str(g, key, &s, &len, &err), &err);
        /* strings are not integers */
        int64_t x;
        CHECK(bn_gguf_get_i64(g, i, &x, &err) == BN_ERR_INVALID_ARG);
        break;
    }
    case BN_GGUF_BOOL: {
        int b = -1;
        CHECK_OK(bn_gguf_get_bool(g, i, &b, &err), &err);
        CHECKF(b == (bn_json_bool(val) ? 1 : 0), "%s bool", key);
        break;
    }
    case BN_GGUF_FLOAT32:
    case BN_GGUF_FLOAT64: {
        double d = 0;
        CHECK_OK(bn_gguf_get_f64(g, i, &d, &err), &err);
        CHECKF(d == bn_json_num(val), "%s = %.17g", key, d);
        CHECK_OK(bn_gguf_find_f64(g, key, &d, &err), &err);
        break;
    }
    case BN_GGUF_ARRAY: {
        bn_gguf_vtype et;
        uint64_t n = 0;
        const void *data;
        CHECK_OK(bn_gguf_get_arr(g, i, &et, &n, &data, &err), &err);
        CHECKF((int)et == vtype_from_name(bn_json_str(bn_json_get(val, "array_type"), NULL)),
               "%s element type", key);
        CHECKF((int64_t)n == jint(bn_json_get(val, "len")), "%s len %llu", key,
               (unsigned long long)n);
        const bn_json_val *first = bn_json_get(val, "first"), *last = bn_json_get(val, "last");
        CHECK(first && last && bn_json_len(last) <= n);
        check_arr_elems(g, i, first, 0, key);
        if (last) check_arr_elems(g, i, last, n - bn_json_len(last), key);
        /* out of range element */
        const char *s;
        uint64_t len;
        if (et == BN_GGUF_STRING)
            CHECK(bn_gguf_get_arr_str(g, i, n, &s, &len, &err) == BN_ERR_INVALID_ARG);
        break;
    }
    default: {
        int64_t x = 0;
        uint64_t u = 0;
        CHECK_OK(bn_gguf_get_i64(g, i, &x, &err), &err);
        CHECKF(x == jint(val), "%s = %lld", key, (long long)x);
        CHECK_OK(bn_gguf_find_i64(g, key, &x, &err), &err);
        CHECK(x == jint(val));
        if (x >= 0) {
            CHECK_OK(bn_gguf_get_u64(g, i, &u, &err), &err);
            CHECK(u == (uint64_t)x);
        }
        double d;
        CHECK(bn_gguf_get_f64(g, i, &d, &err) == BN_ERR_INVALID_ARG);
        CHECK(strstr(err.msg, key) != NULL);
        break;
    }
    }
}

static void check_file(const bn_json_val *m) {
    const char *file = bn_json_str(bn_json_get(m, "file"), NULL);
    const char *path = file ? manifest_path(file) : NULL;
    CHECKF(path != NULL, "known manifest file %s", file ? file : "?");
    if (!path) return;
    bn_gguf *g = NULL;
    bn_error err;
    CHECK_OK(bn_gguf_open(path, &g, &err), &err);
    if (!g) return;
    CHECK((int64_t)bn_gguf_file_size(g) == jint(bn_json_get(m, "size")));
    CHECK((int64_t)bn_gguf_version(g) == jint(bn_json_get(m, "version")));
    CHECK(bn_gguf_n_tensors(g) == jint(bn_json_get(m, "n_tensors")));
    CHECK(bn_gguf_n_kv(g) == jint(bn_json_get(m, "n_kv")));
    CHECK((int64_t)bn_gguf_alignment(g) == jint(bn_json_get(m, "alignment")));
    CHECKF((int64_t)bn_gguf_data_offset(g) == jint(bn_json_get(m, "data_start")),
           "%s data start %llu", file, (unsigned long long)bn_gguf_data_offset(g));
    const bn_json_val *kvs = bn_json_get(m, "kv"), *ts = bn_json_get(m, "tensors");
    /* header_end has no accessor: the data start is it padded to the alignment */
    int64_t header_end = jint(bn_json_get(m, "header_end"));
    CHECK((int64_t)bn_gguf_data_offset(g) >= header_end &&
          (int64_t)bn_gguf_data_offset(g) - header_end < (int64_t)bn_gguf_alignment(g));
    CHECK((int64_t)bn_json_len(kvs) == bn_gguf_n_kv(g));
    int64_t i = 0;
    for (const bn_json_val *kv = bn_json_first(kvs); kv; kv = bn_json_next(kv), i++)
        check_kv(g, i, kv);
    CHECK((int64_t)bn_json_len(ts) == bn_gguf_n_tensors(g));
    uint64_t data_end = bn_gguf_data_offset(g);
    i = 0;
    for (const bn_json_val *t = bn_json_first(ts); t; t = bn_json_next(t), i++) {
        const char *name = bn_json_str(bn_json_get(t, "name"), NULL);
        CHECKF(name && strcmp(bn_gguf_tensor_name(g, i), name) == 0, "tensor %lld", (long long)i);
        CHECK(name && bn_gguf_find_tensor(g, name) == i);
        CHECK(bn_gguf_tensor_type(g, i) == jint(bn_json_get(t, "type")));
        const char *tn = bn_json_str(bn_json_get(t, "type_name"), NULL);
        CHECK(tn && bn_type_from_name(tn) == bn_gguf_tensor_type(g, i));
        const bn_json_val *dims = bn_json_get(t, "dims");
        CHECK(bn_gguf_tensor_n_dims(g, i) == (int)bn_json_len(dims));
        for (int d = 0; d < 4; d++) {
            int64_t want = d < (int)bn_json_len(dims) ? jint(bn_json_at(dims, (size_t)d)) : 1;
            CHECKF(bn_gguf_tensor_ne(g, i, d) == want, "%s ne[%d]", name, d);
        }
        CHECK((int64_t)bn_gguf_tensor_offset(g, i) == jint(bn_json_get(t, "offset")));
        CHECK((int64_t)bn_gguf_tensor_nbytes(g, i) == jint(bn_json_get(t, "nbytes")));
        CHECK((const uint8_t *)bn_gguf_tensor_data(g, i) ==
              (const uint8_t *)bn_gguf_tensor_data(g, 0) + bn_gguf_tensor_offset(g, i) -
                  bn_gguf_tensor_offset(g, 0));
        uint64_t end =
            bn_gguf_data_offset(g) + bn_gguf_tensor_offset(g, i) + bn_gguf_tensor_nbytes(g, i);
        if (end > data_end) data_end = end;
    }
    CHECK((int64_t)data_end == jint(bn_json_get(m, "data_end")));
    /* Out-of-range accessors fail softly. */
    CHECK(bn_gguf_key(g, -1) == NULL && bn_gguf_key(g, bn_gguf_n_kv(g)) == NULL);
    CHECK(bn_gguf_tensor_name(g, bn_gguf_n_tensors(g)) == NULL);
    CHECK(bn_gguf_tensor_data(g, -1) == NULL);
    CHECK(bn_gguf_find_key(g, "no.such.key") == -1 && bn_gguf_find_tensor(g, "nope") == -1);
    int64_t x;
    CHECK(bn_gguf_find_i64(g, "no.such.key", &x, &err) == BN_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "no.such.key") != NULL);
    CHECK(bn_gguf_get_i64(g, 1000000, &x, &err) == BN_ERR_INVALID_ARG);
    bn_gguf_close(g);
}

static void test_manifest(void) {
    size_t size = 0;
    unsigned char *buf = bn_test_read_file(TESTDATA "gguf/gguf_manifest.json", &size);
    CHECK(buf != NULL);
    if (!buf) return;
    bn_json *j = NULL;
    bn_error err;
    CHECK_OK(bn_json_parse((const char *)buf, size, &j, &err), &err);
    free(buf);
    CHECK(bn_json_len(bn_json_root(j)) == 3);
    for (const bn_json_val *m = bn_json_first(bn_json_root(j)); m; m = bn_json_next(m))
        check_file(m);
    bn_json_free(j);

    /* open_memory over the same bytes gives the same tables, data in place */
    buf = bn_test_read_file(TESTDATA "gguf/llama-2-tiny-random.gguf", &size);
    CHECK(buf != NULL);
    if (!buf) return;
    bn_gguf *g = NULL;
    CHECK_OK(bn_gguf_open_memory(buf, size, &g, &err), &err);
    if (g) {
        int64_t t = bn_gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(t == 1);
        CHECK((const unsigned char *)bn_gguf_tensor_data(g, t) ==
              buf + bn_gguf_data_offset(g) + bn_gguf_tensor_offset(g, t));
        int64_t v;
        CHECK_OK(bn_gguf_find_i64(g, "llama.embedding_length", &v, &err), &err);
        CHECK(v == 8);
        bn_gguf_close(g);
    }
    free(buf);
}

static void test_missing_and_tiny_files(void) {
    bn_gguf *g = (bn_gguf *)1;
    bn_error err;
    CHECK(bn_gguf_open(TESTDATA "gguf/truncated-header-v2.gguf", &g, &err) == BN_ERR_FORMAT);
    CHECK(g == NULL);
    CHECKF(strstr(err.msg, "version") && strstr(err.msg, "offset 4") &&
               strstr(err.msg, "truncated-header-v2.gguf"),
           "%s", err.msg);
    CHECK(bn_gguf_open(TESTDATA "gguf/does-not-exist.gguf", &g, &err) == BN_ERR_NOT_FOUND);
    CHECK(bn_gguf_open(TESTDATA "gguf", &g, &err) == BN_ERR_IO);
    CHECK(bn_gguf_open_memory(NULL, 0, &g, &err) == BN_ERR_FORMAT);
    CHECK(bn_gguf_open_memory(NULL, 5, &g, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_open_memory("GGUF", 4, NULL, &err) == BN_ERR_INVALID_ARG);
    /* NULL err is allowed everywhere */
    CHECK(bn_gguf_open_memory("GGU", 3, &g, NULL) == BN_ERR_FORMAT);
    bn_gguf_close(NULL);
}

/* ---------------------------------------------------------------------- */
/* Prefix truncations                                                      */
/* ---------------------------------------------------------------------- */

typedef struct sweep {
    size_t size;
    size_t *marks; /* boundaries to test densely in quick mode */
    size_t n_marks;
} sweep;

static int wanted(const sweep *s, size_t L, int quick) {
    if (!quick) return 1;
    if (L % 257 == 0) return 1;
    for (size_t k = 0; k < s->n_marks; k++) {
        size_t m = s->marks[k];
        if (L + 4096 >= m && L <= m + 4096) return 1;
    }
    return 0;
}

typedef struct sweep_job {
    const sweep *s;
    const unsigned char *file;
    size_t page, first_phase, phase_step;
    int quick;
    size_t tested, bad, bad_at[8];
    bn_status bad_st[8];
    int setup_failed;
} sweep_job;

/* Each prefix is placed so that it ends exactly at a page boundary, and the
 * page after it is made inaccessible: any read past the prefix faults, as
 * with an exact-size allocation, but without copying the file per prefix.
 * Prefixes L = phase + k * page share one copy. Threads split the phases. */
static void *sweep_run(void *arg) {
    sweep_job *job = arg;
    size_t page = job->page, size = job->s->size;
    size_t region_len = size + 3 * page;
    unsigned char *region =
        mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        job->setup_failed = 1;
        return NULL;
    }
    for (size_t phase = job->first_phase; phase < page && phase < size; phase += job->phase_step) {
        unsigned char *base = region + (page - phase) % page;
        int copied = 0;
        for (size_t L = phase; L < size; L += page) {
            if (!wanted(job->s, L, job->quick)) continue;
            if (!copied) {
                memcpy(base, job->file, size);
                copied = 1;
            }
            unsigned char *guard = base + L;
            if (mprotect(guard, page, PROT_NONE) != 0) {
                job->setup_failed = 1;
                break;
            }
            bn_gguf *g = NULL;
            bn_error err;
            bn_status st = bn_gguf_open_memory(base, L, &g, &err);
            mprotect(guard, page, PROT_READ | PROT_WRITE);
            job->tested++;
            if (st != BN_ERR_FORMAT || g != NULL || err.msg[0] == '\0') {
                if (job->bad < 8) {
                    job->bad_at[job->bad] = L;
                    job->bad_st[job->bad] = st;
                }
                job->bad++;
                bn_gguf_close(g);
            }
        }
    }
    munmap(region, region_len);
    return NULL;
}

/* header_end of the first manifest entry (llama-2-tiny-random.gguf). */
static size_t manifest_header_end(void) {
    size_t size = 0, v = 0;
    unsigned char *buf = bn_test_read_file(TESTDATA "gguf/gguf_manifest.json", &size);
    bn_json *j = NULL;
    bn_error err;
    if (buf && bn_json_parse((const char *)buf, size, &j, &err) == BN_OK) {
        int64_t x = 0;
        if (bn_json_int(bn_json_get(bn_json_at(bn_json_root(j), 0), "header_end"), &x) && x > 0)
            v = (size_t)x;
    }
    bn_json_free(j);
    free(buf);
    CHECK(v == 724398);
    return v;
}

static void test_prefixes(void) {
    size_t header_end = manifest_header_end();
    if (header_end == 0) return;
    size_t size = 0;
    unsigned char *file = bn_test_read_file(TESTDATA "gguf/llama-2-tiny-random.gguf", &size);
    CHECK(file != NULL);
    if (!file) return;
    bn_gguf *g = NULL;
    bn_error err;
    CHECK_OK(bn_gguf_open_memory(file, size, &g, &err), &err);
    if (!g) {
        free(file);
        return;
    }
    sweep s = {size, NULL, 0};
    s.marks = malloc((size_t)(4 + 2 * bn_gguf_n_tensors(g)) * sizeof *s.marks);
    CHECK(s.marks != NULL);
    if (!s.marks) {
        bn_gguf_close(g);
        free(file);
        return;
    }
    s.marks[s.n_marks++] = 0;
    s.marks[s.n_marks++] = header_end;
    s.marks[s.n_marks++] = bn_gguf_data_offset(g);
    s.marks[s.n_marks++] = size;
    for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
        size_t start = bn_gguf_data_offset(g) + bn_gguf_tensor_offset(g, i);
        s.marks[s.n_marks++] = start;
        s.marks[s.n_marks++] = start + bn_gguf_tensor_nbytes(g, i);
    }
    bn_gguf_close(g);

    int quick = quick_mode();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n_threads = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (size_t)ncpu;
    sweep_job jobs[8];
    pthread_t tids[8];
    int started[8] = {0};
    double t0 = now_s();
    clock_t c0 = clock();
    for (size_t k = 0; k < n_threads; k++) {
        jobs[k] = (sweep_job){&s, file, page, k, n_threads, quick, 0, 0, {0}, {0}, 0};
        started[k] = pthread_create(&tids[k], NULL, sweep_run, &jobs[k]) == 0;
        if (!started[k]) sweep_run(&jobs[k]);
    }
    size_t tested = 0, bad = 0;
    for (size_t k = 0; k < n_threads; k++) {
        if (started[k]) pthread_join(tids[k], NULL);
        CHECK(!jobs[k].setup_failed);
        tested += jobs[k].tested;
        bad += jobs[k].bad;
        for (size_t q = 0; q < jobs[k].bad && q < 8; q++)
            CHECKF(0, "prefix %zu: status %s", jobs[k].bad_at[q], bn_status_str(jobs[k].bad_st[q]));
    }
    double secs = now_s() - t0, cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECKF(bad == 0, "%zu prefixes not rejected", bad);
    CHECK(tested > 0);
    printf("prefix sweep (%s): %zu prefixes of %zu in %.1f s (%.1f s CPU, %zu threads)\n",
           quick ? "quick" : "exhaustive", tested, size, secs, cpu, n_threads);
    if (!quick) CHECKF(tested == size, "tested %zu of %zu", tested, size);

    /* A few exact-size heap copies for ASan (the sweep above relies on the
     * guard page instead). */
    size_t picks[] = {0,
                      1,
                      4,
                      7,
                      8,
                      15,
                      16,
                      23,
                      24,
                      31,
                      100,
                      header_end - 1,
                      header_end,
                      header_end + 17,
                      header_end + 18,
                      size - 1,
                      size / 2};
    for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
        size_t L = picks[k];
        unsigned char *copy = malloc(L ? L : 1);
        if (!copy) continue;
        memcpy(copy, file, L);
        CHECKF(bn_gguf_open_memory(copy, L, &g, &err) == BN_ERR_FORMAT, "copy prefix %zu", L);
        free(copy);
    }
    free(s.marks);
    free(file);
}

/* ---------------------------------------------------------------------- */
/* Generated faults                                                        */
/* ---------------------------------------------------------------------- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
    int oom;
} bb;

static void bb_put(bb *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t a) {
    while (b->n % a)
        bb_u8(b, 0);
}

enum fault {
    OK_BASE,
    OK_V2,
    OK_I2S_BITNET,
    OK_I2S_BITNET25,
    OK_ALIGN64,
    OK_NO_TENSORS,
    BAD_MAGIC,
    BAD_VERSION0,
    BAD_VERSION1,
    BAD_VERSION4,
    BAD_BIG_ENDIAN,
    BAD_HUGE_TENSORS,
    BAD_HUGE_KV,
    BAD_KEY_LEN0,
    BAD_KEY_LEN_HUGE,
    BAD_KEY_NUL,
    BAD_VTYPE,
    BAD_DUP_KEY,
    BAD_DUP_TENSOR,
    BAD_ALIGN_NOT_POW2,
    BAD_ALIGN_ZERO,
    BAD_ALIGN_TYPE,
    BAD_NDIMS0,
    BAD_NDIMS5,
    BAD_DIM_ZERO,
    BAD_DIM_NEG,
    BAD_DIM_OVERFLOW,
    BAD_UNKNOWN_TYPE,
    BAD_TYPE_HUGE,
    BAD_I2S_LLAMA,
    BAD_OFFSET_UNALIGNED,
    BAD_DATA_PAST_END,
    BAD_OFFSET_HUGE,
    BAD_ROW_BLOCK,
    BAD_STR_LEN_HUGE,
    BAD_ARR_TYPE,
    BAD_ARR_LEN_HUGE,
    BAD_STR_ARR_LEN_HUGE,
    BAD_STR_ELEM_LEN,
    BAD_NESTED_DEEP,
    BAD_BOOL,
    BAD_BOOL_ARR,
    BAD_NAME_LEN_HUGE,
    BAD_DATA_START,
    N_FAULTS
};

/* A small file: a few KVs of several types, two tensors. One fault at a
 * time is injected into the field it names. */
static bb build(enum fault f) {
    bb b = {0};
    int n_t = f == OK_NO_TENSORS ? 0 : 2;
    uint32_t align = f == OK_ALIGN64 ? 64 : 32;
    bb_put(&b, f == BAD_MAGIC ? "GGUG" : "GGUF", 4);
    uint32_t version = 3;
    if (f == OK_V2) version = 2;
    if (f == BAD_VERSION0) version = 0;
    if (f == BAD_VERSION1) version = 1;
    if (f == BAD_VERSION4) version = 4;
    if (f == BAD_BIG_ENDIAN) version = 0x03000000u;
    bb_u32(&b, version);
    bb_u64(&b, f == BAD_HUGE_TENSORS ? 0x0fffffffffffffffull : (uint64_t)n_t);
    bb_u64(&b, f == BAD_HUGE_KV ? 1000000ull : 7);
    /* KV 0: architecture */
    bb_str(&b, "general.architecture");
    bb_u32(&b, BN_GGUF_STRING);
    const char *arch = "llama";
    if (f == OK_I2S_BITNET) arch = "bitnet-b1.58";
    if (f == OK_I2S_BITNET25) arch = "bitnet-25";
    bb_str(&b, arch);
    /* KV 1: alignment */
    bb_str(&b, "general.alignment");
    if (f == BAD_ALIGN_TYPE) {
        bb_u32(&b, BN_GGUF_UINT64);
        bb_u64(&b, 32);
    } else {
        bb_u32(&b, BN_GGUF_UINT32);
        bb_u32(&b, f == BAD_ALIGN_NOT_POW2 ? 48 : f == BAD_ALIGN_ZERO ? 0 : align);
    }
    /* KV 2: a u32, with the key faults */
    if (f == BAD_KEY_LEN0) {
        bb_u64(&b, 0);
    } else if (f == BAD_KEY_LEN_HUGE) {
        bb_u64(&b, 1ull << 40);
    } else if (f == BAD_KEY_NUL) {
        bb_u64(&b, 5);
        bb_put(&b, "ab\0cd", 5);
    } else {
        bb_str(&b, "test.u32");
    }
    bb_u32(&b, f == BAD_VTYPE ? 13 : BN_GGUF_UINT32);
    bb_u32(&b, 7);
    /* KV 3: a string */
    bb_str(&b, f == BAD_DUP_KEY ? "test.u32" : "test.str");
    bb_u32(&b, BN_GGUF_STRING);
    if (f == BAD_STR_LEN_HUGE) {
        bb_u64(&b, 0xffffffffffffff00ull);
    } else {
        bb_str(&b, "hello");
    }
    /* KV 4: a string array */
    bb_str(&b, "test.strs");
    bb_u32(&b, BN_GGUF_ARRAY);
    bb_u32(&b, BN_GGUF_STRING);
    bb_u64(&b, f == BAD_STR_ARR_LEN_HUGE ? 1ull << 60 : 3);
    bb_str(&b, "a");
    if (f == BAD_STR_ELEM_LEN) {
        bb_u64(&b, 1ull << 50);
    } else {
        bb_str(&b, "");
    }
    bb_str(&b, "ccc");
    /* KV 5: a numeric array */
    bb_str(&b, "test.f32s");
    bb_u32(&b, BN_GGUF_ARRAY);
    bb_u32(&b, f == BAD_ARR_TYPE ? 99 : BN_GGUF_FLOAT32);
    bb_u64(&b, f == BAD_ARR_LEN_HUGE ? 1ull << 62 : 2);
    bb_u32(&b, 0x3f800000u);
    bb_u32(&b, 0x40000000u);
    /* KV 6: bool, or nested arrays */
    if (f == BAD_NESTED_DEEP) {
        bb_str(&b, "test.nested");
        bb_u32(&b, BN_GGUF_ARRAY);
        for (int d = 0; d < BN_GGUF_MAX_ARRAY_DEPTH; d++) {
            bb_u32(&b, BN_GGUF_ARRAY);
            bb_u64(&b, 1);
        }
        bb_u32(&b, BN_GGUF_UINT8);
        bb_u64(&b, 1);
        bb_u8(&b, 1);
    } else if (f == BAD_BOOL_ARR) {
        bb_str(&b, "test.bools");
        bb_u32(&b, BN_GGUF_ARRAY);
        bb_u32(&b, BN_GGUF_BOOL);
        bb_u64(&b, 3);
        bb_u8(&b, 0);
        bb_u8(&b, 1);
        bb_u8(&b, 2);
    } else {
        bb_str(&b, "test.bool");
        bb_u32(&b, BN_GGUF_BOOL);
        bb_u8(&b, f == BAD_BOOL ? 2 : 1);
    }
    /* tensor 0: "a", F32 [4, 2] (or the type under test), offset 0 */
    if (n_t) {
        if (f == BAD_NAME_LEN_HUGE) {
            bb_u64(&b, 1ull << 33);
        } else {
            bb_str(&b, "a");
        }
        uint32_t n_dims = f == BAD_NDIMS0 ? 0 : f == BAD_NDIMS5 ? 5 : 2;
        bb_u32(&b, n_dims);
        int64_t ne0 = 4, ne1 = 2;
        uint32_t type = BN_TYPE_F32;
        if (f == OK_I2S_BITNET || f == OK_I2S_BITNET25 || f == BAD_I2S_LLAMA) {
            ne0 = 128;
            type = BN_TYPE_I2_S;
        }
        if (f == BAD_ROW_BLOCK) type = BN_TYPE_Q8_0; /* 4 is not a multiple of 32 */
        if (f == BAD_UNKNOWN_TYPE) type = 31;
        if (f == BAD_TYPE_HUGE) type = 0xffffffffu;
        if (f == BAD_DIM_ZERO) ne1 = 0;
        if (f == BAD_DIM_NEG) ne1 = -2;
        for (uint32_t d = 0; d < n_dims; d++) {
            if (f == BAD_DIM_OVERFLOW)
                bb_u64(&b, 1ull << 40);
            else
                bb_u64(&b, (uint64_t)(d == 0 ? ne0 : d == 1 ? ne1 : 1));
        }
        bb_u32(&b, type);
        bb_u64(&b, f == BAD_OFFSET_UNALIGNED ? 8
                   : f == BAD_OFFSET_HUGE    ? 0xffffffffffffffe0ull
                                             : 0);
        /* tensor 1: "b", Q8_0 [32] at the next aligned offset */
        bb_str(&b, f == BAD_DUP_TENSOR ? "a" : "b");
        bb_u32(&b, 1);
        bb_u64(&b, 32);
        bb_u32(&b, BN_TYPE_Q8_0);
        size_t a_bytes = (type == BN_TYPE_I2_S) ? 128 / 4 * 2 + 32 : 32;
        uint64_t off_b = (a_bytes + align - 1) / align * align;
        bb_u64(&b, off_b);
        bb_pad(&b, align);
        if (f == BAD_DATA_START) return b; /* tensors declared, data section missing */
        size_t data_start = b.n;
        for (size_t k = 0; k < off_b + 34; k++)
            bb_u8(&b, (uint8_t)k);
        if (f == BAD_DATA_PAST_END) b.n = data_start + off_b + 33;
    }
    return b;
}

static void test_faults(void) {
    struct {
        enum fault f;
        bn_status st;
        const char *msg1, *msg2;
    } cases[] = {
        {BAD_MAGIC, BN_ERR_FORMAT, "bad magic", "offset 0"},
        {BAD_VERSION0, BN_ERR_FORMAT, "version 0", "offset 4"},
        {BAD_VERSION1, BN_ERR_UNSUPPORTED, "version 1", "offset 4"},
        {BAD_VERSION4, BN_ERR_UNSUPPORTED, "version 4", "offset 4"},
        {BAD_BIG_ENDIAN, BN_ERR_UNSUPPORTED, "big-endian", "offset 4"},
        {BAD_HUGE_TENSORS, BN_ERR_FORMAT, "tensor count", "offset 8"},
        {BAD_HUGE_KV, BN_ERR_FORMAT, "KV count", "offset 16"},
        {BAD_KEY_LEN0, BN_ERR_FORMAT, "KV 2: key length 0", "offset"},
        {BAD_KEY_LEN_HUGE, BN_ERR_FORMAT, "KV 2: key length 1099511627776", "past end"},
        {BAD_KEY_NUL, BN_ERR_FORMAT, "KV 2: key", "NUL"},
        {BAD_VTYPE, BN_ERR_FORMAT, "KV 2 ('test.u32'): bad value type 13", "offset"},
        {BAD_DUP_KEY, BN_ERR_FORMAT, "KV 3 ('test.u32'): duplicate key", "also KV 2"},
        {BAD_DUP_TENSOR, BN_ERR_FORMAT, "tensor 1 ('a'): duplicate tensor name", "also tensor 0"},
        {BAD_ALIGN_NOT_POW2, BN_ERR_FORMAT, "'general.alignment'", "alignment 48"},
        {BAD_ALIGN_ZERO, BN_ERR_FORMAT, "'general.alignment'", "alignment 0"},
        {BAD_ALIGN_TYPE, BN_ERR_FORMAT, "'general.alignment'", "expected UINT32"},
        {BAD_NDIMS0, BN_ERR_FORMAT, "tensor 0 ('a'): n_dims 0", "offset"},
        {BAD_NDIMS5, BN_ERR_FORMAT, "tensor 0 ('a'): n_dims 5", "offset"},
        {BAD_DIM_ZERO, BN_ERR_FORMAT, "tensor 0 ('a'): dimension 1 is 0", "offset"},
        {BAD_DIM_NEG, BN_ERR_FORMAT, "tensor 0 ('a'): dimension 1 is -2", "offset"},
        {BAD_DIM_OVERFLOW, BN_ERR_FORMAT, "tensor 0 ('a')", "overflow"},
        {BAD_UNKNOWN_TYPE, BN_ERR_UNSUPPORTED, "tensor 0 ('a'): unknown tensor type 31", "offset"},
        {BAD_TYPE_HUGE, BN_ERR_UNSUPPORTED, "tensor 0 ('a'): unknown tensor type 4294967295",
         "offset"},
        {BAD_I2S_LLAMA, BN_ERR_UNSUPPORTED, "tensor 0 ('a'): tensor type 36", "'llama'"},
        {BAD_OFFSET_UNALIGNED, BN_ERR_FORMAT, "tensor 0 ('a'): data offset 8", "alignment 32"},
        {BAD_DATA_PAST_END, BN_ERR_FORMAT, "tensor 1 ('b'): data offset 32 + 34 bytes", "past end"},
        {BAD_OFFSET_HUGE, BN_ERR_FORMAT, "tensor 0 ('a'): data offset 18446744073709551584",
         "past end"},
        {BAD_ROW_BLOCK, BN_ERR_FORMAT, "tensor 0 ('a'): row length 4", "block size 32"},
        {BAD_STR_LEN_HUGE, BN_ERR_FORMAT, "KV 3 ('test.str'): string length", "past end"},
        {BAD_ARR_TYPE, BN_ERR_FORMAT, "KV 5 ('test.f32s'): bad array element type 99", "offset"},
        {BAD_ARR_LEN_HUGE, BN_ERR_FORMAT, "KV 5 ('test.f32s'): array of 4611686018427387904",
         "past end"},
        {BAD_STR_ARR_LEN_HUGE, BN_ERR_FORMAT, "KV 4 ('test.strs'): array of", "past end"},
        {BAD_STR_ELEM_LEN, BN_ERR_FORMAT, "KV 4 ('test.strs'): element 1: string length",
         "past end"},
        {BAD_NESTED_DEEP, BN_ERR_FORMAT, "KV 6 ('test.nested')", "nested deeper than 8"},
        {BAD_BOOL, BN_ERR_FORMAT, "KV 6 ('test.bool'): bool value 2", "offset"},
        {BAD_BOOL_ARR, BN_ERR_FORMAT, "KV 6 ('test.bools'): element 2: bool value 2", "offset"},
        {BAD_NAME_LEN_HUGE, BN_ERR_FORMAT, "tensor 0: name length 8589934592", "past end"},
        {BAD_DATA_START, BN_ERR_FORMAT, "tensor 0 ('a'): data offset 0 + 32 bytes", "past end"},
    };
    int seen[N_FAULTS] = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bb b = build(cases[k].f);
        CHECK(!b.oom);
        seen[cases[k].f] = 1;
        /* exact-size copy so ASan sees any over-read */
        unsigned char *copy = malloc(b.n ? b.n : 1);
        if (copy) memcpy(copy, b.p, b.n);
        bn_gguf *g = NULL;
        bn_error err = {0};
        bn_status st = bn_gguf_open_memory(copy, b.n, &g, &err);
        CHECKF(st == cases[k].st && g == NULL, "fault %d: status %s (%s)", (int)cases[k].f,
               bn_status_str(st), err.msg);
        CHECKF(strstr(err.msg, cases[k].msg1) && strstr(err.msg, cases[k].msg2),
               "fault %d: message '%s' lacks '%s' / '%s'", (int)cases[k].f, err.msg, cases[k].msg1,
               cases[k].msg2);
        bn_gguf_close(g);
        free(copy);
        free(b.p);
    }
    for (int f = BAD_MAGIC; f < N_FAULTS; f++)
        CHECKF(seen[f], "fault %d has a case", f);

    /* The valid variants open and read back. */
    for (int f = OK_BASE; f <= OK_NO_TENSORS; f++) {
        bb b = build((enum fault)f);
        unsigned char *copy = malloc(b.n);
        if (copy) memcpy(copy, b.p, b.n);
        bn_gguf *g = NULL;
        bn_error err;
        CHECK_OK(bn_gguf_open_memory(copy, b.n, &g, &err), &err);
        if (g) {
            CHECK(bn_gguf_n_kv(g) == 7);
            CHECK(bn_gguf_version(g) == (f == OK_V2 ? 2u : 3u));
            CHECK(bn_gguf_alignment(g) == (f == OK_ALIGN64 ? 64u : 32u));
            CHECK(bn_gguf_data_offset(g) % bn_gguf_alignment(g) == 0 || f == OK_NO_TENSORS);
            CHECK(bn_gguf_data_offset(g) <= b.n);
            int64_t u;
            CHECK_OK(bn_gguf_find_i64(g, "test.u32", &u, &err), &err);
            CHECK(u == 7);
            const char *s;
            uint64_t len;
            CHECK_OK(bn_gguf_get_arr_str(g, bn_gguf_find_key(g, "test.strs"), 1, &s, &len, &err),
                     &err);
            CHECK(len == 0);
            CHECK_OK(bn_gguf_get_arr_str(g, bn_gguf_find_key(g, "test.strs"), 2, &s, &len, &err),
                     &err);
            CHECK(len == 3 && memcmp(s, "ccc", 3) == 0);
            int bv = 0;
            CHECK_OK(bn_gguf_get_bool(g, bn_gguf_find_key(g, "test.bool"), &bv, &err), &err);
            CHECK(bv == 1);
            if (f == OK_NO_TENSORS) {
                CHECK(bn_gguf_n_tensors(g) == 0 && bn_gguf_data_offset(g) == b.n);
            } else {
                CHECK(bn_gguf_n_tensors(g) == 2);
                int64_t tb = bn_gguf_find_tensor(g, "b");
                CHECK(tb == 1 && bn_gguf_tensor_nbytes(g, tb) == 34);
                const uint8_t *d = bn_gguf_tensor_data(g, tb);
                CHECK(d == copy + bn_gguf_data_offset(g) + bn_gguf_tensor_offset(g, tb));
                CHECK(d[0] == (uint8_t)bn_gguf_tensor_offset(g, tb));
                if (f == OK_I2S_BITNET || f == OK_I2S_BITNET25) {
                    CHECK(bn_gguf_tensor_type(g, 0) == BN_TYPE_I2_S);
                    CHECK(bn_gguf_tensor_nbytes(g, 0) == 128 / 4 * 2 + 32);
                }
            }
            bn_gguf_close(g);
        }
        free(copy);
        free(b.p);
    }
}

/* Random byte flips over a generated file: never a crash, only clean
 * statuses (ASan/UBSan builds catch the rest). */
static void test_mutations(void) {
    bb b = build(OK_BASE);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int n_ok = 0, n_bad = 0;
    int iters = quick_mode() ? 20000 : 100000;
    unsigned char *copy = malloc(b.n);
    CHECK(copy != NULL);
    for (int it = 0; copy && it < iters; it++) {
        memcpy(copy, b.p, b.n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            copy[rng % b.n] ^= (uint8_t)(1u << ((rng >> 32) % 8));
        }
        bn_gguf *g = NULL;
        bn_error err;
        bn_status st = bn_gguf_open_memory(copy, b.n, &g, &err);
        if (st == BN_OK) {
            n_ok++;
            for (int64_t i = 0; i < bn_gguf_n_kv(g); i++)
                (void)bn_gguf_key(g, i);
            for (int64_t i = 0; i < bn_gguf_n_tensors(g); i++) {
                const uint8_t *d = bn_gguf_tensor_data(g, i);
                uint64_t n = bn_gguf_tensor_nbytes(g, i);
                CHECK(d >= copy && d + n <= copy + b.n);
            }
            bn_gguf_close(g);
        } else {
            n_bad++;
            if (!(st == BN_ERR_FORMAT || st == BN_ERR_UNSUPPORTED)) CHECKF(0, "status %d", (int)st);
            if (err.msg[0] == '\0') CHECKF(0, "empty message");
        }
    }
    printf("mutations: %d accepted, %d rejected\n", n_ok, n_bad);
    free(copy);
    free(b.p);
}

/* ---------------------------------------------------------------------- */
/* Writer                                                                  */
/* ---------------------------------------------------------------------- */

static char g_dir[64];

static void test_writer_round_trip(void) {
    bn_gguf_writer *w = NULL;
    bn_error err;
    CHECK_OK(bn_gguf_writer_new(&w, &err), &err);
    if (!w) return;
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -2000000000;
    float f32 = 0.1f;
    uint8_t bo = 1;
    uint64_t u64 = 18446744073709551615ull;
    int64_t i64 = INT64_MIN;
    double f64 = -1.0 / 3.0;
    uint32_t align = 64;
    CHECK_OK(bn_gguf_writer_set_str(w, "general.architecture", "bitnet-b1.58", 12, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "general.alignment", BN_GGUF_UINT32, &align, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.u8", BN_GGUF_UINT8, &u8, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.i8", BN_GGUF_INT8, &i8, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.u16", BN_GGUF_UINT16, &u16, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.i16", BN_GGUF_INT16, &i16, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.u32", BN_GGUF_UINT32, &u32, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.i32", BN_GGUF_INT32, &i32, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.f32", BN_GGUF_FLOAT32, &f32, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.bool", BN_GGUF_BOOL, &bo, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.u64", BN_GGUF_UINT64, &u64, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.i64", BN_GGUF_INT64, &i64, &err), &err);
    CHECK_OK(bn_gguf_writer_set(w, "v.f64", BN_GGUF_FLOAT64, &f64, &err), &err);
    CHECK_OK(bn_gguf_writer_set_str(w, "v.str", "a\0b\xe2\x96\x81", 6, &err), &err);
    CHECK_OK(bn_gguf_writer_set_str(w, "v.empty", "", 0, &err), &err);
    /* numeric arrays of every scalar type */
    uint8_t raw[8 * 5];
    for (size_t k = 0; k < sizeof raw; k++)
        raw[k] = (uint8_t)(k * 37 + 1);
    uint8_t bools[5] = {0, 1, 1, 0, 1};
    char key[32];
    for (uint32_t t = 0; t < 13; t++) {
        if (!bn_gguf_vtype_size(t)) continue;
        snprintf(key, sizeof key, "arr.%s", bn_gguf_vtype_name(t));
        CHECK_OK(bn_gguf_writer_set_arr(w, key, (bn_gguf_vtype)t, t == BN_GGUF_BOOL ? bools : raw,
                                        5, &err),
                 &err);
    }
    CHECK_OK(bn_gguf_writer_set_arr(w, "arr.empty", BN_GGUF_INT32, NULL, 0, &err), &err);
    const char *strs[] = {"<unk>", "", "\xe5\xbc\x98", "x y"};
    CHECK_OK(bn_gguf_writer_set_arr_str(w, "arr.str", strs, NULL, 4, &err), &err);
    const char *bin[] = {"a\0b", "c"};
    uint64_t bin_lens[] = {3, 1};
    CHECK_OK(bn_gguf_writer_set_arr_str(w, "arr.bin", bin, bin_lens, 2, &err), &err);
    CHECK_OK(bn_gguf_writer_set_arr_str(w, "arr.str0", NULL, NULL, 0, &err), &err);
    /* nested: [[1,2],[3]] of u16, and [["s"]] */
    bb nb = {0};
    bb_u32(&nb, BN_GGUF_ARRAY);
    bb_u64(&nb, 2);
    bb_u32(&nb, BN_GGUF_UINT16);
    bb_u64(&nb, 2);
    bb_put(&nb, "\x01\x00\x02\x00", 4);
    bb_u32(&nb, BN_GGUF_UINT16);
    bb_u64(&nb, 1);
    bb_put(&nb, "\x03\x00", 2);
    CHECK_OK(bn_gguf_writer_set_raw(w, "arr.nested", BN_GGUF_ARRAY, nb.p, nb.n, &err), &err);
    free(nb.p);

    /* tensors of several types, with data from the quantizers where we can */
    float src[2 * 256];
    for (int k = 0; k < 2 * 256; k++)
        src[k] = (float)((k * 7) % 3 - 1) * 0.5f;
    struct {
        const char *name;
        int type, n_dims;
        int64_t ne[4];
    } ts[] = {
        {"t.f32", BN_TYPE_F32, 1, {5, 1, 1, 1}},    {"t.f16", BN_TYPE_F16, 2, {3, 2, 1, 1}},
        {"t.q8_0", BN_TYPE_Q8_0, 2, {64, 3, 1, 1}}, {"t.tq2_0", BN_TYPE_TQ2_0, 2, {256, 2, 1, 1}},
        {"t.q4_0", BN_TYPE_Q4_0, 3, {32, 2, 2, 1}}, {"t.i2_s", BN_TYPE_I2_S, 2, {128, 4, 1, 1}},
        {"t.4d", BN_TYPE_F32, 4, {2, 3, 4, 5}},
    };
    size_t n_ts = sizeof ts / sizeof ts[0];
    uint8_t *datas[7] = {0};
    size_t sizes[7] = {0};
    for (size_t k = 0; k < n_ts; k++) {
        int64_t rows = ts[k].ne[1] * ts[k].ne[2] * ts[k].ne[3];
        sizes[k] = bn_type_nbytes(ts[k].type, ts[k].ne[0], rows, &err);
        CHECKF(sizes[k] > 0, "%s: %s", ts[k].name, err.msg);
        datas[k] = malloc(sizes[k]);
        if (!datas[k]) continue;
        for (size_t q = 0; q < sizes[k]; q++)
            datas[k][q] = (uint8_t)(q * 13 + k);
        CHECK_OK(bn_gguf_writer_add_tensor(w, ts[k].name, ts[k].type, ts[k].n_dims, ts[k].ne,
                                           datas[k], sizes[k], &err),
                 &err);
    }
    (void)src;

    /* write to disk and to memory: same bytes */
    char path[128];
    snprintf(path, sizeof path, "%s/rt.gguf", g_dir);
    CHECK_OK(bn_gguf_writer_write(w, path, &err), &err);
    void *mem = NULL;
    size_t mem_size = 0;
    CHECK_OK(bn_gguf_writer_write_memory(w, &mem, &mem_size, &err), &err);
    size_t fsize = 0;
    unsigned char *fbytes = bn_test_read_file(path, &fsize);
    CHECK(fbytes && mem && fsize == mem_size && memcmp(fbytes, mem, fsize) == 0);
    free(fbytes);
    free(mem);
    bn_gguf_writer_free(w);

    bn_gguf *g = NULL;
    CHECK_OK(bn_gguf_open(path, &g, &err), &err);
    if (!g) goto out;
    CHECK(bn_gguf_version(g) == 3);
    CHECK(bn_gguf_alignment(g) == 64);
    CHECK(bn_gguf_data_offset(g) % 64 == 0);
    CHECK(bn_gguf_n_kv(g) == 15 + 11 + 1 + 3 + 1);
    int64_t iv;
    uint64_t uv;
    double dv;
    int bv;
    CHECK(bn_gguf_find_i64(g, "v.u8", &iv, &err) == BN_OK && iv == 200);
    CHECK(bn_gguf_find_i64(g, "v.i8", &iv, &err) == BN_OK && iv == -100);
    CHECK(bn_gguf_find_i64(g, "v.u16", &iv, &err) == BN_OK && iv == 60000);
    CHECK(bn_gguf_find_i64(g, "v.i16", &iv, &err) == BN_OK && iv == -30000);
    CHECK(bn_gguf_find_i64(g, "v.u32", &iv, &err) == BN_OK && iv == 4000000000ll);
    CHECK(bn_gguf_find_i64(g, "v.i32", &iv, &err) == BN_OK && iv == -2000000000ll);
    CHECK(bn_gguf_find_i64(g, "v.i64", &iv, &err) == BN_OK && iv == INT64_MIN);
    CHECK(bn_gguf_find_i64(g, "v.u64", &iv, &err) == BN_ERR_INVALID_ARG); /* does not fit */
    CHECK(strstr(err.msg, "v.u64") && strstr(err.msg, "18446744073709551615"));
    CHECK(bn_gguf_get_u64(g, bn_gguf_find_key(g, "v.u64"), &uv, &err) == BN_OK && uv == u64);
    CHECK(bn_gguf_get_u64(g, bn_gguf_find_key(g, "v.i8"), &uv, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_find_f64(g, "v.f32", &dv, &err) == BN_OK && dv == (double)0.1f);
    CHECK(bn_gguf_find_f64(g, "v.f64", &dv, &err) == BN_OK && dv == f64);
    CHECK(bn_gguf_find_f64(g, "v.u8", &dv, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_get_bool(g, bn_gguf_find_key(g, "v.bool"), &bv, &err) == BN_OK && bv == 1);
    CHECK(bn_gguf_get_bool(g, bn_gguf_find_key(g, "v.u8"), &bv, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_kv_type(g, bn_gguf_find_key(g, "v.f64")) == BN_GGUF_FLOAT64);
    const char *s;
    uint64_t len;
    CHECK(bn_gguf_find_str(g, "v.str", &s, &len, &err) == BN_OK && len == 6 &&
          memcmp(s, "a\0b\xe2\x96\x81", 6) == 0);
    CHECK(bn_gguf_find_str(g, "v.empty", &s, &len, &err) == BN_OK && len == 0);
    CHECK(bn_gguf_find_str(g, "v.u8", &s, &len, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_find_str(g, "v.none", &s, &len, &err) == BN_ERR_NOT_FOUND);
    for (uint32_t t = 0; t < 13; t++) {
        if (!bn_gguf_vtype_size(t)) continue;
        snprintf(key, sizeof key, "arr.%s", bn_gguf_vtype_name(t));
        bn_gguf_vtype et;
        uint64_t n;
        const void *data;
        CHECK_OK(bn_gguf_get_arr(g, bn_gguf_find_key(g, key), &et, &n, &data, &err), &err);
        CHECKF((uint32_t)et == t && n == 5 &&
                   memcmp(data, t == BN_GGUF_BOOL ? bools : raw, 5 * bn_gguf_vtype_size(t)) == 0,
               "%s", key);
    }
    bn_gguf_vtype et;
    uint64_t n;
    const void *data;
    CHECK_OK(bn_gguf_get_arr(g, bn_gguf_find_key(g, "arr.empty"), &et, &n, &data, &err), &err);
    CHECK(et == BN_GGUF_INT32 && n == 0);
    int64_t ks = bn_gguf_find_key(g, "arr.str");
    CHECK_OK(bn_gguf_get_arr(g, ks, &et, &n, &data, &err), &err);
    CHECK(et == BN_GGUF_STRING && n == 4);
    for (uint64_t j = 0; j < 4; j++) {
        CHECK_OK(bn_gguf_get_arr_str(g, ks, j, &s, &len, &err), &err);
        CHECK(len == strlen(strs[j]) && memcmp(s, strs[j], len) == 0);
    }
    CHECK(bn_gguf_get_arr_str(g, ks, 4, &s, &len, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_get_arr_str(g, bn_gguf_find_key(g, "arr.INT32"), 0, &s, &len, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK_OK(bn_gguf_get_arr_str(g, bn_gguf_find_key(g, "arr.bin"), 0, &s, &len, &err), &err);
    CHECK(len == 3 && memcmp(s, "a\0b", 3) == 0);
    CHECK_OK(bn_gguf_get_arr(g, bn_gguf_find_key(g, "arr.str0"), &et, &n, &data, &err), &err);
    CHECK(et == BN_GGUF_STRING && n == 0);
    CHECK_OK(bn_gguf_get_arr(g, bn_gguf_find_key(g, "arr.nested"), &et, &n, &data, &err), &err);
    CHECK(et == BN_GGUF_ARRAY && n == 2);
    CHECK(memcmp(data, "\x02\0\0\0\x02\0\0\0\0\0\0\0\x01\0\x02\0", 16) == 0);
    CHECK(bn_gguf_get_str(g, bn_gguf_find_key(g, "arr.nested"), &s, &len, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_n_tensors(g) == (int64_t)n_ts);
    for (size_t k = 0; k < n_ts; k++) {
        int64_t i = bn_gguf_find_tensor(g, ts[k].name);
        CHECKF(i == (int64_t)k, "%s", ts[k].name);
        if (i < 0) continue;
        CHECK(bn_gguf_tensor_type(g, i) == ts[k].type);
        CHECK(bn_gguf_tensor_n_dims(g, i) == ts[k].n_dims);
        for (int d = 0; d < 4; d++)
            CHECK(bn_gguf_tensor_ne(g, i, d) == ts[k].ne[d]);
        CHECK(bn_gguf_tensor_offset(g, i) % 64 == 0);
        CHECK(bn_gguf_tensor_nbytes(g, i) == sizes[k]);
        CHECK(datas[k] && memcmp(bn_gguf_tensor_data(g, i), datas[k], sizes[k]) == 0);
    }
    /* the file ends with the last tensor's padding */
    CHECK(bn_gguf_file_size(g) % 64 == 0);
    bn_gguf_close(g);
out:
    for (size_t k = 0; k < n_ts; k++)
        free(datas[k]);
    unlink(path);
}

static void test_writer_errors(void) {
    bn_gguf_writer *w = NULL;
    bn_error err;
    CHECK_OK(bn_gguf_writer_new(&w, &err), &err);
    if (!w) return;
    uint32_t v = 1;
    float f[4] = {0};
    int64_t ne[4] = {4, 1, 1, 1};
    CHECK_OK(bn_gguf_writer_set(w, "k", BN_GGUF_UINT32, &v, &err), &err);
    CHECK(bn_gguf_writer_set(w, "k", BN_GGUF_UINT32, &v, &err) == BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "'k'") && strstr(err.msg, "already set"));
    CHECK(bn_gguf_writer_set_str(w, "k", "x", 1, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, "", BN_GGUF_UINT32, &v, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, NULL, BN_GGUF_UINT32, &v, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, "s", BN_GGUF_STRING, "x", &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, "s", (bn_gguf_vtype)77, &v, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, "s", BN_GGUF_UINT32, NULL, &err) == BN_ERR_INVALID_ARG);
    uint8_t two = 2;
    CHECK(bn_gguf_writer_set(w, "b", BN_GGUF_BOOL, &two, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set_arr(w, "b", BN_GGUF_BOOL, &two, 1, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set_arr(w, "a", BN_GGUF_STRING, f, 1, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set_arr(w, "a", BN_GGUF_ARRAY, f, 1, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set_arr(w, "a", BN_GGUF_FLOAT32, NULL, 1, &err) == BN_ERR_INVALID_ARG);
    const char *bad[] = {"x", NULL};
    CHECK(bn_gguf_writer_set_arr_str(w, "a", bad, NULL, 2, &err) == BN_ERR_INVALID_ARG);
    uint32_t a48 = 48, a0 = 0;
    uint64_t a64 = 64;
    CHECK(bn_gguf_writer_set(w, "general.alignment", BN_GGUF_UINT32, &a48, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "power of two"));
    CHECK(bn_gguf_writer_set(w, "general.alignment", BN_GGUF_UINT32, &a0, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_set(w, "general.alignment", BN_GGUF_UINT64, &a64, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "UINT32"));

    CHECK_OK(bn_gguf_writer_add_tensor(w, "t", BN_TYPE_F32, 1, ne, f, 16, &err), &err);
    CHECK(bn_gguf_writer_add_tensor(w, "t", BN_TYPE_F32, 1, ne, f, 16, &err) == BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "'t'") && strstr(err.msg, "already"));
    CHECK(bn_gguf_writer_add_tensor(w, "u", 31, 1, ne, f, 16, &err) == BN_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "'u'") && strstr(err.msg, "unknown type 31"));
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 1, ne, f, 12, &err) == BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "12 bytes given") && strstr(err.msg, "16"));
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_Q8_0, 1, ne, f, 16, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "block size"));
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 0, ne, f, 16, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 5, ne, f, 16, &err) == BN_ERR_INVALID_ARG);
    int64_t neg[2] = {4, -1};
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 2, neg, f, 16, &err) ==
          BN_ERR_INVALID_ARG);
    int64_t big[4] = {1ll << 40, 1ll << 40, 1, 1};
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 2, big, f, 16, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_add_tensor(w, "u", BN_TYPE_F32, 1, ne, NULL, 16, &err) ==
          BN_ERR_INVALID_ARG);
    CHECK(bn_gguf_writer_add_tensor(w, "", BN_TYPE_F32, 1, ne, f, 16, &err) == BN_ERR_INVALID_ARG);

    /* I2_S needs a bitnet architecture: the write fails and leaves no file */
    int64_t ne2[2] = {128, 1};
    uint8_t i2[64] = {0};
    CHECK_OK(bn_gguf_writer_add_tensor(w, "q", BN_TYPE_I2_S, 2, ne2, i2, 64, &err), &err);
    char path[128];
    snprintf(path, sizeof path, "%s/bad.gguf", g_dir);
    CHECK(bn_gguf_writer_write(w, path, &err) == BN_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "'q'") && strstr(err.msg, "bitnet"));
    CHECK(access(path, F_OK) != 0);
    CHECK_OK(bn_gguf_writer_set_str(w, "general.architecture", "bitnet-25", 9, &err), &err);
    /* unwritable location: an I/O error and nothing left behind */
    CHECK(bn_gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err) == BN_ERR_IO);
    CHECK_OK(bn_gguf_writer_write(w, path, &err), &err);
    bn_gguf *g = NULL;
    CHECK_OK(bn_gguf_open(path, &g, &err), &err);
    CHECK(g && bn_gguf_n_tensors(g) == 2 && bn_gguf_tensor_type(g, 1) == BN_TYPE_I2_S);
    bn_gguf_close(g);
    /* an existing file is replaced whole */
    bn_gguf_writer_free(w);
    CHECK_OK(bn_gguf_writer_new(&w, &err), &err);
    CHECK_OK(bn_gguf_writer_write(w, path, &err), &err);
    CHECK_OK(bn_gguf_open(path, &g, &err), &err);
    CHECK(g && bn_gguf_n_tensors(g) == 0 && bn_gguf_n_kv(g) == 0 && bn_gguf_file_size(g) == 32);
    bn_gguf_close(g);
    bn_gguf_writer_free(w);
    unlink(path);
    bn_gguf_writer_free(NULL);

    /* no temporary files remain */
    DIR *dir = opendir(g_dir);
    int left = 0;
    if (dir) {
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] != '.') left++;
        }
        closedir(dir);
    }
    CHECKF(left == 0, "%d files left in %s", left, g_dir);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/bn_test_gguf.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_manifest();
    test_missing_and_tiny_files();
    test_faults();
    test_mutations();
    test_writer_round_trip();
    test_writer_errors();
    test_prefixes();
    rmdir(g_dir);
    return bn_test_finish("test_gguf");
}
