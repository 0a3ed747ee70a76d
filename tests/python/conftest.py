"""Shared fixtures of the Python tests.

Reference data lives in ``../shared/testdata`` next to the repository (tests
run from the repository root); ``BITNET_TESTDATA`` overrides the location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _testdata_dir() -> Path:
    env = os.environ.get("BITNET_TESTDATA")
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "testdata").resolve()


TESTDATA = _testdata_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def testdata() -> Path:
    """``../shared/testdata`` (skips the test when it is missing)."""
    if not TESTDATA.is_dir():
        pytest.skip(f"test data not found at {TESTDATA}")
    return TESTDATA


@pytest.fixture()
def tmp_dir(tmp_path: Path) -> Path:
    """A fresh temporary directory for files a test writes."""
    return tmp_path


@pytest.fixture(scope="session")
def tiny_gguf(testdata: Path) -> Path:
    """The llama-2-tiny-random GGUF (1 layer, n_embd 8, LLaMA vocab)."""
    p = testdata / "gguf" / "llama-2-tiny-random.gguf"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def tok_path(testdata: Path) -> str:
    """The real Llama-3 ``tokenizer.model`` (skips the test when it is missing)."""
    p = testdata / "tokenizers" / "llama3" / "tokenizer.model"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return str(p)


@pytest.fixture(scope="session")
def ckpt(tok_path: str) -> Path:
    """A tiny synthetic checkpoint directory (``model.gguf`` and the Llama-3
    ``tokenizer.model``) from ``bitnet_py.testing.tiny_checkpoint``."""
    from bitnet_py.testing import tiny_checkpoint

    return tiny_checkpoint(tokenizer=tok_path)


@pytest.fixture()
def model_env(ckpt: Path, tok_path: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ckpt``, with BITNET_MODEL and BITNET_TOKENIZER pointing at its model
    and tokenizer for the code under test (examples/, notebooks/)."""
    monkeypatch.setenv("BITNET_MODEL", str(ckpt / "model.gguf"))
    monkeypatch.setenv("BITNET_TOKENIZER", tok_path)
    return ckpt


@pytest.fixture(scope="session")
def gguf_manifest(testdata: Path) -> list[dict[str, Any]]:
    with open(testdata / "gguf" / "gguf_manifest.json", encoding="utf-8") as f:
        data: list[dict[str, Any]] = json.load(f)
    return data


@pytest.fixture(scope="session")
def tiny_reference(testdata: Path) -> dict[str, Any]:
    """llama.cpp's outputs for the tiny model (prompt ids, logits, greedy ids)."""
    with open(testdata / "gguf" / "llama-2-tiny-random.reference.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
