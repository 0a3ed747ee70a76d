"""The official GGUF's chat template against transformers' own expected ids
(../shared/testdata/golden: huggingface/transformers' BitNet integration
test), and the original ChatFormat's different split of the same text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

_core = pytest.importorskip("bitnet_py._core")

TESTDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata"
GOLDEN = TESTDATA / "golden" / "bitnet-b1.58-2B-4T_hf_expected.json"
TOKENIZER = TESTDATA / "tokenizers" / "llama3" / "tokenizer.model"


def test_template_ids_match_transformers() -> None:
    gen = json.loads(GOLDEN.read_text())["test_model_generation"]
    tok = _core.Tokenizer.load(str(TOKENIZER))
    ids = tok.encode_chat(gen["chat_messages"], template=True)
    assert ids == [tok.bos_id] + gen["prompt_ids_without_bos_verified_here"]
    assert tok.decode(ids) == gen["prompt_text_from_chat_template"]
    # The original ChatFormat encodes "User: " alone, so " What" becomes " ", "What".
    original = tok.encode_chat(gen["chat_messages"])
    assert original != ids and tok.decode(original) == tok.decode(ids)
