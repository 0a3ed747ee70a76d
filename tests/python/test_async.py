"""Async API: load_model_async, create_tokenizer_async, AsyncInference; the
event loop keeps running while C work happens in worker threads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import bitnet_py as bn

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def paths(ckpt: Path, tok_path: str) -> tuple[str, str]:
    return str(ckpt / "model.gguf"), tok_path


def test_async_paths_equal_sync(paths: tuple[str, str]) -> None:
    model_path, tok_path = paths
    cfg = bn.InferenceConfig(do_sample=False, max_new_tokens=20)

    async def main() -> tuple[str, str, str, list[str], list[str]]:
        model = await bn.load_model_async(model_path)
        tok = await bn.create_tokenizer_async(tok_path)
        chat = await bn.create_tokenizer_async(tok_path, chat_format=True)
        assert isinstance(chat, bn.ChatFormat)
        eng = bn.AsyncInference(model, tok, cfg)
        a = await eng.generate_async(PROMPT)
        b = "".join([p async for p in eng.generate_stream(PROMPT)])
        c = "".join([p async for p in eng.generate_stream_async(PROMPT)])
        d = await eng.generate_batch_async([PROMPT, "Hello"])
        e = await bn.BatchProcessor(model, tok, bn.BatchConfig(max_new_tokens=20)).process_batch_async([PROMPT])
        return a, b, c, d, e

    a, b, c, d, e = asyncio.run(main())
    sync = bn.SimpleInference(bn.load_model(model_path), bn.create_tokenizer(tok_path), cfg)
    assert a == b == c == d[0] == e[0] == sync.generate(PROMPT)
    assert d[1] == sync.generate("Hello")
    assert bn.StreamingInference is bn.AsyncInference


def test_event_loop_not_blocked(paths: tuple[str, str]) -> None:
    model_path, tok_path = paths
    cfg = bn.InferenceConfig(do_sample=False, max_new_tokens=120)

    async def main() -> tuple[int, int]:
        model = await bn.load_model_async(model_path)
        eng = bn.AsyncInference(model, await bn.create_tokenizer_async(tok_path), cfg)
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        await eng.generate_async(PROMPT, eos_token_id=None)
        n_stream = 0
        async for _ in eng.generate_stream(PROMPT):
            n_stream += 1
        done.set()
        await t
        return ticks, n_stream

    ticks, n = asyncio.run(main())
    # 120 tokens take tens of milliseconds at least; a blocked loop would tick ~once
    assert ticks > 10, ticks
    assert n > 0


def test_concurrent_async_requests(paths: tuple[str, str]) -> None:
    model_path, tok_path = paths
    cfg = bn.InferenceConfig(do_sample=False, max_new_tokens=16)
    model = bn.load_model(model_path)
    eng = bn.AsyncInference(model, bn.create_tokenizer(tok_path), cfg)
    prompts = ["Hello", PROMPT, "In the year 2024,", "abc"]
    alone = [eng.generate(p) for p in prompts]

    async def main() -> list[str]:
        return list(await asyncio.gather(*(eng.generate_async(p) for p in prompts)))

    assert asyncio.run(main()) == alone


def test_task_cancel_stops_generation(paths: tuple[str, str]) -> None:
    model_path, tok_path = paths
    model = bn.load_model(model_path)
    eng = bn.AsyncInference(model, bn.create_tokenizer(tok_path),
                            bn.InferenceConfig(do_sample=False, max_new_tokens=100000, max_length=256))
    import time

    async def main() -> float:
        task = asyncio.create_task(eng.generate_async("x", eos_token_id=None))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - t0

    assert asyncio.run(main()) < 5.0
    assert eng.generate("Hello", max_new_tokens=3)
