"""Where the loader puts the weights a decode step streams: repacked
BitLinear weights and the head go into huge-page-advised blocks, the head
copied out of the file mapping (whose pages are then dropped). None of this
may change a logit: the same file gives the same bits with the file mapped
or read into memory, with the huge-page advice on or off, and with a second
model of the same file loaded beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitnet_py import _core, synthetic

TOKENS = [1, 5, 77, 300, 4000, 8000, 2]


@pytest.fixture(scope="module", params=["f16", "q6_k"])
def model_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a head of 8192 x 256: 4 MiB in F16, 1.6 MiB in Q6_K (copied only from
    # 2 MiB up, so the Q6_K file checks the path that keeps the mapping)
    m = synthetic.make_model(n_vocab=8192, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=768,
                             seed=3)
    path = tmp_path_factory.mktemp("wm") / f"m-{request.param}.gguf"
    synthetic.write_gguf(m, path, weight_type="tq2_0", head_type=request.param)
    return path


def logits(model: _core.Model) -> np.ndarray:
    with _core.Context(model, n_ctx=32) as c:
        return c.eval(TOKENS, logits="all").copy()


def test_same_bits_however_loaded(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mapped = _core.Model(str(model_file))
    ref = logits(mapped)
    assert np.isfinite(ref).all() and ref.std() > 0
    in_memory = logits(_core.Model(str(model_file), use_mmap=False))
    np.testing.assert_array_equal(in_memory, ref)
    monkeypatch.setenv("BITNET_HUGEPAGES", "0")
    np.testing.assert_array_equal(logits(_core.Model(str(model_file))), ref)
    monkeypatch.delenv("BITNET_HUGEPAGES")
    # a second model of the same file drops pages of its own mapping only
    second = _core.Model(str(model_file))
    np.testing.assert_array_equal(logits(second), ref)
    np.testing.assert_array_equal(logits(mapped), ref)
    # moving the head does not count it twice
    in_memory_bytes = _core.Model(str(model_file), use_mmap=False).weight_bytes
    assert mapped.weight_bytes == second.weight_bytes == in_memory_bytes
