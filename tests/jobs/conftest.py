"""Boards for the jobboard contract suite: memory, and Redis, ZooKeeper and etcd on real servers.

``make_board()`` returns a connected board; called again in the same test it
returns another board over the same jobs (another client of the same Redis
namespace, ZooKeeper path or etcd path; the same object for memory, which has no other
way to share), as two conductors on two hosts would see it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit.jobs import backends
from flowkit.jobs.base import JobBoard
from tests import services

BOARD_KINDS = ["memory", "redis", "zookeeper", "etcd"]

MakeBoard = Callable[..., JobBoard]


def board_conf(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The conf of a fresh board of ``kind`` on the session's servers."""
    unique = uuid.uuid4().hex[:12]
    if kind == "memory":
        return {"board": "memory"}
    if kind == "redis":
        server: services.RedisServer = request.getfixturevalue("redis_server")
        server.start()
        return {"board": "redis", "host": "127.0.0.1", "port": server.port, "namespace": f"test-{unique}"}
    if kind == "etcd":
        server_etcd: services.EtcdServer = request.getfixturevalue("etcd_server")
        return {"board": "etcd", "host": server_etcd.host, "port": server_etcd.port, "path": f"test-{unique}"}
    server_zk: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    return {
        "board": "zookeeper",
        "hosts": server_zk.hosts,
        # A parent of its own: registered entities are kept next to the board's path.
        "path": f"{server_zk.root}/{unique}/jobs",
        "timeout": 10.0,
    }


@pytest.fixture(params=BOARD_KINDS)
def board_kind(request: pytest.FixtureRequest) -> str:
    """Each board kind in turn."""
    return str(request.param)


@pytest.fixture
def make_board(board_kind: str, request: pytest.FixtureRequest) -> Iterator[MakeBoard]:
    """Make connected boards over one fresh set of jobs; closes them all after the test."""
    if board_kind == "redis":
        services.require_module("redis", "redis")
    if board_kind == "zookeeper":
        services.require_module("kazoo", "kazoo")
    if board_kind == "etcd":
        services.require_module("etcd3gw", "etcd3gw")
    conf = board_conf(board_kind, request)
    made: list[JobBoard] = []

    def make(**kwargs: Any) -> JobBoard:
        if board_kind == "memory" and made:
            return made[0]
        board = backends.fetch(f"board-{len(made)}", {**conf, **kwargs.pop("conf", {})}, **kwargs)
        board.connect()
        made.append(board)
        return board

    try:
        yield make
    finally:
        for board in made:
            board.close()
