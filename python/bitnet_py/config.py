"""Configuration objects: the original's ``ModelArgs``/``GenArgs`` and the
documented ``InferenceConfig``, ``SamplingConfig``, ``BatchConfig``,
``MemoryConfig``, plus ``Message`` and the original's ``Stats``."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, TypeVar

from ._core import ConfigurationError
from ._engine import GenParams, check_float, check_int

_C = TypeVar("_C", bound="_DictMixin")


class _DictMixin:
    """``from_dict`` (missing keys default, unknown keys ignored) and ``to_dict``."""

    @classmethod
    def from_dict(cls: type[_C], d: Optional[Mapping[str, Any]] = None, **kw: Any) -> _C:
        data = dict(d or {})
        data.update(kw)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, _DictMixin) else v
        return out


@dataclass
class ModelArgs(_DictMixin):
    """Model hyperparameters, as the original ``model.ModelArgs`` (2B-4T
    defaults). A loaded model's ``config`` holds the file's real values."""

    dim: int = 2560
    n_layers: int = 30
    n_heads: int = 20
    n_kv_heads: Optional[int] = 5
    vocab_size: int = 128256
    ffn_dim: int = 6912
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    use_kernel: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_core_config(cls, cfg: Mapping[str, Any]) -> "ModelArgs":
        """From :attr:`bitnet_py._core.Model.config`."""
        return cls(dim=int(cfg["n_embd"]), n_layers=int(cfg["n_layer"]), n_heads=int(cfg["n_head"]),
                   n_kv_heads=int(cfg["n_head_kv"]), vocab_size=int(cfg["n_vocab"]),
                   ffn_dim=int(cfg["n_ff"]), norm_eps=float(cfg["norm_eps"]),
                   rope_theta=float(cfg["rope_theta"]), use_kernel=True)

    def num_parameters(self) -> int:
        """Parameter count of this shape (tied embedding counted twice, as
        the original's separate output matrix)."""
        kv = self.n_kv_heads or self.n_heads
        hd = self.dim // self.n_heads
        layer = (self.dim * (self.n_heads + 2 * kv) * hd + self.n_heads * hd * self.dim
                 + 3 * self.dim * self.ffn_dim + 3 * self.dim)
        return 2 * self.vocab_size * self.dim + self.n_layers * layer


@dataclass
class GenArgs(_DictMixin):
    """Generation settings, as the original ``generate.GenArgs``.

    ``gen_length`` is the maximum number of new tokens; ``prompt_length`` and
    ``gen_bsz`` were fixed shapes of the original's CUDA graphs and are not
    limits here (any prompt that fits the context, any batch size).
    ``temperature``/``top_p``/``top_k``/``repetition_penalty`` apply when
    sampling (the original ignored them)."""

    gen_length: int = 32
    gen_bsz: int = 1
    prompt_length: int = 64
    use_sampling: bool = False
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: Optional[int] = None
    repetition_penalty: float = 1.0

    def validate(self) -> "GenArgs":
        check_int("gen_length", self.gen_length, 0)
        check_int("gen_bsz", self.gen_bsz, 1)
        check_int("prompt_length", self.prompt_length, 1)
        check_float("temperature", self.temperature, 0.0)
        check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.top_k is not None:
            check_int("top_k", self.top_k, 0)
        check_float("repetition_penalty", self.repetition_penalty, 0.0, lo_open=True)
        return self

    def to_params(self, use_sampling: Optional[bool] = None, seed: Optional[int] = None) -> GenParams:
        self.validate()
        sample = self.use_sampling if use_sampling is None else bool(use_sampling)
        return GenParams(max_new_tokens=self.gen_length,
                         temperature=float(self.temperature) if sample else 0.0,
                         top_p=float(self.top_p) if sample else 1.0,
                         top_k=int(self.top_k or 0) if sample else 0,
                         repetition_penalty=float(self.repetition_penalty), seed=seed)


STRATEGIES = ("greedy", "nucleus", "top_k", "typical", "mirostat")


@dataclass
class SamplingConfig(_DictMixin):
    """A sampling strategy: ``greedy``, ``nucleus`` (top_p), ``top_k``,
    ``typical`` (typical_p) or ``mirostat`` (v2, tau/eta)."""

    strategy: str = "nucleus"
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    typical_p: float = 0.95
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    mirostat_version: int = 2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "SamplingConfig":
        if self.strategy not in STRATEGIES:
            raise ConfigurationError(f"unknown sampling strategy {self.strategy!r}: use one of "
                                     + ", ".join(STRATEGIES))
        check_float("temperature", self.temperature, 0.0)
        check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        check_int("top_k", self.top_k, 1)
        check_float("typical_p", self.typical_p, 0.0, 1.0, lo_open=True)
        check_float("mirostat_tau", self.mirostat_tau, 0.0)
        check_float("mirostat_eta", self.mirostat_eta, 0.0)
        check_int("mirostat_version", self.mirostat_version, 1, 2)
        return self

    def apply(self, p: GenParams) -> GenParams:
        """Fill ``p``'s sampler fields from this strategy."""
        self.validate()
        p.top_k, p.top_p, p.typical_p, p.min_p, p.mirostat = 0, 1.0, 1.0, 0.0, 0
        if self.strategy == "greedy":
            p.temperature = 0.0
            return p
        p.temperature = float(self.temperature)
        if self.strategy == "nucleus":
            p.top_p = float(self.top_p)
        elif self.strategy == "top_k":
            p.top_k = int(self.top_k)
        elif self.strategy == "typical":
            p.typical_p = float(self.typical_p)
        else:
            p.mirostat = int(self.mirostat_version)
            p.mirostat_tau, p.mirostat_eta = float(self.mirostat_tau), float(self.mirostat_eta)
            if p.temperature == 0.0:
                p.temperature = 1.0
        return p


@dataclass
class InferenceConfig(_DictMixin):
    """Settings of :class:`bitnet_py.SimpleInference` and friends.

    ``max_length`` bounds prompt + generation (it is also the context size
    the engine allocates, capped by the model's training context);
    ``do_sample`` False is greedy decoding; ``sampling`` (a SamplingConfig)
    overrides temperature/top_p/top_k when given. ``batch_size``,
    ``enable_streaming`` and ``timeout_seconds`` are the production
    notebook's knobs (timeout: generation stops, reason "cancelled")."""

    max_length: int = 2048
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: Optional[int] = None
    repetition_penalty: float = 1.0
    do_sample: bool = True
    seed: Optional[int] = None
    pad_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    sampling: Optional[SamplingConfig] = None
    batch_size: int = 8
    enable_streaming: bool = True
    timeout_seconds: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.sampling, Mapping):
            self.sampling = SamplingConfig.from_dict(self.sampling)
        self.validate()

    def validate(self) -> "InferenceConfig":
        check_int("max_length", self.max_length, 1)
        check_int("max_new_tokens", self.max_new_tokens, 0)
        check_float("temperature", self.temperature, 0.0)
        check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.top_k is not None:
            check_int("top_k", self.top_k, 0)
        check_float("repetition_penalty", self.repetition_penalty, 0.0, lo_open=True)
        if self.seed is not None:
            check_int("seed", self.seed)
        if self.eos_token_id is not None:
            check_int("eos_token_id", self.eos_token_id, 0)
        check_int("batch_size", self.batch_size, 1)
        if self.timeout_seconds is not None:
            check_float("timeout_seconds", self.timeout_seconds, 0.0, lo_open=True)
        if self.sampling is not None and not isinstance(self.sampling, SamplingConfig):
            raise ConfigurationError("sampling must be a SamplingConfig or None")
        return self

    def to_params(self) -> GenParams:
        self.validate()
        p = GenParams(max_new_tokens=self.max_new_tokens,
                      repetition_penalty=float(self.repetition_penalty), seed=self.seed)
        if self.sampling is not None:
            return self.sampling.apply(p)
        if self.do_sample:
            p.temperature = float(self.temperature)
            p.top_p = float(self.top_p)
            p.top_k = int(self.top_k or 0)
        return p


@dataclass
class BatchConfig(_DictMixin):
    """Settings of :class:`bitnet_py.BatchProcessor`: prompts are generated
    ``batch_size`` at a time, each batch in one multi-sequence pass."""

    batch_size: int = 8
    max_new_tokens: int = 128
    temperature: float = 0.8
    do_sample: bool = False
    top_p: float = 0.9
    top_k: Optional[int] = None
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "BatchConfig":
        check_int("batch_size", self.batch_size, 1)
        check_int("max_new_tokens", self.max_new_tokens, 0)
        check_float("temperature", self.temperature, 0.0)
        check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.top_k is not None:
            check_int("top_k", self.top_k, 0)
        return self

    def to_params(self) -> GenParams:
        self.validate()
        p = GenParams(max_new_tokens=self.max_new_tokens, seed=self.seed)
        if self.do_sample:
            p.temperature, p.top_p, p.top_k = float(self.temperature), float(self.top_p), int(self.top_k or 0)
        return p


@dataclass
class MemoryConfig(_DictMixin):
    """Memory settings: ``enable_memory_mapping`` maps the weights from the
    file (default; False reads them into memory); ``max_memory_gb`` is
    checked against model + KV bytes when a model is loaded;
    ``cache_size_mb`` caps the KV cache of the contexts an engine keeps;
    ``enable_gc`` runs the garbage collector in :func:`cleanup_memory`."""

    max_memory_gb: Optional[float] = None
    enable_memory_mapping: bool = True
    cache_size_mb: Optional[int] = None
    enable_gc: bool = True

    def __post_init__(self) -> None:
        if self.max_memory_gb is not None:
            check_float("max_memory_gb", self.max_memory_gb, 0.0, lo_open=True)
        if self.cache_size_mb is not None:
            check_int("cache_size_mb", self.cache_size_mb, 1)


@dataclass
class ModelConfig(_DictMixin):
    """Deployment settings of a model (the production notebook's names):
    ``use_memory_mapping`` maps the weights (``load_model(use_mmap=)``),
    ``cache_size_mb`` caps pooled KV bytes; ``enable_quantization`` is
    always on (ternary weights) and the GPU fields are accepted for
    compatibility (bitnet_py runs on the CPU)."""

    use_memory_mapping: bool = True
    enable_quantization: bool = True
    cache_size_mb: Optional[int] = 1024
    enable_gpu: bool = False
    gpu_memory_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.cache_size_mb is not None:
            check_int("cache_size_mb", self.cache_size_mb, 1)
        check_float("gpu_memory_fraction", self.gpu_memory_fraction, 0.0, 1.0, lo_open=True)

    def to_memory_config(self) -> "MemoryConfig":
        return MemoryConfig(enable_memory_mapping=self.use_memory_mapping, cache_size_mb=self.cache_size_mb)


@dataclass
class ServerConfig(_DictMixin):
    """Serving limits (for applications built on bitnet_py; validated here)."""

    host: str = "0.0.0.0"
    port: int = 8000
    max_concurrent_requests: int = 100
    request_queue_size: int = 500
    worker_threads: int = 4
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        check_int("port", self.port, 1, 65535)
        check_int("max_concurrent_requests", self.max_concurrent_requests, 1)
        check_int("request_queue_size", self.request_queue_size, 0)
        check_int("worker_threads", self.worker_threads, 1)
        check_float("timeout_seconds", self.timeout_seconds, 0.0, lo_open=True)


@dataclass
class Message:
    """A chat message; also usable as the original's ``{"role", "content"}`` dict."""

    role: str
    content: str

    def __getitem__(self, key: str) -> str:
        if key == "role":
            return self.role
        if key == "content":
            return self.content
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> Iterator[str]:
        return iter(("role", "content"))


@dataclass
class PhaseStats:
    """One timed phase (the original's ``stats.PhaseStats``)."""

    name: str
    tokens: int
    time: float

    def show(self) -> str:
        tps = self.tokens / self.time if self.time > 0 else 0.0
        return (f"[{self.name}] generated tokens: {self.tokens} - total time: {self.time:.3f}s"
                f" - {tps:.1f} tokens per second")


class Stats:
    """Timing of a generation: the original's ``phases``/``phase()``/
    ``end_phase()``, plus the documented totals (``total_tokens``,
    ``total_time``, ``tokens_per_second``, ``prefill_time``, ``decode_time``,
    ``memory_used`` in GB)."""

    def __init__(self) -> None:
        self.phases: list[PhaseStats] = []
        self.current: Optional[tuple[str, float]] = None
        self.memory_used: float = 0.0

    def end_phase(self, tokens: int, now: Optional[float] = None) -> None:
        """Close the running phase, crediting it ``tokens``."""
        now = time.perf_counter() if now is None else now
        if self.current is None:
            raise ConfigurationError("end_phase() without a running phase: call phase() first")
        name, start = self.current
        self.phases.append(PhaseStats(name=name, tokens=int(tokens), time=now - start))
        self.current = None

    def phase(self, name: str, tokens: int = 0) -> None:
        """Start phase ``name`` (closing the running one with ``tokens``)."""
        now = time.perf_counter()
        if self.current is not None:
            self.end_phase(tokens, now)
        self.current = (name, now)

    def _sum(self, names: tuple[str, ...], attr: str) -> float:
        return float(sum(getattr(p, attr) for p in self.phases if p.name in names))

    @property
    def total_tokens(self) -> int:
        dec = int(self._sum(("decode", "total"), "tokens"))
        return dec if dec else sum(p.tokens for p in self.phases)

    @property
    def total_time(self) -> float:
        return sum(p.time for p in self.phases)

    @property
    def tokens_per_second(self) -> float:
        t = self.total_time
        return self.total_tokens / t if t > 0 else 0.0

    @property
    def prefill_time(self) -> float:
        return float(self._sum(("prefill",), "time"))

    @property
    def decode_time(self) -> float:
        return float(self._sum(("decode",), "time"))

    def show(self) -> str:
        """The original's lines, one per phase."""
        return "\n".join(p.show() for p in self.phases)

    def summary(self) -> str:
        return (f"Stats(tokens={self.total_tokens}, time={self.total_time:.2f}s, "
                f"tokens/s={self.tokens_per_second:.2f}, prefill={self.prefill_time:.2f}s, "
                f"decode={self.decode_time:.2f}s, memory={self.memory_used:.2f}GB)")

    __repr__ = summary


__all__ = ["ModelArgs", "GenArgs", "InferenceConfig", "SamplingConfig", "BatchConfig",
           "MemoryConfig", "ModelConfig", "ServerConfig", "Message", "Stats", "PhaseStats", "STRATEGIES"]


