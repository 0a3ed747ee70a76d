"""bitnet_py.migration on a project that already has files by the names the
migration generates (side_by_side_test.py, SETUP.md, MIGRATION_REPORT.md,
migration_config.json, requirements.txt): the project's files are migrated
like any other and never replaced; the generated ones get free names
(``STEM_bitnet.EXT``, then ``STEM_bitnet2.EXT``), the CLI warns, ``--json``
lists them under ``renamed``, and the report says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bitnet_py.migration import MigrationPlan, migrate_bytes, migrate_project
from bitnet_py.testing import tiny_checkpoint
from test_migration_samples import _env, cli, tree_hash

USER_SIDE = b'''"""Our own side-by-side check (not generated)."""
import model as fast  # the original
from generate import GenArgs

print("mine", fast, GenArgs)
'''
USER_CONFIG = {"model": {"dim": 64, "n_layers": 2}, "generation": {"gen_length": 12, "temperature": 0.5},
               "note": "ours"}


def make_project(root: Path) -> Path:
    src = root / "proj"
    src.mkdir()
    (src / "app.py").write_bytes(b"import model as fast\nfrom generate import FastGen\n")
    (src / "side_by_side_test.py").write_bytes(USER_SIDE)
    (src / "side_by_side_test_bitnet.py").write_bytes(b"# also ours\nimport os\n")
    (src / "SETUP.md").write_bytes(b"# Our setup\nDo not lose this.\n")
    (src / "MIGRATION_REPORT.md").write_bytes(b"# Our notes about the migration\n")
    (src / "migration_config.json").write_text(json.dumps(USER_CONFIG))
    (src / "requirements.txt").write_bytes(b"numpy\nrequests==2.31")
    return src


def test_project_files_kept_generated_renamed(tmp_path: Path, testdata: Path) -> None:
    src = make_project(tmp_path)
    before = tree_hash(src)
    dst = tmp_path / "out"
    r = cli("migrate", str(src), str(dst), "--no-backup", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["renamed"] == {"side_by_side_test.py": "side_by_side_test_bitnet2.py",
                              "SETUP.md": "SETUP_bitnet.md",
                              "MIGRATION_REPORT.md": "MIGRATION_REPORT_bitnet.md",
                              "migration_config.json": "migration_config_bitnet.json"}
    assert doc["merged"] == ["requirements.txt"]
    assert set(doc["generated"]) == {"side_by_side_test_bitnet2.py", "SETUP_bitnet.md", "MIGRATION_REPORT_bitnet.md",
                                     "migration_config_bitnet.json", "requirements.txt"}
    assert tree_hash(src) == before  # SRC untouched

    # the project's files: migrated like any other file, otherwise byte for byte
    assert (dst / "side_by_side_test.py").read_bytes() == migrate_bytes(USER_SIDE)[0]
    assert b"import bitnet_py as fast  # the original" in (dst / "side_by_side_test.py").read_bytes()
    assert "side_by_side_test.py" in doc["rewritten"]
    for name in ("side_by_side_test_bitnet.py", "SETUP.md", "MIGRATION_REPORT.md", "migration_config.json"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    assert (dst / "requirements.txt").read_bytes() == b"numpy\nrequests==2.31\nbitnet-py\n"

    # the generated files, under their new names, refer to each other by those names
    side = (dst / "side_by_side_test_bitnet2.py").read_text()
    assert "Side-by-side test written by bitnet_py.migration" in side
    assert "Usage: python side_by_side_test_bitnet2.py" in side
    setup = (dst / "SETUP_bitnet.md").read_text()
    assert "`python side_by_side_test_bitnet2.py CKPT_DIR`" in setup and "side_by_side_test.py" not in setup
    cfg = json.loads((dst / "migration_config_bitnet.json").read_text())
    assert cfg["model_args"]["dim"] == 64 and cfg["gen_args"]["gen_length"] == 12
    report = (dst / "MIGRATION_REPORT_bitnet.md").read_text()
    assert "## Generated Files Renamed" in report
    for a, b in doc["renamed"].items():
        assert f"- `{a}` -> `{b}`" in report
    assert "`python side_by_side_test_bitnet2.py CKPT_DIR`" in report
    assert "`python side_by_side_test.py CKPT_DIR`" not in report
    assert "File 1: app.py" in report or "app.py" in report
    assert ": side_by_side_test.py" in report  # the project's file analysed under its own name
    assert "(see migration_config_bitnet.json)" in report
    assert "`requirements.txt`: the project's file, with `bitnet-py` appended" in report
    assert "[WARNING] the project already has side_by_side_test.py" in report

    # the renamed side-by-side test works (bitnet_py alone against a tiny model)
    tok = testdata / "tokenizers" / "llama3" / "tokenizer.model"
    if tok.is_file():
        ckpt = tiny_checkpoint(tokenizer=str(tok))
        run = tmp_path / "run"
        run.mkdir()
        p = subprocess.run([sys.executable, str(dst / "side_by_side_test_bitnet2.py"), str(ckpt), "--gen-length",
                            "4"], cwd=run, capture_output=True, text=True, timeout=300, env=_env())
        assert p.returncode == 0, p.stdout + p.stderr
        assert "ran bitnet_py alone" in p.stdout and (run / "comparison_results.json").is_file()


def test_cli_text_warns_and_names_the_report(tmp_path: Path) -> None:
    src = make_project(tmp_path)
    r = cli("migrate", str(src), str(tmp_path / "out"), "--no-backup")
    assert r.returncode == 0, r.stderr
    assert "Warning: " in r.stdout and "already has side_by_side_test.py; the generated one is " \
        "side_by_side_test_bitnet2.py" in r.stdout
    assert f"Check {tmp_path / 'out' / 'MIGRATION_REPORT_bitnet.md'} for details" in r.stdout
    # dry run: the same plan, nothing written
    d = cli("migrate", str(src), str(tmp_path / "dry"), "--dry-run", "--json")
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["renamed"]["SETUP.md"] == "SETUP_bitnet.md"
    assert not (tmp_path / "dry").exists()
    t = cli("migrate", str(src), str(tmp_path / "dry"), "--dry-run")
    assert "would be written as SETUP_bitnet.md" in t.stdout and not (tmp_path / "dry").exists()


def test_case_insensitive_and_directories(tmp_path: Path) -> None:
    """Names are compared case-insensitively (macOS, Windows), and a
    directory by a generated name counts too."""
    src = tmp_path / "p"
    (src / "MIGRATION_REPORT.md").mkdir(parents=True)
    (src / "MIGRATION_REPORT.md" / "notes.txt").write_bytes(b"x\n")
    (src / "Setup.md").write_bytes(b"ours\n")
    (src / "main.py").write_bytes(b"from model import ModelArgs\n")
    plans: list[MigrationPlan] = []
    assert migrate_project(src, tmp_path / "o", create_backup=False, plan_out=plans)
    plan = plans[0]
    assert plan.renamed == {"SETUP.md": "SETUP_bitnet.md", "MIGRATION_REPORT.md": "MIGRATION_REPORT_bitnet.md"}
    assert plan.generated_name("side_by_side_test.py") == "side_by_side_test.py"
    o = tmp_path / "o"
    assert (o / "Setup.md").read_bytes() == b"ours\n"
    assert (o / "MIGRATION_REPORT.md" / "notes.txt").read_bytes() == b"x\n"
    assert (o / "SETUP_bitnet.md").is_file() and (o / "MIGRATION_REPORT_bitnet.md").is_file()
    assert (o / "side_by_side_test.py").is_file()


def test_no_collision_unchanged_names(tmp_path: Path) -> None:
    src = tmp_path / "p"
    src.mkdir()
    (src / "main.py").write_bytes(b"import generate\n")
    plans: list[MigrationPlan] = []
    assert migrate_project(src, tmp_path / "o", create_backup=False, plan_out=plans)
    assert plans[0].renamed == {} and plans[0].merged == []
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["MIGRATION_REPORT.md", "SETUP.md", "main.py", "requirements.txt", "side_by_side_test.py"]
    assert "Generated Files Renamed" not in (tmp_path / "o" / "MIGRATION_REPORT.md").read_text()


def test_remigrating_output_keeps_everything(tmp_path: Path) -> None:
    """Migrating a migrated project again: the first run's generated files
    are now the project's and stay byte for byte; the new ones are renamed."""
    src = tmp_path / "p"
    src.mkdir()
    (src / "main.py").write_bytes(b"import model as fast\n")
    assert migrate_project(src, tmp_path / "o0", create_backup=False)
    plans: list[MigrationPlan] = []
    assert migrate_project(tmp_path / "o0", tmp_path / "o1", create_backup=False, plan_out=plans)
    first = tree_hash(tmp_path / "o0")
    second = tree_hash(tmp_path / "o1")
    assert {k: second[k] for k in first} == first
    assert set(second) - set(first) == {"side_by_side_test_bitnet.py", "SETUP_bitnet.md", "MIGRATION_REPORT_bitnet.md"}
    assert plans[0].rewritten == [] and plans[0].merged == []
