"""Type stubs of bitnet_py._core, the CPython extension over include/bitnet.h."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Collection, Literal, Sequence, SupportsIndex, TypeVar, Union, final, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, Self, disjoint_base

__version__: str

_Path = Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]
_TypeArg = Union[str, int]  # a tensor type by name ("tq2_0") or ggml id (35)
_Ids = Union[Sequence[SupportsIndex], npt.NDArray[np.integer[Any]]]
# "u8" "i8" "u16" "i16" "u32" "i32" "u64" "i64" "f32" "f64" "bool" "str"
_ValueType = str
_T = TypeVar("_T")

# ---------------------------------------------------------------------------
# Exceptions. Instances raised by the library carry status (the bn_status
# code) and status_name; hint is advice or None; error_type is the class name.
# ---------------------------------------------------------------------------

class BitNetError(Exception):
    error_type: str
    hint: str | None
    status: int | None
    status_name: str | None
    def __init__(self, *args: Any, error_type: str | None = None, hint: str | None = None, **kw: Any) -> None: ...
    # Added by bitnet_py/__init__.py (the documented API's names).
    @property
    def message(self) -> str: ...
    @property
    def suggestions(self) -> list[str]: ...
    @property
    def recovery_hint(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def recovery_possible(self) -> bool: ...

class ModelNotFoundError(BitNetError, FileNotFoundError): ...
class ModelFormatError(BitNetError, ValueError): ...
class TokenizerError(BitNetError, ValueError): ...
class ConfigurationError(BitNetError, ValueError): ...
class InferenceError(BitNetError, RuntimeError): ...
class CancelledError(InferenceError): ...
class BitNetIOError(BitNetError, OSError): ...
class BitNetMemoryError(BitNetError, MemoryError): ...

# ---------------------------------------------------------------------------
# Library
# ---------------------------------------------------------------------------

def version() -> str: ...
def cpu_features() -> list[str]: ...
def kernel_name() -> str: ...
def build_info() -> str: ...
def type_id(name: str) -> int: ...
def type_name(id: int) -> str: ...
def type_nbytes(type: _TypeArg, n_cols: int, n_rows: int = 1) -> int: ...
def quantize(type: _TypeArg, x: npt.ArrayLike) -> bytes:
    """x: float32 [n_rows, n_cols] (1-D: one row; other dtypes are converted)."""

def dequantize(type: _TypeArg, data: Buffer, n_cols: int, n_rows: int = 1) -> npt.NDArray[np.float32]:
    """-> float32 [n_rows, n_cols]."""

def ternarize(w: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], float]:
    """BitNet absmean: (q in {-1, 0, 1} shaped like w, scale)."""

# ---------------------------------------------------------------------------
# Checkpoints (safetensors, Hugging Face directories, the original's .pt)
# ---------------------------------------------------------------------------

def checkpoint_format(path: _Path) -> Literal["gguf", "safetensors", "hf-dir", "pt", "pt-dir", "unknown"]:
    """Which reader a file or directory needs."""

@overload
def checkpoint_to_gguf(
    src: _Path,
    dst: None = None,
    weight_type: _TypeArg | None = None,
    head_type: _TypeArg | None = None,
    pt_variant: int = 0,
    tokenizer: bool = True,
    progress: Any = None,
) -> bytes: ...
@overload
def checkpoint_to_gguf(
    src: _Path,
    dst: _Path,
    weight_type: _TypeArg | None = None,
    head_type: _TypeArg | None = None,
    pt_variant: int = 0,
    tokenizer: bool = True,
    progress: Any = None,
) -> None: ...

# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------

@disjoint_base
class GGUFWriter:
    def __new__(cls) -> Self: ...
    def set(self, key: str, value: int | float | bool | str | bytes, type: _ValueType) -> None: ...
    def set_str(self, key: str, value: str | bytes) -> None: ...
    def set_arr(
        self,
        key: str,
        values: Sequence[int | float | bool | str | bytes] | npt.NDArray[Any],
        elem_type: _ValueType,
    ) -> None: ...
    def set_arr_str(self, key: str, values: Sequence[str | bytes]) -> None: ...
    def add_tensor(self, name: str, type: _TypeArg, shape: Sequence[int], data: Buffer) -> None:
        """shape in ggml order (ne0, the row length, first); 1 to 4 dims."""
    def write(self, path: _Path) -> None: ...

@disjoint_base
class GGUFReader:
    def __new__(cls, path: _Path) -> Self: ...
    @property
    def version(self) -> int: ...
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def n_kv(self) -> int: ...
    @property
    def n_tensors(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def keys(self) -> list[str]: ...
    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, default: _T) -> Any | _T: ...
    def type_of(self, key: str) -> str:
        """'u8' ... 'f64', 'bool', 'str', or 'arr[<elem>]'."""
    def tensors(self) -> list[dict[str, Any]]: ...
    def tensor_bytes(self, name: str) -> memoryview:
        """Read-only, zero-copy; keeps the reader alive."""
    def close(self) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

# ---------------------------------------------------------------------------
# Model and Context
# ---------------------------------------------------------------------------

@disjoint_base
class Model:
    def __new__(cls, path: _Path, use_mmap: bool = True, n_layers: int = 0) -> Self: ...
    @property
    def config(self) -> dict[str, Any]:
        """arch, n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv,
        head_dim, n_ff, norm_eps, rope_theta, rope_dim, ffn_act ('silu' or
        'relu2'), tied_output (bool), weight_type / embd_type / output_type
        (type names)."""
    @property
    def n_params(self) -> int: ...
    @property
    def weight_bytes(self) -> int: ...
    @property
    def has_tokenizer(self) -> bool: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @overload
    def get_metadata(self, key: str) -> Any: ...
    @overload
    def get_metadata(self, key: str, default: _T) -> Any | _T: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@disjoint_base
class Context:
    def __new__(
        cls,
        model: Model,
        n_ctx: int = 0,
        n_seq: int = 1,
        n_batch: int = 0,
        n_threads: int = 0,
        *,
        kv_type: Literal["f32", "f16"] | None = "f32",
    ) -> Self: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_seq(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_batch(self) -> int: ...
    @property
    def kv_bytes(self) -> int: ...
    @property
    def kv_type(self) -> Literal["f32", "f16"]: ...
    @property
    def scratch_bytes(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def model(self) -> Model | None: ...
    @property
    def closed(self) -> bool: ...
    def eval(
        self, tokens: _Ids, seq_id: int = 0, logits: Literal["last", "all"] = "last"
    ) -> npt.NDArray[np.float32]:
        """-> float32 [1 or len(tokens), n_vocab]; positions continue the
        sequence; on error the sequence's KV cache is unchanged."""
    def decode(
        self,
        tokens: _Ids,
        pos: _Ids | None = None,
        seq_ids: _Ids | int | None = None,
        want_logits: Sequence[bool | int] | bool | None = None,
    ) -> npt.NDArray[np.float32]:
        """One batch (<= n_batch tokens, any sequences) -> float32
        [n_wanted, n_vocab], rows in batch order. want_logits None: last
        token only; True: all."""
    def kv_seq_len(self, seq_id: int) -> int: ...
    def kv_truncate(self, seq_id: int, n_keep: int = 0) -> None: ...
    def kv_copy(self, src: int, dst: int, n: int = -1) -> None: ...
    def set_threads(self, n: int) -> None: ...
    def cancel(self) -> None:
        """Thread-safe: the running (or next) eval/decode raises CancelledError."""
    def set_abort(self, flag: bool) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

# ---------------------------------------------------------------------------
# Sampler (python/bitnet_py/_core_sampler.c)
# ---------------------------------------------------------------------------

@disjoint_base
class Sampler:
    n_vocab: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    mirostat: int
    mirostat_tau: float
    mirostat_eta: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    penalty_last_n: int
    seed: int
    def __init__(
        self,
        n_vocab: int,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        mirostat: int = ...,
        mirostat_tau: float = ...,
        mirostat_eta: float = ...,
        repeat_penalty: float = ...,
        frequency_penalty: float = ...,
        presence_penalty: float = ...,
        penalty_last_n: int = ...,
        seed: int | None = None,
    ) -> None: ...
    def sample(self, logits: npt.ArrayLike) -> int: ...
    def probs(self, logits: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def accept(self, token: int) -> None: ...
    def reset(self, seed: int | None = None) -> None: ...

# ---------------------------------------------------------------------------
# Tokenizer (python/bitnet_py/_core_tokenizer.c)
# ---------------------------------------------------------------------------

@final
class StreamDecoder:
    def push(self, id: int, /) -> str: ...
    def flush(self) -> str: ...

@disjoint_base
class Tokenizer:
    def __init__(self, path: _Path) -> None: ...
    @classmethod
    def load(cls, path: _Path, /) -> Self: ...
    @classmethod
    def load_tiktoken(cls, path: _Path, /) -> Self: ...
    @classmethod
    def load_spm(cls, path: _Path, /) -> Self: ...
    @classmethod
    def load_hf_json(cls, path: _Path, /) -> Self: ...
    @classmethod
    def from_gguf(cls, path_or_reader: _Path | GGUFReader, /) -> Self: ...
    @classmethod
    def from_model(cls, model: Model, /) -> Self: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def bos_id(self) -> int | None: ...
    @property
    def eos_id(self) -> int | None: ...
    @property
    def eot_id(self) -> int | None: ...
    @property
    def pad_id(self) -> int | None: ...
    @property
    def kind(self) -> Literal["bpe", "spm"]: ...
    def encode(
        self,
        text: str | bytes,
        *,
        bos: bool = False,
        eos: bool = False,
        allowed_special: Literal["all"] | Collection[str] = (),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]: ...
    def decode(self, ids: _Ids, *, skip_special: bool = False, errors: str = "replace") -> str: ...
    def decode_bytes(self, ids: _Ids, *, skip_special: bool = False) -> bytes: ...
    def token_bytes(self, id: int, /) -> bytes: ...
    def token_text(self, id: int, /) -> bytes: ...
    def special_id(self, text: str, /) -> int | None: ...
    def is_special(self, id: int, /) -> bool: ...
    def encode_chat(
        self, messages: Sequence[Any], add_generation_prompt: bool = True, *, template: bool = False
    ) -> list[int]: ...
    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder: ...
