/* libFuzzer harness for the checkpoint mapping (src/checkpoint.c): the first
 * input byte picks the source, the rest is the file:
 *   even: a safetensors file with a fixed tiny BitNet config.json (hidden 128,
 *         1 layer, 2 heads / 1 KV head, FFN 256, vocab 32);
 *   odd:  a torch.save zip of the original's checkpoint (ModelArgs defaults).
 * Whatever image comes out must be a GGUF that the reader accepts. A crash, a
 * sanitizer report, an invalid image or an unexplained failure is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] =
    "{\"architectures\":[\"BitNetForCausalLM\"],\"model_type\":\"bitnet\",\"vocab_size\":32,"
    "\"hidden_size\":128,\"intermediate_size\":256,\"num_hidden_layers\":1,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"hidden_act\":\"relu2\","
    "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,\"rope_theta\":500000.0}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int pt = data[0] & 1;
    void *img = NULL;
    size_t n = 0;
    bn_error err;
    bn_checkpoint_opts o = bn_checkpoint_default_opts();
    o.weight_type = (data[0] >> 1) % 3 == 0   ? -1
                    : (data[0] >> 1) % 3 == 1 ? BN_CKPT_TYPE_LOAD
                                              : BN_TYPE_TQ2_0;
    bn_status st = bn_checkpoint_image_memory(pt, data + 1, size - 1, CONFIG, sizeof CONFIG - 1, &o,
                                              &img, &n, &err);
    if (st == BN_OK) {
        bn_gguf *g = NULL;
        bn_error e2;
        if (bn_gguf_open_memory(img, n, &g, &e2) != BN_OK) abort();
        if (bn_gguf_n_tensors(g) < 11) abort();
        bn_gguf_close(g);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    bn_checkpoint_free_memory(img);
    return 0;
}
