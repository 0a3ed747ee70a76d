/* A tiny test harness: CHECK records a failure and goes on; the program
 * prints "N passed, N failed" and exits non-zero on any failure. */
#ifndef BN_TEST_UTIL_H
#define BN_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bn_test_passed = 0;
static int bn_test_failed = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            bn_test_passed++;                                                                      \
        } else {                                                                                   \
            bn_test_failed++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            bn_test_passed++;                                                                      \
        } else {                                                                                   \
            bn_test_failed++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Assert a bn_status is BN_OK, printing the error message otherwise. */
#define CHECK_OK(expr, errp)                                                                       \
    do {                                                                                           \
        bn_status st_ = (expr);                                                                    \
        CHECKF(st_ == BN_OK, "%s -> %s: %s", #expr, bn_status_str(st_), (errp)->msg);              \
    } while (0)

static inline int bn_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, bn_test_passed, bn_test_failed);
    return bn_test_failed ? 1 : 0;
}

/* Read a whole file (NULL on failure); *size receives its length. */
static inline unsigned char *bn_test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *size = (size_t)n;
    }
    return buf;
}

#ifdef BN_CHECKPOINT_H
/* A fuzz seed of the checkpoint mapping (tests/fuzz/corpus/ckpt/: one byte
 * for fuzz_ckpt, then the file; `pt` 1 for a torch.save zip, 0 for
 * safetensors) converts to a GGUF image that the reader accepts; every
 * truncation of it is refused cleanly. Only for tests that include
 * checkpoint.h before this header. */
static inline void bn_test_image_seed(int pt, const char *path) {
    size_t n = 0;
    unsigned char *b = bn_test_read_file(path, &n);
    CHECKF(b != NULL && n > 1, "%s", path);
    if (!b) return;
    static const char cfg[] =
        "{\"architectures\":[\"BitNetForCausalLM\"],\"vocab_size\":32,\"hidden_size\":128,"
        "\"intermediate_size\":256,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
        "\"num_key_value_heads\":1,\"hidden_act\":\"relu2\",\"max_position_embeddings\":64,"
        "\"rms_norm_eps\":1e-5,\"rope_theta\":500000.0}";
    void *img = NULL;
    size_t sz = 0;
    bn_error err;
    CHECK_OK(
        bn_checkpoint_image_memory(pt, b + 1, n - 1, cfg, sizeof cfg - 1, NULL, &img, &sz, &err),
        &err);
    bn_gguf *g = NULL;
    if (img) CHECK_OK(bn_gguf_open_memory(img, sz, &g, &err), &err);
    CHECKF(g && bn_gguf_n_tensors(g) == 13, "%s", path);
    bn_gguf_close(g);
    bn_checkpoint_free_memory(img);
    int all = 1;
    for (size_t cut = 0; cut + 1 < n; cut += 61) {
        img = NULL;
        if (bn_checkpoint_image_memory(pt, b + 1, cut, cfg, sizeof cfg - 1, NULL, &img, &sz,
                                       &err) == BN_OK)
            all = 0;
        bn_checkpoint_free_memory(img);
    }
    CHECKF(all, "%s", path);
    free(b);
}
#endif /* BN_CHECKPOINT_H */

#define TESTDATA "../shared/testdata/"

#endif /* BN_TEST_UTIL_H */
