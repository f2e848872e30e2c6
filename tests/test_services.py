"""The server fixtures start real servers that answer, and fail loudly under CI."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from tests import services


def _redis_command(url: str, *words: str) -> bytes:
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    request = f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(256)


def test_redis_server_answers_ping(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:")
    assert redis_url.endswith("/0")
    assert _redis_command(redis_url, "PING") == b"+PONG\r\n"


def test_redis_flushed_url_starts_empty(redis_flushed_url: str) -> None:
    assert _redis_command(redis_flushed_url, "SET", "k", "v") == b"+OK\r\n"
    assert _redis_command(redis_flushed_url, "DBSIZE") == b":1\r\n"


def test_redis_flushed_url_empties_what_the_previous_test_left(redis_flushed_url: str) -> None:
    assert _redis_command(redis_flushed_url, "DBSIZE") == b":0\r\n"


def test_redis_restart_keeps_the_port_and_drops_the_data(redis_server: services.RedisServer) -> None:
    url, old_pid = redis_server.url, redis_server.pid
    assert old_pid is not None
    _redis_command(url, "SET", "before-restart", "1")
    try:
        redis_server.stop()
        assert redis_server.pid is None
        with pytest.raises(OSError):
            _redis_command(url, "PING")
    finally:
        redis_server.start()
    assert redis_server.url == url
    assert redis_server.pid not in (None, old_pid)
    assert _redis_command(url, "EXISTS", "before-restart") == b":0\r\n"


def test_postgresql_url_runs_a_query(postgresql_server: services.PostgresServer, postgresql_url: str) -> None:
    assert postgresql_url == f"postgresql+psycopg://flowkit@127.0.0.1:{postgresql_server.port}/flowkit"
    with postgresql_server.connect("flowkit") as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


def test_postgresql_db_url_is_a_fresh_database_per_test(
    postgresql_server: services.PostgresServer, postgresql_db_url: str
) -> None:
    name = postgresql_db_url.rsplit("/", 1)[1]
    assert name.startswith("flowkit_test_")
    with postgresql_server.connect(name, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_postgresql_db_url_drops_the_database_afterwards(postgresql_server: services.PostgresServer) -> None:
    with postgresql_server.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'flowkit_test_%'").fetchall()
    assert rows == []


def test_zookeeper_path_url_is_a_unique_writable_path(
    zookeeper_server: services.ZooKeeperServer, zookeeper_path_url: str
) -> None:
    prefix = f"zookeeper://127.0.0.1:{zookeeper_server.port}/flowkit-tests/"
    assert zookeeper_path_url.startswith(prefix)
    path = "/flowkit-tests/" + zookeeper_path_url.removeprefix(prefix)
    with zookeeper_server.client() as client:
        client.create(f"{path}/znode", b"payload", makepath=True)
        assert client.get(f"{path}/znode")[0] == b"payload"


def test_zookeeper_url_differs_from_the_per_test_path(zookeeper_url: str, zookeeper_path_url: str) -> None:
    assert zookeeper_url.rsplit("/", 1)[0] == zookeeper_path_url.rsplit("/", 1)[0]
    assert zookeeper_url != zookeeper_path_url


def test_a_zookeeper_server_counts_as_started_only_once_it_serves_sessions() -> None:
    # It answered ruok ("imok") some 0.6 s before it served sessions; a kazoo client
    # started in that window backed off past its start timeout on a loaded machine.
    answers: list[bytes] = []

    class Watched(services.ZooKeeperServer):
        def _after_ready(self) -> None:
            assert self.port is not None
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"srvr")  # what a client met right then
                answers.append(sock.recv(64))
            super()._after_ready()

    server = Watched()
    try:
        server.start()
    finally:
        server.close()

    (answer,) = answers
    assert answer.startswith(services.SERVING), answer


def test_require_binary_finds_a_program_on_path() -> None:
    assert os.path.isabs(services.require_binary("sh", "dash"))


def test_require_binary_skips_a_missing_program_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    missing = f"flowkit-no-such-program-{uuid.uuid4().hex}"
    with pytest.raises(pytest.skip.Exception, match="apt-get install flowkit-fake-package"):
        services.require_binary(missing, "flowkit-fake-package")


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_require_binary_fails_a_missing_program_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    missing = f"flowkit-no-such-program-{uuid.uuid4().hex}"
    with pytest.raises(pytest.fail.Exception, match="apt-get install flowkit-fake-package"):
        services.require_binary(missing, "flowkit-fake-package")


def test_require_binary_treats_ci_false_as_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        services.require_binary(f"flowkit-no-such-program-{uuid.uuid4().hex}", "x")


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([0, None, "ready"])
    assert services.wait_until(lambda: next(answers), timeout=5, interval=0) == "ready"


def test_wait_until_raises_with_the_message_on_timeout() -> None:
    with pytest.raises(AssertionError, match="the queue never drained"):
        services.wait_until(lambda: False, timeout=0, message="the queue never drained")
