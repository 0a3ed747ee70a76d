"""``python -m bitnet_py.server --model M [--host --port --max-concurrent
--queue-size --api-key]``: see :mod:`bitnet_py.server`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from . import ServerSettings, create_app


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitnet_py.server",
                                 description="OpenAI-compatible HTTP server for a BitNet model")
    ap.add_argument("--model", required=True, help="GGUF model file or checkpoint directory")
    ap.add_argument("--model-name", default=None, help="the id clients send as 'model' (default: file name)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model (default: next to the model)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-concurrent", type=int, default=4, help="generations running at once")
    ap.add_argument("--queue-size", type=int, default=16, help="requests waiting beyond that (then 429)")
    ap.add_argument("--api-key", default=os.environ.get("BITNET_API_KEY"),
                    help="require 'Authorization: Bearer KEY' (default: $BITNET_API_KEY; none: open)")
    ap.add_argument("--max-tokens-limit", type=int, default=2048)
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args(argv)
    if a.max_concurrent < 1 or a.queue_size < 0:
        ap.error("--max-concurrent must be >= 1 and --queue-size >= 0")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    settings = ServerSettings(model=a.model, model_name=a.model_name, tokenizer=a.tokenizer,
                              max_concurrent=a.max_concurrent, queue_size=a.queue_size, api_key=a.api_key or None,
                              max_tokens_limit=a.max_tokens_limit)
    uvicorn.run(create_app(settings), host=a.host, port=a.port, log_level=a.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
