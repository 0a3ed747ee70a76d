"""The generation core every Python-level API is built on.

:class:`Engine` owns one loaded :class:`bitnet_py._core.Model` (immutable,
shared by any number of threads) and a tokenizer, and hands out
:class:`bitnet_py._core.Context` objects from a small pool, one per running
generation, so that several threads can generate at once.

:func:`Engine.steps` is the single decode loop: it prefills every prompt
(one batched ``eval`` per prompt, into its own KV sequence slot), then
advances all unfinished sequences together with ONE ``Context.decode`` call
per step, samples each row with its own :class:`bitnet_py._core.Sampler`,
and stops a sequence at a stop token (the tokenizer's eos/eot: the
original's stop tokens), at ``max_new_tokens`` or at the end of the context.
A :class:`CancelToken` stops it within one token: ``cancel()`` also
interrupts an evaluation that is running in another thread.

Everything else (``FastGen.generate_all``, ``SimpleInference``, streams,
async, batch, the llama-cpp-python shim, the CLI) is a thin layer on this.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Union

import numpy as np

from . import _core
from ._core import CancelledError, ConfigurationError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Contexts kept per engine for reuse.
_POOL_MAX = 4


class _Settings:
    """Process-wide tunables (set through :func:`bitnet_py.set_num_threads`)."""

    n_threads: int = 0  # 0: all cores
    memory_monitoring: bool = False
    peak_rss: int = 0


settings = _Settings()


def check_int(name: str, value: Any, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    """Validate an integer parameter; raise ConfigurationError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigurationError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    v = int(value)
    if lo is not None and v < lo:
        raise ConfigurationError(f"{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigurationError(f"{name} must be <= {hi}, got {v}")
    return v


def check_float(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None,
                lo_open: bool = False) -> float:
    """Validate a finite float parameter; raise ConfigurationError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name} must be a number, not {type(value).__name__} ({value!r})")
    v = float(value)
    if not np.isfinite(v):
        raise ConfigurationError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        rel = ">" if lo_open else ">="
        raise ConfigurationError(f"{name} must be {rel} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigurationError(f"{name} must be <= {hi}, got {v}")
    return v


_DEVICES_CPU = ("cpu",)
_DEVICES_REDIRECTED = ("cuda", "metal", "mps", "auto")


def check_device(device: Optional[str]) -> str:
    """Normalise a device string. ``None``/"cpu" -> "cpu"; "cuda", "cuda:N",
    "metal" and "auto" are accepted (scripts written for the original pass
    "cuda:0") and run on the CPU with a logged notice; anything else raises
    ConfigurationError."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        dev = str(getattr(device, "type", device))  # torch.device
    else:
        dev = device
    d = dev.strip().lower()
    if d in _DEVICES_CPU:
        return "cpu"
    base, _, idx = d.partition(":")
    if base in _DEVICES_REDIRECTED and (not idx or idx.isdigit()):
        logger.info("device %r requested: bitnet_py runs on the CPU", dev)
        return "cpu"
    raise ConfigurationError(
        f"unknown device {dev!r}: use 'cpu' (also accepted and run on the CPU: "
        "'cuda', 'cuda:N', 'metal', 'auto')")


@dataclass
class GenParams:
    """Everything one generation needs to know (validated by :meth:`validate`).

    ``temperature`` 0 is greedy decoding; ``top_k`` <= 0, ``top_p`` 1,
    ``typical_p`` 1, ``min_p`` 0 and ``repetition_penalty`` 1 are off;
    ``mirostat`` 1 or 2 replaces the filters. ``stop_ids`` None means the
    tokenizer's stop tokens (eos and eot). ``vocab_limit`` restricts sampling
    to ids below it (tokens the tokenizer can decode)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    repetition_penalty: float = 1.0
    penalty_last_n: int = 64
    seed: Optional[int] = None
    stop_ids: Optional[frozenset[int]] = None
    vocab_limit: Optional[int] = None

    def validate(self) -> "GenParams":
        """Raise ConfigurationError naming the first invalid field."""
        check_int("max_new_tokens", self.max_new_tokens, 0)
        check_float("temperature", self.temperature, 0.0)
        check_int("top_k", self.top_k)
        check_float("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        check_float("min_p", self.min_p, 0.0, 1.0)
        check_float("typical_p", self.typical_p, 0.0, 1.0, lo_open=True)
        check_int("mirostat", self.mirostat, 0, 2)
        check_float("mirostat_tau", self.mirostat_tau, 0.0)
        check_float("mirostat_eta", self.mirostat_eta, 0.0)
        check_float("repetition_penalty", self.repetition_penalty, 0.0, lo_open=True)
        if self.seed is not None:
            check_int("seed", self.seed)
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 and self.mirostat == 0

    def make_sampler(self, n_vocab: int, index: int = 0) -> _core.Sampler:
        """A fresh sampler; sequence ``index`` of a batch gets seed + index."""
        seed = self.seed
        if seed is None:
            seed = random.SystemRandom().getrandbits(63)
        return _core.Sampler(
            n_vocab,
            temperature=float(self.temperature),
            top_k=int(self.top_k),
            top_p=float(self.top_p),
            min_p=float(self.min_p),
            typical_p=float(self.typical_p),
            mirostat=int(self.mirostat),
            mirostat_tau=float(self.mirostat_tau),
            mirostat_eta=float(self.mirostat_eta),
            repeat_penalty=float(self.repetition_penalty),
            penalty_last_n=int(self.penalty_last_n),
            seed=int(seed) + index,
        )


class CancelToken:
    """Thread-safe cancellation of one generation: :meth:`cancel` stops it
    before its next token and interrupts an evaluation already running."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._ctx: Optional[_core.Context] = None

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            if self._ctx is not None:
                self._ctx.cancel()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def _attach(self, ctx: Optional[_core.Context]) -> None:
        with self._lock:
            self._ctx = ctx
            if ctx is not None and self._event.is_set():
                ctx.cancel()


@dataclass
class Step:
    """One event of :meth:`Engine.steps`: sequence ``index`` produced ``token``
    (``None`` when the sequence finished with ``reason`` "stop" (a stop token,
    kept in ``stop_token``), "length" or "cancelled")."""

    index: int
    token: Optional[int]
    reason: Optional[str] = None
    stop_token: Optional[int] = None


@dataclass
class GenResult:
    """Final result of one sequence."""

    tokens: list[int] = field(default_factory=list)
    reason: str = "length"
    stop_token: Optional[int] = None
    prompt_tokens: int = 0
    prefill_time: float = 0.0
    decode_time: float = 0.0


#: What a KV cache stores (``_core.Context(kv_type=...)``).
KVType = Literal["f32", "f16"]


@dataclass
class Timing:
    prefill_time: float = 0.0
    decode_time: float = 0.0
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_time: Optional[float] = None


class Engine:
    """A loaded model and its tokenizer, ready to generate.

    ``n_ctx`` 0 picks the model's training context capped at 4096 positions
    per sequence. Thread-safe: each generation takes its own context."""

    def __init__(self, model: _core.Model, tokenizer: Optional[_core.Tokenizer] = None,
                 n_ctx: int = 0, n_batch: int = 0, kv_type: KVType = "f32") -> None:
        self.model = model
        if tokenizer is None and model.has_tokenizer:
            tokenizer = _core.Tokenizer.from_model(model)
        self.tokenizer = tokenizer
        n_ctx = check_int("n_ctx", n_ctx, 0)
        self.n_ctx = n_ctx or self.default_n_ctx(model)
        self.n_batch = check_int("n_batch", n_batch, 0) or 512
        self.kv_type = kv_type
        self.n_vocab = model.n_vocab
        self._lock = threading.Lock()
        self._pool: list[tuple[tuple[int, int], _core.Context]] = []
        #: Bytes of KV cache the pooled contexts may keep (None: no limit).
        self.pool_cap_bytes: Optional[int] = None
        self.last_kv_bytes = 0
        self.last_scratch_bytes = 0

    @staticmethod
    def default_n_ctx(model: _core.Model) -> int:
        """The model's training context, at most 4096 (2048 when unknown)."""
        train = int(model.config.get("n_ctx_train") or 0)
        return min(train, 4096) if train > 0 else 2048

    # -- tokens ---------------------------------------------------------------

    def require_tokenizer(self) -> _core.Tokenizer:
        if self.tokenizer is None:
            raise _core.TokenizerError(
                f"model {self.model.path!r} carries no tokenizer: pass tokenizer_path "
                "(e.g. the Llama-3 tokenizer.model)")
        return self.tokenizer

    def stop_ids(self) -> frozenset[int]:
        """The original's stop tokens: end of text and end of turn."""
        tok = self.tokenizer
        if tok is None:
            return frozenset()
        ids = {i for i in (tok.eos_id, tok.eot_id) if i is not None}
        for name in ("<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"):
            sid = tok.special_id(name)
            if sid is not None:
                ids.add(sid)
        return frozenset(ids)

    def vocab_limit(self) -> Optional[int]:
        """Ids a generation may produce when the model's embedding has more
        rows than the tokenizer has tokens (padding rows)."""
        if self.tokenizer is not None and self.tokenizer.n_vocab < self.n_vocab:
            return self.tokenizer.n_vocab
        return None

    # -- contexts -------------------------------------------------------------

    def context_size(self, need: int) -> int:
        """Positions per sequence for a generation needing ``need``: rounded
        up to a multiple of 256 (so contexts can be reused), at most n_ctx."""
        if need <= 0:
            return self.n_ctx
        return min(self.n_ctx, -(-need // 256) * 256)

    @contextlib.contextmanager
    def context(self, n_seq: int = 1, n_ctx: Optional[int] = None) -> Iterator[_core.Context]:
        """Borrow an empty context with ``n_seq`` sequence slots of ``n_ctx``
        positions each (default: the engine's n_ctx)."""
        size = self.n_ctx if n_ctx is None else min(int(n_ctx), self.n_ctx)
        key = (n_seq, size)
        ctx: Optional[_core.Context] = None
        with self._lock:
            for i, (k, c) in enumerate(self._pool):
                if k == key:
                    ctx = c
                    del self._pool[i]
                    break
        if ctx is None:
            ctx = _core.Context(self.model, n_ctx=size, n_seq=n_seq, n_batch=self.n_batch,
                                n_threads=settings.n_threads, kv_type=self.kv_type)
        else:
            ctx.set_threads(settings.n_threads)  # 0: all cores; no-op when unchanged
        self.last_kv_bytes = ctx.kv_bytes
        self.last_scratch_bytes = ctx.scratch_bytes
        ok = False
        try:
            yield ctx
            ok = True
        finally:
            reuse = ok and not ctx.cancelled
            if reuse:
                try:
                    for s in range(n_seq):
                        ctx.kv_truncate(s, 0)
                except _core.BitNetError:
                    reuse = False
            evicted: list[_core.Context] = []
            if reuse:
                with self._lock:
                    self._pool.append((key, ctx))
                    ctx = None
                    while len(self._pool) > _POOL_MAX or (
                            self.pool_cap_bytes is not None and len(self._pool) > 0
                            and sum(c.kv_bytes for _, c in self._pool) > self.pool_cap_bytes):
                        evicted.append(self._pool.pop(0)[1])  # oldest first
            if ctx is not None:
                ctx.close()
            for c in evicted:
                c.close()

    def clear_pool(self) -> None:
        """Free the pooled contexts (their KV caches)."""
        with self._lock:
            pool, self._pool = self._pool, []
        for _, c in pool:
            c.close()

    def pooled_kv_bytes(self) -> int:
        with self._lock:
            return sum(c.kv_bytes for _, c in self._pool)

    def pooled_scratch_bytes(self) -> int:
        with self._lock:
            return sum(c.scratch_bytes for _, c in self._pool)

    # -- validation -----------------------------------------------------------

    def check_prompt(self, ids: Sequence[int], what: str = "prompt") -> list[int]:
        out = [int(i) for i in ids]
        if not out:
            raise ConfigurationError(f"{what} is empty: give at least one token")
        if len(out) >= self.n_ctx:
            raise ConfigurationError(
                f"{what} has {len(out)} tokens, the context holds {self.n_ctx}: shorten it "
                "or load with a larger n_ctx")
        bad = [i for i in out if i < 0 or i >= self.n_vocab]
        if bad:
            raise ConfigurationError(
                f"{what} holds token id {bad[0]} outside the model's vocabulary [0, {self.n_vocab})")
        return out

    # -- the decode loop ------------------------------------------------------

    def steps(self, prompts: Sequence[Sequence[int]], params: GenParams,
              cancel: Optional[CancelToken] = None, timing: Optional[Timing] = None) -> Iterator[Step]:
        """Generate for all ``prompts`` at once; yield a :class:`Step` per new
        token and one final Step (token None) per sequence.

        Each prompt gets its own KV slot of one context; after the prefill,
        every step advances all unfinished sequences in one decode call."""
        params.validate()
        if not prompts:
            raise ConfigurationError("no prompts: the batch is empty")
        plist = [self.check_prompt(p, f"prompt {i}" if len(prompts) > 1 else "prompt")
                 for i, p in enumerate(prompts)]
        n = len(plist)
        stop = params.stop_ids if params.stop_ids is not None else self.stop_ids()
        limit = params.vocab_limit
        timing = timing if timing is not None else Timing()
        cancel = cancel if cancel is not None else CancelToken()
        n_sample = limit if limit is not None and limit < self.n_vocab else self.n_vocab
        samplers = [params.make_sampler(n_sample, i) for i in range(n)]
        for s, p in zip(samplers, plist):
            for t in p:
                s.accept(t)
        produced = [0] * n
        pos = [len(p) for p in plist]
        done = [False] * n

        def pick(i: int, row: np.ndarray) -> int:
            if limit is not None and limit < row.shape[0]:
                row = row[:limit]
            tok = samplers[i].sample(row)
            samplers[i].accept(tok)
            return tok

        need = max(len(p) for p in plist) + params.max_new_tokens + 1
        with self.context(n, self.context_size(need)) as ctx:
            n_ctx = ctx.n_ctx
            cancel._attach(ctx)
            t0 = t1 = time.perf_counter()
            try:
                last: list[int] = [0] * n
                timing.prompt_tokens = sum(len(p) for p in plist)
                rows = self._prefill(ctx, plist, cancel)
                if params.max_new_tokens > 0 and not cancel.cancelled:
                    for i in range(n):
                        last[i] = pick(i, rows[i])
                timing.prefill_time = time.perf_counter() - t0
                if cancel.cancelled:
                    raise CancelledError("cancelled")
                t1 = time.perf_counter()
                if params.max_new_tokens == 0:
                    for i in range(n):
                        yield Step(i, None, "length")
                    return
                timing.first_token_time = t1 - t0
                while True:
                    active: list[int] = []
                    for i in range(n):
                        if done[i]:
                            continue
                        tok = last[i]
                        if tok in stop:
                            done[i] = True
                            yield Step(i, None, "stop", tok)
                            continue
                        produced[i] += 1
                        timing.new_tokens += 1
                        yield Step(i, tok)
                        if produced[i] >= params.max_new_tokens or pos[i] + 1 >= n_ctx:
                            done[i] = True
                            yield Step(i, None, "length")
                            continue
                        active.append(i)
                    if not active:
                        break
                    if cancel.cancelled:
                        raise CancelledError("cancelled")
                    step_rows = ctx.decode([last[i] for i in active], pos=[pos[i] for i in active],
                                           seq_ids=active, want_logits=True)
                    timing.decode_time = time.perf_counter() - t1
                    for r, i in enumerate(active):
                        pos[i] += 1
                        last[i] = pick(i, step_rows[r])
            except CancelledError:
                logger.debug("generation cancelled")
                for i in range(n):
                    if not done[i]:
                        done[i] = True
                        yield Step(i, None, "cancelled")
            finally:
                cancel._attach(None)
                if timing.first_token_time is not None:
                    timing.decode_time = time.perf_counter() - t1
                if settings.memory_monitoring:
                    from ._memory import record_peak

                    record_peak()

    @staticmethod
    def _prefill(ctx: _core.Context, plist: list[list[int]], cancel: CancelToken) -> list[np.ndarray]:
        """Evaluate every prompt into its own sequence slot, packing the
        prompts' tokens into batches of up to n_batch tokens (several
        sequences per decode call); the logits after each prompt's last token."""
        nb = ctx.n_batch
        out: list[Optional[np.ndarray]] = [None] * len(plist)
        toks: list[int] = []
        pos: list[int] = []
        seqs: list[int] = []
        want: list[bool] = []

        def flush() -> None:
            if not toks or cancel.cancelled:
                return
            rows = ctx.decode(toks, pos=pos, seq_ids=seqs, want_logits=want)
            r = 0
            for w, sq in zip(want, seqs):
                if w:
                    out[sq] = rows[r]
                    r += 1
            toks.clear()
            pos.clear()
            seqs.clear()
            want.clear()

        for i, p in enumerate(plist):
            last = len(p) - 1
            for j, t in enumerate(p):
                toks.append(t)
                pos.append(j)
                seqs.append(i)
                want.append(j == last)
                if len(toks) == nb:
                    flush()
        flush()
        if cancel.cancelled:
            raise CancelledError("cancelled")
        return [o for o in out if o is not None]

    def generate(self, prompts: Sequence[Sequence[int]], params: GenParams,
                 cancel: Optional[CancelToken] = None, timing: Optional[Timing] = None,
                 on_token: Optional[Callable[[int, int], None]] = None) -> list[GenResult]:
        """Run :meth:`steps` to the end; one :class:`GenResult` per prompt."""
        timing = timing if timing is not None else Timing()
        res = [GenResult(prompt_tokens=len(p)) for p in prompts]
        for st in self.steps(prompts, params, cancel, timing):
            if st.token is not None:
                res[st.index].tokens.append(st.token)
                if on_token is not None:
                    on_token(st.index, st.token)
            else:
                res[st.index].reason = st.reason or "length"
                res[st.index].stop_token = st.stop_token
        for r in res:
            r.prefill_time = timing.prefill_time
            r.decode_time = timing.decode_time
        return res

    def stream_text(self, prompt: Sequence[int], params: GenParams,
                    cancel: Optional[CancelToken] = None, timing: Optional[Timing] = None,
                    result: Optional[GenResult] = None) -> Iterator[str]:
        """Text pieces of one generation, token by token; a piece is never a
        broken UTF-8 sequence (bytes wait for the rest of their character)."""
        tok = self.require_tokenizer()
        dec = tok.stream_decoder(skip_special=True)
        for st in self.steps([prompt], params, cancel, timing):
            if st.token is None:
                if result is not None:
                    result.reason = st.reason or "length"
                    result.stop_token = st.stop_token
                break
            if result is not None:
                result.tokens.append(st.token)
            piece = dec.push(st.token)
            if piece:
                yield piece
        tail = dec.flush()
        if tail:
            yield tail

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """float32 [len(tokens), n_vocab]: the logits after every token of a
        fresh sequence."""
        ids = self.check_prompt(tokens, "tokens")
        with self.context(1, self.context_size(len(ids))) as ctx:
            return ctx.eval(ids, seq_id=0, logits="all")
