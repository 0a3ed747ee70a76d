"""Command line: ``python -m bitnet_py info MODEL`` and ``python -m bitnet_py version``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from . import BitNetError, _core


def _info(path: str, as_json: bool) -> int:
    with _core.Model(path) as model:
        info: dict[str, Any] = {
            "path": model.path,
            "config": model.config,
            "n_params": model.n_params,
            "weight_bytes": model.weight_bytes,
            "has_tokenizer": model.has_tokenizer,
        }
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model:         {info['path']}")
    for key, value in info["config"].items():
        print(f"  {key:<12} {value}")
    print(f"n_params:      {info['n_params']:,}")
    print(f"weight_bytes:  {info['weight_bytes']:,}")
    print(f"has_tokenizer: {info['has_tokenizer']}")
    return 0


def _version() -> int:
    print(f"bitnet_py {_core.__version__} (libbitnet {_core.version()})")
    print(f"kernels:  {_core.kernel_name()}")
    print(f"cpu:      {' '.join(_core.cpu_features())}")
    print(f"build:    {_core.build_info()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitnet_py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="print a model's configuration")
    p_info.add_argument("model", help="path to a GGUF model")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("version", help="print versions, kernels and CPU features")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info(args.model, args.json)
        return _version()
    except BitNetError as e:
        msg = f"error: {e}"
        if e.hint:
            msg += f"\nhint: {e.hint}"
        print(msg, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
