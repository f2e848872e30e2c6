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
import socket
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
        # Bound here, before the address is printed, so that the line names the
        # port actually taken (``--port 0`` picks one) and a port in use is one
        # line naming it.
        sock = _listen(args.host, args.port)
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"flowkit monitor on http://{host}:{port}/", flush=True)
        config = uvicorn.Config(app, log_level="warning" if not args.verbose else "info")
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the host is an IPv6 address).

    Raises:
        CliError: the address cannot be bound (in use, not this machine's, bad port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as err:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {err}", status=1) from err
    return sock
