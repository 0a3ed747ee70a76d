"""The `bitnet` command-line tool, run as a subprocess.

The binary comes from $BITNET_CLI (scripts/test.sh sets it), else
build/bitnet; the tests skip when it is absent. References: llama.cpp's
greedy ids for the tiny model (reference.json), the `gguf` package's reader
for `info`, and llama-cpp-python's logits for `perplexity` (chunked and scored
as llama.cpp's perplexity tool does).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli_path() -> Path:
    env = os.environ.get("BITNET_CLI")
    return Path(env) if env else REPO_ROOT / "build" / "bitnet"


CLI = _cli_path()
pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"bitnet CLI not built at {CLI}")

PPL_TEXT = (
    "The quick brown fox jumps over the lazy dog. " * 6
    + "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness. " * 4
    + "Call me Ishmael. Some years ago, never mind how long precisely, having little or "
    "no money in my purse, I thought I would sail about a little. " * 2
)


def run(*args, timeout=120):
    return subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, timeout=timeout, cwd=REPO_ROOT
    )


def out(p):
    return p.stdout.decode("utf-8", errors="replace")


def err(p):
    return p.stderr.decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def reference(tiny_gguf):
    with open(tiny_gguf.with_suffix(".reference.json"), encoding="utf-8") as f:
        return json.load(f)


# ---- help, version, usage errors -------------------------------------------


def test_help_and_version():
    p = run("--help")
    assert p.returncode == 0
    for word in ("info", "generate", "perplexity", "--temp", "--top-k", "--ids", "--ctx"):
        assert word in out(p)
    p = run("--version")
    assert p.returncode == 0
    assert re.match(r"bitnet \d+\.\d+\.\d+", out(p))
    assert run("generate", "--help").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["generate"],
        ["generate", "-m", "x.gguf"],  # no prompt
        ["generate", "-m", "x.gguf", "-p", "a", "--ids", "1"],  # two prompts
        ["generate", "-m", "x.gguf", "-p", "a", "--bogus"],
        ["generate", "-m", "x.gguf", "-p", "a", "--temp", "abc"],
        ["generate", "-m", "x.gguf", "-p", "a", "--temp", "-1"],
        ["generate", "-m", "x.gguf", "-p", "a", "--top-p", "1.5"],
        ["generate", "-m", "x.gguf", "-p", "a", "--min-p", "nan"],
        ["generate", "-m", "x.gguf", "-p", "a", "-n", "12x"],
        ["generate", "-m", "x.gguf", "-p", "a", "--mirostat", "3"],
        ["generate", "-m", "x.gguf", "-p", "a", "--seed", "x"],
        ["generate", "-m", "x.gguf", "-p", "a", "--cache-type", "q8_0"],
        ["generate", "-m", "x.gguf", "-p"],  # missing value
        ["perplexity", "-m", "x.gguf"],  # no -f
        ["info"],
    ],
)
def test_usage_errors(args):
    p = run(*args)
    assert p.returncode == 2, (args, out(p), err(p))
    assert err(p).startswith(("bitnet: ", "usage: "))  # no arguments: the usage text


def test_missing_files(tmp_path, tiny_gguf):
    missing = tmp_path / "nope.gguf"
    for args in (
        ["info", missing],
        ["generate", "-m", missing, "-p", "hi"],
        ["perplexity", "-m", missing, "-f", tiny_gguf],
        ["perplexity", "-m", tiny_gguf, "-f", tmp_path / "nope.txt"],
        ["generate", "-m", tiny_gguf, "-f", tmp_path / "nope.txt"],
    ):
        p = run(*args)
        assert p.returncode == 1, (args, err(p))
        assert "nope" in err(p)


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    p = run("info", bad)
    assert p.returncode == 1
    assert "bad.gguf" in err(p)


# ---- info -------------------------------------------------------------------


def test_info_lists_metadata_and_tensors(tiny_gguf):
    gguf = pytest.importorskip("gguf")
    p = run("info", tiny_gguf)
    assert p.returncode == 0, err(p)
    text = out(p)
    reader = gguf.GGUFReader(str(tiny_gguf))
    for name in reader.fields:
        if name.startswith("GGUF."):  # the reader's pseudo-fields for the header
            continue
        assert f"  {name}: " in text, name
    # long arrays are summarized: type, length, first elements
    assert re.search(r"tokenizer\.ggml\.tokens: arr\[str\] \(32000\) = \[\"<unk>\", \"<s>\"", text)
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s+(\d+)\s+(\S+)\s+(\S+)\s+(\[[^\]]*\])\s+(\d+)\s+(\d+)$", line)
        if m:
            rows[m.group(2)] = m.groups()
    assert len(rows) == len(reader.tensors)
    data_start = min(int(t.data_offset) for t in reader.tensors)
    for t in reader.tensors:
        _, name, typ, shape, nbytes, offset = rows[t.name]
        assert typ == t.tensor_type.name.lower()
        assert shape == "[" + ", ".join(str(int(d)) for d in t.shape) + "]"
        assert int(nbytes) == int(t.n_bytes)
        assert int(offset) == int(t.data_offset) - data_start
    assert "model config:" in text and "n_vocab: 32000" in text
    assert "tokenizer: spm" in text


# ---- generate ---------------------------------------------------------------


def parse_ids(text):
    return [int(x) for x in text.split()]


@pytest.mark.parametrize("cache", ["f32", "f16"])
def test_generate_ids_greedy_matches_llama_cpp(tiny_gguf, reference, cache):
    for r in reference["runs"]:
        n = len(r["greedy_ids"])
        ids = ",".join(map(str, r["prompt_ids"]))
        p = run("generate", "-m", tiny_gguf, "--ids", ids, "-n", n, "--temp", 0, "-t", 1,
                "--cache-type", cache)
        assert p.returncode == 0, err(p)
        assert parse_ids(out(p)) == r["greedy_ids"], r["prompt"]
        assert "tokens/s" in err(p)


def spm_decode(tokens, ids):
    """Decode SentencePiece pieces: U+2581 -> space, <0xNN> -> byte."""
    buf = bytearray()
    for i in ids:
        piece = tokens[i]
        m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
        if m:
            buf.append(int(m.group(1), 16))
        else:
            buf += piece.replace("\u2581", " ").encode("utf-8")
    return buf.decode("utf-8", errors="replace")


def test_generate_text_greedy(tiny_gguf, reference):
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(tiny_gguf))
    f = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    r = reference["runs"][0]
    assert r["prompt"] == "Hello world"
    p = run("generate", "-m", tiny_gguf, "-p", "Hello world", "-n", 8, "--temp", 0)
    assert p.returncode == 0, err(p)
    want = spm_decode(tokens, r["greedy_ids"])
    assert out(p) == want + "\n"
    assert "prompt: 3 tokens" in err(p)
    assert "generation: 8 tokens" in err(p)
    # --echo prints the prompt first
    p = run("generate", "-m", tiny_gguf, "-p", "Hello world", "-n", 8, "--temp", 0, "--echo")
    assert p.returncode == 0, err(p)
    assert out(p) == "Hello world" + want + "\n"
    # the prompt from a file gives the same
    r2 = reference["runs"][1]
    n = len(r2["greedy_ids"])
    p = run("generate", "-m", tiny_gguf, "-p", r2["prompt"], "-n", n, "--temp", 0)
    assert out(p) == spm_decode(tokens, r2["greedy_ids"]) + "\n"


def test_generate_prompt_from_file(tiny_gguf, reference, tmp_path):
    r = reference["runs"][1]
    path = tmp_path / "prompt.txt"
    path.write_text(r["prompt"], encoding="utf-8")
    a = run("generate", "-m", tiny_gguf, "-f", path, "-n", 5, "--temp", 0)
    b = run("generate", "-m", tiny_gguf, "-p", r["prompt"], "-n", 5, "--temp", 0)
    assert a.returncode == 0 and a.stdout == b.stdout


def test_generate_sampling_is_seeded(tiny_gguf):
    args = ["generate", "-m", tiny_gguf, "--ids", "1,15043,3186", "-n", 12, "--temp", 1.5,
            "--top-k", 0, "--top-p", 1, "--min-p", 0]
    a = run(*args, "--seed", 42)
    b = run(*args, "--seed", 42)
    c = run(*args, "--seed", 43)
    assert a.returncode == 0, err(a)
    assert parse_ids(out(a)) == parse_ids(out(b))
    assert len(parse_ids(out(a))) == 12
    assert parse_ids(out(a)) != parse_ids(out(c))  # 12 draws over 32000 near-uniform tokens


def test_generate_penalties_and_mirostat_run(tiny_gguf):
    for extra in (["--repeat-penalty", 1.3, "--frequency-penalty", 0.5, "--presence-penalty",
                   0.2, "--repeat-last-n", 16],
                  ["--mirostat", 2, "--mirostat-tau", 4, "--temp", 1],
                  ["--mirostat", 1, "--temp", 0.9],
                  ["--typical", 0.9, "--temp", 0.7]):
        p = run("generate", "-m", tiny_gguf, "--ids", "1,450", "-n", 6, *extra)
        assert p.returncode == 0, (extra, err(p))
        ids = parse_ids(out(p))
        assert len(ids) == 6 and all(0 <= i < 32000 for i in ids)


def test_generate_prompt_longer_than_context(tiny_gguf):
    p = run("generate", "-m", tiny_gguf, "--ids", "1,2,3,4,5,6,7,8", "--ctx", 8, "-n", 4)
    assert p.returncode == 1
    assert "context" in err(p)
    p = run("generate", "-m", tiny_gguf, "-p", "one two three four five six seven", "--ctx", 4)
    assert p.returncode == 1
    assert "context" in err(p)


def test_generate_stops_when_context_is_full(tiny_gguf):
    p = run("generate", "-m", tiny_gguf, "--ids", "1,15043,3186", "--ctx", 8, "-n", -1,
            "--temp", 0, "--ignore-eos")
    assert p.returncode == 0, err(p)
    assert len(parse_ids(out(p))) == 8 - 3 + 1  # the last one needs no KV slot
    assert "full context" in err(p)


def test_generate_bad_ids(tiny_gguf):
    for ids in ("1,32000", "1,-2", "1,,2", "a,b", ""):
        p = run("generate", "-m", tiny_gguf, "--ids", ids)
        assert p.returncode == 2, (ids, err(p))
        assert "--ids" in err(p)


# ---- perplexity -------------------------------------------------------------


def parse_ppl(text):
    m = re.search(r"Final estimate: PPL = ([0-9.eE+-]+|nan|inf) \+/- ([0-9.eE+-]+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def llama_cpp_perplexity(model, text, n_ctx):
    """llama.cpp's perplexity tool, over llama-cpp-python's logits: chunks of
    n_ctx tokens, bos first, positions n_ctx/2 .. n_ctx-2 scored."""
    llama_cpp = pytest.importorskip("llama_cpp")
    np = pytest.importorskip("numpy")
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, logits_all=True, verbose=False,
                          n_threads=1)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll, count = 0.0, 0
    for c in range(n_chunk):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            mx = row.max()
            lse = mx + math.log(np.exp(row - mx).sum())
            nll += lse - row[tokens[c * n_ctx + j + 1]]
            count += 1
    return math.exp(nll / count), len(tokens)


def test_perplexity_matches_llama_cpp(tiny_gguf, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(PPL_TEXT, encoding="utf-8")
    p = run("perplexity", "-m", tiny_gguf, "-f", path, "--ctx", 32, "-t", 1)
    assert p.returncode == 0, err(p)
    ppl, unc = parse_ppl(out(p))
    assert math.isfinite(ppl) and ppl > 1 and unc >= 0
    m = re.search(r"perplexity: (\d+) tokens, (\d+) chunks of 32", err(p))
    assert m, err(p)
    want, n_tokens = llama_cpp_perplexity(tiny_gguf, PPL_TEXT, 32)
    assert int(m.group(1)) == n_tokens
    assert int(m.group(2)) == n_tokens // 32
    # logits agree to ~1e-3 (llama.cpp multiplies in F16); so does the PPL
    assert ppl == pytest.approx(want, rel=2e-3)


def test_perplexity_text_too_short(tiny_gguf, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("Just a few words.", encoding="utf-8")
    p = run("perplexity", "-m", tiny_gguf, "-f", path, "--ctx", 32)
    assert p.returncode == 1
    assert "needs at least 64" in err(p)


# ---- models without a tokenizer, files that are not models ------------------


def copy_without_tokenizer(src, dst):
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), "llama")
    for name, f in r.fields.items():
        if name.startswith(("GGUF.", "tokenizer.")) or name == "general.architecture":
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.STRING:
            w.add_string(name, bytes(f.parts[f.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(name, f.parts[f.data[0]][0].item(), t)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_model_without_tokenizer(tiny_gguf, reference, tmp_path):
    model = tmp_path / "notok.gguf"
    copy_without_tokenizer(tiny_gguf, model)
    p = run("info", model)
    assert p.returncode == 0, err(p)
    assert "tokenizer: none" in out(p)
    r = reference["runs"][0]
    ids = ",".join(map(str, r["prompt_ids"]))
    p = run("generate", "-m", model, "--ids", ids, "-n", 8, "--temp", 0)
    assert p.returncode == 0, err(p)
    assert parse_ids(out(p)) == r["greedy_ids"]
    p = run("generate", "-m", model, "-p", "Hello world")
    assert p.returncode == 1 and "no tokenizer" in err(p)
    text = tmp_path / "t.txt"
    text.write_text(PPL_TEXT, encoding="utf-8")
    p = run("perplexity", "-m", model, "-f", text, "--ctx", 32)
    assert p.returncode == 1 and "no tokenizer" in err(p)


def test_info_on_a_gguf_that_is_not_a_model(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "meta.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", 'quote " and\nnewline')
    w.add_array("some.numbers", list(range(100)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = run("info", path)
    assert p.returncode == 0, err(p)
    text = out(p)
    assert 'general.name: str = "quote \\" and\\nnewline"' in text
    assert re.search(r"some\.numbers: arr\[\w+\] \(100\) = \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]", text)
    assert "tensors: 0" in text
    assert "model: does not load" in text


def test_generate_prompt_longer_than_a_batch(tiny_gguf):
    """700 prompt tokens go through two bn_decode calls; the greedy
    continuation matches llama.cpp's."""
    llama_cpp = pytest.importorskip("llama_cpp")
    np = pytest.importorskip("numpy")
    prompt = [1] + [100 + i for i in range(699)]
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=1024, logits_all=True, verbose=False,
                          n_threads=1)
    llm.eval(prompt)
    want = []
    for _ in range(4):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        want.append(t)
        llm.eval([t])
    p = run("generate", "-m", tiny_gguf, "--ids", ",".join(map(str, prompt)), "-n", 4,
            "--temp", 0, "--ctx", 1024)
    assert p.returncode == 0, err(p)
    assert parse_ids(out(p)) == want


def test_perplexity_chunks_limit(tiny_gguf, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(PPL_TEXT, encoding="utf-8")
    full = run("perplexity", "-m", tiny_gguf, "-f", path, "--ctx", 32)
    two = run("perplexity", "-m", tiny_gguf, "-f", path, "--ctx", 32, "--chunks", 2)
    assert full.returncode == 0 and two.returncode == 0, err(two)
    assert "2 chunks of 32" in err(two)
    running = re.findall(r"\[(\d+)\]([0-9.]+),", err(full))
    assert running[1][0] == "2"
    assert parse_ppl(out(two))[0] == pytest.approx(float(running[1][1]), abs=1e-3)
    assert run("perplexity", "-m", tiny_gguf, "-f", path, "--chunks", 0).returncode == 2
