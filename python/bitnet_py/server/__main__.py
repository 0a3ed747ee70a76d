"""``python -m bitnet_py.server --model M [--host --port --max-concurrent
--queue-size --api-key --drain-timeout]``: see :mod:`bitnet_py.server`.

The first SIGTERM or SIGINT starts a graceful shutdown: new generation
requests get 503 (``shutting_down``) and ``/health`` 503 while the admitted
requests finish (at most ``--drain-timeout`` seconds); then uvicorn closes
the sockets and the process exits with status 0. A second signal skips the
wait: uvicorn's own shutdown, which cancels requests still running after 5 s
and ends the process by that signal."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from types import FrameType
from typing import Any, Optional, Sequence

from . import ServerSettings, create_app

logger = logging.getLogger("bitnet_py.server")


def _draining_server(config: Any, app: Any, drain_timeout: float) -> Any:
    """A uvicorn Server whose first exit signal drains ``app`` (see the module
    docstring) instead of stopping at once."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def __init__(self) -> None:
            super().__init__(config)
            self.drain_deadline: Optional[float] = None

        def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
            if self.drain_deadline is None and not self.should_exit:
                self.drain_deadline = time.monotonic() + drain_timeout
                logger.info("signal %d: draining (up to %.0f s); send it again to exit now", sig, drain_timeout)
                app.state.begin_drain()
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_deadline is not None and not self.should_exit:
                if app.state.bitnet["admitted"] == 0:
                    self.should_exit = True
                elif time.monotonic() >= self.drain_deadline:
                    logger.warning("drain timeout: %d request(s) still admitted", app.state.bitnet["admitted"])
                    self.should_exit = True
            return bool(await super().on_tick(counter))

    return DrainingServer()


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
    ap.add_argument("--drain-timeout", type=float, default=30.0,
                    help="on SIGTERM/SIGINT, seconds to let admitted requests finish (default: 30)")
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args(argv)
    if a.max_concurrent < 1 or a.queue_size < 0:
        ap.error("--max-concurrent must be >= 1 and --queue-size >= 0")
    if a.drain_timeout < 0:
        ap.error("--drain-timeout must be >= 0")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    settings = ServerSettings(model=a.model, model_name=a.model_name, tokenizer=a.tokenizer,
                              max_concurrent=a.max_concurrent, queue_size=a.queue_size, api_key=a.api_key or None,
                              max_tokens_limit=a.max_tokens_limit)
    app = create_app(settings)
    config = uvicorn.Config(app, host=a.host, port=a.port, log_level=a.log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    _draining_server(config, app, a.drain_timeout).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
