/* Checkpoints in other formats -> a GGUF image that model.c loads.
 *
 * Sources (sniffed by bn_checkpoint_sniff):
 *
 * 1. Hugging Face directories / .safetensors files (safetensors.c), with
 *    config.json giving the architecture:
 *    - microsoft/bitnet-b1.58-2B-4T ("BitNetForCausalLM", model_type
 *      "bitnet", hidden_act relu2): BitLinear weights packed 2 bits per value
 *      in uint8 [out/4, in] plus a one-element weight_scale. Layout defined
 *      by transformers' integrations/bitnet.py pack_weights/unpack_weights:
 *      unpacked row i*(out/4) + p is bits 2i..2i+1 of packed row p, value
 *      bits - 1. BitLinear.forward divides by weight_scale
 *      (post_quant_process: y / (weight_scale * input_scale)), so the
 *      ternary scale is 1 / weight_scale (llama.cpp's dequant_bitnet says
 *      the same: "the scale is inverted").
 *    - its -bf16 master weights (same names, float): ternarized with absmean
 *      at load (model.c, as transformers' WeightQuant).
 *    - 1bitLLM/bitnet_b1_58-* ("BitnetForCausalLM", model_type "llama",
 *      SiLU): float weights; sub-norms named self_attn.inner_attn_ln and
 *      mlp.ffn_layernorm (their modeling_bitnet.py); GGUF arch "bitnet" as
 *      llama.cpp's convert_hf_to_gguf.py BitnetModel writes it.
 *    - plain LlamaForCausalLM float weights (arch "llama", q/k rows permuted
 *      as llama.cpp's LlamaModel.permute).
 *    All BitNet archs keep HF's q/k row order (NEOX RoPE in model.c).
 *
 * 2. The original's checkpoints (pt_reader.c), microsoft/BitNet
 *    gpu/convert_safetensors.py + gpu/convert_checkpoint.py:
 *    - names layers.{i}.attention.{wqkv,wo}.weight, attention.attn_sub_norm,
 *      feed_forward.{w13,w2}.weight, feed_forward.ffn_sub_norm,
 *      layers.{i}.{attention_norm,ffn_norm}.weight, tok_embeddings.weight,
 *      output.weight (= the embedding), norm.weight;
 *    - wqkv = [q; k; v] and w13 = [w1 (gate); w3 (up)] along rows, q and k
 *      rows permuted "(h l d) i -> (h d l) i" (l = 2) for the original's
 *      interleaved RoPE; we invert that to HF order;
 *    - model_state_fp16.pt: each part q/k/v, w1/w3, wo, w2 stored as
 *      round(W/s).clamp(-1, 1) * s (s = mean|W| per part), i.e. ternary
 *      values times one scale: recovered exactly as ternary + scale;
 *    - model_state_int2.pt: int8 [N, K/4] from pack_weight.py
 *      convert_weight_int8_to_int2: q + 2 in {1, 2, 3}; the matrix cut in
 *      16 x 32 tiles, tile element (ii, jj) taken from row/column
 *      (t/16*8 + t%8, jj%16 + 16*((t%16)/8)) with t = 2*ii + jj/16; four
 *      values per byte (value k of a byte at bits 2k); then each int32 word
 *      interleaved so that value o moves to byte o%4, bits 2*(o/4); tiles
 *      stored row-major, 128 bytes each. weight_scale (bf16 [4]) holds
 *      mean|W| of each fused part: [sq, sk, sv, 0], [s1, s3, 0, 0], [s, 0..].
 *    Hyperparameters: params.json or config.json beside the file when there
 *    is one, else the original's ModelArgs (head_dim 128, rope_theta 5e5,
 *    norm_eps 1e-5), with sizes from the tensor shapes.
 *
 * The image is a GGUF v3 file in memory (gguf.c's writer), with the names and
 * metadata llama.cpp / bitnet.cpp use, so bn_model_load reads it by the same
 * path as any GGUF, and the converter writes the same bytes to disk. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fmt.h"
#include "gguf_internal.h"
#include "json.h"
#include "quant.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------------ */
/* Tensor sets and file mapping                                             */
/* ------------------------------------------------------------------------ */

size_t bn_dtype_size(int dt) {
    switch (dt) {
    case BN_DT_F32: return 4;
    case BN_DT_F16:
    case BN_DT_BF16: return 2;
    case BN_DT_I8:
    case BN_DT_U8: return 1;
    default: return 0;
    }
}

const char *bn_dtype_name(int dt) {
    static const char *const n[] = {"F32", "F16", "BF16", "I8", "U8"};
    return dt >= 0 && dt <= BN_DT_U8 ? n[dt] : "?";
}

void bn_tset_init(bn_tensor_set *s) { memset(s, 0, sizeof *s); }

void bn_tset_free(bn_tensor_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        free(s->t[i].name);
    free(s->t);
    for (size_t i = 0; i < s->n_maps; i++) {
        if (s->maps[i].kind == 1) bn_unmap_file(s->maps[i].p, s->maps[i].size);
        if (s->maps[i].kind == 2) free(s->maps[i].p);
    }
    free(s->maps);
    memset(s, 0, sizeof *s);
}

bn_status bn_tset_keep(bn_tensor_set *s, void *p, size_t size, int kind, bn_error *err) {
    if (s->n_maps == s->cap_maps) {
        size_t cap = s->cap_maps ? s->cap_maps * 2 : 8;
        void *q = realloc(s->maps, cap * sizeof *s->maps);
        if (!q) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        s->maps = q;
        s->cap_maps = cap;
    }
    s->maps[s->n_maps].p = p;
    s->maps[s->n_maps].size = size;
    s->maps[s->n_maps].kind = kind;
    s->n_maps++;
    return BN_OK;
}

const bn_ckpt_tensor *bn_tset_find(const bn_tensor_set *s, const char *name) {
    if (!s || !name) return NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    }
    return NULL;
}

bn_status bn_tset_add(bn_tensor_set *s, const char *name, size_t name_len, int dtype, int n_dims,
                      const int64_t *shape, const uint8_t *data, uint64_t nbytes, bn_error *err) {
    if (n_dims < 0 || n_dims > BN_CKPT_MAX_DIMS || bn_dtype_size(dtype) == 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "tensor set: bad dims or dtype");
    char *nm = malloc(name_len + 1);
    if (!nm) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    memcpy(nm, name, name_len);
    nm[name_len] = '\0';
    if (bn_tset_find(s, nm)) {
        bn_status st = bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' appears twice", nm);
        free(nm);
        return st;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        void *q = realloc(s->t, cap * sizeof *s->t);
        if (!q) {
            free(nm);
            return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        }
        s->t = q;
        s->cap = cap;
    }
    bn_ckpt_tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++)
        t->shape[d] = shape[d];
    t->data = data;
    t->nbytes = nbytes;
    return BN_OK;
}

int64_t bn_ckpt_numel(const bn_ckpt_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
    return n;
}

float bn_ckpt_get(const bn_ckpt_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case BN_DT_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case BN_DT_F16: return bn_fp16_to_fp32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    case BN_DT_BF16: return bn_bf16_to_fp32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    case BN_DT_I8: return (float)(int8_t)p[i];
    case BN_DT_U8: return (float)p[i];
    default: return 0.0f;
    }
}

/* Elements [i0, i0 + n) of a float tensor as float (one loop per dtype). */
static void ckpt_floats(const bn_ckpt_tensor *t, int64_t i0, int64_t n, float *out) {
    const size_t es = bn_dtype_size(t->dtype);
    const uint8_t *p = t->data + (size_t)i0 * es;
    switch (t->dtype) {
    case BN_DT_F32: memcpy(out, p, (size_t)n * 4); break;
    case BN_DT_F16: bn_f16_to_float(p, out, n); break;
    case BN_DT_BF16: bn_bf16_to_float(p, out, n); break;
    default:
        for (int64_t i = 0; i < n; i++)
            out[i] = bn_ckpt_get(t, i0 + i);
    }
}

bn_status bn_map_file(const char *path, void **p, size_t *size, bn_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bn_fail(err, BN_ERR_IO, "cannot open '%s'", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0) {
        close(fd);
        return bn_fail(err, BN_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *m = NULL;
    if (n == 0) {
        m = malloc(1);
        if (!m) {
            close(fd);
            return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        }
    } else {
        m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return bn_fail(err, BN_ERR_IO, "cannot map '%s'", path);
        }
    }
    close(fd);
    *p = m;
    *size = n;
    return BN_OK;
}

void bn_unmap_file(void *p, size_t size) {
    if (!p) return;
    if (size == 0) {
        free(p);
    } else {
        munmap(p, size);
    }
}

/* ------------------------------------------------------------------------ */
/* Sniffing                                                                 */
/* ------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int dir_has(const char *dir, const char *name) {
    char *p = join(dir, name);
    int r = p && bn_is_file(p);
    free(p);
    return r;
}

/* First bytes of a file. */
static size_t head_bytes(const char *path, uint8_t *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t r = fread(buf, 1, n, f);
    fclose(f);
    return r;
}

bn_ckpt_format bn_checkpoint_sniff(const char *path) {
    if (!path) return BN_CKPT_UNKNOWN;
    if (bn_is_dir(path)) {
        if (dir_has(path, "model.safetensors") || dir_has(path, "model.safetensors.index.json"))
            return BN_CKPT_HF_DIR;
        if (dir_has(path, "model_state_int2.pt") || dir_has(path, "model_state_fp16.pt") ||
            dir_has(path, "model_state.pt"))
            return BN_CKPT_PT_DIR;
        return BN_CKPT_UNKNOWN;
    }
    uint8_t h[9] = {0};
    size_t n = head_bytes(path, h, sizeof h);
    if (n >= 4 && memcmp(h, "GGUF", 4) == 0) return BN_CKPT_GGUF;
    if (n >= 4 && h[0] == 'P' && h[1] == 'K' && h[2] == 3 && h[3] == 4) return BN_CKPT_PT;
    if (ends_with(path, ".index.json")) return BN_CKPT_SAFETENSORS;
    if (n == 9 && h[8] == '{' && (h[6] | h[7]) == 0) return BN_CKPT_SAFETENSORS;
    return BN_CKPT_UNKNOWN;
}

const char *bn_checkpoint_format_name(bn_ckpt_format f) {
    switch (f) {
    case BN_CKPT_GGUF: return "gguf";
    case BN_CKPT_SAFETENSORS: return "safetensors";
    case BN_CKPT_HF_DIR: return "hf-dir";
    case BN_CKPT_PT: return "pt";
    case BN_CKPT_PT_DIR: return "pt-dir";
    default: return "unknown";
    }
}

bn_checkpoint_opts bn_checkpoint_default_opts(void) {
    bn_checkpoint_opts o;
    memset(&o, 0, sizeof o);
    o.weight_type = -1;
    o.head_type = -1;
    o.pt_variant = 0;
    o.tokenizer = 1;
    return o;
}

/* ------------------------------------------------------------------------ */
/* The source model                                                         */
/* ------------------------------------------------------------------------ */

enum { SRC_HF, SRC_PT };
enum { ARCH_B158, ARCH_BITNET_SILU, ARCH_LLAMA_F };
enum { PART_FLOAT, PART_HF_PACKED, PART_PT_INT2 };
enum { PERM_NONE, PERM_TO_INTERLEAVED, PERM_FROM_INTERLEAVED };

typedef struct hparams {
    int arch;
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, head_dim;
    double norm_eps, rope_theta;
    int64_t bos, eos; /* -1: none */
} hparams;

typedef struct source {
    int kind;
    bn_tensor_set ts;
    hparams hp;
    char *dir; /* where config / tokenizer live */
} source;

/* One BitLinear (or a row range of a fused one). */
typedef struct part {
    int kind;
    const bn_ckpt_tensor *t; /* fused / packed source */
    const bn_ckpt_tensor *scale;
    int scale_idx;
    int64_t row0, rows, cols; /* rows of the logical (unpacked) fused matrix */
    int perm, perm_heads;
    int maybe_ternary; /* the original's fp16 file: ternary * s */
} part;

typedef struct conv {
    const bn_checkpoint_opts *o;
    bn_progress_fn cb;
    void *user;
    int64_t done, total;
    bn_gguf_writer *w;
    bn_error *err;
    int wtype_used;
} conv;

static bn_status read_json_file(const char *path, bn_json **out, bn_error *err) {
    void *p = NULL;
    size_t n = 0;
    bn_status st = bn_map_file(path, &p, &n, err);
    if (st) return st;
    bn_error e;
    st = bn_json_parse(p, n, out, &e);
    bn_unmap_file(p, n);
    if (st) return bn_fail(err, BN_ERR_FORMAT, "%s: %s", path, e.msg);
    return BN_OK;
}

static int json_i64(const bn_json_val *obj, const char *key, int64_t *out) {
    return bn_json_int(bn_json_get(obj, key), out);
}

static int json_f64(const bn_json_val *obj, const char *key, double *out) {
    const bn_json_val *v = bn_json_get(obj, key);
    if (bn_json_type_of(v) != BN_JSON_NUMBER) return 0;
    *out = bn_json_num(v);
    return 1;
}

static int json_has_str(const bn_json_val *v, const char *s) {
    if (bn_json_type_of(v) == BN_JSON_STRING) return strcmp(bn_json_str(v, NULL), s) == 0;
    for (const bn_json_val *e = bn_json_first(v); e; e = bn_json_next(e)) {
        if (bn_json_type_of(e) == BN_JSON_STRING && strcmp(bn_json_str(e, NULL), s) == 0) return 1;
    }
    return 0;
}

#define LIM_DIM ((int64_t)1 << 20)

static bn_status check_hp(const hparams *h, bn_error *err) {
    if (h->n_embd <= 0 || h->n_embd > LIM_DIM || h->n_layer <= 0 || h->n_layer > 4096 ||
        h->n_head <= 0 || h->n_head > 4096 || h->n_head_kv <= 0 || h->n_head % h->n_head_kv ||
        h->n_ff <= 0 || h->n_ff > ((int64_t)1 << 22) || h->n_vocab <= 0 ||
        h->n_vocab > ((int64_t)1 << 24) || h->head_dim <= 0 || h->head_dim % 2 ||
        h->head_dim * h->n_head > LIM_DIM || h->n_ctx <= 0 || h->n_ctx > ((int64_t)1 << 24) ||
        !(h->norm_eps > 0 && h->norm_eps < 1) || !(h->rope_theta > 0 && h->rope_theta < 1e12)) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "checkpoint hyperparameters are inconsistent (embd %lld, layers %lld, "
                       "heads %lld/%lld, head_dim %lld, ffn %lld, vocab %lld)",
                       (long long)h->n_embd, (long long)h->n_layer, (long long)h->n_head,
                       (long long)h->n_head_kv, (long long)h->head_dim, (long long)h->n_ff,
                       (long long)h->n_vocab);
    }
    return BN_OK;
}

static bn_status hf_config_json(source *s, const bn_json *j, const char *cfg_path, bn_error *err);

static bn_status hf_config(source *s, const char *cfg_path, bn_error *err) {
    bn_json *j = NULL;
    bn_status st = read_json_file(cfg_path, &j, err);
    if (st) return st;
    st = hf_config_json(s, j, cfg_path, err);
    bn_json_free(j);
    return st;
}

static bn_status hf_config_json(source *s, const bn_json *j, const char *cfg_path, bn_error *err) {
    const bn_json_val *r = bn_json_root(j);
    hparams *h = &s->hp;
    const bn_json_val *archs = bn_json_get(r, "architectures");
    const char *mt = bn_json_str(bn_json_get(r, "model_type"), NULL);
    const char *act = bn_json_str(bn_json_get(r, "hidden_act"), NULL);
    if (json_has_str(archs, "BitNetForCausalLM") || (mt && !strcmp(mt, "bitnet"))) {
        h->arch = act && !strcmp(act, "silu") ? ARCH_BITNET_SILU : ARCH_B158;
    } else if (json_has_str(archs, "BitnetForCausalLM")) {
        h->arch = act && !strcmp(act, "relu2") ? ARCH_B158 : ARCH_BITNET_SILU;
    } else if (json_has_str(archs, "LlamaForCausalLM") || (mt && !strcmp(mt, "llama"))) {
        h->arch = ARCH_LLAMA_F;
    } else {
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "%s: architecture is not BitNetForCausalLM, BitnetForCausalLM or "
                       "LlamaForCausalLM",
                       cfg_path);
    }
    int ok = json_i64(r, "hidden_size", &h->n_embd) &&
             json_i64(r, "num_hidden_layers", &h->n_layer) &&
             json_i64(r, "num_attention_heads", &h->n_head) &&
             json_i64(r, "intermediate_size", &h->n_ff) && json_i64(r, "vocab_size", &h->n_vocab);
    if (!ok) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "%s: needs hidden_size, num_hidden_layers, num_attention_heads, "
                       "intermediate_size and vocab_size",
                       cfg_path);
    }
    if (!json_i64(r, "num_key_value_heads", &h->n_head_kv)) h->n_head_kv = h->n_head;
    if (!json_i64(r, "head_dim", &h->head_dim))
        h->head_dim = h->n_head > 0 ? h->n_embd / h->n_head : 0;
    if (!json_i64(r, "max_position_embeddings", &h->n_ctx)) h->n_ctx = 2048;
    if (!json_f64(r, "rms_norm_eps", &h->norm_eps)) h->norm_eps = 1e-6;
    if (!json_f64(r, "rope_theta", &h->rope_theta) &&
        !json_f64(bn_json_get(r, "rope_parameters"), "rope_theta", &h->rope_theta))
        h->rope_theta = 10000.0;
    if (!json_i64(r, "bos_token_id", &h->bos)) h->bos = -1;
    if (!json_i64(r, "eos_token_id", &h->eos)) h->eos = -1;
    const bn_json_val *rs = bn_json_get(r, "rope_scaling");
    if (bn_json_type_of(rs) == BN_JSON_OBJECT) {
        const char *t = bn_json_str(bn_json_get(rs, "rope_type"), NULL);
        if (!t) t = bn_json_str(bn_json_get(rs, "type"), NULL);
        if (!t || strcmp(t, "default") != 0) {
            return bn_fail(err, BN_ERR_UNSUPPORTED, "%s: rope_scaling '%s' is not supported",
                           cfg_path, t ? t : "?");
        }
    }
    return check_hp(h, err);
}

/* The original's ModelArgs, or params.json / config.json beside the .pt. */
static bn_status pt_config(source *s, bn_error *err) {
    hparams *h = &s->hp;
    h->arch = ARCH_B158;
    const bn_ckpt_tensor *emb = bn_tset_find(&s->ts, "tok_embeddings.weight");
    const bn_ckpt_tensor *w2 = bn_tset_find(&s->ts, "layers.0.feed_forward.w2.weight");
    const bn_ckpt_tensor *qkv = bn_tset_find(&s->ts, "layers.0.attention.wqkv.weight");
    if (!emb || emb->n_dims != 2 || !w2 || w2->n_dims != 2 || !qkv || qkv->n_dims != 2) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "not one of the original's checkpoints: needs tok_embeddings.weight, "
                       "layers.0.attention.wqkv.weight and layers.0.feed_forward.w2.weight");
    }
    h->n_vocab = emb->shape[0];
    h->n_embd = emb->shape[1];
    h->n_ff = w2->dtype == BN_DT_I8 ? w2->shape[1] * 4 : w2->shape[1];
    h->n_layer = 0;
    char name[96];
    for (;;) {
        snprintf(name, sizeof name, "layers.%lld.attention.wqkv.weight", (long long)h->n_layer);
        if (!bn_tset_find(&s->ts, name) || h->n_layer > 4096) break;
        h->n_layer++;
    }
    h->head_dim = 128;
    h->n_head = h->n_embd / 128;
    h->n_ctx = 4096;
    h->norm_eps = 1e-5;
    h->rope_theta = 500000.0;
    h->bos = 128000;
    h->eos = 128001;
    int64_t qkv_rows = qkv->shape[0];
    int have_kv = 0;
    char *cfg = s->dir ? join(s->dir, "params.json") : NULL;
    if (cfg && bn_is_file(cfg)) {
        bn_json *j = NULL;
        bn_status st = read_json_file(cfg, &j, err);
        if (st) {
            free(cfg);
            return st;
        }
        const bn_json_val *r = bn_json_root(j);
        if (bn_json_type_of(bn_json_get(r, "model")) == BN_JSON_OBJECT) r = bn_json_get(r, "model");
        int64_t x;
        if (json_i64(r, "n_heads", &x)) h->n_head = x;
        if (json_i64(r, "n_kv_heads", &x)) h->n_head_kv = x, have_kv = 1;
        if (json_i64(r, "head_dim", &x))
            h->head_dim = x;
        else if (h->n_head > 0)
            h->head_dim = h->n_embd / h->n_head;
        if (json_i64(r, "max_seq_len", &x) || json_i64(r, "n_ctx", &x)) h->n_ctx = x;
        json_f64(r, "norm_eps", &h->norm_eps);
        json_f64(r, "rope_theta", &h->rope_theta);
        if (json_i64(r, "bos_token_id", &x)) h->bos = x;
        if (json_i64(r, "eos_token_id", &x)) h->eos = x;
        bn_json_free(j);
    }
    free(cfg);
    if (!have_kv) {
        int64_t q = h->n_head * h->head_dim;
        int64_t kv2 = qkv_rows - q;
        if (h->head_dim <= 0 || kv2 <= 0 || kv2 % (2 * h->head_dim)) {
            return bn_fail(err, BN_ERR_FORMAT,
                           "wqkv has %lld rows, which does not split into q (%lld) and two equal "
                           "k/v parts of head_dim %lld",
                           (long long)qkv_rows, (long long)q, (long long)h->head_dim);
        }
        h->n_head_kv = kv2 / (2 * h->head_dim);
    }
    return check_hp(h, err);
}

/* ------------------------------------------------------------------------ */
/* Getting weights out                                                      */
/* ------------------------------------------------------------------------ */

static bn_status expect_shape(const bn_ckpt_tensor *t, int64_t r, int64_t c, bn_error *err) {
    int ok = c < 0 ? (t->n_dims == 1 && t->shape[0] == r)
                   : (t->n_dims == 2 && t->shape[0] == r && t->shape[1] == c);
    if (!ok) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "tensor '%.200s' has shape [%lld%s%lld], expected [%lld%s%lld]", t->name,
                       (long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                       t->n_dims > 1 ? (long long)t->shape[1] : 0LL, (long long)r,
                       c >= 0 ? ", " : "", c >= 0 ? (long long)c : 0LL);
    }
    return BN_OK;
}

static int is_float(int dt) { return dt == BN_DT_F32 || dt == BN_DT_F16 || dt == BN_DT_BF16; }

/* Row permutation between HF's half-split head layout and the interleaved
 * one ("(h l d) -> (h d l)", l = 2), for rows of `esz` bytes. */
static bn_status permute_rows(void *data, int64_t rows, size_t esz_row, int64_t n_heads, int dir,
                              bn_error *err) {
    if (dir == PERM_NONE) return BN_OK;
    if (n_heads <= 0 || rows % n_heads || (rows / n_heads) % 2)
        return bn_fail(err, BN_ERR_FORMAT, "cannot split %lld rows into %lld heads",
                       (long long)rows, (long long)n_heads);
    const int64_t hd = rows / n_heads, half = hd / 2;
    size_t bytes;
    if (!bn_mul_size((size_t)rows, esz_row, &bytes))
        return bn_fail(err, BN_ERR_NOMEM, "tensor too large");
    uint8_t *tmp = malloc(bytes ? bytes : 1);
    if (!tmp) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    memcpy(tmp, data, bytes);
    for (int64_t h = 0; h < n_heads; h++) {
        for (int64_t l = 0; l < 2; l++) {
            for (int64_t j = 0; j < half; j++) {
                int64_t hf = h * hd + l * half + j, il = h * hd + 2 * j + l;
                int64_t dst = dir == PERM_TO_INTERLEAVED ? il : hf;
                int64_t src = dir == PERM_TO_INTERLEAVED ? hf : il;
                memcpy((uint8_t *)data + (size_t)dst * esz_row, tmp + (size_t)src * esz_row,
                       esz_row);
            }
        }
    }
    free(tmp);
    return BN_OK;
}

/* Unpack the original's int2 matrix [N, K] (see the top comment). */
static bn_status unpack_pt_int2(const bn_ckpt_tensor *t, int64_t N, int64_t K, int8_t *q,
                                bn_error *err) {
    if (t->dtype != BN_DT_I8 && t->dtype != BN_DT_U8)
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s': int2 weights must be int8", t->name);
    if (N % 16 || K % 32)
        return bn_fail(err, BN_ERR_FORMAT,
                       "tensor '%.200s': int2 matrix %lld x %lld is not made of 16 x 32 tiles",
                       t->name, (long long)N, (long long)K);
    bn_status st = expect_shape(t, N, K / 4, err);
    if (st) return st;
    const uint8_t *p = t->data;
    const int64_t tiles_k = K / 32;
    for (int64_t bi = 0; bi < N / 16; bi++) {
        for (int64_t bj = 0; bj < tiles_k; bj++) {
            const uint8_t *tile = p + (size_t)((bi * tiles_k + bj) * 128);
            for (int ii = 0; ii < 16; ii++) {
                for (int w = 0; w < 2; w++) {
                    const uint8_t *wb = tile + ii * 8 + w * 4;
                    uint32_t word = (uint32_t)wb[0] | (uint32_t)wb[1] << 8 | (uint32_t)wb[2] << 16 |
                                    (uint32_t)wb[3] << 24;
                    for (int o = 0; o < 16; o++) {
                        unsigned v = (word >> ((o % 4) * 8 + (o / 4) * 2)) & 3u;
                        if (v == 0) {
                            return bn_fail(err, BN_ERR_FORMAT,
                                           "tensor '%.200s': int2 code 0 (not -1/0/1 + 2)",
                                           t->name);
                        }
                        int jj = 16 * w + o;
                        int tid = ii * 2 + jj / 16;
                        int row = (tid / 16) * 8 + tid % 8;
                        int col = jj % 16 + 16 * ((tid % 16) / 8);
                        q[(size_t)(bi * 16 + row) * (size_t)K + (size_t)(bj * 32 + col)] =
                            (int8_t)((int)v - 2);
                    }
                }
            }
        }
    }
    return BN_OK;
}

/* Ternary view of a part: q [rows*cols] and scale; or, for float parts that
 * are not ternary, the floats in f (q untouched) and *is_ternary = 0. */
static bn_status part_get(const part *pt, int8_t *q, float *f, float *scale, int *is_ternary,
                          bn_error *err) {
    const int64_t rows = pt->rows, cols = pt->cols;
    const size_t n = (size_t)rows * (size_t)cols;
    bn_status st = BN_OK;
    *is_ternary = 0;
    *scale = 1.0f;
    if (pt->kind == PART_FLOAT) {
        const bn_ckpt_tensor *t = pt->t;
        if (!is_float(t->dtype))
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' has dtype %s, expected float",
                           t->name, bn_dtype_name(t->dtype));
        if (t->n_dims != 2 || t->shape[1] != cols || pt->row0 + rows > t->shape[0])
            return bn_fail(err, BN_ERR_FORMAT,
                           "tensor '%.200s' does not have %lld columns and %lld rows", t->name,
                           (long long)cols, (long long)(pt->row0 + rows));
        const int64_t base = pt->row0 * cols;
        ckpt_floats(t, base, (int64_t)n, f);
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(f[i]))
                return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' holds a non-finite value",
                               t->name);
        }
        st = permute_rows(f, rows, (size_t)cols * sizeof(float), pt->perm_heads, pt->perm, err);
        if (st) return st;
        if (pt->maybe_ternary) {
            float c = 0.0f;
            int ok = 1;
            for (size_t i = 0; i < n && ok; i++) {
                float a = fabsf(f[i]);
                if (a == 0.0f) continue;
                if (c == 0.0f) c = a;
                ok = a == c;
            }
            if (ok) {
                for (size_t i = 0; i < n; i++)
                    q[i] = (int8_t)(f[i] > 0 ? 1 : f[i] < 0 ? -1 : 0);
                *scale = c;
                *is_ternary = 1;
            }
        }
        return BN_OK;
    }
    if (pt->kind == PART_HF_PACKED) {
        const bn_ckpt_tensor *t = pt->t;
        if (t->dtype != BN_DT_U8 && t->dtype != BN_DT_I8)
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s': packed weights must be uint8",
                           t->name);
        if (rows % 4)
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s': rows not a multiple of 4",
                           t->name);
        st = expect_shape(t, rows / 4, cols, err);
        if (st) return st;
        const int64_t pr = rows / 4;
        for (int64_t i = 0; i < 4; i++) {
            for (int64_t p = 0; p < pr; p++) {
                const uint8_t *src = t->data + (size_t)p * (size_t)cols;
                int8_t *dst = q + (size_t)(i * pr + p) * (size_t)cols;
                for (int64_t c = 0; c < cols; c++) {
                    unsigned v = (src[c] >> (2 * i)) & 3u;
                    if (v == 3)
                        return bn_fail(err, BN_ERR_FORMAT,
                                       "tensor '%.200s': packed code 3 (not -1/0/1 + 1)", t->name);
                    dst[c] = (int8_t)((int)v - 1);
                }
            }
        }
        if (!pt->scale || bn_ckpt_numel(pt->scale) < 1 || !is_float(pt->scale->dtype))
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' has no float weight_scale",
                           t->name);
        float ws = bn_ckpt_get(pt->scale, 0);
        if (!isfinite(ws) || ws == 0.0f)
            return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s': weight_scale %g is invalid",
                           t->name, (double)ws);
        *scale = 1.0f / ws;
        *is_ternary = 1;
        return permute_rows(q, rows, (size_t)cols, pt->perm_heads, pt->perm, err);
    }
    /* PART_PT_INT2: unpack the fused matrix, keep our rows. */
    const bn_ckpt_tensor *t = pt->t;
    if (t->n_dims != 2) return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' is not 2-D", t->name);
    const int64_t N = t->shape[0], K = cols;
    if (pt->row0 + rows > N)
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' has %lld rows, expected at least %lld",
                       t->name, (long long)N, (long long)(pt->row0 + rows));
    size_t nf;
    if (!bn_mul_size((size_t)N, (size_t)K, &nf)) return bn_fail(err, BN_ERR_NOMEM, "too large");
    int8_t *all = malloc(nf ? nf : 1);
    if (!all) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    st = unpack_pt_int2(t, N, K, all, err);
    if (!st) memcpy(q, all + (size_t)pt->row0 * (size_t)K, n);
    free(all);
    if (st) return st;
    if (!pt->scale || bn_ckpt_numel(pt->scale) <= pt->scale_idx || !is_float(pt->scale->dtype))
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s' has no weight_scale[%d]", t->name,
                       pt->scale_idx);
    *scale = bn_ckpt_get(pt->scale, pt->scale_idx);
    if (!isfinite(*scale) || *scale <= 0.0f)
        return bn_fail(err, BN_ERR_FORMAT, "tensor '%.200s': weight_scale[%d] = %g is invalid",
                       t->name, pt->scale_idx, (double)*scale);
    *is_ternary = 1;
    return permute_rows(q, rows, (size_t)cols, pt->perm_heads, pt->perm, err);
}

/* ------------------------------------------------------------------------ */
/* Writing the image                                                        */
/* ------------------------------------------------------------------------ */

static bn_status progress(conv *c, const char *name) {
    c->done++;
    if (c->cb && c->cb(c->user, name, c->done, c->total) != 0)
        return bn_fail(c->err, BN_ERR_CANCELLED, "conversion cancelled at '%s'", name);
    return BN_OK;
}

static bn_status add_floats(conv *c, const char *name, int type, const float *x, int64_t cols,
                            int64_t rows, int n_dims) {
    bn_error e;
    size_t nb = bn_type_nbytes(type, cols, rows, &e);
    if (!nb)
        return bn_fail(c->err, BN_ERR_UNSUPPORTED, "tensor '%s' as %s: %s", name,
                       bn_type_name(type), e.msg);
    void *buf = malloc(nb);
    if (!buf) return bn_fail(c->err, BN_ERR_NOMEM, "out of memory for '%s'", name);
    bn_status st = bn_quantize(type, x, cols, rows, buf, nb, &e);
    if (!st) {
        int64_t ne[2] = {cols, rows};
        st = bn_gguf_writer_add_tensor(c->w, name, type, n_dims, ne, buf, nb, &e);
    }
    free(buf);
    if (st) return bn_fail(c->err, st, "tensor '%s': %s", name, e.msg);
    return progress(c, name);
}

static int src_type_of(int dt) {
    return dt == BN_DT_F16 ? BN_TYPE_F16 : dt == BN_DT_BF16 ? BN_TYPE_BF16 : BN_TYPE_F32;
}

static int is_ternary_type(int t) {
    return t == BN_TYPE_I2_S || t == BN_TYPE_TQ1_0 || t == BN_TYPE_TQ2_0;
}

/* Shape of a part's source against the expected rows / columns, before
 * anything is allocated for it. */
static bn_status part_check(const part *pt, bn_error *err) {
    const bn_ckpt_tensor *t = pt->t;
    int ok = t->n_dims == 2 && pt->rows > 0 && pt->cols > 0;
    if (ok && pt->kind == PART_FLOAT) {
        ok = t->shape[1] == pt->cols && pt->row0 + pt->rows <= t->shape[0];
    } else if (ok && pt->kind == PART_HF_PACKED) {
        ok = pt->rows % 4 == 0 && t->shape[0] == pt->rows / 4 && t->shape[1] == pt->cols;
    } else if (ok) {
        ok = pt->cols % 4 == 0 && t->shape[1] == pt->cols / 4 && pt->row0 + pt->rows <= t->shape[0];
    }
    if (!ok) {
        return bn_fail(err, BN_ERR_FORMAT,
                       "tensor '%.200s' (%d dims, [%lld, %lld]) does not hold the %lld x %lld "
                       "weight that the config asks for",
                       t->name, t->n_dims, (long long)t->shape[0],
                       (long long)(t->n_dims > 1 ? t->shape[1] : 0), (long long)pt->rows,
                       (long long)pt->cols);
    }
    return BN_OK;
}

static bn_status emit_linear(conv *c, const hparams *h, const char *name, const part *pt) {
    const int64_t rows = pt->rows, cols = pt->cols;
    bn_status st0 = part_check(pt, c->err);
    if (st0) return st0;
    size_t n;
    if (!bn_mul_size((size_t)rows, (size_t)cols, &n) || n > ((size_t)1 << 34))
        return bn_fail(c->err, BN_ERR_FORMAT, "tensor '%s' is too large", name);
    int8_t *q = malloc(n);
    float *f = malloc(n * sizeof(float));
    if (!q || !f) {
        free(q);
        free(f);
        return bn_fail(c->err, BN_ERR_NOMEM, "out of memory for '%s'", name);
    }
    float s = 1.0f;
    int tern = 0;
    bn_status st = part_get(pt, q, f, &s, &tern, c->err);
    int type = c->o->weight_type;
    if (!st && type == BN_CKPT_TYPE_LOAD) {
        /* bn_model_load's image: float master weights of bitnet-b1.58 are
         * ternarized here, as model.c would do after loading them (same
         * bn_ternarize, same I2_S), so the image is 8x smaller than BF16. */
        type = !tern && h->arch == ARCH_B158 && cols % 128 == 0 ? BN_TYPE_I2_S : -1;
    }
    if (!st && type < 0) {
        if (!tern) {
            type = src_type_of(pt->t->dtype);
        } else if (h->arch == ARCH_B158 && cols % 128 == 0) {
            type = BN_TYPE_I2_S;
        } else if (cols % 256 == 0) {
            type = BN_TYPE_TQ2_0;
        } else {
            type = BN_TYPE_F32;
        }
    }
    if (!st && h->arch == ARCH_LLAMA_F && type >= 0 && is_ternary_type(type)) type = BN_TYPE_F16;
    if (!st && type == BN_TYPE_I2_S && h->arch != ARCH_B158) {
        st = bn_fail(c->err, BN_ERR_UNSUPPORTED,
                     "i2_s is only written for arch bitnet-b1.58 (use tq2_0 or tq1_0)");
    }
    if (!st && is_ternary_type(type)) {
        if (!tern) {
            bn_error e;
            st = bn_ternarize(f, (int64_t)n, q, &s, &e);
            if (st) st = bn_fail(c->err, st, "tensor '%s': %s", name, e.msg);
        }
        for (size_t i = 0; !st && i < n; i++)
            f[i] = (float)q[i] * s;
    } else if (!st && tern && h->arch != ARCH_LLAMA_F) {
        /* Float master weights that absmean-ternarize back to q * s:
         * W = q * s / frac (frac = share of non-zeros), so mean|W| = s. */
        size_t nz = 0;
        for (size_t i = 0; i < n; i++)
            nz += q[i] != 0;
        float m = nz ? s * (float)((double)n / (double)nz) : 0.0f;
        for (size_t i = 0; i < n; i++)
            f[i] = (float)q[i] * m;
    } else if (!st && tern) {
        for (size_t i = 0; i < n; i++)
            f[i] = (float)q[i] * s;
    }
    free(q);
    if (!st) {
        if (c->wtype_used < 0 || is_ternary_type(type)) c->wtype_used = type;
        st = add_floats(c, name, type, f, cols, rows, 2);
    }
    free(f);
    return st;
}

static bn_status emit_float(conv *c, const char *name, const bn_ckpt_tensor *t, int64_t rows,
                            int64_t cols, int type) {
    bn_status st = expect_shape(t, rows, cols, c->err);
    if (st) return st;
    if (!is_float(t->dtype))
        return bn_fail(c->err, BN_ERR_FORMAT, "tensor '%.200s' has dtype %s, expected float",
                       t->name, bn_dtype_name(t->dtype));
    const int64_t cc = cols < 0 ? rows : cols, rr = cols < 0 ? 1 : rows;
    size_t n = (size_t)cc * (size_t)rr;
    if (type < 0) type = src_type_of(t->dtype);
    if (type == src_type_of(t->dtype)) {
        /* Same type: the bytes as they are (no float round trip). */
        int64_t ne[2] = {cc, rr};
        bn_error e;
        st = bn_gguf_writer_add_tensor(c->w, name, type, cols < 0 ? 1 : 2, ne, t->data,
                                       (size_t)t->nbytes, &e);
        if (st) return bn_fail(c->err, st, "tensor '%s': %s", name, e.msg);
        return progress(c, name);
    }
    float *f = malloc(n * sizeof(float));
    if (!f) return bn_fail(c->err, BN_ERR_NOMEM, "out of memory for '%s'", name);
    ckpt_floats(t, 0, (int64_t)n, f);
    st = add_floats(c, name, type, f, cc, rr, cols < 0 ? 1 : 2);
    free(f);
    return st;
}

static const char *arch_name(int a) {
    return a == ARCH_B158 ? "bitnet-b1.58" : a == ARCH_BITNET_SILU ? "bitnet" : "llama";
}

static bn_status set_u32(conv *c, const char *key, int64_t v) {
    uint32_t x = (uint32_t)v;
    return bn_gguf_writer_set(c->w, key, BN_GGUF_UINT32, &x, c->err);
}
static bn_status set_f32(conv *c, const char *key, double v) {
    float x = (float)v;
    return bn_gguf_writer_set(c->w, key, BN_GGUF_FLOAT32, &x, c->err);
}

static bn_status write_hparams(conv *c, const hparams *h, const char *name) {
    const char *a = arch_name(h->arch);
    char k[128];
    bn_status st = bn_gguf_writer_set_str(c->w, "general.architecture", a, strlen(a), c->err);
    if (!st) st = bn_gguf_writer_set_str(c->w, "general.name", name, strlen(name), c->err);
    if (!st) st = set_u32(c, "general.quantization_version", 2);
#define KV(suffix, v)                                                                              \
    do {                                                                                           \
        snprintf(k, sizeof k, "%s." suffix, a);                                                    \
        if (!st) st = set_u32(c, k, v);                                                            \
    } while (0)
    KV("vocab_size", h->n_vocab);
    KV("context_length", h->n_ctx);
    KV("embedding_length", h->n_embd);
    KV("block_count", h->n_layer);
    KV("feed_forward_length", h->n_ff);
    KV("attention.head_count", h->n_head);
    KV("attention.head_count_kv", h->n_head_kv);
    KV("rope.dimension_count", h->head_dim);
    if (h->head_dim * h->n_head != h->n_embd) {
        KV("attention.key_length", h->head_dim);
        KV("attention.value_length", h->head_dim);
    }
#undef KV
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    if (!st) st = set_f32(c, k, h->norm_eps);
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    if (!st) st = set_f32(c, k, h->rope_theta);
    return st;
}

/* Hugging Face tokenizer.json (byte-level BPE) -> tokenizer.ggml.* as
 * llama.cpp's converter writes it (model "gpt2", tokens in their byte-level
 * text, merges "a b", token types 1 normal / 3 control / 4 user). */
static bn_status write_hf_tokenizer(conv *c, const char *path, const hparams *h) {
    bn_json *j = NULL;
    bn_status st = read_json_file(path, &j, c->err);
    if (st) return st;
    const bn_json_val *r = bn_json_root(j);
    const bn_json_val *model = bn_json_get(r, "model");
    const char *type = bn_json_str(bn_json_get(model, "type"), NULL);
    const bn_json_val *vocab = bn_json_get(model, "vocab");
    const bn_json_val *merges = bn_json_get(model, "merges");
    const bn_json_val *added = bn_json_get(r, "added_tokens");
    /* Byte-level BPE only (GPT-2 / Llama-3): a ByteLevel pre-tokenizer, alone
     * or in a Sequence. SentencePiece-converted files (byte_fallback BPE) are
     * left to tokenizer.model. */
    const bn_json_val *pt = bn_json_get(r, "pre_tokenizer");
    const char *ptt = bn_json_str(bn_json_get(pt, "type"), NULL);
    int byte_level = ptt && !strcmp(ptt, "ByteLevel");
    for (const bn_json_val *e = bn_json_first(bn_json_get(pt, "pretokenizers")); e;
         e = bn_json_next(e)) {
        const char *et = bn_json_str(bn_json_get(e, "type"), NULL);
        if (et && !strcmp(et, "ByteLevel")) byte_level = 1;
    }
    if (!type || strcmp(type, "BPE") != 0 || bn_json_type_of(vocab) != BN_JSON_OBJECT ||
        !byte_level) {
        bn_json_free(j);
        return BN_ERR_NOT_FOUND; /* not byte-level BPE */
    }
    int64_t n = 0, id;
    for (const bn_json_val *v = bn_json_first(vocab); v; v = bn_json_next(v)) {
        if (!bn_json_int(v, &id) || id < 0 || id >= ((int64_t)1 << 24)) {
            bn_json_free(j);
            return bn_fail(c->err, BN_ERR_FORMAT, "%s: vocab id out of range", path);
        }
        if (id + 1 > n) n = id + 1;
    }
    for (const bn_json_val *v = bn_json_first(added); v; v = bn_json_next(v)) {
        if (json_i64(v, "id", &id) && id >= 0 && id < ((int64_t)1 << 24) && id + 1 > n) n = id + 1;
    }
    if (h->n_vocab > n) n = h->n_vocab;
    const char **toks = calloc((size_t)n ? (size_t)n : 1, sizeof *toks);
    uint64_t *lens = calloc((size_t)n ? (size_t)n : 1, sizeof *lens);
    int32_t *types = calloc((size_t)n ? (size_t)n : 1, sizeof *types);
    char *pads = calloc((size_t)n ? (size_t)n : 1, 32);
    size_t n_merges = bn_json_len(merges);
    const char **ms = calloc(n_merges ? n_merges : 1, sizeof *ms);
    char **owned = calloc(n_merges ? n_merges : 1, sizeof *owned);
    if (!toks || !lens || !types || !pads || !ms || !owned) {
        st = bn_fail(c->err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (const bn_json_val *v = bn_json_first(vocab); v; v = bn_json_next(v)) {
        size_t kl;
        const char *key = bn_json_key(v, &kl);
        bn_json_int(v, &id);
        toks[id] = key;
        lens[id] = kl;
        types[id] = 1;
    }
    for (const bn_json_val *v = bn_json_first(added); v; v = bn_json_next(v)) {
        size_t kl;
        const char *s = bn_json_str(bn_json_get(v, "content"), &kl);
        if (!json_i64(v, "id", &id) || id < 0 || id >= n || !s) continue;
        toks[id] = s;
        lens[id] = kl;
        types[id] = bn_json_bool(bn_json_get(v, "special")) ? 3 : 4;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!toks[i]) {
            char *p = pads + 32 * i;
            snprintf(p, 32, "[PAD%lld]", (long long)i);
            toks[i] = p;
            lens[i] = strlen(p);
            types[i] = 5; /* unused */
        }
    }
    size_t k = 0;
    for (const bn_json_val *m = bn_json_first(merges); m; m = bn_json_next(m), k++) {
        if (bn_json_type_of(m) == BN_JSON_STRING) {
            ms[k] = bn_json_str(m, NULL);
        } else if (bn_json_len(m) == 2) {
            size_t la, lb;
            const char *a = bn_json_str(bn_json_at(m, 0), &la);
            const char *b = bn_json_str(bn_json_at(m, 1), &lb);
            if (!a || !b || !(owned[k] = malloc(la + lb + 2))) {
                st = bn_fail(c->err, a && b ? BN_ERR_NOMEM : BN_ERR_FORMAT, "%s: bad merge %zu",
                             path, k);
                goto done;
            }
            memcpy(owned[k], a, la);
            owned[k][la] = ' ';
            memcpy(owned[k] + la + 1, b, lb);
            owned[k][la + lb + 1] = '\0';
            ms[k] = owned[k];
        } else {
            st = bn_fail(c->err, BN_ERR_FORMAT, "%s: bad merge %zu", path, k);
            goto done;
        }
    }
    /* Llama-3's pre-tokenizer regex starts with (?i:'s|'t|'re|...; GPT-2's
     * does not. Look at the pre-tokenizer and at its sequence members. */
    const char *pre_name = "gpt-2";
    const char *l3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    const bn_json_val *pre = bn_json_get(r, "pre_tokenizer");
    const char *re = bn_json_str(bn_json_get(bn_json_get(pre, "pattern"), "Regex"), NULL);
    if (re && strstr(re, l3)) pre_name = "llama-bpe";
    for (const bn_json_val *e = bn_json_first(bn_json_get(pre, "pretokenizers")); e;
         e = bn_json_next(e)) {
        re = bn_json_str(bn_json_get(bn_json_get(e, "pattern"), "Regex"), NULL);
        if (re && strstr(re, l3)) pre_name = "llama-bpe";
    }
    st = bn_gguf_writer_set_str(c->w, "tokenizer.ggml.model", "gpt2", 4, c->err);
    if (!st)
        st = bn_gguf_writer_set_str(c->w, "tokenizer.ggml.pre", pre_name, strlen(pre_name), c->err);
    if (!st)
        st = bn_gguf_writer_set_arr_str(c->w, "tokenizer.ggml.tokens", toks, lens, (uint64_t)n,
                                        c->err);
    if (!st)
        st = bn_gguf_writer_set_arr(c->w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types,
                                    (uint64_t)n, c->err);
    if (!st && n_merges)
        st = bn_gguf_writer_set_arr_str(c->w, "tokenizer.ggml.merges", ms, NULL, n_merges, c->err);
    if (!st && h->bos >= 0 && h->bos < n) st = set_u32(c, "tokenizer.ggml.bos_token_id", h->bos);
    if (!st && h->eos >= 0 && h->eos < n) st = set_u32(c, "tokenizer.ggml.eos_token_id", h->eos);
done:
    for (size_t i = 0; owned && i < n_merges; i++)
        free(owned[i]);
    free(owned);
    free(ms);
    free(pads);
    free(types);
    free(lens);
    free(toks);
    bn_json_free(j);
    return st;
}

/* SentencePiece tokenizer.model -> tokenizer.ggml.* with model "llama" (as
 * llama.cpp's converter writes it: pieces, scores, token types). */
static bn_status write_spm_tokenizer(conv *c, const char *path, const hparams *h) {
    bn_tokenizer *t = NULL;
    bn_error e;
    if (bn_tokenizer_load_spm(path, &t, &e) != BN_OK) return BN_ERR_NOT_FOUND;
    const size_t n = (size_t)t->n_vocab;
    const char **toks = calloc(n ? n : 1, sizeof *toks);
    uint64_t *lens = calloc(n ? n : 1, sizeof *lens);
    int32_t *types = calloc(n ? n : 1, sizeof *types);
    bn_status st = BN_OK;
    if (!toks || !lens || !types) st = bn_fail(c->err, BN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        toks[i] = t->text + t->text_off[i];
        lens[i] = t->text_off[i + 1] - t->text_off[i];
        types[i] = t->type[i];
    }
    if (!st) st = bn_gguf_writer_set_str(c->w, "tokenizer.ggml.model", "llama", 5, c->err);
    if (!st) st = bn_gguf_writer_set_arr_str(c->w, "tokenizer.ggml.tokens", toks, lens, n, c->err);
    if (!st && t->score)
        st = bn_gguf_writer_set_arr(c->w, "tokenizer.ggml.scores", BN_GGUF_FLOAT32, t->score, n,
                                    c->err);
    if (!st)
        st = bn_gguf_writer_set_arr(c->w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types, n,
                                    c->err);
    int64_t bos = h->bos >= 0 ? h->bos : t->bos, eos = h->eos >= 0 ? h->eos : t->eos;
    if (!st && bos >= 0 && (size_t)bos < n) st = set_u32(c, "tokenizer.ggml.bos_token_id", bos);
    if (!st && eos >= 0 && (size_t)eos < n) st = set_u32(c, "tokenizer.ggml.eos_token_id", eos);
    if (!st && t->unk >= 0) st = set_u32(c, "tokenizer.ggml.unknown_token_id", t->unk);
    uint8_t yes = 1, no = 0;
    if (!st)
        st = bn_gguf_writer_set(c->w, "tokenizer.ggml.add_bos_token", BN_GGUF_BOOL, &yes, c->err);
    if (!st)
        st = bn_gguf_writer_set(c->w, "tokenizer.ggml.add_eos_token", BN_GGUF_BOOL, &no, c->err);
    free(toks);
    free(lens);
    free(types);
    bn_tokenizer_free(t);
    return st;
}

/* GPT-2's byte -> unicode map (the text form of byte-level BPE tokens in
 * tokenizer.json and GGUF): printable bytes map to themselves, the others to
 * U+0100 + their index among the non-printable ones. */
static void gpt2_byte_map(uint16_t cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        cp[b] = (uint16_t)(keep ? b : 256 + n++);
    }
}

/* Append the GPT-2 text of bytes s[0..n) (at most 2 UTF-8 bytes each). */
static int gpt2_put(bn_buf *out, const uint16_t cp[256], const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t c = cp[(uint8_t)s[i]];
        char u[2];
        size_t k = 0;
        if (c < 0x80) {
            u[k++] = (char)c;
        } else {
            u[k++] = (char)(0xC0 | (c >> 6));
            u[k++] = (char)(0x80 | (c & 0x3F));
        }
        if (bn_buf_put(out, u, k)) return -1;
    }
    return 0;
}

/* The original's tiktoken tokenizer.model (Llama-3 ranks + 256 specials)
 * -> tokenizer.ggml.* with model "gpt2", pre "llama-bpe": tokens in GPT-2
 * text, and the merges recovered from the ranks as tiktoken's own
 * conversion does: the merge that makes token r is the last step of BPE on
 * r's bytes using only ranks below r (it must end in two parts). */
static bn_status write_tiktoken_tokenizer(conv *c, const char *path, const hparams *h) {
    bn_tokenizer *t = NULL;
    bn_error e;
    if (bn_tokenizer_load_tiktoken(path, &t, &e) != BN_OK) return BN_ERR_NOT_FOUND;
    const size_t n = (size_t)t->n_vocab;
    uint16_t cp[256];
    gpt2_byte_map(cp);
    bn_buf tb = {0}, mb = {0};
    size_t *toff = calloc(n + 1, sizeof *toff);
    size_t *moff = calloc(n + 1, sizeof *moff);
    size_t *ps = malloc(sizeof *ps * 1024), *pl = malloc(sizeof *pl * 1024);
    int32_t *types = calloc(n ? n : 1, sizeof *types);
    const char **strs = calloc(n ? n : 1, sizeof *strs);
    uint64_t *lens = calloc(n ? n : 1, sizeof *lens);
    size_t n_merges = 0;
    bn_status st = BN_OK;
    if (!toff || !moff || !ps || !pl || !types || !strs || !lens) {
        st = bn_fail(c->err, BN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < n && !st; r++) {
        const char *s = t->text + t->text_off[r];
        const size_t len = (size_t)(t->text_off[r + 1] - t->text_off[r]);
        types[r] = t->type[r] == BN_TT_CONTROL ? 3 : 1;
        int special = t->type[r] == BN_TT_CONTROL;
        if (special ? bn_buf_put(&tb, s, len) : gpt2_put(&tb, cp, s, len)) {
            st = bn_fail(c->err, BN_ERR_NOMEM, "out of memory");
            break;
        }
        toff[r + 1] = tb.n;
        if (special || len < 2 || len > 1024) continue;
        size_t np = len;
        for (size_t i = 0; i < len; i++)
            ps[i] = i, pl[i] = 1;
        while (np > 2) {
            size_t best = SIZE_MAX;
            int32_t best_rank = INT32_MAX;
            for (size_t i = 0; i + 1 < np; i++) {
                int32_t rk = bn_strmap_get(&t->map, t, s + ps[i], pl[i] + pl[i + 1]);
                if (rk >= 0 && (size_t)rk < r && rk < best_rank) best = i, best_rank = rk;
            }
            if (best == SIZE_MAX) break;
            pl[best] += pl[best + 1];
            memmove(ps + best + 1, ps + best + 2, (np - best - 2) * sizeof *ps);
            memmove(pl + best + 1, pl + best + 2, (np - best - 2) * sizeof *pl);
            np--;
        }
        if (np != 2) continue;
        if (gpt2_put(&mb, cp, s + ps[0], pl[0]) || bn_buf_put(&mb, " ", 1) ||
            gpt2_put(&mb, cp, s + ps[1], pl[1])) {
            st = bn_fail(c->err, BN_ERR_NOMEM, "out of memory");
            break;
        }
        moff[++n_merges] = mb.n;
    }
    if (st) goto done;
    for (size_t r = 0; r < n; r++) {
        strs[r] = tb.p + toff[r];
        lens[r] = toff[r + 1] - toff[r];
    }
    st = bn_gguf_writer_set_str(c->w, "tokenizer.ggml.model", "gpt2", 4, c->err);
    if (!st) st = bn_gguf_writer_set_str(c->w, "tokenizer.ggml.pre", "llama-bpe", 9, c->err);
    if (!st) st = bn_gguf_writer_set_arr_str(c->w, "tokenizer.ggml.tokens", strs, lens, n, c->err);
    if (!st)
        st = bn_gguf_writer_set_arr(c->w, "tokenizer.ggml.token_type", BN_GGUF_INT32, types, n,
                                    c->err);
    for (size_t k = 0; !st && k < n_merges; k++) {
        strs[k] = mb.p + moff[k];
        lens[k] = moff[k + 1] - moff[k];
    }
    if (!st && n_merges)
        st =
            bn_gguf_writer_set_arr_str(c->w, "tokenizer.ggml.merges", strs, lens, n_merges, c->err);
    int64_t bos = h->bos >= 0 ? h->bos : t->bos, eos = h->eos >= 0 ? h->eos : t->eos;
    if (!st && bos >= 0 && (size_t)bos < n) st = set_u32(c, "tokenizer.ggml.bos_token_id", bos);
    if (!st && eos >= 0 && (size_t)eos < n) st = set_u32(c, "tokenizer.ggml.eos_token_id", eos);
    if (!st && t->eot >= 0) st = set_u32(c, "tokenizer.ggml.eot_token_id", t->eot);
    if (!st && t->pad >= 0) st = set_u32(c, "tokenizer.ggml.padding_token_id", t->pad);
done:
    free(tb.p);
    free(mb.p);
    free(toff);
    free(moff);
    free(ps);
    free(pl);
    free(types);
    free(strs);
    free(lens);
    bn_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Layouts                                                                  */
/* ------------------------------------------------------------------------ */

static const bn_ckpt_tensor *find2(const source *s, const char *a, const char *b) {
    const bn_ckpt_tensor *t = bn_tset_find(&s->ts, a);
    return t ? t : (b ? bn_tset_find(&s->ts, b) : NULL);
}

static bn_status need_t(conv *c, const bn_ckpt_tensor *t, const char *name) {
    if (!t) return bn_fail(c->err, BN_ERR_NOT_FOUND, "missing tensor '%s'", name);
    return BN_OK;
}

/* The output head when it is a tensor of its own (not a copy of the
 * embedding, as the original writes it). */
static const bn_ckpt_tensor *untied_head(const source *s) {
    const bn_ckpt_tensor *emb = bn_tset_find(&s->ts, s->kind == SRC_HF ? "model.embed_tokens.weight"
                                                                       : "tok_embeddings.weight");
    const bn_ckpt_tensor *head =
        bn_tset_find(&s->ts, s->kind == SRC_HF ? "lm_head.weight" : "output.weight");
    if (!head || !emb) return NULL;
    if (head->nbytes == emb->nbytes && !memcmp(head->data, emb->data, emb->nbytes)) return NULL;
    return head;
}

/* The embedding, the final norm and an untied head, under their source names. */
static bn_status emit_embd_norm_head(conv *c, const source *s, const char *emb_name,
                                     const char *norm_name) {
    const hparams *h = &s->hp;
    const int64_t E = h->n_embd;
    bn_status st;
    const bn_ckpt_tensor *emb = bn_tset_find(&s->ts, emb_name);
    if ((st = need_t(c, emb, emb_name))) return st;
    if ((st = emit_float(c, "token_embd.weight", emb, h->n_vocab, E, c->o->head_type))) return st;
    const bn_ckpt_tensor *nrm = bn_tset_find(&s->ts, norm_name);
    if ((st = need_t(c, nrm, norm_name))) return st;
    if ((st = emit_float(c, "output_norm.weight", nrm, E, -1, BN_TYPE_F32))) return st;
    const bn_ckpt_tensor *head = untied_head(s);
    if (head) return emit_float(c, "output.weight", head, h->n_vocab, E, c->o->head_type);
    return BN_OK;
}

static bn_status emit_hf(conv *c, source *s) {
    const hparams *h = &s->hp;
    const int64_t E = h->n_embd, Q = h->n_head * h->head_dim, KV = h->n_head_kv * h->head_dim,
                  F = h->n_ff;
    char a[160], b[160], g[96];
    bn_status st = BN_OK;
    if ((st = emit_embd_norm_head(c, s, "model.embed_tokens.weight", "model.norm.weight")))
        return st;
    static const struct {
        const char *hf, *gg;
        int rows, cols; /* 0 E, 1 Q, 2 KV, 3 F */
        int perm;
    } lin[7] = {
        {"self_attn.q_proj", "attn_q", 1, 0, 1}, {"self_attn.k_proj", "attn_k", 2, 0, 2},
        {"self_attn.v_proj", "attn_v", 2, 0, 0}, {"self_attn.o_proj", "attn_output", 0, 1, 0},
        {"mlp.gate_proj", "ffn_gate", 3, 0, 0},  {"mlp.up_proj", "ffn_up", 3, 0, 0},
        {"mlp.down_proj", "ffn_down", 0, 3, 0}};
    const int64_t dims[4] = {E, Q, KV, F};
    for (int64_t il = 0; il < h->n_layer && !st; il++) {
        struct {
            const char *hf1, *hf2, *gg;
            int64_t n;
        } norms[4] = {{"input_layernorm", NULL, "attn_norm", E},
                      {"post_attention_layernorm", NULL, "ffn_norm", E},
                      {"self_attn.attn_sub_norm", "self_attn.inner_attn_ln", "attn_sub_norm", Q},
                      {"mlp.ffn_sub_norm", "mlp.ffn_layernorm", "ffn_sub_norm", F}};
        for (int k = 0; k < 4 && !st; k++) {
            if (k >= 2 && h->arch == ARCH_LLAMA_F) break;
            snprintf(a, sizeof a, "model.layers.%lld.%s.weight", (long long)il, norms[k].hf1);
            if (norms[k].hf2)
                snprintf(b, sizeof b, "model.layers.%lld.%s.weight", (long long)il, norms[k].hf2);
            const bn_ckpt_tensor *t = find2(s, a, norms[k].hf2 ? b : NULL);
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)il, norms[k].gg);
            if (!(st = need_t(c, t, a))) st = emit_float(c, g, t, norms[k].n, -1, BN_TYPE_F32);
        }
        for (int k = 0; k < 7 && !st; k++) {
            snprintf(a, sizeof a, "model.layers.%lld.%s.weight", (long long)il, lin[k].hf);
            snprintf(b, sizeof b, "model.layers.%lld.%s.weight_scale", (long long)il, lin[k].hf);
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)il, lin[k].gg);
            const bn_ckpt_tensor *t = bn_tset_find(&s->ts, a);
            if ((st = need_t(c, t, a))) break;
            part pt;
            memset(&pt, 0, sizeof pt);
            pt.t = t;
            pt.rows = dims[lin[k].rows];
            pt.cols = dims[lin[k].cols];
            pt.kind = is_float(t->dtype) ? PART_FLOAT : PART_HF_PACKED;
            pt.scale = bn_tset_find(&s->ts, b);
            if (h->arch == ARCH_LLAMA_F && lin[k].perm) {
                pt.perm = PERM_TO_INTERLEAVED;
                pt.perm_heads = lin[k].perm == 1 ? h->n_head : h->n_head_kv;
            }
            st = emit_linear(c, h, g, &pt);
        }
    }
    return st;
}

static bn_status emit_pt(conv *c, source *s) {
    const hparams *h = &s->hp;
    const int64_t E = h->n_embd, Q = h->n_head * h->head_dim, KV = h->n_head_kv * h->head_dim,
                  F = h->n_ff;
    char a[160], b[160], g[96];
    bn_status st = BN_OK;
    if ((st = emit_embd_norm_head(c, s, "tok_embeddings.weight", "norm.weight"))) return st;
    for (int64_t il = 0; il < h->n_layer && !st; il++) {
        static const struct {
            const char *pt, *gg;
            int which; /* 0 E, 1 Q, 2 F */
        } norms[4] = {{"attention_norm", "attn_norm", 0},
                      {"ffn_norm", "ffn_norm", 0},
                      {"attention.attn_sub_norm", "attn_sub_norm", 1},
                      {"feed_forward.ffn_sub_norm", "ffn_sub_norm", 2}};
        const int64_t nd[3] = {E, Q, F};
        for (int k = 0; k < 4 && !st; k++) {
            snprintf(a, sizeof a, "layers.%lld.%s.weight", (long long)il, norms[k].pt);
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)il, norms[k].gg);
            const bn_ckpt_tensor *t = bn_tset_find(&s->ts, a);
            if (!(st = need_t(c, t, a)))
                st = emit_float(c, g, t, nd[norms[k].which], -1, BN_TYPE_F32);
        }
        static const struct {
            const char *pt, *gg;
            int part; /* index in the fused tensor */
            int rows, cols,
                row0; /* 0 E 1 Q 2 KV 3 F; row0: 0, 1 (after Q), 2 (after Q+KV), 3 (after F) */
            int perm;
        } lin[7] = {{"attention.wqkv", "attn_q", 0, 1, 0, 0, 1},
                    {"attention.wqkv", "attn_k", 1, 2, 0, 1, 2},
                    {"attention.wqkv", "attn_v", 2, 2, 0, 2, 0},
                    {"attention.wo", "attn_output", 0, 0, 1, 0, 0},
                    {"feed_forward.w13", "ffn_gate", 0, 3, 0, 0, 0},
                    {"feed_forward.w13", "ffn_up", 1, 3, 0, 3, 0},
                    {"feed_forward.w2", "ffn_down", 0, 0, 3, 0, 0}};
        const int64_t dims[4] = {E, Q, KV, F};
        const int64_t r0[4] = {0, Q, Q + KV, F};
        for (int k = 0; k < 7 && !st; k++) {
            snprintf(a, sizeof a, "layers.%lld.%s.weight", (long long)il, lin[k].pt);
            snprintf(b, sizeof b, "layers.%lld.%s.weight_scale", (long long)il, lin[k].pt);
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)il, lin[k].gg);
            const bn_ckpt_tensor *t = bn_tset_find(&s->ts, a);
            if ((st = need_t(c, t, a))) break;
            part pt;
            memset(&pt, 0, sizeof pt);
            pt.t = t;
            pt.rows = dims[lin[k].rows];
            pt.cols = dims[lin[k].cols];
            pt.row0 = r0[lin[k].row0];
            pt.scale = bn_tset_find(&s->ts, b);
            pt.scale_idx = lin[k].part;
            if (is_float(t->dtype)) {
                pt.kind = PART_FLOAT;
                pt.maybe_ternary = 1;
            } else {
                pt.kind = PART_PT_INT2;
            }
            if (lin[k].perm) {
                pt.perm = PERM_FROM_INTERLEAVED;
                pt.perm_heads = lin[k].perm == 1 ? h->n_head : h->n_head_kv;
            }
            st = emit_linear(c, h, g, &pt);
        }
    }
    return st;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */
/* ------------------------------------------------------------------------ */

static char *dirname_of(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl) return join(".", "");
    size_t n = (size_t)(sl - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    if (n == 0) {
        memcpy(d, "/", 2);
    } else {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

static bn_status open_source(const char *path, const bn_checkpoint_opts *o, source *s,
                             bn_error *err) {
    memset(s, 0, sizeof *s);
    bn_tset_init(&s->ts);
    bn_ckpt_format f = bn_checkpoint_sniff(path);
    bn_status st;
    char *file = NULL;
    switch (f) {
    case BN_CKPT_HF_DIR:
    case BN_CKPT_SAFETENSORS:
        s->kind = SRC_HF;
        s->dir = f == BN_CKPT_HF_DIR ? join(path, "") : dirname_of(path);
        if (!s->dir) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        if (f == BN_CKPT_HF_DIR) s->dir[strlen(s->dir) - 1] = '\0';
        st = bn_safetensors_open(path, &s->ts, err);
        if (st) return st;
        file = join(s->dir, "config.json");
        if (!file) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
        if (!bn_is_file(file)) {
            st =
                bn_fail(err, BN_ERR_NOT_FOUND, "%s: no config.json beside the safetensors", s->dir);
        } else {
            st = hf_config(s, file, err);
        }
        free(file);
        return st;
    case BN_CKPT_PT_DIR:
    case BN_CKPT_PT: {
        s->kind = SRC_PT;
        if (f == BN_CKPT_PT_DIR) {
            s->dir = join(path, "");
            if (!s->dir) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
            s->dir[strlen(s->dir) - 1] = '\0';
            const char *pref[3] = {"model_state_int2.pt", "model_state_fp16.pt", "model_state.pt"};
            if (o->pt_variant == 2) {
                pref[0] = "model_state_fp16.pt";
                pref[1] = "model_state_int2.pt";
            }
            for (int i = 0; i < 3 && !file; i++) {
                char *p = join(s->dir, pref[i]);
                if (p && bn_is_file(p))
                    file = p;
                else
                    free(p);
            }
            if (!file) return bn_fail(err, BN_ERR_NOT_FOUND, "%s: no model_state_*.pt", path);
        } else {
            s->dir = dirname_of(path);
            file = malloc(strlen(path) + 1);
            if (!s->dir || !file) {
                free(file);
                return bn_fail(err, BN_ERR_NOMEM, "out of memory");
            }
            memcpy(file, path, strlen(path) + 1);
        }
        st = bn_pt_open(file, &s->ts, err);
        free(file);
        if (st) return st;
        return pt_config(s, err);
    }
    case BN_CKPT_GGUF: return bn_fail(err, BN_ERR_INVALID_ARG, "%s is already GGUF", path);
    default:
        return bn_fail(err, BN_ERR_UNSUPPORTED,
                       "%s: not a checkpoint we know (GGUF, safetensors / Hugging Face directory, "
                       "model_state_*.pt)",
                       path);
    }
}

static int file_type_of(int t) {
    switch (t) {
    case BN_TYPE_F32: return 0;
    case BN_TYPE_F16: return 1;
    case BN_TYPE_BF16: return 32;
    case BN_TYPE_TQ1_0: return 36;
    case BN_TYPE_TQ2_0: return 37;
    case BN_TYPE_I2_S: return 40;
    default: return -1;
    }
}

static bn_status check_opts(const bn_checkpoint_opts *o, bn_error *err) {
    if ((o->weight_type >= 0 && !bn_type_get(o->weight_type)) ||
        (o->weight_type < 0 && o->weight_type != -1 && o->weight_type != BN_CKPT_TYPE_LOAD))
        return bn_fail(err, BN_ERR_INVALID_ARG, "unknown weight type %d", o->weight_type);
    if (o->head_type >= 0 && !bn_type_get(o->head_type))
        return bn_fail(err, BN_ERR_INVALID_ARG, "unknown head type %d", o->head_type);
    return BN_OK;
}

/* The GGUF of an opened source (tokenizer files looked for in s->dir). */
static bn_status convert_source(source *s, const bn_checkpoint_opts *o, const char *name,
                                const char *out_path, void **out_mem, size_t *out_size,
                                bn_progress_fn cb, void *user, bn_error *err) {
    conv c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.cb = cb;
    c.user = user;
    c.err = err;
    c.wtype_used = -1;
    bn_status st = bn_gguf_writer_new(&c.w, err);
    if (!st) {
        c.total =
            2 + (untied_head(s) ? 1 : 0) + s->hp.n_layer * (s->hp.arch == ARCH_LLAMA_F ? 9 : 11);
        st = write_hparams(&c, &s->hp, name);
    }
    if (!st) st = s->kind == SRC_HF ? emit_hf(&c, s) : emit_pt(&c, s);
    if (!st) {
        int ft = file_type_of(c.wtype_used);
        if (ft >= 0) st = set_u32(&c, "general.file_type", ft);
    }
    if (!st && o->tokenizer && s->dir) {
        /* tokenizer.json (byte-level BPE), else tokenizer.model: SentencePiece
         * or the original's tiktoken ranks. */
        char *tj = join(s->dir, "tokenizer.json");
        char *tm = join(s->dir, "tokenizer.model");
        bn_status ts = BN_ERR_NOT_FOUND;
        if (!tj || !tm) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        } else {
            if (bn_is_file(tj)) ts = write_hf_tokenizer(&c, tj, &s->hp);
            if (ts == BN_ERR_NOT_FOUND && bn_is_file(tm)) ts = write_spm_tokenizer(&c, tm, &s->hp);
            if (ts == BN_ERR_NOT_FOUND && bn_is_file(tm))
                ts = write_tiktoken_tokenizer(&c, tm, &s->hp);
            if (ts != BN_OK && ts != BN_ERR_NOT_FOUND) st = ts;
        }
        free(tj);
        free(tm);
    }
    if (!st) {
        if (out_path) {
            st = bn_gguf_writer_write(c.w, out_path, err);
        } else {
            st = bn_gguf_writer_write_memory(c.w, out_mem, out_size, err);
        }
    }
    bn_gguf_writer_free(c.w);
    return st;
}

bn_status bn_checkpoint_to_gguf(const char *src, const bn_checkpoint_opts *opts,
                                const char *out_path, void **out_mem, size_t *out_size,
                                bn_progress_fn cb, void *user, bn_error *err) {
    if (out_mem) *out_mem = NULL;
    if (out_size) *out_size = 0;
    if (!src || (!out_path && (!out_mem || !out_size)))
        return bn_fail(err, BN_ERR_INVALID_ARG, "bn_checkpoint_to_gguf: NULL source or output");
    bn_checkpoint_opts o = opts ? *opts : bn_checkpoint_default_opts();
    bn_status st = check_opts(&o, err);
    if (st) return st;
    source s;
    st = open_source(src, &o, &s, err);
    if (!st) {
        const char *base = strrchr(src, '/');
        base = base && base[1] ? base + 1 : src;
        st = convert_source(&s, &o, base, out_path, out_mem, out_size, cb, user, err);
    }
    bn_tset_free(&s.ts);
    free(s.dir);
    if (st) return st;
    return bn_ok(err);
}

bn_status bn_checkpoint_image_memory(int pt, const void *data, size_t size, const char *config,
                                     size_t config_len, const bn_checkpoint_opts *opts, void **out,
                                     size_t *out_size, bn_error *err) {
    if (!out || !out_size) return bn_fail(err, BN_ERR_INVALID_ARG, "NULL output");
    *out = NULL;
    *out_size = 0;
    bn_checkpoint_opts o = opts ? *opts : bn_checkpoint_default_opts();
    bn_status st = check_opts(&o, err);
    if (st) return st;
    source s;
    memset(&s, 0, sizeof s);
    bn_tset_init(&s.ts);
    s.kind = pt ? SRC_PT : SRC_HF;
    st = pt ? bn_pt_parse(data, size, &s.ts, err) : bn_safetensors_parse(data, size, &s.ts, err);
    if (!st && pt) {
        st = pt_config(&s, err);
    } else if (!st) {
        bn_json *j = NULL;
        bn_error je;
        st = bn_json_parse(config ? config : "", config ? config_len : 0, &j, &je);
        if (st) {
            st = bn_fail(err, BN_ERR_FORMAT, "config.json: %s", je.msg);
        } else {
            st = hf_config_json(&s, j, "config.json", err);
        }
        bn_json_free(j);
    }
    if (!st) st = convert_source(&s, &o, "memory", NULL, out, out_size, NULL, NULL, err);
    bn_tset_free(&s.ts);
    return st;
}

void bn_checkpoint_free_memory(void *p) { free(p); }
