"""Stand-in for the original gpu/model.py (see README.md)."""
from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelArgs:
    dim: int = 2560
    n_layers: int = 30
    n_heads: int = 20
    n_kv_heads: int = 5
    vocab_size: int = 128256
    ffn_dim: int = 6912
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    use_kernel: bool = False


class Transformer:
    def __init__(self, args: ModelArgs, impl: Optional[object] = None) -> None:
        self.args = args
        self.impl = impl
