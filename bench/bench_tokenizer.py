#!/usr/bin/env python3
"""Encode throughput of bitnet_py's tokenizers next to tiktoken, HF tokenizers
and sentencepiece, on one thread, in the same run.

    python bench/bench_tokenizer.py [--repeat 5] [--files wiki botchan]

Llama-3 (BPE): bitnet_py (tokenizer.model), tiktoken (same ranks, the BitNet
split pattern, encode_ordinary), HF tokenizers (tokenizer.json). LLaMA
SentencePiece: bitnet_py (tokenizer.model) and sentencepiece. Each encodes
the whole file as one string (special tokens as plain text); the time is the
best of --repeat runs, taken round-robin over the libraries; MB/s counts the file's UTF-8 bytes (10^6 bytes). All
ids are checked against the reference library's before timing. The thread
count of every library is pinned to 1 (RAYON_NUM_THREADS, TOKENIZERS_
PARALLELISM; tiktoken's encode and sentencepiece's encode are single-threaded
for one string).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BITNET_TESTDATA") or ROOT / ".." / "shared" / "testdata").resolve()
TOK = DATA / "tokenizers"
FILES = {"wiki": DATA / "eval" / "wiki.test.raw", "botchan": DATA / "eval" / "botchan.txt"}
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def best_time(fn, text, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(text)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--files", nargs="*", default=list(FILES))
    args = ap.parse_args()

    import bitnet_py._core as core

    encoders = {}  # name -> (family, fn)
    ours3 = core.Tokenizer.load_tiktoken(TOK / "llama3" / "tokenizer.model")
    encoders["bitnet_py llama3"] = ("llama3", lambda s: ours3.encode(s, disallowed_special=()))
    try:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        ranks = load_tiktoken_bpe(str(TOK / "llama3" / "tokenizer.model"))
        enc = tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                special_tokens={"<|begin_of_text|>": len(ranks)})
        encoders["tiktoken " + tiktoken.__version__] = ("llama3", enc.encode_ordinary)
    except ImportError:
        print("tiktoken not installed: skipped", file=sys.stderr)
    tmpdir = tempfile.TemporaryDirectory()
    try:
        import tokenizers

        path = Path(tmpdir.name) / "tokenizer.json"
        path.write_bytes(gzip.decompress((TOK / "llama3" / "tokenizer.json.gz").read_bytes()))
        hf = tokenizers.Tokenizer.from_file(str(path))
        encoders["HF tokenizers " + tokenizers.__version__] = (
            "llama3", lambda s: hf.encode(s, add_special_tokens=False).ids)
    except ImportError:
        print("tokenizers not installed: skipped", file=sys.stderr)
    ours_spm = core.Tokenizer.load_spm(TOK / "llama-spm" / "tokenizer.model")
    encoders["bitnet_py llama-spm"] = ("spm", lambda s: ours_spm.encode(s, disallowed_special=()))
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(TOK / "llama-spm" / "tokenizer.model"))
        encoders["sentencepiece " + spm.__version__] = ("spm", sp.encode)
    except ImportError:
        print("sentencepiece not installed: skipped", file=sys.stderr)

    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"one thread, best of {args.repeat}")
    rows = []
    for fname in args.files:
        text = FILES[fname].read_bytes().decode("utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        ref = {}
        for name, (family, fn) in encoders.items():  # check ids first
            ids = fn(text)
            if family in ref and ids != ref[family][1]:
                print(f"MISMATCH: {name} on {fname} differs from {ref[family][0]}", file=sys.stderr)
                return 1
            ref.setdefault(family, (name, ids))
        # round-robin repeats, so that load from other processes hits all alike
        best = {name: float("inf") for name in encoders}
        for _ in range(args.repeat):
            for name, (family, fn) in encoders.items():
                t, _ = best_time(fn, text, 1)
                best[name] = min(best[name], t)
        for name, (family, _) in encoders.items():
            rows.append((fname, family, name, mb / best[name], len(ref[family][1])))
    base = {}
    for fname, family, name, mbs, _ in rows:
        if name.startswith(("tiktoken", "sentencepiece")):
            base[(fname, family)] = mbs
    print(f"{'file':8} {'tokenizer':28} {'MB/s':>8} {'ids':>9} {'vs reference':>13}")
    for fname, family, name, mbs, n in rows:
        b = base.get((fname, family))
        ratio = f"{mbs / b:.2f}x" if b else "-"
        print(f"{fname:8} {name:28} {mbs:8.2f} {n:9d} {ratio:>13}")
    print("(reference: tiktoken for llama3, sentencepiece for llama-spm; ids identical)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
