"""System information, threads, model listing, and measurement helpers.

The benchmarks measure: ``compare_performance`` and ``validate_outputs``
run a second engine that the caller passes in (no built-in baselines)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import _core
from ._core import ConfigurationError
from ._engine import check_float, check_int, settings
from ._memory import rss_bytes
from .config import GenArgs, InferenceConfig, Stats, PhaseStats
from .model import BitNetModel, PathLike
from .tokenizer import ChatFormat, Tokenizer, as_core_tokenizer

MODEL_EXTENSIONS = (".gguf", ".safetensors", ".bin", ".pt")


def get_system_info() -> dict[str, Any]:
    """Versions, the build, CPU features detected at run time, the kernel
    set selected for this CPU, and threads."""
    cores = os.cpu_count() or 1
    return {
        "version": _core.__version__,
        "bitnet_py_version": _core.__version__,
        "libbitnet_version": _core.version(),
        "build": _core.build_info(),
        "python_version": platform.python_version(),
        "target_arch": platform.machine(),
        "target_os": platform.system().lower(),
        "features": ["cpu"],
        "cpu_features": _core.cpu_features(),
        "kernels": _core.kernel_name(),
        "num_threads": settings.n_threads or cores,
        "cpu_count": cores,
    }


#: Device names (all run on the CPU).
CPU, CUDA, METAL = "cpu", "cuda", "metal"
#: bitnet.cpp's quantization names (as the earlier native module had them).
QuantizationType = {"I2S": "i2s", "TL1": "tl1", "TL2": "tl2"}


def get_production_features() -> dict[str, bool]:
    """What this build offers to servers built on it."""
    return {"async": True, "streaming": True, "batching": True, "cancellation": True,
            "thread_safe_models": True, "memory_mapping": True, "memory_monitoring": True,
            "gpu": False}


def set_num_threads(n: int) -> None:
    """Threads per evaluation for contexts used from now on (0: all cores)."""
    settings.n_threads = check_int("n", n, 0)


def get_num_threads() -> int:
    return settings.n_threads or (os.cpu_count() or 1)


def get_device_info() -> dict[str, Any]:
    """Devices bitnet_py can run on (the CPU)."""
    return {"cpu": {"cores": os.cpu_count() or 1, "available": True,
                    "features": _core.cpu_features(), "kernels": _core.kernel_name()},
            "gpu": {"cuda_available": False, "metal_available": False, "cuda_devices": 0}}


def is_cuda_available() -> bool:
    return False


def is_metal_available() -> bool:
    return False


def get_cuda_device_count() -> int:
    return 0


def list_available_models(directory: PathLike = ".") -> list[str]:
    """Sorted names of the model files (.gguf, .safetensors, .bin, .pt) in
    ``directory``; [] when it does not exist."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if f.lower().endswith(MODEL_EXTENSIONS)
                  and os.path.isfile(os.path.join(d, f)))


# ---------------------------------------------------------------------------
# Running any engine
# ---------------------------------------------------------------------------

Runner = Callable[[str], tuple[str, int]]


def _count(tokenizer: Any, text: str) -> int:
    tok = as_core_tokenizer(tokenizer) if tokenizer is not None else None
    if tok is None:
        return len(text.split())
    return len(tok.encode(text, disallowed_special=()))


def _encode(tokenizer: Any, prompt: str) -> list[int]:
    if isinstance(tokenizer, (Tokenizer, ChatFormat)):
        t = tokenizer.tokenizer if isinstance(tokenizer, ChatFormat) else tokenizer
        return t.encode(prompt, bos=True, eos=False)
    if hasattr(tokenizer, "encode"):
        try:
            return list(tokenizer.encode(prompt, bos=True, eos=False))
        except TypeError:
            return list(tokenizer.encode(prompt))
    raise ConfigurationError("a tokenizer is needed to encode prompts for this engine")


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    if isinstance(tokenizer, ChatFormat):
        return tokenizer.decode(ids)
    return str(tokenizer.decode(list(ids)))


def make_runner(engine: Any, tokenizer: Any, max_new_tokens: int) -> Runner:
    """A function prompt -> (text, new tokens) for ``engine``: a BitNetModel,
    our SimpleInference/InferenceEngine, an object with the original's
    ``generate_all``, one with ``generate(prompt)``, a llama-cpp-python
    style ``create_completion``, or a plain callable."""
    from .inference import InferenceEngine, SimpleInference

    if isinstance(engine, BitNetModel):
        engine = SimpleInference(engine, tokenizer, InferenceConfig(max_new_tokens=max_new_tokens, do_sample=False))
    if isinstance(engine, SimpleInference):
        si = engine

        def run_si(p: str) -> tuple[str, int]:
            text = si.generate(p, max_new_tokens=max_new_tokens)
            return text, _count(si.engine.tokenizer, text)

        return run_si
    if isinstance(engine, InferenceEngine) or hasattr(engine, "generate_all"):
        ie = engine
        tok = tokenizer if tokenizer is not None else getattr(ie, "tokenizer", None)

        def run_ie(p: str) -> tuple[str, int]:
            ga: Any = getattr(ie, "gen_args", None)
            old = getattr(ga, "gen_length", None)
            if old is not None:
                ga.gen_length = max_new_tokens  # for this call only
            try:
                _, toks = ie.generate_all([_encode(tok, p)], False, False)
            finally:
                if old is not None:
                    ga.gen_length = old
            ids = [t for t in toks[0] if t not in getattr(tok, "stop_tokens", ())]
            return _decode(tok, ids), len(toks[0])

        return run_ie
    if hasattr(engine, "create_completion"):
        def run_llama(p: str) -> tuple[str, int]:
            r = engine.create_completion(p, max_tokens=max_new_tokens, temperature=0.0)
            return r["choices"][0]["text"], int(r.get("usage", {}).get("completion_tokens", 0))

        return run_llama
    if hasattr(engine, "generate"):
        def run_gen(p: str) -> tuple[str, int]:
            text = str(engine.generate(p))
            return text, _count(tokenizer, text)

        return run_gen
    if callable(engine):
        def run_call(p: str) -> tuple[str, int]:
            text = str(engine(p))
            return text, _count(tokenizer, text)

        return run_call
    raise ConfigurationError(f"cannot run {type(engine).__name__}: pass a model, an inference engine, "
                             "an object with generate()/generate_all(), or a callable")


def _prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    out = list(prompts)
    if not out:
        raise ConfigurationError("no prompts: give at least one")
    return out


def benchmark_inference(model: Any, tokenizer: Any, prompts: Sequence[str], gen_args: Optional[GenArgs] = None,
                        num_runs: int = 1, warmup_runs: int = 1) -> dict[str, Any]:
    """Time generation of every prompt ``num_runs`` times (after
    ``warmup_runs`` untimed runs); tokens are those really generated."""
    num_runs = check_int("num_runs", num_runs, 1)
    warmup_runs = check_int("warmup_runs", warmup_runs, 0)
    ga = gen_args if gen_args is not None else GenArgs(gen_length=128)
    plist = _prompts(prompts)
    run = make_runner(model, tokenizer, ga.gen_length)
    for _ in range(warmup_runs):
        for p in plist:
            run(p)
    detailed: list[Stats] = []
    total_time = 0.0
    total_tokens = 0
    times = []
    for _ in range(num_runs):
        st = Stats()
        t0 = time.perf_counter()
        n = 0
        for p in plist:
            _, k = run(p)
            n += k
        dt = time.perf_counter() - t0
        st.phases.append(PhaseStats("total", n, dt))
        st.memory_used = rss_bytes() / 2**30
        detailed.append(st)
        total_time += dt
        total_tokens += n
        times.append(dt)
    avg_time = total_time / num_runs
    return {
        "num_runs": num_runs,
        "num_prompts": len(plist),
        "total_time": total_time,
        "avg_time": avg_time,
        "std_time": statistics.pstdev(times) if len(times) > 1 else 0.0,
        "avg_tokens_per_second": total_tokens / total_time if total_time > 0 else 0.0,
        "avg_latency": avg_time / len(plist),
        "total_tokens": total_tokens,
        "detailed_stats": detailed,
    }


def benchmark_model(model_path: PathLike, prompts: Sequence[str], tokenizer_path: Optional[PathLike] = None,
                    num_runs: int = 3, warmup_runs: int = 1, gen_length: int = 128) -> dict[str, Any]:
    """Load ``model_path`` and :func:`benchmark_inference` it."""
    from .model import load_model
    from .tokenizer import create_tokenizer

    m = load_model(model_path)
    try:
        tok = create_tokenizer(tokenizer_path) if tokenizer_path is not None else None
        res = benchmark_inference(m, tok, prompts, GenArgs(gen_length=gen_length), num_runs, warmup_runs)
        res["load_time_s"] = None
        return res
    finally:
        m.close()


def compare_performance(rust_model: Any, python_model: Any, tokenizer: Any, prompts: Sequence[str],
                        num_runs: int = 3, warmup_runs: int = 1, max_new_tokens: int = 32) -> dict[str, Any]:
    """Benchmark two engines on the same prompts. ``rust_model`` is ours
    (the name is the documented one), ``python_model`` the engine to
    compare against (the original's FastGen, another model, any callable).
    ``speedup`` = ours tokens/s over theirs."""
    ga = GenArgs(gen_length=check_int("max_new_tokens", max_new_tokens, 1))
    ours = benchmark_inference(rust_model, tokenizer, prompts, ga, num_runs, warmup_runs)
    theirs = benchmark_inference(python_model, tokenizer, prompts, ga, num_runs, warmup_runs)
    a, b = ours["avg_tokens_per_second"], theirs["avg_tokens_per_second"]
    ta, tb = ours["avg_time"], theirs["avg_time"]
    return {
        "rust_results": ours,
        "python_results": theirs,
        "speedup": a / b if b > 0 else float("inf"),
        "time_improvement": tb / ta if ta > 0 else float("inf"),
        "improvement_percentage": (tb - ta) / tb * 100.0 if tb > 0 else 0.0,
    }


def _logits_of(engine: Any, tokenizer: Any, prompt: str) -> Optional[np.ndarray]:
    m = engine.prefill_model if hasattr(engine, "prefill_model") else getattr(engine, "model", engine)
    if not hasattr(m, "forward"):
        return None
    ids = _encode(tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None), prompt)
    out = m.forward(np.asarray(ids, dtype=np.int32))
    return np.asarray(out, dtype=np.float32)


def validate_outputs(rust_model: Any, python_model: Any, tokenizer: Any, prompts: Sequence[str],
                     tolerance: float = 1e-6, max_new_tokens: int = 16) -> dict[str, Any]:
    """Compare two engines: greedy text for each prompt and, when both
    expose ``forward``, the logits over the prompt (``max_difference``).
    A prompt matches when the texts are equal and the logits agree within
    ``tolerance``."""
    tolerance = check_float("tolerance", tolerance, 0.0)
    plist = _prompts(prompts)
    ra = make_runner(rust_model, tokenizer, max_new_tokens)
    rb = make_runner(python_model, tokenizer, max_new_tokens)
    details = []
    max_diff = 0.0
    n_match = 0
    for p in plist:
        ta, _ = ra(p)
        tb, _ = rb(p)
        diff: Optional[float] = None
        la = _logits_of(rust_model, tokenizer, p)
        lb = _logits_of(python_model, tokenizer, p)
        if la is not None and lb is not None and la.shape == lb.shape:
            diff = float(np.max(np.abs(la - lb))) if la.size else 0.0
            max_diff = max(max_diff, diff)
        ok = ta == tb and (diff is None or diff <= tolerance)
        n_match += ok
        details.append({"prompt": p, "rust_output": ta, "python_output": tb, "matches": ok,
                        "max_logit_difference": diff})
    return {"all_match": n_match == len(plist), "max_difference": max_diff, "tolerance": tolerance,
            "num_prompts": len(plist), "num_matches": n_match, "detailed_results": details}


__all__ = ["CPU", "CUDA", "METAL", "QuantizationType", "get_production_features", "get_system_info", "set_num_threads", "get_num_threads", "get_device_info", "is_cuda_available",
           "is_metal_available", "get_cuda_device_count", "list_available_models", "benchmark_inference",
           "benchmark_model", "compare_performance", "validate_outputs", "make_runner"]
