"""bitnet_py.server edge cases, against a real ``python -m bitnet_py.server``
on 127.0.0.1 (see test_server.py): graceful shutdown (503 while draining),
clients that go away before their stream starts or while queued, ``n``
choices and ``logprobs`` (checked against log-softmax of logits computed here
through the low-level ``_core.Context``, one token at a time)."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import bitnet_py  # noqa: E402
from bitnet_py import _core  # noqa: E402
from bitnet_py.testing import tiny_checkpoint  # noqa: E402
from test_server import Server  # noqa: E402

KEY = "sk-edge"
H = {"Authorization": f"Bearer {KEY}"}
LONG = 1900  # tokens: ~2.5 s of generation on the tiny model, so "still running" is not a race


@pytest.fixture(scope="module")
def model(tok_path: str) -> Path:
    return tiny_checkpoint(tokenizer=tok_path, n_ctx=2048) / "model.gguf"


@pytest.fixture(scope="module")
def ref(model: Path) -> bitnet_py.SimpleInference:
    return bitnet_py.SimpleInference(str(model))


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[Server]:
    s = Server(model, "--max-concurrent", "2", "--queue-size", "4", "--api-key", KEY)
    yield s
    s.stop()


@pytest.fixture()
def client(server: Server) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def wait_for(cond: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def health(s: Server) -> dict[str, Any]:
    r = httpx.get(s.url + "/health", timeout=5)
    body: dict[str, Any] = r.json()
    body["_code"] = r.status_code
    return body


_LONG_REF: dict[str, tuple[str, int]] = {}


def long_ref(ref: bitnet_py.SimpleInference) -> tuple[str, int]:
    """Greedy text and token count of long_body() called directly."""
    if "r" not in _LONG_REF:
        st = ref.generate_stream("Tell me a long story", max_new_tokens=LONG, do_sample=False)
        _LONG_REF["r"] = ("".join(st), len(st.tokens))
    return _LONG_REF["r"]


def long_body(stream: bool = True) -> dict[str, Any]:
    return {"model": "model.gguf", "prompt": "Tell me a long story", "max_tokens": LONG, "temperature": 0,
            "stream": stream}


def sse_text(lines: Iterator[str]) -> tuple[str, list[str]]:
    text, raw = "", []
    for line in lines:
        if not line:
            continue
        raw.append(line)
        if line.startswith("data: ") and line != "data: [DONE]":
            text += json.loads(line[6:])["choices"][0]["text"]
    return text, raw


# -- graceful shutdown ---------------------------------------------------------

def test_sigterm_drains_with_503(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """After SIGTERM: new requests get a clean 503 JSON error (shutting_down,
    Retry-After, connection closed), /health 503; the request already running
    finishes complete and correct; then the process exits 0."""
    s = Server(model, "--max-concurrent", "1", "--queue-size", "2", "--max-tokens-limit", "4000",
               "--drain-timeout", "60")
    try:
        with httpx.stream("POST", s.url + "/v1/completions", json=long_body(), timeout=60) as a:
            assert a.status_code == 200
            lines = a.iter_lines()
            first = next(lines)
            assert first.startswith("data: ")
            s.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: health(s)["_code"] == 503, "/health to report the drain", 10)
            hb = health(s)
            assert hb["status"] == "shutting_down" and hb["running"] == 1, hb
            for path, body in (("/v1/completions", {"model": "model.gguf", "prompt": "Hi", "max_tokens": 2}),
                               ("/v1/chat/completions", {"model": "model.gguf", "max_tokens": 2,
                                                         "messages": [{"role": "user", "content": "Hi"}]}),
                               ("/v1/completions", {"model": "model.gguf", "prompt": "Hi", "stream": True})):
                r = httpx.post(s.url + path, json=body, timeout=10)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/json")
                assert r.headers["retry-after"] == "1" and r.headers.get("connection") == "close"
                e = r.json()["error"]
                assert e["code"] == "shutting_down" and e["type"] == "server_error" and e["message"]
            oc = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0, timeout=10)
            with pytest.raises(openai.APIStatusError) as ei:
                oc.completions.create(model="model.gguf", prompt="Hi", max_tokens=2)
            assert ei.value.status_code == 503
            assert s.proc.poll() is None  # still serving the admitted request
            text, raw = sse_text(lines)
        assert raw[-1] == "data: [DONE]"
        full = json.loads(first[6:])["choices"][0]["text"] + text
        assert full == long_ref(ref)[0]
        assert s.proc.wait(30) == 0, s.output()
        assert "draining" in s.output()
    finally:
        s.stop()


def test_drain_state_machine(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """The uvicorn server of ``python -m bitnet_py.server``: the first signal
    drains (uvicorn keeps running while requests are admitted, up to the
    drain timeout), the second hands over to uvicorn's own shutdown."""
    import uvicorn

    from bitnet_py.server import ServerSettings, create_app
    from bitnet_py.server.__main__ import _draining_server

    app = create_app(ServerSettings(model=str(model)), engine=ref)
    srv = _draining_server(uvicorn.Config(app), app, 120.0)
    st = app.state.bitnet
    st["admitted"] = 1  # one request still running
    srv.handle_exit(signal.SIGTERM, None)
    assert st["draining"] and not srv.should_exit
    assert asyncio.run(srv.on_tick(1)) is False  # waits for it
    srv.handle_exit(signal.SIGTERM, None)  # second signal: uvicorn's shutdown now
    assert srv.should_exit and asyncio.run(srv.on_tick(2)) is True

    srv2 = _draining_server(uvicorn.Config(app), app, 0.0)  # drain timeout reached
    srv2.handle_exit(signal.SIGINT, None)
    assert not srv2.should_exit and asyncio.run(srv2.on_tick(1)) is True
    st["admitted"] = 0
    srv3 = _draining_server(uvicorn.Config(app), app, 120.0)  # nothing admitted: at once
    srv3.handle_exit(signal.SIGTERM, None)
    assert asyncio.run(srv3.on_tick(1)) is True


def test_sigterm_idle_exits_at_once(model: Path) -> None:
    s = Server(model, "--drain-timeout", "60")
    try:
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0, s.output()
        assert time.time() - t0 < 10
    finally:
        s.stop()


def test_begin_drain_asgi(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """The drain switch of an embedded app (no uvicorn): 503 shutting_down."""
    from bitnet_py.server import ServerSettings, create_app

    app = create_app(ServerSettings(model=str(model)), engine=ref)

    async def main() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            ok = await c.post("/v1/completions", json={"model": "model.gguf", "prompt": "Hi", "max_tokens": 2,
                                                       "temperature": 0})
            app.state.begin_drain()
            no = await c.post("/v1/completions", json={"model": "model.gguf", "prompt": "Hi", "max_tokens": 2})
            return [ok, no, await c.get("/health"), await c.get("/v1/models")]

    ok, no, h, m = asyncio.run(main())
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == ref.generate(
        "Hi", max_new_tokens=2, do_sample=False)
    assert no.status_code == 503 and no.json()["error"]["code"] == "shutting_down"
    assert h.status_code == 503 and h.json()["status"] == "shutting_down"
    assert m.status_code == 200


# -- clients that go away early --------------------------------------------------

def test_disconnect_while_queued_releases_admission(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """A streaming client that leaves while its request waits for a slot (its
    stream never started): the admission and the queue place are given back,
    its generation never runs, and the server keeps serving."""
    s = Server(model, "--max-concurrent", "1", "--queue-size", "1", "--max-tokens-limit", "4000")
    try:
        before = s.metric("bitnet_cancelled_total")
        with httpx.stream("POST", s.url + "/v1/completions", json=long_body(), timeout=60) as a:
            assert a.status_code == 200
            lines = a.iter_lines()
            first = next(lines)
            for k in range(3):  # the queue holds one: a leaked admission would make the next a 429
                with httpx.stream("POST", s.url + "/v1/completions", timeout=30, json={
                        **long_body(), "prompt": f"queued {k}"}) as b:
                    assert b.status_code == 200, b.read()
                    wait_for(lambda: health(s)["waiting"] == 1, "the request to be queued")
                # b closed before its first event
                wait_for(lambda: health(s)["waiting"] == 0, "the queued request to leave")
                wait_for(lambda: s.metric("bitnet_cancelled_total") == before + k + 1, "the cancellation")
            assert health(s)["running"] == 1
            text, raw = sse_text(lines)
        assert raw[-1] == "data: [DONE]"
        assert json.loads(first[6:])["choices"][0]["text"] + text == long_ref(ref)[0]
        wait_for(lambda: health(s)["running"] == 0, "the slot to be free")
        # only the long request's tokens were generated
        assert s.metric("bitnet_completion_tokens_total") == long_ref(ref)[1]
        r = httpx.post(s.url + "/v1/completions", json={"model": "model.gguf", "prompt": "After", "max_tokens": 4,
                                                         "temperature": 0}, timeout=30)
        assert r.status_code == 200
        assert r.json()["choices"][0]["text"] == ref.generate("After", max_new_tokens=4, do_sample=False)
        assert s.metric("bitnet_cancelled_total") == before + 3
    finally:
        s.stop()


def raw_post_and_close(s: Server, body: dict[str, Any]) -> None:
    """Send a request and close the socket at once: the client is gone before
    any byte of the response (before the stream starts)."""
    data = json.dumps(body).encode()
    req = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(req)
        sock.shutdown(socket.SHUT_RDWR)


def test_disconnect_before_stream_start(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """Clients gone before the response starts, and right after the headers
    (before the first token): each generation is cancelled (none runs to
    its end), the slot and the admission come back (queue size 0, so a leak
    would answer 429), and later requests succeed."""
    s = Server(model, "--max-concurrent", "1", "--queue-size", "0", "--max-tokens-limit", "4000")
    try:
        before = s.metric("bitnet_cancelled_total")
        idle = lambda: (lambda h: h["running"] == 0 and h["waiting"] == 0)(health(s))  # noqa: E731
        for k in range(3):
            raw_post_and_close(s, {**long_body(), "prompt": f"gone {k} " * 20})
            wait_for(lambda: s.metric("bitnet_cancelled_total") == before + k + 1, f"cancellation {k}")
            wait_for(idle, "the slot to be free")
        for k in range(3):
            with httpx.stream("POST", s.url + "/v1/completions", json={**long_body(), "prompt": f"left {k}"},
                              timeout=30) as r:
                assert r.status_code == 200  # headers only: the client leaves now
            wait_for(lambda: s.metric("bitnet_cancelled_total") == before + 4 + k, f"cancellation {3 + k}")
            wait_for(idle, "the slot to be free")
        assert s.metric("bitnet_completion_tokens_total") == 0  # no generation reached its end
        r2 = httpx.post(s.url + "/v1/completions", json={"model": "model.gguf", "prompt": "Still here",
                                                          "max_tokens": 5, "temperature": 0}, timeout=30)
        assert r2.status_code == 200, r2.text
        assert r2.json()["choices"][0]["text"] == ref.generate("Still here", max_new_tokens=5, do_sample=False)
        h = health(s)
        assert h["_code"] == 200 and h["status"] == "ok"
        assert s.proc.poll() is None
    finally:
        s.stop()


# -- n choices -----------------------------------------------------------------

def test_n_choices_openai(client: Any, ref: bitnet_py.SimpleInference) -> None:
    prompt = "Once upon a time"
    r = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=8, temperature=1.3, seed=42, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    streams = [ref.generate_stream(prompt, max_new_tokens=8, do_sample=True, temperature=1.3, top_p=1.0,
                                   seed=42 + i) for i in range(3)]
    want = ["".join(st) for st in streams]
    assert [c.text for c in r.choices] == want
    assert len(set(want)) > 1  # independent samples
    assert r.usage.prompt_tokens == ref.count_tokens(prompt)
    assert r.usage.completion_tokens == sum(len(st.tokens) for st in streams)
    # the same seed again: the same n choices
    again = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=8, temperature=1.3, seed=42,
                                      n=3)
    assert [c.text for c in again.choices] == want
    msgs = [{"role": "user", "content": "Name a colour."}]
    chat = client.chat.completions.create(model="model.gguf", messages=msgs, max_tokens=6, temperature=0, n=2)
    assert [c.index for c in chat.choices] == [0, 1]
    greedy = ref.generate(msgs, max_new_tokens=6, do_sample=False)
    assert [c.message.content for c in chat.choices] == [greedy, greedy]


def test_n_validation(server: Server, client: Any) -> None:
    for n in (0, 9, -1):
        with pytest.raises(openai.BadRequestError) as ei:
            client.completions.create(model="model.gguf", prompt="x", max_tokens=2, n=n)
        assert ei.value.body["param"] == "n"
    for body in ({"n": 2, "stream": True}, {"n": 1.5}, {"n": "2"}, {"n": True}):
        for path, base in (("/v1/completions", {"prompt": "x"}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})):
            r = httpx.post(server.url + path, headers=H, json={"model": "model.gguf", **base, **body})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n", (path, body, r.text)
    r = httpx.post(server.url + "/v1/completions", headers=H,
                   json={"model": "model.gguf", "prompt": "x", "n": 2, "stream": True})
    assert "stream" in r.json()["error"]["message"]


# -- logprobs ------------------------------------------------------------------

def log_softmax(row: np.ndarray) -> np.ndarray:
    x = row.astype(np.float64)
    m = x.max()
    out: np.ndarray = x - (m + math.log(float(np.exp(x - m).sum())))
    return out


def independent_logprobs(ref: bitnet_py.SimpleInference, prompt: str, n: int) -> list[tuple[int, np.ndarray]]:
    """Greedy continuation computed here: the prompt evaluated in a fresh
    low-level context, then one token at a time; (chosen id, log-softmax row)."""
    eng = ref.engine
    tok = eng.require_tokenizer()
    ids = tok.encode(prompt, bos=tok.bos_id is not None, disallowed_special=())
    limit = eng.vocab_limit() or eng.n_vocab
    out = []
    with _core.Context(eng.model, n_ctx=1024, n_seq=1) as ctx:
        row = np.asarray(ctx.eval(ids))[-1]
        for _ in range(n):
            lp = log_softmax(row[:limit])
            t = int(np.argmax(lp))
            out.append((t, lp))
            row = np.asarray(ctx.eval([t]))[-1]
    return out


def test_logprobs_openai(client: Any, ref: bitnet_py.SimpleInference) -> None:
    prompt = "The capital of France is"
    tok = ref.engine.require_tokenizer()
    r = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=10, temperature=0, logprobs=3)
    c = r.choices[0]
    assert c.text == ref.generate(prompt, max_new_tokens=10, do_sample=False)
    lp = c.logprobs
    assert lp is not None and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 10
    assert "".join(lp.tokens) == c.text
    ind = independent_logprobs(ref, prompt, 10)
    assert tok.decode([t for t, _ in ind], skip_special=True) == c.text
    offset = len(prompt)
    for j, (t, row) in enumerate(ind):
        assert lp.text_offset[j] == offset
        offset += len(lp.tokens[j])
        assert lp.token_logprobs[j] == pytest.approx(float(row[t]), abs=1e-4)
        assert lp.token_logprobs[j] <= 0
        top3 = np.argsort(-row)[:3]
        want = {tok.decode([int(i)]): float(row[i]) for i in top3}
        got = lp.top_logprobs[j]
        assert set(got) >= set(want), (got, want)
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=1e-4)
        assert len(got) <= 4 and max(got.values()) == pytest.approx(float(row[t]), abs=1e-4)  # greedy: top-1


def test_logprobs_zero_stop_and_sampling(server: Server, client: Any, ref: bitnet_py.SimpleInference) -> None:
    prompt = "Hello, my name is"
    ind = independent_logprobs(ref, prompt, 12)
    r = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=12, temperature=0, logprobs=0)
    lp = r.choices[0].logprobs
    assert [len(d) for d in lp.top_logprobs] == [1] * 12  # only the chosen token
    assert lp.token_logprobs == pytest.approx([float(row[t]) for t, row in ind], abs=1e-4)
    # cut by a stop string: the tokens that produced the text, no more
    full = r.choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 3]
    rs = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=12, temperature=0, logprobs=1,
                                   stop=[stop])
    text = rs.choices[0].text
    assert text == full[:full.index(stop)] and rs.choices[0].finish_reason == "stop"
    toks = rs.choices[0].logprobs.tokens
    assert "".join(toks).startswith(text)
    assert len("".join(toks[:-1])) < len(text) and len(toks) < 12
    assert rs.choices[0].logprobs.token_logprobs == pytest.approx(
        [float(row[t]) for t, row in ind[:len(toks)]], abs=1e-4)
    # sampled tokens with n=2: each chosen token's logprob is the model's own (not the sampler's)
    rn = client.completions.create(model="model.gguf", prompt=prompt, max_tokens=6, temperature=1.5, seed=5, n=2,
                                   logprobs=2)
    eng = ref.engine
    t = eng.require_tokenizer()
    assert [ch.index for ch in rn.choices] == [0, 1]
    for ch in rn.choices:
        st = ref.generate_stream(prompt, max_new_tokens=6, do_sample=True, temperature=1.5, top_p=1.0,
                                 seed=5 + ch.index)
        assert ch.text == "".join(st)
        gen = st.tokens
        ids = t.encode(prompt, bos=t.bos_id is not None, disallowed_special=())
        with _core.Context(eng.model, n_ctx=256) as ctx:
            rows = [np.asarray(ctx.eval(ids))[-1]] + [np.asarray(ctx.eval([g]))[-1] for g in gen[:-1]]
        assert "".join(ch.logprobs.tokens) == ch.text and len(ch.logprobs.tokens) == len(gen)
        assert ch.logprobs.token_logprobs == pytest.approx(
            [float(log_softmax(rw)[g]) for rw, g in zip(rows, gen)], abs=1e-4)
    # validation: integer 0..5, not with stream, not on chat
    for bad in (6, -1, 2.5, "3", True):
        r2 = httpx.post(server.url + "/v1/completions", headers=H,
                        json={"model": "model.gguf", "prompt": "x", "logprobs": bad})
        assert r2.status_code == 400 and r2.json()["error"]["param"] == "logprobs", (bad, r2.text)
    r3 = httpx.post(server.url + "/v1/completions", headers=H,
                    json={"model": "model.gguf", "prompt": "x", "logprobs": 1, "stream": True})
    assert r3.status_code == 400 and r3.json()["error"]["param"] == "logprobs"
    r4 = httpx.post(server.url + "/v1/chat/completions", headers=H, json={
        "model": "model.gguf", "messages": [{"role": "user", "content": "x"}], "logprobs": True})
    assert r4.status_code == 400 and r4.json()["error"]["param"] == "logprobs"
    r5 = httpx.post(server.url + "/v1/completions", headers=H, json={"model": "model.gguf", "prompt": "x",
                                                                      "max_tokens": 2})
    assert r5.status_code == 200 and r5.json()["choices"][0]["logprobs"] is None
