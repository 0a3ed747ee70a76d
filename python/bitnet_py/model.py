"""``BitNetModel`` (alias ``Transformer``), ``load_model`` and the original's
cache helpers ``make_cache``/``cache_prefix``."""

from __future__ import annotations

import glob
import logging
import os
import threading
import weakref
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from ._core import ConfigurationError, InferenceError, ModelNotFoundError
from ._engine import Engine, KVType, check_device, check_int
from .config import MemoryConfig, ModelArgs
from .tokenizer import as_core_tokenizer

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Live models (weak references), for get_memory_stats().
_LIVE: "weakref.WeakSet[BitNetModel]" = weakref.WeakSet()

#: Engines (tokenizer x context size) kept per model.
_MAX_ENGINES = 8

FORMATS = ("auto", "gguf", "safetensors", "pt", "checkpoint", "huggingface")


def _not_found(kind: str, path: str, hint: str) -> ModelNotFoundError:
    err = ModelNotFoundError(2, f"{kind} not found", path)
    err.hint = hint
    return err


def default_model_path() -> Optional[str]:
    """The model shipped with the package (``bitnet_py.data``), or None."""
    try:
        from . import data
    except ImportError:
        return None
    fn = getattr(data, "default_model_path", None)
    if fn is None:
        return None
    p = fn()
    return os.fspath(p) if p else None


def _find_tokenizer_near(path: str) -> Optional[str]:
    d = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for name in ("tokenizer.model", "tokenizer.json"):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def resolve_checkpoint(path: str) -> str:
    """The file to load for ``path``: itself, or the GGUF inside a directory
    (else the directory, for the checkpoint formats the C loader reads)."""
    if os.path.isdir(path):
        ggufs = sorted(glob.glob(os.path.join(path, "*.gguf")))
        if len(ggufs) > 1:
            logger.info("%s holds %d GGUF files; loading %s", path, len(ggufs), ggufs[0])
        if ggufs:
            return ggufs[0]
    return path


class BitNetModel:
    """A BitNet model loaded into the C engine (weights memory-mapped).

    ``BitNetModel(model_args)`` builds an empty model description (no
    weights; ``forward`` raises) as the original's constructor; use
    :meth:`from_gguf`, :meth:`from_pretrained` or :func:`load_model` to get
    weights."""

    def __init__(self, model_args: Optional[Union[ModelArgs, Mapping[str, Any]]] = None,
                 device: Optional[str] = "cpu", dtype: str = "bfloat16") -> None:
        if isinstance(model_args, Mapping):
            model_args = ModelArgs.from_dict(model_args)
        self.config: ModelArgs = model_args if model_args is not None else ModelArgs()
        self.device = check_device(device)
        self.dtype = dtype
        self.model_path: Optional[str] = None
        self.training = False
        self._core: Optional[_core.Model] = None
        self._engines: dict[tuple[int, int, KVType], Engine] = {}
        self._lock = threading.Lock()
        self.tokenizer_path: Optional[str] = None
        self._prefer_tokenizer_file = False
        self._file_tokenizer: Optional[_core.Tokenizer] = None
        #: KV bytes each engine may keep in pooled contexts (MemoryConfig.cache_size_mb).
        self.pool_cap_bytes: Optional[int] = None
        self.n_ctx = 0
        #: What generation contexts keep in the KV cache: "f32" or "f16".
        self.kv_type: KVType = "f32"
        _LIVE.add(self)

    # -- constructors ---------------------------------------------------------

    @classmethod
    def _load(cls, path: str, device: Optional[str], *, n_ctx: int = 0, n_layers: Optional[int] = None,
              use_mmap: bool = True, model_args: Optional[Any] = None,
              tokenizer_path: Optional[str] = None, kv_type: KVType = "f32") -> "BitNetModel":
        dev = check_device(device)
        if kv_type not in ("f32", "f16"):
            raise ConfigurationError(f"kv_type must be 'f32' or 'f16', not {kv_type!r}")
        nl = 0 if n_layers is None else check_int("n_layers", n_layers, 1)
        core = _core.Model(path, use_mmap=bool(use_mmap), n_layers=nl)
        self = cls.__new__(cls)
        BitNetModel.__init__(self, ModelArgs.from_core_config(core.config), dev, "ternary")
        if model_args is not None:
            given = model_args if isinstance(model_args, ModelArgs) else ModelArgs.from_dict(model_args)
            if given.dim != self.config.dim or given.n_heads != self.config.n_heads:
                logger.warning("model_args %s differ from the file's %s; using the file's", given,
                               self.config)
        self._core = core
        self.model_path = core.path
        self.n_ctx = check_int("n_ctx", n_ctx, 0)
        self.kv_type = kv_type
        self.tokenizer_path = tokenizer_path or _find_tokenizer_near(path)
        # a tokenizer file given explicitly, or found in a checkpoint
        # directory, is preferred over the GGUF's own vocabulary
        self._prefer_tokenizer_file = tokenizer_path is not None
        return self

    @classmethod
    def from_gguf(cls, path: PathLike, device: Optional[str] = None, **kw: Any) -> "BitNetModel":
        """Load a GGUF file."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise _not_found("GGUF file", p, "check the path; bitnet_py never downloads models")
        return cls._load(p, device, **kw)

    @classmethod
    def from_safetensors(cls, path: PathLike, device: Optional[str] = None, **kw: Any) -> "BitNetModel":
        """Load a safetensors file or directory (through the C loader)."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise _not_found("SafeTensors file", p, "check the path; bitnet_py never downloads models")
        return cls._load(p, device, **kw)

    @classmethod
    def from_pretrained(cls, ckpt_dir: PathLike, model_args: Optional[Any] = None,
                        device: Optional[str] = "cpu", dtype: str = "bfloat16", **kw: Any) -> "BitNetModel":
        """Load a checkpoint directory (a GGUF inside it, or another format
        the C loader reads) or a single file."""
        p = os.fspath(ckpt_dir)
        if not os.path.exists(p):
            raise _not_found("Model directory", p, "check the path; bitnet_py never downloads models")
        m = cls._load(resolve_checkpoint(p), device, model_args=model_args, **kw)
        if os.path.isdir(p) and m.tokenizer_path is not None:
            m._prefer_tokenizer_file = True
        return m

    # -- engine ---------------------------------------------------------------

    @property
    def core(self) -> _core.Model:
        """The :class:`bitnet_py._core.Model` (raises when no weights are loaded)."""
        if self._core is None:
            raise InferenceError("this BitNetModel has no weights: load one with load_model(), "
                                 "BitNetModel.from_gguf() or from_pretrained()")
        return self._core

    def engine(self, tokenizer: Any = None, n_ctx: Optional[int] = None) -> Engine:
        """The generation engine for this model with ``tokenizer`` (our
        Tokenizer/ChatFormat, a path, or None: the model's own or the
        tokenizer file next to it)."""
        core = self.core
        tok = as_core_tokenizer(tokenizer)
        if tok is None and self.tokenizer_path is not None and (
                self._prefer_tokenizer_file or not core.has_tokenizer):
            with self._lock:
                if self._file_tokenizer is None:
                    self._file_tokenizer = as_core_tokenizer(self.tokenizer_path)
                tok = self._file_tokenizer
        nc = self.n_ctx if n_ctx is None else check_int("n_ctx", n_ctx, 0)
        nc = nc or Engine.default_n_ctx(core)
        key = (id(tok), nc, self.kv_type)
        with self._lock:
            eng = self._engines.get(key)
            if eng is None or (tok is not None and eng.tokenizer is not tok):
                eng = Engine(core, tok, n_ctx=nc, kv_type=self.kv_type)
                eng.pool_cap_bytes = self.pool_cap_bytes
                self._engines[key] = eng
                while len(self._engines) > _MAX_ENGINES:  # oldest first
                    old = self._engines.pop(next(iter(self._engines)))
                    old.clear_pool()
            return eng

    # -- the original's methods ----------------------------------------------

    def forward(self, token_values: Any, token_lengths: Optional[Sequence[int]] = None,
                start_pos: Optional[Any] = None, cache: Any = None, kv_padding: Any = None) -> np.ndarray:
        """Logits float32 ``[T, vocab]`` after every token of ``token_values``.

        ``token_lengths`` splits a concatenation of several sequences (each
        evaluated from position 0, as the original's prefill); ``start_pos``,
        ``cache`` and ``kv_padding`` belong to the original's CUDA cache and
        are not needed (the engine keeps its own KV cache)."""
        ids = np.asarray(token_values).reshape(-1).astype(np.int64)
        eng = self.engine()
        if token_lengths is None:
            return eng.logits(ids.tolist())
        lens = [int(x) for x in np.asarray(token_lengths).reshape(-1)]
        if sum(lens) != ids.shape[0]:
            raise ConfigurationError(f"token_lengths sum to {sum(lens)}, token_values has {ids.shape[0]}")
        out, off = [], 0
        for n in lens:
            out.append(eng.logits(ids[off:off + n].tolist()))
            off += n
        return np.concatenate(out, axis=0)

    __call__ = forward

    def forward_with_attn_bias(self, token_values: Any, attn_bias: Any = None, cache: Any = None) -> np.ndarray:
        """As :meth:`forward` (the attention bias of the original is implied: causal)."""
        return self.forward(token_values)

    def to(self, device: Optional[str]) -> "BitNetModel":
        self.device = check_device(device)
        return self

    def eval(self) -> "BitNetModel":
        self.training = False
        return self

    def train(self, mode: Optional[bool] = None) -> "BitNetModel":
        if mode is None or mode:
            logger.warning("bitnet_py models are inference-only; train() has no effect")
        self.training = False
        return self

    def num_parameters(self) -> int:
        """Number of parameters (counted from the file when loaded)."""
        if self._core is not None:
            return int(self._core.n_params)
        return self.config.num_parameters()

    @property
    def weight_bytes(self) -> int:
        return int(self._core.weight_bytes) if self._core is not None else 0

    def close(self) -> None:
        """Free the contexts and the weights now (also done when collected)."""
        with self._lock:
            engines, self._engines = self._engines, {}
        for e in engines.values():
            e.clear_pool()
        if self._core is not None:
            self._core.close()
            self._core = None

    def __enter__(self) -> "BitNetModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"BitNetModel(path='{self.model_path}', device='{self.device}', dtype='{self.dtype}', "
                f"params={self.num_parameters()})")


Transformer = BitNetModel


def load_model(model_path: Optional[PathLike] = None, model_format: Optional[str] = None,
               device: Optional[str] = None, **kw: Any) -> BitNetModel:
    """Load a model: a ``.gguf`` file, a ``.safetensors`` file, or a
    checkpoint directory. With no path, the model shipped with the package.

    Keywords: ``n_ctx`` (context per sequence), ``n_layers`` (use the first
    N layers), ``use_mmap`` (default True), ``tokenizer_path``, ``kv_type``
    (``"f32"``, the default, or ``"f16"``: a KV cache in half precision, as
    llama.cpp keeps it, half the memory and faster long generations),
    ``model_args`` (a dict, checked against the file), ``memory_config``
    (a MemoryConfig) or ``model_config`` (a ModelConfig)."""
    mem: Optional[MemoryConfig] = kw.pop("memory_config", None)
    mcfg = kw.pop("model_config", None)
    if mcfg is not None and mem is None:
        mem = mcfg.to_memory_config()
    if mem is not None:
        kw.setdefault("use_mmap", mem.enable_memory_mapping)
    if model_format is not None:
        if not isinstance(model_format, str) or model_format.lower() not in FORMATS:
            raise ConfigurationError(f"Unsupported model format: {model_format}",)
        model_format = model_format.lower()
    dev = check_device(device)
    if model_path is None:
        found = default_model_path()
        if found is None:
            err = ModelNotFoundError(2, "no model path given and no model is shipped with this install")
            err.hint = "pass the path of a .gguf file or checkpoint directory"
            raise err
        model_path = found
    p = os.fspath(model_path)
    allowed = {"n_ctx", "n_layers", "use_mmap", "tokenizer_path", "model_args", "kv_type"}
    unknown = set(kw) - allowed
    if unknown:
        raise ConfigurationError(f"load_model() got unknown keyword(s): {', '.join(sorted(unknown))}")
    if model_format == "gguf" or (model_format in (None, "auto") and p.endswith(".gguf")):
        m = BitNetModel.from_gguf(p, dev, **kw)
    elif model_format == "safetensors" or (model_format in (None, "auto") and p.endswith(".safetensors")):
        m = BitNetModel.from_safetensors(p, dev, **kw)
    else:
        m = BitNetModel.from_pretrained(p, device=dev, **kw)
    if mem is not None and mem.cache_size_mb is not None:
        m.pool_cap_bytes = int(mem.cache_size_mb) * 2**20
    if mem is not None and mem.max_memory_gb is not None:
        gb = m.weight_bytes / 2**30
        if gb > mem.max_memory_gb:
            m.close()
            raise ConfigurationError(
                f"the model's weights take {gb:.2f} GB, over max_memory_gb={mem.max_memory_gb}")
    return m


def make_cache(model_args: ModelArgs, length: int, device: Optional[str] = None,
               n_layers: Optional[int] = None, dtype: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The original's per-layer ``(k, v)`` cache: zeros of shape
    ``(1, length, n_kv_heads, n_heads // n_kv_heads, head_dim)`` (the KV
    heads broadcast over their query group). The engine keeps its own KV
    cache; this exists for code that builds one."""
    check_device(device)
    length = check_int("length", length, 0)
    kv = model_args.n_kv_heads or model_args.n_heads
    hd = model_args.dim // model_args.n_heads
    layers = model_args.n_layers if n_layers is None else check_int("n_layers", n_layers, 0)
    dt = np.float32 if dtype is None or not isinstance(dtype, (type, np.dtype, str)) else dtype
    try:
        np.dtype(dt)
    except TypeError:
        dt = np.float32
    shape = (1, length, kv, model_args.n_heads // kv, hd)
    out = []
    for _ in range(layers):
        k = np.broadcast_to(np.zeros((1, length, kv, 1, hd), dtype=dt), shape)
        v = np.broadcast_to(np.zeros((1, length, kv, 1, hd), dtype=dt), shape)
        out.append((k, v))
    return out


def cache_prefix(cache: Sequence[tuple[Any, Any]], length: int) -> list[tuple[Any, Any]]:
    """The first ``length`` positions of every layer's ``(k, v)``."""
    length = check_int("length", length, 0)
    if cache and cache[0][0].shape[1] < length:
        raise ConfigurationError(f"cache holds {cache[0][0].shape[1]} positions, fewer than {length}")
    return [(k[:, :length], v[:, :length]) for k, v in cache]


__all__ = ["BitNetModel", "Transformer", "load_model", "make_cache", "cache_prefix", "FORMATS"]
