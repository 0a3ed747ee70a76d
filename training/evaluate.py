"""Evaluate the trained model: our engine vs the PyTorch model vs baselines.

* Perplexity, computed exactly as `bitnet perplexity` (llama.cpp's tool) does:
  the text is tokenized whole (with <s> first), cut into chunks of --ctx
  tokens, each chunk evaluated from an empty cache with <s> as its first token,
  and the tokens of the second half of each chunk scored. Computed by
  - the engine's CLI (`build/bitnet perplexity`), when it is built,
  - the engine through bitnet_py._core (Context.eval(..., logits="all")),
  - the PyTorch model (training/model.py, eval mode: the same ternary weights
    and per-token int8 activations as in training, float32 elsewhere), on the
    same tokens and chunks; its embedding (= tied head) is rounded to F16 as
    the GGUF file stores it,
  - a uniform baseline (ppl = n_vocab) and a unigram baseline (token
    frequencies of the training set, add-one smoothed).
* Greedy decoding of a fixed set of prompts by the engine and by PyTorch; for
  each prompt the first position where they differ (if any) and the top-2
  logit margins of both there.

Usage: python training/evaluate.py --gguf python/bitnet_py/data/bitnet-b1.58-small-tq2_0.gguf
           [--ckpt training/runs/small/ckpt.pt] [--text FILE ...] [--ctx 256] [--chunks N]
           [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

PROMPTS = [
    "Once upon a time",
    "In the beginning",
    "The king said unto them,",
    "A computer is",
    "Love is",
    "And it came to pass",
    "The best way to learn",
    "He who laughs last",
]


def engine_tokens(gguf: str | Path, text: str | bytes, bos: bool = True) -> list[int]:
    """The engine's tokenization. Pass the file's bytes (as `bitnet perplexity`
    reads them): text mode would turn "\r\n" into "\n" (wiki.test.raw has
    CRLF line ends) and give other tokens."""
    from bitnet_py import _core

    return _core.Tokenizer.from_gguf(str(gguf)).encode(text, bos=bos)


def chunks_of(ids: list[int], n_ctx: int, max_chunks: int = 0) -> int:
    n = len(ids) // n_ctx
    return min(n, max_chunks) if max_chunks > 0 else n


def _nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    lg = logits.astype(np.float64)
    m = lg.max(-1, keepdims=True)
    lse = np.log(np.exp(lg - m).sum(-1)) + m[:, 0]
    return lse - lg[np.arange(len(targets)), targets]


def perplexity_engine(gguf: str | Path, ids: list[int], n_ctx: int, n_chunk: int, bos: int = 1,
                      threads: int = 2) -> float:
    from bitnet_py import _core

    model = _core.Model(str(gguf))
    ctx = _core.Context(model, n_ctx=n_ctx, n_threads=threads)
    first = n_ctx // 2
    tot, cnt = 0.0, 0
    for c in range(n_chunk):
        src = np.asarray(ids[c * n_ctx:(c + 1) * n_ctx], dtype=np.int64)
        chunk = src.copy()
        chunk[0] = bos
        ctx.kv_truncate(0, 0)
        lg = ctx.eval(chunk.tolist(), logits="all")
        nll = _nll_rows(lg[first:n_ctx - 1], src[first + 1:n_ctx])
        tot += float(nll.sum())
        cnt += len(nll)
    return math.exp(tot / cnt)


def perplexity_cli(gguf: str | Path, text_file: str | Path, n_ctx: int, n_chunk: int,
                   exe: str | Path = REPO / "build/bitnet", threads: int = 2) -> float | None:
    if not Path(exe).exists():
        return None
    cmd = [str(exe), "perplexity", "-m", str(gguf), "-f", str(text_file), "--ctx", str(n_ctx),
           "-t", str(threads)]
    if n_chunk > 0:
        cmd += ["--chunks", str(n_chunk)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", r.stdout)
    if not m:
        raise RuntimeError(f"bitnet perplexity failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-2000:]}")
    return float(m.group(1))


def torch_model(ckpt: str | Path, head_f16: bool = True):
    import torch

    from model import BitNet, Config

    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    m = BitNet(Config(**st["config"]))
    m.load_state_dict(st["model"])
    if head_f16:
        with torch.no_grad():
            m.embed_tokens.weight.copy_(m.embed_tokens.weight.half().float())
    m.eval()
    return m, st


def perplexity_torch(m, ids: list[int], n_ctx: int, n_chunk: int, bos: int = 1) -> float:
    import torch

    first = n_ctx // 2
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for c in range(n_chunk):
            src = np.asarray(ids[c * n_ctx:(c + 1) * n_ctx], dtype=np.int64)
            chunk = torch.from_numpy(src.copy())[None]
            chunk[0, 0] = bos
            lg = m(chunk)[0].numpy()
            nll = _nll_rows(lg[first:n_ctx - 1], src[first + 1:n_ctx])
            tot += float(nll.sum())
            cnt += len(nll)
    return math.exp(tot / cnt)


def unigram_perplexity(train_ids: np.ndarray, ids: list[int], n_vocab: int, n_ctx: int, n_chunk: int) -> float:
    counts = np.bincount(train_ids, minlength=n_vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    first = n_ctx // 2
    tot, cnt = 0.0, 0
    for c in range(n_chunk):
        src = np.asarray(ids[c * n_ctx:(c + 1) * n_ctx])
        t = src[first + 1:n_ctx]
        tot -= float(logp[t].sum())
        cnt += len(t)
    return math.exp(tot / cnt)


def greedy_engine(gguf: str | Path, prompt_ids: list[int], n_new: int, threads: int = 2):
    from bitnet_py import _core

    model = _core.Model(str(gguf))
    ctx = _core.Context(model, n_ctx=len(prompt_ids) + n_new + 1, n_threads=threads)
    out, margins = [], []
    lg = ctx.eval(prompt_ids, logits="last")[-1]
    for _ in range(n_new):
        top = np.argsort(lg)[-2:]
        margins.append(float(lg[top[1]] - lg[top[0]]))
        nxt = int(top[1]) if lg[top[1]] != lg[top[0]] else int(np.argmax(lg))
        out.append(nxt)
        lg = ctx.eval([nxt], logits="last")[-1]
    return out, margins


def greedy_torch(m, prompt_ids: list[int], n_new: int):
    import torch

    toks = list(prompt_ids)
    out, margins = [], []
    with torch.no_grad():
        for _ in range(n_new):
            lg = m(torch.tensor([toks]))[0, -1].numpy()
            top = np.argsort(lg)[-2:]
            margins.append(float(lg[top[1]] - lg[top[0]]))
            nxt = int(np.argmax(lg))
            out.append(nxt)
            toks.append(nxt)
    return out, margins


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", nargs="+", default=[str(REPO / "python/bitnet_py/data/bitnet-b1.58-small-tq2_0.gguf")])
    ap.add_argument("--ckpt", default=str(HERE / "runs/small/ckpt.pt"))
    ap.add_argument("--text", nargs="+", default=[str(HERE / "data/heldout.txt")])
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=0)
    ap.add_argument("--n-new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from bitnet_py import _core

    m, st = torch_model(a.ckpt)
    n_vocab = m.cfg.n_vocab
    train_ids = np.load(HERE / "data/train.ids.npy") if (HERE / "data/train.ids.npy").exists() else None
    res: dict = {"ckpt_step": st["step"], "train_seconds": round(st["train_seconds"], 1), "ctx": a.ctx,
                 "perplexity": {}, "greedy": {}}
    g0 = a.gguf[0]
    for tf in a.text:
        ids = engine_tokens(g0, Path(tf).read_bytes())
        n_chunk = chunks_of(ids, a.ctx, a.chunks)
        r: dict = {"tokens": len(ids), "chunks": n_chunk, "scored": n_chunk * (a.ctx - 1 - a.ctx // 2)}
        t = time.time()
        r["torch"] = perplexity_torch(m, ids, a.ctx, n_chunk)
        r["torch_seconds"] = round(time.time() - t, 1)
        for g in a.gguf:
            tag = Path(g).stem.rsplit("-", 1)[-1]
            t = time.time()
            r[f"engine_core_{tag}"] = perplexity_engine(g, ids, a.ctx, n_chunk, threads=a.threads)
            r[f"engine_core_{tag}_seconds"] = round(time.time() - t, 1)
            if not a.no_cli:
                r[f"engine_cli_{tag}"] = perplexity_cli(g, tf, a.ctx, n_chunk, threads=a.threads)
        r["uniform"] = float(n_vocab)
        if train_ids is not None:
            r["unigram"] = unigram_perplexity(train_ids, ids, n_vocab, a.ctx, n_chunk)
        res["perplexity"][Path(tf).name] = r
        print(json.dumps({Path(tf).name: r}), flush=True)
    if not a.no_greedy:
        tok = _core.Tokenizer.from_gguf(g0)
        for p in a.prompts if hasattr(a, "prompts") else PROMPTS:
            pid = tok.encode(p, bos=True)
            te, me = greedy_torch(m, pid, a.n_new)
            per = {"torch": tok.decode(te)}
            for g in a.gguf:
                tag = Path(g).stem.rsplit("-", 1)[-1]
                ee, mg = greedy_engine(g, pid, a.n_new, threads=a.threads)
                div = next((i for i in range(a.n_new) if ee[i] != te[i]), None)
                per[tag] = {"text": tok.decode(ee), "identical": div is None}
                if div is not None:
                    per[tag].update({"first_diff": div, "engine_margin": mg[div], "torch_margin": me[div]})
            res["greedy"][p] = per
            print(json.dumps({p: per}), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
