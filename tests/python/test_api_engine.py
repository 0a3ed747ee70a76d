"""The shared generation core (bitnet_py._engine) on a tiny synthetic model
with the real Llama-3 tokenizer: batching, stop tokens, limits, cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bitnet_py as bn
from bitnet_py import _core
from bitnet_py._engine import CancelToken, Engine, GenParams, check_device

PROMPTS = ["Hello, my name is", "The capital of France is", "In the year 2024,", "a"]


@pytest.fixture(scope="module")
def engine(ckpt: Path, tok_path: str) -> Engine:
    model = _core.Model(str(ckpt / "model.gguf"))
    return Engine(model, _core.Tokenizer(tok_path))


def ids_of(engine: Engine, text: str) -> list[int]:
    assert engine.tokenizer is not None
    return engine.tokenizer.encode(text, bos=True)


def greedy_reference(engine: Engine, prompt: list[int], n: int) -> list[int]:
    """Token by token with Context.eval and argmax: the plainest loop."""
    out: list[int] = []
    with engine.context(1) as ctx:
        logits = ctx.eval(prompt)[-1]
        for _ in range(n):
            t = int(np.argmax(logits[: engine.vocab_limit() or None]))
            if t in engine.stop_ids():
                break
            out.append(t)
            logits = ctx.eval([t])[-1]
    return out


def test_greedy_equals_plain_loop(engine: Engine) -> None:
    p = ids_of(engine, PROMPTS[0])
    res = engine.generate([p], GenParams(max_new_tokens=20))[0]
    assert res.tokens == greedy_reference(engine, p, 20)
    assert res.reason in ("length", "stop")


def test_batched_decode_equals_one_by_one(engine: Engine) -> None:
    prompts = [ids_of(engine, t) for t in PROMPTS]
    params = GenParams(max_new_tokens=16)
    alone = [engine.generate([p], params)[0].tokens for p in prompts]
    together = [r.tokens for r in engine.generate(prompts, params)]
    assert together == alone
    assert len({tuple(t) for t in alone}) > 1  # the prompts give different texts


def test_batch_is_one_decode_call_per_step(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _core.Context.decode

    class Spy:
        def __init__(self, ctx: _core.Context) -> None:
            self._ctx = ctx

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self._ctx, name)

        def decode(self, tokens, **kw):  # type: ignore[no-untyped-def]
            calls.append(len(tokens))
            return real(self._ctx, tokens, **kw)

    orig_context = Engine.context

    from contextlib import contextmanager

    @contextmanager
    def spy_context(self: Engine, n_seq: int = 1, n_ctx=None):  # type: ignore[no-untyped-def]
        with orig_context(self, n_seq, n_ctx) as ctx:
            yield Spy(ctx)

    monkeypatch.setattr(Engine, "context", spy_context)
    prompts = [ids_of(engine, t) for t in PROMPTS[:3]]
    engine.generate(prompts, GenParams(max_new_tokens=5, stop_ids=frozenset()))
    # one prefill call holding all 3 prompts, then 4 decode steps (the 5th token comes from
    # the 4th step), each with all 3 sequences
    assert calls == [sum(len(p) for p in prompts), 3, 3, 3, 3]


def test_prefill_packs_prompts_into_batches(engine: Engine) -> None:
    """Prompts longer than n_batch, and batches mixing several prompts,
    give the same logits as evaluating each prompt alone."""
    small = Engine(engine.model, engine.tokenizer, n_ctx=256, n_batch=7)
    prompts = [ids_of(engine, t) for t in PROMPTS] + [[5] * 20]
    with small.context(len(prompts)) as ctx:
        rows = Engine._prefill(ctx, prompts, CancelToken())
    for p, row in zip(prompts, rows):
        np.testing.assert_array_equal(row, engine.logits(p)[-1])
    params = GenParams(max_new_tokens=6)
    assert [r.tokens for r in small.generate(prompts, params)] == [
        engine.generate([p], params)[0].tokens for p in prompts]


def test_stop_at_eot(engine: Engine) -> None:
    p = ids_of(engine, PROMPTS[1])
    first = engine.generate([p], GenParams(max_new_tokens=8))[0].tokens
    assert first
    # make the 3rd greedy token a stop token: generation ends before it
    res = engine.generate([p], GenParams(max_new_tokens=8, stop_ids=frozenset({first[2]})))[0]
    assert res.tokens == first[:2] and res.reason == "stop" and res.stop_token == first[2]
    assert 128009 in engine.stop_ids() and 128001 in engine.stop_ids()


def test_limits_validated(engine: Engine) -> None:
    with pytest.raises(bn.ConfigurationError, match="context"):
        engine.generate([[1] * engine.n_ctx], GenParams())
    with pytest.raises(bn.ConfigurationError, match="empty"):
        engine.generate([[]], GenParams())
    with pytest.raises(bn.ConfigurationError, match="batch is empty"):
        engine.generate([], GenParams())
    with pytest.raises(bn.ConfigurationError, match="max_new_tokens"):
        engine.generate([[1]], GenParams(max_new_tokens=-1))
    with pytest.raises(bn.ConfigurationError, match="temperature"):
        GenParams(temperature=-0.1).validate()
    with pytest.raises(bn.ConfigurationError, match="top_p"):
        GenParams(top_p=0).validate()
    with pytest.raises(bn.ConfigurationError, match="top_p"):
        GenParams(top_p=1.5).validate()
    with pytest.raises(ValueError, match="vocabulary"):
        engine.generate([[10**7]], GenParams())
    # generation stops at the end of the context
    p = [1] * (engine.n_ctx - 3)
    res = engine.generate([p], GenParams(max_new_tokens=100, stop_ids=frozenset()))[0]
    assert len(res.tokens) == 3 and res.reason == "length"
    assert engine.generate([[1, 2]], GenParams(max_new_tokens=0))[0].tokens == []


def test_cancel_within_one_token(engine: Engine) -> None:
    cancel = CancelToken()
    seen = []
    for st in engine.steps([ids_of(engine, "x")], GenParams(max_new_tokens=50, stop_ids=frozenset()), cancel):
        if st.token is not None:
            seen.append(st.token)
            if len(seen) == 3:
                cancel.cancel()
        else:
            assert st.reason == "cancelled"
    assert len(seen) == 3


def test_cancel_from_other_thread_interrupts(engine: Engine) -> None:
    cancel = CancelToken()
    cancel.cancel()  # before start: nothing is generated
    res = engine.generate([ids_of(engine, "x")], GenParams(max_new_tokens=50), cancel)[0]
    assert res.tokens == [] and res.reason == "cancelled"
    cancel = CancelToken()
    got: list[int] = []
    t = threading.Timer(0.05, cancel.cancel)
    t.start()
    t0 = time.perf_counter()
    res = engine.generate([ids_of(engine, "x")], GenParams(max_new_tokens=5000, stop_ids=frozenset()),
                          cancel, on_token=lambda i, tok: got.append(tok))[0]
    t.join()
    assert res.reason in ("cancelled", "length")
    assert time.perf_counter() - t0 < 5.0
    # the engine is usable afterwards (cancelled contexts are not reused)
    assert engine.generate([ids_of(engine, "x")], GenParams(max_new_tokens=3))[0].tokens


def test_sampling_seeded_reproducible(engine: Engine) -> None:
    p = ids_of(engine, PROMPTS[2])
    a = engine.generate([p], GenParams(max_new_tokens=12, temperature=1.5, seed=3))[0].tokens
    b = engine.generate([p], GenParams(max_new_tokens=12, temperature=1.5, seed=3))[0].tokens
    assert a == b
    for kw in ({"top_k": 5}, {"top_p": 0.5}, {"typical_p": 0.5}, {"mirostat": 2}, {"min_p": 0.1}):
        r = engine.generate([p], GenParams(max_new_tokens=4, temperature=1.0, seed=1, **kw))[0]
        assert len(r.tokens) <= 4


def test_stream_text_utf8_and_equal(engine: Engine) -> None:
    p = ids_of(engine, PROMPTS[0])
    pieces = list(engine.stream_text(p, GenParams(max_new_tokens=24)))
    toks = engine.generate([p], GenParams(max_new_tokens=24))[0].tokens
    assert engine.tokenizer is not None
    assert "".join(pieces) == engine.tokenizer.decode(toks, skip_special=True)
    for piece in pieces:
        piece.encode("utf-8")  # never a lone surrogate / broken sequence


def test_stream_never_splits_a_character(engine: Engine) -> None:
    tok = engine.tokenizer
    assert tok is not None
    # "日本語" is several byte-level tokens, some of them partial characters
    ids = tok.encode("日本語 ünïcödé 🎉", bos=False)
    dec = tok.stream_decoder(skip_special=True)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == "日本語 ünïcödé 🎉"
    assert "\ufffd" not in "".join(pieces)


def test_context_pool_reuse(engine: Engine) -> None:
    engine.clear_pool()
    engine.generate([[1, 2, 3]], GenParams(max_new_tokens=2))
    assert engine.pooled_kv_bytes() > 0
    engine.clear_pool()
    assert engine.pooled_kv_bytes() == 0


def test_logits_match_context_eval(engine: Engine) -> None:
    p = ids_of(engine, PROMPTS[0])
    with engine.context(1) as ctx:
        ref = ctx.eval(p, logits="all")
    np.testing.assert_array_equal(engine.logits(p), ref)


def test_check_device() -> None:
    assert check_device(None) == "cpu"
    assert check_device("CPU") == "cpu"
    assert check_device("cuda:0") == "cpu"
    assert check_device("cuda") == "cpu"
    with pytest.raises(bn.ConfigurationError, match="unknown device"):
        check_device("tpu")
    with pytest.raises(ValueError):
        check_device("cuda:x")


def test_context_sized_to_need_and_pool_cap(engine: Engine) -> None:
    assert engine.context_size(10) == min(256, engine.n_ctx)
    assert engine.context_size(10**6) == engine.n_ctx
    engine.clear_pool()
    engine.generate([[1, 2, 3], [4, 5]], GenParams(max_new_tokens=4))
    assert [k for k, _ in engine._pool] == [(2, engine.context_size(3 + 4 + 1))]
    engine.pool_cap_bytes = 1
    try:
        engine.generate([[1, 2, 3]], GenParams(max_new_tokens=4))
        assert engine._pool == []
    finally:
        engine.pool_cap_bytes = None


def test_memory_config_cache_size(ckpt: Path) -> None:
    m = bn.load_model(str(ckpt), memory_config=bn.MemoryConfig(cache_size_mb=1, enable_memory_mapping=False))
    assert m.pool_cap_bytes == 2**20
    assert m.engine().pool_cap_bytes == 2**20


def test_load_model_kv_type_f16(ckpt: Path, tok_path: str) -> None:
    """load_model(kv_type="f16"): generation contexts keep a half KV cache
    (half the bytes); batched generation still equals one by one on it."""
    m16 = bn.load_model(str(ckpt), kv_type="f16", tokenizer_path=tok_path)
    m32 = bn.load_model(str(ckpt), tokenizer_path=tok_path)
    e16, e32 = m16.engine(), m32.engine()
    assert e16.kv_type == "f16" and e32.kv_type == "f32"
    prompts = [ids_of(e16, t) for t in PROMPTS]
    params = GenParams(max_new_tokens=12)
    alone = [e16.generate([p], params)[0].tokens for p in prompts]
    assert [r.tokens for r in e16.generate(prompts, params)] == alone
    with e16.context(1) as c16, e32.context(1) as c32:
        assert c16.kv_type == "f16" and c16.kv_bytes * 2 == c32.kv_bytes
    with pytest.raises(bn.ConfigurationError, match="kv_type"):
        bn.load_model(str(ckpt), kv_type="int8")
