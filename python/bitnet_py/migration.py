"""Migration tools: from the original BitNet Python code (``gpu/model.py``,
``generate.py``, ``tokenizer.py``, ``stats.py``) to bitnet_py.

Programmatic::

    from bitnet_py.migration import MigrationHelper, migrate_project
    helper = MigrationHelper(verbose=True)
    analysis = helper.analyze_existing_code("generate.py")
    migrate_project("old/", "new/")

Command line (``python -m bitnet_py.migration --help``)::

    analyze FILE_OR_DIR [--json]
    migrate SRC DST [--no-backup] [--dry-run] [--force] [--test-prompts P ...] [--json]
    check [--root DIR] [--json]
    config FILE [--json]

Analysis and rewriting work on the Python syntax tree. Only import
statements of the original's top-level modules (``model``, ``generate``,
``tokenizer``, ``stats``) change, and only the module name inside them:
``import model as fast`` -> ``import bitnet_py as fast``, ``import generate``
-> ``import bitnet_py as generate``, ``from model import X`` -> ``from
bitnet_py import X``. Every other byte of the file (comments, formatting,
line endings, ``import models``, strings) is kept, and a second run
changes nothing.

Exit codes of the command line: 0 done; 1 the operation failed or was
refused (missing input, a safety rule, a write error); 2 usage error; 3
``analyze --strict`` found a file that needs attention, or ``check --strict``
did not find the original.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import difflib
import importlib.util
import io
import json
import logging
import os
import shutil
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Top-level modules of the original implementation that bitnet_py replaces.
ORIGINAL_MODULES = ("model", "generate", "tokenizer", "stats")
#: Names the original's modules define (reported in ``classes_used``).
ORIGINAL_CLASSES = ("FastGen", "Transformer", "ModelArgs", "GenArgs", "Tokenizer", "ChatFormat", "Stats",
                    "PhaseStats", "Message", "BitLinear", "BitLinearKernel", "Attention", "FeedForward",
                    "TransformerBlock", "RMSNorm")
#: Methods/functions of the original's API (reported in ``functions_used``).
ORIGINAL_FUNCTIONS = ("build", "generate_all", "compile_prefill", "compile_generate", "encode", "decode",
                      "encode_dialog_prompt", "encode_message", "encode_header", "make_cache", "cache_prefix",
                      "forward", "forward_with_attn_bias", "phase", "end_phase", "show")
DEFAULT_TEST_PROMPTS = ["Hello, my name is", "The capital of France is", "In the year 2024,"]
#: Names of the ModelArgs / GenArgs fields (for configuration migration).
_MODEL_KEYS = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "ffn_dim", "norm_eps", "rope_theta",
               "use_kernel")
_GEN_KEYS = ("gen_length", "gen_bsz", "prompt_length", "use_sampling", "temperature", "top_p", "top_k",
             "repetition_penalty")
_SKIP_DIRS = (".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox")
GENERATED_FILES = ("side_by_side_test.py", "MIGRATION_REPORT.md", "requirements.txt", "SETUP.md",
                   "migration_config.json")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3


class MigrationError(Exception):
    """A migration was refused (a safety rule) or failed."""


# ---------------------------------------------------------------------------
# Source handling: decode/encode keeping the bytes, map AST positions
# ---------------------------------------------------------------------------

@dataclass
class _Source:
    raw: bytes
    text: str
    encoding: str
    line_starts: list[int]  # character offset of each line in ``text``
    lines: list[str]

    @classmethod
    def from_bytes(cls, raw: bytes) -> "_Source":
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)  # "utf-8-sig" keeps a BOM
        text = raw.decode(encoding)
        lines = text.splitlines(keepends=True)
        starts, pos = [], 0
        for ln in lines:
            starts.append(pos)
            pos += len(ln)
        starts.append(pos)
        return cls(raw, text, encoding, starts, lines)

    def offset(self, lineno: int, col_utf8: int) -> int:
        """Character offset of an AST position (``col_offset`` counts UTF-8 bytes)."""
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        col = len(line.encode("utf-8")[:col_utf8].decode("utf-8", errors="ignore"))
        return self.line_starts[lineno - 1] + col

    def encode(self, text: str) -> bytes:
        return text.encode(self.encoding)


def _parse(src: _Source, filename: str) -> ast.Module:
    return ast.parse(src.raw, filename=filename)


@dataclass
class _Edit:
    start: int
    end: int
    new: str
    lineno: int
    old_stmt: str = ""
    new_stmt: str = ""


@dataclass
class _ImportInfo:
    lineno: int
    statement: str
    module: str
    names: list[str] = field(default_factory=list)
    alias: Optional[str] = None


def _statement_text(src: _Source, node: ast.stmt) -> str:
    start = src.offset(node.lineno, node.col_offset)
    end = src.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
    return src.text[start:end]


def _find_from_module(src: _Source, node: ast.ImportFrom) -> tuple[int, int]:
    """Character span of the module name in ``from MODULE import ...``,
    found with the tokenizer from the statement's position."""
    start = src.offset(node.lineno, node.col_offset)
    end = src.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
    seg = src.text[start:end]
    toks = tokenize.generate_tokens(io.StringIO(seg).readline)
    seen_from = False
    seg_lines = seg.splitlines(keepends=True)
    seg_starts = [0]
    for ln in seg_lines:
        seg_starts.append(seg_starts[-1] + len(ln))
    for tok in toks:
        if tok.type == tokenize.NAME and tok.string == "from" and not seen_from:
            seen_from = True
            continue
        if seen_from and tok.type == tokenize.NAME:
            s = seg_starts[tok.start[0] - 1] + tok.start[1]
            e = seg_starts[tok.end[0] - 1] + tok.end[1]
            return start + s, start + e
    raise ValueError("module name not found")  # pragma: no cover - ast guarantees it


def _plan(src: _Source, tree: ast.Module) -> tuple[list[_Edit], list[_ImportInfo]]:
    """The edits that rewrite the original's imports (module names only),
    and every import statement of the original's modules."""
    edits: list[_Edit] = []
    found: list[_ImportInfo] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            stmt = _statement_text(src, node)
            node_edits = []
            for a in node.names:
                if a.name not in ORIGINAL_MODULES:
                    continue
                found.append(_ImportInfo(node.lineno, stmt, a.name, [], a.asname))
                s = src.offset(a.lineno, a.col_offset)
                e = src.offset(a.end_lineno or a.lineno, a.end_col_offset or 0)
                new = f"bitnet_py as {a.asname or a.name}"
                node_edits.append(_Edit(s, e, new, node.lineno))
            if node_edits:
                st = src.offset(node.lineno, node.col_offset)
                new_stmt = stmt
                for ed in sorted(node_edits, key=lambda x: -x.start):
                    new_stmt = new_stmt[:ed.start - st] + ed.new + new_stmt[ed.end - st:]
                for ed in node_edits:
                    ed.old_stmt, ed.new_stmt = stmt, new_stmt
                edits.extend(node_edits)
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in ORIGINAL_MODULES:
                continue
            stmt = _statement_text(src, node)
            found.append(_ImportInfo(node.lineno, stmt, node.module, [a.name for a in node.names]))
            s, e = _find_from_module(src, node)
            st = src.offset(node.lineno, node.col_offset)
            new_stmt = stmt[:s - st] + "bitnet_py" + stmt[e - st:]
            edits.append(_Edit(s, e, "bitnet_py", node.lineno, stmt, new_stmt))
    edits.sort(key=lambda x: x.start)
    found.sort(key=lambda x: x.lineno)
    return edits, found


def migrate_source(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Rewrite the original's imports in ``text``: ``(new text, [(old
    statement, new statement)])``. Raises ``SyntaxError`` when ``text``
    does not parse."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    src = _Source(text.encode("utf-8"), text, "utf-8", starts, lines)
    tree = ast.parse(text)
    edits, _ = _plan(src, tree)
    return _apply(text, edits)


def _apply(text: str, edits: Sequence[_Edit]) -> tuple[str, list[tuple[str, str]]]:
    out = text
    for ed in sorted(edits, key=lambda x: -x.start):
        out = out[:ed.start] + ed.new + out[ed.end:]
    changes: list[tuple[str, str]] = []
    for ed in edits:
        pair = (ed.old_stmt, ed.new_stmt)
        if pair not in changes:
            changes.append(pair)
    return out, changes


def migrate_bytes(raw: bytes, filename: str = "<source>") -> tuple[bytes, list[tuple[str, str]]]:
    """Like :func:`migrate_source` for a file's bytes (its encoding, BOM and
    line endings kept)."""
    src = _Source.from_bytes(raw)
    tree = _parse(src, filename)
    edits, _ = _plan(src, tree)
    if not edits:
        return raw, []
    new, changes = _apply(src.text, edits)
    return src.encode(new), changes


# ---------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------

def _provided_by_bitnet_py(name: str) -> bool:
    import bitnet_py

    return hasattr(bitnet_py, name)


class _Usage(ast.NodeVisitor):
    def __init__(self, module_aliases: set[str], imported_names: dict[str, str]) -> None:
        self.aliases = module_aliases
        self.names = imported_names  # local name -> original name
        self.classes: list[tuple[str, int]] = []
        self.functions: list[tuple[str, int]] = []
        self.cuda: list[int] = []
        self.cuda_calls: list[int] = []
        self.missing: list[tuple[str, int]] = []

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            if node.attr in ORIGINAL_CLASSES or node.attr[:1].isupper():
                self.classes.append((node.attr, node.lineno))
            if not _provided_by_bitnet_py(node.attr):
                self.missing.append((f"{node.value.id}.{node.attr}", node.lineno))
        if isinstance(node.value, ast.Name) and node.value.id == "torch" and node.attr == "cuda":
            self.cuda.append(node.lineno)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        orig = self.names.get(node.id)
        if orig is not None and isinstance(node.ctx, ast.Load) and orig[:1].isupper():
            self.classes.append((orig, node.lineno))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr == "cuda" and not node.args:
                self.cuda_calls.append(node.lineno)
            if f.attr in ORIGINAL_FUNCTIONS:
                self.functions.append((f.attr, node.lineno))
            elif isinstance(f.value, ast.Name) and f.value.id in self.aliases and not f.attr[:1].isupper():
                self.functions.append((f.attr, node.lineno))
        elif isinstance(f, ast.Name):
            orig = self.names.get(f.id)
            if orig is not None and not orig[:1].isupper():
                self.functions.append((orig, node.lineno))
        self.generic_visit(node)


def _dedupe(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    out = []
    for x in sorted(items, key=lambda t: (t[1], t[0])):
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def analyze_source(raw: bytes, filename: str = "<source>") -> dict[str, Any]:
    """The analysis of one file's bytes (see :meth:`MigrationHelper.analyze_existing_code`)."""
    result: dict[str, Any] = {"compatible": True, "issues": [], "suggestions": [], "imports": [],
                              "classes_used": [], "functions_used": [], "parse_error": None}
    src = _Source.from_bytes(raw)
    try:
        tree = _parse(src, filename)
    except SyntaxError as e:
        result["compatible"] = False
        result["parse_error"] = f"line {e.lineno}: {e.msg}"
        result["issues"].append(f"Line {e.lineno}: File does not parse ({e.msg}) - it is copied unchanged")
        return result
    edits, found = _plan(src, tree)
    new_by_line: dict[str, str] = {}
    for ed in edits:
        new_by_line.setdefault(ed.old_stmt, ed.new_stmt)
    aliases: set[str] = set()
    names: dict[str, str] = {}
    imported_classes: list[tuple[str, int]] = []
    for imp in found:
        if (imp.lineno, imp.statement) not in result["imports"]:
            result["imports"].append((imp.lineno, imp.statement))
        new = new_by_line.get(imp.statement)
        if new is not None:
            result["suggestions"].append(f"Line {imp.lineno}: Replace '{imp.statement}' with '{new}'")
        if imp.names:
            for n in imp.names:
                if n == "*":
                    continue
                names[n] = n
                if n[:1].isupper():
                    imported_classes.append((n, imp.lineno))
                if not _provided_by_bitnet_py(n):
                    result["issues"].append(f"Line {imp.lineno}: '{n}' (from {imp.module}) is not provided "
                                            "by bitnet_py")
        else:
            aliases.add(imp.alias or imp.module)
    # local aliases: from model import ModelArgs as MA
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module in ORIGINAL_MODULES:
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m == "xformers" or m.startswith("xformers.") for m in mods):
                result["issues"].append(f"Line {node.lineno}: xformers dependency - not needed in bitnet_py "
                                        "(remove the import and its use)")
            for a in node.names if isinstance(node, ast.Import) else []:
                if a.name.split(".")[0] in ORIGINAL_MODULES and "." in a.name:
                    result["issues"].append(f"Line {node.lineno}: 'import {a.name}' has no bitnet_py "
                                            "counterpart and is not rewritten")
    v = _Usage(aliases, names)
    v.visit(tree)
    result["classes_used"] = _dedupe(imported_classes + v.classes)
    result["functions_used"] = _dedupe(v.functions)
    for ln in sorted(set(v.cuda)):
        result["issues"].append(f"Line {ln}: Direct CUDA usage detected - may need adaptation "
                                "(bitnet_py runs on the CPU)")
    for ln in sorted(set(v.cuda_calls)):
        result["issues"].append(f"Line {ln}: Tensor CUDA movement - not needed with bitnet_py")
    for name, ln in _dedupe(v.missing):
        result["issues"].append(f"Line {ln}: '{name}' is not provided by bitnet_py")
    if not result["imports"]:
        result["suggestions"].append("No BitNet imports found - this may not be a BitNet Python file")
    result["compatible"] = not any(("Direct CUDA" in x or "not provided" in x or "does not parse" in x)
                                   for x in result["issues"])
    return result


# ---------------------------------------------------------------------------
# Configuration migration
# ---------------------------------------------------------------------------

def _literal(node: ast.AST) -> Any:
    return ast.literal_eval(node)


def extract_config_from_source(raw: bytes, filename: str = "<source>") -> dict[str, dict[str, Any]]:
    """``{"model": {...}, "generation": {...}}`` from the literal keyword
    arguments of ``ModelArgs(...)`` / ``GenArgs(...)`` calls (the last call
    wins for each key). Non-literal values are skipped."""
    out: dict[str, dict[str, Any]] = {"model": {}, "generation": {}}
    try:
        tree = ast.parse(raw, filename=filename)
    except SyntaxError:
        return out
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        key = {"ModelArgs": "model", "GenArgs": "generation"}.get(name)
        if key is None:
            continue
        for kw in node.keywords:
            if kw.arg is None:
                continue
            try:
                out[key][kw.arg] = _literal(kw.value)
            except (ValueError, TypeError, SyntaxError):
                continue
    return out


def load_config_file(path: PathLike) -> dict[str, Any]:
    """Read a configuration (``.json``, ``.yaml``/``.yml`` or ``.py``) into
    ``{"model": {...}, "generation": {...}, ...}``. A flat mapping is split
    by the ModelArgs / GenArgs field names."""
    p = Path(path)
    raw = p.read_bytes()
    if p.suffix == ".py":
        return extract_config_from_source(raw, str(p))
    if p.suffix in (".yaml", ".yml"):
        import yaml  # PyYAML

        data = yaml.safe_load(raw.decode("utf-8"))
    else:
        data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    return _normalise_config(data)


def _normalise_config(data: dict[str, Any]) -> dict[str, Any]:
    model = data.get("model") or data.get("model_args") or {}
    gen = data.get("generation") or data.get("gen_args") or {}
    if not isinstance(model, dict):
        model = {}
    if not isinstance(gen, dict):
        gen = {}
    model = {**{k: v for k, v in data.items() if k in _MODEL_KEYS}, **model}
    gen = {**{k: v for k, v in data.items() if k in _GEN_KEYS}, **gen}
    out = {k: v for k, v in data.items() if k not in ("model", "model_args", "generation", "gen_args")
           and k not in _MODEL_KEYS and k not in _GEN_KEYS}
    out["model"] = model
    out["generation"] = gen
    return out


def _looks_like_config(data: dict[str, Any]) -> bool:
    keys = set(data)
    if keys & {"model", "model_args", "generation", "gen_args"}:
        inner = [data.get(k) for k in ("model", "model_args", "generation", "gen_args")]
        return any(isinstance(x, dict) and set(x) & set(_MODEL_KEYS + _GEN_KEYS) for x in inner)
    return len(keys & set(_MODEL_KEYS + _GEN_KEYS)) >= 2


# ---------------------------------------------------------------------------
# MigrationHelper
# ---------------------------------------------------------------------------

class MigrationHelper:
    """Analyse and rewrite code written for the original implementation.

    ``migration_log`` collects ``"[LEVEL] message"`` lines; with ``verbose``
    they are also logged (INFO and up) on this module's logger."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.migration_log: list[str] = []

    def log(self, message: str, level: str = "INFO") -> None:
        self.migration_log.append(f"[{level}] {message}")
        lvl = logging.getLevelName(level.upper())
        lvl = lvl if isinstance(lvl, int) else logging.INFO
        if self.verbose or lvl >= logging.WARNING:
            logger.log(lvl, message)

    def check_original_installation(self, root: PathLike = ".") -> bool:
        """True when the original's ``gpu/model.py``, ``generate.py`` and
        ``tokenizer.py`` are under ``root`` (or ``model`` and ``generate``
        are importable). Only looks; imports nothing."""
        gpu = Path(root) / "gpu"
        files = [gpu / f"{m}.py" for m in ("model", "generate", "tokenizer")]
        if all(f.is_file() for f in files):
            self.log(f"original implementation found in {gpu}")
            return True
        missing = [str(f) for f in files if not f.is_file()]
        try:
            found = all(importlib.util.find_spec(m) is not None for m in ("model", "generate"))
        except (ImportError, ValueError):
            found = False
        if found:
            self.log("original 'model' and 'generate' modules are importable")
            return True
        self.log(f"original BitNet implementation not found (missing: {', '.join(missing)}; "
                 "'model'/'generate' not importable)", "WARNING")
        return False

    def analyze_existing_code(self, file_path: PathLike) -> dict[str, Any]:
        """``{compatible, issues, suggestions, imports, classes_used,
        functions_used, parse_error}`` for one Python file: ``imports`` are
        ``(line, statement)`` of the original's modules, ``classes_used`` and
        ``functions_used`` are ``(name, line)``."""
        try:
            raw = Path(file_path).read_bytes()
        except OSError as e:
            self.log(f"cannot read {file_path}: {e}", "ERROR")
            return {"compatible": False, "issues": [f"Error analyzing file: {e}"], "suggestions": [],
                    "imports": [], "classes_used": [], "functions_used": [], "parse_error": None}
        try:
            result = analyze_source(raw, str(file_path))
        except (UnicodeDecodeError, SyntaxError, ValueError) as e:
            self.log(f"cannot analyse {file_path}: {e}", "ERROR")
            return {"compatible": False, "issues": [f"Error analyzing file: {e}"], "suggestions": [],
                    "imports": [], "classes_used": [], "functions_used": [], "parse_error": str(e)}
        self.log(f"analyzed {file_path}: {len(result['imports'])} imports, {len(result['issues'])} issues")
        return result

    def create_migration_config(self, original_config: dict[str, Any]) -> dict[str, Any]:
        """An original-style config (``{"model": {...}, "generation": {...}}``
        or flat) as bitnet_py's: ``{model_args, gen_args, inference_config,
        device, dtype}`` (dicts of :class:`ModelArgs`, :class:`GenArgs`,
        :class:`InferenceConfig`)."""
        from .config import GenArgs, InferenceConfig, ModelArgs

        cfg = _normalise_config(dict(original_config))
        model = ModelArgs.from_dict(cfg["model"])
        gen = GenArgs.from_dict(cfg["generation"])
        inf = InferenceConfig(max_new_tokens=gen.gen_length, temperature=gen.temperature, top_p=gen.top_p,
                              top_k=gen.top_k, repetition_penalty=gen.repetition_penalty,
                              do_sample=gen.use_sampling)
        return {"model_args": model.to_dict(), "gen_args": gen.to_dict(), "inference_config": inf.to_dict(),
                "device": "cpu", "dtype": cfg.get("dtype", "bfloat16")}

    def migrate_config_file(self, path: PathLike) -> dict[str, Any]:
        """:meth:`create_migration_config` of a JSON, YAML or Python file."""
        return self.create_migration_config(load_config_file(path))

    def migrate_script(self, input_path: PathLike, output_path: PathLike) -> bool:
        """Rewrite one script's imports of the original into ``output_path``
        (everything else byte for byte). A file that does not parse is
        copied unchanged and reported. False when it cannot be read/written."""
        try:
            raw = Path(input_path).read_bytes()
        except OSError as e:
            self.log(f"cannot read {input_path}: {e}", "ERROR")
            return False
        try:
            new, changes = migrate_bytes(raw, str(input_path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            self.log(f"{input_path} does not parse ({e}); copied unchanged", "WARNING")
            new, changes = raw, []
        try:
            out = Path(output_path)
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_symlink():
                out.unlink()
            out.write_bytes(new)
        except OSError as e:
            self.log(f"cannot write {output_path}: {e}", "ERROR")
            return False
        for a, b in changes:
            self.log(f"{input_path}: replaced '{a}' with '{b}'")
        self.log(f"migrated {input_path} -> {output_path} ({len(changes)} changes)")
        return True

    def create_side_by_side_test(self, test_prompts: Optional[Sequence[str]], output_dir: PathLike,
                                 filename: str = "side_by_side_test.py") -> str:
        """Write ``side_by_side_test.py`` into ``output_dir``; see the
        generated file's docstring for what it runs."""
        prompts = list(test_prompts or DEFAULT_TEST_PROMPTS)
        path = Path(output_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        text = _SIDE_BY_SIDE.replace("__PROMPTS__", json.dumps(prompts, ensure_ascii=False))
        if filename != "side_by_side_test.py":
            text = text.replace("Usage: python side_by_side_test.py", f"Usage: python {filename}", 1)
        path.write_text(text, encoding="utf-8")
        self.log(f"wrote {path}")
        return str(path)

    def generate_migration_report(self, analysis_results: Sequence[dict[str, Any]]) -> str:
        """A Markdown report of analysed files (``file_path`` names each)."""
        n = len(analysis_results)
        ok = sum(1 for a in analysis_results if a.get("compatible"))
        lines = ["# BitNet Python to bitnet_py Migration Report", "",
                 f"Generated: {_dt.datetime.now().isoformat(timespec='seconds')}", "", "## Summary", "",
                 f"- Total files analyzed: {n}", f"- Compatible files: {ok}",
                 f"- Files with issues: {sum(1 for a in analysis_results if a.get('issues'))}", "",
                 "## Migration Steps", "",
                 "1. `pip install bitnet-py`",
                 "2. Imports of the original's modules now name bitnet_py: `import model as fast` -> "
                 "`import bitnet_py as fast`, `from model|generate|tokenizer|stats import X` -> "
                 "`from bitnet_py import X` (done by `python -m bitnet_py.migration migrate`)",
                 "3. Remove xformers and CUDA-specific code listed below (bitnet_py runs on the CPU)",
                 "4. Point `FastGen.build()` at a directory holding a GGUF model (and `tokenizer.model`)",
                 "5. Run `python side_by_side_test.py CKPT_DIR`", "", "## File Analysis Results", ""]
        for i, a in enumerate(analysis_results, 1):
            lines.append(f"### File {i}: {a.get('file_path', '')}".rstrip(": "))
            lines.append("")
            lines.append("Status: " + ("✅ Compatible" if a.get("compatible") else "❌ Needs attention"))
            fmt = {"imports": lambda x: f"line {x[0]}: `{x[1]}`",
                   "classes_used": lambda x: f"`{x[0]}` (line {x[1]})",
                   "functions_used": lambda x: f"`{x[0]}()` (line {x[1]})"}
            for key, title in (("imports", "Imports"), ("classes_used", "Classes used"),
                               ("functions_used", "Functions used"), ("issues", "Issues"),
                               ("suggestions", "Suggestions")):
                items = a.get(key) or []
                if items:
                    lines.append(f"\n{title}:\n")
                    f = fmt.get(key)
                    lines.extend(f"- {f(x) if f else x}" for x in items)
            lines.append("")
        lines += ["## Performance Expectations", "",
                  "Measure on your hardware with `bitnet_py.benchmark_inference` and the timings that "
                  "`side_by_side_test.py` writes (no numbers are assumed here).", "",
                  "## Common Migration Issues", "",
                  "- `device='cuda:0'` is accepted and runs on the CPU.",
                  "- `.pt` checkpoints need conversion; a GGUF model always works.",
                  "- Errors are `bitnet_py.BitNetError` subclasses that also subclass the builtins.", "",
                  "## Testing Your Migration", "",
                  "Run `python side_by_side_test.py CKPT_DIR`: bitnet_py (and the original, when "
                  "importable) on the same prompts; results in `comparison_results.json`.", "",
                  "## Support", "", "See docs/migration.md.", "", "## Migration Log", ""]
        lines += [f"- {entry}" for entry in self.migration_log]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Project migration
# ---------------------------------------------------------------------------

def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


@dataclass
class MigrationPlan:
    """What a project migration does (the dry run's and ``--json``'s content)."""

    src: str
    dst: str
    rewritten: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    unparsable: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    changes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    backup: Optional[str] = None
    analyses: list[dict[str, Any]] = field(default_factory=list)
    #: generated file -> the name it was written under, because the project
    #: already has a file (or directory) by the generated name
    renamed: dict[str, str] = field(default_factory=dict)
    #: the project's files that a generated file extends (requirements.txt)
    merged: list[str] = field(default_factory=list)

    def generated_name(self, name: str) -> str:
        """Where the generated file ``name`` (one of GENERATED_FILES) goes."""
        return self.renamed.get(name, name)

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "rewritten": self.rewritten, "copied": self.copied,
                "unparsable": self.unparsable, "skipped": [list(x) for x in self.skipped],
                "generated": self.generated, "renamed": dict(self.renamed), "merged": list(self.merged),
                "backup": self.backup,
                "changes": {k: [list(c) for c in v] for k, v in self.changes.items()},
                "configs": self.configs}


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``STEM_bitnet.EXT`` (then ``STEM_bitnet2.EXT``, ...) when
    ``taken`` (case-folded names) holds it: case-insensitive, so it is also
    free on macOS and Windows file systems."""
    if name.casefold() not in taken:
        return name
    stem, ext = os.path.splitext(name)
    i = 1
    while True:
        cand = f"{stem}_bitnet{'' if i == 1 else i}{ext}"
        if cand.casefold() not in taken:
            return cand
        i += 1


def _walk(src: Path, plan: MigrationPlan) -> list[tuple[Path, Path]]:
    """(source file, relative path) of every regular file to carry over;
    symlinks are followed only when they stay inside ``src``."""
    root = src.resolve()
    out: list[tuple[Path, Path]] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            p = d / name
            rel = p.relative_to(src)
            if name in _SKIP_DIRS or (p / "pyvenv.cfg").exists():
                plan.skipped.append((str(rel), "tool or virtual-environment directory"))
            elif p.is_symlink():
                plan.skipped.append((str(rel), "symlinked directory (not followed)"))
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = d / name
            rel = p.relative_to(src)
            if name.endswith((".pyc", ".pyo")):
                continue
            if p.is_symlink():
                target = p.resolve()
                if not _is_within(target, root):
                    plan.skipped.append((str(rel), "symlink pointing outside the source directory"))
                    continue
                if not target.is_file():
                    plan.skipped.append((str(rel), "symlink to something that is not a file"))
                    continue
            elif not p.is_file():
                plan.skipped.append((str(rel), "not a regular file"))
                continue
            out.append((p, rel))
    return out


def _unified_diff(rel: str, old: bytes, new: bytes, encoding: str = "utf-8") -> str:
    a = old.decode(encoding, errors="replace").splitlines(keepends=True)
    b = new.decode(encoding, errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"a/{rel}", tofile=f"b/{rel}"))


def _backup_path(src: Path) -> Path:
    base = src.parent / f"{src.name}_backup_{int(time.time())}"
    p, i = base, 1
    while p.exists():
        p = Path(f"{base}_{i}")
        i += 1
    return p


def plan_migration(project_path: PathLike, output_path: PathLike, force: bool = False,
                   helper: Optional[MigrationHelper] = None) -> tuple[MigrationPlan, dict[str, bytes]]:
    """Check the safety rules and compute every output file's bytes
    (relative path -> bytes) without writing anything. Raises
    :class:`MigrationError` when a rule refuses the migration."""
    h = helper or MigrationHelper(verbose=False)
    src = Path(project_path)
    dst = Path(output_path)
    if not src.is_dir():
        raise MigrationError(f"project directory not found: {project_path}")
    rs, rd = src.resolve(), dst.resolve()
    if rd == rs:
        raise MigrationError("the destination is the source directory")
    if _is_within(rd, rs):
        raise MigrationError(f"the destination {output_path} is inside the source {project_path}")
    if _is_within(rs, rd):
        raise MigrationError(f"the source {project_path} is inside the destination {output_path}")
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise MigrationError(f"the destination {output_path} exists and is not a directory")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise MigrationError(f"the destination {output_path} exists and is not empty (use --force)")
    plan = MigrationPlan(str(src), str(dst))
    files: dict[str, bytes] = {}
    encodings: dict[str, str] = {}
    config: dict[str, Any] = {"model": {}, "generation": {}}
    for path, rel in _walk(src, plan):
        key = rel.as_posix()
        raw = path.read_bytes()
        if path.suffix == ".py":
            try:
                a = analyze_source(raw, str(path))
            except (UnicodeDecodeError, SyntaxError, ValueError, LookupError) as e:
                a = {"compatible": False, "issues": [f"Error analyzing file: {e}"], "suggestions": [],
                     "imports": [], "classes_used": [], "functions_used": [], "parse_error": str(e)}
            if a.get("parse_error"):
                plan.unparsable.append(key)
                h.log(f"{key} does not parse ({a['parse_error']}); copied unchanged", "WARNING")
                files[key] = raw
                plan.copied.append(key)
                a["file_path"] = key
                plan.analyses.append(a)
                continue
            new, changes = migrate_bytes(raw, str(path))
            files[key] = new
            if changes:
                a["file_path"] = key
                plan.analyses.append(a)
                plan.rewritten.append(key)
                plan.changes[key] = changes
                encodings[key] = _Source.from_bytes(raw).encoding
                plan.diffs[key] = _unified_diff(key, raw, new, encodings[key])
                for x, y in changes:
                    h.log(f"{key}: replaced '{x}' with '{y}'")
            else:
                plan.copied.append(key)
                if a["issues"] or a["imports"]:
                    a["file_path"] = key
                    plan.analyses.append(a)
            found = extract_config_from_source(raw, key)
            if found["model"] or found["generation"]:
                plan.configs[key] = found
                config["model"].update(found["model"])
                config["generation"].update(found["generation"])
        else:
            files[key] = raw
            plan.copied.append(key)
            if path.suffix in (".json", ".yaml", ".yml"):
                try:
                    data = (json.loads(raw) if path.suffix == ".json" else
                            __import__("yaml").safe_load(raw.decode("utf-8")))
                except Exception:  # not a config we understand: copied as is
                    data = None
                if isinstance(data, dict) and _looks_like_config(data):
                    norm = _normalise_config(data)
                    plan.configs[key] = {"model": norm["model"], "generation": norm["generation"]}
                    config["model"].update(norm["model"])
                    config["generation"].update(norm["generation"])
    return plan, files


def migrate_project(project_path: PathLike, output_path: PathLike, test_prompts: Optional[Sequence[str]] = None,
                    create_backup: bool = True, helper: Optional[MigrationHelper] = None, *,
                    dry_run: bool = False, force: bool = False,
                    plan_out: Optional[list[MigrationPlan]] = None) -> bool:
    """Copy ``project_path`` to ``output_path``, rewriting the original's
    imports in its Python files; write ``side_by_side_test.py``,
    ``MIGRATION_REPORT.md``, ``requirements.txt``, ``SETUP.md`` and (when
    configuration values were found) ``migration_config.json``.

    The project's own files are never replaced by generated ones: when the
    project has a file or top-level directory by a generated name (compared
    case-insensitively), the generated file is written as ``STEM_bitnet.EXT``
    (``STEM_bitnet2.EXT``, ... when that is taken too), logged as a warning,
    recorded in ``MigrationPlan.renamed`` and listed in the report; an existing
    ``requirements.txt`` gets ``bitnet-py`` appended (``MigrationPlan.merged``).

    Safety: nothing is written outside ``output_path`` except the backup
    (``{project}_backup_{time}`` next to the project, when
    ``create_backup``); symlinks leading out of the project are skipped;
    an ``output_path`` inside the project, or an existing non-empty one
    without ``force``, is refused; the project is only read. ``dry_run``
    writes nothing (the plan, with unified diffs, goes to ``plan_out``).
    Returns False (and logs why) on failure."""
    h = helper or MigrationHelper(verbose=False)
    try:
        plan, files = plan_migration(project_path, output_path, force=force, helper=h)
        if plan_out is not None:
            plan_out.append(plan)
        src, dst = Path(project_path), Path(output_path)
        merged: dict[str, Any] = {"model": {}, "generation": {}}
        for c in plan.configs.values():
            merged["model"].update(c["model"])
            merged["generation"].update(c["generation"])
        # The project's own files always win: a generated file whose name the
        # project already uses (a file or a top-level directory, compared
        # case-insensitively) is written under a free name instead, logged as a
        # warning and listed in the report; requirements.txt is extended, not
        # replaced.
        taken = {k.casefold() for k in files} | {k.split("/", 1)[0].casefold() for k in files}

        def place(name: str) -> str:
            actual = _free_name(name, taken)
            taken.add(actual.casefold())
            if actual != name:
                plan.renamed[name] = actual
                h.log(f"the project already has {name}: the generated one is written as {actual}", "WARNING")
            return actual

        generated: dict[str, bytes] = {}
        req = files.get("requirements.txt")
        if req is None:
            generated["requirements.txt"] = b"bitnet-py\nnumpy\n"
            taken.add("requirements.txt")
        elif b"bitnet-py" not in req and b"bitnet_py" not in req:
            generated["requirements.txt"] = req + (b"" if req.endswith(b"\n") or not req else b"\n") + b"bitnet-py\n"
            plan.merged.append("requirements.txt")
            h.log("requirements.txt: bitnet-py appended to the project's file")
        side_name = place("side_by_side_test.py")
        setup_name = place("SETUP.md")
        report_name = place("MIGRATION_REPORT.md")
        if merged["model"] or merged["generation"]:
            generated[place("migration_config.json")] = (
                json.dumps(h.create_migration_config(merged), indent=2) + "\n").encode()
        generated[setup_name] = _SETUP.replace("side_by_side_test.py", side_name).encode()
        plan.generated = sorted(set(generated) | {side_name, report_name})
        if dry_run:
            h.log(f"dry run: {len(plan.rewritten)} files would be rewritten, {len(plan.copied)} copied")
            return True
        if create_backup:
            backup = _backup_path(src.resolve())
            shutil.copytree(src, backup, symlinks=True)
            plan.backup = str(backup)
            h.log(f"backup written to {backup}")
        rd = dst.resolve()
        dst.mkdir(parents=True, exist_ok=True)
        for rel, data in {**files, **generated}.items():
            _safe_write(dst, rd, rel, data)
        h.create_side_by_side_test(test_prompts, str(dst), side_name)
        h.log(f"migration of {src} to {dst} completed ({len(plan.rewritten)} files rewritten, "
              f"{len(plan.copied)} copied, {len(plan.unparsable)} unparsable, {len(plan.skipped)} skipped)")
        _safe_write(dst, rd, report_name, _project_report(h, plan).encode("utf-8"))
        return True
    except Exception as e:  # documented: a bool, not an exception
        h.log(f"Migration failed: {e}", "ERROR")
        return False


def _safe_write(dst: Path, rd: Path, rel: str, data: bytes) -> None:
    target = dst / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _is_within(target.parent.resolve(), rd):
        raise MigrationError(f"refusing to write {target}: outside the destination")
    if target.is_symlink():
        target.unlink()
    target.write_bytes(data)


def _project_report(h: MigrationHelper, plan: MigrationPlan) -> str:
    report = h.generate_migration_report(plan.analyses)
    extra = ["## Files", "", f"- Rewritten: {len(plan.rewritten)}", f"- Copied unchanged: {len(plan.copied)}"]
    if plan.unparsable:
        extra.append("- Do not parse (copied unchanged): " + ", ".join(f"`{x}`" for x in plan.unparsable))
    for rel, why in plan.skipped:
        extra.append(f"- Skipped `{rel}`: {why}")
    if plan.configs:
        extra.append("- Configuration values found in: " + ", ".join(f"`{x}`" for x in plan.configs)
                     + f" (see {plan.generated_name('migration_config.json')})")
    for name in plan.merged:
        extra.append(f"- `{name}`: the project's file, with `bitnet-py` appended")
    if plan.renamed:
        extra += ["", "## Generated Files Renamed", "",
                  "The project already has files by these names; they were migrated like any other "
                  "file and left as they are. The generated files were written under new names:", ""]
        extra += [f"- `{a}` -> `{b}`" for a, b in sorted(plan.renamed.items())]
    extra.append("")
    side = plan.generated_name("side_by_side_test.py")
    if side != "side_by_side_test.py":
        report = (report.replace("`python side_by_side_test.py CKPT_DIR`", f"`python {side} CKPT_DIR`")
                  .replace("`side_by_side_test.py` writes", f"`{side}` writes"))
    return report.replace("## Performance Expectations", "\n".join(extra) + "\n## Performance Expectations", 1)


_SETUP = """# Setup

1. `pip install -r requirements.txt`
2. Put the model (`model.gguf`) and `tokenizer.model` in your checkpoint directory
   (the directory you pass to `FastGen.build`).
3. `python side_by_side_test.py CKPT_DIR` compares bitnet_py with the original
   implementation when the original is importable (set `BITNET_ORIGINAL_PATH`
   to its `gpu/` directory), otherwise runs bitnet_py alone and says so.
"""

_SIDE_BY_SIDE = '''"""Side-by-side test written by bitnet_py.migration.

Usage: python side_by_side_test.py [CKPT_DIR [TOKENIZER]] [--gen-length N] [--original-device DEV]

Runs the prompts below through bitnet_py and, when the original
implementation (its ``model`` and ``generate`` modules) is importable, through
the original too, with the same calls on both: ``FastGen.build(ckpt_dir,
GenArgs(gen_length=N), device)``, ``tokenizer.encode(p, bos=False,
eos=False)``, ``generate_all(tokens, use_cuda_graphs, use_sampling=False)``.
Set BITNET_ORIGINAL_PATH to the original's ``gpu/`` directory to put it on
``sys.path``. Prints COMPARISON RESULTS and writes comparison_results.json
(tokens, text, time and tokens/s of each; whether the tokens match). Exit
status 1 when both ran and their tokens differ.
"""
import argparse
import importlib
import json
import os
import sys
import time

import bitnet_py

PROMPTS = __PROMPTS__


def run(fast, ckpt_dir, gen_length, device, tokenizer_path=None):
    t0 = time.perf_counter()
    kw = {"tokenizer_path": tokenizer_path} if tokenizer_path else {}
    g = fast.FastGen.build(ckpt_dir, fast.GenArgs(gen_length=gen_length), device, **kw)
    load_s = time.perf_counter() - t0
    tokens = [g.tokenizer.encode(p, bos=False, eos=False) for p in PROMPTS]
    t0 = time.perf_counter()
    _, answers = g.generate_all(tokens, use_cuda_graphs=False, use_sampling=False)
    gen_s = time.perf_counter() - t0
    n = sum(len(a) for a in answers)
    return {"load_time_s": load_s, "generation_time_s": gen_s, "new_tokens": n,
            "tokens_per_second": n / gen_s if gen_s > 0 else 0.0,
            "answers": [list(map(int, a)) for a in answers],
            "texts": [g.tokenizer.decode(list(a)) for a in answers]}


def load_original():
    extra = os.environ.get("BITNET_ORIGINAL_PATH")
    if extra:
        sys.path.insert(0, extra)
    try:  # importlib, so that a later migration never rewrites these
        orig_generate = importlib.import_module("generate")  # the original's generate.py
        importlib.import_module("model")  # the original's model.py
    except ImportError as e:
        return None, f"{type(e).__name__}: {e}"
    if getattr(orig_generate, "__name__", "") == "bitnet_py" or not hasattr(orig_generate, "FastGen"):
        return None, "the importable 'generate' module is not the original implementation"
    return orig_generate, None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt_dir", nargs="?", default="checkpoints", help="checkpoint directory or model file")
    ap.add_argument("tokenizer", nargs="?", default=None, help="tokenizer.model (default: in CKPT_DIR)")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--original-device", default="cuda:0")
    ap.add_argument("--output", default="comparison_results.json")
    args = ap.parse_args(argv)
    results = {"prompts": PROMPTS, "bitnet_py": run(bitnet_py, args.ckpt_dir, args.gen_length, "cpu",
                                                          args.tokenizer)}
    original, why = load_original()
    if original is None:
        results["original"] = None
        results["note"] = f"original implementation not importable ({why}): ran bitnet_py alone"
    else:
        results["original"] = run(original, args.ckpt_dir, args.gen_length, args.original_device,
                                  args.tokenizer)
        o, n = results["original"], results["bitnet_py"]
        results["tokens_match"] = o["answers"] == n["answers"]
        results["speedup"] = (o["generation_time_s"] / n["generation_time_s"]
                              if n["generation_time_s"] > 0 else None)
    print("COMPARISON RESULTS")
    if results.get("note"):
        print(results["note"])
    for name in ("bitnet_py", "original"):
        r = results.get(name)
        if r:
            print(f"{name}: {r['new_tokens']} tokens in {r['generation_time_s']:.3f}s "
                  f"({r['tokens_per_second']:.1f} tokens/s)")
    if "tokens_match" in results:
        print(f"tokens match: {results['tokens_match']}")
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    return 0 if results.get("tokens_match", True) else 1


if __name__ == "__main__":
    sys.exit(main())
'''


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _py_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS
                             and not (Path(dirpath) / d / "pyvenv.cfg").exists())
        out += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return out


def _jsonable(a: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    out["imports"] = [{"line": ln, "statement": s} for ln, s in a.get("imports", [])]
    out["classes_used"] = [{"name": n, "line": ln} for n, ln in a.get("classes_used", [])]
    out["functions_used"] = [{"name": n, "line": ln} for n, ln in a.get("functions_used", [])]
    return out


def _cmd_analyze(args: argparse.Namespace, h: MigrationHelper) -> int:
    target = Path(args.path)
    if not target.exists():
        msg = f"not found: {args.path}"
        print(json.dumps({"error": msg}) if args.json else f"Error: {msg}", file=sys.stdout if args.json
              else sys.stderr)
        return EXIT_FAILED
    results = []
    for f in _py_files(target):
        a = h.analyze_existing_code(f)
        a["file_path"] = str(f)
        results.append(a)
    if args.json:
        print(json.dumps({"files": [_jsonable(a) for a in results],
                          "compatible": all(a["compatible"] for a in results)}, indent=2))
    else:
        for a in results:
            print(f"Analysis for {a['file_path']}:")
            print(f"Compatible: {a['compatible']}")
            print(f"Imports: {len(a['imports'])}")
            for ln, s in a["imports"]:
                print(f"  - line {ln}: {s}")
            print(f"Issues: {len(a['issues'])}")
            for x in a["issues"]:
                print(f"  - {x}")
            print(f"Suggestions: {len(a['suggestions'])}")
            for x in a["suggestions"]:
                print(f"  - {x}")
    if args.strict and not all(a["compatible"] for a in results):
        return EXIT_ATTENTION
    return EXIT_OK


def _cmd_migrate(args: argparse.Namespace, h: MigrationHelper) -> int:
    plans: list[MigrationPlan] = []
    ok = migrate_project(args.src, args.dst, args.test_prompts, create_backup=not args.no_backup and
                         not args.dry_run, helper=h, dry_run=args.dry_run, force=args.force, plan_out=plans)
    errors = [l[len("[ERROR] "):] for l in h.migration_log if l.startswith("[ERROR]")]
    if args.json:
        doc: dict[str, Any] = {"ok": ok, "dry_run": args.dry_run, "errors": errors}
        if plans:
            doc.update(plans[0].to_dict())
            if args.dry_run:
                doc["diff"] = "".join(plans[0].diffs.values())
        print(json.dumps(doc, indent=2))
        return EXIT_OK if ok else EXIT_FAILED
    if not ok:
        print("Migration failed. Check the logs for details.")
        for e in errors:
            print(f"Error: {e}", file=sys.stderr)
        return EXIT_FAILED
    plan = plans[0]
    if args.dry_run:
        sys.stdout.write("".join(plan.diffs[k] for k in plan.rewritten))
        for a, b in sorted(plan.renamed.items()):
            print(f"Warning: {args.src} already has {a}; the generated one would be written as {b}")
        print(f"Dry run: {len(plan.rewritten)} files would be rewritten, {len(plan.copied)} copied, "
              f"{len(plan.unparsable)} do not parse, {len(plan.skipped)} skipped; nothing written")
        return EXIT_OK
    print("Migration completed successfully!")
    print(f"Rewritten: {len(plan.rewritten)}, copied: {len(plan.copied)}, do not parse: {len(plan.unparsable)}, "
          f"skipped: {len(plan.skipped)}")
    if plan.backup:
        print(f"Backup: {plan.backup}")
    for a, b in sorted(plan.renamed.items()):
        print(f"Warning: {args.src} already has {a}; the generated one is {b}")
    print(f"Check {os.path.join(args.dst, plan.generated_name('MIGRATION_REPORT.md'))} for details")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, h: MigrationHelper) -> int:
    found = h.check_original_installation(args.root)
    if args.json:
        print(json.dumps({"found": found, "root": args.root}))
    else:
        print("Original BitNet Python implementation " + ("found" if found else "not found"))
    return EXIT_ATTENTION if args.strict and not found else EXIT_OK


def _cmd_config(args: argparse.Namespace, h: MigrationHelper) -> int:
    try:
        cfg = h.migrate_config_file(args.file)
    except Exception as e:  # unreadable or not a config
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(cfg, indent=2))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bitnet_py.migration",
                                     description="Migrate code from the original BitNet Python implementation")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("analyze", help="analyse a Python file or every .py file under a directory")
    p.add_argument("path", metavar="FILE_OR_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="exit 3 when a file needs attention")
    p = sub.add_parser("migrate", help="migrate a project directory into a new one")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--no-backup", action="store_true", help="do not copy SRC to SRC_backup_TIME first")
    p.add_argument("--dry-run", action="store_true", help="print a unified diff; write nothing")
    p.add_argument("--force", action="store_true", help="allow an existing, non-empty DST")
    p.add_argument("--test-prompts", nargs="*", default=None)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("check", help="look for the original implementation")
    p.add_argument("--root", default=".", help="directory holding gpu/ (default: .)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 3 when not found")
    p = sub.add_parser("config", help="convert a JSON/YAML/Python config to bitnet_py's")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="(the output is always JSON)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    helper = MigrationHelper(verbose=False)
    cmd = {"analyze": _cmd_analyze, "migrate": _cmd_migrate, "check": _cmd_check, "config": _cmd_config}
    if args.command not in cmd:
        parser.print_help()
        return EXIT_OK
    return cmd[args.command](args, helper)


__all__ = ["MigrationHelper", "MigrationError", "MigrationPlan", "migrate_project", "plan_migration",
           "migrate_source", "migrate_bytes", "analyze_source", "extract_config_from_source",
           "load_config_file", "main", "ORIGINAL_MODULES", "DEFAULT_TEST_PROMPTS"]

if __name__ == "__main__":
    sys.exit(main())
