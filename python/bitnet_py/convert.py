"""Convert BitNet checkpoints between formats.

``python -m bitnet_py.convert SRC DST.gguf [--type i2_s|tq2_0|tq1_0|f16] [--head q6_k|q8_0|f16]``
reads any checkpoint the engine loads and writes GGUF:

* GGUF (re-encoded), a Hugging Face directory or ``.safetensors`` file
  (microsoft/bitnet-b1.58-2B-4T's packed 2-bit weights, its ``-bf16`` master
  weights, 1bitLLM/bitnet_b1_58-* float weights, plain Llama), sharded or not;
* the original implementation's ``model_state_int2.pt`` / ``model_state_fp16.pt``
  (read without torch and without unpickling code: see src/pt_reader.c), or the
  directory holding them.

``--type``: ``i2_s`` (bitnet.cpp; arch bitnet-b1.58 only), ``tq2_0`` / ``tq1_0``
(llama.cpp), ``f16`` / ``bf16`` / ``f32`` (master weights that ternarize back to
the same values), default: ternary sources as i2_s (bitnet-b1.58) or tq2_0,
float sources kept. ``--head``: type of the token embedding / output head
(default: the source's float type). The tokenizer (``tokenizer.json`` of a
Hugging Face directory) is written into the GGUF metadata.

``python -m bitnet_py.convert SRC DST_DIR --to hf`` exports to safetensors in
the Hugging Face BitNet layout (``model.safetensors`` with packed 2-bit ``uint8``
weights and ``weight_scale``, as transformers' ``integrations/bitnet.py``
``pack_weights`` makes them, plus ``config.json``), which
``transformers.BitNetForCausalLM`` loads.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bitnet_py import _core
# HF name -> GGUF name of each layer's BitLinear projections and norms.
from bitnet_py.synthetic import _LINEARS, _NORMS

__all__ = ["to_gguf", "export_hf", "checkpoint_format", "pack_hf", "unpack_hf", "main"]

checkpoint_format = _core.checkpoint_format


class _Bar:
    """tqdm when installed, else a plain stderr bar."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc = desc
        self.enabled = enabled
        self.t0 = time.time()
        self.tq: Any = None
        self.last = -1.0

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.tq is None:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self.tq = tqdm(total=total, desc=self.desc, unit="tensor", file=sys.stderr)
            except ImportError:
                self.tq = False
        if self.tq:
            self.tq.total = total
            self.tq.n = done
            self.tq.set_postfix_str(name, refresh=False)
            self.tq.refresh()
            return
        now = time.time()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        width = 30
        fill = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{self.desc} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
                         f"{now - self.t0:5.1f}s {name[:40]:<40}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tq:
            self.tq.close()


def to_gguf(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None, *,
            weight_type: str | None = None, head_type: str | None = None,
            pt_variant: str = "int2", tokenizer: bool = True,
            progress: Callable[[str, int, int], None] | bool | None = None) -> bytes | None:
    """Convert ``src`` to GGUF at ``dst`` (or return the bytes when dst is None).

    A GGUF source is re-encoded through the engine's loader path (its tensors
    dequantized and written in the requested types)."""
    bar: Any = None
    if progress is True:
        bar = _Bar(f"convert {Path(src).name}")
        progress = bar
    elif progress is False:
        progress = None
    try:
        src_s = os.fspath(src)
        if _core.checkpoint_format(src_s) == "gguf":
            return _regguf(src_s, dst, weight_type, head_type, progress)
        return _core.checkpoint_to_gguf(
            src_s, None if dst is None else os.fspath(dst), weight_type=weight_type,
            head_type=head_type, pt_variant=2 if pt_variant == "fp16" else 0,
            tokenizer=tokenizer, progress=progress)
    finally:
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------
# Reading weights back as ternary values (GGUF in any type)
# --------------------------------------------------------------------------


def _ternary_of(w: np.ndarray) -> tuple[np.ndarray, float]:
    """(q, s) of a weight: exact when it already is ternary times one scale
    (every ternary GGUF type our writer or bitnet.cpp/llama.cpp makes), else
    BitNet's absmean quantization of master weights (as the engine does at
    load)."""
    a = np.abs(w)
    nz = a[a != 0]
    if nz.size and np.all(nz == nz[0]):
        s = float(nz[0])
        return np.sign(w).astype(np.int8), s
    q, s = _core.ternarize(w)
    return np.asarray(q, dtype=np.int8).reshape(w.shape), float(s)


def _read_gguf(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, tuple[np.ndarray, float]]]:
    r = _core.GGUFReader(path)
    try:
        meta = {k: r.get(k) for k in r.keys() if not k.startswith("tokenizer.ggml.")}
        tok = {k: r.get(k) for k in r.keys() if k.startswith("tokenizer.")}
        meta["__tokenizer__"] = tok
        floats: dict[str, np.ndarray] = {}
        tern: dict[str, tuple[np.ndarray, float]] = {}
        for t in r.tensors():
            name, shape = t["name"], tuple(t["shape"])
            cols = int(shape[0])
            rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            x = _core.dequantize(t["type_name"], r.tensor_bytes(name), cols, rows)
            x = np.asarray(x, dtype=np.float32).reshape(rows, cols) if len(shape) > 1 else \
                np.asarray(x, dtype=np.float32).reshape(cols)
            is_lin = any(name.endswith(f".{g}.weight") for _, g in _LINEARS) and name.startswith("blk.")
            if is_lin:
                tern[name] = _ternary_of(x)
            else:
                floats[name] = x
        return meta, floats, tern
    finally:
        r.close()


def _regguf(src: str, dst: Any, weight_type: str | None, head_type: str | None,
            progress: Any) -> bytes | None:
    """GGUF -> GGUF in other types: through a Hugging Face export (the same
    names and values the C converter reads)."""
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(src, tmp, packed=False, dtype="float32")
        return _core.checkpoint_to_gguf(tmp, None if dst is None else os.fspath(dst),
                                        weight_type=weight_type, head_type=head_type,
                                        progress=progress)


# --------------------------------------------------------------------------
# Hugging Face export
# --------------------------------------------------------------------------


def pack_hf(q: np.ndarray) -> np.ndarray:
    """transformers' integrations/bitnet.py pack_weights: ternary int8
    [out, in] -> uint8 [out/4, in]; row i*(out/4) + p goes to bits 2i of
    packed row p, stored as q + 1."""
    q = np.asarray(q, dtype=np.int8)
    n = q.shape[0]
    if n % 4:
        raise ValueError(f"{n} rows do not pack 4 to a byte")
    u = (q.astype(np.int16) + 1).astype(np.uint8).reshape(4, n // 4, *q.shape[1:])
    out = np.zeros(u.shape[1:], dtype=np.uint8)
    for i in range(4):
        out |= (u[i] << (2 * i)).astype(np.uint8)
    return out


def unpack_hf(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_hf` (transformers' unpack_weights)."""
    p = np.asarray(p, dtype=np.uint8)
    return np.concatenate([((p >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)], axis=0)


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    dt = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("uint8"): "U8",
          np.dtype("int8"): "I8"}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    off = 0
    names = sorted(tensors)
    for n in names:
        a = tensors[n]
        header[n] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for n in names:
            f.write(np.ascontiguousarray(tensors[n]).astype(tensors[n].dtype.newbyteorder("<")).tobytes())


def export_hf(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, packed: bool = True,
              dtype: str = "float32") -> Path:
    """Write ``src`` (any format) as a Hugging Face BitNet checkpoint:
    ``model.safetensors`` + ``config.json`` (+ ``generation_config.json``).

    ``packed=True``: BitLinear weights as transformers' packed uint8 with
    ``weight_scale`` = 1 / scale (BitLinear divides by it), the layout of
    microsoft/bitnet-b1.58-2B-4T (``quantization_mode`` "offline",
    ``linear_class`` "bitlinear"). ``packed=False``: float master weights
    (``linear_class`` "autobitlinear", "online" quantization, as the ``-bf16``
    release is used) chosen so that absmean ternarizes them back to exactly
    the same ternary values and scale: ``q * s / frac``. Arch ``bitnet`` (SiLU) is exported in
    1bitLLM's ``BitnetForCausalLM`` layout (float only; transformers has no
    class for it)."""
    src = os.fspath(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if _core.checkpoint_format(src) == "gguf":
        meta, floats, tern = _read_gguf(src)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            g = os.path.join(tmp, "m.gguf")
            _core.checkpoint_to_gguf(src, g)
            meta, floats, tern = _read_gguf(g)
    arch = meta["general.architecture"]
    a = arch

    def hp(k: str, default: Any = None) -> Any:
        return meta.get(f"{a}.{k}", default)

    n_embd, n_layer = int(hp("embedding_length")), int(hp("block_count"))
    n_head = int(hp("attention.head_count"))
    n_head_kv = int(hp("attention.head_count_kv", n_head))
    head_dim = int(hp("attention.key_length", n_embd // n_head))
    emb = floats["token_embd.weight"]
    n_vocab = int(emb.shape[0])
    fdt = np.float16 if dtype == "float16" else np.float32
    silu = arch == "bitnet"
    if arch == "llama":
        raise ValueError("export_hf writes BitNet checkpoints (arch bitnet-b1.58, bitnet-25, bitnet)")
    if silu and packed:
        raise ValueError("arch 'bitnet' (SiLU) has no packed Hugging Face layout; use packed=False")
    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": emb.astype(fdt),
                                "model.norm.weight": floats["output_norm.weight"].astype(fdt)}
    tied = "output.weight" not in floats
    if not tied:
        t["lm_head.weight"] = floats["output.weight"].astype(fdt)
    sub = {"self_attn.attn_sub_norm": "self_attn.inner_attn_ln", "mlp.ffn_sub_norm": "mlp.ffn_layernorm"}
    for i in range(n_layer):
        for hf, gg in _NORMS:
            name = sub[hf] if silu and hf in sub else hf
            t[f"model.layers.{i}.{name}.weight"] = floats[f"blk.{i}.{gg}.weight"].astype(fdt)
        for hf, gg in _LINEARS:
            q, s = tern[f"blk.{i}.{gg}.weight"]
            base = f"model.layers.{i}.{hf}"
            if packed:
                t[base + ".weight"] = pack_hf(q)
                t[base + ".weight_scale"] = np.array([1.0 / s], dtype=fdt)
            else:
                # Master weights whose absmean ternarization is q * s again:
                # W = q * s / frac (frac = share of non-zeros), mean|W| = s.
                nz = int(np.count_nonzero(q))
                m = np.float32(s * q.size / nz) if nz else np.float32(0)
                t[base + ".weight"] = (q.astype(np.float32) * m).astype(fdt)
    _write_safetensors(out / "model.safetensors", t)
    tok = meta["__tokenizer__"]
    bos = tok.get("tokenizer.ggml.bos_token_id")
    eos = tok.get("tokenizer.ggml.eos_token_id")
    cfg: dict[str, Any] = {
        "architectures": ["BitnetForCausalLM" if silu else "BitNetForCausalLM"],
        "model_type": "llama" if silu else "bitnet",
        "vocab_size": n_vocab,
        "hidden_size": n_embd,
        "intermediate_size": int(hp("feed_forward_length")),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "head_dim": head_dim,
        "hidden_act": "silu" if silu else "relu2",
        "max_position_embeddings": int(hp("context_length", 2048)),
        "rms_norm_eps": float(hp("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(hp("rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": dtype,
        "use_cache": True,
    }
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
    if not silu:
        cfg["quantization_config"] = (
            {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline",
             "use_rms_norm": False, "modules_to_not_convert": ["lm_head"]} if packed else
            {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online",
             "use_rms_norm": False, "modules_to_not_convert": ["lm_head"]})
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(out / "generation_config.json", "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}, f, indent=2)
        f.write("\n")
    return out


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bitnet_py.convert",
        description="Convert a BitNet checkpoint (GGUF, safetensors / Hugging Face directory, "
                    "the original's model_state_*.pt) to GGUF, or export it to Hugging Face "
                    "safetensors.")
    ap.add_argument("src", help="source file or directory")
    ap.add_argument("dst", help="output .gguf (or directory with --to hf)")
    ap.add_argument("--to", choices=("gguf", "hf"), default=None,
                    help="output format (default: hf when dst has no .gguf suffix and exists as "
                         "a directory, else gguf)")
    ap.add_argument("--type", dest="weight_type", default=None,
                    choices=("i2_s", "tq2_0", "tq1_0", "f16", "bf16", "f32"),
                    help="BitLinear weight type (default: i2_s / tq2_0 for ternary sources, "
                         "float sources kept)")
    ap.add_argument("--head", dest="head_type", default=None,
                    choices=("q6_k", "q8_0", "f16", "bf16", "f32"),
                    help="token embedding / output head type (default: the source's)")
    ap.add_argument("--pt", choices=("int2", "fp16"), default="int2",
                    help="which of the original's files to read from a directory")
    ap.add_argument("--no-tokenizer", action="store_true", help="leave the vocabulary out")
    ap.add_argument("--bf16-master", action="store_true",
                    help="--to hf: float master weights instead of packed 2-bit")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    to = args.to or ("hf" if not args.dst.endswith(".gguf") and os.path.isdir(args.dst) else "gguf")
    t0 = time.time()
    try:
        if to == "hf":
            export_hf(args.src, args.dst, packed=not args.bf16_master)
        else:
            to_gguf(args.src, args.dst, weight_type=args.weight_type, head_type=args.head_type,
                    pt_variant=args.pt, tokenizer=not args.no_tokenizer, progress=not args.quiet)
    except (_core.BitNetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"wrote {args.dst} in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
