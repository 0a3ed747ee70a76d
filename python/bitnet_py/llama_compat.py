"""A llama-cpp-python compatible ``Llama`` class over bitnet_py.

Code written for ``llama_cpp.Llama`` switches by changing its import::

    from bitnet_py.llama_compat import Llama
    llm = Llama(model_path="model.gguf", n_ctx=2048)
    out = llm("Q: Name the planets. A:", max_tokens=32, stop=["Q:"])
    print(out["choices"][0]["text"])

Supported: ``__call__``/``create_completion`` (and streaming),
``create_chat_completion`` (and streaming), ``tokenize``, ``detokenize``,
``eval``/``sample``/``generate``/``reset``, ``n_ctx()``, ``n_vocab()``,
``n_embd()``, ``token_bos()``, ``token_eos()``, ``LlamaCache`` (accepted;
the engine manages its own KV cache).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from . import _core
from ._core import ConfigurationError, InferenceError
from ._engine import CancelToken, Engine, GenParams, check_int
from .model import BitNetModel, load_model
from .tokenizer import as_core_tokenizer

logger = logging.getLogger(__name__)


class LlamaCache:
    """Accepted for compatibility (``Llama.set_cache``); bitnet_py keeps the
    KV cache inside its contexts."""

    def __init__(self, capacity_bytes: int = 2 << 30) -> None:
        self.capacity_bytes = int(capacity_bytes)

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity_bytes": self.capacity_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.capacity_bytes = int(state["capacity_bytes"])


LlamaRAMCache = LlamaCache


def llama_backend_init(numa: bool = False) -> None:
    """No-op (nothing to initialise)."""


def llama_backend_free() -> None:
    """No-op."""


def _stops(stop: Union[None, str, Sequence[str]]) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if s]


class Llama:
    """``Llama(model_path, n_ctx=512, ...)``: a loaded model with the
    llama-cpp-python methods. ``tokenizer_path`` (ours) gives a separate
    tokenizer when the GGUF carries none or another one."""

    def __init__(self, model_path: str, *, n_ctx: int = 512, n_batch: int = 512, n_threads: Optional[int] = None,
                 seed: int = -1, verbose: bool = True, chat_format: Optional[str] = None,
                 tokenizer_path: Optional[str] = None, use_mmap: bool = True, logits_all: bool = False,
                 embedding: bool = False, n_gpu_layers: int = 0, **kwargs: Any) -> None:
        n_ctx = check_int("n_ctx", n_ctx, 0)
        n_batch = check_int("n_batch", n_batch, 1)
        if n_threads is not None:
            check_int("n_threads", n_threads, 0)
        if kwargs:
            logger.debug("Llama: ignoring llama.cpp-specific options %s", sorted(kwargs))
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        self.chat_format = chat_format
        self._seed = seed
        self._model: BitNetModel = load_model(self.model_path, use_mmap=use_mmap, tokenizer_path=tokenizer_path)
        tok = as_core_tokenizer(tokenizer_path) if tokenizer_path is not None else None
        self._engine: Engine = self._model.engine(tok, n_ctx=n_ctx)
        self._n_threads = n_threads or 0
        self._n_batch = n_batch
        self._ctx: Optional[_core.Context] = None
        self.input_ids: list[int] = []
        self.scores: Optional[np.ndarray] = None
        self._last_logits: Optional[np.ndarray] = None
        self.cache: Optional[LlamaCache] = None
        cfg = self._model.core.config
        self.metadata: dict[str, str] = {f"{cfg['arch']}.{k}": str(v) for k, v in cfg.items()}

    # -- sizes and tokens -----------------------------------------------------

    def n_ctx(self) -> int:
        """Context length (positions per sequence)."""
        return self._engine.n_ctx

    def n_vocab(self) -> int:
        return self._engine.n_vocab

    def n_embd(self) -> int:
        return int(self._model.core.config["n_embd"])

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def token_bos(self) -> int:
        t = self._engine.require_tokenizer().bos_id
        return -1 if t is None else t

    def token_eos(self) -> int:
        t = self._engine.require_tokenizer().eos_id
        return -1 if t is None else t

    def token_eot(self) -> int:
        t = self._engine.require_tokenizer().eot_id
        return -1 if t is None else t

    def tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (bytes as llama-cpp-python, or str)."""
        s = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
        tok = self._engine.require_tokenizer()
        return tok.encode(s, bos=bool(add_bos) and tok.bos_id is not None,
                          allowed_special="all" if special else (), disallowed_special=())

    def detokenize(self, tokens: Sequence[int], prev_tokens: Optional[Sequence[int]] = None,
                   special: bool = False) -> bytes:
        """UTF-8 bytes of ``tokens`` (may end inside a character)."""
        return self._engine.require_tokenizer().decode_bytes(list(tokens), skip_special=not special)

    def set_cache(self, cache: Optional[LlamaCache]) -> None:
        self.cache = cache

    def set_seed(self, seed: int) -> None:
        self._seed = int(seed)

    # -- low level: eval / sample / generate -----------------------------------

    def _context(self) -> _core.Context:
        if self._ctx is None:
            self._ctx = _core.Context(self._model.core, n_ctx=self._engine.n_ctx, n_seq=1,
                                      n_batch=self._n_batch, n_threads=self._n_threads)
        return self._ctx

    def reset(self) -> None:
        """Forget the evaluated tokens."""
        if self._ctx is not None:
            self._ctx.kv_truncate(0, 0)
        self.input_ids = []
        self._last_logits = None

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after those already evaluated."""
        ids = [int(t) for t in tokens]
        if not ids:
            return
        if len(self.input_ids) + len(ids) > self.n_ctx():
            raise ConfigurationError(f"eval: {len(self.input_ids) + len(ids)} tokens exceed n_ctx={self.n_ctx()}")
        logits = self._context().eval(ids, seq_id=0, logits="all")
        self.input_ids.extend(ids)
        self._last_logits = logits[-1]
        self.scores = logits

    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, mirostat_mode: int = 0, mirostat_eta: float = 0.1,
               mirostat_tau: float = 5.0, **_: Any) -> int:
        """Sample the next token from the last evaluated logits."""
        if self._last_logits is None:
            raise InferenceError("sample() before eval(): evaluate a prompt first")
        p = self._params(0, temp, top_p, top_k, min_p, typical_p, repeat_penalty, frequency_penalty,
                         presence_penalty, mirostat_mode, mirostat_tau, mirostat_eta, None)
        lim = self._engine.vocab_limit()
        s = p.make_sampler(lim or self.n_vocab())
        for t in self.input_ids:
            s.accept(t)
        row = self._last_logits
        return int(s.sample(row[:lim] if lim else row))

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 **kw: Any) -> Iterator[int]:
        """Evaluate ``tokens``, then yield sampled tokens forever (the
        caller stops, as with llama-cpp-python)."""
        if reset:
            self.reset()
        self.eval(tokens)
        while True:
            t = self.sample(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                            repeat_penalty=repeat_penalty, **kw)
            yield t
            self.eval([t])

    # -- completions ----------------------------------------------------------

    def _params(self, max_tokens: Optional[int], temperature: float, top_p: float, top_k: int, min_p: float,
                typical_p: float, repeat_penalty: float, frequency_penalty: float, presence_penalty: float,
                mirostat_mode: int, mirostat_tau: float, mirostat_eta: float, seed: Optional[int]) -> GenParams:
        seed = self._seed if seed is None else seed
        if max_tokens is None or max_tokens <= 0:
            max_tokens = self.n_ctx()
        p = GenParams(max_new_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                      top_k=int(top_k), min_p=float(min_p), typical_p=float(typical_p),
                      repetition_penalty=float(repeat_penalty), mirostat=int(mirostat_mode),
                      mirostat_tau=float(mirostat_tau), mirostat_eta=float(mirostat_eta),
                      seed=None if seed is None or seed < 0 else int(seed))
        p.vocab_limit = self._engine.vocab_limit()
        if frequency_penalty or presence_penalty:
            logger.debug("frequency/presence penalties are applied by the low-level sampler only")
        return p.validate()

    def _run(self, ids: list[int], params: GenParams, stop: list[str]) -> Iterator[tuple[str, Optional[str], int]]:
        """Yield (text piece, finish_reason or None, n_tokens so far)."""
        tok = self._engine.require_tokenizer()
        dec = tok.stream_decoder(skip_special=True)
        hold = max((len(s) for s in stop), default=0)
        buf = ""
        n = 0
        reason = "length"
        cancel = CancelToken()
        steps = self._engine.steps([ids], params, cancel)
        try:
            for st in steps:
                if st.token is None:
                    reason = "stop" if st.reason == "stop" else "length"
                    break
                n += 1
                buf += dec.push(st.token)
                if stop:
                    cut = min((i for i in (buf.find(s) for s in stop) if i >= 0), default=-1)
                    if cut >= 0:
                        yield buf[:cut], "stop", n
                        return
                safe = len(buf) - (hold - 1) if hold else len(buf)
                if safe > 0:
                    yield buf[:safe], None, n
                    buf = buf[safe:]
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
        buf += dec.flush()
        if stop:
            cut = min((i for i in (buf.find(s) for s in stop) if i >= 0), default=-1)
            if cut >= 0:
                yield buf[:cut], "stop", n
                return
        yield buf, reason, n

    def create_completion(self, prompt: Union[str, Sequence[int]], suffix: Optional[str] = None,
                          max_tokens: Optional[int] = 16, temperature: float = 0.8, top_p: float = 0.95,
                          min_p: float = 0.05, typical_p: float = 1.0, logprobs: Optional[int] = None,
                          echo: bool = False, stop: Union[None, str, Sequence[str]] = None,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                          repeat_penalty: float = 1.0, top_k: int = 40, stream: bool = False,
                          seed: Optional[int] = None, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
                          mirostat_eta: float = 0.1, model: Optional[str] = None, **kw: Any) -> Any:
        """An OpenAI-style ``text_completion`` dict (``stream=True``: an
        iterator of chunks)."""
        if logprobs is not None:
            raise ConfigurationError("logprobs are not supported by bitnet_py's Llama")
        ids = list(prompt) if not isinstance(prompt, str) else self.tokenize(prompt.encode("utf-8"))
        ids = self._engine.check_prompt(ids)
        params = self._params(max_tokens, temperature, top_p, top_k, min_p, typical_p, repeat_penalty,
                              frequency_penalty, presence_penalty, mirostat_mode, mirostat_tau, mirostat_eta, seed)
        stops = _stops(stop)
        cid = f"cmpl-{uuid.uuid4()}"
        created = int(time.time())
        name = model or self.model_path
        prefix = prompt if (echo and isinstance(prompt, str)) else ""
        if stream:
            return self._stream_completion(ids, params, stops, cid, created, name, prefix)
        text, reason, n = prefix, "length", 0
        for piece, r, n in self._run(ids, params, stops):
            text += piece
            if r is not None:
                reason = r
        if suffix:
            text += suffix
        return {"id": cid, "object": "text_completion", "created": created, "model": name,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}}

    def _stream_completion(self, ids: list[int], params: GenParams, stops: list[str], cid: str, created: int,
                           name: str, prefix: str) -> Iterator[dict[str, Any]]:
        def chunk(text: str, reason: Optional[str]) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": name,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]}

        if prefix:
            yield chunk(prefix, None)
        for piece, reason, _ in self._run(ids, params, stops):
            if piece or reason is not None:
                yield chunk(piece, reason)

    __call__ = create_completion

    def create_chat_completion(self, messages: Sequence[Any], temperature: float = 0.2, top_p: float = 0.95,
                               top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0,
                               stream: bool = False, stop: Union[None, str, Sequence[str]] = None,
                               seed: Optional[int] = None, max_tokens: Optional[int] = None,
                               presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                               repeat_penalty: float = 1.0, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
                               mirostat_eta: float = 0.1, model: Optional[str] = None, **kw: Any) -> Any:
        """An OpenAI-style ``chat.completion`` dict (``stream=True``: an
        iterator of ``chat.completion.chunk`` dicts)."""
        msgs = [{"role": m["role"], "content": m["content"]} if isinstance(m, dict)
                else {"role": m.role, "content": m.content} for m in messages]
        if not msgs:
            raise ConfigurationError("messages is empty")
        ids = self._engine.check_prompt(self._engine.require_tokenizer().encode_chat(msgs, True))
        params = self._params(max_tokens, temperature, top_p, top_k, min_p, typical_p, repeat_penalty,
                              frequency_penalty, presence_penalty, mirostat_mode, mirostat_tau, mirostat_eta, seed)
        stops = _stops(stop)
        cid = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        name = model or self.model_path
        if stream:
            return self._stream_chat(ids, params, stops, cid, created, name)
        text, reason, n = "", "length", 0
        for piece, r, n in self._run(ids, params, stops):
            text += piece
            if r is not None:
                reason = r
        return {"id": cid, "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": reason}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}}

    def _stream_chat(self, ids: list[int], params: GenParams, stops: list[str], cid: str, created: int,
                     name: str) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, str], reason: Optional[str]) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

        yield chunk({"role": "assistant"}, None)
        for piece, reason, _ in self._run(ids, params, stops):
            if piece:
                yield chunk({"content": piece}, None)
            if reason is not None:
                yield chunk({}, reason)

    def create_embedding(self, input: Any, model: Optional[str] = None) -> Any:
        raise InferenceError("embeddings are not supported by bitnet_py (generation models only)")

    embed = create_embedding

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self._model.close()

    def __enter__(self) -> "Llama":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Llama(model_path={self.model_path!r}, n_ctx={self.n_ctx()})"


__all__ = ["Llama", "LlamaCache", "LlamaRAMCache", "llama_backend_init", "llama_backend_free"]
