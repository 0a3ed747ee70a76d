"""bitnet_py: CPU inference for BitNet b1.58 ternary language models.

The low-level bindings live in :mod:`bitnet_py._core`; this package exposes
the version and the exception hierarchy (the full public API comes later).
"""

from __future__ import annotations

import logging

from ._core import (
    BitNetError,
    BitNetIOError,
    BitNetMemoryError,
    CancelledError,
    ConfigurationError,
    InferenceError,
    ModelFormatError,
    ModelNotFoundError,
    TokenizerError,
    __version__,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BitNetError",
    "BitNetIOError",
    "BitNetMemoryError",
    "CancelledError",
    "ConfigurationError",
    "InferenceError",
    "ModelFormatError",
    "ModelNotFoundError",
    "TokenizerError",
    "__version__",
]
