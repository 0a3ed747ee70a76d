#!/usr/bin/env python3
"""Write the benchmark model: a seeded synthetic BitNet b1.58 with the exact
shapes of microsoft/bitnet-b1.58-2B-4T (hidden 2560, 30 layers, 20 heads,
5 KV heads, FFN 6912, vocab 128256, tied F16 embedding), in I2_S and TQ2_0.

    python scripts/make_2b4t_model.py --out models/ [--type i2_s,tq2_0] [--seed 0] [--layers N]

Same as `python -m bitnet_py.synthetic --shape 2b4t ...`; about 1.5 minutes and
1.2 GB per format on 2 cores (see docs/synthetic-models.md).
"""

from __future__ import annotations

import sys

from bitnet_py.synthetic import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--type" not in argv:
        argv += ["--type", "i2_s,tq2_0"]
    sys.exit(main(["--shape", "2b4t", *argv]))
