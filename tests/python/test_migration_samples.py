"""bitnet_py.migration on a realistic project in the original's style
(tests/python/data/migration_samples/bitnet_app): a generate.py-like script,
a chat loop, a batch job, a helper module importing ``model``/``generate``
in many ways, distractor modules (``models``, ``model_utils``), configs and a
file that does not parse. The migrated project runs on CPU against a tiny
synthetic model and gives the same tokens as calling bitnet_py directly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bitnet_py
from bitnet_py.migration import MigrationHelper, migrate_bytes, migrate_project, migrate_source

SAMPLES = Path(__file__).resolve().parent / "data" / "migration_samples"
APP = SAMPLES / "bitnet_app"
REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BITNET_ORIGINAL_PATH", "NO_CUDA_GRAPHS")}
    env["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bitnet_py.migration", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120, env=_env())


def tree_hash(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src" / "bitnet_app"
    shutil.copytree(APP, d)
    return d


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("mig")
    s = root / "bitnet_app"
    shutil.copytree(APP, s)
    r = cli("migrate", str(s), str(root / "out"), "--no-backup", "--json", "--test-prompts", "Hello", "Hi there")
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "out", json.loads(r.stdout)


def run_script(cwd: Path, *args: str, stdin: str | None = None) -> tuple[str, Any]:
    r = subprocess.run([sys.executable, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                       timeout=300, env=_env(BITNET_DEVICE="cpu"))
    assert r.returncode == 0, r.stdout + r.stderr
    res = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(res) == 1, r.stdout
    return r.stdout, json.loads(res[0][len("RESULT "):])


def direct(ckpt: Path, prompts: list[str], gen_length: int, chat: bool = False, bsz: int = 1) -> list[list[int]]:
    """What bitnet_py's API gives, called directly."""
    g = bitnet_py.FastGen.build(ckpt, bitnet_py.GenArgs(gen_length=gen_length, gen_bsz=bsz), "cpu")
    if chat:
        cf = bitnet_py.ChatFormat(g.tokenizer)
        toks = [cf.encode_dialog_prompt([{"role": "user", "content": p}], completion=True) for p in prompts]
    else:
        toks = [g.tokenizer.encode(p, bos=False, eos=False) for p in prompts]
    out: list[list[int]] = []
    for i in range(0, len(toks), bsz):
        _, ans = g.generate_all(toks[i:i + bsz], use_cuda_graphs=False, use_sampling=False)
        out += [list(map(int, a)) for a in ans]
    return out


# ---------------------------------------------------------------------------
# the migrated project runs and matches the API
# ---------------------------------------------------------------------------

def test_original_project_needs_the_original(src: Path, ckpt: Path) -> None:
    r = subprocess.run([sys.executable, "generate_text.py", str(ckpt)], cwd=src, capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode != 0 and "No module named 'model'" in r.stderr


def test_generate_script(migrated: tuple[Path, dict[str, Any]], ckpt: Path) -> None:
    out, _ = migrated
    text, got = run_script(out, "generate_text.py", str(ckpt), "--prompt", "The capital of France is",
                           "--gen_length", "9")
    assert got == direct(ckpt, ["The capital of France is"], 9)
    assert "> The capital of France is" in text and "---------------" in text
    _, got = run_script(out, "generate_text.py", str(ckpt), "--prompt", "Hi", "--chat_format")
    assert got == direct(ckpt, ["Hi"], 16, chat=True)


def test_chat_loop(migrated: tuple[Path, dict[str, Any]], ckpt: Path) -> None:
    out, _ = migrated
    prompts = ["Hello there", "What is BitNet?"]
    text, got = run_script(out, "chat_loop.py", str(ckpt), stdin="\n".join(prompts) + "\n")
    assert got == direct(ckpt, prompts, 12, chat=True)
    assert text.rstrip().splitlines()[-2].endswith("exiting")


def test_batch_job(migrated: tuple[Path, dict[str, Any]], ckpt: Path) -> None:
    out, _ = migrated
    prompts = (APP / "prompts.txt").read_text().split("\n")[:4]
    _, got = run_script(out, "batch_job.py", str(ckpt))
    assert got == direct(ckpt, prompts, 10, bsz=2)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(l)["prompt"] for l in lines] == prompts
    (out / "results.jsonl").unlink()


# ---------------------------------------------------------------------------
# exactly the imports change
# ---------------------------------------------------------------------------

def test_only_imports_change(migrated: tuple[Path, dict[str, Any]]) -> None:
    out, doc = migrated
    assert sorted(doc["rewritten"]) == ["batch_job.py"][:0] + ["bitnet_helpers.py", "chat_loop.py",
                                                               "generate_text.py"]
    before = (APP / "bitnet_helpers.py").read_text()
    expected = (before
                .replace("import  model  as  fast", "import  bitnet_py as fast")
                .replace("import model, generate\n", "import bitnet_py as model, bitnet_py as generate\n")
                .replace("from model \\\n    import ModelArgs", "from bitnet_py \\\n    import ModelArgs")
                .replace("from generate import (", "from bitnet_py import (")
                .replace("import generate as gen; import stats\n", "import bitnet_py as gen; import bitnet_py as stats\n")
                .replace("    from tokenizer import Tokenizer", "    from bitnet_py import Tokenizer")
                .replace("    import stats as stats_mod", "    import bitnet_py as stats_mod"))
    assert (out / "bitnet_helpers.py").read_text() == expected
    after = (out / "bitnet_helpers.py").read_text()
    for keep in ("import models  # our own", "import model_utils\n", "from models import REGISTRY",
                 'BANNER = "import model as fast  # this string', "# import model as fast   <- a comment",
                 "Historically this said ``from model import ModelArgs``"):
        assert keep in after
    for f in ("models.py", "model_utils.py", "README.md", "batch_job.py", "prompts.txt", "legacy_py2.py",
              "configs/config.yaml", "configs/config.json"):
        assert (out / f).read_bytes() == (APP / f).read_bytes(), f
    assert doc["unparsable"] == ["legacy_py2.py"]
    report = (out / "MIGRATION_REPORT.md").read_text()
    assert "legacy_py2.py" in report and "Do not parse" in report


def test_idempotent(migrated: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = migrated
    r = cli("migrate", str(out), str(tmp_path / "again"), "--no-backup", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rewritten"] == [] and doc["changes"] == {}
    for p in out.rglob("*.py"):
        rel = p.relative_to(out)
        assert (tmp_path / "again" / rel).read_bytes() == p.read_bytes(), rel
    for p in APP.rglob("*.py"):
        raw = p.read_bytes()
        if p.name != "legacy_py2.py":
            once, _ = migrate_bytes(raw)
            assert migrate_bytes(once) == (once, [])


def test_bytes_kept_crlf_bom_latin1() -> None:
    crlf = b"\xef\xbb\xbfimport os\r\nimport model as fast  # c\r\nx = '\xc3\xa9'\r\n"
    new, ch = migrate_bytes(crlf)
    assert new == crlf.replace(b"model as fast", b"bitnet_py as fast") and len(ch) == 1
    latin = "# -*- coding: latin-1 -*-\ns = 'café'; from model import ModelArgs\n".encode("latin-1")
    new, ch = migrate_bytes(latin)
    assert new == latin.replace(b"from model", b"from bitnet_py")
    src = "def f():\n    if True:\n        import model\n    return model\nfrom . import model\nfrom model.x import y\n"
    new, _ = migrate_source(src)
    assert new == src.replace("        import model", "        import bitnet_py as model")


# ---------------------------------------------------------------------------
# dry run, safety, backup
# ---------------------------------------------------------------------------

def test_dry_run_diff(src: Path, tmp_path: Path) -> None:
    before = tree_hash(src)
    r = cli("migrate", str(src), str(tmp_path / "dst"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "dst").exists() and not list(src.parent.glob("*_backup_*"))
    assert "--- a/generate_text.py\n+++ b/generate_text.py\n" in r.stdout
    assert "\n-import model as fast  # Transformer, ModelArgs\n" in r.stdout
    assert "\n+import bitnet_py as fast  # Transformer, ModelArgs\n" in r.stdout
    assert "Dry run: 3 files would be rewritten" in r.stdout
    assert tree_hash(src) == before
    r = cli("migrate", str(src), str(tmp_path / "dst"), "--dry-run", "--json")
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["dry_run"] and "+from bitnet_py import FastGen, GenArgs" in doc["diff"]


def test_safety_rules(src: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("do not copy")
    (src / "leak.txt").symlink_to(outside)
    (src / "inside_link.py").symlink_to(src / "models.py")
    before = tree_hash(src)
    # DST inside SRC, SRC inside DST, DST == SRC: refused, exit 1
    for dst in (src / "sub", src.parent, src):
        r = cli("migrate", str(src), str(dst), "--no-backup")
        assert r.returncode == 1 and "Migration failed" in r.stdout, dst
    assert not (src / "sub").exists()
    # existing non-empty DST: refused without --force
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    r = cli("migrate", str(src), str(dst), "--no-backup")
    assert r.returncode == 1 and "not empty" in r.stderr
    assert (dst / "keep.txt").read_text() == "mine" and len(list(dst.iterdir())) == 1
    # with --force; a symlink in DST pointing elsewhere is replaced, not followed
    victim = tmp_path / "victim.py"
    victim.write_text("untouched")
    (dst / "models.py").symlink_to(victim)
    r = cli("migrate", str(src), str(dst), "--no-backup", "--force", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert victim.read_text() == "untouched" and not (dst / "models.py").is_symlink()
    assert not (dst / "leak.txt").exists()
    assert ["leak.txt", "symlink pointing outside the source directory"] in doc["skipped"]
    assert (dst / "inside_link.py").read_bytes() == (src / "models.py").read_bytes()
    assert tree_hash(src) == before  # SRC untouched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dst", "secret.txt", "src", "victim.py"]


def test_backup(src: Path, tmp_path: Path) -> None:
    before = tree_hash(src)
    r = cli("migrate", str(src) + "/", str(tmp_path / "dst"))
    assert r.returncode == 0, r.stderr
    backups = list(src.parent.glob("bitnet_app_backup_*"))
    assert len(backups) == 1 and tree_hash(backups[0]) == before
    assert f"Backup: {backups[0]}" in r.stdout
    assert not list(src.glob("*backup*"))  # never inside the project (trailing slash)


# ---------------------------------------------------------------------------
# analysis, CLI output and exit codes, configs
# ---------------------------------------------------------------------------

def test_analyze_ast() -> None:
    a = MigrationHelper(verbose=False).analyze_existing_code(APP / "bitnet_helpers.py")
    lines = (APP / "bitnet_helpers.py").read_text().splitlines()
    got = [ln for ln, _ in a["imports"]]
    want = [i for i, l in enumerate(lines, 1)
            if l.lstrip().startswith(("import  model", "import model,", "from model ", "from generate",
                                      "import generate", "from tokenizer", "import stats"))]
    assert sorted(set(got)) == want and len(got) == len(want) + 1, (got, want)  # line 18: two statements
    assert all(s.split()[0] in ("import", "from") for _, s in a["imports"])
    assert ("ModelArgs", lines.index("DIM_DEFAULT = ModelArgs().dim") + 1) in a["classes_used"]
    at = {l.strip(): i for i, l in enumerate(lines, 1)}
    assert ("GenArgs", at["args = gen.GenArgs(**generation)"]) in a["classes_used"]
    build = [l for l in at if l.startswith("return FastGen.build(")][0]
    assert ("FastGen", at[build]) in a["classes_used"] and ("build", at[build]) in a["functions_used"]
    fns = {n for n, _ in a["functions_used"]}
    assert {"build", "encode"} <= fns
    assert a["compatible"] and not a["issues"]
    g = MigrationHelper(verbose=False).analyze_existing_code(APP / "generate_text.py")
    glines = (APP / "generate_text.py").read_text().splitlines()
    cuda = 1 + next(i for i, l in enumerate(glines) if "torch.cuda" in l)
    gen_all = 1 + next(i for i, l in enumerate(glines) if ".generate_all(" in l)
    assert not g["compatible"] and g["issues"] == [f"Line {cuda}: Direct CUDA usage detected - may need "
                                                   "adaptation (bitnet_py runs on the CPU)"]
    assert ("generate_all", gen_all) in g["functions_used"]


def test_cli_analyze_outputs(src: Path) -> None:
    r = cli("analyze", str(src))
    assert r.returncode == 0
    assert f"Analysis for {src / 'chat_loop.py'}:" in r.stdout and "Compatible: False" in r.stdout
    r = cli("analyze", str(src), "--json")
    doc = json.loads(r.stdout)
    files = {Path(f["file_path"]).name: f for f in doc["files"]}
    assert files["chat_loop.py"]["imports"][0] == {"line": 5, "statement": "import generate"}
    assert files["legacy_py2.py"]["parse_error"] and not doc["compatible"]
    assert cli("analyze", str(src), "--strict").returncode == 3
    assert cli("analyze", str(src / "models.py"), "--strict").returncode == 0
    assert cli("analyze", str(src / "missing.py")).returncode == 1
    assert cli("migrate", str(src)).returncode == 2  # usage
    r = cli("check", "--json", cwd=src)
    assert r.returncode == 0 and json.loads(r.stdout) == {"found": False, "root": "."}
    assert cli("check", "--strict", cwd=src).returncode == 3


def test_config_migration(migrated: tuple[Path, dict[str, Any]], src: Path) -> None:
    out, doc = migrated
    cfg = json.loads((out / "migration_config.json").read_text())
    assert cfg["gen_args"]["gen_length"] == 10 and cfg["gen_args"]["gen_bsz"] == 2
    assert cfg["model_args"]["use_kernel"] is True and cfg["model_args"]["n_kv_heads"] == 5
    assert cfg["inference_config"]["max_new_tokens"] == 10 and cfg["device"] == "cpu"
    assert set(doc["configs"]) >= {"configs/config.yaml", "configs/config.json", "generate_text.py"}
    r = cli("config", str(src / "configs" / "config.yaml"))
    assert r.returncode == 0 and json.loads(r.stdout)["gen_args"]["gen_bsz"] == 2
    bitnet_py.ModelArgs.from_dict(cfg["model_args"])
    assert bitnet_py.GenArgs.from_dict(cfg["gen_args"]).gen_length == 10
    py = MigrationHelper(verbose=False).migrate_config_file(src / "generate_text.py")
    assert py["gen_args"]["use_sampling"] is False
    assert cli("config", str(src / "README.md")).returncode == 1


# ---------------------------------------------------------------------------
# the generated side-by-side test
# ---------------------------------------------------------------------------

def test_side_by_side_ours_alone(migrated: tuple[Path, dict[str, Any]], ckpt: Path, tmp_path: Path) -> None:
    out, _ = migrated
    side = out / "side_by_side_test.py"
    assert '["Hello", "Hi there"]' in side.read_text()
    r = subprocess.run([sys.executable, str(side), str(ckpt), "--gen-length", "6"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr
    assert "COMPARISON RESULTS" in r.stdout and "ran bitnet_py alone" in r.stdout
    res = json.loads((tmp_path / "comparison_results.json").read_text())
    assert res["original"] is None and res["bitnet_py"]["answers"] == direct(ckpt, ["Hello", "Hi there"], 6)
    assert res["bitnet_py"]["generation_time_s"] > 0


def test_side_by_side_runs_the_original(migrated: tuple[Path, dict[str, Any]], ckpt: Path,
                                        tmp_path: Path) -> None:
    out, _ = migrated
    calls = tmp_path / "calls.txt"
    r = subprocess.run([sys.executable, str(out / "side_by_side_test.py"), str(ckpt), "--gen-length", "6"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=_env(BITNET_ORIGINAL_PATH=str(SAMPLES / "fake_original"),
                                FAKE_ORIGINAL_CALLS=str(calls)))
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "comparison_results.json").read_text())
    assert res["tokens_match"] is True and res["original"]["answers"] == res["bitnet_py"]["answers"]
    assert res["speedup"] > 0 and "tokens match: True" in r.stdout
    log = calls.read_text().splitlines()
    assert log[0] == "FastGen.build device=cuda:0" and log.count("Tokenizer.encode") == 2
    assert log[-1] == "FastGen.generate_all"


def test_migrate_project_api(src: Path, tmp_path: Path) -> None:
    h = MigrationHelper(verbose=False)
    assert migrate_project(src, tmp_path / "o", ["x"], create_backup=False, helper=h)
    assert any("replaced 'import generate' with 'import bitnet_py as generate'" in l for l in h.migration_log)
    assert not migrate_project(src, src / "inner", create_backup=False, helper=h)
    assert h.migration_log[-1].startswith("[ERROR] Migration failed: ")
