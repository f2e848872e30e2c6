"""``flowkit monitor``: serve the web monitor over a persistence backend.

::

    flowkit monitor --connection sqlite:///flows.db [--host 127.0.0.1] [--port 8765] [--token TOKEN]

Binds to 127.0.0.1 unless told otherwise. With a token (``--token`` or the
``FLOWKIT_MONITOR_TOKEN`` environment variable, which keeps it out of process
listings) every request needs ``Authorization: Bearer TOKEN``; a browser can
open ``http://HOST:PORT/?token=TOKEN`` once. Needs ``pip install 'flowkit[monitor]'``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flowkit.cli._common import CliError, add_connection, guarded

__all__ = ["register"]

TOKEN_ENV = "FLOWKIT_MONITOR_TOKEN"


def register(subparsers: Any) -> None:
    """Add the ``monitor`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "monitor",
        help="serve the web monitor",
        description="Serve a web page and JSON API showing the flows of a backend, live.",
    )
    add_connection(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    parser.add_argument("--token", help=f"require this bearer token (default: ${TOKEN_ENV} if set)")
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between reads of a watched flow (default 0.5)"
    )
    parser.set_defaults(handler=guarded("flowkit monitor", _serve))


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from flowkit.monitor import create_app
    except ImportError as err:
        raise CliError(f"{err}; the monitor needs: pip install 'flowkit[monitor]'", status=1) from err
    from flowkit.cli._common import open_backend

    token = args.token or os.environ.get(TOKEN_ENV) or None
    with open_backend(args.connection) as backend:
        app = create_app(backend, token=token, poll_interval=args.poll)
        print(f"flowkit monitor on http://{args.host}:{args.port}/", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if not args.verbose else "info")
    return 0
