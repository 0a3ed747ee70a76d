"""The trained model shipped in bitnet_py/data (training/, MODEL_CARD.md).

* it is found by bitnet_py.data.default_model_path() and loads;
* its I2_S and TQ2_0 files give the same logits;
* on held-out text (training/heldout.txt: documents of the corpus that were
  never trained on), the perplexity our engine computes (through _core, and
  with the `bitnet perplexity` CLI when it is built) equals the PyTorch
  model's (training/model.py: the same BitLinear forward, int8 activations x
  ternary weights; built from the numbers in the GGUF file) within 1%, and is
  far below the uniform and unigram baselines;
* greedy continuations of a fixed set of prompts are identical in the engine
  and in PyTorch;
* `python -m bitnet_py generate "Once upon a time"` with no model prints text.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitnet_py import _core
from bitnet_py.data import default_model_path, model_path

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
HELDOUT = TRAINING / "heldout.txt"
N_CTX = 256
N_CHUNKS = 12
PROMPTS = ["Once upon a time", "In the beginning", "The king said unto them,", "A computer is",
           "Love is", "And it came to pass"]
N_NEW = 24

pytestmark = pytest.mark.skipif(default_model_path() is None, reason="no shipped model in bitnet_py/data")


@pytest.fixture(scope="module")
def gguf() -> str:
    p = default_model_path()
    assert p is not None
    return p


@pytest.fixture(scope="module")
def torch_model(gguf: str):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    sys.path.insert(0, str(TRAINING))
    try:
        from model import from_gguf
    finally:
        sys.path.remove(str(TRAINING))
    return from_gguf(gguf)


@pytest.fixture(scope="module")
def heldout_ids(gguf: str) -> list[int]:
    # bytes, as `bitnet perplexity` reads the file (no newline translation)
    return _core.Tokenizer.from_gguf(gguf).encode(HELDOUT.read_bytes(), bos=True)


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    lg = logits.astype(np.float64)
    m = lg.max(-1, keepdims=True)
    return np.log(np.exp(lg - m).sum(-1)) + m[:, 0] - lg[np.arange(len(targets)), targets]


def _chunks(ids: list[int]):
    """llama.cpp's perplexity chunks: (input with <s> first, original tokens)."""
    for c in range(N_CHUNKS):
        src = np.asarray(ids[c * N_CTX:(c + 1) * N_CTX], dtype=np.int64)
        x = src.copy()
        x[0] = 1
        yield x, src


def _ppl(logits_of, ids: list[int]) -> float:
    first = N_CTX // 2
    tot, cnt = 0.0, 0
    for x, src in _chunks(ids):
        nll = _nll(logits_of(x)[first:N_CTX - 1], src[first + 1:])
        tot += float(nll.sum())
        cnt += len(nll)
    return math.exp(tot / cnt)


def _engine_ppl(path: str, ids: list[int]) -> float:
    ctx = _core.Context(_core.Model(path), n_ctx=N_CTX, n_threads=2)

    def logits_of(x: np.ndarray) -> np.ndarray:
        ctx.kv_truncate(0, 0)
        return ctx.eval(x.tolist(), logits="all")

    return _ppl(logits_of, ids)


def _torch_ppl(m, ids: list[int]) -> float:
    import torch

    def logits_of(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return m(torch.from_numpy(x)[None])[0].numpy()

    return _ppl(logits_of, ids)


def test_default_model(gguf: str) -> None:
    assert Path(gguf).stat().st_size < 8 * 1024 * 1024
    with _core.Model(gguf) as m:
        cfg = m.config
        assert m.has_tokenizer
        assert 2_000_000 < m.n_params < 10_000_000
        assert m.n_vocab == 4096
    assert cfg["n_layer"] >= 2
    assert Path(gguf).parent / "MODEL_CARD.md" in list(Path(gguf).parent.iterdir())


def test_formats_same_logits(gguf: str) -> None:
    paths = [p for p in (model_path("i2_s"), model_path("tq2_0")) if p]
    if len(paths) < 2:
        pytest.skip("only one format shipped")
    tok = _core.Tokenizer.from_gguf(paths[0])
    ids = tok.encode("And it came to pass in those days, that the king sent forth", bos=True)
    out = [_core.Context(_core.Model(p), n_ctx=64, n_threads=2).eval(ids, logits="all") for p in paths]
    # same ternary values; I2_S keeps the F32 scale, TQ2_0 an F16 copy per
    # 256-block (relative error <= 2**-11), so the logits differ by ~1e-2
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=0.15)
    assert (out[0].argmax(-1) == out[1].argmax(-1)).all()


def test_perplexity_engine_vs_torch_and_baselines(gguf: str, torch_model, heldout_ids: list[int]) -> None:
    assert len(heldout_ids) >= N_CHUNKS * N_CTX
    ours = _engine_ppl(gguf, heldout_ids)
    ref = _torch_ppl(torch_model, heldout_ids)
    assert abs(ours / ref - 1) < 0.01, (ours, ref)
    n_vocab = torch_model.cfg.n_vocab
    # unigram fitted on the scored text itself (an optimistic unigram baseline)
    scored = np.concatenate([src[N_CTX // 2 + 1:] for _, src in _chunks(heldout_ids)])
    p = (np.bincount(scored, minlength=n_vocab) + 1.0) / (len(scored) + n_vocab)
    unigram = math.exp(-float(np.log(p[scored]).mean()))
    assert ours < unigram / 3, (ours, unigram)
    assert ours < n_vocab / 20, (ours, n_vocab)


def test_perplexity_cli(gguf: str, torch_model, heldout_ids: list[int]) -> None:
    exe = REPO / "build" / "bitnet"
    if not exe.exists():
        pytest.skip("build/bitnet not built")
    r = subprocess.run([str(exe), "perplexity", "-m", gguf, "-f", str(HELDOUT), "--ctx", str(N_CTX),
                        "--chunks", str(N_CHUNKS), "-t", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("Final estimate: PPL = ")]
    assert line, r.stdout
    cli = float(line[0].split("=")[1].split()[0])
    ref = _torch_ppl(torch_model, heldout_ids)
    assert abs(cli / ref - 1) < 0.01, (cli, ref)


def _greedy_engine(path: str, ids: list[int]) -> tuple[list[int], list[float]]:
    ctx = _core.Context(_core.Model(path), n_ctx=len(ids) + N_NEW + 1, n_threads=2)
    lg = ctx.eval(ids, logits="last")[-1]
    out, margins = [], []
    for _ in range(N_NEW):
        top = np.sort(lg)[-2:]
        margins.append(float(top[1] - top[0]))
        out.append(int(np.argmax(lg)))
        lg = ctx.eval([out[-1]], logits="last")[-1]
    return out, margins


def _greedy_torch(m, ids: list[int]) -> list[int]:
    import torch

    toks = list(ids)
    with torch.no_grad():
        for _ in range(N_NEW):
            toks.append(int(m(torch.tensor([toks]))[0, -1].argmax()))
    return toks[len(ids):]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_engine_equals_torch(gguf: str, torch_model, prompt: str) -> None:
    tok = _core.Tokenizer.from_gguf(gguf)
    ids = tok.encode(prompt, bos=True)
    ours, margins = _greedy_engine(gguf, ids)
    ref = _greedy_torch(torch_model, ids)
    if ours != ref:
        i = next(j for j in range(N_NEW) if ours[j] != ref[j])
        # only a near-tie of the top two logits (float summation order) may
        # tell them apart
        assert margins[i] < 1e-3, (prompt, i, tok.decode(ours), tok.decode(ref))
    text = tok.decode(ours)
    assert len(text.strip()) > 0


def test_cli_generate_default_model() -> None:
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "bitnet_py", "generate", "Once upon a time", "-n", "16",
                        "--greedy"], capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.strip()) > len("Once upon a time"), r.stdout
