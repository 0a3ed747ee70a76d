"""Side-by-side deployment: route a share of traffic to bitnet_py while the
original implementation keeps serving the rest, compare the two, and watch
the migration.

    from bitnet_py.deploy import HybridInference, MigrationMonitor
    monitor = MigrationMonitor()
    hybrid = HybridInference(0.1, original=old_engine, new=new_engine, monitor=monitor)
    result = hybrid.generate("Hello")          # routed: 10% to bitnet_py
    hybrid.compare_implementations("Hello")    # both, timed, outputs compared
    monitor.get_migration_status()["recommendation"]
    print(monitor.to_prometheus())

An engine is anything with ``generate(prompt) -> str`` (``SimpleInference``),
the original's ``FastGen`` (``generate_all`` + ``tokenizer``; run greedily
with the prompt encoded as the original's script does), or a callable
``prompt -> str``. Times are measured with ``time.perf_counter``; tokens are
counted with the tokenizer (never ``str.split``). Everything is thread-safe.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

NEW = "bitnet_py"
ORIGINAL = "original"

__all__ = ["HybridInference", "MigrationMonitor", "NEW", "ORIGINAL"]


def _as_generate(engine: Any) -> Callable[[str], str]:
    if hasattr(engine, "generate_all") and hasattr(engine, "tokenizer"):
        def run_fastgen(prompt: str) -> str:
            tok = engine.tokenizer
            ids = tok.encode(prompt, bos=False, eos=False)
            _, out = engine.generate_all([ids], use_cuda_graphs=False, use_sampling=False)
            return str(tok.decode(list(out[0])))
        return run_fastgen
    if hasattr(engine, "generate"):
        return lambda prompt: str(engine.generate(prompt))
    if callable(engine):
        return lambda prompt: str(engine(prompt))
    raise TypeError(f"{type(engine).__name__} is not an engine: it needs generate(prompt), generate_all "
                    "and tokenizer, or to be callable")


class MigrationMonitor:
    """Counts requests, errors, time and tokens per implementation and
    recommends what to do next.

    ``record_request(implementation, success, time_taken, tokens=None)``:
    ``implementation`` is ``"bitnet_py"`` (new) or ``"original"``; anything
    else (e.g. ``"unknown"`` for a request that failed before routing) counts
    in the total and in ``requests_other``/``errors_other``.

    ``get_migration_status()``: ``migration_percentage`` (share of requests
    served by bitnet_py, %), ``total_requests``, ``error_rate_new`` and
    ``error_rate_original`` (%), ``performance_speedup`` (average time of the
    original / of bitnet_py; 0 until both have requests), ``recommendation``:

    1. error rate of bitnet_py > 5%: roll back or investigate;
    2. speedup > 2 and error rate < 1%: increase the rollout;
    3. migration < 10%: early phase, monitor;
    4. migration > 90%: consider full cutover;
    5. otherwise: continue the gradual rollout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.metrics: dict[str, float] = {
            "requests_total": 0, "requests_new": 0, "requests_original": 0, "requests_other": 0,
            "errors_new": 0, "errors_original": 0, "errors_other": 0,
            "avg_time_new": 0.0, "avg_time_original": 0.0,
            "time_new": 0.0, "time_original": 0.0, "tokens_new": 0, "tokens_original": 0,
        }

    def record_request(self, implementation: str, success: bool, time_taken: float,
                       tokens: Optional[int] = None) -> None:
        if time_taken < 0:
            raise ValueError(f"time_taken must be >= 0, got {time_taken}")
        with self._lock:
            m = self.metrics
            m["requests_total"] += 1
            key = {NEW: "new", ORIGINAL: "original"}.get(implementation)
            if key is None:
                m["requests_other"] += 1
                if not success:
                    m["errors_other"] += 1
                return
            m[f"requests_{key}"] += 1
            if not success:
                m[f"errors_{key}"] += 1
            m[f"time_{key}"] += time_taken
            m[f"avg_time_{key}"] = m[f"time_{key}"] / m[f"requests_{key}"]
            if tokens:
                m[f"tokens_{key}"] += tokens

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.metrics)

    def get_migration_status(self) -> dict[str, Any]:
        m = self.snapshot()
        total = m["requests_total"]
        if total == 0:
            return {"status": "No requests processed", "total_requests": 0,
                    "recommendation": "No requests recorded yet."}
        pct = m["requests_new"] / total * 100
        err_new = m["errors_new"] / max(1, m["requests_new"]) * 100
        err_orig = m["errors_original"] / max(1, m["requests_original"]) * 100
        speedup = (m["avg_time_original"] / m["avg_time_new"]
                   if m["avg_time_new"] > 0 and m["requests_original"] > 0 else 0.0)
        return {"status": "ok", "migration_percentage": pct, "total_requests": int(total),
                "error_rate_new": err_new, "error_rate_original": err_orig, "performance_speedup": speedup,
                "avg_time_new": m["avg_time_new"], "avg_time_original": m["avg_time_original"],
                "recommendation": self._get_recommendation(pct, err_new, speedup)}

    @staticmethod
    def _get_recommendation(migration_pct: float, error_rate: float, speedup: float) -> str:
        if error_rate > 5.0:
            return "High error rate detected. Consider rolling back or investigating issues."
        if speedup > 2.0 and error_rate < 1.0:
            return "Excellent performance improvement. Consider increasing rollout percentage."
        if migration_pct < 10.0:
            return "Early migration phase. Monitor closely and gradually increase traffic."
        if migration_pct > 90.0:
            return "Near complete migration. Consider full cutover."
        return "Migration progressing well. Continue gradual rollout."

    def to_prometheus(self, prefix: str = "bitnet_migration") -> str:
        """The counters in Prometheus text format."""
        m = self.snapshot()
        st = self.get_migration_status()
        lines = [f"# HELP {prefix}_requests_total Requests by implementation.",
                 f"# TYPE {prefix}_requests_total counter"]
        for impl, key in ((NEW, "new"), (ORIGINAL, "original"), ("other", "other")):
            lines.append(f'{prefix}_requests_total{{implementation="{impl}"}} {int(m[f"requests_{key}"])}')
        lines += [f"# HELP {prefix}_errors_total Failed requests by implementation.",
                  f"# TYPE {prefix}_errors_total counter"]
        for impl, key in ((NEW, "new"), (ORIGINAL, "original"), ("other", "other")):
            lines.append(f'{prefix}_errors_total{{implementation="{impl}"}} {int(m[f"errors_{key}"])}')
        lines += [f"# HELP {prefix}_request_seconds_total Time spent generating.",
                  f"# TYPE {prefix}_request_seconds_total counter"]
        for impl, key in ((NEW, "new"), (ORIGINAL, "original")):
            lines.append(f'{prefix}_request_seconds_total{{implementation="{impl}"}} {m[f"time_{key}"]}')
        lines += [f"# HELP {prefix}_tokens_total Tokens generated (counted with the tokenizer).",
                  f"# TYPE {prefix}_tokens_total counter"]
        for impl, key in ((NEW, "new"), (ORIGINAL, "original")):
            lines.append(f'{prefix}_tokens_total{{implementation="{impl}"}} {int(m[f"tokens_{key}"])}')
        lines += [f"# HELP {prefix}_percentage Share of requests served by bitnet_py (%).",
                  f"# TYPE {prefix}_percentage gauge", f"{prefix}_percentage {st.get('migration_percentage', 0.0)}",
                  f"# HELP {prefix}_speedup Average time of the original / bitnet_py.",
                  f"# TYPE {prefix}_speedup gauge", f"{prefix}_speedup {st.get('performance_speedup', 0.0)}"]
        return "\n".join(lines) + "\n"


class HybridInference:
    """Routes each request to bitnet_py with probability
    ``rollout_percentage`` (a fraction in [0, 1]: 0.1 sends 10%), else to the
    original; with no original, everything goes to bitnet_py.

    ``new`` defaults to ``SimpleInference(load_model(model_path),
    create_tokenizer(tokenizer_path))``; ``tokenizer`` (default: the new
    engine's) counts tokens. ``monitor`` (optional) records every request.
    ``seed`` makes the routing reproducible."""

    def __init__(self, rollout_percentage: float = 0.0, original: Any = None, new: Any = None, *,
                 model_path: str = "model.gguf", tokenizer_path: str = "tokenizer.model",
                 tokenizer: Any = None, monitor: Optional[MigrationMonitor] = None,
                 seed: Optional[int] = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rollout = 0.0
        self.rollout_percentage = rollout_percentage
        if new is None:
            from .inference import SimpleInference
            from .model import load_model
            from .tokenizer import create_tokenizer

            new = SimpleInference(load_model(model_path), create_tokenizer(tokenizer_path))
        self.new_engine = new
        self.original_engine = original
        self._new = _as_generate(new)
        self._orig = _as_generate(original) if original is not None else None
        self.tokenizer = tokenizer if tokenizer is not None else getattr(new, "tokenizer", None)
        self.monitor = monitor

    @property
    def original_available(self) -> bool:
        return self._orig is not None

    @property
    def rollout_percentage(self) -> float:
        return self._rollout

    @rollout_percentage.setter
    def rollout_percentage(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"rollout_percentage is a fraction in [0, 1] (0.1 = 10%), got {value!r}")
        with self._lock:
            self._rollout = v

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the tokenizer (no BOS/EOS)."""
        tok = self.tokenizer
        if tok is None:
            counter = getattr(self.new_engine, "count_tokens", None)
            if counter is None:
                raise ValueError("no tokenizer to count tokens with: pass tokenizer=")
            return int(counter(text))
        try:
            return len(tok.encode(text, bos=False, eos=False))
        except TypeError:
            return len(tok.encode(text))

    def _route_new(self, force_new: bool) -> bool:
        if force_new or self._orig is None:
            return True
        with self._lock:
            return self._rng.random() < self._rollout

    def _run(self, implementation: str, prompt: str) -> dict[str, Any]:
        fn = self._new if implementation == NEW else self._orig
        assert fn is not None
        t0 = time.perf_counter()
        try:
            text = fn(prompt)
        except Exception:
            dt = time.perf_counter() - t0
            if self.monitor is not None:
                self.monitor.record_request(implementation, False, dt)
            logger.warning("%s failed on a request", implementation, exc_info=True)
            raise
        dt = time.perf_counter() - t0
        n = self.count_tokens(text)
        if self.monitor is not None:
            self.monitor.record_request(implementation, True, dt, n)
        return {"response": text, "implementation": implementation, "generation_time": dt, "tokens": n,
                "tokens_per_second": n / dt if dt > 0 else 0.0}

    def generate(self, prompt: str, force_new: bool = False) -> dict[str, Any]:
        """``{response, implementation, generation_time, tokens,
        tokens_per_second}`` from the routed implementation (exceptions
        propagate, after being recorded)."""
        return self._run(NEW if self._route_new(force_new) else ORIGINAL, prompt)

    def generate_original(self, prompt: str) -> dict[str, Any]:
        if self._orig is None:
            raise RuntimeError("no original implementation was given")
        return self._run(ORIGINAL, prompt)

    def compare_implementations(self, prompt: str) -> dict[str, Any]:
        """Both implementations on ``prompt`` (bitnet_py first); with the
        original: ``comparison`` = ``{speedup`` (tokens/s ratio),
        ``time_improvement`` (% less time), ``outputs_match}``. The routing
        is not touched."""
        results: dict[str, Any] = {NEW: self._run(NEW, prompt)}
        if self._orig is not None:
            results[ORIGINAL] = self._run(ORIGINAL, prompt)
            n, o = results[NEW], results[ORIGINAL]
            results["comparison"] = {
                "speedup": (n["tokens_per_second"] / o["tokens_per_second"]
                            if o["tokens_per_second"] > 0 else float("inf")),
                "time_improvement": ((o["generation_time"] - n["generation_time"]) / o["generation_time"] * 100
                                     if o["generation_time"] > 0 else 0.0),
                "outputs_match": n["response"] == o["response"],
            }
        return results
