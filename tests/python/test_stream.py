"""generate_stream: one object that is a sync iterator, an async iterator and
an awaitable, with cancel(), is_active(), get_stream_stats()."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import bitnet_py as bn

PROMPT = "Hello, my name is"


@pytest.fixture(scope="module")
def si(ckpt: Path, tok_path: str) -> bn.SimpleInference:
    return bn.SimpleInference(bn.load_model(str(ckpt)), bn.create_tokenizer(tok_path),
                              bn.InferenceConfig(do_sample=False, max_new_tokens=24))


def test_sync_iteration_equals_generate(si: bn.SimpleInference) -> None:
    s = si.generate_stream(PROMPT)
    assert isinstance(s, bn.GenerationStream)
    st = s.get_stream_stats()
    assert st["started"] is False and st["active"] and st["prompt_length"] == 6
    assert st["prompt_preview"] == PROMPT and st["max_tokens"] == 24
    pieces = list(s)
    assert len(pieces) > 1 and "".join(pieces) == si.generate(PROMPT) == s.text
    assert not s.is_active() and s.finish_reason in ("length", "stop")
    st = s.get_stream_stats()
    assert st["started"] and not st["active"] and st["tokens_generated"] == len(s.tokens) > 0
    assert st["first_token_latency"] is not None and st["tokens_per_second"] > 0
    assert list(s) == []  # exhausted


def test_async_iteration_and_await(si: bn.SimpleInference) -> None:
    async def main() -> tuple[str, str]:
        pieces = [p async for p in si.generate_stream(PROMPT)]
        whole = await si.generate_stream(PROMPT)
        return "".join(pieces), whole

    a, b = asyncio.run(main())
    assert a == b == si.generate(PROMPT)


def test_cancel_stops_within_one_token(si: bn.SimpleInference) -> None:
    s = si.generate_stream(PROMPT, max_new_tokens=200)
    got = []
    for piece in s:
        got.append(piece)
        if len(s.tokens) == 3:
            s.cancel()
    assert len(s.tokens) == 3
    assert not s.is_active() and s.finish_reason == "cancelled"
    assert s.get_stream_stats()["cancelled"]
    s.cancel()  # idempotent


def test_cancel_from_another_thread(si: bn.SimpleInference) -> None:
    s = si.generate_stream(PROMPT, max_new_tokens=5000, eos_token_id=None)
    threading.Timer(0.05, s.cancel).start()
    t0 = time.perf_counter()
    n = sum(1 for _ in s)
    assert time.perf_counter() - t0 < 10
    assert s.finish_reason in ("cancelled", "stop", "length") and n >= 0
    assert si.generate(PROMPT)  # the engine still works


def test_cancel_async_stream(si: bn.SimpleInference) -> None:
    async def main() -> int:
        s = si.generate_stream(PROMPT, max_new_tokens=200)
        n = 0
        async for _ in s:
            n += 1
            if n == 2:
                s.cancel()
        return len(s.tokens)

    assert asyncio.run(main()) == 2


def test_stream_close_releases(si: bn.SimpleInference) -> None:
    s = si.generate_stream(PROMPT)
    next(s)
    s.close()
    assert not s.is_active() and list(s) == []


def test_timeout_cancels(si: bn.SimpleInference) -> None:
    cfg = bn.InferenceConfig(do_sample=False, max_new_tokens=100000, timeout_seconds=0.05, max_length=256)
    s = bn.SimpleInference(si.model, si.tokenizer, cfg).generate_stream("x")
    t0 = time.perf_counter()
    list(s)
    assert time.perf_counter() - t0 < 10


def test_stream_pieces_are_valid_utf8(si: bn.SimpleInference) -> None:
    for prompt in ("日本語のテキスト", "émoji 🎉 test", PROMPT):
        pieces = list(si.generate_stream(prompt))
        for p in pieces:
            p.encode("utf-8")
        assert "".join(pieces) == si.generate(prompt)


def test_engine_generate_stream(si: bn.SimpleInference) -> None:
    g = bn.FastGen(si.model, None, si.tokenizer, bn.GenArgs(gen_length=24))
    assert "".join(g.generate_stream(PROMPT)) == g.generate(PROMPT) == si.generate(PROMPT)
