"""bitnet_py.migration: analysis, statement-level import rewriting (without
the substring bugs of earlier tools), project migration and its CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bitnet_py.migration import MigrationHelper, main, migrate_project, migrate_source

SRC = '''#!/usr/bin/env python
import models
import model as fast
import model
from model import ModelArgs
from generate import FastGen, GenArgs
from stats import Stats
import generate
from xformers.ops import fmha
import torch
x = torch.cuda.is_available()
t = torch.zeros(3).cuda()
'''


def test_migrate_source_statement_level() -> None:
    new, changes = migrate_source(SRC)
    lines = new.splitlines()
    assert lines[0] == "#!/usr/bin/env python"
    assert lines[1] == "import models"  # not an import of the original's model module
    assert lines[2] == "import bitnet_py as fast"
    assert lines[3] == "import bitnet_py as model"
    assert lines[4] == "from bitnet_py import ModelArgs"
    assert lines[5] == "from bitnet_py import FastGen, GenArgs"
    assert lines[6] == "from bitnet_py import Stats"
    assert lines[7] == "import bitnet_py as generate"  # generate.FastGen etc. keep working
    assert lines[8] == "from xformers.ops import fmha"  # only the original's imports change (reported)
    assert lines[9:] == SRC.splitlines()[9:]
    assert len(changes) == 6  # xformers is reported, not rewritten
    assert migrate_source(new) == (new, [])  # idempotent


def test_analyze(tmp_path: Path) -> None:
    f = tmp_path / "s.py"
    f.write_text(SRC)
    h = MigrationHelper(verbose=False)
    a = h.analyze_existing_code(str(f))
    assert [i for i, _ in a["imports"]] == [3, 4, 5, 6, 7, 8]
    assert ("ModelArgs", 5) in a["classes_used"] and ("FastGen", 6) in a["classes_used"]
    assert any("Direct CUDA" in x for x in a["issues"]) and any("xformers" in x for x in a["issues"])
    assert any(".cuda()" in x or "CUDA movement" in x for x in a["issues"])
    assert a["compatible"] is False
    other = tmp_path / "o.py"
    other.write_text("print(1)\n")
    b = h.analyze_existing_code(str(other))
    assert b["compatible"] and "No BitNet imports found" in b["suggestions"][0]
    c = h.analyze_existing_code(str(tmp_path / "missing.py"))
    assert not c["compatible"] and c["issues"][0].startswith("Error analyzing file:")
    assert h.migration_log and h.migration_log[-1].startswith("[ERROR]")
    cfg = h.create_migration_config({"model": {"dim": 128}, "generation": {"gen_length": 7}})
    assert cfg["model_args"]["dim"] == 128 and cfg["gen_args"]["gen_length"] == 7
    assert cfg["inference_config"]["max_new_tokens"] == 7 and cfg["device"] == "cpu"


def test_migrate_script_and_project(tmp_path: Path) -> None:
    h = MigrationHelper(verbose=False)
    f = tmp_path / "s.py"
    f.write_text(SRC)
    out = tmp_path / "out" / "s.py"
    assert h.migrate_script(str(f), str(out))
    text = out.read_text()
    assert text == migrate_source(SRC)[0]  # no header: every other byte kept
    assert any("replaced 'import model as fast' with 'import bitnet_py as fast'" in l for l in h.migration_log)
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "sub" / "a.py").write_text(SRC)
    (proj / "b.py").write_text("print(2)\n")
    assert migrate_project(str(proj), str(tmp_path / "new"), test_prompts=["x"], create_backup=False)
    assert "import bitnet_py as fast" in (tmp_path / "new" / "sub" / "a.py").read_text()
    assert (tmp_path / "new" / "b.py").read_text() == "print(2)\n"
    assert not list(tmp_path.glob("proj_backup_*"))
    report = (tmp_path / "new" / "MIGRATION_REPORT.md").read_text()
    for section in ("## Summary", "## Migration Steps", "## File Analysis Results", "## Migration Log"):
        assert section in report
    assert not migrate_project(str(tmp_path / "missing"), str(tmp_path / "x"))


def test_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "s.py"
    f.write_text(SRC)
    assert main(["analyze", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"Analysis for {f}:" in out and "Compatible: False" in out
    assert main(["migrate", str(tmp_path / "nope"), str(tmp_path / "o")]) == 1
    assert "Migration failed" in capsys.readouterr().out
    assert main([]) == 0
    r = subprocess.run([sys.executable, "-m", "bitnet_py.migration", "check"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0 and "not found" in r.stdout
    (tmp_path / "gpu").mkdir()
    for m in ("model", "generate", "tokenizer"):
        (tmp_path / "gpu" / f"{m}.py").write_text("")
    assert MigrationHelper(verbose=False).check_original_installation(str(tmp_path))
