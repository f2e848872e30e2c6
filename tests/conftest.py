"""Helpers shared by every test directory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests import services

T = TypeVar("T")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which flowkit is under test, so a stale install is easy to spot."""
    try:
        import flowkit
    except ImportError as exc:
        return [f"flowkit: not importable ({exc})"]
    return [f"flowkit {flowkit.__version__} from {flowkit.__path__[0]} on Python {sys.version.split()[0]}"]


#: Default bound of :func:`wait_until`. Polling returns as soon as the condition holds, so
#: the bound costs only a failing test its time; it is set for a loaded CI machine, where a
#: thread, a server or a child process can take seconds to get there.
WAIT_TIMEOUT = 30.0


def wait_until(predicate: Callable[[], T], timeout: float = WAIT_TIMEOUT, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it is truthy (see :func:`tests.services.wait_until`); 30 s by default."""
    return services.wait_until(predicate, timeout, interval)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., object]:
    """Give tests the :func:`wait_until` poller without importing conftest."""
    return wait_until


# --- Real servers (tests/services.py) --------------------------------------
#
# Each server starts the first time a test asks for it and stops when the
# session ends; tests that never ask cost nothing. A missing program skips
# the test (fails it under CI) with the apt-get command to run.


@pytest.fixture(scope="session")
def redis_server() -> Iterator[services.RedisServer]:
    """A Redis server without persistence; ``stop()`` then ``start()`` restarts it on its port.

    A test that stops it must start it again (``try``/``finally``): the server
    is shared by the whole session.
    """
    server = services.RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: services.RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's Redis server."""
    return redis_server.url


@pytest.fixture
def redis_flushed_url(redis_server: services.RedisServer) -> str:
    """The session's Redis URL, running (restarted if a test left it stopped) and emptied."""
    redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[services.RedisServer]:
    """A Redis server of this test alone, which it may freeze (``freeze()``) without harming others."""
    server = services.RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.thaw()
        server.close()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[services.PostgresServer]:
    """A throw-away PostgreSQL cluster, trust auth for superuser ``flowkit``."""
    server = services.PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: services.PostgresServer) -> str:
    """``postgresql+psycopg://flowkit@127.0.0.1:PORT/flowkit``, shared by the session."""
    return postgresql_server.url


@pytest.fixture
def postgresql_db_url(postgresql_server: services.PostgresServer) -> Iterator[str]:
    """The URL of a database created for this test alone, dropped (forcibly) after it."""
    name = f"flowkit_test_{uuid.uuid4().hex[:16]}"
    url = postgresql_server.create_database(name)
    try:
        yield url
    finally:
        postgresql_server.drop_database(name)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[services.ZooKeeperServer]:
    """A standalone ZooKeeper server; ``/flowkit-tests`` exists on it."""
    server = services.ZooKeeperServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def zookeeper_url(zookeeper_server: services.ZooKeeperServer) -> str:
    """``zookeeper://127.0.0.1:PORT/flowkit-tests/<unique>``, one path for the session."""
    return zookeeper_server.url_for(f"{zookeeper_server.root}/{uuid.uuid4().hex}")


@pytest.fixture(scope="session")
def zookeeper_without_envi() -> Iterator[services.ZooKeeperServer]:
    """A second ZooKeeper, running the four-letter words of ZooKeeper 3.5+'s usual list: no ``envi``.

    ``envi`` gives the server's version to the ``check_compatible`` check.
    """
    server = services.ZooKeeperServer(four_letter_words=("ruok", "srvr"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def zookeeper_path_url(zookeeper_server: services.ZooKeeperServer) -> Iterator[str]:
    """Like ``zookeeper_url`` but with a path of this test's own, deleted after it.

    The path itself is not created: a backend creates its root on ``upgrade()``.
    """
    path = f"{zookeeper_server.root}/{uuid.uuid4().hex}"
    try:
        yield zookeeper_server.url_for(path)
    finally:
        zookeeper_server.delete_tree(path)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[services.EtcdServer]:
    """A single-member etcd server (Debian's etcd-server) of the session, data in a temp dir."""
    server = services.EtcdServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


#: The Go worker's sources (tests/workers and tests/test_examples.py run its binary).
GO_SOURCE = Path(__file__).resolve().parent.parent / "go_worker"
#: Seconds ``go build`` may take (a cold module and build cache is slow).
GO_BUILD_TIMEOUT = 300.0


@pytest.fixture(scope="session")
def go_worker_binary() -> Iterator[str]:
    """Build the Go worker once per session and return the binary's path.

    Skips when Go is not installed (fails under ``CI``); a build error fails.
    """
    go = os.environ.get("GO") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else "go"
    )
    go = services.require_binary(go, "golang-go")
    if not (GO_SOURCE / "go.mod").exists():
        pytest.fail(f"no Go worker sources at {GO_SOURCE}")
    outdir = Path(tempfile.mkdtemp(prefix="flowkit-go-worker-"))
    binary = outdir / "flowkit-worker"
    try:
        result = subprocess.run(
            # -trimpath, as the docs build it: a task's traceback names its Go file by module
            # path (github.com/flowkit/...), not by where this machine keeps the sources.
            [go, "build", "-trimpath", "-o", str(binary), "./cmd/flowkit-worker"],
            cwd=GO_SOURCE,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GO_BUILD_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"go build failed ({result.returncode}):\n{result.stdout.decode()}\n{result.stderr.decode()}"
            )
        yield str(binary)
    finally:
        with contextlib.suppress(OSError):
            binary.unlink()
        with contextlib.suppress(OSError):
            outdir.rmdir()


BACKENDS = ["memory", "dir", "sqlite", "postgresql", "zookeeper"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One storage URL per backend (the persistence contract and the event log use it).

    The PostgreSQL and ZooKeeper URLs are looked up only for their own parameter,
    so a missing server affects only its tests.
    """
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "dir":
        return f"dir://{tmp_path}/store"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/flows.db"
    if kind == "postgresql":
        return str(request.getfixturevalue("postgresql_db_url"))
    return str(request.getfixturevalue("zookeeper_path_url"))
