"""``flowkit monitor``: serve the web monitor over a persistence backend.

::

    flowkit monitor --connection sqlite:///flows.db [--host 127.0.0.1] [--port 8765] [--token TOKEN]
                    [--allow-factory NAME]...

Binds to 127.0.0.1 unless told otherwise. With a token (``--token`` or the
``FLOWKIT_MONITOR_TOKEN`` environment variable, which keeps it out of process
listings) every request needs ``Authorization: Bearer TOKEN``; a browser can
open ``http://HOST:PORT/?token=TOKEN`` once. Needs ``pip install 'flowkit[monitor]'``.

Once its socket is bound and listening it prints one line to standard output,
``flowkit monitor on http://ADDRESS:PORT/``, with the address and port it
actually bound: with ``--port 0`` that is how a caller (a test, a script)
learns the free port the system picked, without choosing one itself and
racing another process for it.

SIGTERM or SIGINT stop it gracefully: the pages' live streams are told it
stops (``event: closing``) and ended, other requests get up to 2 s; a second
signal stops it at once. Either way the exit status is 0, as for
``flowkit worker`` and ``flowkit conductor``; so too from its very start, a
stop while it still opens its database (before the announcement) leaving at
once, without serving.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

from flowkit._utils.masking import MASK
from flowkit._utils.text import log_safe
from flowkit.cli._common import CliError, add_connection, factory_name, guarded, port_number, positive

__all__ = ["LISTENING_PREFIX", "register"]

LOG = logging.getLogger(__name__)

TOKEN_ENV = "FLOWKIT_MONITOR_TOKEN"
#: The start of the line printed once the monitor listens; the URL follows it.
LISTENING_PREFIX = "flowkit monitor on "


def register(subparsers: Any) -> None:
    """Add the ``monitor`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "monitor",
        help="serve the web monitor",
        description="Serve a web page and JSON API showing the flows of a backend, live.",
    )
    add_connection(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8765, help="port (default: 8765; 0 picks a free one)"
    )
    parser.add_argument(
        "--token", type=_token, help=f"require this bearer token (default: ${TOKEN_ENV} if set)"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (a proxy's); repeatable. Bound to loopback,"
        " the monitor answers only for localhost, 127.0.0.1 and ::1 (against DNS rebinding)",
    )
    parser.add_argument(
        "--allow-factory",
        action="append",
        type=factory_name,
        default=[],
        metavar="NAME",
        help="import and call this recorded flow factory to draw a flow's graph (a dotted name, or a"
        " module prefix ending in '.'); repeatable, as for 'flowkit conductor'. Default: none; a flow"
        " is drawn from its stored shape, or its atoms and the links its event log recorded",
    )
    parser.add_argument(
        "--poll",
        type=positive(float),
        default=0.5,
        metavar="S",
        help="seconds between reads of a watched flow (default: 0.5)",
    )
    parser.set_defaults(handler=guarded("flowkit monitor", _serve))


class _StoppedStartingUp(BaseException):
    """Raised by a stop signal into start-up, to leave whatever it waits on (a slow database).

    A BaseException, so that no ``except Exception`` on the way (a database
    driver's, the backend's) takes it for a failure and reports it.
    """


def _serve(args: argparse.Namespace) -> int:
    import signal  # only a running monitor needs it (``flowkit --help`` start-up)

    from flowkit.cli._signals import StopSignals

    server: Any = None
    # Whether a stop signal may still raise _StoppedStartingUp: until the server
    # exists, and only once (a second signal while the first one's raise unwinds
    # must not raise again from inside the clean-up).
    leaving = False

    def stop_gracefully(name: str) -> None:
        LOG.warning("%s received: stopping the monitor gracefully", name)
        stop(now=False)

    def stop_now(name: str) -> None:
        # What is still being answered is cut short: "now" means now.
        LOG.warning("%s received again: stopping the monitor now", name)
        stop(now=True)

    def stop(now: bool) -> None:
        nonlocal leaving
        if server is not None:
            server.stop(now=now)
        elif not leaving:
            # Still starting up: nothing is served yet, so nothing to finish first.
            leaving = True
            raise _StoppedStartingUp

    # In place from the very start, before the database is opened, as for
    # ``flowkit worker`` and ``flowkit conductor``: opening a database that is
    # slow to answer (a PostgreSQL whose tables another session holds locked)
    # takes as long as it takes, and a SIGTERM meanwhile killed the monitor
    # (status -15) and a Ctrl-C printed a KeyboardInterrupt traceback.
    on_signal = StopSignals(stop_gracefully, stop_now)
    main = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        try:
            import uvicorn

            from flowkit.monitor import create_app
            from flowkit.monitor.app import Closing
        except ImportError as err:
            raise CliError(f"{err}; the monitor needs: pip install 'flowkit[monitor]'", status=1) from err
        from flowkit.cli._common import open_backend

        token = args.token or os.environ.get(TOKEN_ENV) or None
        closing = Closing()
        # Read-only: the monitor never writes what it shows, nor migrates a schema under
        # the processes writing it; a store not made yet is made, so that it can be
        # started before the first run.
        with (
            open_backend(args.connection, writable=False, create_missing=True) as backend,
            _listen(args.host, args.port) as sock,
        ):
            app = create_app(
                backend,
                token=token,
                poll_interval=args.poll,
                allowed_hosts=_hosts(sock, args),
                factories=args.allow_factory,
                closing=closing,
            )
            if token is None and not _is_loopback(sock):
                print(
                    f"flowkit monitor: warning: serving {_url(sock)} without a token: anyone who can reach"
                    f" it reads every flow's results, failures and tracebacks; set ${TOKEN_ENV} (or --token)",
                    file=sys.stderr,
                    flush=True,
                )
            config = uvicorn.Config(
                app,
                log_level="warning" if not args.verbose else "info",
                # A backstop for a request that is neither a stream nor quick (a slow
                # database read): what a stop waits for at most once the streams ended.
                timeout_graceful_shutdown=GRACE,
            )
            # From here a signal stops the server; before it serves, it serves nothing.
            server = _server_class()(config, closing, on_signal)
            access = logging.getLogger("uvicorn.access")
            masking = _TokenMask()
            access.addFilter(masking)
            try:
                # Printed only now: the socket listens, so whoever reads the URL can connect
                # at once, and a stop signal sent as soon as it is read stops it gracefully.
                print(f"{LISTENING_PREFIX}{_url(sock)}", flush=True)
                server.run(sockets=[sock])
            finally:
                access.removeFilter(masking)
    except _StoppedStartingUp:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


#: Seconds a stop waits for the requests still being answered once the live streams ended.
GRACE = 2


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, whose stop also ends the monitor's live streams, and exits 0.

        uvicorn waits for every open response to end before it stops (and before
        the application hears of it): a page watching a flow that never ends
        kept ``flowkit monitor`` running after SIGTERM, for good. And once
        stopped, uvicorn raises the signal it caught again, so a graceful stop
        read as a kill (status -15, 143 in a shell) to a supervisor; the signals
        are handled by ``flowkit monitor`` instead, from its start, as
        ``flowkit worker`` and ``flowkit conductor`` handle theirs: the first
        stops gracefully, a second at once, and either way the exit status is 0.
        """

        def __init__(self, config: Any, closing: Any, on_signal: Any) -> None:
            super().__init__(config)
            self._closing = closing
            self._on_signal = on_signal

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """Leave the signals to ``flowkit monitor``'s handler, in place since it started.

            uvicorn's own put its handlers in only once serving began, after
            ``flowkit monitor on ...`` was printed: a SIGTERM sent as soon as that
            line was read killed the process (status -15) instead of stopping it.
            A signal that comes before serving begins sets :attr:`should_exit`,
            so uvicorn starts, stops at once and exits 0.
            """
            yield

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """Stop as uvicorn does, then, on a forced stop, end the application's lifespan too.

            A forced stop makes uvicorn skip the application's shutdown: its
            lifespan, still waiting for it, was cancelled as the event loop
            closed, and printed that ``CancelledError`` as an ERROR with its
            traceback, an operator's own "stop now" read as a crash. The
            monitor's shutdown waits for nothing (it marks the streams closed
            and lets the reader go), so it is run here rather than cut short.
            """
            await super().shutdown(sockets=sockets)
            if self.force_exit and self.started:
                await self.lifespan.shutdown()

        def handle_exit(self, sig: int, frame: Any) -> None:
            self._on_signal(sig, frame)

        def stop(self, now: bool) -> None:
            """Stop serving: gracefully, or ``now``, cutting short what is still being answered."""
            if now:
                self.force_exit = True
            self.should_exit = True
            self._closing.close()

    return Server


def _token(text: str) -> str:
    """An argparse ``type=`` for ``--token``: any text but an empty one.

    ``--token "$TOKEN"`` with ``TOKEN`` unset gave an empty token, read as none:
    the monitor served every flow's results and tracebacks to anyone who could
    reach it (without a word on loopback), while its operator meant to require one.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"is empty: give the token requests must carry, or leave --token out (and ${TOKEN_ENV} unset)"
            " to serve without one"
        )
    return text


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen here rather than in uvicorn, so the bound port is known before serving.

    uvicorn binds inside its event loop and does not hand back the port it got
    for port 0; a socket of our own does. The first address ``host`` resolves
    to is bound (a name resolving to several addresses would otherwise get a
    different free port on each).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise CliError(f"cannot resolve --host {host!r}: {err}", status=1) from err
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, OverflowError) as err:  # OverflowError: a port outside 0-65535
        sock.close()
        reason = getattr(err, "strerror", None) or err
        raise CliError(f"cannot listen on {host}:{port}: {reason}", status=1) from err
    return sock


#: A ``token`` query parameter's value, in a logged request path.
_TOKEN_PARAM = re.compile(r"([?&]token=)[^&#\s]*")


class _TokenMask(logging.Filter):
    """Hide the token of ``/?token=...`` in uvicorn's access lines (``-v``), as in any log.

    The path is escaped as well (:func:`~flowkit._utils.text.log_safe`): it is
    whatever a client sent, and uvicorn writes its bytes as they came, so an
    ESC or a C1 control in a request's target rewrote the terminal or the log
    viewer of whoever reads the access lines. A logger's filter runs only for
    a record its level lets through, so a monitor without ``-v`` pays nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                log_safe(_TOKEN_PARAM.sub(lambda m: m.group(1) + MASK, arg)) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _hosts(sock: socket.socket, args: argparse.Namespace) -> list[str] | None:
    """The host names to answer for: the loopback ones (and ``--allow-host``) on a loopback address.

    A browser reaches a loopback address by one of those names only; any other
    name in a request's ``Host`` is a page that rebound its own name to this
    address (DNS rebinding). Bound to another address, the names it is reached
    by are not known here: ``--allow-host`` lists them, else any is answered
    (use a token there).
    """
    from flowkit.monitor.app import LOOPBACK_HOSTS

    if _is_loopback(sock):
        return [*LOOPBACK_HOSTS, sock.getsockname()[0], *args.allow_host]
    return list(args.allow_host) or None


def _is_loopback(sock: socket.socket) -> bool:
    """Whether ``sock`` is bound to a loopback address (reachable from this machine only)."""
    return ipaddress.ip_address(sock.getsockname()[0].partition("%")[0]).is_loopback


def _url(sock: socket.socket) -> str:
    """The ``http://`` URL of a bound socket (an IPv6 address in brackets)."""
    address, port = sock.getsockname()[:2]
    return f"http://[{address}]:{port}/" if ":" in address else f"http://{address}:{port}/"
