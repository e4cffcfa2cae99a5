"""dupq-serve: the models over HTTP: /score, /find, /questions, /health, /metrics, the OpenAPI
page at /docs, and a page to try them at /.

Binds to 127.0.0.1 unless told otherwise; it has no authentication of its own beyond an
optional shared key (`--api-key` or DUPQ_API_KEY: POST requests must send it as X-API-Key).
SIGTERM stops taking connections, lets requests in flight finish, and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from pipeline.bundle import project_bundle
from pipeline.errors import run_cli
from pipeline.params import project_setting

GRACE_SECONDS = 60  # at SIGTERM, how long requests in flight may take to finish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-serve", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        help="the bundle that scores (a directory, or a model name of the project); default: "
        "the one the index was built with",
    )
    parser.add_argument(
        "--index",
        help="question index directory, for /find and /questions (the project's is "
        f"{project_setting('paths', 'index', 'models/index')})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s (this machine)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DUPQ_API_KEY"),
        help="a key every POST request must send as X-API-Key (default: $DUPQ_API_KEY; none)",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="worker threads (default: the cores)"
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log a line per request (off by default, as each line costs time on the event "
        "loop; /metrics counts requests either way)",
    )
    args = parser.parse_args(argv)
    if args.model is None and args.index is None:
        parser.error("give --model, --index, or both")
    if args.threads < 1 or not 0 <= args.port <= 65535:
        parser.error("--threads must be 1 or more and --port in 0-65535")
    return run_cli("dupq-serve", lambda: _serve(args), "nothing served")


def _serve(args) -> int:
    import uvicorn

    from pipeline.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    model = project_bundle(args.model) if args.model else None
    app = create_app(model, args.index, args.api_key, args.threads)
    # uvicorn drains and stops at SIGTERM, then raises it again here: a clean stop, exit 0
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=args.access_log,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
