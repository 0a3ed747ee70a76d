"""examples/: the guide's FastAPI, Flask and Streamlit apps, run as written
against a tiny synthetic model (paths through BITNET_MODEL/BITNET_TOKENIZER)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    path = EXAMPLES / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_readmes() -> None:
    for name in ("fastapi_app", "flask_app", "streamlit_app"):
        text = (EXAMPLES / name / "README.md").read_text()
        assert "BITNET_MODEL=" in text and "```bash" in text and "127.0.0.1" in text


def test_fastapi_app(model_env: Path) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    app = load("fastapi_app").app

    async def main() -> tuple[dict[str, str], list[str]]:  # noqa: C901
        # the ASGI transport sends no lifespan events: run the app's lifespan (its startup handler)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
                r = await c.post("/generate", params={"prompt": "Hello, my name is"})
                assert r.status_code == 200
                events: list[str] = []
                async with c.stream("POST", "/stream", params={"prompt": "Hello, my name is"}) as s:
                    assert s.status_code == 200 and s.headers["content-type"].startswith("text/plain")
                    buf = ""
                    async for chunk in s.aiter_text():
                        buf += chunk
                    events = buf.split("\n\n")
                return r.json(), events

    body, events = asyncio.run(main())
    assert isinstance(body["response"], str) and body["response"]
    assert events[-1] == "" and len(events) > 2
    assert all(e.startswith("data: ") for e in events[:-1])
    assert "".join(e[len("data: "):] for e in events[:-1]).strip()


def test_flask_app(model_env: Path) -> None:
    pytest.importorskip("flask")
    app = load("flask_app").app
    c = app.test_client()
    r = c.post("/generate", json={"prompt": "Hello, my name is"})
    assert r.status_code == 200 and isinstance(r.get_json()["response"], str) and r.get_json()["response"]
    r = c.post("/batch", json={"prompts": ["Hello", "The capital of France is", "Hi"]})
    out = r.get_json()["responses"]
    assert r.status_code == 200 and len(out) == 3 and all(isinstance(x, str) for x in out)
    # as written, the app does not catch errors: an empty batch is a ConfigurationError, hence 500
    app.testing = False
    assert c.post("/batch", json={"prompts": []}).status_code == 500


def test_streamlit_app(model_env: Path) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(EXAMPLES / "streamlit_app" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    assert at.title[0].value == "BitNet Text Generation"
    assert [b.label for b in at.button] == ["Generate", "Generate (Streaming)"]
    at.text_area[0].input("Hello, my name is").run()
    at.button[0].click().run()
    assert not at.exception
    texts = [m.value for m in at.markdown]
    assert texts and texts[-1].strip()
    at.button[1].click().run()
    assert not at.exception
    assert [m.value for m in at.markdown] and at.markdown[-1].value.strip()
