"""bitnet_py.deploy: HybridInference routing/comparison and MigrationMonitor
(recommendation rules, thread safety, Prometheus export)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import bitnet_py
from bitnet_py.deploy import HybridInference, MigrationMonitor


class Slow:
    def __init__(self, text: str, delay: float) -> None:
        self.text, self.delay, self.calls = text, delay, 0

    def generate(self, prompt: str) -> str:
        self.calls += 1
        time.sleep(self.delay)
        return self.text + prompt


class WordTok:
    """Counts characters, so token counts differ from str.split()."""

    def encode(self, s: str, bos: bool = False, eos: bool = False) -> list[int]:
        return [ord(c) for c in s]


@pytest.fixture(scope="module")
def engines(ckpt: Path, tok_path: str) -> tuple[Any, Any, Any]:
    tokenizer = bitnet_py.create_tokenizer(tok_path)
    new = bitnet_py.SimpleInference(bitnet_py.load_model(str(ckpt / "model.gguf")), tokenizer,
                                    bitnet_py.InferenceConfig(do_sample=False, max_new_tokens=8))
    # the original's API (FastGen.generate_all + tokenizer), computed by bitnet_py
    orig = bitnet_py.FastGen.build(ckpt, bitnet_py.GenArgs(gen_length=8), "cuda:0")
    return new, orig, tokenizer


def test_real_engines_compare(engines: tuple[Any, Any, Any]) -> None:
    new, orig, tok = engines
    mon = MigrationMonitor()
    h = HybridInference(0.5, original=orig, new=new, monitor=mon, seed=1)
    c = h.compare_implementations("Hello, my name is")
    assert c["bitnet_py"]["response"] == new.generate("Hello, my name is")
    # the original's way: encode(bos=False, eos=False), greedy generate_all (SimpleInference adds BOS)
    ids = orig.tokenizer.encode("Hello, my name is", bos=False, eos=False)
    want = orig.tokenizer.decode(orig.generate_all([ids], use_cuda_graphs=False, use_sampling=False)[1][0])
    assert c["original"]["response"] == want
    assert c["comparison"]["outputs_match"] is (want == c["bitnet_py"]["response"])
    for k in ("bitnet_py", "original"):
        r = c[k]
        assert r["tokens"] == len(tok.encode(r["response"], bos=False, eos=False)) and r["generation_time"] > 0
        assert r["tokens_per_second"] == pytest.approx(r["tokens"] / r["generation_time"])
    assert h.rollout_percentage == 0.5  # compare does not touch the routing
    assert mon.snapshot()["requests_total"] == 2 and mon.snapshot()["tokens_new"] == c["bitnet_py"]["tokens"]
    same = HybridInference(0.5, original=orig, new=orig, tokenizer=tok).compare_implementations("Hi")
    assert same["comparison"]["outputs_match"] is True


def test_routing_and_timing() -> None:
    new, old = Slow("N:", 0.0), Slow("O:", 0.0)
    h = HybridInference(0.3, original=old, new=new, tokenizer=WordTok(), seed=7)
    impls = [h.generate("x")["implementation"] for _ in range(2000)]
    assert 0.25 < impls.count("bitnet_py") / 2000 < 0.35
    h.rollout_percentage = 0.0
    assert {h.generate("x")["implementation"] for _ in range(50)} == {"original"}
    assert h.generate("x", force_new=True)["implementation"] == "bitnet_py"
    h.rollout_percentage = 1.0
    assert {h.generate("x")["implementation"] for _ in range(50)} == {"bitnet_py"}
    for bad in (-0.1, 1.5, 10):
        with pytest.raises(ValueError):
            h.rollout_percentage = bad
    alone = HybridInference(0.0, new=new, tokenizer=WordTok())
    assert not alone.original_available and alone.generate("x")["implementation"] == "bitnet_py"
    assert "comparison" not in alone.compare_implementations("x")
    slow = HybridInference(0.0, original=Slow("old words here", 0.05), new=Slow("n", 0.01), tokenizer=WordTok())
    r = slow.generate("!")
    assert r["generation_time"] >= 0.05 and r["tokens"] == len("old words here!") != len(r["response"].split())
    c = slow.compare_implementations("!")
    assert c["comparison"]["time_improvement"] > 0 and c["comparison"]["outputs_match"] is False


def test_errors_recorded_and_raised() -> None:
    def broken(prompt: str) -> str:
        raise RuntimeError("boom")

    mon = MigrationMonitor()
    h = HybridInference(0.0, original=broken, new=lambda p: "ok", tokenizer=WordTok(), monitor=mon)
    with pytest.raises(RuntimeError, match="boom"):
        h.generate("x")
    assert mon.snapshot()["errors_original"] == 1 and mon.snapshot()["requests_original"] == 1
    with pytest.raises(TypeError):
        HybridInference(0.0, original=object(), new=lambda p: "ok", tokenizer=WordTok())


def _mon(new: int, new_err: int, orig: int, orig_err: int, t_new: float, t_orig: float) -> MigrationMonitor:
    m = MigrationMonitor()
    for i in range(new):
        m.record_request("bitnet_py", i >= new_err, t_new)
    for i in range(orig):
        m.record_request("original", i >= orig_err, t_orig)
    return m


def test_recommendation_rules() -> None:
    assert MigrationMonitor().get_migration_status()["status"] == "No requests processed"
    assert "rolling back" in _mon(10, 1, 90, 0, 1, 1).get_migration_status()["recommendation"]  # 10% errors
    st = _mon(50, 0, 50, 0, 1.0, 3.0).get_migration_status()
    assert st["performance_speedup"] == pytest.approx(3.0) and "increasing rollout" in st["recommendation"]
    st = _mon(5, 0, 95, 0, 1.0, 1.0).get_migration_status()
    assert st["migration_percentage"] == pytest.approx(5.0) and "Early migration" in st["recommendation"]
    assert "full cutover" in _mon(95, 0, 5, 0, 1.0, 1.0).get_migration_status()["recommendation"]
    assert "Continue gradual" in _mon(50, 0, 50, 0, 1.0, 1.0).get_migration_status()["recommendation"]
    # speedup > 2 but 2% errors: not "increase"; 50%: continue
    assert "Continue gradual" in _mon(50, 1, 50, 0, 1.0, 3.0).get_migration_status()["recommendation"]
    st = _mon(20, 0, 0, 0, 1.0, 0.0).get_migration_status()
    assert st["performance_speedup"] == 0.0 and st["error_rate_original"] == 0.0
    m = MigrationMonitor()
    m.record_request("unknown", False, 0.1)
    assert m.get_migration_status()["total_requests"] == 1 and m.snapshot()["errors_other"] == 1


def test_thread_safe_and_prometheus() -> None:
    m = MigrationMonitor()

    def work(k: int) -> None:
        for i in range(500):
            m.record_request("bitnet_py" if (i + k) % 2 else "original", i % 10 != 0, 0.01, tokens=3)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = m.snapshot()
    assert s["requests_total"] == 4000 and s["requests_new"] + s["requests_original"] == 4000
    assert s["errors_new"] + s["errors_original"] == 400 and s["tokens_new"] + s["tokens_original"] == 12000
    assert s["avg_time_new"] == pytest.approx(0.01)
    text = m.to_prometheus()
    vals = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if not l.startswith("#")}
    assert vals['bitnet_migration_requests_total{implementation="bitnet_py"}'] == s["requests_new"]
    assert vals['bitnet_migration_errors_total{implementation="original"}'] == s["errors_original"]
    assert vals["bitnet_migration_percentage"] == pytest.approx(50.0)
    assert "# TYPE bitnet_migration_tokens_total counter" in text
