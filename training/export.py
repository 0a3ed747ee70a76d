"""Export a training checkpoint to GGUF with the project's own writer.

Builds a ``bitnet_py.synthetic.SyntheticModel`` holding the trained float
master weights (Hugging Face names) and the SentencePiece vocabulary, and
writes it with ``bitnet_py.synthetic.write_gguf`` (arch ``bitnet-b1.58``,
relu² FFN, tied embeddings; BitLinear weights as their absmean ternarization
in I2_S / TQ2_0, the embedding (= the tied head) in F16, norms in F32).

Usage: python training/export.py [--ckpt training/runs/small/ckpt.pt]
           [--out python/bitnet_py/data] [--types i2_s,tq2_0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

MODEL_NAME = "bitnet-b1.58-small"


def spm_vocab(model_file: str | Path) -> tuple[list[str], list[float], list[int]]:
    """tokens / scores / token types (llama.cpp's llama_token_type) of a
    SentencePiece model, as llama.cpp's converter writes them."""
    import sentencepiece as spm

    from bitnet_py.synthetic import TOKEN_BYTE, TOKEN_CONTROL, TOKEN_UNKNOWN

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(TOKEN_UNKNOWN)
        elif sp.is_control(i):
            types.append(TOKEN_CONTROL)
        elif sp.is_byte(i):
            types.append(TOKEN_BYTE)
        else:
            types.append(1)  # normal
    return tokens, scores, types


def load_checkpoint(path: str | Path):
    """-> (model.Config, HF-named float32 numpy tensors, checkpoint dict)."""
    import torch

    from model import Config

    st = torch.load(path, map_location="cpu", weights_only=False)
    cfg = Config(**st["config"])
    tensors = {"model." + k: v.detach().float().numpy().copy() for k, v in st["model"].items()}
    return cfg, tensors, st


def synthetic_model(ckpt: str | Path, tokenizer: str | Path):
    from bitnet_py.synthetic import ModelConfig, SyntheticModel

    cfg, tensors, st = load_checkpoint(ckpt)
    tokens, scores, types = spm_vocab(tokenizer)
    assert len(tokens) == cfg.n_vocab
    mc = ModelConfig(arch="bitnet-b1.58", n_vocab=cfg.n_vocab, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                     n_head=cfg.n_head, n_head_kv=cfg.n_head_kv, n_ff=cfg.n_ff, n_ctx=cfg.n_ctx,
                     rope_theta=cfg.rope_theta, norm_eps=cfg.norm_eps, tied=True)
    seed = int(st["args"]["seed"])
    return SyntheticModel(config=mc, seed=seed, tensors=tensors, tokens=tokens, scores=scores,
                          token_types=types), st


def main(argv: list[str] | None = None) -> int:
    from bitnet_py.synthetic import write_gguf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(HERE / "runs/small/ckpt.pt"))
    ap.add_argument("--tokenizer", default=str(HERE / "data/tokenizer.model"))
    ap.add_argument("--out", default=str(REPO / "python/bitnet_py/data"))
    ap.add_argument("--types", default="i2_s,tq2_0")
    ap.add_argument("--head-type", default="f16")
    args = ap.parse_args(argv)
    model, st = synthetic_model(args.ckpt, args.tokenizer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for t in args.types.split(","):
        p = write_gguf(model, out / f"{MODEL_NAME}-{t}.gguf", weight_type=t, head_type=args.head_type,
                       name=MODEL_NAME)
        written[t] = {"path": str(p), "bytes": p.stat().st_size}
    info = {"step": st["step"], "train_seconds": round(st["train_seconds"], 1), "files": written}
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
