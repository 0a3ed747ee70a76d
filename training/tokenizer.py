"""Train the SentencePiece BPE vocabulary on training/data/train.txt.

Settings chosen so that the C tokenizer (llama.cpp-style SPM: "▁" for spaces,
a leading "▁", BPE merges by score, byte fallback) reproduces
sentencepiece's own encoding: identity normalization (no NFKC), whitespace
kept as is, byte fallback for everything outside the vocabulary (newlines
included).

Usage: python training/tokenizer.py [--data training/data] [--vocab 4096]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    import sentencepiece as spm

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args(argv)
    data = Path(args.data)
    spm.SentencePieceTrainer.train(
        input=str(data / "train.txt"),
        model_prefix=str(data / "tokenizer"),
        model_type="bpe",
        vocab_size=args.vocab,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=2,
        train_extremely_large_corpus=False,
        minloglevel=1,
    )
    print("wrote", data / "tokenizer.model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
