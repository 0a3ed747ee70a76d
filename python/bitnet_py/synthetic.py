"""Seeded generator of tiny (and benchmark-sized) BitNet b1.58 models.

The project's correctness tests need BitNet models whose weights we know
exactly, written in every format the engine reads, and the same weights in the
layout that independent implementations load (Hugging Face transformers'
``BitNetForCausalLM``, llama.cpp's ``bitnet`` arch). This module makes them.

* :func:`make_model` builds a :class:`SyntheticModel`: float32 master weights in
  Hugging Face layout (``model.layers.N.self_attn.q_proj.weight`` ...), drawn
  from ``np.random.default_rng(seed)``, so one seed gives one model.
* :func:`write_gguf` writes it as GGUF (arch ``bitnet-b1.58`` with relu² FFN as
  bitnet.cpp names it, or ``bitnet``, upstream llama.cpp's SiLU-gated variant)
  with the BitLinear weights in F32 / F16 (master weights; the engine
  ternarizes them when it loads) or in I2_S / TQ1_0 / TQ2_0 (the absmean
  ternarization of the master weights, so the ternary values are identical in
  every format).
* :func:`write_safetensors` writes the Hugging Face checkpoint + config.json
  that ``transformers.BitNetForCausalLM`` loads with online absmean weight
  quantization and per-token int8 activation quantization.
* :func:`write_2b4t_gguf` writes a model with the exact shapes of
  microsoft/bitnet-b1.58-2B-4T (the benchmark model), generating ternary
  weights tensor by tensor so that memory stays bounded.
* :func:`reference_logits` is a small numpy implementation of the same graph,
  used by the tests to explain differences (for example a per-256-block
  activation quantization that mimics llama.cpp's Q8_K).

How the master weights are made "ternarization-exact"
----------------------------------------------------
BitNet's absmean quantizer is ``s = mean|W|; q = clamp(round(W / s), -1, 1)``.
A random float matrix has some ``W/s`` within float rounding of ±0.5, where two
implementations that compute ``s`` in a different order (or store W in F16)
may round differently. The generator avoids that by construction: each
BitLinear weight is ``W = s * u / 32`` with integer ``u`` (|u| <= 127) drawn
from a rounded Gaussian, with

* no ``|u|`` in 13..19 (so ``|W/s|`` is at least 3/32 away from 0.5),
* ``sum |u| == 32 * n`` exactly (so ``mean|W| == s`` up to float rounding of the
  sum, which cannot move ``W/s`` across a rounding boundary),
* ``s = m * 2**e`` with a 4-bit mantissa ``m`` (1, 1.125, ..., 1.875): ``s`` is
  exact in F16 (the TQ formats' per-block scale) and ``s * u / 32`` needs at most
  11 significant bits, so W is exact in F16 too (F32 and F16 master files hold
  the same numbers).

Conditioning
------------
Norm weights are ``N(1, 0.1)``; each BitLinear's scale is chosen so that its
output has RMS about ``gain`` for an RMS-1 input; the embedding is scaled so
logits have a standard deviation of about 4. Random models have near-ties
(top-2 margins of 0.01-0.1 at some positions). With ``bigram=True`` ("sharp"
mode) the FFN of the last layer also holds a key-value memory (one hidden unit
per token, gate/up rows = the signs of that token's embedding, the down column
= the signs of a successor token's embedding): the model then predicts a
successor of the current token with top-1 margins of several units, which
keeps argmax comparisons meaningful against references whose arithmetic
differs by ~0.5 (llama.cpp quantizes activations per 256-block, BitNet per
token). All of this is plain BitNet math: the structured matrices are ternary
too. See docs/synthetic-models.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

logger = logging.getLogger("bitnet_py.synthetic")

ARCHS = ("bitnet-b1.58", "bitnet", "bitnet-25")
WEIGHT_TYPES = ("f32", "f16", "bf16", "i2_s", "tq1_0", "tq2_0")
HEAD_TYPES = ("f32", "f16", "q8_0", "q6_k")
TERNARY_TYPES = ("i2_s", "tq1_0", "tq2_0")

# llama.cpp's LLAMA_FTYPE values (general.file_type); 40 is bitnet.cpp's I2_S.
_FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "tq1_0": 36, "tq2_0": 37, "i2_s": 40}
# Row-length granularity of each type (GGUF rows must be whole blocks).
_BLOCK = {"f32": 1, "f16": 1, "bf16": 1, "q8_0": 32, "q6_k": 256, "tq1_0": 256, "tq2_0": 256,
          "i2_s": 128}

# The seven BitLinear projections of a layer: HF name -> GGUF name.
_LINEARS = (
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
)
_NORMS = (
    ("input_layernorm", "attn_norm"),
    ("self_attn.attn_sub_norm", "attn_sub_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.ffn_sub_norm", "ffn_sub_norm"),
)

# SentencePiece token types (llama.cpp's llama_token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6

_GRID = 32  # master weights are multiples of s / _GRID
_GAP = (13, 19)  # |u| never in this range: |W/s| stays >= 3/32 away from 0.5


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters, with Hugging Face meanings."""

    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int = 2048
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    tied: bool = True

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def ffn_act(self) -> str:
        return "silu" if self.arch == "bitnet" else "relu2"


@dataclasses.dataclass
class SyntheticModel:
    """A model held as float32 master weights in Hugging Face layout.

    ``tensors`` maps HF names to arrays shaped as PyTorch stores them
    (``[out_features, in_features]`` for linears). ``tokens`` / ``scores`` /
    ``token_types`` are a SentencePiece-style vocabulary of n_vocab entries
    (``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens when they fit, then
    synthetic pieces)."""

    config: ModelConfig
    seed: int
    tensors: dict[str, np.ndarray]
    tokens: list[str]
    scores: list[float]
    token_types: list[int]
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 0

    @property
    def arch(self) -> str:
        return self.config.arch

    def linear_names(self) -> Iterator[tuple[int, str, str]]:
        """(layer, HF name, GGUF name) of every BitLinear weight."""
        for i in range(self.config.n_layer):
            for hf, gg in _LINEARS:
                yield i, f"model.layers.{i}.{hf}.weight", f"blk.{i}.{gg}.weight"

    def ternary(self, hf_name: str) -> tuple[np.ndarray, float]:
        """Absmean ternarization of one BitLinear weight: (int8 q, scale)."""
        return ternarize(self.tensors[hf_name])


def ternarize(w: np.ndarray) -> tuple[np.ndarray, float]:
    """BitNet b1.58 absmean quantization in numpy (float64 mean):
    ``s = max(mean|w|, 1e-5)``, ``q = clamp(round(w / s), -1, 1)``; round half
    to even as torch.round and rint. The generator's master weights make the
    result independent of how the mean is summed."""
    w = np.asarray(w, dtype=np.float32)
    s = max(float(np.mean(np.abs(w), dtype=np.float64)), 1e-5)
    s32 = float(np.float32(s))
    q = np.clip(np.rint(w / np.float32(s32)), -1, 1).astype(np.int8)
    return q, s32


def _f16_scale(x: float) -> float:
    """Round x > 0 to m * 2**e with a 4-bit mantissa m in [1, 2)."""
    e = math.floor(math.log2(x))
    m = round(x / 2.0**e * 8) / 8
    if m >= 2.0:
        m, e = 1.0, e + 1
    return m * 2.0**e


def _ternary_friendly(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    """Master weights W = s * u / 32 (see the module docstring)."""
    n = rows * cols
    if n * _GRID >= 2**31:
        raise ValueError(f"tensor of {n} elements is too large for float master weights")
    s = _f16_scale(scale)
    # E|t| = 1 for t = z * sqrt(pi / 2); about 69 % of |t| are above 0.5.
    t = rng.standard_normal(n) * math.sqrt(math.pi / 2.0)
    u = np.rint(t * _GRID).astype(np.int64)
    u = np.clip(u, -127, 127)
    a = np.abs(u)
    lo, hi = _GAP
    mid = (lo + hi) / 2.0
    a = np.where((a >= lo) & (a <= hi), np.where(a < mid, lo - 1, hi + 1), a)
    # Make sum|u| == 32 n exactly by nudging magnitudes inside [24, 100].
    deficit = _GRID * n - int(a.sum())
    order = rng.permutation(n)
    while deficit != 0:
        step = 1 if deficit > 0 else -1
        ok = order[(a[order] >= 24) & (a[order] <= 100)]
        k = min(abs(deficit), ok.size)
        if k == 0:
            raise RuntimeError("cannot balance the master weights")
        a[ok[:k]] += step
        deficit -= step * k
        order = np.roll(order, -k)
    sign = np.where(u < 0, -1, 1)
    u = sign * a
    w = (u.astype(np.float64) * (s / _GRID)).astype(np.float32).reshape(rows, cols)
    return w


def _f16_round(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece-style vocabulary that llama.cpp's "llama" tokenizer
    accepts: <unk>, <s>, </s>, <0x00>..<0xFF> (when n_vocab allows), then
    pieces "▁" + a base-26 word (unique, deterministic)."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL]
    if n_vocab >= 3 + 256 + 1:
        for b in range(256):
            tokens.append(f"<0x{b:02X}>")
            types.append(TOKEN_BYTE)
    letters = "abcdefghijklmnopqrstuvwxyz"
    k = 0
    while len(tokens) < n_vocab:
        word, j = "", k
        while True:
            word = letters[j % 26] + word
            j = j // 26 - 1
            if j < 0:
                break
        tokens.append("\u2581" + word if k % 3 else word)
        types.append(TOKEN_NORMAL)
        k += 1
    tokens = tokens[:n_vocab]
    types = types[:n_vocab]
    scores = [0.0 if t != TOKEN_NORMAL else -float(i) for i, t in enumerate(types)]
    return tokens, scores, types


def make_model(
    arch: str = "bitnet-b1.58",
    n_vocab: int = 512,
    n_embd: int = 256,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 768,
    n_ctx: int = 512,
    seed: int = 0,
    *,
    rope_theta: float = 500000.0,
    norm_eps: float = 1e-5,
    tied: bool = True,
    embd_std: float | None = None,
    gain: float = 1.0,
    qk_gain: float = 1.0,
    bigram: bool = False,
    bigram_gain: float = 4.0,
) -> SyntheticModel:
    """Build a seeded BitNet model (see the module docstring).

    ``gain``: RMS of each residual contribution (o_proj and down_proj outputs)
    for an RMS-1 input; ``qk_gain``: RMS of q and k, which sets how peaked the
    attention is; ``embd_std``: standard deviation of the embedding entries
    (default ``4 / sqrt(n_embd)``: logits of standard deviation about 4);
    ``bigram``: give the last layer's FFN a token -> successor memory (clear
    top-1 margins, see above); ``bigram_gain``: its output RMS relative to
    ``gain``."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, not {arch!r}")
    if n_embd % n_head or n_head % n_head_kv or (n_embd // n_head) % 2:
        raise ValueError("n_embd must split into n_head even-sized heads, n_head into n_head_kv groups")
    cfg = ModelConfig(arch, n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx,
                      float(rope_theta), float(norm_eps), bool(tied))
    rng = np.random.default_rng(seed)
    hd = cfg.head_dim
    t: dict[str, np.ndarray] = {}
    p_nz = 0.69  # fraction of non-zero ternary values of a _ternary_friendly weight

    def lin_scale(n_in: int, out_rms: float) -> float:
        return out_rms / math.sqrt(p_nz * n_in)

    def norm(n: int) -> np.ndarray:
        return _f16_round(rng.normal(1.0, 0.1, n))

    estd = embd_std if embd_std is not None else 4.0 / math.sqrt(n_embd)
    embd = _f16_round(rng.standard_normal((n_vocab, n_embd)) * estd)
    t["model.embed_tokens.weight"] = embd
    succ = rng.permutation(n_vocab)
    for i in range(n_layer):
        pre = f"model.layers.{i}."
        t[pre + "input_layernorm.weight"] = norm(n_embd)
        t[pre + "post_attention_layernorm.weight"] = norm(n_embd)
        t[pre + "self_attn.attn_sub_norm.weight"] = norm(n_embd)
        t[pre + "mlp.ffn_sub_norm.weight"] = norm(n_ff)
        t[pre + "self_attn.q_proj.weight"] = _ternary_friendly(
            rng, n_head * hd, n_embd, lin_scale(n_embd, qk_gain))
        t[pre + "self_attn.k_proj.weight"] = _ternary_friendly(
            rng, n_head_kv * hd, n_embd, lin_scale(n_embd, qk_gain))
        t[pre + "self_attn.v_proj.weight"] = _ternary_friendly(
            rng, n_head_kv * hd, n_embd, lin_scale(n_embd, 1.0))
        t[pre + "self_attn.o_proj.weight"] = _ternary_friendly(
            rng, n_embd, n_head * hd, lin_scale(n_head * hd, gain))
        gate = _ternary_friendly(rng, n_ff, n_embd, lin_scale(n_embd, 1.0))
        up = _ternary_friendly(rng, n_ff, n_embd, lin_scale(n_embd, 1.0))
        down = _ternary_friendly(rng, n_embd, n_ff, lin_scale(n_ff, gain))
        if bigram and i == n_layer - 1:
            gate, up, down = _bigram_ffn(rng, embd, succ, gate, up, down, gain * bigram_gain)
        t[pre + "mlp.gate_proj.weight"] = gate
        t[pre + "mlp.up_proj.weight"] = up
        t[pre + "mlp.down_proj.weight"] = down
    t["model.norm.weight"] = norm(n_embd)
    if not tied:
        t["lm_head.weight"] = _f16_round(rng.standard_normal((n_vocab, n_embd)) * estd)
    tokens, scores, types = _vocab(n_vocab)
    logger.info("made %s model: vocab %d, embd %d, layers %d, heads %d/%d, ffn %d, seed %d",
                arch, n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, seed)
    return SyntheticModel(cfg, seed, t, tokens, scores, types)


def _bigram_ffn(rng: np.random.Generator, embd: np.ndarray, succ: np.ndarray, gate: np.ndarray,
                up: np.ndarray, down: np.ndarray, out_rms: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overwrite hidden units 0..min(n_ff, n_vocab)-1 with a token memory:
    unit k reads sign(e_k) (gate and up) and writes sign(e_succ[k]) (down).
    Gate/up keep their random scale; the memory's rows are ternary with all
    entries non-zero, scaled so that the tensor's absmean scale is unchanged
    and every entry still ternarizes to its sign."""
    n_ff, n_embd = gate.shape
    m = min(n_ff, embd.shape[0])
    sg = np.where(embd[:m] >= 0, 1.0, -1.0)

    def rebalance(w: np.ndarray, rows: slice | None, cols: slice | None, signs: np.ndarray
                  ) -> np.ndarray:
        # Put signs * s in place, then rescale the remaining master weights so
        # that the mean |W| (the absmean scale) is exactly s again: the other
        # entries, multiples of s/32, keep their grid; we only move whole units.
        w = w.copy()
        s = float(np.mean(np.abs(w), dtype=np.float64))
        block = (slice(None) if rows is None else rows, slice(None) if cols is None else cols)
        w[block] = (signs * s).astype(np.float32)
        n = w.size
        units = np.rint(np.abs(w) / s * _GRID).astype(np.int64)
        deficit = _GRID * n - int(units.sum())
        mask = np.ones(w.shape, dtype=bool)
        mask[block] = False
        flat_units = units.reshape(-1)
        free = np.flatnonzero(mask.reshape(-1) & (flat_units >= 24) & (flat_units <= 100))
        free = free[rng.permutation(free.size)]
        pos = 0
        while deficit != 0:
            step = 1 if deficit > 0 else -1
            k = min(abs(deficit), free.size)
            idx = np.roll(free, -pos)[:k]
            flat_units[idx] += step
            deficit -= step * k
            pos += k
            ok = (flat_units[free] >= 24) & (flat_units[free] <= 100)
            free = free[ok]
        sign = np.where(w < 0, -1.0, 1.0).reshape(-1)
        out = (sign * flat_units * (s / _GRID)).astype(np.float32).reshape(w.shape)
        return out

    gate = rebalance(gate, slice(0, m), None, sg)
    up = rebalance(up, slice(0, m), None, sg)
    # Down: column k = sign(e_succ[k]); then rescale the whole tensor so the
    # memory's output has RMS out_rms (sub-norm output ~ sqrt(n_ff) at the
    # active unit, int8 127).
    sd = np.where(embd[succ[:m]] >= 0, 1.0, -1.0).T  # [n_embd, m]
    down = rebalance(down, None, slice(0, m), sd)
    target = out_rms / math.sqrt(n_ff)
    cur = float(np.mean(np.abs(down), dtype=np.float64))
    down = (down.astype(np.float64) * (_f16_scale(target) / cur)).astype(np.float32)
    return gate, up, down


# --------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------


def _core() -> Any:
    from bitnet_py import _core as core  # the extension (built from src/)

    return core


class _Out:
    """GGUF output through bitnet_py._core.GGUFWriter (``backend="core"``) or
    the ``gguf`` package's writer (``backend="gguf-py"``: F32/F16/Q8_0/TQ1_0/
    TQ2_0 only; useful as an independent writer)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        if backend == "core":
            self.core = _core()
            self.w = self.core.GGUFWriter()
        elif backend == "gguf-py":
            import gguf  # type: ignore[import-untyped]

            self.gguf = gguf
            self.kv: list[tuple[str, Any, str]] = []
            self.tensors: list[tuple[str, str, list[int], np.ndarray]] = []
        else:
            raise ValueError(f"unknown backend {backend!r}")

    def set(self, key: str, value: Any, vtype: str) -> None:
        if self.backend == "core":
            if vtype == "str":
                self.w.set_str(key, value)
            else:
                self.w.set(key, value, vtype)
        else:
            self.kv.append((key, value, vtype))

    def set_arr(self, key: str, values: Sequence[Any] | np.ndarray, elem: str) -> None:
        if self.backend == "core":
            if elem == "str":
                self.w.set_arr_str(key, list(values))
            else:
                self.w.set_arr(key, values, elem)
        else:
            self.kv.append((key, list(values), "arr:" + elem))

    def add(self, name: str, type_name: str, x: np.ndarray) -> None:
        """x: float32 [rows, cols] (or 1-D), quantized to type_name here."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        shape = [int(x.shape[-1])] if x.ndim == 1 else [int(x2.shape[1]), int(x2.shape[0])]
        if self.backend == "core":
            data = self.core.quantize(type_name, x2)
            self.w.add_tensor(name, type_name, shape, data)
        else:
            self.tensors.append((name, type_name, shape, x2))

    def write(self, path: str | os.PathLike[str], arch: str) -> None:
        if self.backend == "core":
            self.w.write(os.fspath(path))
            return
        g = self.gguf
        w = g.GGUFWriter(os.fspath(path), arch=arch)
        vt = g.GGUFValueType
        tmap = {"u8": vt.UINT8, "i8": vt.INT8, "u16": vt.UINT16, "i16": vt.INT16, "u32": vt.UINT32,
                "i32": vt.INT32, "f32": vt.FLOAT32, "bool": vt.BOOL, "u64": vt.UINT64,
                "i64": vt.INT64, "f64": vt.FLOAT64, "str": vt.STRING}
        for key, value, vtype in self.kv:
            if key == "general.architecture":
                continue  # the writer adds it
            if vtype.startswith("arr:"):
                w.add_key_value(key, value, vt.ARRAY, sub_type=tmap[vtype[4:]])
            else:
                w.add_key_value(key, value, tmap[vtype])
        qt = g.GGMLQuantizationType
        for name, type_name, shape, x in self.tensors:
            q = getattr(qt, type_name.upper())
            if q == qt.F32:
                data: np.ndarray = x.reshape(shape[::-1]) if len(shape) > 1 else x.reshape(-1)
                w.add_tensor(name, data)
            elif q == qt.F16:
                data = x.astype(np.float16)
                w.add_tensor(name, data.reshape(shape[::-1]) if len(shape) > 1 else data.reshape(-1))
            else:
                data = g.quants.quantize(x, q)
                w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=q)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def _check_rows(name: str, type_name: str, n_cols: int) -> None:
    b = _BLOCK[type_name]
    if n_cols % b:
        raise ValueError(f"{name}: rows of {n_cols} values do not fit {type_name} blocks of {b}")


def _write_metadata(out: _Out, cfg: ModelConfig, tokens: Sequence[str], scores: Sequence[float],
                    types: Sequence[int], file_type: int, name: str, bos: int, eos: int,
                    unk: int) -> None:
    a = cfg.arch
    out.set("general.architecture", a, "str")
    out.set("general.name", name, "str")
    out.set("general.file_type", file_type, "u32")
    out.set("general.quantization_version", 2, "u32")
    out.set(f"{a}.vocab_size", cfg.n_vocab, "u32")
    out.set(f"{a}.context_length", cfg.n_ctx, "u32")
    out.set(f"{a}.embedding_length", cfg.n_embd, "u32")
    out.set(f"{a}.block_count", cfg.n_layer, "u32")
    out.set(f"{a}.feed_forward_length", cfg.n_ff, "u32")
    out.set(f"{a}.attention.head_count", cfg.n_head, "u32")
    out.set(f"{a}.attention.head_count_kv", cfg.n_head_kv, "u32")
    out.set(f"{a}.attention.layer_norm_rms_epsilon", cfg.norm_eps, "f32")
    out.set(f"{a}.rope.freq_base", cfg.rope_theta, "f32")
    out.set(f"{a}.rope.dimension_count", cfg.head_dim, "u32")
    out.set("tokenizer.ggml.model", "llama", "str")
    out.set_arr("tokenizer.ggml.tokens", tokens, "str")
    out.set_arr("tokenizer.ggml.scores", np.asarray(scores, dtype=np.float32), "f32")
    out.set_arr("tokenizer.ggml.token_type", np.asarray(types, dtype=np.int32), "i32")
    out.set("tokenizer.ggml.bos_token_id", bos, "u32")
    out.set("tokenizer.ggml.eos_token_id", eos, "u32")
    out.set("tokenizer.ggml.unknown_token_id", unk, "u32")
    out.set("tokenizer.ggml.add_bos_token", True, "bool")
    out.set("tokenizer.ggml.add_eos_token", False, "bool")


def write_gguf(
    model: SyntheticModel,
    path: str | os.PathLike[str],
    weight_type: str = "i2_s",
    head_type: str = "f16",
    *,
    scale_tensors: bool = False,
    backend: str = "core",
    name: str | None = None,
) -> Path:
    """Write ``model`` as GGUF.

    The tensor names and metadata are those llama.cpp / bitnet.cpp use
    (``token_embd``, ``output_norm``, ``output`` when untied, ``blk.N.attn_norm``
    ... ``blk.N.ffn_sub_norm``; ``{arch}.embedding_length`` ...). q/k rows are
    stored in Hugging Face order: all three BitNet archs use NEOX RoPE (the
    rotate-half of transformers), so neither llama.cpp's nor bitnet.cpp's
    converter permutes them (unlike LLaMA's). ``weight_type`` f32/f16/bf16
    stores the master weights; i2_s/tq1_0/tq2_0 their absmean ternarization.
    ``head_type`` is the type of the token embedding (the tied head) and of
    ``output.weight``. ``scale_tensors`` (arch "bitnet", ternary types only)
    stores the ternary values with scale 1 plus a ``blk.N.<name>.scale`` F32
    tensor holding the weight scale, as llama.cpp's bitnet arch allows.
    ``name`` is ``general.name`` (default ``synthetic-{arch}-seed{seed}``)."""
    cfg = model.config
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {WEIGHT_TYPES}")
    if head_type not in HEAD_TYPES:
        raise ValueError(f"head_type must be one of {HEAD_TYPES}")
    if scale_tensors and (weight_type not in TERNARY_TYPES or cfg.arch != "bitnet"):
        raise ValueError("scale_tensors needs arch 'bitnet' and a ternary weight type")
    path = Path(path)
    out = _Out(backend)
    _write_metadata(out, cfg, model.tokens, model.scores, model.token_types,
                    _FILE_TYPE[weight_type], name or f"synthetic-{cfg.arch}-seed{model.seed}",
                    model.bos_id, model.eos_id, model.unk_id)
    _check_rows("token_embd.weight", head_type, cfg.n_embd)
    out.add("token_embd.weight", head_type, model.tensors["model.embed_tokens.weight"])
    out.add("output_norm.weight", "f32", model.tensors["model.norm.weight"])
    if not cfg.tied:
        out.add("output.weight", head_type, model.tensors["lm_head.weight"])
    for i in range(cfg.n_layer):
        pre = f"model.layers.{i}."
        for hf, gg in _NORMS:
            out.add(f"blk.{i}.{gg}.weight", "f32", model.tensors[pre + hf + ".weight"])
        for hf, gg in _LINEARS:
            w = model.tensors[pre + hf + ".weight"]
            name = f"blk.{i}.{gg}.weight"
            _check_rows(name, weight_type, w.shape[1])
            if weight_type in TERNARY_TYPES:
                q, s = ternarize(w)
                if scale_tensors:
                    out.add(name, weight_type, q.astype(np.float32))
                    out.add(f"blk.{i}.{gg}.scale", "f32", np.array([s], dtype=np.float32))
                else:
                    out.add(name, weight_type, q.astype(np.float32) * np.float32(s))
            else:
                out.add(name, weight_type, w)
    out.write(path, cfg.arch)
    logger.info("wrote %s (%s weights, %s head, %d bytes)", path, weight_type, head_type,
                path.stat().st_size)
    return path


# --------------------------------------------------------------------------
# Hugging Face safetensors
# --------------------------------------------------------------------------


def hf_config(model: SyntheticModel) -> dict[str, Any]:
    """config.json for transformers' BitNetForCausalLM. The quantization
    config selects AutoBitLinear in "online" mode: the float weights are
    ternarized with absmean at every forward (WeightQuant) and activations
    quantized per token to int8 (ActQuant), which is BitNet b1.58's math."""
    cfg = model.config
    if cfg.arch == "bitnet":
        raise ValueError("transformers has no SiLU BitNet; compare the 'bitnet' arch with llama.cpp")
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "vocab_size": cfg.n_vocab,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.n_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head_kv,
        "head_dim": cfg.head_dim,
        "hidden_act": "relu2",
        "max_position_embeddings": cfg.n_ctx,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tied,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": model.bos_id,
        "eos_token_id": model.eos_id,
        "pad_token_id": None,
        "torch_dtype": "float32",
        "use_cache": True,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": "online",
            "use_rms_norm": False,
            "modules_to_not_convert": ["lm_head"],
        },
    }


def write_safetensors(model: SyntheticModel, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model.safetensors`` (float32, HF names) and ``config.json``.
    Written by hand (the format is a JSON header + raw little-endian data), so
    that it needs neither torch nor the safetensors package."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(model.tensors)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    off = 0
    for n in names:
        a = model.tensors[n]
        nb = a.size * 4
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + nb]}
        off += nb
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for n in names:
            f.write(np.ascontiguousarray(model.tensors[n], dtype="<f4").tobytes())
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(hf_config(model), f, indent=2, sort_keys=True)
        f.write("\n")
    with open(out / "generation_config.json", "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": model.bos_id, "eos_token_id": model.eos_id,
                   "do_sample": False}, f, indent=2)
        f.write("\n")
    logger.info("wrote %s (safetensors + config.json)", out)
    return out


# --------------------------------------------------------------------------
# The 2B-4T-shaped benchmark model
# --------------------------------------------------------------------------

SHAPES: dict[str, dict[str, Any]] = {
    # microsoft/bitnet-b1.58-2B-4T (config.json of the HF release).
    "2b4t": dict(n_vocab=128256, n_embd=2560, n_layer=30, n_head=20, n_head_kv=5, n_ff=6912,
                 n_ctx=4096, rope_theta=500000.0, norm_eps=1e-5),
    # The same widths, 2 layers: what the tests write.
    "2b4t-2l": dict(n_vocab=128256, n_embd=2560, n_layer=2, n_head=20, n_head_kv=5, n_ff=6912,
                    n_ctx=4096, rope_theta=500000.0, norm_eps=1e-5),
    # A tiny model with the 2B-4T's proportions.
    "tiny": dict(n_vocab=512, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=768,
                 n_ctx=512, rope_theta=500000.0, norm_eps=1e-5),
}


def _ternary_rows(rng: np.random.Generator, rows: int, cols: int, chunk: int = 1 << 22
                  ) -> np.ndarray:
    """int8 ternary [rows, cols]: -1 / 0 / +1 with probabilities 0.35/0.3/0.35
    (about what absmean gives on Gaussian weights), made in chunks."""
    q = np.empty(rows * cols, dtype=np.int8)
    for a in range(0, q.size, chunk):
        b = min(q.size, a + chunk)
        r = rng.integers(0, 20, b - a, dtype=np.int8)  # 0..19: 7 -> -1, 6 -> 0, 7 -> +1
        q[a:b] = (r >= 13).astype(np.int8) - (r < 7).astype(np.int8)
    return q.reshape(rows, cols)


def write_2b4t_gguf(
    path: str | os.PathLike[str],
    weight_type: str = "i2_s",
    seed: int = 0,
    *,
    shape: str = "2b4t",
    n_layer: int | None = None,
    head_type: str = "f16",
    arch: str = "bitnet-b1.58",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a benchmark model with the exact 2B-4T shapes (or ``shape``, and
    ``n_layer`` to cut the depth) in ``weight_type`` (i2_s or tq2_0, or any
    ternary type). Ternary weights are drawn directly (int8 in {-1, 0, 1}
    times one scale per tensor chosen so activations stay O(1)), quantized and
    handed to the writer one tensor at a time; the writer keeps only the
    packed bytes (about 1.2 GB for I2_S with an F16 embedding). Same seed,
    same bytes."""
    if weight_type not in TERNARY_TYPES:
        raise ValueError(f"the benchmark model is written in a ternary type {TERNARY_TYPES}")
    dims = dict(SHAPES[shape])
    if n_layer is not None:
        dims["n_layer"] = n_layer
    cfg = ModelConfig(arch=arch, tied=True, **dims)
    core = _core()
    rng = np.random.default_rng(seed)
    out = _Out("core")
    tokens, scores, types = _vocab(cfg.n_vocab)
    _write_metadata(out, cfg, tokens, scores, types, _FILE_TYPE[weight_type],
                    f"synthetic-{shape}-seed{seed}", 1, 2, 0)
    t0 = time.time()
    say = progress or (lambda msg: logger.info("%s", msg))
    # Embedding (tied head): rows of std 4/sqrt(n_embd), made and converted in chunks.
    estd = 4.0 / math.sqrt(cfg.n_embd)
    parts = []
    for a in range(0, cfg.n_vocab, 8192):
        b = min(cfg.n_vocab, a + 8192)
        e = (rng.standard_normal((b - a, cfg.n_embd), dtype=np.float32) * np.float32(estd))
        parts.append(core.quantize(head_type, e))
    out.w.add_tensor("token_embd.weight", head_type, [cfg.n_embd, cfg.n_vocab], b"".join(parts))
    del parts
    out.add("output_norm.weight", "f32", rng.normal(1.0, 0.1, cfg.n_embd).astype(np.float32))
    hd = cfg.head_dim
    shapes = {
        "attn_q": (cfg.n_head * hd, cfg.n_embd, 1.5), "attn_k": (cfg.n_head_kv * hd, cfg.n_embd, 1.5),
        "attn_v": (cfg.n_head_kv * hd, cfg.n_embd, 1.0), "attn_output": (cfg.n_embd, cfg.n_head * hd, 0.6),
        "ffn_gate": (cfg.n_ff, cfg.n_embd, 1.0), "ffn_up": (cfg.n_ff, cfg.n_embd, 1.0),
        "ffn_down": (cfg.n_embd, cfg.n_ff, 0.6),
    }
    for i in range(cfg.n_layer):
        for gg, n in (("attn_norm", cfg.n_embd), ("attn_sub_norm", cfg.n_embd),
                      ("ffn_norm", cfg.n_embd), ("ffn_sub_norm", cfg.n_ff)):
            out.add(f"blk.{i}.{gg}.weight", "f32", rng.normal(1.0, 0.1, n).astype(np.float32))
        for gg, (rows, cols, g) in shapes.items():
            q = _ternary_rows(rng, rows, cols)
            s = np.float32(_f16_scale(g / math.sqrt(0.7 * cols)))
            x = q.astype(np.float32)
            x *= s
            out.add(f"blk.{i}.{gg}.weight", weight_type, x)
            del q, x
        say(f"layer {i + 1}/{cfg.n_layer} ({time.time() - t0:.1f} s)")
    path = Path(path)
    out.write(path, cfg.arch)
    say(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB, {time.time() - t0:.1f} s)")
    return path


# --------------------------------------------------------------------------
# numpy reference of the graph
# --------------------------------------------------------------------------


def _act_quant(x: np.ndarray, mode: str | None) -> np.ndarray:
    """Fake-quantize activations (rows = tokens), float32 arithmetic:
    "token": BitNet's per-token absmax int8 (s = 127 / max|x|, round half to
    even, clamp [-128, 127]); "q8k": llama.cpp's Q8_K per 256-block
    (iscale = -127 / signed max, nearest, min 127); None: no quantization."""
    if mode is None:
        return x
    x = x.astype(np.float32)
    if mode == "token":
        amax = np.maximum(np.max(np.abs(x), axis=-1, keepdims=True), np.float32(1e-5))
        s = (np.float32(127.0) / amax).astype(np.float32)
        q = np.clip(np.rint(x * s), -128, 127)
        return (q / s).astype(np.float32)
    if mode == "q8k":
        n = x.shape[-1]
        xb = x.reshape(x.shape[0], n // 256, 256)
        idx = np.argmax(np.abs(xb), axis=-1)[..., None]
        mx = np.take_along_axis(xb, idx, axis=-1)
        iscale = np.where(mx == 0, np.float32(0), np.float32(-127.0) / np.where(mx == 0, 1, mx))
        q = np.minimum(np.rint(xb * iscale.astype(np.float32)), 127)
        d = np.where(iscale == 0, 0, np.float32(1.0) / np.where(iscale == 0, 1, iscale))
        return (q * d.astype(np.float32)).reshape(x.shape).astype(np.float32)
    raise ValueError(mode)


def reference_logits(model: SyntheticModel, tokens: Sequence[int], act_quant: str | None = "token",
                     dtype: Any = np.float64,
                     trace: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
    """Logits [n_tokens, n_vocab] of the model on a prompt, in numpy: the graph
    of transformers' BitNet (and llama.cpp's bitnet arch for arch "bitnet"),
    ternary weights from :func:`ternarize`, activations fake-quantized with
    ``act_quant`` before every BitLinear, everything else in ``dtype``.
    ``trace(hf_weight_name, x)`` receives each BitLinear's input (float32
    [n_tokens, n_in], before quantization)."""
    cfg = model.config
    T = model.tensors
    n = len(tokens)
    hd = cfg.head_dim

    def rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        x = x.astype(dtype)
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + cfg.norm_eps) * w.astype(dtype)

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        q, s = ternarize(T[name])
        if trace is not None:
            trace(name, x.astype(np.float32))
        xq = _act_quant(x.astype(np.float32), act_quant).astype(dtype)
        return (xq @ q.T.astype(dtype)) * dtype(s)

    pos = np.arange(n)
    half = hd // 2
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)

    def rope(x: np.ndarray) -> np.ndarray:  # [n, heads, hd], NEOX / rotate-half
        x1, x2 = x[..., :half], x[..., half:]
        c, s_ = cos[:, None, :], sin[:, None, :]
        return np.concatenate([x1 * c - x2 * s_, x2 * c + x1 * s_], axis=-1)

    h = T["model.embed_tokens.weight"][np.asarray(tokens)].astype(dtype)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    grp = cfg.n_head // cfg.n_head_kv
    for i in range(cfg.n_layer):
        p = f"model.layers.{i}."
        x = rms(h, T[p + "input_layernorm.weight"])
        q = rope(lin(x, p + "self_attn.q_proj.weight").reshape(n, cfg.n_head, hd))
        k = rope(lin(x, p + "self_attn.k_proj.weight").reshape(n, cfg.n_head_kv, hd))
        v = lin(x, p + "self_attn.v_proj.weight").reshape(n, cfg.n_head_kv, hd)
        k = np.repeat(k, grp, axis=1)
        v = np.repeat(v, grp, axis=1)
        att = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", att, v).reshape(n, cfg.n_head * hd)
        o = rms(o, T[p + "self_attn.attn_sub_norm.weight"])
        h = h + lin(o, p + "self_attn.o_proj.weight")
        x = rms(h, T[p + "post_attention_layernorm.weight"])
        g = lin(x, p + "mlp.gate_proj.weight")
        u = lin(x, p + "mlp.up_proj.weight")
        if cfg.ffn_act == "silu":
            a = g / (1.0 + np.exp(-g)) * u
        else:
            a = np.square(np.maximum(g, 0)) * u
        a = rms(a, T[p + "mlp.ffn_sub_norm.weight"])
        h = h + lin(a, p + "mlp.down_proj.weight")
    h = rms(h, T["model.norm.weight"])
    head = T["lm_head.weight"] if "lm_head.weight" in T else T["model.embed_tokens.weight"]
    return np.asarray(h @ head.T.astype(dtype), dtype=np.float64)


def greedy_reference(model: SyntheticModel, prompt: Sequence[int], n_new: int,
                     act_quant: str | None = "token") -> list[int]:
    """Greedy continuation with :func:`reference_logits` (recomputes the
    whole prefix at each step: slow, for tiny models)."""
    toks = list(prompt)
    out: list[int] = []
    for _ in range(n_new):
        nxt = int(np.argmax(reference_logits(model, toks, act_quant)[-1]))
        out.append(nxt)
        toks.append(nxt)
    return out


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """top-1 minus top-2 logit at each position."""
    srt = np.sort(np.asarray(logits, dtype=np.float64), axis=-1)
    return srt[..., -1] - srt[..., -2]


def first_divergence(a: np.ndarray, b: np.ndarray, tol: float) -> int | None:
    """First position (row) where the two logit arrays differ by more than
    tol, or None."""
    d = np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), axis=-1)
    bad = np.flatnonzero(d > tol)
    return int(bad[0]) if bad.size else None


def real_argmax_disagreements(got: np.ndarray, ref: np.ndarray, noise: float) -> list[int]:
    """Positions whose argmax differs although the reference's top-1 leads
    the engine's choice by more than ``noise`` (a tie-aware comparison: where
    two tokens are within the noise of the two computations, either is a
    correct argmax)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    out = []
    for p in range(ref.shape[0]):
        g, r = int(got[p].argmax()), int(ref[p].argmax())
        if g != r and ref[p, r] - ref[p, g] > noise:
            out.append(p)
    return out


def closest_rounding_boundary(model: SyntheticModel, tokens: Sequence[int], pos: int
                              ) -> tuple[str, float, float]:
    """Among the per-token int8 activations of position ``pos`` (numpy
    reference, float32 quantization arithmetic), the one whose unrounded value
    x * 127 / max|x| is closest to a .5 rounding boundary: (GGUF tensor name of
    the BitLinear, the value, its distance to the boundary)."""
    seen: dict[str, np.ndarray] = {}
    reference_logits(model, list(tokens)[: pos + 1], trace=lambda n, x: seen.__setitem__(n, x))
    best = ("", 0.0, 1.0)
    for _, hf, gg in model.linear_names():
        x = seen[hf][pos].astype(np.float32)
        v = x * (np.float32(127.0) / np.float32(max(float(np.max(np.abs(x))), 1e-5)))
        dist = np.abs(np.abs(v - np.floor(v)) - 0.5)
        i = int(np.argmin(dist))
        if float(dist[i]) < best[2]:
            best = (gg, float(v[i]), float(dist[i]))
    return best


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bitnet_py.synthetic",
        description="Write seeded synthetic BitNet models (GGUF, safetensors).")
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES),
                    help="2b4t: the exact microsoft/bitnet-b1.58-2B-4T shapes (benchmark model)")
    ap.add_argument("--type", default="i2_s",
                    help="comma-separated weight types (f32,f16,i2_s,tq1_0,tq2_0; 2b4t: ternary only)")
    ap.add_argument("--head-type", default="f16", choices=HEAD_TYPES)
    ap.add_argument("--arch", default="bitnet-b1.58", choices=ARCHS)
    ap.add_argument("--layers", type=int, default=None, help="override the layer count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--safetensors", action="store_true", help="also write the HF checkpoint (tiny)")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    types = [t.strip().lower() for t in args.type.split(",") if t.strip()]
    if args.shape.startswith("2b4t"):
        for ty in types:
            write_2b4t_gguf(out / f"{args.shape}-{args.arch}-{ty}-seed{args.seed}.gguf", ty,
                            args.seed, shape=args.shape, n_layer=args.layers,
                            head_type=args.head_type, arch=args.arch)
        return 0
    dims = dict(SHAPES[args.shape])
    if args.layers is not None:
        dims["n_layer"] = args.layers
    m = make_model(args.arch, seed=args.seed, **dims)
    for ty in types:
        write_gguf(m, out / f"{args.shape}-{args.arch}-{ty}-seed{args.seed}.gguf", ty, args.head_type)
    if args.safetensors:
        write_safetensors(m, out / f"{args.shape}-{args.arch}-seed{args.seed}-hf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
