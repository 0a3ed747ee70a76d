/* GGUF internals shared with tests and tools (not part of the public API). */
#ifndef BN_GGUF_INTERNAL_H
#define BN_GGUF_INTERNAL_H

#include "common.h"

/* Limits of the reader. */
#define BN_GGUF_MAX_DIMS 4
#define BN_GGUF_MAX_ARRAY_DEPTH 8 /* arrays of arrays nest at most this deep */
#define BN_GGUF_DEFAULT_ALIGNMENT 32

/* Bytes of one scalar value of type t, 0 for STRING, ARRAY and unknown. */
size_t bn_gguf_vtype_size(uint32_t t);
/* "UINT8", ..., "FLOAT64"; "?" for unknown. */
const char *bn_gguf_vtype_name(uint32_t t);

/* Build the file in memory instead of on disk (malloc'd; free with free()).
 * Same layout and checks as bn_gguf_writer_write. */
bn_status bn_gguf_writer_write_memory(bn_gguf_writer *w, void **out, size_t *size, bn_error *err);

/* Add a KV pair whose value payload (the bytes after the type field) is
 * given pre-serialized, e.g. a nested array. Only the key is checked; the
 * reader validates the rest. For tests. */
bn_status bn_gguf_writer_set_raw(bn_gguf_writer *w, const char *key, bn_gguf_vtype type,
                                 const void *payload, size_t size, bn_error *err);

/* 1 when [p, p + n) lies in g's read-only file mapping (bn_gguf_open),
 * whose pages a process may drop (madvise) and fault in again from the
 * file; 0 for a GGUF in memory or a range outside it. */
int bn_gguf_in_mapping(const bn_gguf *g, const void *p, size_t n);

#endif /* BN_GGUF_INTERNAL_H */
