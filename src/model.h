/* Internal model structures (llama2.c style: Config, per-layer weights,
 * RunState) and the forward pass that forward.c implements.
 *
 * Architectures (general.architecture):
 *   "llama"        float / Q weights, SiLU-gated FFN, no sub norms, RoPE on
 *                  adjacent pairs (llama.cpp's ROPE_TYPE_NORM: its HF
 *                  converter permutes q/k rows so this matches HF's
 *                  rotate_half).
 *   "bitnet"       upstream llama.cpp's name (1bitLLM/bitnet_b1_58-*):
 *                  BitLinear, SiLU-gated FFN, attn/ffn sub norms, optional
 *                  per-tensor `.scale` tensors.
 *   "bitnet-b1.58" bitnet.cpp (microsoft/bitnet-b1.58-2B-4T) and
 *   "bitnet-25"    (an older upload of the same model): as "bitnet" but with a
 *                  relu(gate)^2 * up FFN.
 * All bitnet archs use NEOX RoPE: pairs (i, i + rope_dim/2). Source: the
 * llama.cpp fork that microsoft/BitNet builds (Eddie-Wang1120/llama.cpp,
 * src/llama.cpp): llama_rope_type() lists LLM_ARCH_BITNET, LLM_ARCH_BITNET_25
 * and LLM_ARCH_BITNET_158 under LLAMA_ROPE_TYPE_NEOX, and the BitnetModel
 * class of microsoft/BitNet utils/convert-hf-to-gguf-bitnet.py does not
 * permute q/k (unlike LlamaModel), so the rows are HF's rotate_half order.
 * Both build_bitnet and build_bitnet_158 there compute the head with
 * tok_embd (tied); we use output.weight when a file has one, else tok_embd.
 * Float BitLinear weights (F32/F16/BF16, or any type we can dequantize) are
 * taken as master weights and re-quantized with absmean at load, as
 * transformers' online quantization does: a float tensor that already holds
 * q * s therefore runs with scale s * (fraction of non-zero q), exactly as it
 * would in transformers. */
#ifndef BN_MODEL_H
#define BN_MODEL_H

#include "common.h"
#include "kernels.h"
#include "kv_cache.h"
#include "threadpool.h"

typedef enum Arch {
    ARCH_LLAMA = 0,
    ARCH_BITNET = 1,     /* "bitnet": SiLU FFN */
    ARCH_BITNET_B158 = 2 /* "bitnet-b1.58", "bitnet-25": relu^2 FFN */
} Arch;

typedef struct Config {
    Arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer; /* layers loaded (model params may ask for fewer) */
    int32_t n_layer_file;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t q_dim;  /* n_head * head_dim */
    int32_t kv_dim; /* n_head_kv * head_dim */
    int32_t n_ff;
    int32_t rope_dim; /* leading dims of each head that RoPE rotates */
    float rope_theta; /* freq_base */
    float rope_scale; /* linear scaling: positions are multiplied by this */
    float norm_eps;
    int rope_neox; /* 1: pairs (i, i + rope_dim/2); 0: adjacent pairs */
    int bitlinear; /* 1: int8 activations x ternary weights */
    int ffn_relu2; /* 1: relu(gate)^2 * up; 0: silu(gate) * up */
    int sub_norms; /* attn_sub_norm and ffn_sub_norm */
} Config;

typedef struct LayerWeights {
    const float *attn_norm;     /* [n_embd] */
    const float *attn_sub_norm; /* [q_dim], bitnet only */
    const float *ffn_norm;      /* [n_embd] */
    const float *ffn_sub_norm;  /* [n_ff], bitnet only */
    bn_tensor wq, wk, wv, wo;
    bn_tensor w_gate, w_up, w_down;
} LayerWeights;

struct bn_model {
    Config config;
    bn_model_config pub;
    bn_gguf *gguf;
    void *file_buf; /* use_mmap == 0: the whole file, read into memory */
    const bn_kernels *kernels;
    bn_tensor tok_embd; /* rows are dequantized one at a time (to_float) */
    bn_tensor output;   /* the head: output.weight, or tok_embd when tied */
    const float *output_norm;
    const float *rope_freqs; /* optional [rope_dim/2] frequency divisors */
    LayerWeights *layers;
    void **owned; /* resident buffers: ternarized weights, converted norms */
    size_t n_owned;
    size_t cap_owned;
    struct bn_block { /* weight_alloc's mapped blocks */
        void *p;
        size_t size;
    } * blocks;
    size_t n_blocks, cap_blocks;
    uint8_t *arena_next; /* free space in the current block */
    size_t arena_left;
    uint8_t *arena_faulted; /* pages of the block faulted in up to here */
    int huge_pages;         /* the blocks are advised for huge pages */
    bn_tokenizer *tokenizer;
    int64_t n_params;
    uint64_t weight_bytes;
};

/* Scratch of one context, sized once for n_batch tokens. */
typedef struct RunState {
    int32_t n_batch;
    int32_t n_threads; /* att holds one row per thread */
    int32_t n_ctx;
    float *x;        /* [n_batch][n_embd] residual stream */
    float *xb;       /* [n_batch][max(n_embd, q_dim)] norm output, attention output */
    float *xb2;      /* [n_batch][n_embd] projection output */
    float *q;        /* [n_batch][q_dim] */
    float *k;        /* [n_batch][kv_dim] */
    float *v;        /* [n_batch][kv_dim] */
    float *hb;       /* [n_batch][n_ff] */
    float *hb2;      /* [n_batch][n_ff] */
    int8_t *qa;      /* [n_batch][max(n_embd, q_dim, n_ff)] quantized activations */
    float *ascale;   /* [n_batch] activation scales (127 / max|x|) */
    float *att;      /* [n_threads][2][n_ctx] attention scores */
    float *rope_cos; /* [n_batch][rope_dim/2] */
    float *rope_sin;
    uint64_t bytes;
} RunState;

bn_status runstate_init(RunState *s, const Config *c, int32_t n_batch, int32_t n_ctx,
                        int32_t n_threads, bn_error *err);
/* Grow the per-thread attention rows for n_threads (no-op when enough). */
bn_status runstate_set_threads(RunState *s, int32_t n_threads, bn_error *err);
void runstate_free(RunState *s);

/* One forward pass over a validated batch: tokens tok[i] at positions pos[i]
 * of sequences seq[i] (each sequence's positions continue its KV history and
 * are consecutive), i < n_tok <= s->n_batch. Writes logits of the n_out
 * tokens listed in out_idx (increasing) to logits[j * n_vocab]. Does not
 * change kv->len; the caller commits the new lengths on success. */
typedef struct ForwardArgs {
    const int32_t *tok;
    const int32_t *pos;
    const int32_t *seq;
    int32_t n_tok;
    const int32_t *out_idx;
    int32_t n_out;
    float *logits;
    bn_abort_fn abort_fn;
    void *abort_user;
    struct bn_profile *profile; /* NULL: not profiling (profile.h) */
} ForwardArgs;

bn_status bn_forward(const bn_model *m, RunState *s, KVCache *kv, bn_threadpool *pool,
                     const ForwardArgs *a, bn_error *err);

/* BitLinear on n_tok tokens, rows [r0, r1) of w: quantize each token's
 * activations x[t * w->n_cols ..] to int8 (q, act_scale, as transformers'
 * BitNet ActQuant and bitnet.cpp's quantize_row_i8_s), then the exact
 * ternary x int8 matmul scaled back (kernels->matmul_i8). q and act_scale
 * are scratch of n_tok * n_cols and n_tok elements. */
void bn_bitlinear(const bn_kernels *k, const bn_tensor *w, const float *x, int64_t n_tok, int8_t *q,
                  float *act_scale, float *out, int64_t out_stride, int64_t r0, int64_t r1);

/* RMSNorm: o = x / sqrt(mean(x^2) + eps) * w (o may alias x). */
void bn_rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps);

#endif /* BN_MODEL_H */
