"""An OpenAI-compatible HTTP server for bitnet_py (FastAPI + uvicorn).

    python -m bitnet_py.server --model model.gguf [--host 127.0.0.1] [--port 8000]
        [--max-concurrent 4] [--queue-size 16] [--api-key KEY] [--model-name NAME]

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with
``"stream": true`` as server-sent events), ``GET /v1/models``, ``GET /health``,
``GET /metrics`` (Prometheus text format).

* Invalid requests get 400 with ``{"error": {"message", "type", "param",
  "code"}}`` (OpenAI's shape); an unknown model 404; a missing or wrong API
  key 401 (when ``--api-key`` is set; ``/health`` and ``/metrics`` stay open).
* At most ``max_concurrent`` generations run at once and ``queue_size`` more
  wait; beyond that a request gets 429 (with ``Retry-After``). While the
  server is starting or shutting down requests get 503.
* Shutdown drains: on the first SIGTERM/SIGINT ``python -m
  bitnet_py.server`` stops admitting (new generation requests get 503
  ``shutting_down``, ``/health`` 503), lets the admitted requests finish (at
  most ``--drain-timeout`` seconds), then exits; a second signal exits now.
* A client that disconnects cancels its generation (streaming or not),
  also while it is still queued or before its stream started.
* ``n`` (1 to 8) independent choices; ``logprobs`` (0 to 5) on
  ``/v1/completions`` in OpenAI's legacy format (not with ``stream``).
* Each request has its own generation state; outputs never mix.

``create_app(...)`` builds the application for embedding or tests.
"""



import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Sequence

logger = logging.getLogger(__name__)

__all__ = ["ServerSettings", "create_app", "Metrics", "APIError", "MAX_N", "MAX_LOGPROBS"]

#: Largest ``n`` (choices per request) and ``logprobs`` (alternatives per token).
MAX_N = 8
MAX_LOGPROBS = 5


@dataclass
class ServerSettings:
    """What the server serves and its limits."""

    model: str
    model_name: Optional[str] = None
    tokenizer: Optional[str] = None
    max_concurrent: int = 4
    queue_size: int = 16
    api_key: Optional[str] = None
    max_tokens_limit: int = 2048
    default_max_tokens: int = 16

    def served_name(self) -> str:
        if self.model_name:
            return self.model_name
        import os

        return os.path.basename(os.path.normpath(self.model))


class Metrics:
    """Counters and a latency histogram, exported in Prometheus text format
    (thread-safe)."""

    BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cancelled = 0
        self.running = 0
        self.waiting = 0
        self.latency_counts = [0] * len(self.BUCKETS)
        self.latency_sum = 0.0
        self.latency_n = 0

    def observe(self, endpoint: str, status: int, seconds: Optional[float] = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            if seconds is not None:
                self.latency_sum += seconds
                self.latency_n += 1
                for i, b in enumerate(self.BUCKETS):
                    if seconds <= b:
                        self.latency_counts[i] += 1

    def add_tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def render(self) -> str:
        with self._lock:
            out = ["# HELP bitnet_requests_total HTTP requests by endpoint and status.",
                   "# TYPE bitnet_requests_total counter"]
            for (ep, st), n in sorted(self.requests.items()):
                out.append(f'bitnet_requests_total{{endpoint="{ep}",status="{st}"}} {n}')
            out += ["# HELP bitnet_prompt_tokens_total Prompt tokens processed.",
                    "# TYPE bitnet_prompt_tokens_total counter", f"bitnet_prompt_tokens_total {self.prompt_tokens}",
                    "# HELP bitnet_completion_tokens_total Tokens generated.",
                    "# TYPE bitnet_completion_tokens_total counter",
                    f"bitnet_completion_tokens_total {self.completion_tokens}",
                    "# HELP bitnet_cancelled_total Generations cancelled (client gone).",
                    "# TYPE bitnet_cancelled_total counter", f"bitnet_cancelled_total {self.cancelled}",
                    "# HELP bitnet_requests_running Generations running now.",
                    "# TYPE bitnet_requests_running gauge", f"bitnet_requests_running {self.running}",
                    "# HELP bitnet_requests_waiting Requests waiting for a slot.",
                    "# TYPE bitnet_requests_waiting gauge", f"bitnet_requests_waiting {self.waiting}",
                    "# HELP bitnet_request_duration_seconds Generation request latency.",
                    "# TYPE bitnet_request_duration_seconds histogram"]
            for b, n in zip(self.BUCKETS, self.latency_counts):
                out.append(f'bitnet_request_duration_seconds_bucket{{le="{b}"}} {n}')
            out.append(f'bitnet_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_n}')
            out.append(f"bitnet_request_duration_seconds_sum {self.latency_sum}")
            out.append(f"bitnet_request_duration_seconds_count {self.latency_n}")
        return "\n".join(out) + "\n"


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class _Gen:
    """One generation's parameters, checked."""

    prompt: Any
    max_tokens: int
    temperature: float
    top_p: float
    top_k: Optional[int]
    seed: Optional[int]
    stop: list[str] = field(default_factory=list)
    n: int = 1
    logprobs: Optional[int] = None

    def overrides(self, index: int = 0) -> dict[str, Any]:
        """Generation options of choice ``index`` (a given seed becomes
        seed + index, so the n choices are independent but reproducible)."""
        seed = None if self.seed is None else (self.seed + index) % 2**63
        o: dict[str, Any] = {"max_new_tokens": self.max_tokens, "do_sample": self.temperature > 0,
                             "top_p": self.top_p, "seed": seed}
        if self.temperature > 0:
            o["temperature"] = self.temperature
        if self.top_k is not None:
            o["top_k"] = self.top_k
        return o


def _num(body: dict[str, Any], key: str, default: Any, lo: float, hi: float, integer: bool = False) -> Any:
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise APIError(400, f"'{key}' must be {'an integer' if integer else 'a number'}", param=key,
                       code="invalid_type")
    if not (lo <= v <= hi):
        raise APIError(400, f"'{key}' must be between {lo} and {hi}, got {v}", param=key, code="out_of_range")
    return v


def _parse_common(body: dict[str, Any], s: ServerSettings, prompt: Any, kind: str) -> _Gen:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be a boolean", param="stream")
    n = _num(body, "n", 1, 1, MAX_N, integer=True)
    if n > 1 and stream:
        raise APIError(400, "n > 1 is not supported with stream: send n streaming requests or set "
                       "stream to false", param="n", code="unsupported")
    logprobs: Optional[int] = None
    if kind == "chat":
        if body.get("logprobs") not in (None, False) or body.get("top_logprobs") is not None:
            raise APIError(400, "logprobs are supported on /v1/completions only", param="logprobs",
                           code="unsupported")
    else:
        logprobs = _num(body, "logprobs", None, 0, MAX_LOGPROBS, integer=True)
        if logprobs is not None and stream:
            raise APIError(400, "logprobs is not supported with stream", param="logprobs", code="unsupported")
        if body.get("echo") not in (None, False):
            raise APIError(400, "echo is not supported", param="echo", code="unsupported")
    best_of = body.get("best_of")
    if best_of is not None and best_of != n:
        raise APIError(400, "best_of is not supported (leave it out or equal to n)", param="best_of",
                       code="unsupported")
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(x, str) for x in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of up to 4 strings", param="stop")
    stops = [x for x in stops if x]
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return _Gen(prompt=prompt,
                max_tokens=_num(body, key, s.default_max_tokens, 1, s.max_tokens_limit, integer=True),
                temperature=float(_num(body, "temperature", 1.0, 0.0, 2.0)),
                top_p=float(_num(body, "top_p", 1.0, 0.0, 1.0)) or 1.0,
                top_k=_num(body, "top_k", None, 1, 1_000_000, integer=True),
                seed=_num(body, "seed", None, 0, 2**63 - 1, integer=True), stop=stops, n=n,
                logprobs=logprobs)


async def _never() -> bool:
    return False


def _completion_logprobs(engine: Any, prompt_ids: Sequence[int], tokens: Sequence[int], text: str, k: int,
                         base: int) -> dict[str, Any]:
    """OpenAI's legacy ``logprobs`` object for a completion: ``tokens`` (each
    token's text as it appears in ``text``), ``token_logprobs``,
    ``top_logprobs`` (the ``k`` likeliest tokens plus the chosen one) and
    ``text_offset`` (``base`` + the token's offset in ``text``).

    Log-probabilities are the model's own: log-softmax of the logits over the
    tokens the tokenizer can decode, before temperature, top-k/top-p or
    penalties. ``engine`` is the :class:`bitnet_py._engine.Engine`; the prompt
    and the chosen tokens are evaluated again in chunks (memory stays
    ``chunk x n_vocab``)."""
    import numpy as np

    tok = engine.require_tokenizer()
    dec = tok.stream_decoder(skip_special=True)
    pieces = [dec.push(int(t)) for t in tokens]
    tail = dec.flush()
    if tail and pieces:
        pieces[-1] += tail
    keep = len(pieces)
    if "".join(pieces) != text:  # cut by a stop string: the tokens that produced the text
        keep, at = 0, 0
        while keep < len(pieces) and at < len(text):
            at += len(pieces[keep])
            keep += 1
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    if keep == 0:
        return out
    chosen = [int(t) for t in tokens[:keep]]
    ids = engine.check_prompt(list(prompt_ids) + chosen[:-1])
    n_p = len(prompt_ids)
    limit = engine.vocab_limit() or engine.n_vocab
    chunk = 64
    rows_lp: list[Any] = []
    with engine.context(1, engine.context_size(len(ids))) as ctx:
        if n_p > 1:
            ctx.eval(ids[:n_p - 1], seq_id=0, logits="last")
        for s in range(n_p - 1, len(ids), chunk):
            logits = np.asarray(ctx.eval(ids[s:s + chunk], seq_id=0, logits="all"), dtype=np.float64)[:, :limit]
            m = logits.max(axis=1, keepdims=True)
            lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
            rows_lp.extend(logits - lse)
    at = base
    for j, t in enumerate(chosen):
        lp = rows_lp[j]
        top: dict[str, float] = {}
        if k > 0:
            best = np.argpartition(-lp, k - 1)[:k]
            for i in sorted(best, key=lambda i: -lp[i]):
                top.setdefault(tok.decode([int(i)], skip_special=False), float(lp[i]))
        top.setdefault(pieces[j], float(lp[t]))
        out["tokens"].append(pieces[j])
        out["token_logprobs"].append(float(lp[t]))
        out["top_logprobs"].append(top)
        out["text_offset"].append(at)
        at += len(pieces[j])
    return out


def create_app(settings: ServerSettings, engine: Any = None) -> Any:
    """The FastAPI application. ``engine``: a loaded
    :class:`bitnet_py.SimpleInference` (else loaded from ``settings.model``
    at startup).

    ``app.state.begin_drain()`` starts a graceful shutdown: from then on new
    generation requests get 503 ``shutting_down`` and ``/health`` 503, while
    admitted ones finish; ``app.state.bitnet["admitted"]`` counts those."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    metrics = Metrics()
    state: dict[str, Any] = {"engine": engine, "ready": engine is not None, "admitted": 0,
                             "draining": False, "started": int(time.time()),
                             # binds to the running loop on first use, so an app with a given
                             # engine works without lifespan events (e.g. httpx.ASGITransport)
                             "sem": asyncio.Semaphore(settings.max_concurrent)}
    name = settings.served_name()

    def begin_drain() -> None:
        if not state["draining"]:
            state["draining"] = True
            logger.info("shutting down: new requests get 503; %d admitted request(s) finish",
                        state["admitted"])

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if state["engine"] is None:
            from ..inference import SimpleInference

            loop = asyncio.get_running_loop()
            state["engine"] = await loop.run_in_executor(
                None, lambda: SimpleInference(settings.model, settings.tokenizer))
            logger.info("serving %s as %r", settings.model, name)
        state["ready"] = True
        yield
        begin_drain()
        state["ready"] = False

    app = FastAPI(title="bitnet_py server", lifespan=lifespan)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        metrics.observe(request.url.path, exc.status)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.observe(request.url.path, 400)
        return JSONResponse(APIError(400, str(exc.errors()[:3])).body(), status_code=400)

    def check_available() -> None:
        """503 while shutting down (the connection is closed after the
        answer) or before the model is loaded."""
        if state["draining"]:
            raise APIError(503, "the server is shutting down: retry on another replica", "server_error",
                           code="shutting_down", headers={"Retry-After": "1", "Connection": "close"})
        if not state["ready"]:
            raise APIError(503, "the server is not ready", "server_error", code="not_ready",
                           headers={"Retry-After": "1"})

    def check_auth(request: Request) -> None:
        if settings.api_key is None:
            return
        h = request.headers.get("authorization", "")
        tok = h[7:] if h.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not secrets.compare_digest(tok.encode(), settings.api_key.encode()):
            raise APIError(401, "invalid or missing API key", "authentication_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        m = body.get("model")
        if not isinstance(m, str) or not m:
            raise APIError(400, "'model' is required", param="model")
        if m != name:
            raise APIError(404, f"the model '{m}' does not exist (this server serves '{name}')",
                           param="model", code="model_not_found")
        return body

    def admit() -> None:
        check_available()
        if state["admitted"] >= settings.max_concurrent + settings.queue_size:
            raise APIError(429, "too many requests: the queue is full", "rate_limit_error", code="queue_full",
                           headers={"Retry-After": "1"})
        state["admitted"] += 1

    async def acquire() -> None:
        metrics.waiting += 1
        try:
            await state["sem"].acquire()
        finally:
            metrics.waiting -= 1
        metrics.running += 1

    def release() -> None:
        metrics.running -= 1
        state["sem"].release()

    def open_stream(g: _Gen, index: int = 0) -> Any:
        """Choice ``index``'s generation stream (nothing runs yet); prompt
        errors are 400."""
        check_available()
        try:
            return state["engine"].generate_stream(g.prompt, **g.overrides(index))
        except (ValueError, TypeError) as e:
            raise APIError(400, str(e), param="prompt", code="invalid_prompt") from None

    async def run_stream(g: _Gen, stream: Any, is_disconnected: Any
                         ) -> AsyncIterator[tuple[str, Optional[str], Any]]:
        """(piece, finish_reason or None, stream) events; cancels the
        generation when the client goes away or a stop string appears."""
        text = ""
        sent = 0
        hold = max((len(x) for x in g.stop), default=1) - 1
        reason: Optional[str] = None
        try:
            async for piece in stream:
                if await is_disconnected():
                    stream.cancel()
                    metrics.cancelled += 1
                    return
                text += piece
                if g.stop:
                    cut = min((i for i in (text.find(x) for x in g.stop) if i >= 0), default=-1)
                    if cut >= 0:
                        if cut > sent:
                            yield text[sent:cut], None, stream
                        sent = cut
                        reason = "stop"
                        stream.cancel()
                        break
                    safe = max(sent, len(text) - hold)
                    if safe > sent:
                        yield text[sent:safe], None, stream
                        sent = safe
                else:
                    yield piece, None, stream
                    sent = len(text)
        except (asyncio.CancelledError, GeneratorExit):
            stream.cancel()
            metrics.cancelled += 1
            raise
        finally:
            if stream.is_active():
                stream.cancel()
        if sent < len(text) and reason is None:
            yield text[sent:], None, stream
        if reason is None:
            reason = "length" if len(stream.tokens) >= g.max_tokens else "stop"
        yield "", reason, stream

    async def complete(g: _Gen, stream0: Any, request: Request) -> tuple[str, str, int, int]:
        text: str = ""
        reason: Optional[str] = None
        stream = None
        async for piece, fin, st in run_stream(g, stream0, request.is_disconnected):
            text += piece
            stream = st
            if fin:
                reason = fin
        if stream is None or reason is None:
            raise APIError(499, "client closed the request", code="cancelled")
        st = stream.get_stream_stats()
        return text, reason, st["prompt_length"], st["tokens_generated"]

    async def logprobs_of(g: _Gen, stream: Any, text: str) -> dict[str, Any]:
        eng = state["engine"].engine
        prompt_ids = list(stream._ids)  # the ids this generation was given (GenerationStream)
        if isinstance(g.prompt, str):
            base = len(g.prompt)
        else:
            base = len(eng.require_tokenizer().decode(prompt_ids, skip_special=True))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: _completion_logprobs(
            eng, prompt_ids, stream.tokens, text, g.logprobs or 0, base))

    def usage(p: int, c: int) -> dict[str, int]:
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def handle(request: Request, kind: str) -> Any:
        t0 = time.perf_counter()
        check_available()
        check_auth(request)
        body = await read_json(request)
        if kind == "chat":
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise APIError(400, "'messages' must be a non-empty list", param="messages")
            dialog = []
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or \
                        not isinstance(m.get("content"), str):
                    raise APIError(400, f"messages[{i}] needs a role (system, user or assistant) and string "
                                   "content", param=f"messages[{i}]")
                dialog.append({"role": m["role"], "content": m["content"]})
            prompt: Any = dialog
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in prompt):
                prompt = list(prompt)
            elif not isinstance(prompt, str) or not prompt:
                raise APIError(400, "'prompt' must be a non-empty string (or one list of token ids)",
                               param="prompt")
        g = _parse_common(body, settings, prompt, kind)
        stream_mode = bool(body.get("stream", False))
        streams = [open_stream(g, i) for i in range(g.n)]
        admit()
        rid = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        path = request.url.path
        if not stream_mode:
            results: list[tuple[str, str, Any]] = []
            p = c = 0
            try:
                await acquire()
                try:
                    # the n choices run one after another in this request's slot
                    for st in streams:
                        text, reason, p, ci = await complete(g, st, request)
                        c += ci
                        lp = await logprobs_of(g, st, text) if g.logprobs is not None else None
                        results.append((text, reason, lp))
                finally:
                    release()
                    for st in streams[len(results):]:
                        st.cancel()
            finally:
                state["admitted"] -= 1
            choices: list[dict[str, Any]] = []
            for i, (text, reason, lp) in enumerate(results):
                if kind == "chat":
                    choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                    "finish_reason": reason, "logprobs": None})
                else:
                    choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": lp})
            metrics.add_tokens(p, c)
            metrics.observe(path, 200, time.perf_counter() - t0)
            obj = "chat.completion" if kind == "chat" else "text_completion"
            return JSONResponse({"id": rid, "object": obj, "created": created, "model": name,
                                 "choices": choices, "usage": usage(p, c)})

        gen_stream = streams[0]

        async def events() -> AsyncIterator[str]:
            done = False
            try:
                try:
                    await acquire()
                except asyncio.CancelledError:  # the client went away while queued
                    gen_stream.cancel()
                    metrics.cancelled += 1
                    raise
                try:
                    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
                    if kind == "chat":
                        first = {"id": rid, "object": obj, "created": created, "model": name,
                                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]}
                        yield f"data: {json.dumps(first)}\n\n"
                    # Starlette cancels this generator when the client goes away
                    async for piece, fin, st in run_stream(g, gen_stream, _never):
                        if kind == "chat":
                            delta: dict[str, Any] = {"content": piece} if piece else {}
                            ch: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": fin}
                        else:
                            ch = {"index": 0, "text": piece, "finish_reason": fin, "logprobs": None}
                        if not piece and not fin:
                            continue
                        chunk = {"id": rid, "object": obj, "created": created, "model": name, "choices": [ch]}
                        if fin:
                            s = st.get_stream_stats()
                            metrics.add_tokens(s["prompt_length"], s["tokens_generated"])
                            chunk["usage"] = usage(s["prompt_length"], s["tokens_generated"])
                        yield f"data: {json.dumps(chunk)}\n\n"
                    yield "data: [DONE]\n\n"
                    done = True
                finally:
                    release()
            finally:
                leave()
                metrics.observe(path, 200 if done else 499, time.perf_counter() - t0)

        left = [False]

        def leave() -> None:  # once, from the generator's end or its collection
            if not left[0]:
                left[0] = True
                state["admitted"] -= 1

        def abandoned() -> None:
            # a client gone before the body starts leaves the generator unstarted (its
            # finally never runs): the generation never ran; give the admission back
            if not left[0]:
                gen_stream.cancel()
                metrics.cancelled += 1
                metrics.observe(path, 499, time.perf_counter() - t0)
                leave()

        body_iter = events()
        weakref.finalize(body_iter, abandoned)
        return StreamingResponse(body_iter, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await handle(request, "chat")

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        check_auth(request)
        metrics.observe("/v1/models", 200)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": state["started"],
                                            "owned_by": "bitnet_py"}]}

    @app.get("/health")
    async def health() -> Any:
        ok = bool(state["ready"]) and not state["draining"]
        status = "shutting_down" if state["draining"] else "ok" if ok else "starting"
        body = {"status": status, "model": name, "running": metrics.running,
                "waiting": metrics.waiting, "max_concurrent": settings.max_concurrent,
                "queue_size": settings.queue_size}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Any:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    app.state.metrics = metrics
    app.state.settings = settings
    app.state.bitnet = state
    app.state.begin_drain = begin_drain
    return app
