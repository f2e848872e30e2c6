"""Real Redis, PostgreSQL, ZooKeeper and etcd servers for the functional tests.

Each server runs from the Debian packages' programs on a free loopback port,
in a temporary directory of its own, started without durability tricks that
slow it down (no Redis persistence, no PostgreSQL fsync, no ZooKeeper forced
sync). ``start()`` returns once the server answers, within a bounded time;
``stop()`` ends it by PID, politely first and with SIGKILL if it hangs.

A program that is not installed skips the tests that need it, with the apt
command that installs it; when ``CI`` is set the same situation fails the
test instead, so a broken CI image cannot pass by skipping everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

__all__ = [
    "EtcdServer",
    "LossyProxy",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "ZooKeeperServer",
    "in_ci",
    "require_binary",
    "require_module",
    "wait_until",
]

T = TypeVar("T")

#: Seconds a server gets to answer after its process started.
READY_TIMEOUT = 30.0
#: Seconds a server gets to exit after the polite signal, before SIGKILL.
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """A server process failed to start or to become ready."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Args:
        predicate: called with no arguments until its result is truthy.
        timeout: seconds to keep trying before giving up.
        interval: seconds to sleep between two calls.
        message: what the assertion error says on timeout (says what was awaited).

    Returns:
        The first truthy value ``predicate`` returned.

    Raises:
        AssertionError: if ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or f"{predicate!r} still false"
            raise AssertionError(f"{what} (waited {timeout:.2f}s, last result: {value!r})")
        time.sleep(interval)


class BackgroundRun(NamedTuple):
    """A run going on in a thread of its own (:func:`start_run`)."""

    thread: threading.Thread
    #: Empty while the run goes on; then what it raised (None: it succeeded).
    outcome: list[BaseException | None]


def start_run(engine: Any) -> BackgroundRun:
    """Start ``engine.run()`` in a daemon thread of its own; its outcome is filled in as it ends."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:
            outcome.append(err)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return BackgroundRun(thread, outcome)


def run_bounded(engine: Any, seconds: float) -> BaseException | None:
    """Run ``engine`` in a thread of its own; return what it raised (None: it succeeded).

    Bounded: an engine that has not returned after ``seconds`` fails the test
    instead of hanging it.
    """
    run = start_run(engine)
    run.thread.join(seconds)
    assert run.outcome, f"the run had not ended after {seconds} s"
    return run.outcome[0]


def in_ci() -> bool:
    """Tell whether the ``CI`` environment variable asks for strictness."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(what: str, install_hint: str) -> None:
    reason = f"{what} not installed: {install_hint}"
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so a missing service is an error, not a skip)")
    pytest.skip(reason)


def require_binary(name: str, apt_package: str) -> str:
    """Return the path of program ``name``, or skip (fail under CI) naming the package.

    Args:
        name: program looked up on ``PATH``, or an absolute path.
        apt_package: the Debian package that provides it.

    Returns:
        The program's absolute path.
    """
    found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
    if not found:
        _missing(name, f"apt-get install {apt_package}")
    assert found is not None
    return found


def require_module(name: str, pip_package: str) -> Any:
    """Import and return module ``name``, or skip (fail under CI) naming the pip package."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python module {name}", f"pip install {pip_package}")
        raise  # pragma: no cover - _missing always raises


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if pytest itself is killed
    # (kill -9, a hard timeout), the kernel ends the server too instead of
    # leaving it orphaned on the machine.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _talk(port: int, request: bytes, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return sock.recv(64)


class _Server:
    """A server process on a loopback port, restartable on the same port."""

    kind = "server"
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    # -- subclass hooks ----------------------------------------------------

    def _prepare(self) -> None:
        """Find the programs and lay out the temp dir; called once, before the first start."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _after_ready(self) -> None:
        """Create what the fixtures expect to exist (databases, root nodes)."""

    # -- public API --------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running server process, None when stopped."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "server.log"

    def start(self) -> None:
        """Start the server (on its previous port after a stop) and wait until it answers.

        Raises:
            ServerError: the process died or did not answer within the ready timeout.
        """
        if self.running:
            return
        if self.tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"flowkit-{self.kind}-"))
            self._prepare()
        # A port picked fresh can be taken by someone else before the server
        # binds it; try another then. A restart must keep its port, though.
        attempts = 1 if self.port is not None else 3
        for attempt in range(attempts):
            if attempts > 1:
                self.port = free_port()
            try:
                self._spawn_and_wait()
            except ServerError:
                if attempt == attempts - 1:
                    raise
            else:
                return

    def stop(self) -> None:
        """Stop the server by PID: the polite signal, then SIGKILL after a bounded wait."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(self.stop_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Stop the server and delete its temp dir (end of the test session)."""
        self.stop()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop the server's process (SIGSTOP) and wait until it is stopped: a server that is
        there but never answers, as a hung host or a dropped network looks to its clients.

        A ZooKeeper frozen past its clients' session timeout expires their sessions
        (and the ephemeral nodes with them) once it runs again."""
        assert self.pid is not None, "the server is not running"
        self._stop_all([self.pid], timeout)

    def _stop_all(self, pids: list[int], timeout: float) -> None:
        """SIGSTOP ``pids`` and wait until none of them can run.

        A process that was exiting may stay a zombie (a stopped parent cannot
        reap it): it answers nobody, so it counts as stopped, as one gone does.
        """
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

        def stopped() -> bool:
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
                            return False
                except OSError:
                    continue  # exited before the signal
            return True

        wait_until(stopped, timeout, interval=0.005, message=f"{self.kind} {pids} stopping")

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT); harmless on one that is not frozen."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------

    def _spawn_and_wait(self) -> None:
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                # Keep Ctrl-C in the terminal for pytest: it stops us, we stop servers.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                **self._popen_kwargs(),
            )
        deadline = began + READY_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServerError(f"{self.kind} exited with {code} on start:\n{self.log_tail()}")
            if self._probe():
                break
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerError(f"{self.kind} not ready after {READY_TIMEOUT:.0f}s:\n{self.log_tail()}")
            time.sleep(0.02)
        self._after_ready()
        self.start_seconds = time.monotonic() - began

    def _probe(self) -> bool:
        try:
            return self._is_ready()
        except OSError:
            return False


class RedisServer(_Server):
    """``redis-server`` on a loopback port, restartable on the same port.

    Args:
        appendonly: keep an append-only file fsynced on every write
            (``appendfsync always``), so that even a SIGKILLed server comes
            back with everything it acknowledged. Without it (the default) a
            restart starts empty.
    """

    kind = "redis"

    def __init__(self, appendonly: bool = False) -> None:
        super().__init__()
        self.appendonly = appendonly

    def _prepare(self) -> None:
        self._binary = require_binary("redis-server", "redis-server")

    def _command(self) -> list[str]:
        assert self.tmpdir is not None
        return [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.tmpdir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        assert self.port is not None
        return _talk(self.port, b"PING\r\n").startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path:
        """The Unix socket the server also listens on (``unix://`` URLs reach it there)."""
        assert self.tmpdir is not None
        return self.tmpdir / "redis.sock"

    @property
    def unix_url(self) -> str:
        """``unix://`` URL of the server's socket, database 0."""
        return f"unix://{self.socket_path}?db=0"

    def flushall(self) -> None:
        """Empty every database of the server."""
        assert self.port is not None
        reply = _talk(self.port, b"*1\r\n$8\r\nFLUSHALL\r\n", timeout=5.0)
        if not reply.startswith(b"+OK"):
            raise ServerError(f"FLUSHALL answered {reply!r}")


class RedisSentinel(_Server):
    """A Redis Sentinel on a loopback port watching one master as ``name`` (quorum 1).

    Boards configured with ``sentinel=name`` ask it for the master's address, as a
    high-availability deployment does (OpenStack Octavia's Redis jobboard option).
    """

    kind = "redis-sentinel"

    def __init__(self, master_port: int, name: str = "mymaster") -> None:
        super().__init__()
        self.master_port = master_port
        self.name = name

    def _prepare(self) -> None:
        self._binary = require_binary("redis-server", "redis-server")

    def _command(self) -> list[str]:
        assert self.tmpdir is not None
        # Sentinel rewrites its configuration file, so it is written anew for each start.
        config = self.tmpdir / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode no",
                    f"dir {self.tmpdir}",
                    f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1",
                    "",
                ]
            )
        )
        return [self._binary, str(config), "--sentinel"]

    def _is_ready(self) -> bool:
        assert self.port is not None
        return _talk(self.port, b"PING\r\n").startswith(b"+PONG")


def _postgres_bindir() -> str | None:
    override = os.environ.get("FLOWKIT_PG_BINDIR")
    if override:
        return override
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return str(versions[-1].parent)
    found = shutil.which("postgres")
    return os.path.dirname(found) if found else None


class PostgresServer(_Server):
    """A throw-away PostgreSQL cluster with trust auth for user ``flowkit``.

    ``initdb`` and ``postgres`` refuse to run as root: as root they run as the
    ``postgres`` system user (``nobody`` if absent), owning the temp dir.
    """

    kind = "postgresql"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client
    # to leave; SIGINT is the "fast" one that disconnects them.
    stop_signal = signal.SIGINT
    user = "flowkit"
    database = "flowkit"

    def _prepare(self) -> None:
        assert self.tmpdir is not None
        bindir = _postgres_bindir()
        if bindir is None or not os.path.exists(os.path.join(bindir, "initdb")):
            _missing("PostgreSQL server (initdb, postgres)", "apt-get install postgresql")
        assert bindir is not None
        self._postgres = os.path.join(bindir, "postgres")
        self._psycopg = require_module("psycopg", "'psycopg[binary]'")
        self._run_as: str | None = None
        if os.geteuid() == 0:
            self._run_as = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
            if self._run_as is None:
                raise ServerError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.tmpdir, entry.pw_uid, entry.pw_gid)
        data = self.tmpdir / "data"
        result = subprocess.run(
            [os.path.join(bindir, "initdb"), "-D", str(data), "-A", "trust", "-U", self.user,
             "-E", "UTF8", "--locale=C", "--no-sync"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=self.tmpdir,
            timeout=120,
            check=False,
            **self._popen_kwargs(),
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed ({result.returncode}):\n{result.stdout!r}\n{result.stderr!r}")

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        entry = pwd.getpwnam(self._run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _command(self) -> list[str]:
        assert self.tmpdir is not None
        return [
            self._postgres,
            "-D", str(self.tmpdir / "data"),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-k", str(self.tmpdir),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """Open a psycopg connection as the ``flowkit`` superuser."""
        kwargs.setdefault("connect_timeout", 5)
        return self._psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=dbname, **kwargs
        )

    def _is_ready(self) -> bool:
        try:
            with self.connect(connect_timeout=1):
                return True
        except self._psycopg.OperationalError:
            return False

    def _after_ready(self) -> None:
        with self.connect(autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, background workers).

        Found by parent, not by process group: PostgreSQL's children each
        start a session of their own.
        """
        assert self.pid is not None, "the server is not running"
        found = [self.pid]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if parent == self.pid:
                found.append(int(entry))
        return found

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop the postmaster *and* its backends (SIGSTOP), and wait until all are stopped.

        Stopping the postmaster alone leaves a connection's backend answering;
        a hung host stops them all. The postmaster is stopped first and its
        children are listed once it is: a stopped postmaster starts none, so
        the list is whole until :meth:`thaw` (listed before it stopped, a
        backend forked meanwhile was missed).
        """
        assert self.pid is not None, "the server is not running"
        self._stop_all([self.pid], timeout)
        self._stop_all(self._processes()[1:], timeout)

    def thaw(self) -> None:
        """Let the postmaster and its backends run again (SIGCONT)."""
        if self.pid is not None:
            for pid in self._processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def url_for(self, dbname: str) -> str:
        """Return the SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever still uses it."""
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class EtcdServer(_Server):
    """A single-member ``etcd`` (Debian's etcd-server) on loopback ports, its data in the temp dir.

    Two ports: clients on :attr:`port`, the (unused) peer listener on another
    free one, so two test sessions on one machine never collide on etcd's
    default 2379/2380.
    """

    kind = "etcd"

    def __init__(self, progress_notify_interval: str | None = None) -> None:
        """``progress_notify_interval`` (``"100ms"``): how often etcd tells quiet watches its revision.

        etcd's default is ten minutes; a test of how a client treats quiet
        watch streams sets it short.
        """
        super().__init__()
        self.progress_notify_interval = progress_notify_interval

    def _prepare(self) -> None:
        assert self.tmpdir is not None
        self._binary = require_binary("etcd", "etcd-server")

    def _command(self) -> list[str]:
        assert self.tmpdir is not None
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{free_port()}"
        return [
            self._binary,
            "--name", "flowkit-test",
            "--data-dir", str(self.tmpdir / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"flowkit-test={peer}",
            "--initial-cluster-state", "new",
            # A fresh single member need not wait out a default election timeout.
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "warn",
        ] + (
            ["--experimental-watch-progress-notify-interval", self.progress_notify_interval]
            if self.progress_notify_interval
            else []
        )  # fmt: skip

    def _is_ready(self) -> bool:
        assert self.port is not None
        # /health answers {"health":"true"} once the member has a leader and serves requests.
        return b'"health":"true"' in _http_get(self.port, "/health")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the client URL."""
        return f"http://{self.host}:{self.port}"


class LossyProxy:
    """A TCP relay to a loopback server that can lose the answer to one request, or go quiet.

    After :meth:`lose_reply_to`, the next request whose bytes hold the marker
    reaches the server, which acts on it, but its client never hears back:
    the relay closes that connection when the answer comes, as a network
    failure after the server acted looks to a client. After :meth:`stall`,
    chosen connections stay open but nothing more crosses them either way,
    as through a network partition or a proxy that stopped forwarding: no
    error, no close, just silence. Everything else is relayed as it is, and
    :attr:`bytes_down` counts what the server sent back (to show how much a
    request made it send). The server is real; only the wire between is faulty.
    """

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._open: list[socket.socket] = []
        # Per relayed connection: the markers its requests held so far, and its stall switch.
        self._links: list[tuple[bytearray, threading.Event]] = []
        self._stall_marker: bytes | None = None
        self.bytes_down = 0
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()

    def lose_reply_to(self, marker: bytes) -> None:
        """Lose the answer to the next request holding ``marker`` (once)."""
        with self._lock:
            self._marker = marker

    def stall(self, marker: bytes = b"", new_too: bool = False) -> int:
        """Stop relaying, without closing, on every open connection a request holding ``marker`` used.

        Bytes arriving on a stalled connection are dropped in both
        directions. With ``new_too``, so are the requests holding ``marker``
        on connections made afterwards (until :meth:`unstall`); else those
        are relayed as usual. The number of open connections stalled.
        """
        stalled = 0
        with self._lock:
            if new_too:
                self._stall_marker = marker
            for sent, stop in self._links:
                if marker in sent:
                    stop.set()
                    stalled += 1
        return stalled

    def unstall(self) -> None:
        """Relay new connections again (those stalled stay silent: they are as good as dead)."""
        with self._lock:
            self._stall_marker = None

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return  # closed
            lose, stalled, sent = threading.Event(), threading.Event(), bytearray()
            with self._lock:
                self._open += [client, upstream]
                self._links.append((sent, stalled))
            threading.Thread(
                target=self._up, args=(client, upstream, lose, stalled, sent), daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(upstream, client, lose, stalled, sent), daemon=True
            ).start()

    def _up(
        self,
        client: socket.socket,
        upstream: socket.socket,
        lose: threading.Event,
        stalled: threading.Event,
        sent: bytearray,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if stalled.is_set():
                    continue
                with self._lock:
                    if self._marker is not None and self._marker in data:
                        self._marker = None
                        lose.set()
                    # Only the request lines and headers matter to stall(): keep the first bytes of each send.
                    sent += data[:4096]
                    if self._stall_marker is not None and self._stall_marker in sent:
                        stalled.set()
                        continue
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _down(
        self,
        upstream: socket.socket,
        client: socket.socket,
        lose: threading.Event,
        stalled: threading.Event,
        sent: bytearray,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if lose.is_set():
                    break  # the server has acted: the client is told nothing
                if stalled.is_set():
                    continue
                with self._lock:
                    self.bytes_down += len(data)
                client.sendall(data)
        if stalled.is_set():
            return  # silent to the end: the client's side stays open until close()
        with self._lock:  # closed: stall() no longer counts it
            self._links = [link for link in self._links if link[0] is not sent]
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _http_get(port: int, path: str, timeout: float = 1.0) -> bytes:
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


#: Where Debian's libzookeeper-java puts the server; its manifest lists the dependencies.
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
#: Sends ZooKeeper's log lines to the server log file (optional; without it they are dropped).
SLF4J_SIMPLE_JAR = "/usr/share/java/slf4j-simple.jar"
#: How ZooKeeper's ``srvr`` answer starts once the server serves sessions (before: "This
#: ZooKeeper instance is not currently serving requests").
SERVING = b"Zookeeper version:"


class ZooKeeperServer(_Server):
    """A standalone ZooKeeper from Debian's jars, tuned to start fast."""

    kind = "zookeeper"
    root = "/flowkit-tests"
    #: The four-letter commands the server runs: ``srvr`` tells when it serves, and ``envi``
    #: gives its version to the ``check_compatible`` check of TaskFlow's (and flowkit's)
    #: ZooKeeper backend and jobboard on connecting.
    FOUR_LETTER_WORDS = ("ruok", "srvr", "stat", "mntr", "envi")

    def __init__(self, four_letter_words: tuple[str, ...] = FOUR_LETTER_WORDS) -> None:
        super().__init__()
        self.four_letter_words = four_letter_words

    def _prepare(self) -> None:
        assert self.tmpdir is not None
        self._java = require_binary("java", "default-jre-headless")
        classpath = os.environ.get("FLOWKIT_ZOOKEEPER_CLASSPATH", "")
        if not classpath:
            if not os.path.exists(ZOOKEEPER_JAR):
                _missing("ZooKeeper", "apt-get install zookeeper")
            classpath = ZOOKEEPER_JAR
            if os.path.exists(SLF4J_SIMPLE_JAR):
                classpath += os.pathsep + SLF4J_SIMPLE_JAR
        self._classpath = classpath
        (self.tmpdir / "data").mkdir()

    def _write_config(self) -> Path:
        assert self.tmpdir is not None
        config = self.tmpdir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=200",
                    f"dataDir={self.tmpdir / 'data'}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "maxClientCnxns=0",
                    # Sessions may be long: a busy 2-core test machine must not expire them.
                    "minSessionTimeout=400",
                    "maxSessionTimeout=60000",
                    "admin.enableServer=false",
                    f"4lw.commands.whitelist={','.join(self.four_letter_words)}",
                    "",
                ]
            )
        )
        return config

    def _command(self) -> list[str]:
        return [
            self._java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.forceSync=no",
            "-cp", self._classpath,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(self._write_config()),
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        """Whether the server serves sessions: ``srvr`` says so, ``ruok`` does not.

        ``ruok`` answers ``imok`` as soon as the process listens, while sessions
        are still refused ("not currently serving requests") for a while, about
        0.6 s here and longer under load. A kazoo client started then retries
        with doubling pauses and can overshoot its start timeout (the session
        fixture then failed every ZooKeeper test of a loaded run). ``srvr``
        reports the version only once the server serves.
        """
        assert self.port is not None
        return _talk(self.port, b"srvr").startswith(SERVING)

    def _after_ready(self) -> None:
        with self.client() as client:
            client.ensure_path(self.root)

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The server's URL without a chroot path."""
        return f"zookeeper://{self.hosts}"

    def url_for(self, path: str) -> str:
        """Return the URL of chroot ``path`` (absolute) on this server."""
        return f"zookeeper://{self.hosts}{path}"

    @contextlib.contextmanager
    def client(self) -> Any:
        """Yield a started kazoo client on the server's root (stopped afterwards)."""
        kazoo_client = require_module("kazoo.client", "kazoo")
        client = kazoo_client.KazooClient(hosts=self.hosts, timeout=10.0)
        client.start(timeout=10.0)
        try:
            yield client
        finally:
            client.stop()
            client.close()

    def delete_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it, if present."""
        from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]  # kazoo has no types

        with self.client() as client, contextlib.suppress(NoNodeError):
            client.delete(path, recursive=True)
