"""BitNet b1.58 (the microsoft/bitnet-b1.58-2B-4T architecture) in PyTorch, small.

Per layer (pre-norm residual):
  x = h + o_proj(attn_sub_norm(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))))
      with n = input_layernorm(h), GQA (query head j uses kv head j // (n_head/n_head_kv))
  h = x + down_proj(ffn_sub_norm(relu(gate_proj(m))^2 * up_proj(m))), m = post_attention_layernorm(x)
logits = final_norm(h) @ embed_tokens.T (tied).

Every q/k/v/o/gate/up/down projection is a BitLinear: the weight is quantized
with absmean to {-1, 0, 1} * s (s = mean|W|), the input per token to int8 with
absmax (127 / max|x|, round half to even, clamp [-128, 127]); both in the
forward pass, with a straight-through estimator for the gradients. This is the
same arithmetic as the C engine (src/forward.c) and bitnet_py.synthetic's
numpy reference. RoPE is NEOX style (rotate_half), as bitnet.cpp and our engine.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class Config:
    n_vocab: int = 4096
    n_embd: int = 256
    n_layer: int = 6
    n_head: int = 8
    n_head_kv: int = 2
    n_ff: int = 768
    n_ctx: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    """absmean ternary: clamp(round(w / s), -1, 1) * s, s = max(mean|w|, 1e-5)."""
    s = w.abs().mean().clamp(min=1e-5)
    return (w / s).round().clamp(-1, 1) * s


def act_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8 fake quantization (last dim = features)."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


class BitLinear(nn.Linear):
    """``pre_quantized = True`` (set by :func:`from_gguf`): the weight already
    holds ternary values times their scale (as a GGUF file stores them) and is
    used as is in eval mode."""

    pre_quantized = False

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.training:
            xq = x + (act_quant(x) - x).detach()
            wq = w + (weight_quant(w) - w).detach()
        else:
            xq = act_quant(x)
            wq = w if self.pre_quantized else weight_quant(w)
        return F.linear(xq, wq)


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg: Config, n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, hd]; NEOX / rotate_half pairs (i, i + hd/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = BitLinear(cfg.n_embd, cfg.n_head * hd)
        self.k_proj = BitLinear(cfg.n_embd, cfg.n_head_kv * hd)
        self.v_proj = BitLinear(cfg.n_embd, cfg.n_head_kv * hd)
        self.o_proj = BitLinear(cfg.n_head * hd, cfg.n_embd)
        self.attn_sub_norm = RMSNorm(cfg.n_head * hd, cfg.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.cfg
        hd = c.head_dim
        q = self.q_proj(x).view(B, T, c.n_head, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.n_head_kv, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.n_head_kv, hd).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        g = c.n_head // c.n_head_kv
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = o.transpose(1, 2).reshape(B, T, c.n_head * hd)
        return self.o_proj(self.attn_sub_norm(o))


class MLP(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.gate_proj = BitLinear(cfg.n_embd, cfg.n_ff)
        self.up_proj = BitLinear(cfg.n_embd, cfg.n_ff)
        self.down_proj = BitLinear(cfg.n_ff, cfg.n_embd)
        self.ffn_sub_norm = RMSNorm(cfg.n_ff, cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.ffn_sub_norm(F.relu(self.gate_proj(x)).square() * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class BitNet(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.n_vocab, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        cos, sin = rope_tables(cfg, cfg.n_ctx * 4)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                nn.init.ones_(p)
            elif name == "embed_tokens.weight":
                nn.init.normal_(p, std=1.0 / math.sqrt(self.cfg.n_embd))
            else:
                nn.init.normal_(p, std=1.0 / math.sqrt(p.shape[1]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        h = self.embed_tokens(tokens)
        for layer in self.layers:
            h = layer(h, cos, sin)
        return F.linear(self.norm(h), self.embed_tokens.weight)

    def hf_state(self) -> dict[str, torch.Tensor]:
        """Weights under Hugging Face names (model.layers.N.self_attn.q_proj.weight ...)."""
        return {"model." + k: v.detach().float().clone() for k, v in self.state_dict().items()}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_GGUF_LINEARS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
_GGUF_NORMS = {"attn_norm": "input_layernorm", "attn_sub_norm": "self_attn.attn_sub_norm",
               "ffn_norm": "post_attention_layernorm", "ffn_sub_norm": "mlp.ffn_sub_norm"}


def from_gguf(path: str) -> BitNet:
    """The PyTorch model (eval mode) holding exactly the numbers of a GGUF
    file written by training/export.py: the dequantized ternary weights (used
    as is: pre_quantized), the F16 embedding, the F32 norms."""
    from bitnet_py import _core

    with _core.GGUFReader(path) as r:
        a = r.get("general.architecture")
        g = lambda k: r.get(f"{a}.{k}")  # noqa: E731
        cfg = Config(n_vocab=int(g("vocab_size")), n_embd=int(g("embedding_length")),
                     n_layer=int(g("block_count")), n_head=int(g("attention.head_count")),
                     n_head_kv=int(g("attention.head_count_kv")), n_ff=int(g("feed_forward_length")),
                     n_ctx=int(g("context_length")), rope_theta=float(g("rope.freq_base")),
                     norm_eps=float(g("attention.layer_norm_rms_epsilon")))
        m = BitNet(cfg)
        sd = {}
        for t in r.tensors():
            shape = [int(d) for d in t["shape"]]
            n_cols = shape[0]
            n_rows = shape[1] if len(shape) > 1 else 1
            x = _core.dequantize(t["type"], r.tensor_bytes(t["name"]), n_cols, n_rows)
            x = torch.from_numpy(x.reshape(n_rows, n_cols).copy())
            name = t["name"]
            if name == "token_embd.weight":
                sd["embed_tokens.weight"] = x
            elif name == "output_norm.weight":
                sd["norm.weight"] = x[0]
            else:
                _, i, kind, _w = name.split(".")
                if kind in _GGUF_LINEARS:
                    sd[f"layers.{i}.{_GGUF_LINEARS[kind]}.weight"] = x
                else:
                    sd[f"layers.{i}.{_GGUF_NORMS[kind]}.weight"] = x[0]
    m.load_state_dict(sd)
    for mod in m.modules():
        if isinstance(mod, BitLinear):
            mod.pre_quantized = True
    return m.eval()
