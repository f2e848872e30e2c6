"""Prefect's API server, started once by ``tools/bench_peers.py`` for all of Prefect's runs.

Without a server to talk to, every Prefect process starts a temporary one of
its own (about 25 s on the project's 2-core machine), which would dominate a
benchmark made of fresh processes and is not what a Prefect user pays per
flow. The benchmark starts one server instead, the way Prefect starts its
temporary one (same services, no UI, no analytics, a private ``PREFECT_HOME``
and database), times how long it takes to answer ``/api/health``, points every
Prefect child at it with ``PREFECT_API_URL`` and stops it by its process group
at the end, whatever ends the benchmark.

The server records task runs from the events the clients send, and it does so
after the client is done: a flow of 1,000 tasks leaves it busy for tens of
seconds. :meth:`PrefectServer.settle` waits, after each Prefect run, until it
is idle again, so that its backlog never runs during another measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

__all__ = [
    "CLIENT_ENV",
    "PrefectServer",
    "ServerStartError",
    "free_port",
    "process_group_cpu_s",
    "wait_until_healthy",
    "wait_until_idle",
]

#: What every Prefect process of the benchmark needs so that nothing tries to reach the
#: internet (there is none on the benchmark machine: it would only time out).
CLIENT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "ERROR",
}


#: The command that runs the server in the foreground (the benchmark stops it).
PREFECT_SERVER = [sys.executable, "-m", "prefect", "server", "start"]


class ServerStartError(RuntimeError):
    """Prefect's API server exited or did not answer its health check in time."""


def free_port() -> int:
    """A loopback TCP port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    url: str,
    limit_s: float,
    exited: Callable[[], int | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll ``url`` until it answers 200; return the seconds waited.

    Raises :class:`ServerStartError` naming the URL once ``limit_s`` has
    passed, or as soon as ``exited()`` returns the server's exit code.
    """
    started = clock()
    while True:
        code = exited()
        if code is not None:
            raise ServerStartError(f"the server for {url} exited with code {code} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return clock() - started
        except (OSError, urllib.error.URLError):
            pass  # not listening yet, or not ready
        if clock() - started > limit_s:
            raise ServerStartError(f"{url} did not answer 200 within {limit_s:.0f} s")
        sleep(0.1)


def wait_until_idle(
    cpu_s: Callable[[], float],
    limit_s: float,
    window_s: float = 1.0,
    busy_fraction: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Wait until a process uses under ``busy_fraction`` of a core over ``window_s``.

    ``cpu_s`` returns the CPU seconds the process has used so far. Returns the
    seconds waited, or None if it was still busy after ``limit_s``.
    """
    started = clock()
    before = cpu_s()
    while True:
        sleep(window_s)
        after = cpu_s()
        if after - before < busy_fraction * window_s:
            return clock() - started
        if clock() - started >= limit_s:
            return None
        before = after


def process_group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid`` (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces: the fields after it are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # field 5, pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return total / ticks


@dataclasses.dataclass
class PrefectServer:
    """A running Prefect API server of the benchmark; use it as a context manager.

    ``start_s`` is how long it took from launching it to its first healthy
    answer; ``settle_s`` how long each :meth:`settle` waited for it to go idle
    (None: it was still busy at the limit).
    """

    process: subprocess.Popen[bytes]
    home: Path
    url: str
    start_s: float
    settle_s: list[float | None] = dataclasses.field(default_factory=list)

    @classmethod
    def start(cls, limit_s: float = 300.0, base_env: Mapping[str, str] | None = None) -> PrefectServer:
        """Launch ``prefect server start`` on a free loopback port and wait until it is healthy."""
        home = Path(tempfile.mkdtemp(prefix="bench-prefect-server-"))
        port = free_port()
        env = {
            **(os.environ if base_env is None else base_env),
            **CLIENT_ENV,
            "PREFECT_HOME": str(home),  # its own profile and SQLite database
            # The services of the temporary server a Prefect process starts by itself
            # (task-run recorder, event logger, triggers, actions), not a full server's.
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
        env.pop("PREFECT_API_URL", None)
        log = (home / "server.log").open("wb")
        launched = time.monotonic()
        process = subprocess.Popen(
            [*PREFECT_SERVER, "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--analytics-off"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, never by Ctrl-C alone
        )
        log.close()
        server = cls(process, home, f"http://127.0.0.1:{port}/api", 0.0)
        try:
            wait_until_healthy(f"{server.url}/health", limit_s, process.poll)
        except BaseException as exc:
            tail = (home / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
            server.stop()
            if isinstance(exc, ServerStartError):
                raise ServerStartError(f"Prefect's API server: {exc}: {' | '.join(tail)}"[:500]) from None
            raise
        server.start_s = time.monotonic() - launched
        return server

    def extra_env(self) -> dict[str, str]:
        """The variables to add to a Prefect child's environment so that it uses this server.

        Only those: the caller merges them into a whole environment (``run_child``
        in ``tools/bench_peers.py`` does, through ``tools/_child_env.child_env``).
        """
        return {**CLIENT_ENV, "PREFECT_API_URL": self.url}

    def settle(self, limit_s: float = 300.0) -> float | None:
        """Wait until the server has recorded what the last run sent (it is idle again)."""
        waited = wait_until_idle(lambda: process_group_cpu_s(self.process.pid), limit_s)
        self.settle_s.append(waited)
        return waited

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, SIGKILL after 10 s) and remove its files."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything of its group left behind
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PrefectServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
