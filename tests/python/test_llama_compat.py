"""bitnet_py.llama_compat.Llama: the llama-cpp-python surface."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import bitnet_py as bn
from bitnet_py.llama_compat import Llama, LlamaCache, llama_backend_free, llama_backend_init


@pytest.fixture(scope="module")
def llm(ckpt: Path, tok_path: str) -> Llama:
    return Llama(model_path=str(ckpt / "model.gguf"), n_ctx=256, tokenizer_path=tok_path, verbose=False)


def test_sizes_and_tokens(llm: Llama) -> None:
    assert llm.n_ctx() == 256 and llm.n_vocab() == 128256 and llm.n_embd() == 256
    ids = llm.tokenize(b"Hello world")
    assert ids[0] == llm.token_bos() == 128000
    assert llm.detokenize(ids) == b"Hello world"
    assert llm.tokenize("Hello", add_bos=False) == ids[1:2]
    assert llm.tokenize(b"<|eot_id|>", add_bos=False, special=True) == [128009]
    assert 128009 not in llm.tokenize(b"<|eot_id|>", add_bos=False)
    assert llm.token_eos() == 128001
    assert "Llama(model_path=" in repr(llm)


def test_completion_matches_greedy(llm: Llama) -> None:
    si = bn.SimpleInference(llm._model, llm._engine.tokenizer and bn.Tokenizer(llm._engine.tokenizer),
                            bn.InferenceConfig(do_sample=False, max_new_tokens=12))
    ref = si.generate("Hello, my name is")
    out = llm("Hello, my name is", max_tokens=12, temperature=0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    ch = out["choices"][0]
    assert ch["text"] == ref and ch["index"] == 0 and ch["finish_reason"] in ("length", "stop")
    assert out["usage"]["prompt_tokens"] == 6 and out["usage"]["completion_tokens"] <= 12
    assert out["usage"]["total_tokens"] == 6 + out["usage"]["completion_tokens"]
    chunks = list(llm.create_completion("Hello, my name is", max_tokens=12, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == ref
    assert chunks[-1]["choices"][0]["finish_reason"] is not None
    echo = llm("Hello, my name is", max_tokens=12, temperature=0, echo=True)
    assert echo["choices"][0]["text"] == "Hello, my name is" + ref


def test_stop_strings(llm: Llama) -> None:
    full = llm("Hello, my name is", max_tokens=16, temperature=0)["choices"][0]["text"]
    assert len(full) > 6
    stop = full[3:6]
    out = llm("Hello, my name is", max_tokens=16, temperature=0, stop=[stop])
    assert out["choices"][0]["text"] == full[: full.index(stop)]
    assert out["choices"][0]["finish_reason"] == "stop"
    chunks = list(llm("Hello, my name is", max_tokens=16, temperature=0, stop=stop, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == full[: full.index(stop)]


def test_chat_completion(llm: Llama) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = llm.create_chat_completion(msgs, max_tokens=10, temperature=0)
    assert out["object"] == "chat.completion"
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and isinstance(msg["content"], str)
    chunks = list(llm.create_chat_completion(msgs, max_tokens=10, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == msg["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] is not None
    with pytest.raises(bn.ConfigurationError):
        llm.create_chat_completion([])


def test_sampling_seeded(llm: Llama) -> None:
    a = llm("Once", max_tokens=8, temperature=1.0, seed=4)["choices"][0]["text"]
    b = llm("Once", max_tokens=8, temperature=1.0, seed=4)["choices"][0]["text"]
    assert a == b


def test_low_level_eval_sample_generate(llm: Llama) -> None:
    llm.reset()
    ids = llm.tokenize(b"Hello, my name is")
    llm.eval(ids)
    assert llm.n_tokens == len(ids) and llm.scores is not None
    t = llm.sample(temp=0)
    ref = llm("Hello, my name is", max_tokens=1, temperature=0)["choices"][0]["text"]
    assert llm.detokenize([t]).decode("utf-8", "replace") == ref
    gen = llm.generate(ids, temp=0)
    toks = [next(gen) for _ in range(5)]
    assert toks[0] == t and len(toks) == 5
    llm.reset()
    assert llm.n_tokens == 0
    with pytest.raises(bn.InferenceError):
        llm.sample()


def test_errors_and_misc(llm: Llama, tmp_path: Path) -> None:
    with pytest.raises(bn.ConfigurationError):
        llm("x", logprobs=2)
    with pytest.raises(FileNotFoundError):
        Llama(model_path=str(tmp_path / "none.gguf"))
    with pytest.raises(bn.InferenceError):
        llm.create_embedding("x")
    cache = LlamaCache(capacity_bytes=1 << 20)
    llm.set_cache(cache)
    assert pickle.loads(pickle.dumps(cache)).capacity_bytes == 1 << 20
    llama_backend_init()
    llama_backend_free()
