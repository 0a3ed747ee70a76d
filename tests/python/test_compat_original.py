"""Drop-in for the original microsoft/BitNet gpu/ code: ModelArgs, GenArgs,
Stats, Tokenizer, ChatFormat, FastGen, make_cache, cache_prefix, and a
script in the original generate.py style run end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bitnet_py as fast
from bitnet_py import GenArgs, ModelArgs
from bitnet_py.migration import migrate_source
from bitnet_py.testing import tiny_checkpoint


@pytest.fixture(scope="module")
def gen(ckpt: Path) -> fast.FastGen:
    return fast.FastGen.build(str(ckpt), GenArgs(), "cuda:0")


def test_model_args_defaults_and_dict() -> None:
    a = ModelArgs()
    assert (a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.vocab_size, a.ffn_dim) == (2560, 30, 20, 5, 128256, 6912)
    assert (a.norm_eps, a.rope_theta, a.use_kernel) == (1e-5, 500000.0, False)
    assert a.num_parameters() == 2_740_945_920
    d = a.to_dict()
    assert len(d) == 9 and ModelArgs.from_dict(d) == a
    b = ModelArgs.from_dict({"dim": 512, "unknown": 1})  # partial dict, extra key ignored
    assert b.dim == 512 and b.n_layers == 30
    b.n_layers = 2  # read/write fields
    assert b.n_layers == 2


def test_gen_args_defaults_and_validation() -> None:
    g = GenArgs()
    assert (g.gen_length, g.gen_bsz, g.prompt_length, g.use_sampling, g.temperature, g.top_p) == (
        32, 1, 64, False, 0.8, 0.9)
    assert g.top_k is None and g.repetition_penalty == 1.0
    assert GenArgs.from_dict(g.to_dict()) == g
    for bad in ({"gen_length": -1}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.1}, {"gen_bsz": 0}):
        with pytest.raises(fast.ConfigurationError):
            GenArgs(**bad).validate()  # type: ignore[arg-type]


def test_stats_original_format() -> None:
    s = fast.Stats()
    s.phase("prefill")
    s.phase("decode", tokens=10)
    s.end_phase(tokens=20, now=s.current[1] + 2.0)  # type: ignore[index]
    assert [p.name for p in s.phases] == ["prefill", "decode"]
    assert s.phases[0].tokens == 10
    line = s.phases[1].show()
    assert line == "[decode] generated tokens: 20 - total time: 2.000s - 10.0 tokens per second"
    assert re.fullmatch(r"\[prefill\] generated tokens: 10 - total time: \d+\.\d{3}s - [\d.]+ tokens per second",
                        s.phases[0].show())
    assert s.show().splitlines()[1] == line
    assert s.total_tokens == 20 and s.decode_time == pytest.approx(2.0)  # (t + 2) - t is not exactly 2
    assert repr(s).startswith("Stats(tokens=20, time=")
    with pytest.raises(fast.ConfigurationError):
        fast.Stats().end_phase(1)


def test_tokenizer_original_api(tok_path: str) -> None:
    t = fast.Tokenizer(tok_path)
    assert (t.n_words, t.bos_id, t.eos_id, t.eot_id, t.pad_id) == (128256, 128000, 128001, 128009, 128255)
    assert len(t.special_tokens) == 256
    assert t.special_tokens["<|eot_id|>"] == 128009 and t.special_tokens["<|start_header_id|>"] == 128006
    assert t.stop_tokens == {128001, 128009}
    ids = t.encode("Hello world", bos=True, eos=False)
    assert ids[0] == 128000 and t.decode(ids[1:]) == "Hello world"
    assert t.encode("Hello", bos=False, eos=True)[-1] == 128001
    # special text is plain text unless allowed (tiktoken's defaults in the original)
    assert 128009 not in t.encode("<|eot_id|>", bos=False, eos=False)
    assert t.encode("<|eot_id|>", bos=False, eos=False, allowed_special="all") == [128009]
    with pytest.raises(FileNotFoundError, match="Tokenizer model not found"):
        fast.Tokenizer("/nonexistent/tokenizer.model")
    with pytest.raises(fast.BitNetError):
        fast.Tokenizer("/nonexistent/tokenizer.model")


def test_chat_format_original(tok_path: str) -> None:
    t = fast.Tokenizer(tok_path)
    cf = fast.ChatFormat(t)
    assert cf.eot_id == 128009
    dialog = [{"role": "user", "content": " Hi there "}]
    toks = cf.encode_dialog_prompt(dialog, completion=True)
    assert toks == [128000] + t.encode("User: ", bos=False, eos=False) + t.encode("Hi there", bos=False, eos=False) \
        + [128009] + t.encode("Assistant: ", bos=False, eos=False)
    tokens, targets = cf.encode_message({"role": "assistant", "content": "ok"}, return_target=True)
    head = t.encode("Assistant: ", bos=False, eos=False)
    assert targets == [-1] * len(head) + tokens[len(head):]
    tokens, none = cf.encode_message({"role": "user", "content": "ok"})
    assert none is None and tokens[-1] == 128009
    _, targets = cf.encode_dialog_prompt(dialog, return_target=True)
    assert set(targets) == {-1}
    assert cf.encode_header(fast.Message("system", "x")) == t.encode("System: ", bos=False, eos=False)
    with pytest.raises(NotImplementedError, match="Role tool not implemented."):
        cf.encode_header({"role": "tool", "content": ""})
    assert cf.decode(t.encode("Hi", bos=False, eos=False) + [128009]) == "Hi"


def test_fastgen_generate_all(gen: fast.FastGen, tok_path: str) -> None:
    t = gen.tokenizer
    assert isinstance(t, fast.Tokenizer)
    prompts = [t.encode(p, bos=False, eos=False) for p in ("Hello, my name is", "The capital of France is")]
    prompts.append(fast.ChatFormat(t).encode_dialog_prompt([{"role": "user", "content": "Hi"}], completion=True))
    prompts.append(t.encode("x " * 100, bos=True, eos=False))  # longer than the original's prompt_length
    stats, out = gen.generate_all(prompts, use_cuda_graphs=True, use_sampling=False)
    assert len(out) == 4
    for o in out:
        assert 0 < len(o) <= gen.gen_args.gen_length
        if 128009 in o:
            assert o.index(128009) == len(o) - 1  # trimmed after eot, eot kept
    assert [p.name for p in stats.phases] == ["prefill", "decode"]
    stats2, out2 = gen.generate_all(prompts[:1], False, False)
    assert [p.name for p in stats2.phases] == ["total"] and out2[0] == out[0]
    # new tokens only, same as the engine's greedy continuation
    assert gen.generate(prompts[0]) == t.decode(out[0]).replace("<|eot_id|>", "")


def test_fastgen_uses_gen_args_sampling(gen: fast.FastGen) -> None:
    t = gen.tokenizer
    p = [t.encode("Hello", bos=True, eos=False)]
    old = gen.gen_args
    try:
        gen.gen_args = GenArgs(gen_length=8, temperature=0.0)  # temperature 0 = greedy even when sampling
        _, greedy = gen.generate_all(p, True, False)
        _, sampled0 = gen.generate_all(p, True, True)
        assert greedy == sampled0
        gen.gen_args = GenArgs(gen_length=8, temperature=5.0, top_p=1.0)
        outs = {tuple(gen.generate_all(p, True, True)[1][0]) for _ in range(4)}
        assert len(outs) > 1  # hot sampling varies
        gen.gen_args = GenArgs(gen_length=3)
        assert len(gen.generate_all(p, True, False)[1][0]) <= 3
    finally:
        gen.gen_args = old


def test_fastgen_build_parameters(ckpt: Path, tok_path: str, tmp_path: Path) -> None:
    g1 = fast.FastGen.build(str(ckpt), GenArgs(gen_length=4), "cpu", tokenizer_path=tok_path, num_layers=1)
    assert g1.prefill_model.config.n_layers == 1
    g2 = fast.FastGen.build(str(ckpt), GenArgs(gen_length=4), "cpu", num_layers=2)
    p = g1.tokenizer.encode("Hello", bos=True, eos=False)
    assert not np.array_equal(g1.prefill_model.forward(p), g2.prefill_model.forward(p))
    # use_full_vocab: the synthetic tokenizer has fewer ids than the model has rows
    assert g1.engine.vocab_limit() is None  # llama3: same size, nothing to limit
    g1.compile_prefill()
    g1.compile_generate()
    with pytest.raises(fast.ConfigurationError, match="unknown device"):
        fast.FastGen.build(str(ckpt), GenArgs(), "tpu")
    with pytest.raises(FileNotFoundError, match="Model directory not found"):
        fast.FastGen.build(str(tmp_path / "missing"), GenArgs(), "cpu")
    # a directory with the original's .pt checkpoints but no GGUF: the C loader's error names it
    (tmp_path / "pt").mkdir()
    (tmp_path / "pt" / "model_state_int2.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(fast.BitNetError):
        fast.FastGen.build(str(tmp_path / "pt"), GenArgs(), "cpu", tokenizer_path=tok_path)


def test_use_full_vocab_limits_ids(tok_path: str) -> None:
    # a model whose embedding has padding rows beyond the tokenizer's 128256 ids
    d = tiny_checkpoint(n_vocab=128256 + 128, tokenizer=tok_path, n_layer=1)
    g = fast.FastGen.build(str(d), GenArgs(gen_length=40, temperature=50.0, top_p=1.0), "cpu")
    assert g._params(True).vocab_limit == 128256
    p = [g.tokenizer.encode("Hello", bos=True, eos=False)]
    for _ in range(3):
        assert all(t < 128256 for t in g.generate_all(p, True, True)[1][0])
    full = fast.FastGen.build(str(d), GenArgs(gen_length=40, temperature=50.0, top_p=1.0), "cpu",
                              use_full_vocab=True)
    assert full._params(True).vocab_limit is None
    assert len(full.generate_all(p, True, True)[1][0]) == 40


def test_make_cache_and_prefix() -> None:
    args = ModelArgs(dim=64, n_layers=3, n_heads=4, n_kv_heads=2)
    cache = fast.make_cache(args, 10)
    assert len(cache) == 3
    k, v = cache[0]
    assert k.shape == (1, 10, 2, 2, 16) and v.shape == k.shape and not k.any()
    assert len(fast.make_cache(args, 5, n_layers=1)) == 1
    pre = fast.cache_prefix(cache, 4)
    assert pre[2][0].shape == (1, 4, 2, 2, 16)
    with pytest.raises(fast.ConfigurationError):
        fast.cache_prefix(cache, 11)


def test_transformer_alias(ckpt: Path) -> None:
    assert fast.Transformer is fast.BitNetModel
    empty = fast.Transformer(ModelArgs(), device="cpu")
    assert empty.num_parameters() == 2_740_945_920
    with pytest.raises(fast.InferenceError, match="no weights"):
        empty.forward([1, 2])
    m = fast.Transformer.from_pretrained(str(ckpt))
    assert m.eval() is m and m.to("cpu") is m and m.train(False) is m
    out = m.forward_with_attn_bias(np.array([1, 2, 3], dtype=np.int32), None, None)
    assert out.shape == (3, 128256) and out.dtype == np.float32
    both = m.forward(np.array([1, 2, 3, 4, 5]), token_lengths=[3, 2])
    np.testing.assert_array_equal(both[:3], out)
    np.testing.assert_array_equal(both[3:], m.forward([4, 5]))


ORIGINAL_SCRIPT = '''
import os
import sys

import model as fast
from generate import FastGen, GenArgs
from stats import Stats
from tokenizer import Tokenizer, ChatFormat


def main(ckpt_dir, interactive=False, chat_format=False, sampling=False):
    local_rank = 0
    device = f"cuda:{local_rank}"
    g = FastGen.build(ckpt_dir, GenArgs(), device)
    if chat_format:
        g.tokenizer = ChatFormat(g.tokenizer)
    while True:
        if interactive:
            try:
                prompt = input("enter prompt: ")
            except EOFError:
                print("exiting")
                sys.exit(0)
        else:
            prompt = "Hello, my name is"
        prompts = [prompt]
        if chat_format:
            tokens = [g.tokenizer.encode_dialog_prompt(dialog=[{"role": "user", "content": prompt}], completion=True)]
        else:
            tokens = [g.tokenizer.encode(x, bos=False, eos=False) for x in prompts]
        print(tokens)
        stats, out_tokens = g.generate_all(
            tokens, use_cuda_graphs="NO_CUDA_GRAPHS" not in os.environ, use_sampling=sampling,
        )
        for i, prompt in enumerate(prompts):
            print(f"> {prompts[i]}")
            answer = g.tokenizer.decode(out_tokens[i])
            print(answer)
            print("---------------")
        for phase_stats in stats.phases:
            print(phase_stats.show())
        assert isinstance(stats, Stats)
        if not interactive:
            return


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], interactive="--interactive" in args, chat_format="--chat_format" in args,
         sampling="--sampling" in args)
'''


def _migrated_script(tmp_path: Path) -> Path:
    new, changes = migrate_source(ORIGINAL_SCRIPT)
    assert ("import model as fast", "import bitnet_py as fast") in changes
    assert "from bitnet_py import FastGen, GenArgs" in new and "from bitnet_py import Tokenizer, ChatFormat" in new
    # only import lines changed
    old_lines = [l for l in ORIGINAL_SCRIPT.splitlines() if not re.match(r"\s*(import|from) ", l)]
    new_lines = [l for l in new.splitlines() if not re.match(r"\s*(import|from) ", l)]
    assert old_lines == new_lines
    p = tmp_path / "generate_script.py"
    p.write_text(new, encoding="utf-8")
    return p


@pytest.mark.parametrize("flags,env", [([], {}), (["--chat_format"], {"NO_CUDA_GRAPHS": "1"}),
                                       (["--sampling"], {})])
def test_original_generate_flow_end_to_end(tmp_path: Path, ckpt: Path, flags: list[str], env: dict[str, str]) -> None:
    script = _migrated_script(tmp_path)
    r = subprocess.run([sys.executable, str(script), str(ckpt), *flags], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "> Hello, my name is" in out and "---------------" in out
    phases = re.findall(r"^\[(\w+)\] generated tokens: \d+ - total time: \d+\.\d{3}s - [\d.]+ tokens per second$",
                        out, re.M)
    assert phases == (["total"] if env else ["prefill", "decode"])
    answer = out.split("> Hello, my name is\n", 1)[1].split("\n---------------", 1)[0]
    assert answer.strip()


def test_original_interactive_chat(tmp_path: Path, ckpt: Path) -> None:
    script = _migrated_script(tmp_path)
    r = subprocess.run([sys.executable, str(script), str(ckpt), "--interactive", "--chat_format"], cwd=tmp_path,
                       input="What is BitNet?\nAnd then?\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("---------------") == 2 and r.stdout.rstrip().endswith("exiting")
    assert "> What is BitNet?" in r.stdout and "> And then?" in r.stdout
    assert textwrap.dedent("").strip() == ""


def test_fastgen_original_constructor_order(gen: fast.FastGen) -> None:
    m = gen.prefill_model
    g = fast.FastGen(GenArgs(gen_length=8), m.config, m, m, gen.tokenizer)
    assert g.gen_args.gen_length == 8 and g.prefill_model is m and g.tokenizer is gen.tokenizer
    p = [gen.tokenizer.encode("Hello", bos=True, eos=False)]
    assert g.generate_all(p, True, False)[1][0] == gen.generate_all(p, True, False)[1][0][:8]
    with pytest.raises(fast.ConfigurationError, match="BitNetModel"):
        fast.FastGen("not a model")  # type: ignore[arg-type]


def test_inference_engine_native_module_style(gen: fast.FastGen, tok_path: str) -> None:
    m = gen.prefill_model
    e = fast.InferenceEngine(m, tok_path, "cpu")  # the earlier native module's (model, tokenizer, device)
    assert isinstance(e.tokenizer, fast.Tokenizer)
    greedy = e.generate("Hello", max_tokens=5, temperature=0.0)
    assert greedy == gen.generate("Hello", max_new_tokens=5)
    assert isinstance(e.generate("Hello", max_tokens=5, temperature=0.7, top_p=0.9, top_k=50), str)
    for bad in ({"max_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_k": 0},
                {"temperature": float("inf")}):
        with pytest.raises(ValueError):
            e.generate("Hello", **bad)  # type: ignore[arg-type]
