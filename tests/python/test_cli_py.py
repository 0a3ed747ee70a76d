"""python -m bitnet_py generate / chat / info / version."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bitnet_py as bn
from bitnet_py.__main__ import main


@pytest.fixture(scope="module")
def paths(ckpt: Path, tok_path: str) -> tuple[Path, str]:
    return ckpt, tok_path


def greedy(ckpt: Path, tok: str, prompt: str, n: int) -> str:
    return bn.SimpleInference(bn.load_model(str(ckpt)), bn.Tokenizer(tok),
                              bn.InferenceConfig(do_sample=False, max_new_tokens=n)).generate(prompt)


def test_generate_subprocess(paths: tuple[Path, str]) -> None:
    ckpt, tok = paths
    r = subprocess.run([sys.executable, "-m", "bitnet_py", "generate", "-m", str(ckpt / "model.gguf"), "-t", tok,
                        "-p", "Hello, my name is", "-n", "10", "--greedy", "--stats"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == greedy(ckpt, tok, "Hello, my name is", 10) + "\n"
    assert "tokens per second" in r.stderr


def test_generate_json_and_echo(paths: tuple[Path, str]) -> None:
    ckpt, tok = paths
    out = io.StringIO()
    assert main(["generate", "-m", str(ckpt), "-p", "a", "-p", "b", "-n", "5", "--temperature", "0", "--json"],
                stdout=out) == 0
    lines = [json.loads(l) for l in out.getvalue().splitlines()]
    assert [l["prompt"] for l in lines] == ["a", "b"]
    assert lines[0]["text"] == greedy(ckpt, tok, "a", 5)
    out = io.StringIO()
    assert main(["generate", "-m", str(ckpt), "-t", tok, "-p", "a", "-n", "5", "--greedy", "--echo"],
                stdout=out) == 0
    assert out.getvalue() == "a" + greedy(ckpt, tok, "a", 5) + "\n"
    # a half KV cache: the same greedy text here
    out = io.StringIO()
    assert main(["generate", "-m", str(ckpt), "-t", tok, "-p", "a", "-n", "5", "--greedy",
                 "--kv-type", "f16"], stdout=out) == 0
    assert out.getvalue() == greedy(ckpt, tok, "a", 5) + "\n"
    # sampling with a seed is reproducible
    outs = set()
    for _ in range(2):
        o = io.StringIO()
        main(["generate", "-m", str(ckpt), "-p", "a", "-n", "8", "--seed", "3"], stdout=o)
        outs.add(o.getvalue())
    assert len(outs) == 1


def test_generate_without_model(monkeypatch: pytest.MonkeyPatch, paths: tuple[Path, str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    import bitnet_py.model as M

    monkeypatch.setattr(M, "default_model_path", lambda: None)
    assert main(["generate", "-p", "x"]) == 1
    err = capsys.readouterr().err
    assert "no model" in err and "hint:" in err
    ckpt, _ = paths
    monkeypatch.setattr(M, "default_model_path", lambda: str(ckpt / "model.gguf"))
    out = io.StringIO()
    assert main(["generate", "-p", "x", "-n", "3", "--greedy"], stdout=out) == 0
    assert out.getvalue().endswith("\n")


def test_errors(paths: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["generate", "-m", str(tmp_path / "none.gguf"), "-p", "x"]) == 1
    assert "not found" in capsys.readouterr().err
    ckpt, tok = paths
    assert main(["generate", "-m", str(ckpt), "-t", tok, "-p", "x", "--top-p", "2"]) == 1
    assert "top_p" in capsys.readouterr().err


def test_chat(paths: tuple[Path, str]) -> None:
    ckpt, tok = paths
    out = io.StringIO()
    inp = io.StringIO("Hi there\n\n/reset\nSecond question\n")
    assert main(["chat", "-m", str(ckpt), "-t", tok, "-n", "6", "--greedy", "--system", "Be brief."],
                stdin=inp, stdout=out) == 0
    text = out.getvalue()
    assert text.count("---------------") == 2 and text.rstrip().endswith("exiting")
    # the first answer is the greedy continuation of the original's chat prompt
    t = bn.Tokenizer(tok)
    cf = bn.ChatFormat(t)
    ids = cf.encode_dialog_prompt([{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hi there"}], completion=True)
    first = greedy(ckpt, tok, ids, 6)  # type: ignore[arg-type]
    assert f"> {first}\n---------------" in text


def test_chat_subprocess_eof(paths: tuple[Path, str]) -> None:
    ckpt, tok = paths
    r = subprocess.run([sys.executable, "-m", "bitnet_py", "chat", "-m", str(ckpt), "-t", tok, "-n", "4"],
                       input="hello\n", capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    assert "enter prompt:" in r.stdout and "exiting" in r.stdout


def test_info_and_version(paths: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = paths
    assert main(["info", str(ckpt / "model.gguf"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["n_vocab"] == 128256
    assert main(["version"]) == 0
    assert bn.__version__ in capsys.readouterr().out


def test_generate_positional_prompt(paths: tuple[Path, str]) -> None:
    ckpt, tok = paths
    out = io.StringIO()
    assert main(["generate", "Once upon a time", "-m", str(ckpt), "-t", tok, "-n", "6", "--greedy"], stdout=out) == 0
    assert out.getvalue() == greedy(ckpt, tok, "Once upon a time", 6) + "\n"
