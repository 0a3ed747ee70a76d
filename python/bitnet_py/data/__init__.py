"""The small BitNet b1.58 model shipped with bitnet_py (see MODEL_CARD.md).

A 4-million-parameter model trained by this project (training/ in the
repository) on public-domain and freely licensed English text from Debian
packages, so that the package works out of the box: ``default_model_path()``
is what ``bitnet_py.load_model()`` and ``python -m bitnet_py generate`` use
when no model is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["DEFAULT_MODEL", "MODEL_FILES", "default_model_path", "model_path"]

_HERE = Path(__file__).resolve().parent

#: weight type -> file name. Both hold the same ternary weights; I2_S keeps the
#: F32 weight scale of training (TQ2_0 an F16 copy per 256-block) and is the
#: faster of the two in our engine on the development machine (MODEL_CARD.md),
#: so it is the default.
MODEL_FILES = {
    "tq2_0": "bitnet-b1.58-small-tq2_0.gguf",
    "i2_s": "bitnet-b1.58-small-i2_s.gguf",
}
DEFAULT_MODEL = MODEL_FILES["i2_s"]


def model_path(weight_type: str = "i2_s") -> Optional[str]:
    """Path of the shipped GGUF file with the given weight type, or None
    when it is not installed."""
    name = MODEL_FILES.get(weight_type.lower())
    if name is None:
        raise ValueError(f"no shipped model of type {weight_type!r}; have {sorted(MODEL_FILES)}")
    p = _HERE / name
    return str(p) if p.is_file() else None


def default_model_path() -> Optional[str]:
    """Path of the shipped default model (a GGUF file), or None if the
    package was installed without it."""
    p = _HERE / DEFAULT_MODEL
    return str(p) if p.is_file() else None
