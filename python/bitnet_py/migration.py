"""Migration tools: from the original BitNet Python code (``gpu/model.py``,
``generate.py``, ``tokenizer.py``, ``stats.py``) to bitnet_py.

Programmatic::

    from bitnet_py.migration import MigrationHelper, migrate_project
    helper = MigrationHelper(verbose=True)
    analysis = helper.analyze_existing_code("generate.py")
    migrate_project("old/", "new/")

Command line: ``python -m bitnet_py.migration analyze FILE``,
``migrate SRC DST [--no-backup] [--test-prompts ...]``, ``check``.

Imports are rewritten statement by statement (``import model as fast`` ->
``import bitnet_py as fast``; ``from model import X`` / ``from generate
import X`` / ``from stats import X`` / ``from tokenizer import X`` -> ``from
bitnet_py import X``); names like ``import models`` are left alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

logger = logging.getLogger(__name__)

#: Modules of the original implementation that bitnet_py replaces.
ORIGINAL_MODULES = ("model", "generate", "tokenizer", "stats")
#: Names the original defines that bitnet_py provides.
ORIGINAL_NAMES = ("FastGen", "Transformer", "ModelArgs", "GenArgs", "Tokenizer", "ChatFormat", "Stats",
                  "make_cache", "cache_prefix")
DEFAULT_TEST_PROMPTS = ["Hello, my name is", "The capital of France is", "In the year 2024,"]

_MODS = "|".join(ORIGINAL_MODULES)
_RE_IMPORT = re.compile(rf"^(?P<indent>\s*)import\s+(?P<mod>{_MODS})(?:\s+as\s+(?P<alias>\w+))?\s*(?P<rest>#.*)?$")
_RE_FROM = re.compile(rf"^(?P<indent>\s*)from\s+(?P<mod>{_MODS})\s+import\s+(?P<names>.+)$")
_RE_XFORMERS = re.compile(r"^(?P<indent>\s*)(from\s+xformers\b.*|import\s+xformers\b.*)$")


class MigrationHelper:
    """Analyse and rewrite code written for the original implementation.

    ``migration_log`` collects ``"[LEVEL] message"`` lines; with
    ``verbose`` they are also logged at INFO."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.migration_log: list[str] = []

    def log(self, message: str, level: str = "INFO") -> None:
        line = f"[{level}] {message}"
        self.migration_log.append(line)
        lvl = getattr(logging, level.upper(), logging.INFO)
        if self.verbose:
            logger.log(lvl if isinstance(lvl, int) else logging.INFO, message)

    def check_original_installation(self, root: str = ".") -> bool:
        """True when the original's ``gpu/model.py``, ``generate.py`` and
        ``tokenizer.py`` are under ``root`` (or ``model`` is importable)."""
        gpu = Path(root) / "gpu"
        files = [gpu / f"{m}.py" for m in ("model", "generate", "tokenizer")]
        if all(f.is_file() for f in files):
            self.log(f"original implementation found in {gpu}")
            return True
        try:
            found = importlib.util.find_spec("model") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            self.log("original 'model' module is importable")
            return True
        self.log("original BitNet implementation not found", "WARNING")
        return False

    def analyze_existing_code(self, file_path: str) -> dict[str, Any]:
        """``{compatible, issues, suggestions, imports, classes_used,
        functions_used}`` for one Python file."""
        result: dict[str, Any] = {"compatible": True, "issues": [], "suggestions": [], "imports": [],
                                  "classes_used": [], "functions_used": []}
        try:
            text = Path(file_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            result["compatible"] = False
            result["issues"].append(f"Error analyzing file: {e}")
            self.log(f"cannot read {file_path}: {e}", "ERROR")
            return result
        for i, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if _RE_IMPORT.match(line) or _RE_FROM.match(line):
                result["imports"].append((i, s))
                result["suggestions"].append(f"Line {i}: Replace '{s}' with '{_rewrite_line(line).strip()}'")
            for name in ORIGINAL_NAMES:
                if re.search(rf"\b{name}\b", line) and not s.startswith("#"):
                    result["classes_used"].append((name, i))
            for fn in ("generate_all", "build", "encode_dialog_prompt", "make_cache", "cache_prefix"):
                if re.search(rf"\.{fn}\(|\b{fn}\(", line) and not s.startswith("#"):
                    result["functions_used"].append((fn, i))
            if "torch.cuda" in line:
                result["issues"].append(f"Line {i}: Direct CUDA usage detected - may need adaptation "
                                        "(bitnet_py runs on the CPU)")
            if ".cuda()" in line:
                result["issues"].append(f"Line {i}: Tensor CUDA movement - not needed with bitnet_py")
            if "xformers" in line:
                result["issues"].append(f"Line {i}: xformers dependency - not needed in bitnet_py")
        if not result["imports"]:
            result["suggestions"].append("No BitNet imports found - this may not be a BitNet Python file")
        result["compatible"] = not any("Direct CUDA" in x for x in result["issues"])
        self.log(f"analyzed {file_path}: {len(result['issues'])} issues")
        return result

    def create_migration_config(self, original_config: dict[str, Any]) -> dict[str, Any]:
        """Split an original-style config into bitnet_py's objects' dicts."""
        from .config import GenArgs, InferenceConfig, ModelArgs

        model = ModelArgs.from_dict(original_config.get("model", original_config))
        gen = GenArgs.from_dict(original_config.get("generation", original_config))
        inf = InferenceConfig(max_new_tokens=gen.gen_length, temperature=gen.temperature, top_p=gen.top_p,
                              do_sample=gen.use_sampling)
        return {"model_args": model.to_dict(), "gen_args": gen.to_dict(), "inference_config": inf.to_dict(),
                "device": "cpu", "dtype": original_config.get("dtype", "bfloat16")}

    def migrate_script(self, input_path: str, output_path: str) -> bool:
        """Rewrite one script's imports; write it with a header noting the changes."""
        try:
            text = Path(input_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.log(f"cannot read {input_path}: {e}", "ERROR")
            return False
        new, changes = migrate_source(text)
        header = ['"""Migrated to bitnet_py.', "", f"Original file: {input_path}",
                  f"Migration date: {_dt.datetime.now().isoformat(timespec='seconds')}", "", "Changes made:"]
        header += [f"- Replaced '{a}' with '{b}'" for a, b in changes] or ["- none"]
        header.append('"""')
        body = new
        # keep a shebang / encoding line first
        first, _, rest = body.partition("\n")
        prefix = ""
        if first.startswith("#!") or "coding" in first:
            prefix, body = first + "\n", rest
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        Path(output_path).write_text(prefix + "\n".join(header) + "\n" + body, encoding="utf-8")
        self.log(f"migrated {input_path} -> {output_path} ({len(changes)} changes)")
        return True

    def create_side_by_side_test(self, test_prompts: Optional[Sequence[str]], output_dir: str) -> str:
        """Write ``side_by_side_test.py``: runs bitnet_py (and the original,
        when importable) on the prompts and writes ``comparison_results.json``."""
        prompts = list(test_prompts or DEFAULT_TEST_PROMPTS)
        path = Path(output_dir) / "side_by_side_test.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_SIDE_BY_SIDE.replace("__PROMPTS__", json.dumps(prompts)), encoding="utf-8")
        self.log(f"wrote {path}")
        return str(path)

    def generate_migration_report(self, analysis_results: Sequence[dict[str, Any]]) -> str:
        """A Markdown report of analysed files."""
        n = len(analysis_results)
        ok = sum(1 for a in analysis_results if a.get("compatible"))
        lines = ["# BitNet Python to bitnet_py Migration Report", "",
                 f"Generated: {_dt.datetime.now().isoformat(timespec='seconds')}", "", "## Summary", "",
                 f"- Total files analyzed: {n}", f"- Compatible files: {ok}",
                 f"- Files with issues: {sum(1 for a in analysis_results if a.get('issues'))}", "",
                 "## Migration Steps", "",
                 "1. `pip install bitnet-py`",
                 "2. Replace `import model as fast` with `import bitnet_py as fast`, and `from model/generate/"
                 "tokenizer/stats import ...` with `from bitnet_py import ...`",
                 "3. Remove xformers and CUDA-specific code (bitnet_py runs on the CPU)",
                 "4. Point `FastGen.build()` at a directory holding a GGUF model (and tokenizer.model)",
                 "5. Run side_by_side_test.py", "", "## File Analysis Results", ""]
        for i, a in enumerate(analysis_results, 1):
            lines.append(f"### File {i}: {a.get('file_path', '')}".rstrip(": "))
            lines.append("")
            lines.append("Status: " + ("✅ Compatible" if a.get("compatible") else "❌ Needs attention"))
            for key, title in (("imports", "Imports"), ("classes_used", "Classes used"), ("issues", "Issues"),
                               ("suggestions", "Suggestions")):
                items = a.get(key) or []
                if items:
                    lines.append(f"\n{title}:")
                    lines.extend(f"- {x}" for x in items)
            lines.append("")
        lines += ["## Performance Expectations", "",
                  "Measure on your hardware with `bitnet_py.benchmark_inference` and "
                  "`bitnet_py.compare_performance` (no numbers are assumed here).", "",
                  "## Common Migration Issues", "",
                  "- `device='cuda:0'` is accepted and runs on the CPU.",
                  "- `.pt` checkpoints need the checkpoint-format support; GGUF always works.",
                  "- Errors are `bitnet_py.BitNetError` subclasses that also subclass the builtins.", "",
                  "## Testing Your Migration", "", "Run `python side_by_side_test.py`.", "",
                  "## Support", "", "See docs/migration.md.", "", "## Migration Log", ""]
        lines += [f"- {entry}" for entry in self.migration_log]
        return "\n".join(lines) + "\n"


def _rewrite_line(line: str) -> str:
    m = _RE_IMPORT.match(line)
    if m:
        mod, alias, indent = m.group("mod"), m.group("alias"), m.group("indent")
        rest = f"  {m.group('rest')}" if m.group("rest") else ""
        if mod == "model":
            return f"{indent}import bitnet_py as {alias or 'model'}{rest}"
        if alias:
            return f"{indent}import bitnet_py as {alias}{rest}"
        return f"{indent}# import {mod}  # Not needed with bitnet_py (its names are in bitnet_py){rest}"
    m = _RE_FROM.match(line)
    if m:
        return f"{m.group('indent')}from bitnet_py import {m.group('names')}"
    m = _RE_XFORMERS.match(line)
    if m:
        return f"{m.group('indent')}# {line.strip()}  # Not needed with bitnet_py"
    return line


def migrate_source(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Rewrite the original's imports in ``text``; (new text, [(old, new)])."""
    out, changes = [], []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        nl = line[len(body):]
        new = _rewrite_line(body)
        if new != body:
            changes.append((body.strip(), new.strip()))
        out.append(new + nl)
    return "".join(out), changes


def _imports_original(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(_RE_IMPORT.match(l) or _RE_FROM.match(l) or _RE_XFORMERS.match(l) for l in text.splitlines())


def migrate_project(project_path: str, output_path: str, test_prompts: Optional[Sequence[str]] = None,
                    create_backup: bool = True, helper: Optional[MigrationHelper] = None) -> bool:
    """Copy ``project_path`` to ``output_path``, rewriting the scripts that
    import the original; write side_by_side_test.py, MIGRATION_REPORT.md,
    requirements.txt and SETUP.md. Returns False (and logs why) on failure."""
    h = helper or MigrationHelper(verbose=False)
    try:
        src = Path(project_path)
        dst = Path(output_path)
        if not src.is_dir():
            raise FileNotFoundError(f"project directory not found: {project_path}")
        if dst.resolve() == src.resolve():
            raise ValueError("output_path must differ from project_path")
        if create_backup:
            backup = src.parent / f"{src.name}_backup_{int(time.time())}"
            shutil.copytree(src, backup)
            h.log(f"backup written to {backup}")
        analyses = []
        for f in sorted(src.rglob("*")):
            rel = f.relative_to(src)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            target = dst / rel
            if f.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.suffix == ".py" and _imports_original(f):
                a = h.analyze_existing_code(str(f))
                a["file_path"] = str(rel)
                analyses.append(a)
                if not h.migrate_script(str(f), str(target)):
                    raise RuntimeError(f"could not migrate {f}")
            else:
                shutil.copy2(f, target)
        h.create_side_by_side_test(test_prompts, str(dst))
        (dst / "MIGRATION_REPORT.md").write_text(h.generate_migration_report(analyses), encoding="utf-8")
        (dst / "requirements.txt").write_text("bitnet-py\nnumpy\n", encoding="utf-8")
        (dst / "SETUP.md").write_text(
            "# Setup\n\n1. `pip install -r requirements.txt`\n2. Put the model (GGUF) and tokenizer.model "
            "in your checkpoint directory.\n3. `python side_by_side_test.py MODEL TOKENIZER`\n", encoding="utf-8")
        h.log(f"migration of {src} to {dst} completed ({len(analyses)} scripts rewritten)")
        return True
    except Exception as e:  # report, as documented: a bool, not an exception
        h.log(f"Migration failed: {e}", "ERROR")
        logger.error("Migration failed: %s", e)
        return False


_SIDE_BY_SIDE = '''"""Side-by-side test written by bitnet_py.migration.

Usage: python side_by_side_test.py MODEL(.gguf or dir) TOKENIZER(tokenizer.model)
Runs the prompts through bitnet_py (greedy) and, when the original
implementation is importable, through it too; writes comparison_results.json.
"""
import json
import sys
import time

import bitnet_py

PROMPTS = __PROMPTS__


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else "model.gguf"
    tok_path = sys.argv[2] if len(sys.argv) > 2 else "tokenizer.model"
    model = bitnet_py.load_model(model_path)
    tok = bitnet_py.create_tokenizer(tok_path)
    engine = bitnet_py.SimpleInference(model, tok, bitnet_py.InferenceConfig(do_sample=False, max_new_tokens=32))
    results = []
    for p in PROMPTS:
        t0 = time.perf_counter()
        text = engine.generate(p)
        results.append({"prompt": p, "bitnet_py": text, "time_s": time.perf_counter() - t0})
    try:
        import model as original  # noqa: F401
        results.append({"note": "original implementation importable: add its run here"})
    except ImportError:
        pass
    print("COMPARISON RESULTS")
    for r in results:
        print(json.dumps(r, ensure_ascii=False))
    with open("comparison_results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
'''


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitnet_py.migration",
                                     description="Migrate code from the original BitNet Python implementation")
    sub = parser.add_subparsers(dest="command")
    p_an = sub.add_parser("analyze", help="analyse a Python file")
    p_an.add_argument("file")
    p_mi = sub.add_parser("migrate", help="migrate a project directory")
    p_mi.add_argument("input")
    p_mi.add_argument("output")
    p_mi.add_argument("--no-backup", action="store_true")
    p_mi.add_argument("--test-prompts", nargs="*", default=None)
    sub.add_parser("check", help="look for the original implementation")
    args = parser.parse_args(argv)
    helper = MigrationHelper(verbose=False)
    if args.command == "analyze":
        a = helper.analyze_existing_code(args.file)
        print(f"Analysis for {args.file}:")
        print(f"Compatible: {a['compatible']}")
        print(f"Issues: {len(a['issues'])}")
        for x in a["issues"]:
            print(f"  - {x}")
        print(f"Suggestions: {len(a['suggestions'])}")
        for x in a["suggestions"]:
            print(f"  - {x}")
        return 0
    if args.command == "migrate":
        ok = migrate_project(args.input, args.output, args.test_prompts, not args.no_backup, helper)
        if ok:
            print("Migration completed successfully!")
            print(f"Check {os.path.join(args.output, 'MIGRATION_REPORT.md')} for details")
            return 0
        print("Migration failed. Check the logs for details.")
        for line in helper.migration_log:
            if line.startswith("[ERROR]"):
                print(line, file=sys.stderr)
        return 1
    if args.command == "check":
        if helper.check_original_installation():
            print("Original BitNet Python implementation found")
        else:
            print("Original BitNet Python implementation not found")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
