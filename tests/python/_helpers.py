"""Helpers shared by the tests that compare the engine with other
implementations (test_vs_transformers, test_vs_llama_cpp,
test_formats_loaders). Imports of bitnet_py._core, torch and transformers are
made on use: the test modules skip on them with pytest.importorskip first."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def engine(path: Path, kv_type: str = "f32") -> Any:
    """A one-thread ``_core.Context`` (n_ctx 128) on the GGUF file ``path``."""
    from bitnet_py import _core

    return _core.Context(_core.Model(str(path)), n_ctx=128, n_threads=1, kv_type=kv_type)


def engine_greedy(path: Path, tokens: list[int], n: int,
                  kv_type: str = "f32") -> tuple[list[int], list[np.ndarray]]:
    """``n`` greedy tokens after ``tokens`` by incremental decoding, and the
    last-position logits (float64) each one was chosen from."""
    ctx = engine(path, kv_type)
    lg = ctx.eval(tokens, logits="last")[-1]
    out, steps = [], []
    for _ in range(n):
        steps.append(np.asarray(lg, dtype=np.float64))
        t = int(np.argmax(lg))
        out.append(t)
        lg = ctx.eval([t], logits="last")[-1]
    return out, steps


@contextlib.contextmanager
def eager_torch() -> Iterator[None]:
    """torch.compile switched off (the BitNet quantizers run eagerly: the same
    operations without an inductor build) and one torch thread; both restored
    on exit."""
    import torch
    import torch._dynamo

    old, threads = torch._dynamo.config.disable, torch.get_num_threads()
    torch._dynamo.config.disable = True
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch._dynamo.config.disable = old
        torch.set_num_threads(threads)


def load_hf_bitnet(d: Path) -> Any:
    """transformers' BitNetForCausalLM from the checkpoint directory ``d``,
    float32, in eval mode. Through from_pretrained when accelerate (which the
    BitNet quantizer requires) is installed; otherwise the same modules built
    by hand: the config, then replace_with_bitnet_linear with the checkpoint's
    quantization config."""
    import torch
    from transformers import BitNetConfig, BitNetForCausalLM

    try:
        import accelerate  # noqa: F401

        try:
            model = BitNetForCausalLM.from_pretrained(str(d), dtype=torch.float32)
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = BitNetForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32)
    except ImportError:
        from safetensors.torch import load_file
        from transformers.integrations.bitnet import replace_with_bitnet_linear
        from transformers.utils.quantization_config import BitNetQuantConfig

        cfg = BitNetConfig.from_pretrained(str(d))
        qc = cfg.quantization_config
        qc = BitNetQuantConfig(**(qc if isinstance(qc, dict) else qc.to_dict()))
        cfg.quantization_config = None
        model = BitNetForCausalLM(cfg).to(torch.float32)  # type: ignore[arg-type]  # transformers types .to oddly
        replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"], quantization_config=qc)
        missing, unexpected = model.load_state_dict(load_file(str(d / "model.safetensors")),
                                                    strict=False, assign=True)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        model.tie_weights()
    model.eval()
    return model
