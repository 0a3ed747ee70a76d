"""Generation APIs: the original's ``FastGen`` (``InferenceEngine``), the
documented ``SimpleInference``, streams, async and batch processing.

All of them run :meth:`bitnet_py._engine.Engine.steps`; they differ only in
how prompts come in and text goes out."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, AsyncIterator, Generator, Iterator, Mapping, Optional, Sequence, Union

from . import _core
from ._core import ConfigurationError, TokenizerError
from ._engine import CancelToken, Engine, GenParams, GenResult, Timing, check_device, check_int
from .config import BatchConfig, GenArgs, InferenceConfig, ModelArgs, PhaseStats, Stats
from .model import BitNetModel, PathLike, load_model
from .tokenizer import ChatFormat, Tokenizer, create_tokenizer

logger = logging.getLogger(__name__)

#: A prompt: text, a dialog (list of {"role", "content"} dicts or Messages), or token ids.
Prompt = Union[str, Sequence[Any], Sequence[int]]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import resource

            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        except Exception:  # pragma: no cover - exotic platforms
            return 0


def _is_dialog(prompt: Any) -> bool:
    if isinstance(prompt, (str, bytes, bytearray)) or not isinstance(prompt, (list, tuple)) or not prompt:
        return False
    m = prompt[0]
    return isinstance(m, Mapping) or (hasattr(m, "role") and hasattr(m, "content"))


def _encode_prompt(engine: Engine, prompt: Any, bos: bool = True, chat: Optional[ChatFormat] = None) -> list[int]:
    """Token ids of a prompt: a str (wrapped as one user message when
    ``chat`` is given), a dialog (a list of messages, encoded with the
    original's chat format plus the assistant header), or token ids."""
    if _is_dialog(prompt):
        fmt = chat if chat is not None else ChatFormat(Tokenizer(engine.require_tokenizer()))
        return list(fmt.encode_dialog_prompt(list(prompt), completion=True))
    if isinstance(prompt, str):
        if chat is not None:
            return list(chat.encode_dialog_prompt([{"role": "user", "content": prompt}], completion=True))
        tok = engine.require_tokenizer()
        return tok.encode(prompt, bos=bos and tok.bos_id is not None, disallowed_special=())
    if isinstance(prompt, (bytes, bytearray)):
        raise TokenizerError("prompt must be a str, a list of messages or a list of token ids, not bytes")
    return [int(t) for t in prompt]


def _check_prompts(prompts: Any) -> list[Any]:
    if isinstance(prompts, str):
        raise ConfigurationError("prompts must be a list of prompts, not one str")
    out = list(prompts)
    if not out:
        raise ConfigurationError("no prompts: the batch is empty")
    return out


class _Timeout:
    """Cancel a generation after ``seconds`` (no-op for None)."""

    def __init__(self, cancel: CancelToken, seconds: Optional[float]) -> None:
        self._timer = threading.Timer(seconds, cancel.cancel) if seconds else None

    def __enter__(self) -> "_Timeout":
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()


class GenerationStream:
    """Text of one generation, token by token, three ways at once:

    * ``for piece in stream`` (sync iterator),
    * ``async for piece in stream`` (async iterator; each step runs in a
      worker thread, so the event loop never waits on C work),
    * ``await stream`` (the whole text).

    Pieces are never broken UTF-8. :meth:`cancel` stops the C work within
    one token (an evaluation already running is interrupted)."""

    def __init__(self, engine: Engine, prompt: Any, params: GenParams,
                 timeout: Optional[float] = None, chat: Optional[ChatFormat] = None) -> None:
        self._engine = engine
        self._prompt_text = prompt if isinstance(prompt, str) else None
        self._ids = engine.check_prompt(_encode_prompt(engine, prompt, chat=chat))
        params.validate()
        self._params = params
        self._cancel = CancelToken()
        self._timing = Timing()
        self._result = GenResult(prompt_tokens=len(self._ids))
        self._gen: Optional[Iterator[str]] = None
        self._lock = threading.Lock()
        self._started = False
        self._finished = False
        self._text: list[str] = []
        self._t_start: Optional[float] = None
        self._t_first: Optional[float] = None
        self._t_end: Optional[float] = None
        self._timer = threading.Timer(timeout, self._cancel.cancel) if timeout else None

    # -- control --------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating (idempotent, thread-safe); iteration then ends."""
        self._cancel.cancel()

    def is_active(self) -> bool:
        """True until the generation finished or was cancelled."""
        return not self._finished and not self._cancel.cancelled

    @property
    def finish_reason(self) -> Optional[str]:
        return self._result.reason if self._finished else None

    @property
    def tokens(self) -> list[int]:
        return list(self._result.tokens)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def get_stream_stats(self) -> dict[str, Any]:
        """Progress and settings of this stream."""
        p = self._params
        now = self._t_end or time.perf_counter()
        elapsed = (now - self._t_start) if self._t_start is not None else 0.0
        n = len(self._result.tokens)
        preview = self._prompt_text if self._prompt_text is not None else str(self._ids[:16])
        return {
            "started": self._started,
            "active": self.is_active(),
            "cancelled": self._cancel.cancelled,
            "finished": self._finished,
            "finish_reason": self.finish_reason,
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_k": p.top_k,
            "top_p": p.top_p,
            "prompt_preview": preview[:50],
            "prompt_length": len(self._ids),
            "tokens_generated": n,
            "text_length": sum(len(t) for t in self._text),
            "elapsed": elapsed,
            "first_token_latency": (self._t_first - self._t_start)
            if self._t_first is not None and self._t_start is not None else None,
            "tokens_per_second": n / elapsed if elapsed > 0 else 0.0,
        }

    # -- sync -----------------------------------------------------------------

    def _next_piece(self) -> Optional[str]:
        """The next piece, or None at the end (runs the C work)."""
        with self._lock:
            if self._finished:
                return None
            if self._gen is None:
                self._started = True
                self._t_start = time.perf_counter()
                if self._timer is not None:
                    self._timer.daemon = True
                    self._timer.start()
                self._gen = self._engine.stream_text(self._ids, self._params, self._cancel,
                                                     self._timing, self._result)
            try:
                piece = next(self._gen)
            except StopIteration:
                self._finish()
                return None
            except BaseException:
                self._finish()
                raise
            if self._t_first is None:
                self._t_first = time.perf_counter()
            self._text.append(piece)
            return piece

    def _finish(self) -> None:
        self._finished = True
        self._t_end = time.perf_counter()
        if self._timer is not None:
            self._timer.cancel()
        if self._gen is not None:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> str:
        piece = self._next_piece()
        if piece is None:
            raise StopIteration
        return piece

    def close(self) -> None:
        """Cancel and release the context now."""
        self.cancel()
        with self._lock:
            if not self._finished:
                self._finish()

    def __del__(self) -> None:
        try:
            if not self._finished and self._gen is not None:
                self.close()
        except Exception:
            pass

    # -- async ----------------------------------------------------------------

    def __aiter__(self) -> "GenerationStream":
        return self

    async def __anext__(self) -> str:
        loop = asyncio.get_running_loop()
        try:
            piece = await loop.run_in_executor(None, self._next_piece)
        except asyncio.CancelledError:
            self.cancel()  # the awaiting task was cancelled: stop the C work too
            raise
        if piece is None:
            raise StopAsyncIteration
        return piece

    async def _collect(self) -> str:
        loop = asyncio.get_running_loop()

        def run() -> str:
            for _ in self:
                pass
            return self.text

        try:
            return await loop.run_in_executor(None, run)
        except asyncio.CancelledError:
            self.cancel()
            raise

    def __await__(self) -> Generator[Any, None, str]:
        return self._collect().__await__()

    def __repr__(self) -> str:
        return (f"GenerationStream(prompt_length={len(self._ids)}, tokens={len(self._result.tokens)}, "
                f"active={self.is_active()})")


class InferenceEngine:
    """The original's ``FastGen``: ``build()`` a model and tokenizer from a
    checkpoint directory, then ``generate_all()`` token prompts.

    Differences from the original (all fixes): any prompt length that fits
    the context and any batch size; sampling uses the GenArgs temperature,
    top_p (and top_k); every sequence stops at its own end-of-turn;
    ``tokenizer_path``, ``num_layers`` and ``use_full_vocab`` are honoured."""

    def __init__(self, prefill_model: BitNetModel, decode_model: Optional[BitNetModel] = None,
                 tokenizer: Any = None, gen_args: Optional[GenArgs] = None,
                 device: Any = None, use_full_vocab: bool = False, n_ctx: int = 0) -> None:
        if isinstance(prefill_model, GenArgs) and isinstance(decode_model, ModelArgs):
            # the original's order: FastGen(args, model_args, prefill_model, decode_model, tokenizer)
            prefill_model, decode_model, tokenizer, gen_args, device = (
                tokenizer, gen_args, device, prefill_model, None)
        if decode_model is not None and not isinstance(decode_model, BitNetModel):
            # InferenceEngine(model, tokenizer[, device]) of the earlier native module
            if tokenizer is not None and device is None and isinstance(tokenizer, str):
                device = tokenizer
            tokenizer, decode_model = decode_model, None
        if not isinstance(prefill_model, BitNetModel):
            raise ConfigurationError(f"prefill_model must be a BitNetModel, not {type(prefill_model).__name__}")
        self.prefill_model = prefill_model
        self.decode_model = decode_model if decode_model is not None else prefill_model
        self.device = check_device(device)
        self.gen_args = gen_args if gen_args is not None else GenArgs()
        self.gen_args.validate()
        if tokenizer is None:
            tp = prefill_model.tokenizer_path
            tokenizer = Tokenizer(tp) if tp else None
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = Tokenizer(tokenizer)
        if isinstance(tokenizer, ChatFormat):
            tokenizer = tokenizer.tokenizer
        self._engine = prefill_model.engine(tokenizer, n_ctx=n_ctx or None)
        if tokenizer is None and self._engine.tokenizer is not None:
            tokenizer = Tokenizer(self._engine.tokenizer)
        self.tokenizer: Optional[Tokenizer] = tokenizer
        self.use_full_vocab = bool(use_full_vocab)
        self.model_args = prefill_model.config

    @classmethod
    def build(cls, ckpt_dir: PathLike, gen_args: Optional[GenArgs] = None, device: Optional[str] = "cpu",
              tokenizer_path: Optional[PathLike] = None, num_layers: Optional[int] = None,
              use_full_vocab: bool = False, n_ctx: int = 0) -> "InferenceEngine":
        """Load ``ckpt_dir`` (a GGUF inside it, or a file) and its tokenizer.

        ``tokenizer_path`` None looks for ``tokenizer.model`` in ``ckpt_dir``,
        then ``./tokenizer.model`` (the original's choice), then the model
        file's own vocabulary. ``num_layers`` runs only the first N layers
        (None: all). ``use_full_vocab`` lets generation pick the model's
        padding ids beyond the tokenizer's vocabulary."""
        dev = check_device(device)
        if gen_args is not None and not isinstance(gen_args, GenArgs):
            raise ConfigurationError(f"gen_args must be a GenArgs, not {type(gen_args).__name__}")
        if num_layers is not None:
            check_int("num_layers", num_layers, 1)
        model = BitNetModel.from_pretrained(ckpt_dir, device=dev, n_layers=num_layers)
        if num_layers is not None and num_layers > model.config.n_layers:
            logger.info("num_layers=%d > the model's %d layers: using all", num_layers, model.config.n_layers)
        tp: Optional[str] = os.fspath(tokenizer_path) if tokenizer_path is not None else None
        if tp is None:
            tp = model.tokenizer_path
            if tp is None and os.path.isfile("tokenizer.model"):
                tp = os.path.abspath("tokenizer.model")
        tok: Optional[Tokenizer] = Tokenizer(tp) if tp is not None else None
        if tok is None and not model.core.has_tokenizer:
            raise TokenizerError(f"no tokenizer: {os.fspath(ckpt_dir)!r} holds no tokenizer.model and "
                                 "the model file has no vocabulary; pass tokenizer_path")
        return cls(model, model, tok, gen_args if gen_args is not None else GenArgs(), dev,
                   use_full_vocab=use_full_vocab, n_ctx=n_ctx)

    @property
    def engine(self) -> Engine:
        return self._engine

    def compile_prefill(self) -> None:
        """No-op (the original captured CUDA graphs here)."""

    def compile_generate(self) -> None:
        """No-op (the original captured CUDA graphs here)."""

    def _params(self, use_sampling: Optional[bool], max_new: Optional[int] = None) -> GenParams:
        p = self.gen_args.to_params(use_sampling)
        if max_new is not None:
            p.max_new_tokens = check_int("max_new_tokens", max_new, 0)
        p.vocab_limit = None if self.use_full_vocab else self._engine.vocab_limit()
        return p

    def generate_all(self, prompts: Sequence[Sequence[int]], use_cuda_graphs: bool = True,
                     use_sampling: Optional[bool] = None) -> tuple[Stats, list[list[int]]]:
        """Generate for every token prompt together; ``(stats, answers)``
        where each answer holds the new tokens only, at most
        ``gen_args.gen_length``, ending with the end-of-turn token when the
        model produced one (nothing after it). ``use_cuda_graphs`` only
        names the phases ("prefill"/"decode", or one "total")."""
        plist = _check_prompts(prompts)
        for i, p in enumerate(plist):
            if isinstance(p, str):
                raise ConfigurationError(f"prompt {i} is a str: generate_all() takes token lists "
                                         "(encode with the tokenizer or ChatFormat)")
        params = self._params(use_sampling)
        timing = Timing()
        stats = Stats()
        results = self._engine.generate(plist, params, timing=timing)
        new = sum(len(r.tokens) for r in results)
        if use_cuda_graphs:
            stats.phases.append(PhaseStats("prefill", timing.prompt_tokens, timing.prefill_time))
            stats.phases.append(PhaseStats("decode", new, timing.decode_time))
        else:
            stats.phases.append(PhaseStats("total", new, timing.prefill_time + timing.decode_time))
        stats.memory_used = _rss_bytes() / 2**30
        answers = []
        for r in results:
            toks = list(r.tokens)
            if r.reason == "stop" and r.stop_token is not None and len(toks) < params.max_new_tokens:
                toks.append(r.stop_token)
            answers.append(toks)
        return stats, answers

    def generate(self, prompt: Union[str, Sequence[int]], max_new_tokens: Optional[int] = None,
                 use_sampling: Optional[bool] = None, *, max_tokens: Optional[int] = None,
                 temperature: Optional[float] = None, top_p: Optional[float] = None,
                 top_k: Optional[int] = None) -> str:
        """The continuation of ``prompt`` (encoded with bos) as text.

        ``max_tokens``/``temperature``/``top_p``/``top_k`` (the earlier
        native module's keywords) sample with those values; ``max_tokens``
        and ``top_k`` must be > 0 there."""
        if max_tokens is not None:
            max_new_tokens = check_int("max_tokens", max_tokens, 1)
        p = self._params(use_sampling, max_new_tokens)
        if temperature is not None or top_p is not None or top_k is not None:
            p.temperature = 0.7 if temperature is None else float(temperature)
            p.top_p = 0.9 if top_p is None else float(top_p)
            p.top_k = 50 if top_k is None else check_int("top_k", top_k, 1)
            p.validate()
        ids = _encode_prompt(self._engine, prompt)
        res = self._engine.generate([ids], p)[0]
        return self._engine.require_tokenizer().decode(res.tokens, skip_special=True)

    def generate_stream(self, prompt: Union[str, Sequence[int]], max_new_tokens: Optional[int] = None,
                        use_sampling: Optional[bool] = None) -> GenerationStream:
        """A :class:`GenerationStream` of the continuation."""
        return GenerationStream(self._engine, prompt, self._params(use_sampling, max_new_tokens))

    def __repr__(self) -> str:
        return f"InferenceEngine(model={self.prefill_model!r}, gen_args={self.gen_args!r})"


FastGen = InferenceEngine


class SimpleInference:
    """Text in, text out: ``SimpleInference(model, tokenizer, config)``.

    ``model`` is a :class:`BitNetModel` (or a path); ``tokenizer`` a
    Tokenizer/ChatFormat, a path, or None (the model's own vocabulary or a
    tokenizer file next to it); ``config`` an :class:`InferenceConfig`."""

    def __init__(self, model: Union[BitNetModel, PathLike], tokenizer: Any = None,
                 config: Optional[InferenceConfig] = None) -> None:
        if not isinstance(model, BitNetModel):
            model = load_model(model)
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = create_tokenizer(tokenizer)
        if config is not None and not isinstance(config, InferenceConfig):
            raise ConfigurationError(f"config must be an InferenceConfig, not {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        #: A ChatFormat tokenizer makes str prompts one user message in its format.
        self.chat: Optional[ChatFormat] = tokenizer if isinstance(tokenizer, ChatFormat) else None
        self._config = config if config is not None else InferenceConfig()
        self._config.validate()

    @property
    def config(self) -> InferenceConfig:
        return self._config

    @config.setter
    def config(self, value: InferenceConfig) -> None:
        if not isinstance(value, InferenceConfig):
            raise ConfigurationError(f"config must be an InferenceConfig, not {type(value).__name__}")
        self._config = value.validate()

    @property
    def engine(self) -> Engine:
        base = self.model.engine(self.tokenizer)
        n_ctx = min(self._config.max_length, base.n_ctx)
        return self.model.engine(self.tokenizer, n_ctx=n_ctx)

    def _params(self, overrides: dict[str, Any]) -> GenParams:
        cfg = self._config
        if overrides:
            known = set(InferenceConfig.__dataclass_fields__)
            bad = set(overrides) - known - {"max_tokens"}
            if bad:
                raise ConfigurationError(f"unknown generation option(s): {', '.join(sorted(bad))}")
            if "max_tokens" in overrides:
                overrides["max_new_tokens"] = overrides.pop("max_tokens")
            cfg = InferenceConfig.from_dict(cfg.to_dict() | overrides)
        p = cfg.to_params()
        eng = self.engine
        p.vocab_limit = eng.vocab_limit()
        if cfg.eos_token_id is not None:
            p.stop_ids = eng.stop_ids() | {cfg.eos_token_id}
        return p

    def generate(self, prompt: Prompt, **overrides: Any) -> str:
        """The continuation of ``prompt`` (a str, a dialog, or token ids);
        ``overrides``: InferenceConfig fields for this call."""
        return self._generate(prompt, CancelToken(), overrides)

    def _generate(self, prompt: Prompt, cancel: CancelToken, overrides: dict[str, Any]) -> str:
        eng = self.engine
        params = self._params(overrides)
        ids = _encode_prompt(eng, prompt, chat=self.chat)
        with _Timeout(cancel, self._config.timeout_seconds):
            res = eng.generate([ids], params, cancel)[0]
        return eng.require_tokenizer().decode(res.tokens, skip_special=True)

    def generate_stream(self, prompt: Prompt, **overrides: Any) -> GenerationStream:
        """A :class:`GenerationStream` of the continuation."""
        return GenerationStream(self.engine, prompt, self._params(overrides), self._config.timeout_seconds,
                                self.chat)

    def generate_batch(self, prompts: Sequence[str], **overrides: Any) -> list[str]:
        """Continuations of several prompts, advanced together."""
        plist = _check_prompts(prompts)
        eng = self.engine
        params = self._params(overrides)
        out: list[str] = []
        bs = self._config.batch_size
        tok = eng.require_tokenizer()
        for i in range(0, len(plist), bs):
            ids = [_encode_prompt(eng, p, chat=self.chat) for p in plist[i:i + bs]]
            out.extend(tok.decode(r.tokens, skip_special=True) for r in eng.generate(ids, params))
        return out

    def count_tokens(self, text: str) -> int:
        return len(_encode_prompt(self.engine, text, chat=self.chat))

    def __repr__(self) -> str:
        return f"SimpleInference(model={self.model!r}, config={self._config!r})"


class AsyncInference(SimpleInference):
    """:class:`SimpleInference` for asyncio: ``await generate_async(prompt)``,
    ``async for piece in generate_stream(prompt)``. C work runs in worker
    threads; the event loop is never blocked."""

    async def generate_async(self, prompt: Prompt, **overrides: Any) -> str:
        """The continuation, computed in a worker thread; cancelling the
        awaiting task cancels the generation."""
        loop = asyncio.get_running_loop()
        cancel = CancelToken()
        try:
            return await loop.run_in_executor(None, lambda: self._generate(prompt, cancel, overrides))
        except asyncio.CancelledError:
            cancel.cancel()
            raise

    async def generate_batch_async(self, prompts: Sequence[str], **overrides: Any) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.generate_batch(prompts, **overrides))

    async def generate_stream_async(self, prompt: Prompt, **overrides: Any) -> AsyncIterator[str]:
        async for piece in self.generate_stream(prompt, **overrides):
            yield piece


StreamingInference = AsyncInference


class BatchProcessor:
    """Generate for many prompts, ``config.batch_size`` at a time, each
    batch advancing all its sequences in one pass through the engine."""

    def __init__(self, model: BitNetModel, tokenizer: Any = None, config: Optional[BatchConfig] = None) -> None:
        if not isinstance(model, BitNetModel):
            raise ConfigurationError(f"model must be a BitNetModel, not {type(model).__name__}")
        if config is not None and not isinstance(config, BatchConfig):
            raise ConfigurationError(f"config must be a BatchConfig, not {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config if config is not None else BatchConfig()
        self.last_stats: Optional[Stats] = None

    def process_batch(self, prompts: Sequence[str]) -> list[str]:
        """One continuation per prompt, in order."""
        plist = _check_prompts(prompts)
        eng = self.model.engine(self.tokenizer)
        params = self.config.to_params()
        params.vocab_limit = eng.vocab_limit()
        tok = eng.require_tokenizer()
        out: list[str] = []
        stats = Stats()
        bs = self.config.batch_size
        for i in range(0, len(plist), bs):
            chat = self.tokenizer if isinstance(self.tokenizer, ChatFormat) else None
            ids = [_encode_prompt(eng, p, chat=chat) for p in plist[i:i + bs]]
            timing = Timing()
            res = eng.generate(ids, params, timing=timing)
            stats.phases.append(PhaseStats("prefill", timing.prompt_tokens, timing.prefill_time))
            stats.phases.append(PhaseStats("decode", timing.new_tokens, timing.decode_time))
            out.extend(tok.decode(r.tokens, skip_special=True) for r in res)
        self.last_stats = stats
        return out

    async def process_batch_async(self, prompts: Sequence[str]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.process_batch(prompts))


def batch_generate(engine: Any, prompts: Sequence[str], tokenizer: Any = None, **kw: Any) -> list[str]:
    """Continuations of ``prompts`` in batches. ``engine``: a
    SimpleInference/AsyncInference, an InferenceEngine, or a BitNetModel
    (with ``tokenizer``; keywords go to :class:`BatchConfig`)."""
    if isinstance(engine, SimpleInference):
        return engine.generate_batch(prompts, **kw)
    if isinstance(engine, InferenceEngine):
        plist = _check_prompts(prompts)
        tok = engine.engine.require_tokenizer()
        ids = [_encode_prompt(engine.engine, p) for p in plist]
        res = engine.engine.generate(ids, engine._params(kw.get("use_sampling")))
        return [tok.decode(r.tokens, skip_special=True) for r in res]
    if isinstance(engine, BitNetModel):
        return BatchProcessor(engine, tokenizer, BatchConfig(**kw)).process_batch(prompts)
    raise ConfigurationError(f"batch_generate() needs an inference engine or a model, not {type(engine).__name__}")


def quick_inference(model_path: PathLike, prompt: str, tokenizer_path: Optional[PathLike] = None,
                    max_new_tokens: int = 128, temperature: float = 0.8, top_p: float = 0.9,
                    do_sample: bool = True, **kw: Any) -> str:
    """Load, generate once, return the continuation."""
    model = load_model(model_path)
    try:
        tok = create_tokenizer(tokenizer_path) if tokenizer_path is not None else None
        cfg = InferenceConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              do_sample=do_sample, **kw)
        return SimpleInference(model, tok, cfg).generate(prompt)
    finally:
        model.close()


async def load_model_async(model_path: Optional[PathLike] = None, model_format: Optional[str] = None,
                           device: Optional[str] = None, **kw: Any) -> BitNetModel:
    """:func:`load_model` in a worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: load_model(model_path, model_format, device, **kw))


async def create_tokenizer_async(path: PathLike, chat_format: bool = False) -> Union[Tokenizer, ChatFormat]:
    """:func:`create_tokenizer` in a worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: create_tokenizer(path, chat_format))


__all__ = ["GenerationStream", "InferenceEngine", "FastGen", "SimpleInference", "AsyncInference",
           "StreamingInference", "BatchProcessor", "batch_generate", "quick_inference",
           "load_model_async", "create_tokenizer_async"]

_ = _core  # the extension module, for type checkers
