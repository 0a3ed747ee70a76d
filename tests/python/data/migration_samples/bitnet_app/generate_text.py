#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Generate a continuation with BitNet b1.58 (written for the gpu/ code).

    python generate_text.py ./checkpoints --prompt "Hello, my name is" [--chat_format]
"""
import argparse
import json
import os

import torch

import model as fast  # Transformer, ModelArgs
from generate import FastGen, GenArgs
from tokenizer import ChatFormat


def main(ckpt_dir: str, prompt: str, gen_length: int = 16, chat_format: bool = False) -> list:
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    gen_args = GenArgs(gen_length=gen_length, use_sampling=False)
    assert isinstance(fast.ModelArgs(), fast.ModelArgs)
    g = FastGen.build(ckpt_dir, gen_args, device)
    if chat_format:
        g.tokenizer = ChatFormat(g.tokenizer)
        tokens = g.tokenizer.encode_dialog_prompt([{"role": "user", "content": prompt}], completion=True)
    else:
        tokens = g.tokenizer.encode(prompt, bos=False, eos=False)
    stats, out_tokens = g.generate_all([tokens], use_cuda_graphs="NO_CUDA_GRAPHS" not in os.environ,
                                       use_sampling=gen_args.use_sampling)
    answer = g.tokenizer.decode(out_tokens[0])
    print(f"> {prompt}")
    print(answer)
    print("---------------")
    for phase in stats.phases:
        phase.show()
    print("RESULT " + json.dumps([list(map(int, t)) for t in out_tokens]))
    return out_tokens


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="import model; from generate import FastGen")
    ap.add_argument("ckpt_dir")
    ap.add_argument("--prompt", default="Hello, my name is")
    ap.add_argument("--gen_length", type=int, default=16)
    ap.add_argument("--chat_format", action="store_true")
    a = ap.parse_args()
    main(a.ckpt_dir, a.prompt, a.gen_length, a.chat_format)
