#!/usr/bin/env python3
"""Write the small pre-made .pt fixture of tests/data/pt_fixture/ (committed,
so the .pt reader is tested where torch is not installed).

A tiny synthetic BitNet model (bitnet_py.synthetic, seed and shape in
spec.json) in the original implementation's checkpoint layout, written with
torch.save exactly as tests/python/ckpt_writers.py does it:
model_state_int2.pt, model_state_fp16.pt and params.json. Needs torch.

    python scripts/make_pt_fixture.py [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import ckpt_writers as W  # noqa: E402
from bitnet_py import synthetic as S  # noqa: E402

SPEC = dict(arch="bitnet-b1.58", n_vocab=128, n_embd=128, n_layer=1, n_head=2, n_head_kv=1,
            n_ff=256, n_ctx=64, seed=11)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "tests" / "data" / "pt_fixture"
    m = S.make_model(**SPEC)
    W.write_original(m, out)
    (out / "spec.json").write_text(json.dumps(SPEC, indent=2) + "\n")
    for p in sorted(out.iterdir()):
        print(f"{p} {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
