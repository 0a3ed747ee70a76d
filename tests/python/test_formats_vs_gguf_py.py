"""Cross-check libbitnet's block formats against gguf-py's numpy reference
(gguf.quants, from the llama.cpp repository), independent of our C code.

Dequantization must agree bit for bit on random blocks (with finite scales)
for Q8_0, Q4_0, Q6_K, TQ1_0 and TQ2_0; quantization must agree bit for bit
where gguf-py implements it (Q8_0, Q4_0, TQ1_0, TQ2_0, F16, BF16). I2_S is
bitnet.cpp's own type, which gguf-py does not know; its round trip is
checked here on ternary input.
"""

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
gquants = pytest.importorskip("gguf.quants")
_core = pytest.importorskip("bitnet_py._core")

Q = gguf.GGMLQuantizationType

# type name in libbitnet -> (gguf type, offset of the f16 scale(s) in a block)
BLOCK_TYPES = {
    "q8_0": (Q.Q8_0, [0]),
    "q4_0": (Q.Q4_0, [0]),
    "q6_k": (Q.Q6_K, [208]),
    "tq1_0": (Q.TQ1_0, [52]),
    "tq2_0": (Q.TQ2_0, [64]),
}


def block_size(qtype):
    return gguf.GGML_QUANT_SIZES[qtype]


def random_blocks(rng, qtype, scale_offsets, n_rows, n_blocks):
    """Random block bytes whose f16 scales are finite (NaN and inf scales
    make the comparison meaningless)."""
    _, type_size = block_size(qtype)
    data = rng.integers(0, 256, size=(n_rows, n_blocks, type_size), dtype=np.uint8)
    for off in scale_offsets:
        d = rng.uniform(-2.0, 2.0, size=(n_rows, n_blocks)).astype(np.float16)
        d[0, 0] = np.float16(0.0)  # a zero scale too
        data[:, :, off:off + 2] = d.view(np.uint8).reshape(n_rows, n_blocks, 2)
    return data.reshape(n_rows, n_blocks * type_size)


@pytest.mark.parametrize("name", sorted(BLOCK_TYPES))
def test_dequantize_matches_gguf_py(name):
    qtype, scale_offsets = BLOCK_TYPES[name]
    bs, _ = block_size(qtype)
    rng = np.random.default_rng(1234)
    n_rows, n_blocks = 16, 8
    data = random_blocks(rng, qtype, scale_offsets, n_rows, n_blocks)
    want = gquants.dequantize(data, qtype).astype(np.float32)
    got = _core.dequantize(name, data.tobytes(), n_blocks * bs, n_rows)
    got = np.asarray(got, dtype=np.float32).reshape(n_rows, n_blocks * bs)
    assert want.shape == got.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "tq1_0", "tq2_0"])
def test_quantize_matches_gguf_py(name):
    qtype, _ = BLOCK_TYPES[name]
    bs, type_size = block_size(qtype)
    rng = np.random.default_rng(99)
    n_rows, n_cols = 6, 4 * bs
    x = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    x[1] *= 100.0
    x[2, :bs] = 0.0  # an all-zero block
    x[3, : bs // 2] = np.float32(0.5)  # ties for the rounding rules
    if name.startswith("tq"):
        # Ternary times a scale per row, as BitNet weights are; plus one
        # row of arbitrary values (both quantizers round the same way).
        t = rng.integers(-1, 2, size=(n_rows - 1, n_cols)).astype(np.float32)
        x[: n_rows - 1] = t * np.float32(0.0234375)
    want = gquants.quantize(x, qtype).reshape(n_rows, n_cols // bs * type_size)
    got = np.frombuffer(_core.quantize(name, x), dtype=np.uint8).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
    # And each decodes the other's bytes the same way.
    back = np.asarray(_core.dequantize(name, want.tobytes(), n_cols, n_rows), dtype=np.float32)
    np.testing.assert_array_equal(back.reshape(n_rows, n_cols), gquants.dequantize(want, qtype))


def test_q6_k_quantize_decodes_under_gguf_py():
    # gguf-py has no Q6_K quantizer; our bytes must decode the same in both,
    # and close to the input.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 512)).astype(np.float32)
    data = np.frombuffer(_core.quantize("q6_k", x), dtype=np.uint8).reshape(3, 2 * 210)
    theirs = gquants.dequantize(data, Q.Q6_K)
    ours = np.asarray(_core.dequantize("q6_k", data.tobytes(), 512, 3), dtype=np.float32)
    np.testing.assert_array_equal(ours.reshape(3, 512), theirs)
    assert np.sqrt(np.mean((theirs - x) ** 2)) < 0.03 * np.sqrt(np.mean(x ** 2))


@pytest.mark.parametrize("name,qtype", [("f16", Q.F16), ("bf16", Q.BF16)])
def test_half_types_match_gguf_py(name, qtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 64)) * 1000).astype(np.float32)
    x[0, :8] = [0.0, -0.0, 65504.0, 65520.0, 1e-8, -6e-8, np.inf, -np.inf]
    with np.errstate(over="ignore"):  # 65520 and inf overflow to inf on purpose
        want = np.ascontiguousarray(gquants.quantize(x, qtype)).view(np.uint8).reshape(4, 128)
    got = np.frombuffer(_core.quantize(name, x), dtype=np.uint8).reshape(4, 128)
    np.testing.assert_array_equal(got, want)


def test_i2_s_round_trip():
    rng = np.random.default_rng(3)
    n_rows, n_cols = 4, 256
    scale = np.float32(0.75)
    x = rng.integers(-1, 2, size=(n_rows, n_cols)).astype(np.float32) * scale
    data = _core.quantize("i2_s", x)
    assert len(data) == n_rows * n_cols // 4 + 32  # bitnet.cpp's ggml_nbytes
    assert np.frombuffer(data[n_rows * n_cols // 4:][:4], dtype="<f4")[0] == scale
    back = np.asarray(_core.dequantize("i2_s", data, n_cols, n_rows), dtype=np.float32)
    np.testing.assert_array_equal(back.reshape(n_rows, n_cols), x)
