"""Tiny models for tests (of bitnet_py and of code built on it).

:func:`tiny_checkpoint` writes (once per process and set of arguments) a
seeded synthetic BitNet model from :mod:`bitnet_py.synthetic` as
``model.gguf`` in a checkpoint directory, optionally next to a copy of a
``tokenizer.model``. With ``n_vocab=128256`` the model pairs with the real
Llama-3 tokenizer, so prompts, chat formats and stop tokens are real.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional

LLAMA3_VOCAB = 128256

_cache: dict[tuple[object, ...], Path] = {}
_lock = threading.Lock()


def tiny_checkpoint(n_vocab: int = LLAMA3_VOCAB, tokenizer: Optional[str] = None, *, n_layer: int = 2,
                    n_embd: int = 256, n_ff: int = 256, n_ctx: int = 256, seed: int = 7,
                    weight_type: str = "i2_s", root: Optional[str] = None) -> Path:
    """Directory holding ``model.gguf`` (and ``tokenizer.model`` when
    ``tokenizer`` is given). The model is sharp (clear top-1 margins), so
    greedy text does not depend on float rounding."""
    key = (n_vocab, tokenizer, n_layer, n_embd, n_ff, n_ctx, seed, weight_type, root)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and (hit / "model.gguf").is_file():
            return hit
        from . import synthetic as S

        tag = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        base = Path(root) if root else Path(tempfile.gettempdir())
        d = base / f"bitnet_py-tiny-{os.getpid()}-{tag}"
        d.mkdir(parents=True, exist_ok=True)
        m = S.make_model("bitnet-b1.58", n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=4,
                         n_head_kv=2, n_ff=n_ff, n_ctx=n_ctx, seed=seed, bigram=True, gain=0.3, qk_gain=0.7)
        S.write_gguf(m, d / "model.gguf", weight_type=weight_type, head_type="f16")
        if tokenizer is not None:
            shutil.copyfile(tokenizer, d / "tokenizer.model")
        _cache[key] = d
        if root is None:
            atexit.register(shutil.rmtree, d, True)
        return d


__all__ = ["tiny_checkpoint", "LLAMA3_VOCAB"]
