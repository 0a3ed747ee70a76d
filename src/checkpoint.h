/* Checkpoint readers (internal): SafeTensors and PyTorch zip (.pt) files are
 * read into one uniform list of named tensors that point into the mapped
 * files; checkpoint.c maps such a list to a GGUF image.
 *
 * Every reader checks every length, count, shape and offset against the
 * file size (overflow-safe) before it uses it, and never runs code from the
 * file: the PyTorch reader interprets pickles with a restricted unpickler that
 * only builds dicts of tensors (see pt_reader.c). */
#ifndef BN_CHECKPOINT_H
#define BN_CHECKPOINT_H

#include "common.h"

#define BN_CKPT_MAX_DIMS 4
#define BN_CKPT_MAX_NAME 512

/* Element types of checkpoint tensors (safetensors / torch names). */
typedef enum bn_dtype {
    BN_DT_F32 = 0,
    BN_DT_F16 = 1,
    BN_DT_BF16 = 2,
    BN_DT_I8 = 3,
    BN_DT_U8 = 4
} bn_dtype;

size_t bn_dtype_size(int dt);
const char *bn_dtype_name(int dt);

typedef struct bn_ckpt_tensor {
    char *name;                      /* owned, NUL-terminated */
    int dtype;                       /* bn_dtype */
    int n_dims;                      /* 0 (scalar) .. BN_CKPT_MAX_DIMS */
    int64_t shape[BN_CKPT_MAX_DIMS]; /* PyTorch order: shape[0] varies slowest */
    const uint8_t *data;             /* borrowed from a mapping of the set */
    uint64_t nbytes;                 /* numel * element size, checked */
} bn_ckpt_tensor;

/* A list of tensors plus the file mappings / buffers they point into. */
typedef struct bn_tensor_set {
    bn_ckpt_tensor *t;
    size_t n, cap;
    struct bn_tset_map {
        void *p;
        size_t size;
        int kind; /* 0 borrowed, 1 mmap, 2 malloc */
    } * maps;
    size_t n_maps, cap_maps;
} bn_tensor_set;

void bn_tset_init(bn_tensor_set *s);
void bn_tset_free(bn_tensor_set *s);
/* Add a tensor (name copied); fails on a duplicate name. */
bn_status bn_tset_add(bn_tensor_set *s, const char *name, size_t name_len, int dtype, int n_dims,
                      const int64_t *shape, const uint8_t *data, uint64_t nbytes, bn_error *err);
const bn_ckpt_tensor *bn_tset_find(const bn_tensor_set *s, const char *name);
/* Keep a mapping alive as long as the set (kind 1: munmap, 2: free). */
bn_status bn_tset_keep(bn_tensor_set *s, void *p, size_t size, int kind, bn_error *err);
/* numel of a tensor (checked when added). */
int64_t bn_ckpt_numel(const bn_ckpt_tensor *t);
/* Element i as float (F32/F16/BF16/I8/U8). */
float bn_ckpt_get(const bn_ckpt_tensor *t, int64_t i);

/* Map a whole file read-only (size 0 files map to an empty buffer). */
bn_status bn_map_file(const char *path, void **p, size_t *size, bn_error *err);
void bn_unmap_file(void *p, size_t size);

/* SafeTensors: one file held in memory (caller keeps it alive); a file; or
 * a directory / index (model.safetensors or model.safetensors.index.json
 * with its shards). */
bn_status bn_safetensors_parse(const void *data, size_t size, bn_tensor_set *out, bn_error *err);
bn_status bn_safetensors_open(const char *path, bn_tensor_set *out, bn_error *err);

/* PyTorch zip checkpoint (torch.save, format of torch >= 1.6) holding a dict
 * (or OrderedDict) of tensors. */
bn_status bn_pt_parse(const void *data, size_t size, bn_tensor_set *out, bn_error *err);
bn_status bn_pt_open(const char *path, bn_tensor_set *out, bn_error *err);

/* The GGUF image of a checkpoint held in memory: a safetensors buffer with
 * its config.json text (pt == 0), or a torch.save zip (pt != 0; the
 * original's ModelArgs). No tokenizer. For the fuzzers and tests; free *out
 * with bn_checkpoint_free_memory. */
bn_status bn_checkpoint_image_memory(int pt, const void *data, size_t size, const char *config,
                                     size_t config_len, const bn_checkpoint_opts *opts, void **out,
                                     size_t *out_size, bn_error *err);

#endif /* BN_CHECKPOINT_H */
