"""One loaded model, several threads generating different prompts at once:
each gets the text it gets alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import bitnet_py as bn
from bitnet_py import _core

PROMPTS = ["Hello, my name is", "The capital of France is", "In the year 2024,", "a", "Once upon a time",
           "Python is", "日本語", "1 2 3"]


@pytest.fixture(scope="module")
def si(ckpt: Path, tok_path: str) -> bn.SimpleInference:
    return bn.SimpleInference(bn.load_model(str(ckpt)), bn.Tokenizer(tok_path),
                              bn.InferenceConfig(do_sample=False, max_new_tokens=24))


def test_threads_same_text_as_alone(si: bn.SimpleInference) -> None:
    alone = [si.generate(p) for p in PROMPTS]
    assert len(set(alone)) == len(alone)
    barrier = threading.Barrier(len(PROMPTS))

    def run(p: str) -> str:
        barrier.wait()
        return si.generate(p)

    for _ in range(2):
        with ThreadPoolExecutor(len(PROMPTS)) as ex:
            assert list(ex.map(run, PROMPTS)) == alone


def test_threads_streams_and_own_contexts(si: bn.SimpleInference) -> None:
    """Streams in threads, and raw _core contexts on the shared model."""
    alone = [si.generate(p) for p in PROMPTS[:4]]

    def stream(p: str) -> str:
        return "".join(si.generate_stream(p))

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(stream, PROMPTS[:4])) == alone
    model = si.model.core
    ref = []
    with _core.Context(model, n_ctx=64) as c:
        for toks in ([1, 2, 3], [4, 5, 6, 7]):
            c.kv_truncate(0, 0)
            ref.append(c.eval(toks, logits="all").copy())

    def own(i: int) -> bool:
        toks = [[1, 2, 3], [4, 5, 6, 7]][i % 2]
        with _core.Context(model, n_ctx=64) as c:
            return bool((c.eval(toks, logits="all") == ref[i % 2]).all())

    with ThreadPoolExecutor(6) as ex:
        assert all(ex.map(own, range(12)))


def test_engine_pool_bounded(si: bn.SimpleInference) -> None:
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(si.generate, PROMPTS))
    eng = si.engine
    assert len(eng._pool) <= 4
