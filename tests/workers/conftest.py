"""Fixtures that run Python and Go workers as real processes against a real Redis.

A worker runs in its own process, as in production: the Python one through
``python -m flowkit worker``, the Go one from a binary built once per session.
Each factory returns once the worker's advertisement is live in Redis (found
by the worker's PID), captures its stderr to a file for log assertions, and
stops every worker it started at teardown (SIGTERM, then SIGKILL).

Tests that accept either worker take the ``worker_kind`` parameter (through
``worker`` or ``spawn_worker``), so one suite runs against both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests import services

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "flowkit"
#: The Python worker serves the twins of the Go example tasks from this module.
TASKS_MODULE = "tests.workers.behaviour_tasks"
#: Seconds a worker process gets to advertise itself after it starts.
START_TIMEOUT = 30.0
#: Seconds a worker gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


def requests_key(topic: str) -> str:
    return f"{NAMESPACE}:requests:{topic}"


def workers_key(topic: str) -> str:
    return f"{NAMESPACE}:workers:{topic}"


def worker_key(worker_id: str) -> str:
    return f"{NAMESPACE}:worker:{worker_id}"


def fresh_topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def live_adverts(client: Any, topic: str) -> dict[str, dict[str, Any]]:
    """Return ``{worker id: notify message}`` of the workers of ``topic`` advertised right now."""
    now_ms = time.time() * 1000
    adverts = {}
    for member, score in client.zrange(workers_key(topic), 0, -1, withscores=True):
        worker_id = member.decode() if isinstance(member, bytes) else member
        if score < now_ms:
            continue
        body = client.hget(worker_key(worker_id), "body")
        if body is None:
            continue
        adverts[worker_id] = json.loads(body)
    return adverts


class WorkerProcess:
    """A worker process we started: its PID, worker id, log and a way to stop it."""

    def __init__(
        self, kind: str, topic: str, proc: subprocess.Popen[bytes], log_path: Path, client: Any
    ) -> None:
        self.kind = kind
        self.topic = topic
        self.proc = proc
        self.log_path = log_path
        self.worker_id: str | None = None
        self._client = client

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the worker wrote to stderr (and stdout) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def advert(self) -> dict[str, Any] | None:
        """This worker's live advertisement, found by PID, or None."""
        for worker_id, message in live_adverts(self._client, self.topic).items():
            if message.get("pid") == self.pid:
                self.worker_id = worker_id
                return message
        return None

    def wait_advertised(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until the worker's advertisement is live and return it."""

        def advertised() -> dict[str, Any] | None:
            if not self.alive:
                raise AssertionError(
                    f"{self.kind} worker exited with {self.proc.returncode} before advertising:\n{self.log()}"
                )
            return self.advert()

        return services.wait_until(
            advertised, timeout, interval=0.05, message=f"{self.kind} worker (pid {self.pid}) advertising"
        )

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the worker (a crash: no cleanup, no goodbye) and reap it."""
        self.signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> int:
        """SIGTERM the worker, SIGKILL it after a bounded wait; return its exit code."""
        if self.alive:
            self.signal(signal.SIGCONT)  # a test may have paused it
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __repr__(self) -> str:
        return f"<{self.kind} worker pid={self.pid} id={self.worker_id} topic={self.topic}>"


class WorkerFactory(Protocol):
    def __call__(
        self,
        topic: str,
        *,
        heartbeat: float | None = None,
        visibility_timeout: float | None = None,
        concurrency: int | None = None,
        grace: float | None = None,
        secret: str | None = None,
        wait: bool = True,
        url: str | None = None,
        max_message_bytes: int | None = None,
    ) -> WorkerProcess: ...


def _worker_args(
    heartbeat: float | None,
    visibility_timeout: float | None,
    concurrency: int | None,
    grace: float | None,
    max_message_bytes: int | None = None,
) -> list[str]:
    # Both workers take times as plain seconds (the Go one also takes Go durations).
    args: list[str] = []
    if heartbeat is not None:
        args += ["--heartbeat", str(heartbeat)]
    if visibility_timeout is not None:
        args += ["--visibility-timeout", str(visibility_timeout)]
    if concurrency is not None:
        # Both workers take --concurrency (the Python CLI also calls it --threads).
        args += ["--concurrency", str(concurrency)]
    if grace is not None:
        args += ["--grace", str(grace)]
    if max_message_bytes is not None:
        args += ["--max-message-bytes", str(max_message_bytes)]
    return args


@contextlib.contextmanager
def _worker_factory(kind: str, url: str, command: Callable[[str, str], list[str]]) -> Iterator[WorkerFactory]:
    redis = services.require_module("redis", "redis")
    client = redis.Redis.from_url(url)
    default_url = url
    started: list[WorkerProcess] = []
    logdir = Path(tempfile.mkdtemp(prefix=f"flowkit-{kind}-workers-"))

    def start(
        topic: str,
        *,
        heartbeat: float | None = None,
        visibility_timeout: float | None = None,
        concurrency: int | None = None,
        grace: float | None = None,
        secret: str | None = None,
        wait: bool = True,
        url: str | None = None,
        max_message_bytes: int | None = None,
    ) -> WorkerProcess:
        env = dict(os.environ)
        env.pop("FLOWKIT_WORKER_SECRET", None)
        if secret is not None:
            env["FLOWKIT_WORKER_SECRET"] = secret
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        argv = command(topic, url or default_url) + _worker_args(
            heartbeat, visibility_timeout, concurrency, grace, max_message_bytes
        )
        log_path = logdir / f"{len(started)}-{topic}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
        worker = WorkerProcess(kind, topic, proc, log_path, client)
        started.append(worker)
        if wait:
            worker.wait_advertised()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            code = worker.stop()
            # Shown by pytest only when the test failed: the worker's side of the story.
            print(f"--- {worker!r} exited with {code}; its log ends with:\n{worker.log()[-4000:]}")
        client.close()
        shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture
def python_worker(redis_flushed_url: str) -> Iterator[WorkerFactory]:
    """Start Python workers: ``python_worker(topic, heartbeat=..., ...)`` -> :class:`WorkerProcess`."""

    def command(topic: str, url: str) -> list[str]:
        return [
            sys.executable, "-m", "flowkit", "worker",
            "--redis", url, "--topic", topic, "--tasks", TASKS_MODULE,
        ]  # fmt: skip

    with _worker_factory("python", redis_flushed_url, command) as factory:
        yield factory


@pytest.fixture
def go_worker(redis_flushed_url: str, go_worker_binary: str) -> Iterator[WorkerFactory]:
    """Start Go workers: ``go_worker(topic, heartbeat=..., ...)`` -> :class:`WorkerProcess`."""

    def command(topic: str, url: str) -> list[str]:
        return [go_worker_binary, "--redis", url, "--topic", topic]

    with _worker_factory("go", redis_flushed_url, command) as factory:
        yield factory


@pytest.fixture(params=["python", "go"])
def worker_kind(request: pytest.FixtureRequest) -> str:
    """Which worker the test runs against."""
    return str(request.param)


@pytest.fixture
def spawn_worker(worker_kind: str, request: pytest.FixtureRequest) -> WorkerFactory:
    """The worker factory of this test's worker kind."""
    fixture = "python_worker" if worker_kind == "python" else "go_worker"
    factory: WorkerFactory = request.getfixturevalue(fixture)
    return factory


@pytest.fixture
def worker(spawn_worker: WorkerFactory) -> WorkerProcess:
    """A started worker of this test's kind, alone on a fresh topic."""
    return spawn_worker(fresh_topic())


@pytest.fixture
def redis_client(redis_flushed_url: str) -> Iterator[Any]:
    """A redis-py client on the emptied session server."""
    redis = services.require_module("redis", "redis")
    client = redis.Redis.from_url(redis_flushed_url)
    try:
        yield client
    finally:
        client.close()


# --- Helpers the worker tests share ------------------------------------------


def load_engine(
    flow: Any, url: str, topic: str, *, store: dict[str, Any] | None = None, **options: Any
) -> Any:
    """Load ``flow`` on the worker-based engine for ``topic``, with short test timeouts."""
    from flowkit import engines

    options.setdefault("transition_timeout", 10.0)
    return engines.load(flow, store=store, engine="worker-based", url=url, topics=[topic], **options)


class BackgroundRun:
    """``engine.run()`` in a daemon thread, so a test can act while the flow runs."""

    def __init__(self, engine: Any) -> None:
        import threading

        self.engine = engine
        self.error: BaseException | None = None
        self.elapsed: float | None = None
        self._thread = threading.Thread(target=self._run, name="engine-run", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        began = time.monotonic()
        try:
            self.engine.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.error = error
        finally:
            self.elapsed = time.monotonic() - began

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> BaseException | None:
        """Wait for the run to end (failing the test if it does not) and return its error."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"engine.run() still running after {timeout:.1f}s"
        return self.error


class WaitScans:
    """Counts the scans of the adverts the engines of a test make, and those of their ``worker_wait``.

    Patches :class:`Directory` for the test (``monkeypatch``): each scan
    releases :attr:`made` (a test waits on it for the engine's first look), and
    each ``worker_wait`` notes its directory as it begins (:attr:`directories`)
    and, as it ends, how many scans it made (:attr:`during_wait`).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import threading

        from flowkit.engines.worker_based._directory import Directory

        self.made = threading.Semaphore(0)
        self.directories: list[Directory] = []
        self.during_wait: list[int] = []
        scan, wait_for = Directory.scan, Directory.wait_for

        def counted_scan(directory: Directory, *args: Any, **kwargs: Any) -> None:
            scan(directory, *args, **kwargs)
            self.made.release()

        def noted_wait(directory: Directory, *args: Any, **kwargs: Any) -> None:
            self.directories.append(directory)
            try:
                wait_for(directory, *args, **kwargs)
            finally:
                self.during_wait.append(directory.scans)  # it is the directory's first use

        monkeypatch.setattr(Directory, "scan", counted_scan)
        monkeypatch.setattr(Directory, "wait_for", noted_wait)

    def wait_scan(self, timeout: float = 10.0) -> None:
        """Wait for the next scan not waited for yet (the first: the look a ``worker_wait`` begins with)."""
        assert self.made.acquire(timeout=timeout), f"no look for workers within {timeout:g} s"


class Events:
    """Thread-safe record of an engine's atom notifications (states and progress)."""

    def __init__(self, engine: Any) -> None:
        import threading

        self._lock = threading.Lock()
        self.states: list[tuple[str, str]] = []
        self.progress: list[tuple[str, float]] = []
        self._hooks: list[tuple[str, str, Callable[[], None]]] = []
        notifier = engine.atom_notifier
        notifier.register(notifier.ANY, self._on_state)
        notifier.register("update_progress", self._on_progress)

    def on(self, atom: str, state: str, action: Callable[[], None]) -> None:
        """Run ``action`` in the engine's thread when ``atom`` enters ``state``."""
        with self._lock:
            self._hooks.append((atom, state, action))

    def _on_state(self, state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name") or details.get("retry_name")
        with self._lock:
            self.states.append((name, state))
            hooks = [h for h in self._hooks if h[0] == name and h[1] == state]
        for _, _, action in hooks:
            action()

    def _on_progress(self, _event: str, details: dict[str, Any]) -> None:
        with self._lock:
            self.progress.append((details["task_name"], details["progress"]))

    def saw(self, atom: str, state: str) -> bool:
        with self._lock:
            return (atom, state) in self.states

    def progress_of(self, atom: str) -> list[float]:
        with self._lock:
            return [p for name, p in self.progress if name == atom]


def requests_added(client: Any, topic: str) -> int:
    """How many requests were ever added to ``topic``'s stream (XDEL does not lower it)."""
    try:
        info = client.xinfo_stream(requests_key(topic))
    except Exception:  # noqa: BLE001 - redis.ResponseError: no such key yet
        return 0
    return int(info["entries-added"])


def pending_requests(client: Any, topic: str) -> int:
    """How many of ``topic``'s requests a worker holds un-acknowledged."""
    try:
        return int(client.xpending(requests_key(topic), "workers")["pending"])
    except Exception:  # noqa: BLE001 - no stream or group yet
        return 0


def pending_by_worker(client: Any, topic: str) -> dict[str, int]:
    """``{worker id: number of requests it holds}`` for ``topic``."""
    try:
        summary = client.xpending(requests_key(topic), "workers")
    except Exception:  # noqa: BLE001 - no stream or group yet
        return {}
    result = {}
    for consumer in summary.get("consumers") or []:
        name = consumer["name"]
        result[name.decode() if isinstance(name, bytes) else name] = int(consumer["pending"])
    return result


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until process ``pid`` is stopped (state T after SIGSTOP)."""

    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")

    services.wait_until(stopped, timeout, interval=0.005, message=f"process {pid} stopping")
