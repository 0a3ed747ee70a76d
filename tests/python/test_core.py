"""Tests of bitnet_py._core, the thin layer over include/bitnet.h.

Covers the module functions, quantize/dequantize round trips, the GGUF writer
and reader (round trip of every value type, and the reader against an
independently generated manifest of a real file), Model + Context against
llama.cpp's logits, the exception mapping, GIL release, cancellation and
object lifetimes.
"""

from __future__ import annotations

import errno
import gc
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bitnet_py
from bitnet_py import _core

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# --------------------------------------------------------------------------
# Library, versions, exceptions
# --------------------------------------------------------------------------


def test_versions_agree() -> None:
    assert _core.version() == _core.__version__ == bitnet_py.__version__
    assert importlib.metadata.version("bitnet-py") == bitnet_py.__version__


def test_cpu_and_build_info() -> None:
    feats = _core.cpu_features()
    assert isinstance(feats, list)
    assert all(isinstance(f, str) and f and " " not in f for f in feats)
    assert isinstance(_core.kernel_name(), str) and _core.kernel_name()
    assert isinstance(_core.build_info(), str) and _core.build_info()


def test_exception_hierarchy() -> None:
    E = bitnet_py
    assert issubclass(E.BitNetError, Exception)
    assert issubclass(E.ModelNotFoundError, E.BitNetError)
    assert issubclass(E.ModelNotFoundError, FileNotFoundError)
    for cls in (E.ModelFormatError, E.TokenizerError, E.ConfigurationError):
        assert issubclass(cls, E.BitNetError) and issubclass(cls, ValueError)
    assert issubclass(E.InferenceError, RuntimeError)
    assert issubclass(E.CancelledError, E.InferenceError)
    assert issubclass(E.BitNetIOError, OSError)
    assert issubclass(E.BitNetMemoryError, MemoryError)
    for name in bitnet_py.__all__:
        obj = getattr(bitnet_py, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert getattr(obj, "error_type") == name
            assert obj.__module__ == "bitnet_py"
    # Raisable from Python too, with the class attributes as defaults.
    with pytest.raises(E.ConfigurationError) as ei:
        raise E.ConfigurationError("x")
    assert ei.value.hint is None and ei.value.error_type == "ConfigurationError"


# --------------------------------------------------------------------------
# Types, quantize, dequantize, ternarize
# --------------------------------------------------------------------------


def test_type_table() -> None:
    assert _core.type_id("f32") == 0
    assert _core.type_id("TQ2_0") == 35
    assert _core.type_id("i2_s") == 36
    assert _core.type_name(1) == "f16"
    assert _core.type_name(8) == "q8_0"
    assert _core.type_nbytes("q8_0", 64, 3) == 3 * 2 * 34
    assert _core.type_nbytes(0, 10, 2) == 80
    assert _core.type_nbytes("tq2_0", 256) == 66
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.type_id("q9_9")
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.type_name(999)
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.type_nbytes("q8_0", 33, 1)  # not a multiple of the block size
    with pytest.raises(TypeError):
        _core.type_id(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["f32", "f16", "bf16"])
def test_float_round_trip_exact(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 48)).astype(np.float32)
    if name == "f16":
        x = x.astype(np.float16).astype(np.float32)
    elif name == "bf16":
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    data = _core.quantize(name, x)
    assert isinstance(data, bytes)
    assert len(data) == _core.type_nbytes(name, 48, 5)
    y = _core.dequantize(name, data, 48, 5)
    assert y.dtype == np.float32 and y.shape == (5, 48)
    np.testing.assert_array_equal(y, x)
    if name == "f16":
        assert data == x.astype("<f2").tobytes()


@pytest.mark.parametrize("name,block", [("q8_0", 32), ("q4_0", 32), ("q6_k", 256)])
def test_block_round_trip_error_bound(name: str, block: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(3, 2 * block)).astype(np.float32)
    y = _core.dequantize(name, _core.quantize(name, x), 2 * block, 3)
    assert y.shape == x.shape
    # Per block, the error is at most one quantization step of that block.
    levels = {"q8_0": 127, "q4_0": 7, "q6_k": 31}[name]
    amax = np.abs(x.reshape(3, -1, 32)).max(axis=2, keepdims=True)
    err = np.abs((y - x).reshape(3, -1, 32))
    slack = 2.0 if name == "q6_k" else 1.0  # Q6_K: 16-element sub-blocks, 8-bit scales
    assert np.all(err <= slack * amax / levels + 1e-6)


@pytest.mark.parametrize("name", ["tq1_0", "tq2_0", "i2_s"])
def test_ternary_round_trip_exact(name: str) -> None:
    rng = np.random.default_rng(2)
    n_rows, n_cols = 4, 256
    q = rng.integers(-1, 2, size=(n_rows, n_cols)).astype(np.float32)
    s = np.float32(0.375)  # exact in f16 (TQ*'s block scales) and f32 (I2_S)
    x = q * s
    y = _core.dequantize(name, _core.quantize(name, x), n_cols, n_rows)
    np.testing.assert_array_equal(y, x)


def test_quantize_input_conversions() -> None:
    x64 = np.arange(64, dtype=np.float64).reshape(2, 32)
    want = _core.quantize("f32", x64.astype(np.float32))
    assert _core.quantize("f32", x64) == want  # converted from float64
    assert _core.quantize("f32", x64.tolist()) == want  # from nested lists
    wide = np.zeros((2, 64), dtype=np.float32)
    wide[:, ::2] = x64
    assert _core.quantize("f32", wide[:, ::2]) == want  # non-contiguous view
    one_row = _core.quantize("f32", np.arange(32, dtype=np.float32))  # 1-D: one row
    assert one_row == want[: 32 * 4]
    assert _core.quantize(0, x64) == want  # type by id
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.quantize("f32", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.quantize("q8_0", np.zeros((2, 33), np.float32))
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.dequantize("q8_0", b"1234", 32, 1)  # too few bytes


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_f32_f16_round_trip_property(rows: int, cols: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * 100).astype(np.float16).astype(np.float32)
    for name in ("f32", "f16"):
        np.testing.assert_array_equal(_core.dequantize(name, _core.quantize(name, x), cols, rows), x)


def test_ternarize_matches_absmean() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 32)).astype(np.float32)
    q, scale = _core.ternarize(w)
    s = max(float(np.abs(w).mean()), 1e-5)
    assert scale == pytest.approx(s, rel=1e-5)
    want = np.clip(np.round(w / np.float32(scale)), -1, 1).astype(np.int8)
    assert q.dtype == np.int8 and q.shape == w.shape
    np.testing.assert_array_equal(q, want)
    q0, s0 = _core.ternarize(np.zeros(16, np.float32))
    assert s0 == pytest.approx(1e-5) and not q0.any()


# --------------------------------------------------------------------------
# GGUF writer -> reader
# --------------------------------------------------------------------------

SCALARS: list[tuple[str, str, Any]] = [
    ("t.u8", "u8", 255),
    ("t.i8", "i8", -128),
    ("t.u16", "u16", 65535),
    ("t.i16", "i16", -32768),
    ("t.u32", "u32", 2**32 - 1),
    ("t.i32", "i32", -(2**31)),
    ("t.u64", "u64", 2**64 - 1),
    ("t.i64", "i64", -(2**63)),
    ("t.f32", "f32", 0.1),
    ("t.f64", "f64", 0.1),
    ("t.bool", "bool", True),
    ("t.bool0", "bool", False),
    ("t.str", "str", "héllo wörld ✓"),
]

ARRAYS: list[tuple[str, str, list[Any]]] = [
    ("a.u8", "u8", [0, 1, 255]),
    ("a.i8", "i8", [-128, 0, 127]),
    ("a.u16", "u16", [0, 65535]),
    ("a.i16", "i16", [-32768, 32767]),
    ("a.u32", "u32", [0, 2**32 - 1]),
    ("a.i32", "i32", [-(2**31), 2**31 - 1]),
    ("a.u64", "u64", [0, 2**64 - 1]),
    ("a.i64", "i64", [-(2**63), 2**63 - 1]),
    ("a.f32", "f32", [0.5, -1.25, 3.0]),
    ("a.f64", "f64", [0.1, 1e300]),
    ("a.bool", "bool", [True, False, True]),
    ("a.empty", "i32", []),
]

DTYPES = {
    "u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16,
    "u32": np.uint32, "i32": np.int32, "u64": np.uint64, "i64": np.int64,
    "f32": np.float32, "f64": np.float64, "bool": np.bool_,
}


def _write_sample(path: Path, alignment: int | None = None) -> dict[str, tuple[str, int, tuple[int, ...], bytes]]:
    w = _core.GGUFWriter()
    w.set_str("general.architecture", "test")
    if alignment is not None:
        w.set("general.alignment", alignment, "u32")
    for key, vt, value in SCALARS:
        w.set(key, value, vt)
    w.set_str("t.bytes", b"raw\xffbytes")
    for key, vt, values in ARRAYS:
        w.set_arr(key, values, vt)
    w.set_arr("a.np_f32", np.array([1.5, 2.5], dtype=np.float32), "f32")  # buffer fast path
    w.set_arr("a.np_i64_as_i32", np.array([7, -7]), "i32")  # converted element-wise
    w.set_arr_str("a.str", ["a", "", "ü", b"\x00\x01"])
    w.set_arr("a.str2", ["x", "y"], "str")

    rng = np.random.default_rng(4)
    tensors: dict[str, tuple[str, int, tuple[int, ...], bytes]] = {}
    f32 = rng.standard_normal((3, 16)).astype(np.float32)
    tensors["w.f32"] = ("f32", 0, (16, 3), f32.tobytes())
    f16 = rng.standard_normal(40).astype(np.float16)
    tensors["w.f16"] = ("f16", 1, (40,), f16.tobytes())
    q8 = _core.quantize("q8_0", rng.standard_normal((2, 64)).astype(np.float32))
    tensors["w.q8_0"] = ("q8_0", 8, (64, 2), q8)
    f4d = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)
    tensors["w.4d"] = ("f32", 0, (2, 3, 4, 5), f4d.tobytes())
    for name, (tname, tid, shape, data) in tensors.items():
        # type by name and by id both work
        w.add_tensor(name, tname if tid % 2 == 0 else tid, shape, data)
    w.write(str(path))
    return tensors


def test_gguf_round_trip(tmp_dir: Path) -> None:
    path = tmp_dir / "rt.gguf"
    tensors = _write_sample(path)
    with _core.GGUFReader(path) as r:  # os.PathLike accepted
        assert r.version == 3
        assert r.alignment == 32
        assert r.file_size == path.stat().st_size
        assert r.data_offset % 32 == 0
        keys = r.keys()
        assert keys[0] == "general.architecture"
        assert len(keys) == r.n_kv == 1 + len(SCALARS) + 1 + len(ARRAYS) + 4
        assert "t.u8" in r and "nope" not in r
        for key, vt, value in SCALARS:
            got = r.get(key)
            assert r.type_of(key) == vt
            if vt == "f32":
                assert got == float(np.float32(value))
            else:
                assert got == value and type(got) is type(value)
        assert r.get("t.bytes") == b"raw\xffbytes".decode("utf-8", "surrogateescape")
        for key, vt, values in ARRAYS:
            got = r.get(key)
            assert r.type_of(key) == f"arr[{vt}]"
            assert isinstance(got, np.ndarray) and got.dtype == DTYPES[vt], key
            np.testing.assert_array_equal(got, np.array(values, dtype=DTYPES[vt]))
        np.testing.assert_array_equal(r.get("a.np_f32"), [1.5, 2.5])
        np.testing.assert_array_equal(r.get("a.np_i64_as_i32"), [7, -7])
        assert r.get("a.str") == ["a", "", "ü", "\x00\x01"]
        assert r.type_of("a.str") == "arr[str]"
        assert r.get("a.str2") == ["x", "y"]
        with pytest.raises(KeyError):
            r.get("missing")
        assert r.get("missing", 42) == 42

        infos = {t["name"]: t for t in r.tensors()}
        assert list(infos) == list(tensors)
        assert r.n_tensors == len(tensors)
        for name, (tname, tid, shape, data) in tensors.items():
            t = infos[name]
            assert t["type"] == tid and t["type_name"] == tname
            assert t["shape"] == shape
            assert t["nbytes"] == len(data)
            assert t["offset"] % 32 == 0
            mv = r.tensor_bytes(name)
            assert mv.readonly and mv.nbytes == len(data)
            assert mv.tobytes() == data
            mv.release()
        with pytest.raises(KeyError):
            r.tensor_bytes("missing")
    assert r.closed
    with pytest.raises(ValueError):
        r.keys()


def test_gguf_custom_alignment(tmp_dir: Path) -> None:
    path = tmp_dir / "al.gguf"
    _write_sample(path, alignment=64)
    r = _core.GGUFReader(str(path))
    assert r.alignment == 64 and r.data_offset % 64 == 0
    assert all(t["offset"] % 64 == 0 for t in r.tensors())
    r.close()


def test_gguf_writer_errors(tmp_dir: Path) -> None:
    w = _core.GGUFWriter()
    with pytest.raises(bitnet_py.ConfigurationError):
        w.set("k", 256, "u8")
    with pytest.raises(bitnet_py.ConfigurationError):
        w.set("k", -1, "u32")
    with pytest.raises(bitnet_py.ConfigurationError):
        w.set("k", 2**64, "u64")
    with pytest.raises(TypeError):
        w.set("k", 1.5, "i32")
    with pytest.raises(bitnet_py.ConfigurationError):
        w.set("k", 1, "u128")
    with pytest.raises(bitnet_py.ConfigurationError):
        w.set_arr("k", [1, 300], "u8")
    with pytest.raises(TypeError):
        w.set_arr_str("k", ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        w.set("a\0b", 1, "u8")
    w.set("dup", 1, "u8")
    with pytest.raises(bitnet_py.BitNetError):
        w.set("dup", 2, "u8")
    with pytest.raises(bitnet_py.ConfigurationError):
        w.add_tensor("t", "f32", (4, 2), b"\0" * 4)  # wrong size
    with pytest.raises(bitnet_py.ConfigurationError):
        w.add_tensor("t", "f32", (1, 1, 1, 1, 1), b"\0" * 4)  # too many dims
    with pytest.raises(bitnet_py.ConfigurationError):
        w.add_tensor("t", "nope", (1,), b"\0" * 4)
    with pytest.raises(OSError):
        w.write(str(tmp_dir / "no" / "such" / "dir" / "x.gguf"))


def test_gguf_reader_matches_manifest(tiny_gguf: Path, gguf_manifest: list[dict[str, Any]]) -> None:
    entry = next(e for e in gguf_manifest if e["file"] == tiny_gguf.name)
    vt_names = {
        "UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
        "INT32": "i32", "FLOAT32": "f32", "BOOL": "bool", "STRING": "str", "UINT64": "u64",
        "INT64": "i64", "FLOAT64": "f64",
    }
    r = _core.GGUFReader(str(tiny_gguf))
    assert r.version == entry["version"]
    assert r.alignment == entry["alignment"]
    assert r.data_offset == entry["data_start"]
    assert r.file_size == entry["size"]
    assert r.n_kv == entry["n_kv"] and r.n_tensors == entry["n_tensors"]
    assert r.keys() == [kv["key"] for kv in entry["kv"]]
    for kv in entry["kv"]:
        got = r.get(kv["key"])
        if kv["type"] == "ARRAY":
            v = kv["value"]
            assert r.type_of(kv["key"]) == f"arr[{vt_names[v['array_type']]}]"
            assert len(got) == v["len"]
            first, last = list(got[: len(v["first"])]), list(got[len(got) - len(v["last"]):])
            assert [x.item() if hasattr(x, "item") else x for x in first] == v["first"]
            assert [x.item() if hasattr(x, "item") else x for x in last] == v["last"]
        else:
            assert r.type_of(kv["key"]) == vt_names[kv["type"]]
            assert got == kv["value"], kv["key"]
    tensors = r.tensors()
    assert len(tensors) == len(entry["tensors"])
    raw = tiny_gguf.read_bytes()
    for got, want in zip(tensors, entry["tensors"]):
        assert got["name"] == want["name"]
        assert list(got["shape"]) == want["dims"]
        assert got["type"] == want["type"]
        assert got["type_name"] == want["type_name"].lower()
        assert got["offset"] == want["offset"]
        assert got["nbytes"] == want["nbytes"]
        start = entry["data_start"] + want["offset"]
        with r.tensor_bytes(want["name"]) as mv:
            assert mv.tobytes() == raw[start:start + want["nbytes"]]
    r.close()


def test_tensor_bytes_keeps_reader_alive(tiny_gguf: Path) -> None:
    r = _core.GGUFReader(str(tiny_gguf))
    name = r.tensors()[1]["name"]
    want = r.tensor_bytes(name).tobytes()
    ref = weakref.ref(r)
    mv = r.tensor_bytes(name)
    with pytest.raises(BufferError):
        r.close()  # a view exists
    del r
    gc.collect()
    assert ref() is not None  # the view keeps the reader (and its mapping) alive
    assert mv.tobytes() == want
    arr = np.frombuffer(mv, dtype=np.float16)  # zero-copy numpy view works
    assert arr.tobytes() == want
    del arr
    mv.release()
    del mv
    gc.collect()
    assert ref() is None
    with pytest.raises(TypeError):
        _core.GGUFReader(str(tiny_gguf)).tensor_bytes(3)  # type: ignore[arg-type]


def test_reader_memoryview_is_readonly(tiny_gguf: Path) -> None:
    r = _core.GGUFReader(str(tiny_gguf))
    mv = r.tensor_bytes("token_embd.weight")
    with pytest.raises(TypeError):
        mv[0] = 1
    mv.release()
    r.close()
    r.close()  # idempotent


# --------------------------------------------------------------------------
# Errors from files
# --------------------------------------------------------------------------


def test_missing_file_is_model_not_found(tmp_dir: Path) -> None:
    missing = tmp_dir / "does-not-exist.gguf"
    for ctor in (_core.Model, _core.GGUFReader):
        with pytest.raises(bitnet_py.ModelNotFoundError) as ei:
            ctor(str(missing))
        e = ei.value
        assert isinstance(e, FileNotFoundError) and isinstance(e, bitnet_py.BitNetError)
        assert e.errno == errno.ENOENT
        assert e.filename == str(missing)
        assert e.error_type == "ModelNotFoundError" and e.hint
    with pytest.raises(FileNotFoundError):
        _core.Model(str(missing))


def test_exceptions_pickle(tmp_dir: Path) -> None:
    import pickle

    with pytest.raises(bitnet_py.ModelNotFoundError) as ei:
        _core.Model(str(tmp_dir / "nope.gguf"))
    e = pickle.loads(pickle.dumps(ei.value))
    assert type(e) is bitnet_py.ModelNotFoundError
    assert e.errno == errno.ENOENT and e.hint == ei.value.hint and e.status == ei.value.status
    assert str(ei.value).count("nope.gguf") == 1


def test_truncated_files_are_format_errors(testdata: Path, tiny_gguf: Path, tmp_dir: Path) -> None:
    with pytest.raises(bitnet_py.ModelFormatError) as ei:
        _core.GGUFReader(str(testdata / "gguf" / "truncated-header-v2.gguf"))
    assert isinstance(ei.value, ValueError) and ei.value.hint
    assert ei.value.status_name
    raw = tiny_gguf.read_bytes()
    for cut in (3, 100, len(raw) // 3, len(raw) - 1):
        p = tmp_dir / f"cut{cut}.gguf"
        p.write_bytes(raw[:cut])
        with pytest.raises(bitnet_py.ModelFormatError):
            _core.Model(str(p))
        with pytest.raises(bitnet_py.ModelFormatError):
            _core.GGUFReader(str(p))
    p = tmp_dir / "garbage.gguf"
    p.write_bytes(b"NOTGGUF" * 10)
    with pytest.raises(bitnet_py.ModelFormatError):
        _core.Model(str(p))


# --------------------------------------------------------------------------
# Model and Context
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Any:
    return _core.Model(str(tiny_gguf))


def _hello(tiny_reference: dict[str, Any]) -> dict[str, Any]:
    run: dict[str, Any] = next(r for r in tiny_reference["runs"] if r["prompt"] == "Hello world")
    return run


def _ref_logits(testdata: Path, run: dict[str, Any]) -> np.ndarray:
    ref = np.fromfile(testdata / "gguf" / run["logits_file"], dtype="<f4")
    return ref.reshape(len(run["prompt_ids"]), run["n_vocab"])


def test_model_config(model: Any, gguf_manifest: list[dict[str, Any]]) -> None:
    cfg = model.config
    assert cfg["arch"] == "llama"
    assert cfg["n_vocab"] == 32000 == model.n_vocab
    assert cfg["n_embd"] == 8 and cfg["n_layer"] == 1 and cfg["n_head"] == 2
    assert cfg["n_head_kv"] == 2 and cfg["n_ff"] == 32 and cfg["n_ctx_train"] == 4096
    assert cfg["norm_eps"] == 1e-5  # shortest decimal of the float32, as in config.json
    assert cfg["rope_theta"] == 10000.0
    assert cfg["weight_type"] == "f16"
    assert model.n_params > 0 and model.weight_bytes > 0
    assert isinstance(model.has_tokenizer, bool)
    assert model.get_metadata("general.name") == "LLaMA v2"
    assert model.get_metadata("nope", None) is None
    assert "llama" in repr(model)


def test_logits_match_llama_cpp(model: Any, testdata: Path, tiny_reference: dict[str, Any]) -> None:
    run = _hello(tiny_reference)
    ref = _ref_logits(testdata, run)
    ctx = _core.Context(model, n_ctx=64)
    got = ctx.eval(run["prompt_ids"], logits="all")
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    assert list(got.argmax(axis=1)) == [p["argmax"] for p in run["positions"]]
    assert ctx.kv_seq_len(0) == len(run["prompt_ids"])


def test_f16_kv_cache(model: Any, testdata: Path, tiny_reference: dict[str, Any]) -> None:
    """kv_type="f16": half the KV bytes, logits within the reference's
    tolerance (llama.cpp's default cache is F16 too), the same as a float32
    cache holding the half-rounded values would give (C test_kernels), and
    the KV operations work on it."""
    run = _hello(tiny_reference)
    ref = _ref_logits(testdata, run)
    c32 = _core.Context(model, n_ctx=64)
    c16 = _core.Context(model, n_ctx=64, kv_type="f16")
    assert c32.kv_type == "f32" and c16.kv_type == "f16"
    assert c16.kv_bytes * 2 == c32.kv_bytes
    got = c16.eval(run["prompt_ids"], logits="all")
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    assert list(got.argmax(axis=1)) == [p["argmax"] for p in run["positions"]]
    f32 = c32.eval(run["prompt_ids"], logits="all")
    assert 0 < np.abs(got - f32).max() < 1e-3  # rounded, and only by that
    # truncate, copy and continue: as a fresh evaluation of the same tokens
    ids = run["prompt_ids"]
    c = _core.Context(model, n_ctx=32, n_seq=2, kv_type="f16")
    full = c.eval(ids, logits="all")
    np.testing.assert_array_equal(full, got)
    c.kv_truncate(0, 2)
    np.testing.assert_array_equal(c.eval(ids[2:], logits="all"), got[2:])
    c.kv_copy(0, 1)
    np.testing.assert_array_equal(c.eval([42], seq_id=1), c.eval([42], seq_id=0))
    with pytest.raises(bitnet_py.ConfigurationError, match="kv_type"):
        _core.Context(model, kv_type="q8_0")
    with pytest.raises(TypeError, match="kv_type"):
        _core.Context(model, kv_type=16)
    with pytest.raises(TypeError):
        _core.Context(model, 8, 1, 0, 0, "f16")  # keyword-only


def test_model_load_options(tiny_gguf: Path, model: Any) -> None:
    want = _core.Context(model, n_ctx=8).eval([1, 2, 3], logits="all")
    for kw in ({"use_mmap": False}, {"n_layers": 1}):
        m = _core.Model(tiny_gguf, **kw)
        np.testing.assert_array_equal(_core.Context(m, n_ctx=8).eval([1, 2, 3], logits="all"), want)
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.Model(str(tiny_gguf), n_layers=5)  # more layers than the file has
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.Model(str(tiny_gguf), n_layers=-1)


def test_greedy_continuation_matches_llama_cpp(model: Any, tiny_reference: dict[str, Any]) -> None:
    run = _hello(tiny_reference)
    ctx = _core.Context(model, n_ctx=64)
    logits = ctx.eval(run["prompt_ids"])
    assert logits.shape == (1, 32000)
    out = []
    for _ in range(len(run["greedy_ids"])):
        tok = int(logits[0].argmax())
        out.append(tok)
        logits = ctx.eval([tok])
    assert out == run["greedy_ids"]


def test_incremental_and_chunked_eval_agree(model: Any, tiny_reference: dict[str, Any]) -> None:
    ids = next(r for r in tiny_reference["runs"] if r["prompt"] != "Hello world")["prompt_ids"]
    full = _core.Context(model, n_ctx=64).eval(ids, logits="all")
    one = _core.Context(model, n_ctx=64)
    rows = np.concatenate([one.eval([t]) for t in ids])
    np.testing.assert_allclose(rows, full, atol=1e-5)
    chunked = _core.Context(model, n_ctx=64, n_batch=4)  # 13 tokens in 4 calls
    assert chunked.n_batch == 4
    np.testing.assert_allclose(chunked.eval(ids, logits="all"), full, atol=1e-5)
    last = _core.Context(model, n_ctx=64, n_batch=4).eval(np.array(ids))  # ndarray of int64
    np.testing.assert_allclose(last[0], full[-1], atol=1e-5)


def test_kv_truncate_and_copy(model: Any, tiny_reference: dict[str, Any]) -> None:
    ids = _hello(tiny_reference)["prompt_ids"]
    ctx = _core.Context(model, n_ctx=32, n_seq=2)
    assert ctx.n_seq == 2 and ctx.n_ctx == 32
    assert ctx.kv_bytes > 0 and ctx.scratch_bytes > 0
    first = ctx.eval(ids)
    ctx.kv_truncate(0, len(ids) - 1)
    assert ctx.kv_seq_len(0) == len(ids) - 1
    np.testing.assert_allclose(ctx.eval(ids[-1:]), first, atol=1e-6)
    ctx.kv_copy(0, 1)  # whole prefix
    assert ctx.kv_seq_len(1) == len(ids)
    a = ctx.eval([42], seq_id=0)
    b = ctx.eval([42], seq_id=1)
    np.testing.assert_allclose(a, b, atol=1e-6)
    ctx.kv_truncate(1)
    assert ctx.kv_seq_len(1) == 0
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.kv_seq_len(2)
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.eval([1], seq_id=5)


def test_decode_several_sequences(model: Any, tiny_reference: dict[str, Any]) -> None:
    a_ids = _hello(tiny_reference)["prompt_ids"]
    b_ids = [1, 450, 4996, 17354]
    want_a = _core.Context(model, n_ctx=32).eval(a_ids, logits="all")
    want_b = _core.Context(model, n_ctx=32).eval(b_ids, logits="all")
    ctx = _core.Context(model, n_ctx=32, n_seq=2)
    tokens = a_ids + b_ids
    pos = list(range(len(a_ids))) + list(range(len(b_ids)))
    seqs = [0] * len(a_ids) + [1] * len(b_ids)
    want = [False, True, True, True, False, False, True]
    rows = ctx.decode(tokens, pos, seqs, want)
    assert rows.shape == (4, 32000)
    np.testing.assert_allclose(rows[0], want_a[1], atol=1e-5)
    np.testing.assert_allclose(rows[1], want_a[2], atol=1e-5)
    np.testing.assert_allclose(rows[2], want_b[0], atol=1e-5)
    np.testing.assert_allclose(rows[3], want_b[3], atol=1e-5)
    assert ctx.kv_seq_len(0) == 3 and ctx.kv_seq_len(1) == 4
    # Defaults: positions continue, logits of the last token only.
    nxt = ctx.decode([29889, 29889], seq_ids=[0, 1])
    assert nxt.shape == (1, 32000)
    allrows = ctx.decode([13, 13], seq_ids=[0, 1], want_logits=True)
    assert allrows.shape == (2, 32000)
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.decode([1, 2], pos=[0])  # length mismatch


def test_eval_errors_leave_kv_unchanged(model: Any) -> None:
    ctx = _core.Context(model, n_ctx=8)
    ctx.eval([1, 2, 3])
    with pytest.raises(bitnet_py.ConfigurationError) as ei:
        ctx.eval(list(range(1, 7)))  # 3 + 6 > n_ctx
    assert ei.value.hint
    assert ctx.kv_seq_len(0) == 3
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.eval([32000])  # id out of range
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.eval([2**40])  # does not fit int32
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.eval([])
    with pytest.raises(bitnet_py.ConfigurationError):
        ctx.eval([1], logits="some")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ctx.eval("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ctx.eval([1.5])  # type: ignore[list-item]
    assert ctx.kv_seq_len(0) == 3
    with pytest.raises(bitnet_py.ConfigurationError):
        _core.Context(model, n_seq=0)


def test_cancel(model: Any) -> None:
    ctx = _core.Context(model, n_ctx=16)
    ctx.eval([1, 2])
    ctx.cancel()
    assert ctx.cancelled
    with pytest.raises(bitnet_py.CancelledError) as ei:
        ctx.eval([3, 4])
    assert isinstance(ei.value, RuntimeError) and ei.value.error_type == "CancelledError"
    assert not ctx.cancelled  # consumed by the raise
    assert ctx.kv_seq_len(0) == 2  # the cancelled batch left nothing behind
    ctx.set_abort(True)
    ctx.set_abort(False)
    assert ctx.eval([3]).shape == (1, 32000)


def test_cancel_from_another_thread(model: Any) -> None:
    ctx = _core.Context(model, n_ctx=4096, n_batch=64)
    ids = [1 + (i % 31000) for i in range(4000)]
    timer = threading.Timer(0.02, ctx.cancel)
    timer.start()
    try:
        t0 = time.perf_counter()
        ctx.eval(ids, logits="last")
        elapsed = time.perf_counter() - t0
    except bitnet_py.CancelledError:
        assert ctx.kv_seq_len(0) == 0
    else:
        timer.join()
        if elapsed > 0.2:
            pytest.fail("eval ran past a cancel() without raising CancelledError")
        pytest.skip("eval finished before the cancel() fired")
    timer.join()


def _gil_released_during(fn: Any) -> tuple[float, int, float]:
    """Run fn() while a Python thread counts; return (elapsed, counts during
    fn, counts per second without contention)."""
    count = 0
    stop = False

    def spin() -> None:
        nonlocal count
        while not stop:
            count += 1

    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.05)
        c0 = count
        time.sleep(0.05)
        rate = (count - c0) / 0.05
        c0 = count
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        during = count - c0
    finally:
        stop = True
        th.join()
    return elapsed, during, rate


def test_gil_released_during_eval(model: Any) -> None:
    # One worker thread, so the counting thread has a core even on 2-core CI.
    ctx = _core.Context(model, n_ctx=512, n_threads=1)
    ids = [1 + (i * 7) % 31000 for i in range(384)]

    def run() -> None:
        ctx.kv_truncate(0)
        ctx.eval(ids, logits="all")

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        elapsed, during, rate = _gil_released_during(run)
    finally:
        sys.setswitchinterval(old)
    if elapsed < 0.02:
        pytest.skip(f"eval too fast ({elapsed:.3f}s) to observe")
    # With the GIL held the counting thread barely runs during the call
    # (measured: under 1% of its free-running rate); released, it runs at
    # a large fraction of it.
    assert during > 0.05 * rate * elapsed, (elapsed, during, rate)


def test_gil_released_during_quantize() -> None:
    x = np.random.default_rng(5).standard_normal((2048, 4096)).astype(np.float32)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        elapsed, during, rate = _gil_released_during(lambda: _core.quantize("q8_0", x))
    finally:
        sys.setswitchinterval(old)
    if elapsed < 0.02:
        pytest.skip(f"quantize too fast ({elapsed:.3f}s) to observe")
    assert during > 0.05 * rate * elapsed, (elapsed, during, rate)


def test_context_used_by_two_threads_raises(model: Any) -> None:
    ctx = _core.Context(model, n_ctx=1024, n_threads=1)
    ids = [1 + (i * 7) % 31000 for i in range(1000)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ctx.eval(ids, logits="all")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    th = threading.Thread(target=run)
    th.start()
    seen = False
    while th.is_alive() and not seen:
        try:
            ctx.kv_seq_len(0)
        except bitnet_py.InferenceError as e:
            seen = "another thread" in str(e)
    th.join()
    assert not errors
    if not seen:
        pytest.skip("eval finished before the second thread got in")
    assert ctx.kv_seq_len(0) == len(ids)  # the first call completed normally


def test_context_outlives_model_reference(tiny_gguf: Path, tiny_reference: dict[str, Any]) -> None:
    ids = _hello(tiny_reference)["prompt_ids"]
    m = _core.Model(str(tiny_gguf))
    mref = weakref.ref(m)
    ctx = _core.Context(m, n_ctx=16)
    del m
    gc.collect()
    assert mref() is not None and ctx.model is mref()
    out = ctx.eval(ids)
    assert np.isfinite(out).all()
    del ctx
    gc.collect()
    assert mref() is None


def test_model_close_deferred_while_contexts_live(tiny_gguf: Path) -> None:
    m = _core.Model(str(tiny_gguf))
    ctx = _core.Context(m, n_ctx=16)
    m.close()
    assert m.closed
    with pytest.raises(ValueError):
        _ = m.config
    with pytest.raises(ValueError):
        _core.Context(m)
    assert ctx.eval([1, 2]).shape == (1, 32000)  # weights still valid
    ctx.close()
    assert ctx.closed
    with pytest.raises(ValueError):
        ctx.eval([1])
    with _core.Model(str(tiny_gguf)) as m2, _core.Context(m2, n_ctx=8) as c2:
        assert c2.eval([1]).shape == (1, 32000)
    assert m2.closed and c2.closed


def test_many_objects_no_crash(tiny_gguf: Path) -> None:
    # Exercise alloc/free paths repeatedly (run the suite with `python -X dev`).
    for _ in range(20):
        m = _core.Model(str(tiny_gguf))
        ctxs = [_core.Context(m, n_ctx=8) for _ in range(3)]
        ctxs[1].eval([1])
        del m
        del ctxs
    gc.collect()


# --------------------------------------------------------------------------
# python -m bitnet_py
# --------------------------------------------------------------------------


def _run_main(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "bitnet_py", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_main_version() -> None:
    r = _run_main("version")
    assert r.returncode == 0, r.stderr
    assert bitnet_py.__version__ in r.stdout


def test_main_info(tiny_gguf: Path, tmp_dir: Path) -> None:
    r = _run_main("info", str(tiny_gguf))
    assert r.returncode == 0, r.stderr
    assert "llama" in r.stdout and "n_vocab" in r.stdout
    r = _run_main("info", "--json", str(tiny_gguf))
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["config"]["n_embd"] == 8
    r = _run_main("info", str(tmp_dir / "missing.gguf"))
    assert r.returncode == 1 and "error:" in r.stderr and "hint:" in r.stderr


# --------------------------------------------------------------------------
# Reference counts and leaks
# --------------------------------------------------------------------------


def test_refcounts_of_arguments(model: Any, tiny_gguf: Path) -> None:
    ctx = _core.Context(model, n_ctx=64)
    ids = [1, 15043, 3186]
    arr = np.array(ids, dtype=np.int32)
    x = np.zeros((2, 32), np.float32)
    path = str(tiny_gguf)
    before = [sys.getrefcount(o) for o in (ids, arr, x, path, model)]
    for _ in range(10):
        ctx.kv_truncate(0)
        ctx.eval(ids)
        ctx.kv_truncate(0)
        ctx.eval(arr, logits="all")
        _core.quantize("q8_0", x)
        _core.ternarize(x)
        with pytest.raises(bitnet_py.ConfigurationError):
            ctx.eval(ids, seq_id=3)
        r = _core.GGUFReader(path)
        r.get("tokenizer.ggml.scores")
        r.close()
    after = [sys.getrefcount(o) for o in (ids, arr, x, path, model)]
    assert after == before
    n = sys.getrefcount(model)
    c2 = _core.Context(model, n_ctx=8)
    assert sys.getrefcount(model) == n + 1  # the context's reference
    del c2
    assert sys.getrefcount(model) == n


def test_no_python_memory_growth(model: Any, tiny_gguf: Path, tmp_dir: Path) -> None:
    import tracemalloc

    ctx = _core.Context(model, n_ctx=64, n_seq=2)
    x = np.random.default_rng(6).standard_normal((4, 64)).astype(np.float32)
    path = str(tiny_gguf)

    def work() -> None:
        ctx.kv_truncate(0)
        ctx.kv_truncate(1)
        ctx.eval([1, 2, 3], logits="all")
        ctx.decode([4, 5], seq_ids=[0, 1], want_logits=[1, 1])
        for bad in ([99999], []):
            try:
                ctx.eval(bad)
            except bitnet_py.ConfigurationError:
                pass
        try:
            _core.Model(str(tmp_dir / "missing.gguf"))
        except bitnet_py.ModelNotFoundError:
            pass
        _core.dequantize("q8_0", _core.quantize("q8_0", x), 64, 4)
        r = _core.GGUFReader(path)
        r.get("tokenizer.ggml.tokens")
        r.tensors()
        with r.tensor_bytes("output_norm.weight") as mv:
            bytes(mv)
        r.close()
        w = _core.GGUFWriter()
        w.set_arr_str("s", ["a", "b"])
        w.set_arr("n", list(range(100)), "i32")
        w.add_tensor("t", "f32", (64, 4), x.tobytes())
        w.write(str(tmp_dir / "leak.gguf"))
        try:
            w.set("n", 1, "u8")
        except bitnet_py.BitNetError:
            pass

    for _ in range(5):
        work()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(5):
            work()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            work()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"Python memory grew by {grown} bytes over 100 rounds"
