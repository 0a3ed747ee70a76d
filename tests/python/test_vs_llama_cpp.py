"""The engine vs llama.cpp (PyPI llama-cpp-python) on the SiLU `bitnet` arch.

transformers has no SiLU-gated BitNet, so upstream llama.cpp's `bitnet` arch
(build_bitnet: sub-norms, SiLU(gate) * up, NEOX RoPE, tied head = token_embd)
is the reference for that variant. Both read the same TQ1_0 / TQ2_0 files
written by bitnet_py.synthetic.

llama.cpp's arithmetic differs from BitNet's in one documented place: it does
not quantize activations per token; its TQ1_0/TQ2_0 dot products quantize the
activations to Q8_K, per 256-value block (d = max / -127 with the signed max,
round to nearest). So:

* with n_embd = n_ff = 256 every BitLinear input is one block, Q8_K equals
  BitNet's per-token int8, and the two agree to float rounding (modulo an
  activation rounding flip, see test_vs_transformers);
* with n_ff = 768 the ffn_down input has three blocks, and the logits differ
  by quantization noise (~0.4 on logits of std 4, far above 1e-2). The
  argmax/greedy comparison then needs clear top-1 margins: the "sharp"
  synthetic model (make_model(bigram=True)) gives them (>= 3 vs noise < 1).

Independently of the engine, llama.cpp is checked against the project's
numpy reference with Q8_K emulation (synthetic.reference_logits(...,
act_quant="q8k")): they agree to ~1e-5, which shows that the files mean to
llama.cpp exactly what the generator intends (names, metadata, tied head,
NEOX RoPE without q/k permutation).

llama.cpp runs with an F32 KV cache and an F32 token embedding (its default
F16 cache would add 1e-3 relative noise), one thread, no flash attention.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from bitnet_py import synthetic as S

_core = pytest.importorskip("bitnet_py._core")
llama_cpp = pytest.importorskip("llama_cpp")

from _helpers import engine, engine_greedy  # noqa: E402

TIGHT = 1e-3
N_NEW = 32
PROMPT = [int(t) for t in np.random.default_rng(5).integers(3, 512, 32)]
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1

MODELS: dict[str, dict[str, Any]] = {
    # one Q8_K block per BitLinear input: same math as per-token int8
    "ff256": dict(seed=1, n_ff=256),
    # realistic, three blocks in ffn_down's input
    "ff768": dict(seed=1),
    # clear margins for argmax / greedy under per-block vs per-token noise
    "sharp": dict(seed=1, bigram=True, gain=0.3, qk_gain=0.7),
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """llama.cpp logs to fd 2 even with verbose=False."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as dn:
            os.dup2(dn.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _llama(path: Path, kv: int = GGML_TYPE_F32) -> Any:
    with _quiet():
        return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_threads=1,
                               n_threads_batch=1, logits_all=True, verbose=False,
                               type_k=kv, type_v=kv, flash_attn=False, vocab_only=False)


def _llama_default(path: Path) -> Any:
    """llama.cpp as users run it: F16 KV cache, default attention."""
    with _quiet():
        return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_threads=1,
                               n_threads_batch=1, logits_all=True, verbose=False)


def _llama_prompt_logits(llm: Any, tokens: list[int]) -> np.ndarray:
    llm.reset()
    with _quiet():
        llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float64)


def _llama_greedy(llm: Any, tokens: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    llm.reset()
    out, steps = [], []
    with _quiet():
        llm.eval(tokens)
        for _ in range(n):
            lg = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            steps.append(lg)
            t = int(np.argmax(lg))
            out.append(t)
            llm.eval([t])
    return out, steps


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[S.SyntheticModel, Path]]:
    d = tmp_path_factory.mktemp("llama")
    out = {}
    for label, kw in MODELS.items():
        m = S.make_model("bitnet", **kw)
        for wt in ("tq1_0", "tq2_0"):
            out[(label, wt)] = (m, S.write_gguf(m, d / f"{label}-{wt}.gguf", wt, "f32"))
    return out


@pytest.mark.parametrize("wt", ["tq1_0", "tq2_0"])
@pytest.mark.parametrize("label", list(MODELS))
def test_llama_cpp_reads_our_files_as_intended(files: dict, label: str, wt: str) -> None:
    """llama.cpp vs the numpy reference with llama.cpp's Q8_K activations."""
    m, p = files[(label, wt)]
    LL = _llama_prompt_logits(_llama(p), PROMPT)
    R = S.reference_logits(m, PROMPT, act_quant="q8k")
    d = float(np.max(np.abs(LL - R)))
    p0 = S.first_divergence(LL, R, TIGHT)
    print(f"\n[llama.cpp vs numpy Q8_K reference] {label} {wt}: max |diff| {d:.3e}, "
          f"first position over {TIGHT}: {p0}")
    if p0 is None:
        assert np.array_equal(LL.argmax(1), R.argmax(1))
    else:  # an activation rounding flip (float32 vs float64): tie-aware
        assert d < 1.5
        assert S.real_argmax_disagreements(LL[p0:], R[p0:], noise=d) == []


@pytest.mark.parametrize("wt", ["tq1_0", "tq2_0"])
@pytest.mark.parametrize("label", list(MODELS))
def test_prompt_logits_vs_llama_cpp(files: dict, label: str, wt: str) -> None:
    m, p = files[(label, wt)]
    LL = _llama_prompt_logits(_llama(p), PROMPT)
    L = np.asarray(engine(p).eval(PROMPT, logits="all"), dtype=np.float64)
    d = float(np.max(np.abs(L - LL)))
    p0 = S.first_divergence(L, LL, TIGHT)
    agree = int((L.argmax(1) == LL.argmax(1)).sum())
    print(f"\n[llama.cpp] {label} {wt}: max |logit diff| {d:.3e}, argmax agree {agree}/{len(PROMPT)}, "
          f"min top-2 margin {S.top2_margin(LL).min():.3f}, first position over {TIGHT}: {p0}")
    if label == "sharp":
        # per-block vs per-token noise, far below the margins: exact argmax
        assert d < 1.5
        assert agree == len(PROMPT)
    elif p0 is None:
        assert agree == len(PROMPT)
    else:
        # ff256: an activation rounding flip; ff768: per-block vs per-token
        # quantization noise. Tie-aware from the first divergence.
        if label == "ff256":
            name, v, dist = S.closest_rounding_boundary(m, PROMPT, p0)
            print(f"  activation rounding flip at position {p0}: {name} input x*s = {v:.7f} "
                  f"is {dist:.2e} from a .5 boundary (float32 order decides its rounding)")
            assert dist < 1e-3
        assert d < 1.5
        assert S.real_argmax_disagreements(L[p0:], LL[p0:], noise=d) == []


@pytest.mark.parametrize("wt", ["tq1_0", "tq2_0"])
@pytest.mark.parametrize("label", ["sharp", "ff256"])
def test_greedy_vs_llama_cpp(files: dict, label: str, wt: str) -> None:
    m, p = files[(label, wt)]
    theirs, lsteps = _llama_greedy(_llama(p), PROMPT, N_NEW)
    ours, esteps = engine_greedy(p, PROMPT, N_NEW)
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    print(f"\n[llama.cpp] {label} {wt}: greedy {N_NEW} tokens "
          f"{'identical' if same is None else f'diverge at step {same}'}: {ours[:12]}...")
    if label == "sharp" or same is None:
        assert ours == theirs
        return
    noise = float(np.max(np.abs(esteps[same] - lsteps[same])))
    gap = float(lsteps[same][theirs[same]] - lsteps[same][ours[same]])
    print(f"  step {same}: llama.cpp prefers {theirs[same]} by {gap:.4f}; noise {noise:.4f}")
    assert gap <= noise


@pytest.mark.parametrize("wt", ["tq1_0", "tq2_0"])
def test_f16_kv_cache_vs_llama_cpp(files: dict, wt: str) -> None:
    """Our F16 KV cache (kv_type="f16") against llama.cpp's (type_k/type_v
    F16, no flash attention).

    Both round keys and values to half on store. llama.cpp also rounds the
    query and the softmax weights to half for its F16 dot products, where we
    keep them in float32; so only the first position, whose attention is its
    own value row (softmax weight exactly 1), isolates the store rounding:
    there the two agree to float noise, while our F32 cache is off by the
    rounding. Later positions differ by llama.cpp's extra roundings, checked
    tie-aware, and the sharp model's greedy continuation is identical."""
    m, p = files[("ff256", wt)]
    LL16 = _llama_prompt_logits(_llama(p, GGML_TYPE_F16), PROMPT)
    L16 = np.asarray(engine(p, "f16").eval(PROMPT, logits="all"), dtype=np.float64)
    L32 = np.asarray(engine(p).eval(PROMPT, logits="all"), dtype=np.float64)
    first = float(np.max(np.abs(L16[0] - LL16[0])))
    first32 = float(np.max(np.abs(L32[0] - LL16[0])))
    d = float(np.max(np.abs(L16 - LL16)))
    print(f"\n[llama.cpp F16 KV] ff256 {wt}: position 0 max |diff| {first:.2e} "
          f"(our F32 cache: {first32:.2e}); all positions {d:.3e}")
    assert first < TIGHT
    assert first32 > 10 * first
    assert d < 1.5
    assert S.real_argmax_disagreements(L16, LL16, noise=d) == []
    ms, ps = files[("sharp", wt)]
    theirs, _ = _llama_greedy(_llama(ps, GGML_TYPE_F16), PROMPT, N_NEW)
    ours, steps = engine_greedy(ps, PROMPT, N_NEW, "f16")
    assert ours == theirs
    # two threads (prompt split by token, decode steps by row ranges): same bits
    two = _core.Context(_core.Model(str(ps)), n_ctx=128, n_threads=2, kv_type="f16")
    lg = two.eval(PROMPT, logits="last")[-1]
    for t, want in zip(ours, steps):
        np.testing.assert_array_equal(lg, want.astype(np.float32))
        lg = two.eval([t], logits="last")[-1]


@pytest.mark.parametrize("wt", ["tq1_0", "tq2_0"])
def test_sharp_model_llama_cpp_defaults(tmp_path: Path, wt: str) -> None:
    """Also with llama.cpp's defaults (F16 KV cache) and an F16 embedding:
    the argmax and the greedy continuation do not move."""
    m = S.make_model("bitnet", **MODELS["sharp"])
    p = S.write_gguf(m, tmp_path / f"sharp-{wt}-f16.gguf", wt, "f16")
    llm = _llama_default(p)
    LL = _llama_prompt_logits(llm, PROMPT)
    L = np.asarray(engine(p).eval(PROMPT, logits="all"), dtype=np.float64)
    d = float(np.max(np.abs(L - LL)))
    print(f"\n[llama.cpp defaults] sharp {wt} f16 head: max |logit diff| {d:.3e}")
    assert np.array_equal(L.argmax(1), LL.argmax(1))
    theirs, _ = _llama_greedy(llm, PROMPT, N_NEW)
    ours, _ = engine_greedy(p, PROMPT, N_NEW)
    assert ours == theirs
