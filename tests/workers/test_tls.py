"""A flow runs through a Redis that wants TLS and a password (``rediss://:pw@...``).

The test makes its own certificate authority with ``openssl``, starts a
redis-server that listens only on TLS and requires a password, and runs a
flow whose tasks go to a Python worker over that connection.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit import engines, exceptions
from flowkit.patterns import unordered_flow
from tests import services

PASSWORD = "s3cr:et@pw"  # characters that need quoting in a URL


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certificates(where: Path) -> None:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=flowkit test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=where)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=where)  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.cnf", "-out", "server.crt", cwd=where)  # fmt: skip


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    redis_server = services.require_binary("redis-server", "redis-server")
    services.require_binary("openssl", "openssl")
    redis = services.require_module("redis", "redis")
    _make_certificates(tmp_path)
    port = services.free_port()
    process = subprocess.Popen(
        [redis_server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt",
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    quoted = PASSWORD.replace(":", "%3A").replace("@", "%40")
    url = f"rediss://:{quoted}@127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.crt'}"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    try:
        services.wait_until(answers, 20.0, 0.05, "TLS redis-server never answered")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_flow_runs_over_tls_with_a_password(tls_redis_url: str) -> None:
    from flowkit.engines.worker_based import _transport
    from flowkit.engines.worker_based.worker import Worker
    from tests.workers.behaviour_tasks import Echo

    client = _transport.connect(tls_redis_url)
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    worker = Worker(
        topic="tls", tasks=["tests.workers.behaviour_tasks"], url=tls_redis_url, heartbeat=0.2, grace=1.0
    )
    worker.start()
    try:
        flow = unordered_flow.Flow("over-tls").add(
            *(Echo(name=f"echo{i}", provides=f"out{i}", inject={"value": i}) for i in range(5))
        )
        engine = engines.load(
            flow, engine="worker-based", url=tls_redis_url, topics=["tls"], transition_timeout=20
        )
        engine.run()
        assert [engine.storage.fetch(f"out{i}") for i in range(5)] == [0, 1, 2, 3, 4]
    finally:
        worker.stop()


def test_a_wrong_password_is_a_clear_error_that_hides_the_password(tls_redis_url: str) -> None:
    from tests.workers.behaviour_tasks import Echo

    wrong = tls_redis_url.replace("s3cr%3Aet%40pw", "nope")
    with pytest.raises(exceptions.ExecutionFailure, match="cannot reach Redis") as raised:
        engines.load(
            Echo(name="e", inject={"value": 1}), engine="worker-based", url=wrong, topics=["tls"]
        ).run()
    assert "nope" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)
