"""Writers of one synthetic model in the checkpoint layouts other
implementations use (test support for test_formats_loaders.py and
scripts/make_pt_fixture.py).

* :func:`write_hf_packed`: microsoft/bitnet-b1.58-2B-4T's layout (packed 2-bit
  uint8 + weight_scale = 1 / scale, transformers' integrations/bitnet.py);
* :func:`write_hf_float`: master weights in F32 / BF16 (the ``-bf16`` release);
* :func:`write_1bitllm`: 1bitLLM/bitnet_b1_58's LLaMA-style layout (arch
  ``bitnet``, SiLU; sub-norms inner_attn_ln / ffn_layernorm);
* :func:`write_original`: the original implementation's
  ``model_state_fp16.pt`` and ``model_state_int2.pt`` written with
  ``torch.save``, following gpu/convert_safetensors.py (fused wqkv / w13, q/k
  rows permuted "(h l d) -> (h d l)") and gpu/convert_checkpoint.py (absmean per
  part, bf16 scales, int2 packing of pack_weight.py), re-implemented here from
  the layout description in src/checkpoint.c.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bitnet_py import synthetic as S
from bitnet_py.convert import pack_hf


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (round to nearest even) as uint16."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def _write_st(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    off = 0
    for n in sorted(tensors):
        dt, a = tensors[n]
        header[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for n in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[n][1]).tobytes())


def _config(model: S.SyntheticModel, packed: bool) -> dict[str, Any]:
    cfg = S.hf_config(model)
    if packed:
        cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                                      "quantization_mode": "offline", "use_rms_norm": False,
                                      "modules_to_not_convert": ["lm_head"]}
    return cfg


def write_hf_packed(model: S.SyntheticModel, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    t: dict[str, tuple[str, np.ndarray]] = {}
    lin = {hf for _, hf, _ in model.linear_names()}
    for n, a in model.tensors.items():
        if n in lin:
            q, s = S.ternarize(a)
            t[n] = ("U8", pack_hf(q))
            t[n[: -len(".weight")] + ".weight_scale"] = ("F32", np.array([1.0 / s], np.float32))
        else:
            t[n] = ("F32", a.astype(np.float32))
    _write_st(out / "model.safetensors", t)
    (out / "config.json").write_text(json.dumps(_config(model, True), indent=2))
    return out


def write_hf_float(model: S.SyntheticModel, out: Path, dtype: str = "BF16",
                   shards: int = 1) -> Path:
    """Master weights in F32 or BF16, optionally sharded with an index."""
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(model.tensors)
    conv = (lambda a: ("BF16", _bf16(a))) if dtype == "BF16" else (lambda a: ("F32", a.astype(np.float32)))
    if shards == 1:
        _write_st(out / "model.safetensors", {n: conv(model.tensors[n]) for n in names})
    else:
        wm = {}
        for k in range(shards):
            part = names[k::shards]
            fn = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            _write_st(out / fn, {n: conv(model.tensors[n]) for n in part})
            wm.update({n: fn for n in part})
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}, indent=1))
    (out / "config.json").write_text(json.dumps(_config(model, False), indent=2))
    return out


def write_1bitllm(model: S.SyntheticModel, out: Path) -> Path:
    """1bitLLM/bitnet_b1_58-style checkpoint of a SiLU ('bitnet') model."""
    assert model.arch == "bitnet"
    out.mkdir(parents=True, exist_ok=True)
    ren = {"self_attn.attn_sub_norm": "self_attn.inner_attn_ln", "mlp.ffn_sub_norm": "mlp.ffn_layernorm"}
    t = {}
    for n, a in model.tensors.items():
        for k, v in ren.items():
            n = n.replace(k, v)
        t[n] = ("F32", a.astype(np.float32))
    _write_st(out / "model.safetensors", t)
    c = model.config
    cfg = {"architectures": ["BitnetForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "vocab_size": c.n_vocab, "hidden_size": c.n_embd, "intermediate_size": c.n_ff,
           "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
           "num_key_value_heads": c.n_head_kv, "max_position_embeddings": c.n_ctx,
           "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
           "tie_word_embeddings": c.tied, "bos_token_id": 1, "eos_token_id": 2,
           "weight_bits": 1, "input_bits": 8, "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


# --------------------------------------------------------------------------
# The original's checkpoints
# --------------------------------------------------------------------------


def to_interleaved(w: np.ndarray, n_heads: int) -> np.ndarray:
    """rearrange(w, "(h l d) i -> (h d l) i", l=2)."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, 2, hd // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def pack_int2(q: np.ndarray) -> np.ndarray:
    """int8 ternary [N, K] -> int8 [N, K/4] in the original's int2 layout."""
    N, K = q.shape
    v = (q.astype(np.int32) + 2).astype(np.uint32)  # {-1, 0, 1} -> {1, 2, 3}
    ii, jj = np.meshgrid(np.arange(16), np.arange(32), indexing="ij")
    tid = ii * 2 + jj // 16
    row = (tid // 16) * 8 + tid % 8
    col = jj % 16 + 16 * ((tid % 16) // 8)
    tiles = v.reshape(N // 16, 16, K // 32, 32).transpose(0, 2, 1, 3)
    perm = tiles[:, :, row, col]  # [N/16, K/32, 16, 32]
    vals = perm.reshape(N // 16, K // 32, 16, 2, 16)
    o = np.arange(16, dtype=np.uint32)
    shift = (o % 4) * 8 + (o // 4) * 2
    words = np.ascontiguousarray(np.bitwise_or.reduce(vals << shift, axis=-1).astype("<u4"))
    return words.view(np.uint8).reshape(N, K // 4).view(np.int8)


def original_state_dicts(model: S.SyntheticModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fp16 dict, int2 dict) of torch tensors, as convert_checkpoint.py
    writes them from the model's master weights."""
    import torch

    c = model.config
    T = model.tensors
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731

    def quant(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        wt = f32(w)
        s = 1.0 / wt.abs().mean().clamp_(min=1e-5)
        q = (wt * s).round().clamp(-1, 1)
        fp = (q / s).to(torch.bfloat16)
        return q.to(torch.int8).numpy(), fp, (1.0 / s).to(torch.bfloat16).reshape(1)

    fp16: dict[str, Any] = {}
    int2: dict[str, Any] = {}
    zero = torch.zeros(1, dtype=torch.bfloat16)
    for i in range(c.n_layer):
        p = f"model.layers.{i}."
        L = f"layers.{i}."
        wq = to_interleaved(T[p + "self_attn.q_proj.weight"], c.n_head)
        wk = to_interleaved(T[p + "self_attn.k_proj.weight"], c.n_head_kv)
        wv = T[p + "self_attn.v_proj.weight"]
        parts = [quant(x) for x in (wq, wk, wv)]
        fp16[L + "attention.wqkv.weight"] = torch.cat([x[1] for x in parts])
        int2[L + "attention.wqkv.weight"] = torch.from_numpy(pack_int2(np.concatenate([x[0] for x in parts])))
        int2[L + "attention.wqkv.weight_scale"] = torch.cat([x[2] for x in parts] + [zero])
        parts = [quant(T[p + n]) for n in ("mlp.gate_proj.weight", "mlp.up_proj.weight")]
        fp16[L + "feed_forward.w13.weight"] = torch.cat([x[1] for x in parts])
        int2[L + "feed_forward.w13.weight"] = torch.from_numpy(pack_int2(np.concatenate([x[0] for x in parts])))
        int2[L + "feed_forward.w13.weight_scale"] = torch.cat([x[2] for x in parts] + [zero, zero])
        for hf, o in (("self_attn.o_proj", "attention.wo"), ("mlp.down_proj", "feed_forward.w2")):
            q, fp, s = quant(T[p + hf + ".weight"])
            fp16[L + o + ".weight"] = fp
            int2[L + o + ".weight"] = torch.from_numpy(pack_int2(q))
            int2[L + o + ".weight_scale"] = torch.cat([s, zero, zero, zero])
        for hf, o in (("input_layernorm", "attention_norm"), ("post_attention_layernorm", "ffn_norm"),
                      ("self_attn.attn_sub_norm", "attention.attn_sub_norm"),
                      ("mlp.ffn_sub_norm", "feed_forward.ffn_sub_norm")):
            fp16[L + o + ".weight"] = f32(T[p + hf + ".weight"])
            int2[L + o + ".weight"] = f32(T[p + hf + ".weight"])
    for d in (fp16, int2):
        d["tok_embeddings.weight"] = f32(T["model.embed_tokens.weight"])
        d["output.weight"] = f32(T["model.embed_tokens.weight"])
        d["norm.weight"] = f32(T["model.norm.weight"])
    return fp16, int2


def write_original(model: S.SyntheticModel, out: Path, params: bool = True) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    fp16, int2 = original_state_dicts(model)
    torch.save(fp16, out / "model_state_fp16.pt")
    torch.save(int2, out / "model_state_int2.pt")
    if params:
        c = model.config
        (out / "params.json").write_text(json.dumps({
            "dim": c.n_embd, "n_layers": c.n_layer, "n_heads": c.n_head, "n_kv_heads": c.n_head_kv,
            "vocab_size": c.n_vocab, "ffn_dim": c.n_ff, "norm_eps": c.norm_eps,
            "rope_theta": c.rope_theta, "max_seq_len": c.n_ctx}, indent=2))
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
