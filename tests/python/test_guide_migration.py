"""Every code block of the migration guide that uses bitnet_py, run as written.

The blocks are extracted from the guide (``../shared/reference/
migration-guide-seed.md``; ``BITNET_MIGRATION_GUIDE`` overrides) with a
CommonMark fence parser, and executed in a working directory that holds
``model.gguf`` (a tiny synthetic model) and ``tokenizer.model`` (the real
Llama-3 tokenizer), so the guide's own relative paths work unchanged.

Blocks not run, and why (also checked below, so the list stays true):

* ``pip install bitnet-py`` / ``[gpu]`` / ``[dev]`` and ``pip install jupyter
  notebook; jupyter notebook``: installation and a GUI, no API use.
* the "Before (Original)" block imports the original implementation; the
  test runs it after ``bitnet_py.migration.migrate_source`` instead.
* the "After" block is truncated upstream (the guide's text runs into it);
  its Python prefix is run.

Guide defects that the test works around without editing the code:
``asyncio`` (Streamlit block) and ``time`` (side-by-side blocks) are used
without being imported, so the namespace provides them; ``python_files``
(report block) is never defined, so the namespace provides the list, and
that block continues the one before it (it uses its import); the
MigrationMonitor block's last line reads ``status['recommendation']``,
which its own ``get_migration_status()`` omits when no request was
recorded: the test checks that KeyError, then runs it after one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Iterator

import pytest


REPO = Path(__file__).resolve().parents[2]


def _guide_path() -> Path:
    env = os.environ.get("BITNET_MIGRATION_GUIDE")
    if env:
        return Path(env)
    return (REPO / ".." / "shared" / "reference" / "migration-guide-seed.md").resolve()


def extract_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, code) of each fenced block; a closing fence is a line
    of backticks only (CommonMark), so a fence with an info string inside
    an open block does not close it."""
    blocks: list[tuple[str, str]] = []
    lang: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if lang is None:
            m = re.match(r"^(`{3,})\s*([\w+-]*)", s)
            if m:
                lang, buf = m.group(2), []
        elif re.fullmatch(r"`{3,}", s):
            blocks.append((lang, "\n".join(buf) + "\n"))
            lang = None
        else:
            buf.append(line)
    return blocks


@pytest.fixture(scope="module")
def blocks() -> list[tuple[str, str]]:
    p = _guide_path()
    if not p.is_file():
        pytest.skip(f"migration guide not found at {p}")
    return extract_blocks(p.read_text(encoding="utf-8"))


def find(blocks: list[tuple[str, str]], needle: str, lang: str = "python") -> str:
    hits = [code for l, code in blocks if l == lang and needle in code]
    assert len(hits) == 1, f"{needle!r}: {len(hits)} blocks"
    return hits[0]


@pytest.fixture()
def workdir(tmp_path: Path, ckpt: Path, tok_path: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.gguf").symlink_to(ckpt / "model.gguf")
    (tmp_path / "tokenizer.model").symlink_to(tok_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_block(code: str, ns: dict[str, Any] | None = None, name: str = "__guide__") -> dict[str, Any]:
    g: dict[str, Any] = {"__name__": name}
    if ns:
        g.update(ns)
    exec(compile(code, "<guide>", "exec"), g)
    return g


#: One needle per Python block of the guide, each run by the test named.
NEEDLES = {
    "bitnet.__version__": "test_verify_installation",
    "import generate\n": "test_before_block_after_migration",
    "import bitnet_py as fast\n# gen": "test_after_block_truncated_upstream",
    "MODEL_PATH =": "test_notebook_paths",
    "from fastapi import": "test_fastapi_block",
    "from flask import": "test_flask_block",
    "import streamlit as st": "test_streamlit_block",
    "helper = MigrationHelper(verbose=True)": "test_migration_programmatic_block",
    "helper.generate_migration_report(analysis_results)": "test_migration_report_block",
    "class HybridInference": "test_hybrid_inference_block",
    "class MigrationMonitor": "test_migration_monitor_block",
}


def test_every_block_accounted_for(blocks: list[tuple[str, str]]) -> None:
    py = [c for l, c in blocks if l == "python"]
    sh = [c for l, c in blocks if l == "bash"]
    # the jupyter bash block sits inside the truncated "After" block
    assert len(py) == 11 and len(sh) == 2, (len(py), len(sh))
    for code in py:
        hits = [n for n in NEEDLES if n in code]
        assert len(hits) == 1, (hits, code[:80])
        assert NEEDLES[hits[0]] in globals()
    assert sorted(n for c in py for n in NEEDLES if n in c) == sorted(NEEDLES)


def test_verify_installation(blocks: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    run_block(find(blocks, "bitnet.__version__"))
    out = capsys.readouterr().out
    assert "bitnet_py version: " in out and "cpu_features" in out


def test_before_block_after_migration(blocks: list[tuple[str, str]], tmp_path: Path) -> None:
    from bitnet_py.migration import migrate_source

    before = find(blocks, "import generate\n")
    new, changes = migrate_source(before)
    assert len(changes) == 3
    g = run_block(new)
    import bitnet_py

    assert g["fast"] is bitnet_py and g["ModelArgs"] is bitnet_py.ModelArgs and g["GenArgs"] is bitnet_py.GenArgs


def test_after_block_truncated_upstream(blocks: list[tuple[str, str]]) -> None:
    after = find(blocks, "import bitnet_py as fast\n# gen")
    with pytest.raises(SyntaxError):
        compile(after, "<guide>", "exec")  # the guide's prose runs into it
    lines = after.splitlines()
    prefix = "\n".join(lines[:3])
    assert prefix == "import bitnet_py as fast\n# gen\n## Jupyte"
    g = run_block(prefix)
    assert g["fast"].FastGen is g["fast"].InferenceEngine


def test_notebook_paths(blocks: list[tuple[str, str]], workdir: Path) -> None:
    code = find(blocks, "MODEL_PATH =")
    code = code.replace('"path/to/your/model.gguf"', '"model.gguf"').replace(
        '"path/to/your/tokenizer.model"', '"tokenizer.model"')
    g = run_block(code)
    import bitnet_py as bitnet

    assert bitnet.load_model(g["MODEL_PATH"]) and bitnet.create_tokenizer(g["TOKENIZER_PATH"])


def _fastapi_stub() -> dict[str, types.ModuleType]:
    fastapi = types.ModuleType("fastapi")
    responses = types.ModuleType("fastapi.responses")

    class FastAPI:
        def __init__(self) -> None:
            self.routes: dict[str, Any] = {}
            self.startup: list[Any] = []

        def on_event(self, ev: str) -> Any:
            def deco(f: Any) -> Any:
                self.startup.append(f)
                return f
            return deco

        def post(self, path: str) -> Any:
            def deco(f: Any) -> Any:
                self.routes[path] = f
                return f
            return deco

    class StreamingResponse:
        def __init__(self, content: Any, media_type: str = "") -> None:
            self.body_iterator = content
            self.media_type = media_type

    fastapi.FastAPI = FastAPI  # type: ignore[attr-defined]
    fastapi.BackgroundTasks = object  # type: ignore[attr-defined]
    responses.StreamingResponse = StreamingResponse  # type: ignore[attr-defined]
    fastapi.responses = responses  # type: ignore[attr-defined]
    return {"fastapi": fastapi, "fastapi.responses": responses}


def test_fastapi_block(blocks: list[tuple[str, str]], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = find(blocks, "from fastapi import")
    try:
        import fastapi  # noqa: F401
    except ImportError:
        for k, v in _fastapi_stub().items():
            monkeypatch.setitem(sys.modules, k, v)
    g = run_block(code)

    async def main() -> tuple[Any, str]:
        await g["startup"]()
        res = await g["generate"]("Hello, my name is")
        resp = await g["stream_generate"]("Hello, my name is")
        chunks = [c async for c in resp.body_iterator]
        assert all(c.startswith("data: ") and c.endswith("\n\n") for c in chunks)
        return res, "".join(c[6:-2] for c in chunks)

    res, streamed = asyncio.run(main())
    assert isinstance(res["response"], str) and res["response"]
    assert isinstance(streamed, str) and streamed
    import bitnet_py

    assert isinstance(g["engine"], bitnet_py.AsyncInference)


def test_flask_block(blocks: list[tuple[str, str]], workdir: Path) -> None:
    pytest.importorskip("flask")
    g = run_block(find(blocks, "from flask import"))
    client = g["app"].test_client()
    r = client.post("/generate", json={"prompt": "Hello, my name is"})
    assert r.status_code == 200 and isinstance(r.get_json()["response"], str)
    r = client.post("/batch", json={"prompts": ["Hello", "The capital of France is"]})
    assert r.status_code == 200 and len(r.get_json()["responses"]) == 2


def _streamlit_stub(prompt: str) -> tuple[types.ModuleType, dict[str, list[Any]]]:
    st = types.ModuleType("streamlit")
    seen: dict[str, list[Any]] = {"write": [], "title": [], "placeholder": []}

    class Placeholder:
        def write(self, x: Any) -> None:
            seen["placeholder"].append(x)

    st.cache_resource = lambda f: f  # type: ignore[attr-defined]
    st.title = lambda t: seen["title"].append(t)  # type: ignore[attr-defined]
    st.text_area = lambda label: prompt  # type: ignore[attr-defined]
    st.button = lambda label: True  # type: ignore[attr-defined]
    st.spinner = lambda text: contextlib.nullcontext()  # type: ignore[attr-defined]
    st.write = lambda x: seen["write"].append(x)  # type: ignore[attr-defined]
    st.empty = Placeholder  # type: ignore[attr-defined]
    return st, seen


def test_streamlit_block(blocks: list[tuple[str, str]], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = find(blocks, "import streamlit as st")
    st, seen = _streamlit_stub("Hello, my name is")
    try:
        from streamlit.testing.v1 import AppTest
    except ImportError:
        monkeypatch.setitem(sys.modules, "streamlit", st)
    else:  # the real thing: drive the block with Streamlit's test runner
        at = AppTest.from_string("import asyncio\n" + code, default_timeout=120)  # asyncio: see above
        at.run()
        at.text_area[0].input("Hello, my name is").run()
        at.button[0].click().run()
        assert not at.exception and at.title[0].value == "BitNet Text Generation"
        assert at.markdown and at.markdown[-1].value.strip()
        at.button[1].click().run()
        assert not at.exception and at.markdown[-1].value.strip()
        return
    # the block uses asyncio without importing it
    run_block(code, {"asyncio": asyncio}, name="__main__")
    assert seen["title"] == ["BitNet Text Generation"]
    assert len(seen["write"]) == 1 and isinstance(seen["write"][0], str)
    assert seen["placeholder"] and seen["placeholder"][-1].startswith(seen["placeholder"][0])


ORIGINAL_SCRIPT = """import model as fast
from generate import FastGen, GenArgs
import torch

x = torch.cuda.is_available()
y = fast.ModelArgs()
"""


def test_migration_cli_block(blocks: list[tuple[str, str]], workdir: Path) -> None:
    code = find(blocks, "python -m bitnet_py.migration analyze", lang="bash")
    (workdir / "your_file.py").write_text(ORIGINAL_SCRIPT)
    (workdir / "old_project").mkdir()
    (workdir / "old_project" / "main.py").write_text(ORIGINAL_SCRIPT)
    (workdir / "old_project" / "data.txt").write_text("keep me")
    cmds = [l for l in code.splitlines() if l.startswith("python -m bitnet_py.migration")]
    assert len(cmds) == 3
    outs = []
    for cmd in cmds:
        r = subprocess.run(cmd.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=workdir,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert "Analysis for your_file.py:" in outs[0] and "Issues: 1" in outs[0]
    assert "Migration completed successfully!" in outs[1]
    assert "Original BitNet Python implementation" in outs[2]
    migrated = (workdir / "new_project" / "main.py").read_text()
    assert "import bitnet_py as fast" in migrated and "from bitnet_py import FastGen, GenArgs" in migrated
    assert (workdir / "new_project" / "data.txt").read_text() == "keep me"
    for f in ("MIGRATION_REPORT.md", "side_by_side_test.py", "requirements.txt", "SETUP.md"):
        assert (workdir / "new_project" / f).is_file()
    assert list(workdir.glob("old_project_backup_*"))


def test_migration_programmatic_block(blocks: list[tuple[str, str]], workdir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = find(blocks, "helper = MigrationHelper(verbose=True)")
    (workdir / "your_script.py").write_text(ORIGINAL_SCRIPT)
    (workdir / "original_project").mkdir()
    (workdir / "original_project" / "gen.py").write_text(ORIGINAL_SCRIPT)
    run_block(code)
    out = capsys.readouterr().out
    assert "Compatible: " in out and "Issues: 1" in out and "Migration completed successfully!" in out
    side = workdir / "migrated_project" / "side_by_side_test.py"
    assert '"How are you?"' in side.read_text()
    # the generated side-by-side test runs against the model
    r = subprocess.run([sys.executable, str(side), "model.gguf", "tokenizer.model"], cwd=workdir,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "COMPARISON RESULTS" in r.stdout and (workdir / "comparison_results.json").is_file()


def test_migration_report_block(blocks: list[tuple[str, str]], workdir: Path) -> None:
    code = find(blocks, "helper.generate_migration_report(analysis_results)")
    (workdir / "a.py").write_text(ORIGINAL_SCRIPT)
    (workdir / "b.py").write_text("print('hi')\n")
    # the block continues the previous one (its import) and never defines python_files
    prev = find(blocks, "helper = MigrationHelper(verbose=True)").splitlines()[0]
    assert prev == "from bitnet_py.migration import MigrationHelper, migrate_project"
    ns = run_block(prev)
    ns["python_files"] = ["a.py", "b.py"]
    run_block(code, ns)
    report = (workdir / "MIGRATION_REPORT.md").read_text()
    assert report.startswith("# BitNet Python to bitnet_py Migration Report")
    assert "Total files analyzed: 2" in report and "### File 1: a.py" in report


def _side_by_side(blocks: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = find(blocks, "class HybridInference")
    g = run_block(code, {"time": time})  # the block uses time without importing it
    out = capsys.readouterr().out
    assert "Used: bitnet_py" in out and "Speedup: N/A" in out
    return g


def test_hybrid_inference_block(blocks: list[tuple[str, str]], workdir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    g = _side_by_side(blocks, capsys)
    r = g["hybrid"].generate("Hello", force_new=True)
    assert r["implementation"] == "bitnet_py" and r["generation_time"] > 0


def test_migration_monitor_block(blocks: list[tuple[str, str]], workdir: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    g = _side_by_side(blocks, capsys)
    code = find(blocks, "class MigrationMonitor")
    with pytest.raises(KeyError, match="recommendation"):
        run_block(code, g)  # as written: no request recorded, no recommendation
    # as meant: after one request through handle_request()
    head, tail = code.split("# Check migration status")
    ns = run_block(head, g)
    ns["handle_request"]("Hello")
    run_block("# Check migration status" + tail, ns)
    out = capsys.readouterr().out
    assert "Migration status: " in out
    st = ns["monitor"].get_migration_status()
    assert st["total_requests"] == 1 and st["error_rate_new"] == 0.0


def test_blocks_not_run_are_install_or_gui(blocks: list[tuple[str, str]]) -> None:
    sh = [c for l, c in blocks if l == "bash"]
    not_run = [c for c in sh if "bitnet_py.migration" not in c]
    assert len(not_run) == 1
    for c in not_run:
        cmds = [l for l in c.splitlines() if l.strip() and not l.startswith("#")]
        assert all(l.startswith(("pip install", "jupyter")) for l in cmds), cmds


def _iter_guide_python(blocks: list[tuple[str, str]]) -> Iterator[str]:
    for lang, code in blocks:
        if lang == "python":
            yield code


# ---------------------------------------------------------------------------
# docs/migration.md: every Python block runs as written
# ---------------------------------------------------------------------------

def _doc_blocks() -> list[str]:
    text = (REPO / "docs" / "migration.md").read_text(encoding="utf-8")
    return [code for lang, code in extract_blocks(text) if lang == "python"]


@pytest.mark.parametrize("index", range(len(_doc_blocks())))
def test_docs_migration_blocks(index: int, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = workdir / "checkpoints"
    ckpt.mkdir()
    (ckpt / "model.gguf").symlink_to((workdir / "model.gguf").resolve())
    (ckpt / "tokenizer.model").symlink_to((workdir / "tokenizer.model").resolve())
    run_block(_doc_blocks()[index], name="__main__")
    assert capsys.readouterr().out.strip()
