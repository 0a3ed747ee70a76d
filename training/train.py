"""Train a small BitNet b1.58 model (2B-4T architecture) on CPU, seeded.

Data: training/data/train.txt (see corpus.py), tokenized as one stream with the
SentencePiece model of tokenizer.py (the C engine tokenizes whole files the same
way). Each training sequence is a random window of n_ctx tokens whose first
token is replaced by <s>, exactly as `bitnet perplexity` (llama.cpp's tool)
builds its chunks. AdamW, linear warmup then cosine decay, gradient clipping.

Checkpoints (training/runs/NAME/ckpt.pt, written atomically every
--ckpt-every steps, with optimizer and RNG state) make a cut-short run usable
and resumable: rerun the same command with --resume.

Usage: nice python training/train.py [--name small] [--steps 2000] [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import BitNet, Config, n_params  # noqa: E402

BOS = 1


def load_tokens(data: Path, split: str) -> np.ndarray:
    cache = data / f"{split}.ids.npy"
    if cache.exists():
        return np.load(cache)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "tokenizer.model"))
    ids = np.asarray(sp.encode((data / f"{split}.txt").read_text("utf-8")), dtype=np.int32)
    np.save(cache, ids)
    return ids


def lr_at(step: int, a: argparse.Namespace) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def heldout_loss(model: BitNet, ids: np.ndarray, n_ctx: int, max_chunks: int = 8) -> float:
    """Mean NLL of the second half of each chunk (the perplexity tool's scoring)."""
    model.eval()
    tot, cnt = 0.0, 0
    n_chunk = min(max_chunks, len(ids) // n_ctx)
    for c in range(n_chunk):
        x = torch.from_numpy(ids[c * n_ctx:(c + 1) * n_ctx].astype(np.int64)).clone()[None]
        x[0, 0] = BOS
        logits = model(x)[0]
        first = n_ctx // 2
        nll = F.cross_entropy(logits[first:n_ctx - 1], x[0, first + 1:], reduction="sum")
        tot += float(nll)
        cnt += n_ctx - 1 - first
    model.train()
    return tot / max(1, cnt)


def save(path: Path, model: BitNet, opt: torch.optim.Optimizer, step: int, a: argparse.Namespace,
         rng: np.random.Generator, elapsed: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "config": dataclasses.asdict(model.cfg), "args": vars(a),
                "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "train_seconds": elapsed}, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--name", default="small")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--n-head-kv", type=int, default=2)
    ap.add_argument("--n-ff", type=int, default=768)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    data = Path(a.data)
    run = HERE / "runs" / a.name
    run.mkdir(parents=True, exist_ok=True)
    import sentencepiece as spm

    n_vocab = spm.SentencePieceProcessor(model_file=str(data / "tokenizer.model")).get_piece_size()
    train_ids = load_tokens(data, "train")
    held_ids = load_tokens(data, "heldout")
    cfg = Config(n_vocab=n_vocab, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head,
                 n_head_kv=a.n_head_kv, n_ff=a.n_ff, n_ctx=a.n_ctx, rope_theta=a.rope_theta)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    model = BitNet(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(a.seed)
    step, elapsed = 0, 0.0
    ckpt = run / "ckpt.pt"
    log = open(run / "log.txt", "a")
    if a.resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["train_seconds"]
        rng.bit_generator.state = st["np_rng"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed at step {step}", file=log, flush=True)
    else:
        print(json.dumps({"config": dataclasses.asdict(cfg), "args": vars(a), "params": n_params(model),
                          "train_tokens": int(len(train_ids)), "heldout_tokens": int(len(held_ids))}),
              file=log, flush=True)
    n = a.n_ctx
    t_last = time.time()
    model.train()
    while step < a.steps:
        starts = rng.integers(0, len(train_ids) - n - 1, size=a.batch)
        batch = np.stack([train_ids[s:s + n + 1] for s in starts]).astype(np.int64)
        x = torch.from_numpy(batch[:, :-1]).clone()
        y = torch.from_numpy(batch[:, 1:])
        x[:, 0] = BOS
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        step += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % 10 == 0 or step == 1:
            print(f"step {step} loss {loss.item():.4f} gnorm {float(gn):.3f} lr {lr_at(step - 1, a):.2e} "
                  f"elapsed {elapsed:.0f}s", file=log, flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            hl = heldout_loss(model, held_ids, n)
            print(f"eval step {step} heldout_nll {hl:.4f} ppl {math.exp(hl):.2f}", file=log, flush=True)
            t_last = time.time()  # evaluation time is not training time
        if step % a.ckpt_every == 0 or step == a.steps:
            save(ckpt, model, opt, step, a, rng, elapsed)
            t_last = time.time()
    print(f"done: {step} steps, {elapsed:.0f}s training time", file=log, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
