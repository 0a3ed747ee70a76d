"""Batch generation: BatchProcessor.process_batch and batch_generate advance
several sequences in one engine pass and give the one-by-one texts."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitnet_py as bn
from bitnet_py import _core

PROMPTS = ["Hello, my name is", "The capital of France is", "In the year 2024,", "a", "Once upon a time"]


@pytest.fixture(scope="module")
def mt(ckpt: Path, tok_path: str) -> tuple[bn.BitNetModel, bn.Tokenizer]:
    return bn.load_model(str(ckpt)), bn.Tokenizer(tok_path)


def test_process_batch_equals_one_by_one(mt: tuple[bn.BitNetModel, bn.Tokenizer]) -> None:
    model, tok = mt
    si = bn.SimpleInference(model, tok, bn.InferenceConfig(do_sample=False, max_new_tokens=20))
    alone = [si.generate(p) for p in PROMPTS]
    assert len(set(alone)) == len(alone)
    for bs in (1, 2, 8):
        bp = bn.BatchProcessor(model, tok, bn.BatchConfig(batch_size=bs, max_new_tokens=20))
        assert bp.process_batch(PROMPTS) == alone
        assert bp.last_stats is not None and bp.last_stats.phases
    assert bn.BatchProcessor(model, tok).process_batch(PROMPTS[:2]) == [
        bn.SimpleInference(model, tok, bn.InferenceConfig(do_sample=False)).generate(p) for p in PROMPTS[:2]]
    assert si.generate_batch(PROMPTS) == alone
    assert bn.batch_generate(si, PROMPTS) == alone
    assert bn.batch_generate(model, PROMPTS, tokenizer=tok, max_new_tokens=20) == alone
    fg = bn.FastGen(model, None, tok, bn.GenArgs(gen_length=20))
    assert bn.batch_generate(fg, PROMPTS) == alone


def test_really_batched(mt: tuple[bn.BitNetModel, bn.Tokenizer], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = mt
    seen: list[int] = []
    real_new = _core.Context.__new__

    # count sequence slots of the contexts the batch uses
    import bitnet_py._engine as E

    orig = E.Engine.context

    def spy(self: E.Engine, n_seq: int = 1, n_ctx=None):  # type: ignore[no-untyped-def]
        seen.append(n_seq)
        return orig(self, n_seq, n_ctx)

    monkeypatch.setattr(E.Engine, "context", spy)
    bn.BatchProcessor(model, tok, bn.BatchConfig(batch_size=4, max_new_tokens=4)).process_batch(PROMPTS)
    assert seen == [4, 1]
    assert real_new is _core.Context.__new__


def test_batch_errors(mt: tuple[bn.BitNetModel, bn.Tokenizer]) -> None:
    model, tok = mt
    bp = bn.BatchProcessor(model, tok)
    with pytest.raises(bn.ConfigurationError, match="empty"):
        bp.process_batch([])
    with pytest.raises(bn.ConfigurationError, match="not one str"):
        bp.process_batch("one prompt")  # type: ignore[arg-type]
    with pytest.raises(bn.ConfigurationError):
        bn.BatchProcessor(model, tok, {"batch_size": 2})  # type: ignore[arg-type]
    with pytest.raises(bn.ConfigurationError):
        bn.batch_generate(object(), ["x"])
