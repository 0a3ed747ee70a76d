"""bitnet_py.server: the OpenAI-compatible HTTP server, run as
``python -m bitnet_py.server`` on 127.0.0.1 and driven by the official
``openai`` client and httpx (validation, auth, queue limits, disconnects,
a bounded load test checking every response against the API called
directly)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import bitnet_py  # noqa: E402
from bitnet_py.testing import tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, model: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
        self.log = open(Path(model).parent / f"server-{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "bitnet_py.server", "--model", str(model),
                                      "--host", "127.0.0.1", "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not start: " + self.output())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def stop(self) -> None:
        """Terminate the server if it is still running, and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def model(tok_path: str) -> Path:
    return tiny_checkpoint(tokenizer=tok_path, n_ctx=1024) / "model.gguf"


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[Server]:
    s = Server(model, "--max-concurrent", "4", "--queue-size", "16", "--api-key", KEY)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ref(model: Path) -> bitnet_py.SimpleInference:
    return bitnet_py.SimpleInference(str(model))


def expected(ref: bitnet_py.SimpleInference, prompt: Any, n: int) -> str:
    return ref.generate(prompt, max_new_tokens=n, do_sample=False)


@pytest.fixture()
def client(server: Server) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_openai_completion(client: Any, ref: bitnet_py.SimpleInference) -> None:
    r = client.completions.create(model="model.gguf", prompt="Hello, my name is", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.model == "model.gguf"
    assert r.choices[0].text == expected(ref, "Hello, my name is", 8)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens == ref.count_tokens("Hello, my name is")
    assert [m.id for m in client.models.list().data] == ["model.gguf"]


def test_openai_chat_and_streaming(client: Any, ref: bitnet_py.SimpleInference) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is BitNet?"}]
    r = client.chat.completions.create(model="model.gguf", messages=msgs, max_tokens=10, temperature=0)
    want = expected(ref, msgs, 10)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == want
    pieces, finish = [], None
    for chunk in client.chat.completions.create(model="model.gguf", messages=msgs, max_tokens=10,
                                                temperature=0, stream=True):
        d = chunk.choices[0]
        if d.delta.content:
            pieces.append(d.delta.content)
        finish = d.finish_reason or finish
    assert "".join(pieces) == want and len(pieces) > 1 and finish == "length"
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="model.gguf", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True))
    assert text == expected(ref, "Once upon a time", 6)


def test_stop_sequence(client: Any, ref: bitnet_py.SimpleInference) -> None:
    full = expected(ref, "The capital of France is", 12)
    stop = full[len(full) // 2:len(full) // 2 + 3]
    r = client.completions.create(model="model.gguf", prompt="The capital of France is", max_tokens=12,
                                  temperature=0, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_errors(server: Server, client: Any) -> None:
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model="model.gguf", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="model.gguf", prompt="x", max_tokens=2, temperature=5)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    h = {"Authorization": f"Bearer {KEY}"}
    cases = [b"{not json", b"[]", json.dumps({"model": "model.gguf"}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "max_tokens": "3"}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "n": 9}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "n": 0}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "n": 2, "stream": True}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "logprobs": 6}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "logprobs": 1, "stream": True}).encode(),
             json.dumps({"model": "model.gguf", "prompt": "x", "stream": "yes"}).encode()]
    for body in cases:
        r = httpx.post(server.url + "/v1/completions", content=body, headers=h)
        assert r.status_code == 400, body
        e = r.json()["error"]
        assert e["type"] == "invalid_request_error" and e["message"]
    r = httpx.post(server.url + "/v1/chat/completions", headers=h,
                   json={"model": "model.gguf", "messages": [{"role": "robot", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0]"
    for stream in (False, True):  # longer than the context: 400 before any event
        r = httpx.post(server.url + "/v1/completions", headers=h, json={
            "model": "model.gguf", "prompt": "word " * 3000, "max_tokens": 4, "stream": stream})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # open without a key


def test_disconnect_cancels(server: Server) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    before = server.metric("bitnet_cancelled_total")
    body = {"model": "model.gguf", "prompt": "Tell me a long story", "max_tokens": 900, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=h, timeout=30) as r:
        assert r.status_code == 200
        it = r.iter_lines()
        got = [next(it) for _ in range(4)]
        assert got[0].startswith("data: ")
    # non-streaming: the client gives up
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/completions", json={**body, "stream": False}, headers=h, timeout=0.3)
    deadline = time.time() + 20
    while time.time() < deadline:
        if server.metric("bitnet_cancelled_total") >= before + 2 and server.metric("bitnet_requests_running") == 0:
            break
        time.sleep(0.1)
    assert server.metric("bitnet_cancelled_total") >= before + 2
    assert server.metric("bitnet_requests_running") == 0
    assert server.metric("bitnet_completion_tokens_total") >= 0


def test_load_200_at_16(server: Server, ref: bitnet_py.SimpleInference) -> None:
    prompts = [f"Request number {i}: the answer is" for i in range(20)]
    lengths = [4 + i % 5 for i in range(20)]
    want = {p: expected(ref, p, n) for p, n in zip(prompts, lengths)}
    assert len(set(want.values())) > 10  # distinct answers, so a mix-up would show

    async def main() -> list[tuple[str, int, Any]]:
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=120) as c:
            async def one(i: int) -> tuple[str, int, Any]:
                p, n = prompts[i % 20], lengths[i % 20]
                async with sem:
                    if i % 4 == 3:  # a quarter streamed
                        text = ""
                        async with c.stream("POST", "/v1/completions", json={
                                "model": "model.gguf", "prompt": p, "max_tokens": n, "temperature": 0,
                                "stream": True}) as r:
                            async for line in r.aiter_lines():
                                if line.startswith("data: ") and line != "data: [DONE]":
                                    text += json.loads(line[6:])["choices"][0]["text"]
                        return p, r.status_code, text
                    r = await c.post("/v1/completions", json={"model": "model.gguf", "prompt": p,
                                                              "max_tokens": n, "temperature": 0})
                    return p, r.status_code, r.json()["choices"][0]["text"]
            return await asyncio.gather(*(one(i) for i in range(200)))

    t0 = time.time()
    results = asyncio.run(main())
    assert time.time() - t0 < 300
    assert all(st == 200 for _, st, _ in results)
    bad = [(p, t) for p, _, t in results if t != want[p]]
    assert not bad, bad[:3]
    assert httpx.get(server.url + "/health").json() == {
        "status": "ok", "model": "model.gguf", "running": 0, "waiting": 0, "max_concurrent": 4, "queue_size": 16}
    assert server.proc.poll() is None


def test_queue_full_429(model: Path) -> None:
    s = Server(model, "--max-concurrent", "1", "--queue-size", "1")
    try:
        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, timeout=120) as c:
                return await asyncio.gather(*(c.post("/v1/completions", json={
                    "model": "model.gguf", "prompt": f"p{i}", "max_tokens": 300, "temperature": 0})
                    for i in range(8)))
        rs = asyncio.run(main())
        codes = sorted(r.status_code for r in rs)
        assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}, codes
        r429 = next(r for r in rs if r.status_code == 429)
        assert r429.headers["retry-after"] == "1" and r429.json()["error"]["code"] == "queue_full"
        assert httpx.get(s.url + "/health").status_code == 200
        # no API key configured: open
        assert httpx.get(s.url + "/v1/models").status_code == 200
    finally:
        s.stop()


def test_dockerfile() -> None:
    """The container runs the server as a non-root user with a health check
    against /health (the image itself is built in CI where Docker exists)."""
    text = (REPO / "Dockerfile").read_text()
    users = [l.split()[1] for l in text.splitlines() if l.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    hc = [l for l in text.splitlines() if l.startswith("HEALTHCHECK")]
    assert hc and "/health" in text[text.index("HEALTHCHECK"):]
    assert '"bitnet_py.server"' in text and "EXPOSE 8000" in text
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {".git", "build-*", "tests"} <= set(ignore)


def test_embedded_app_asgi(model: Path, ref: bitnet_py.SimpleInference) -> None:
    """create_app with a loaded engine serves without lifespan events."""
    from bitnet_py.server import ServerSettings, create_app

    app = create_app(ServerSettings(model=str(model), max_concurrent=2, queue_size=2), engine=ref)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            rs = await asyncio.gather(*(c.post("/v1/completions", json={
                "model": "model.gguf", "prompt": f"Item {i}", "max_tokens": 5, "temperature": 0})
                for i in range(4)))
            return [r.json()["choices"][0]["text"] for r in rs]

    assert asyncio.run(main()) == [expected(ref, f"Item {i}", 5) for i in range(4)]
