/*
 * libbitnet: run BitNet b1.58 (ternary-weight) language models on the CPU.
 *
 * One public header. Every object is an opaque handle owned by the caller and
 * released with its *_free / *_close function. Functions that can fail return
 * a bn_status and, when `err` is not NULL, fill it with a message that names
 * the problem (field, offset, value). Nothing in the library aborts or exits.
 *
 * Data flows one way:
 *   file -> bn_gguf (reader) -> bn_model (weights bound to kernels)
 *        -> bn_context (KV cache, scratch) -> logits -> bn_sampler -> token
 *        -> bn_tokenizer -> text
 *
 * Thread safety: a bn_model is immutable after loading and may be shared by
 * any number of contexts used from different threads. A bn_context, a
 * bn_sampler and a bn_detok are used by one thread at a time.
 */
#ifndef BITNET_H
#define BITNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(BN_SHARED)
#ifdef BN_BUILD
#define BN_API __declspec(dllexport)
#else
#define BN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define BN_API __attribute__((visibility("default")))
#else
#define BN_API
#endif

#define BN_VERSION_MAJOR 0
#define BN_VERSION_MINOR 1
#define BN_VERSION_PATCH 0
#define BN_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum bn_status {
    BN_OK = 0,
    BN_ERR_INVALID_ARG = 1, /* bad parameter: NULL, out of range, wrong type */
    BN_ERR_NOT_FOUND = 2,   /* file, key or tensor does not exist */
    BN_ERR_IO = 3,          /* open / read / write / mmap failed */
    BN_ERR_FORMAT = 4,      /* file is malformed, truncated or inconsistent */
    BN_ERR_UNSUPPORTED = 5, /* well-formed, but not something we can run */
    BN_ERR_NOMEM = 6,       /* allocation failed */
    BN_ERR_RANGE = 7,       /* context full, prompt too long, id out of range */
    BN_ERR_TOKENIZER = 8,   /* text cannot be encoded (e.g. disallowed special) */
    BN_ERR_CANCELLED = 9,   /* the abort callback asked to stop */
    BN_ERR_INTERNAL = 10
} bn_status;

#define BN_ERROR_MSG_MAX 512

typedef struct bn_error {
    bn_status code;
    char msg[BN_ERROR_MSG_MAX];
} bn_error;

/* Static, never NULL: "ok", "invalid argument", ... */
BN_API const char *bn_status_str(bn_status s);

/* ------------------------------------------------------------------------ */
/* Library and CPU                                                          */
/* ------------------------------------------------------------------------ */

BN_API const char *bn_version(void);
/* Space-separated CPU features detected at run time ("avx2 fma f16c ...").  */
BN_API const char *bn_cpu_features(void);
/* Name of the kernel set chosen for this CPU ("avx512vnni", "avx2", "neon",
 * "reference"). */
BN_API const char *bn_kernel_name(void);
/* Build description: compiler, flags, sanitizers. */
BN_API const char *bn_build_info(void);

/* ------------------------------------------------------------------------ */
/* Tensor types (ggml numbering, as stored in GGUF files)                   */
/* ------------------------------------------------------------------------ */

typedef enum bn_type {
    BN_TYPE_F32 = 0,
    BN_TYPE_F16 = 1,
    BN_TYPE_Q4_0 = 2,
    BN_TYPE_Q4_1 = 3,
    BN_TYPE_Q5_0 = 6,
    BN_TYPE_Q5_1 = 7,
    BN_TYPE_Q8_0 = 8,
    BN_TYPE_Q8_1 = 9,
    BN_TYPE_Q2_K = 10,
    BN_TYPE_Q3_K = 11,
    BN_TYPE_Q4_K = 12,
    BN_TYPE_Q5_K = 13,
    BN_TYPE_Q6_K = 14,
    BN_TYPE_Q8_K = 15,
    BN_TYPE_IQ2_XXS = 16,
    BN_TYPE_IQ2_XS = 17,
    BN_TYPE_IQ3_XXS = 18,
    BN_TYPE_IQ1_S = 19,
    BN_TYPE_IQ4_NL = 20,
    BN_TYPE_IQ3_S = 21,
    BN_TYPE_IQ2_S = 22,
    BN_TYPE_IQ4_XS = 23,
    BN_TYPE_I8 = 24,
    BN_TYPE_I16 = 25,
    BN_TYPE_I32 = 26,
    BN_TYPE_I64 = 27,
    BN_TYPE_F64 = 28,
    BN_TYPE_IQ1_M = 29,
    BN_TYPE_BF16 = 30,
    BN_TYPE_TQ1_0 = 34,
    BN_TYPE_TQ2_0 = 35,
    /* bitnet.cpp's 2-bit ternary type. Id 36 means I2_S only in files whose
     * general.architecture is "bitnet-b1.58" or "bitnet-25"; upstream ggml
     * reused 36 for a type it later removed. */
    BN_TYPE_I2_S = 36,
    BN_TYPE_COUNT_ = 40
} bn_type;

/* "f32", "tq2_0", "i2_s", ...; "unknown" for an id we do not know. */
BN_API const char *bn_type_name(int type);
/* Parse a type name (case-insensitive); returns -1 when unknown. */
BN_API int bn_type_from_name(const char *name);
/* Bytes that a tensor of `type` with `n_rows` rows of `n_cols` elements
 * takes in a file, 0 (with err) when the shape does not fit the type's block
 * size or the size overflows. */
BN_API size_t bn_type_nbytes(int type, int64_t n_cols, int64_t n_rows, bn_error *err);

/* Quantize float rows into `type` (F32, F16, BF16, Q8_0, Q4_0, Q6_K, TQ1_0,
 * TQ2_0, I2_S). For the ternary types the input must already hold ternary
 * values times one scale per tensor (as BitNet's absmean quantizer makes
 * them); `bn_ternarize` produces such values from master weights.
 * `dst_size` must be at least bn_type_nbytes(type, n_cols, n_rows). */
BN_API bn_status bn_quantize(int type, const float *src, int64_t n_cols, int64_t n_rows, void *dst,
                             size_t dst_size, bn_error *err);
/* Inverse of bn_quantize: expand `src` into float rows. */
BN_API bn_status bn_dequantize(int type, const void *src, size_t src_size, int64_t n_cols,
                               int64_t n_rows, float *dst, bn_error *err);
/* BitNet b1.58 absmean weight quantization (as in the paper and in
 * transformers' BitNet integration): s = max(mean|w|, 1e-5);
 * q = clamp(round(w / s), -1, 1). Writes q into `q` (may be NULL) and returns
 * s in *scale. */
BN_API bn_status bn_ternarize(const float *w, int64_t n, int8_t *q, float *scale, bn_error *err);

/* ------------------------------------------------------------------------ */
/* GGUF reader                                                              */
/* ------------------------------------------------------------------------ */

typedef enum bn_gguf_vtype {
    BN_GGUF_UINT8 = 0,
    BN_GGUF_INT8 = 1,
    BN_GGUF_UINT16 = 2,
    BN_GGUF_INT16 = 3,
    BN_GGUF_UINT32 = 4,
    BN_GGUF_INT32 = 5,
    BN_GGUF_FLOAT32 = 6,
    BN_GGUF_BOOL = 7,
    BN_GGUF_STRING = 8,
    BN_GGUF_ARRAY = 9,
    BN_GGUF_UINT64 = 10,
    BN_GGUF_INT64 = 11,
    BN_GGUF_FLOAT64 = 12
} bn_gguf_vtype;

typedef struct bn_gguf bn_gguf;

/* Memory-map and validate a GGUF v2/v3 file. Every count, length, shape and
 * offset is checked against the file size before use. */
BN_API bn_status bn_gguf_open(const char *path, bn_gguf **out, bn_error *err);
/* Same, over a caller-owned buffer that must outlive the handle (fuzzing,
 * tests). */
BN_API bn_status bn_gguf_open_memory(const void *data, size_t size, bn_gguf **out, bn_error *err);
BN_API void bn_gguf_close(bn_gguf *g);

BN_API uint32_t bn_gguf_version(const bn_gguf *g);
BN_API uint32_t bn_gguf_alignment(const bn_gguf *g);
BN_API uint64_t bn_gguf_file_size(const bn_gguf *g);
BN_API uint64_t bn_gguf_data_offset(const bn_gguf *g); /* start of tensor data */

BN_API int64_t bn_gguf_n_kv(const bn_gguf *g);
BN_API int64_t bn_gguf_find_key(const bn_gguf *g, const char *key); /* -1 if absent */
BN_API const char *bn_gguf_key(const bn_gguf *g, int64_t i);        /* NUL-terminated */
BN_API bn_gguf_vtype bn_gguf_kv_type(const bn_gguf *g, int64_t i);
/* Scalar getters convert between integer types when the value fits, and
 * between float types; they fail with BN_ERR_INVALID_ARG otherwise. */
BN_API bn_status bn_gguf_get_i64(const bn_gguf *g, int64_t i, int64_t *out, bn_error *err);
BN_API bn_status bn_gguf_get_u64(const bn_gguf *g, int64_t i, uint64_t *out, bn_error *err);
BN_API bn_status bn_gguf_get_f64(const bn_gguf *g, int64_t i, double *out, bn_error *err);
BN_API bn_status bn_gguf_get_bool(const bn_gguf *g, int64_t i, int *out, bn_error *err);
/* String value (not NUL-terminated in the file): pointer and length. */
BN_API bn_status bn_gguf_get_str(const bn_gguf *g, int64_t i, const char **s, uint64_t *len,
                                 bn_error *err);
/* Arrays: element type, length; raw little-endian data for numeric arrays,
 * and per-element access for string arrays. */
BN_API bn_status bn_gguf_get_arr(const bn_gguf *g, int64_t i, bn_gguf_vtype *elem_type, uint64_t *n,
                                 const void **data, bn_error *err);
BN_API bn_status bn_gguf_get_arr_str(const bn_gguf *g, int64_t i, uint64_t j, const char **s,
                                     uint64_t *len, bn_error *err);
/* Convenience: look up by key. Return BN_ERR_NOT_FOUND when absent. */
BN_API bn_status bn_gguf_find_i64(const bn_gguf *g, const char *key, int64_t *out, bn_error *err);
BN_API bn_status bn_gguf_find_f64(const bn_gguf *g, const char *key, double *out, bn_error *err);
BN_API bn_status bn_gguf_find_str(const bn_gguf *g, const char *key, const char **s, uint64_t *len,
                                  bn_error *err);

BN_API int64_t bn_gguf_n_tensors(const bn_gguf *g);
BN_API int64_t bn_gguf_find_tensor(const bn_gguf *g, const char *name); /* -1 if absent */
BN_API const char *bn_gguf_tensor_name(const bn_gguf *g, int64_t i);    /* NUL-terminated */
BN_API int bn_gguf_tensor_type(const bn_gguf *g, int64_t i);
BN_API int bn_gguf_tensor_n_dims(const bn_gguf *g, int64_t i);
/* ne[0] is the fastest-varying (row length), as in ggml. Unused dims are 1. */
BN_API int64_t bn_gguf_tensor_ne(const bn_gguf *g, int64_t i, int dim);
BN_API uint64_t bn_gguf_tensor_offset(const bn_gguf *g, int64_t i); /* from data start */
BN_API uint64_t bn_gguf_tensor_nbytes(const bn_gguf *g, int64_t i);
/* Pointer into the mapping (never copied). */
BN_API const void *bn_gguf_tensor_data(const bn_gguf *g, int64_t i);

/* ------------------------------------------------------------------------ */
/* GGUF writer                                                              */
/* ------------------------------------------------------------------------ */

typedef struct bn_gguf_writer bn_gguf_writer;

BN_API bn_status bn_gguf_writer_new(bn_gguf_writer **out, bn_error *err);
BN_API void bn_gguf_writer_free(bn_gguf_writer *w);
/* Scalar KV pairs. `value` points at one value of `type` (bool: one uint8).
 * Keys must be unique. */
BN_API bn_status bn_gguf_writer_set(bn_gguf_writer *w, const char *key, bn_gguf_vtype type,
                                    const void *value, bn_error *err);
BN_API bn_status bn_gguf_writer_set_str(bn_gguf_writer *w, const char *key, const char *s,
                                        uint64_t len, bn_error *err);
/* Numeric array of `n` elements of `elem_type` (copied). */
BN_API bn_status bn_gguf_writer_set_arr(bn_gguf_writer *w, const char *key, bn_gguf_vtype elem_type,
                                        const void *data, uint64_t n, bn_error *err);
/* String array: `lens` may be NULL for NUL-terminated strings. */
BN_API bn_status bn_gguf_writer_set_arr_str(bn_gguf_writer *w, const char *key,
                                            const char *const *strs, const uint64_t *lens,
                                            uint64_t n, bn_error *err);
/* Tensor of `type` with dims ne[0..n_dims) (ne[0] fastest). `data` holds
 * exactly bn_type_nbytes bytes and is copied. */
BN_API bn_status bn_gguf_writer_add_tensor(bn_gguf_writer *w, const char *name, int type,
                                           int n_dims, const int64_t *ne, const void *data,
                                           size_t nbytes, bn_error *err);
/* Write a GGUF v3 file (alignment from general.alignment, default 32). */
BN_API bn_status bn_gguf_writer_write(bn_gguf_writer *w, const char *path, bn_error *err);

/* ------------------------------------------------------------------------ */
/* Tokenizer                                                                */
/* ------------------------------------------------------------------------ */

typedef struct bn_tokenizer bn_tokenizer;

typedef enum bn_tokenizer_kind {
    BN_TOKENIZER_BPE = 1, /* byte-level BPE (Llama-3 / tiktoken, GPT-2) */
    BN_TOKENIZER_SPM = 2  /* SentencePiece BPE with byte fallback (LLaMA) */
} bn_tokenizer_kind;

/* tiktoken rank file ("base64 rank" per line), with the Llama-3 pattern and
 * its 256 special tokens (128000..128255). */
BN_API bn_status bn_tokenizer_load_tiktoken(const char *path, bn_tokenizer **out, bn_error *err);
/* SentencePiece tokenizer.model (protobuf). */
BN_API bn_status bn_tokenizer_load_spm(const char *path, bn_tokenizer **out, bn_error *err);
/* Hugging Face tokenizer.json (byte-level BPE). */
BN_API bn_status bn_tokenizer_load_hf_json(const char *path, bn_tokenizer **out, bn_error *err);
/* The vocabulary stored in a GGUF file (tokenizer.ggml.*). */
BN_API bn_status bn_tokenizer_from_gguf(const bn_gguf *g, bn_tokenizer **out, bn_error *err);
/* Any of the above, chosen from the file's contents. */
BN_API bn_status bn_tokenizer_load(const char *path, bn_tokenizer **out, bn_error *err);
BN_API void bn_tokenizer_free(bn_tokenizer *t);

BN_API bn_tokenizer_kind bn_tokenizer_get_kind(const bn_tokenizer *t);
BN_API int32_t bn_tokenizer_n_vocab(const bn_tokenizer *t);
BN_API int32_t bn_tokenizer_bos(const bn_tokenizer *t); /* -1 when none */
BN_API int32_t bn_tokenizer_eos(const bn_tokenizer *t);
BN_API int32_t bn_tokenizer_eot(const bn_tokenizer *t); /* <|eot_id|>, or eos */
BN_API int32_t bn_tokenizer_pad(const bn_tokenizer *t);
/* Id of a special token by its text ("<|eot_id|>"), -1 when not special. */
BN_API int32_t bn_tokenizer_special_id(const bn_tokenizer *t, const char *text);
BN_API int bn_tokenizer_is_special(const bn_tokenizer *t, int32_t id);
/* The stored text of a token (for SPM: the piece with its "\xe2\x96\x81"). */
BN_API bn_status bn_tokenizer_token_text(const bn_tokenizer *t, int32_t id, const char **s,
                                         size_t *len, bn_error *err);

/* Special-token handling, with tiktoken's semantics:
 * - a special token listed in `allowed` (or any, with allow_all) is encoded
 *   as its id;
 * - text of a special token that is disallowed (all not allowed, by default)
 *   is an error (BN_ERR_TOKENIZER naming the token);
 * - with disallow_none set, special-token text not allowed is encoded as
 *   plain text. */
typedef struct bn_encode_opts {
    int add_bos;
    int add_eos;
    int allow_all_special;
    const char *const *allowed_special;
    size_t n_allowed;
    int disallow_none;                     /* 0: all not allowed are errors (tiktoken default) */
    const char *const *disallowed_special; /* used when disallow_none == 0 and non-NULL */
    size_t n_disallowed;
} bn_encode_opts;

/* Encode `len` bytes of UTF-8 text. `opts` may be NULL (defaults: no bos, no
 * eos, all specials disallowed). Writes at most `cap` ids; *n_out receives the
 * number needed, so a call with cap 0 sizes the buffer (BN_ERR_RANGE when
 * cap is too small). Invalid UTF-8 bytes are encoded as their raw bytes, as
 * tiktoken does for bytes input. */
BN_API bn_status bn_tokenize(const bn_tokenizer *t, const char *text, size_t len,
                             const bn_encode_opts *opts, int32_t *out, size_t cap, size_t *n_out,
                             bn_error *err);
/* Bytes of one token as it appears in decoded text (may be a partial UTF-8
 * sequence). */
BN_API bn_status bn_token_to_bytes(const bn_tokenizer *t, int32_t id, char *buf, size_t cap,
                                   size_t *n_out, bn_error *err);
/* Decode ids to bytes (specials included as their text unless skip_special).
 * Same sizing convention as bn_tokenize. */
BN_API bn_status bn_detokenize(const bn_tokenizer *t, const int32_t *ids, size_t n,
                               int skip_special, char *buf, size_t cap, size_t *n_out,
                               bn_error *err);

/* Streaming detokenizer: holds back an incomplete UTF-8 sequence until it is
 * complete, so streamed text never contains a broken character that the
 * whole decode would not. */
typedef struct bn_detok bn_detok;
BN_API bn_status bn_detok_new(const bn_tokenizer *t, int skip_special, bn_detok **out,
                              bn_error *err);
BN_API void bn_detok_free(bn_detok *d);
/* Push one id; *text and *len receive the bytes now ready (valid until the next
 * call). */
BN_API bn_status bn_detok_push(bn_detok *d, int32_t id, const char **text, size_t *len,
                               bn_error *err);
/* Flush what is held back (invalid tails become U+FFFD, as a full decode). */
BN_API bn_status bn_detok_flush(bn_detok *d, const char **text, size_t *len, bn_error *err);

/* The original BitNet ChatFormat: bos, then for each message its header
 * ("System: ", "User: " or "Assistant: "), the stripped content and
 * <|eot_id|>; with add_generation_prompt the prompt ends with the
 * "Assistant: " header for the model to complete. Same sizing convention as
 * bn_tokenize. */
typedef struct bn_chat_message {
    const char *role;
    const char *content;
} bn_chat_message;
BN_API bn_status bn_chat_encode_dialog(const bn_tokenizer *t, const bn_chat_message *msgs, size_t n,
                                       int add_generation_prompt, int32_t *out, size_t cap,
                                       size_t *n_out, bn_error *err);

/* The chat template that the official bitnet-b1.58-2B-4T GGUF stores
 * (tokenizer.chat_template): bos, then "{Role}: {content}<|eot_id|>" per
 * message encoded as one text, and "Assistant: " with add_generation_prompt.
 * Same sizing convention as bn_tokenize. */
BN_API bn_status bn_chat_encode_template(const bn_tokenizer *t, const bn_chat_message *msgs,
                                         size_t n, int add_generation_prompt, int32_t *out,
                                         size_t cap, size_t *n_out, bn_error *err);

/* ------------------------------------------------------------------------ */
/* Model                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct bn_model bn_model;

typedef struct bn_model_params {
    int use_mmap; /* 1 (default): weights used in place from the mapping */
    int n_layers; /* > 0: load only the first n layers (FastGen num_layers) */
} bn_model_params;

BN_API bn_model_params bn_model_default_params(void);
/* Load a GGUF model. Architectures: bitnet-b1.58, bitnet-25, bitnet, llama. */
BN_API bn_status bn_model_load(const char *path, const bn_model_params *params, bn_model **out,
                               bn_error *err);
BN_API void bn_model_free(bn_model *m);

typedef struct bn_model_config {
    char arch[32];
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    float norm_eps;
    float rope_theta;
    int32_t rope_dim;
    int32_t ffn_act;     /* 0: SiLU-gated, 1: relu²-gated */
    int32_t tied_output; /* 1 when the head reuses the token embedding */
    int32_t weight_type; /* type of the BitLinear weights (most common) */
    int32_t embd_type;
    int32_t output_type;
} bn_model_config;

BN_API void bn_model_get_config(const bn_model *m, bn_model_config *out);
BN_API int64_t bn_model_n_params(const bn_model *m);
/* Bytes of weights the model reads (mapped or resident). */
BN_API uint64_t bn_model_weight_bytes(const bn_model *m);
/* The file's metadata, for `bitnet info` and the Python config. */
BN_API const bn_gguf *bn_model_gguf(const bn_model *m);
/* The tokenizer stored in the file, or NULL when it has none (borrowed). */
BN_API const bn_tokenizer *bn_model_tokenizer(const bn_model *m);

/* ------------------------------------------------------------------------ */
/* Checkpoints in other formats                                             */
/* ------------------------------------------------------------------------ */

/* What a path holds (from its contents, not its name). bn_model_load takes
 * any of them: a non-GGUF checkpoint is converted to a GGUF image in memory
 * first (default options). */
typedef enum bn_ckpt_format {
    BN_CKPT_UNKNOWN = 0,
    BN_CKPT_GGUF = 1,
    BN_CKPT_SAFETENSORS = 2, /* a .safetensors file (or .index.json) */
    BN_CKPT_HF_DIR = 3,      /* directory with model.safetensors[.index.json] + config.json */
    BN_CKPT_PT = 4,          /* a torch.save zip (the original's model_state_*.pt) */
    BN_CKPT_PT_DIR = 5       /* directory with model_state_int2.pt / _fp16.pt */
} bn_ckpt_format;

BN_API bn_ckpt_format bn_checkpoint_sniff(const char *path);
BN_API const char *bn_checkpoint_format_name(bn_ckpt_format f); /* "gguf", "pt", ... */

typedef struct bn_checkpoint_opts {
    /* Type of the BitLinear weights: -1 (auto: ternary sources as i2_s for
     * bitnet-b1.58, else tq2_0; float master weights kept as they are, to be
     * ternarized at load), or BN_TYPE_I2_S / TQ1_0 / TQ2_0 / F16 / BF16 /
     * F32. Float types written from ternary sources hold master weights that
     * absmean-ternarize back to the same values and scale. */
    int weight_type;
/* As -1, but float master weights of bitnet-b1.58 are ternarized into I2_S
 * in the image (what bn_model_load uses: the values it would compute at load,
 * in an 8x smaller image). */
#define BN_CKPT_TYPE_LOAD (-2)
    /* Type of token_embd (and output.weight when untied): -1 keeps the
     * source's float type; or F16, Q8_0, Q6_K, F32, BF16 ... */
    int head_type;
    /* Directory of the original's checkpoints: 0 or 1 prefer
     * model_state_int2.pt, 2 prefers model_state_fp16.pt. */
    int pt_variant;
    /* 1 (default): write tokenizer.json's vocabulary into the GGUF. */
    int tokenizer;
} bn_checkpoint_opts;

BN_API bn_checkpoint_opts bn_checkpoint_default_opts(void);

/* Called after each tensor; a non-zero return cancels (BN_ERR_CANCELLED). */
typedef int (*bn_progress_fn)(void *user, const char *tensor, int64_t done, int64_t total);

/* Convert a checkpoint (see bn_ckpt_format) to GGUF: written to `out_path`
 * when it is not NULL, else returned in *out_mem / *out_size (release with
 * bn_checkpoint_free_memory). `opts` may be NULL (defaults). */
BN_API bn_status bn_checkpoint_to_gguf(const char *src, const bn_checkpoint_opts *opts,
                                       const char *out_path, void **out_mem, size_t *out_size,
                                       bn_progress_fn progress, void *user, bn_error *err);
BN_API void bn_checkpoint_free_memory(void *p);

/* ------------------------------------------------------------------------ */
/* Context: KV cache, scratch, evaluation                                   */
/* ------------------------------------------------------------------------ */

typedef struct bn_context bn_context;

/* What the KV cache stores. F16 (IEEE half, as llama.cpp's default cache)
 * takes half the memory and half the bytes a decode step's attention reads;
 * keys and values are rounded to half precision as they are stored. */
typedef enum bn_kv_type { BN_KV_F32 = 0, BN_KV_F16 = 1 } bn_kv_type;

typedef struct bn_context_params {
    int32_t n_ctx;     /* KV positions per sequence; 0: the model's n_ctx_train */
    int32_t n_seq;     /* independent sequences (KV slots); default 1 */
    int32_t n_batch;   /* max tokens per bn_decode call; 0: 512 */
    int32_t n_threads; /* 0: all cores */
    int32_t kv_type;   /* bn_kv_type; default BN_KV_F32 */
} bn_context_params;

BN_API bn_context_params bn_context_default_params(void);
BN_API bn_status bn_context_new(const bn_model *m, const bn_context_params *params,
                                bn_context **out, bn_error *err);
BN_API void bn_context_free(bn_context *c);
BN_API int32_t bn_context_n_ctx(const bn_context *c);
BN_API int32_t bn_context_n_seq(const bn_context *c);
BN_API uint64_t bn_context_kv_bytes(const bn_context *c);
BN_API uint64_t bn_context_scratch_bytes(const bn_context *c);
BN_API bn_status bn_context_set_threads(bn_context *c, int32_t n_threads, bn_error *err);
/* Called between layers; a non-zero return stops bn_decode with
 * BN_ERR_CANCELLED. */
typedef int (*bn_abort_fn)(void *user);
BN_API void bn_context_set_abort(bn_context *c, bn_abort_fn fn, void *user);

/* A batch of tokens, each with its position and sequence. Positions of one
 * sequence must continue its KV history (pos == tokens already cached for
 * that sequence, then +1 per token). logits[i] != 0 asks for the logits after
 * token i; NULL logits means: the last token of the batch only. */
typedef struct bn_batch {
    int32_t n_tokens;
    const int32_t *token;
    const int32_t *pos;    /* NULL: continue each sequence */
    const int32_t *seq_id; /* NULL: all in sequence 0 */
    const int8_t *logits;
} bn_batch;

BN_API bn_status bn_decode(bn_context *c, const bn_batch *batch, bn_error *err);
/* Logits [n_vocab] for batch token i that asked for them (i = -1: the last
 * one); NULL when not computed. Valid until the next bn_decode. */
BN_API const float *bn_get_logits(const bn_context *c, int32_t i);
/* Tokens cached for a sequence. */
BN_API int32_t bn_kv_seq_len(const bn_context *c, int32_t seq_id);
/* Forget positions >= n_keep of a sequence (n_keep 0 clears it). */
BN_API bn_status bn_kv_seq_truncate(bn_context *c, int32_t seq_id, int32_t n_keep, bn_error *err);
/* Copy the cached prefix of `src` into `dst` (shared prompt prefixes). */
BN_API bn_status bn_kv_seq_copy(bn_context *c, int32_t src, int32_t dst, int32_t n, bn_error *err);

/* ------------------------------------------------------------------------ */
/* Sampling                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct bn_sampler bn_sampler;

typedef struct bn_sampler_params {
    float temperature; /* 0: greedy; negative is invalid */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    float typical_p;   /* 1: off */
    int32_t mirostat;  /* 0 off, 1 v1, 2 v2 (replaces top-k/p/min-p/typical) */
    float mirostat_tau;
    float mirostat_eta;
    float repeat_penalty; /* 1: off */
    float frequency_penalty;
    float presence_penalty;
    int32_t penalty_last_n; /* tokens looked back; -1: all */
    uint64_t seed;
} bn_sampler_params;

BN_API bn_sampler_params bn_sampler_default_params(void);
BN_API bn_status bn_sampler_new(const bn_sampler_params *p, int32_t n_vocab, bn_sampler **out,
                                bn_error *err);
BN_API void bn_sampler_free(bn_sampler *s);
/* Choose a token from logits[n_vocab]. Does not modify `logits`. */
BN_API bn_status bn_sampler_sample(bn_sampler *s, const float *logits, int32_t *token,
                                   bn_error *err);
/* The distribution bn_sampler_sample draws from (after penalties, filters
 * and temperature): probs[n_vocab], zero for filtered tokens. For testing
 * against other implementations; greedy gives a one-hot vector. Does not
 * advance the RNG or the mirostat state. */
BN_API bn_status bn_sampler_probs(bn_sampler *s, const float *logits, float *probs, bn_error *err);
/* Record a token in the penalty history (prompt tokens and chosen ones). */
BN_API void bn_sampler_accept(bn_sampler *s, int32_t token);
/* Clear history and mirostat state; reseed. */
BN_API void bn_sampler_reset(bn_sampler *s, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* BITNET_H */
