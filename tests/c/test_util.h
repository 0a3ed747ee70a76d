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

#define TESTDATA "../shared/testdata/"

#endif /* BN_TEST_UTIL_H */
