"""Stand-in for the original gpu/generate.py (see README.md)."""
import os
from dataclasses import dataclass

import bitnet_py as _impl  # computes underneath

import model as _model


def _record(call: str) -> None:
    path = os.environ.get("FAKE_ORIGINAL_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(call + "\n")


@dataclass
class GenArgs:
    gen_length: int = 32
    gen_bsz: int = 1
    prompt_length: int = 64
    use_sampling: bool = False
    temperature: float = 0.8
    top_p: float = 0.9


class _Tokenizer:
    def __init__(self, inner) -> None:
        self._inner = inner

    def encode(self, s, *, bos, eos, allowed_special=set(), disallowed_special=()):
        _record("Tokenizer.encode")
        return self._inner.encode(s, bos=bos, eos=eos)

    def decode(self, t):
        return self._inner.decode(list(t))


class FastGen:
    def __init__(self, args, model_args, prefill_model, decode_model, tokenizer) -> None:
        self.gen_args = args
        self.model_args = model_args
        self.prefill_model = prefill_model
        self.decode_model = decode_model
        self.tokenizer = tokenizer

    @staticmethod
    def build(ckpt_dir, gen_args, device, tokenizer_path=None, num_layers=13, use_full_vocab=False):
        _record(f"FastGen.build device={device}")
        inner = _impl.FastGen.build(ckpt_dir, _impl.GenArgs(gen_length=gen_args.gen_length), "cpu",
                                    tokenizer_path=tokenizer_path)
        m = _model.Transformer(_model.ModelArgs(), inner)
        return FastGen(gen_args, _model.ModelArgs(), m, m, _Tokenizer(inner.tokenizer))

    def generate_all(self, prompts, use_cuda_graphs, use_sampling):
        _record("FastGen.generate_all")
        return self.decode_model.impl.generate_all(prompts, use_cuda_graphs=use_cuda_graphs,
                                                   use_sampling=use_sampling)
