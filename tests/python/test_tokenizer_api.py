"""bitnet_py._core.Tokenizer: loading, special-token semantics, decoding,
streaming, chat format, errors, threads; the reference vectors through the
Python API (the C tests check them in depth)."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import pytest

import bitnet_py
import bitnet_py._core as core

TESTDATA = Path(
    os.environ.get("BITNET_TESTDATA")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata"
).resolve()
TOK = TESTDATA / "tokenizers"

if not (TOK / "llama3" / "tokenizer.model").is_file():
    pytest.skip(f"tokenizer data not found under {TOK}", allow_module_level=True)


@pytest.fixture(scope="module")
def l3():
    return core.Tokenizer(TOK / "llama3" / "tokenizer.model")


@pytest.fixture(scope="module")
def sp():
    return core.Tokenizer.load(TOK / "llama-spm" / "tokenizer.model")


def test_llama3_properties(l3):
    assert l3.kind == "bpe"
    assert (l3.n_vocab, l3.bos_id, l3.eos_id, l3.eot_id, l3.pad_id) == (
        128256, 128000, 128001, 128009, 128255)
    assert l3.special_id("<|start_header_id|>") == 128006
    assert l3.special_id("<|end_header_id|>") == 128007
    assert l3.special_id("<|reserved_special_token_4|>") == 128008
    assert l3.special_id("<|reserved_special_token_250|>") == 128255
    assert l3.special_id("hello") is None
    assert l3.is_special(128009) and not l3.is_special(9906) and not l3.is_special(-1)
    assert "bpe" in repr(l3)


def test_llama3_cases(l3):
    cases = json.loads((TOK / "llama3" / "llama3_cases.json").read_text(encoding="utf-8"))["cases"]
    for c in cases:
        assert l3.encode(c["text"], allowed_special="all") == c["ids_special"], c["text"]
        assert l3.encode(c["text"], disallowed_special=()) == c["ids_plain"], c["text"]
        assert l3.decode(c["ids_special"]) == c["text"]


def test_botchan_both(l3, sp):
    text = (TESTDATA / "eval" / "botchan.txt").read_bytes().decode("utf-8")
    ids = [int(x) for x in (TOK / "llama3" / "llama3_botchan.ids").read_text().split()]
    assert l3.encode(text, disallowed_special=()) == ids
    assert l3.decode(ids) == text
    ids = [int(x) for x in (TOK / "llama-spm" / "llama_spm_botchan.ids").read_text().split()]
    assert sp.encode(text, disallowed_special=()) == ids
    assert sp.decode(ids) == text


def test_special_semantics(l3):
    text = "a<|eot_id|>b"
    with pytest.raises(bitnet_py.TokenizerError) as ei:
        l3.encode(text)
    assert "<|eot_id|>" in str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert l3.encode(text, allowed_special="all") == [64, 128009, 65]
    assert l3.encode(text, allowed_special={"<|eot_id|>"}) == [64, 128009, 65]
    assert l3.encode(text, allowed_special=["<|eot_id|>"]) == [64, 128009, 65]
    plain = l3.encode(text, disallowed_special=())
    assert 128009 not in plain and l3.decode(plain) == text
    # only the listed ones raise
    assert l3.encode(text, disallowed_special={"<|begin_of_text|>"}) == plain
    with pytest.raises(ValueError):
        l3.encode("<|begin_of_text|>", disallowed_special={"<|begin_of_text|>"})
    assert l3.encode("Hello world", bos=True, eos=True) == [128000, 9906, 1917, 128001]
    with pytest.raises(TypeError):
        l3.encode("x", allowed_special=[1])
    with pytest.raises(ValueError):
        l3.encode("x", allowed_special="some")
    with pytest.raises(TypeError):
        l3.encode(123)


def test_text_forms(l3):
    # lone surrogates become U+FFFD, as tiktoken does
    assert l3.encode("x\ud800y") == l3.encode("x\ufffdy")
    # bytes: invalid UTF-8 kept as raw bytes
    raw = b"ok \xff\xfe\xc3"
    assert l3.decode_bytes(l3.encode(raw)) == raw
    assert l3.decode(l3.encode(raw)) == raw.decode("utf-8", "replace")
    assert l3.encode("") == [] and l3.decode([]) == ""


def test_decode_and_token_bytes(l3):
    assert l3.decode([128000, 9906, 1917, 128009]) == "<|begin_of_text|>Hello world<|eot_id|>"
    assert l3.decode([128000, 9906, 1917, 128009], skip_special=True) == "Hello world"
    assert l3.token_bytes(9906) == b"Hello"
    assert l3.token_text(128009) == b"<|eot_id|>"
    with pytest.raises(ValueError):
        l3.token_bytes(128256)
    with pytest.raises(ValueError):
        l3.decode([128256])
    with pytest.raises(ValueError):
        l3.decode([-1])
    # partial UTF-8: decode replaces, decode_bytes keeps
    emoji = l3.encode("\U0001f999")
    assert len(emoji) > 1
    assert l3.decode(emoji[:1]) == "\ufffd"
    assert l3.decode_bytes(emoji) == "\U0001f999".encode()


def test_stream_decoder(l3, sp):
    for tok in (l3, sp):
        text = "héllo 🦙🦙 wörld\n中文 \U0001f44d\U0001f3fd!"
        ids = tok.encode(text, disallowed_special=())
        d = tok.stream_decoder()
        parts = [d.push(i) for i in ids]
        assert "".join(parts) + d.flush() == text
        for p in parts:
            assert "\ufffd" not in p
    # an incomplete tail becomes one U+FFFD at flush
    d = l3.stream_decoder()
    ids = l3.encode("\U0001f999")
    assert "".join(d.push(i) for i in ids[:-1]) == ""
    assert d.flush() == "\ufffd"


def test_chat(l3):
    msgs = [{"role": "system", "content": "You are a helpful assistant"},
            {"role": "user", "content": "  Hi <|eot_id|>\n\u3000"}]
    assert l3.encode_chat(msgs) == [
        128000, 2374, 25, 220, 2675, 527, 264, 11190, 18328, 128009, 1502, 25, 220, 13347,
        83739, 68, 354, 851, 91, 29, 128009, 72803, 25, 220]

    class M:
        def __init__(self, role, content):
            self.role, self.content = role, content

    assert l3.encode_chat([M("user", "What is 2+2?"), M("assistant", "4")],
                          add_generation_prompt=False) == [
        128000, 1502, 25, 220, 3923, 374, 220, 17, 10, 17, 30, 128009, 72803, 25, 220, 19, 128009]
    with pytest.raises(ValueError, match="Role tool not implemented"):
        l3.encode_chat([{"role": "tool", "content": "x"}])
    with pytest.raises(KeyError):
        l3.encode_chat([{"role": "user"}])


def test_spm(sp):
    assert sp.kind == "spm" and sp.n_vocab == 32000 and (sp.bos_id, sp.eos_id) == (1, 2)
    cases = json.loads((TOK / "llama-spm" / "llama_spm_cases.json").read_text(encoding="utf-8"))
    for c in cases["cases"]:
        assert sp.encode(c["text"], disallowed_special=()) == c["ids"], c["text"]
        assert sp.decode(c["ids"]) == c["decoded"]
    assert sp.encode("Cornell University is", bos=True) == [1, 11655, 514, 3014, 338]
    with pytest.raises(bitnet_py.TokenizerError):
        sp.encode("<s>x")
    assert sp.decode([1, 15043], skip_special=True) == "Hello"


def _inp_out(base):
    inp = Path(str(base) + ".inp").read_bytes().decode("utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    out = Path(str(base) + ".out").read_text().split("\n")[: len(inp)]
    return [(t, [int(x) for x in o.split()]) for t, o in zip(inp, out)]


@pytest.mark.parametrize("loader,base", [
    ("llama3", "llama3/ggml-vocab-llama-bpe.gguf"),
    ("llama3", "llama3/upstream-2026/ggml-vocab-llama-bpe.gguf"),
    ("spm-gguf", "llama-spm/ggml-vocab-llama-spm.gguf"),
    ("spm-gguf", "llama-spm/upstream-2026/ggml-vocab-llama-spm.gguf"),
    ("gpt2", "gpt2/ggml-vocab-gpt-2.gguf"),
])
def test_llama_cpp_vectors(l3, loader, base):
    if loader == "llama3":
        tok = l3
    else:
        tok = core.Tokenizer.from_gguf(TOK / base.replace("upstream-2026/", ""))
    vecs = _inp_out(TOK / base)
    assert len(vecs) == 46
    for text, want in vecs:
        assert tok.encode(text, disallowed_special=()) == want, text


def test_hf_json_and_gguf_reader(tmp_path, l3):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(gzip.decompress((TOK / "llama3" / "tokenizer.json.gz").read_bytes()))
    hf = core.Tokenizer.load_hf_json(path)
    assert core.Tokenizer(path).n_vocab == hf.n_vocab == 128256
    text = "Hello <|eot_id|> wörld 1234 \U0001f999"
    assert hf.encode(text, allowed_special="all") == l3.encode(text, allowed_special="all")
    r = core.GGUFReader(TOK / "gpt2" / "ggml-vocab-gpt-2.gguf")
    g = core.Tokenizer.from_gguf(r)
    r.close()
    assert g.encode("Hello world") == [15496, 995]  # the tokenizer owns a copy


def test_from_model():
    path = TESTDATA / "gguf" / "llama-2-tiny-random.gguf"
    m = core.Model(path)
    t = core.Tokenizer.from_model(m)
    m.close()  # the tokenizer keeps the model's handle alive
    assert t.encode("Cornell University is") == [11655, 514, 3014, 338]
    del t


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        core.Tokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"aGVsbG8= 0\naGk= x\n")
    with pytest.raises(bitnet_py.ModelFormatError, match="bad rank"):
        core.Tokenizer.load_tiktoken(bad)
    bad.write_bytes(b"\x0a\x05\x0a\x01")
    with pytest.raises(ValueError, match="broken protobuf"):
        core.Tokenizer(bad)
    bad.write_bytes(b"{\"model\": 1}")
    with pytest.raises(ValueError):
        core.Tokenizer(bad)
    with pytest.raises(ValueError):
        core.Tokenizer.__new__(core.Tokenizer).encode("x")


def test_threads(l3):
    text = (TESTDATA / "eval" / "botchan.txt").read_bytes().decode("utf-8")
    want = l3.encode(text, disallowed_special=())
    results = []

    def work():
        results.append(l3.encode(text, disallowed_special=()) == want)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [True] * 4


def test_no_reinit(l3):
    with pytest.raises(TypeError):
        l3.__init__(TOK / "llama3" / "tokenizer.model")
    assert l3.encode("Hello world") == [9906, 1917]
