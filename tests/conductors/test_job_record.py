"""Every conductor records the job it runs a flow for, not only ``flowkit conductor`` (real boards).

A conductor built in Python (``conductors.backends.fetch(...)``, as the docs
show) recorded nothing, so ``flowkit flows resume`` of its flows was not
guarded: it ran them beside the live conductor, their tasks twice at once.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowkit.conductors import backends as conductor_backends
from flowkit.conductors._job_record import JobRecord
from flowkit.jobs import backends
from flowkit.jobs.backends._address import board_address
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import post_flow

REPO_ROOT = Path(__file__).resolve().parents[2]


def _redis_url(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    server: services.RedisServer = request.getfixturevalue("redis_server")
    server.start()
    ns = f"rec-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:{server.port}/0?namespace={ns}"
    conf = {"board": "redis", "host": "127.0.0.1", "port": server.port, "db": 0, "namespace": ns}
    return url, conf


def _zookeeper_url(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    url = str(request.getfixturevalue("zookeeper_path_url"))
    server: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    path = url.split(f":{server.port}", 1)[1]
    return url, {"board": "zookeeper", "hosts": f"127.0.0.1:{server.port}", "path": path}


KINDS: dict[str, Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]] = {
    "redis": _redis_url,
    "zookeeper": _zookeeper_url,
}


@pytest.mark.parametrize("made_from", ["url", "conf"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_conductor_built_in_python_records_the_job_and_its_board(
    request: pytest.FixtureRequest, persistence: Backend, tmp_path: Path, kind: str, made_from: str
) -> None:
    url, conf = KINDS[kind](request)
    board = backends.fetch("lib", url if made_from == "url" else conf, persistence=persistence)
    board.connect()
    try:
        calls = str(tmp_path / "calls")
        job, fd = post_flow(board, persistence, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
        conductor = conductor_backends.fetch("blocking", "lib-c", board, persistence=persistence)
        conductor.run(max_dispatches=1)
        conductor.wait(60)
    finally:
        board.close()
    with persistence.get_connection() as conn:
        stored = conn.get_flow_details(fd.uuid)
    record = JobRecord.from_meta(stored.meta)
    assert record is not None, stored.meta
    assert (record.uuid, record.board) == (job.uuid, kind)
    # The URL names the board the conductor took the job from, however the board was made.
    assert board_address(record.url) == board_address(url)
    if made_from == "url":
        assert record.url == url
    # And so the resume of that flow is guarded.
    resumed = subprocess.run(
        [sys.executable, "-m", "flowkit", "flows", "resume", fd.uuid, "--connection",
         f"sqlite:///{tmp_path / 'flows.db'}", "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert resumed.returncode == 2, resumed.stderr
    assert f"is run by a conductor for job {job.uuid} on {kind} board" in resumed.stderr


def test_a_board_made_from_options_names_itself_by_them_without_its_password() -> None:
    # Nothing connects: the URL is read from the options the board was made with.
    board = backends.fetch(
        "b",
        {
            "board": "redis",
            "host": "db.example",
            "port": 6380,
            "db": 2,
            "namespace": "orders",
            "password": "pw",
        },
    )
    assert board.url == "redis://db.example:6380/2?namespace=orders"
    given = backends.fetch(
        "b", {"board": "redis", "url": "redis://:pw@db.example:6380/2", "namespace": "orders"}
    )
    assert given.url == "redis://:***@db.example:6380/2?namespace=orders"
    assert board_address(given.url) == board_address(board.url)
    zk = backends.fetch("b", {"board": "zookeeper", "hosts": ["z1:2181", "z2"], "path": "/jobs/x"})
    assert board_address(zk.url) == board_address("zookeeper://z2:2181,z1/jobs/x")
    etcd = backends.fetch("b", {"board": "etcd", "host": "e1", "port": 2379, "path": "orders"})
    assert board_address(etcd.url) == board_address("etcd://e1:2379/orders")
    assert backends.fetch("b", "redis://:pw@h:1/0?namespace=n").url == "redis://:***@h:1/0?namespace=n"


def test_a_redis_board_without_a_namespace_names_itself_by_a_url_that_reads_the_same_keys(
    redis_server: services.RedisServer,
) -> None:
    # ``namespace: None`` (no key prefix, as TaskFlow allows) was named by a URL without a
    # namespace, which reads back as the default one: a board made from it read other keys.
    import redis

    redis_server.start()
    port = redis_server.port
    client = redis.Redis(host="127.0.0.1", port=port, db=10)
    client.flushdb()  # a database of this test's own: unprefixed keys share it with nothing else
    board = backends.fetch(
        "b", {"board": "redis", "host": "127.0.0.1", "port": port, "db": 10, "namespace": None}
    )
    board.connect()
    try:
        job = board.post("j")
        url = board.url
        assert url == f"redis://127.0.0.1:{port}/10?no_namespace=true"
        assert board_address(url) != board_address(f"redis://127.0.0.1:{port}/10")
        again = backends.fetch("again", url)
        assert again.namespace is None  # type: ignore[attr-defined]
        assert again.url == url
        again.connect()
        try:
            assert [j.uuid for j in again.iterjobs(ensure_fresh=True)] == [job.uuid]
        finally:
            again.close()
        # A board given its server as a URL option names itself the same way.
        given = backends.fetch(
            "g", {"board": "redis", "url": f"redis://127.0.0.1:{port}/10", "namespace": None}
        )
        assert given.url == url
    finally:
        board.close()
        client.flushdb()
        client.close()


def test_a_redis_board_url_names_the_namespace_its_options_give_over_the_url() -> None:
    # Options beside a board URL win over its query: the URL naming the board says so.
    made = backends.fetch("b", {"board": "redis://:pw@h:1/0?namespace=a&claim_expiry=1", "namespace": None})
    assert made.url == "redis://:***@h:1/0?claim_expiry=1&no_namespace=true"
    made = backends.fetch("b", {"board": "redis://h:1/0?no_namespace=1", "namespace": "b"})
    assert board_address(made.url) == board_address("redis://h:1/0?namespace=b")
    # A URL that already names the board's namespace is kept as given.
    assert backends.fetch("b", "redis://h:1/0?no_namespace=yes").url == "redis://h:1/0?no_namespace=yes"
    assert backends.fetch("b", "redis://h:1/0").url == "redis://h:1/0"
    masked = r"redis://:\*\*\*@h:1/0\?namespace=a&no_namespace=1"
    with pytest.raises(ValueError, match=rf"at {masked}: the URL names namespace 'a' and no_namespace=true"):
        backends.fetch("b", "redis://:pw@h:1/0?namespace=a&no_namespace=1")


def test_a_board_url_names_what_the_boards_options_say_over_the_url_it_was_given() -> None:
    # Options beside a board URL win over it (a path, hosts, a database the URL leaves out):
    # the board's url named the URL's board, not the one its jobs are on.
    def url_of(conf: dict[str, Any]) -> str:
        return backends.fetch("b", conf).url

    assert board_address(url_of({"board": "redis://h:1", "db": 3})) == board_address("redis://h:1/3")
    assert board_address(url_of({"board": "redis://h:1/?db=", "db": 3})) == board_address("redis://h:1/3")
    assert board_address(url_of({"board": "zookeeper://h/a", "path": "/b"})) == board_address("zk://h/b")
    assert board_address(url_of({"board": "zookeeper://h/a", "hosts": "k"})) == board_address("zk://k/a")
    assert board_address(url_of({"board": "etcd://h/a", "path": "b"})) == board_address("etcd://h/b")
    assert board_address(url_of({"board": "etcd://h/a", "host": "k"})) == board_address("etcd://k/a")
    # TLS is no part of what identifies a board, but a URL read back must reach it the same way.
    assert url_of({"board": "etcd://h/a", "protocol": "https"}) == "etcds://h:2379/a"
    assert url_of({"board": "etcds://h/a", "protocol": "http"}) == "etcd://h:2379/a"
    # A URL naming the board it makes is kept as given, password masked.
    assert url_of({"board": "redis://h:1/2", "db": 3}) == "redis://h:1/2"  # redis-py reads the URL's
    assert url_of({"board": "zk://:pw@h/a/", "path": "/a"}) == "zk://:***@h/a/"
    assert url_of({"board": "etcd://h/a", "path": "a"}) == "etcd://h/a"


@pytest.mark.parametrize("kind", ["redis", "zookeeper"])
def test_a_board_given_options_over_its_url_names_itself_by_a_url_that_reads_its_jobs(
    request: pytest.FixtureRequest, kind: str
) -> None:
    url, _ = KINDS[kind](request)
    if kind == "redis":  # the database from an option, the URL naming none
        server: services.RedisServer = request.getfixturevalue("redis_server")
        conf = {"board": url.replace(f":{server.port}/0?", f":{server.port}?"), "db": 12}
    else:  # the path from an option, over the URL's
        server_zk: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
        conf = {"board": f"{url}-not-this", "path": url.split(f":{server_zk.port}", 1)[1]}
    board = backends.fetch("b", conf)
    board.connect()
    try:
        job = board.post("j")
        again = backends.fetch("again", board.url)
        again.connect()
        try:
            assert [j.uuid for j in again.iterjobs(ensure_fresh=True)] == [job.uuid]
        finally:
            again.close()
    finally:
        board.close()


def test_a_board_made_as_taskflow_makes_it_names_itself_too() -> None:
    # TaskFlow's tests and programs make a board class directly, with no 'board' kind in the conf.
    from flowkit.jobs.backends.impl_redis import RedisJobBoard
    from flowkit.jobs.backends.impl_zookeeper import ZookeeperJobBoard

    assert ZookeeperJobBoard("testing", {"path": "/taskflow/x", "hosts": "zk:2181"}).url == (
        "zookeeper://zk:2181/taskflow/x"
    )
    assert board_address(RedisJobBoard("testing", {"host": "r", "namespace": b"taskflow"}).url) == (
        board_address("redis://r:6379/0?namespace=taskflow")
    )
