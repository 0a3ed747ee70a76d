"""bitnet_py: CPU inference for BitNet b1.58 ternary language models.

A drop-in for the original BitNet Python code (``import bitnet_py as fast``:
``ModelArgs``, ``GenArgs``, ``FastGen``, ``Transformer``, ``Tokenizer``,
``ChatFormat``, ``Stats``, ``make_cache``, ``cache_prefix``) and the
documented API (``load_model``, ``SimpleInference``, streaming, async,
batch, memory statistics, benchmarks, ``bitnet_py.llama_compat.Llama``).
The C extension :mod:`bitnet_py._core` does the work; everything here is a
thin layer over :mod:`bitnet_py._engine`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

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
from ._memory import cleanup_memory, enable_memory_monitoring, get_memory_stats, optimize_memory
from .config import (
    BatchConfig,
    GenArgs,
    InferenceConfig,
    MemoryConfig,
    Message,
    ModelConfig,
    ModelArgs,
    PhaseStats,
    SamplingConfig,
    ServerConfig,
    Stats,
)
from .inference import (
    AsyncInference,
    BatchProcessor,
    FastGen,
    GenerationStream,
    InferenceEngine,
    SimpleInference,
    StreamingInference,
    batch_generate,
    create_tokenizer_async,
    load_model_async,
    quick_inference,
)
from .model import BitNetModel, Transformer, cache_prefix, load_model, make_cache
from .tokenizer import ChatFormat, Tokenizer, create_tokenizer
from .utils import (
    CPU,
    CUDA,
    METAL,
    QuantizationType,
    benchmark_inference,
    benchmark_model,
    compare_performance,
    get_cuda_device_count,
    get_device_info,
    get_num_threads,
    get_production_features,
    get_system_info,
    is_cuda_available,
    is_metal_available,
    list_available_models,
    set_num_threads,
    validate_outputs,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__author__ = "bitnet-py contributors"
__description__ = "CPU inference for BitNet b1.58 ternary language models"


def _error_init(self: BaseException, *args: Any, error_type: Optional[str] = None,
                hint: Optional[str] = None, **kw: Any) -> None:
    """``BitNetError(message, error_type=None, hint=None)``: the documented
    two-argument form sets ``error_type``; OSError-derived classes keep
    ``(errno, message)``."""
    a = list(args)
    if (error_type is None and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], str)
            and not isinstance(self, OSError)):
        error_type = a.pop()
    super(BitNetError, self).__init__(*a, **kw)  # type: ignore[misc]
    if error_type is not None:
        self.error_type = error_type  # type: ignore[attr-defined]
    if hint is not None:
        self.hint = hint  # type: ignore[attr-defined]


def _error_message(self: BaseException) -> str:
    """The message without the class name (``.message`` of the documented API)."""
    if isinstance(self, OSError) and self.strerror:
        return str(self.strerror)
    args: tuple[Any, ...] = tuple(self.args)
    return str(args[0]) if len(args) > 0 else ""


def _error_suggestions(self: BaseException) -> list[str]:
    h = getattr(self, "hint", None)
    return [h] if h else []


BitNetError.__init__ = _error_init  # type: ignore[method-assign]
BitNetError.message = property(_error_message)  # type: ignore[attr-defined]
BitNetError.suggestions = property(_error_suggestions)  # type: ignore[attr-defined]
BitNetError.recovery_hint = property(lambda self: getattr(self, "hint", None))  # type: ignore[attr-defined]
BitNetError.error_code = property(lambda self: getattr(self, "status_name", None) or self.error_type)  # type: ignore[attr-defined]
BitNetError.recovery_possible = property(  # type: ignore[attr-defined]
    lambda self: not isinstance(self, (ModelFormatError, BitNetMemoryError)))

__all__ = [
    "BitNetModel", "InferenceEngine", "Tokenizer", "ChatFormat", "ModelArgs", "GenArgs", "InferenceConfig",
    "Stats", "Message", "load_model", "create_tokenizer", "benchmark_inference", "compare_performance",
    "validate_outputs", "get_system_info", "make_cache", "cache_prefix", "FastGen", "Transformer",
    "BitNetError", "__version__",
    # beyond the documented __all__
    "SimpleInference", "quick_inference", "benchmark_model", "PhaseStats", "SamplingConfig", "BatchConfig",
    "MemoryConfig", "GenerationStream", "AsyncInference", "StreamingInference", "BatchProcessor",
    "batch_generate", "load_model_async", "create_tokenizer_async", "get_memory_stats",
    "enable_memory_monitoring", "cleanup_memory", "optimize_memory", "set_num_threads", "get_num_threads",
    "list_available_models", "get_device_info", "is_cuda_available", "is_metal_available",
    "get_cuda_device_count", "ModelConfig", "ServerConfig", "get_production_features", "CPU", "CUDA", "METAL",
    "QuantizationType", "__author__", "__description__",
    "BitNetIOError", "BitNetMemoryError", "CancelledError", "ConfigurationError", "InferenceError",
    "ModelFormatError", "ModelNotFoundError", "TokenizerError",
]
