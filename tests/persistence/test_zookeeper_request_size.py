"""ZooKeeper writes too big for one request, on the session's real ZooKeeper.

ZooKeeper refuses a request over its ``jute.maxbuffer`` (1 MB by default) by
dropping the client's connection; kazoo then raises ``ConnectionLoss`` with no
text. A flow of 2,500 new atoms saved at once is a transaction of about
1.3 MB. TaskFlow's backend writes it as one and fails (from about 2,000
atoms); flowkit sends the new atoms of a flow that exists in parts under the
limit, each part checking what the whole would have checked (the write fence
among it), and says why when a write cannot be split.

Tests that need several parts without megabytes of data lower the store's
limit (``max_request_bytes``); a crash or a rival between two parts is forced
by a client whose ``transaction()`` runs a hook first (the only fake: the
server, the transactions and the checks are real).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flowkit import engines, states
from flowkit import exceptions as exc
from flowkit._utils.text import error_text
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.persistence.base import Backend, Connection, FenceRefused, WriteFence
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail
from flowkit.task import FunctorTask
from tests import services

# Atoms whose one-transaction save is over 1 MB (about 525 bytes each).
_TOO_MANY_ATOMS = 2_500
# A limit that splits a save of 100 new atoms into several parts.
_SMALL_LIMIT = 20_000


class _Interrupted(Exception):
    """Stands for the process dying between two parts of a commit."""


class _BetweenParts:
    """A kazoo client whose ``transaction()`` calls ``hook(n)`` before making the n-th (from 0)."""

    def __init__(self, client: Any, hook: Callable[[int], None]) -> None:
        self._client = client
        self._hook = hook
        self.made = 0

    def transaction(self) -> Any:
        self._hook(self.made)
        self.made += 1
        return self._client.transaction()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _connected(url: str, limit: int | None = None) -> tuple[Backend, Connection]:
    services.require_module("kazoo", "kazoo")
    backend = backends.fetch(url)
    conn = backend.get_connection()
    conn.upgrade()
    if limit is not None:
        conn._store.max_request_bytes = limit  # type: ignore[attr-defined]
    return backend, conn


def _saved_flow(conn: Connection) -> FlowDetail:
    book = LogBook("book")
    flow = FlowDetail("flow", str(uuid.uuid4()))
    book.add(flow)
    conn.save_logbook(book)
    return flow


def _tasks(count: int, prefix: str = "task") -> list[TaskDetail]:
    return [TaskDetail(f"{prefix}-{number}", str(uuid.uuid4())) for number in range(count)]


def _members_version(url_path: str, server: services.ZooKeeperServer, flow: str) -> int:
    with server.client() as client:
        return int(client.get(f"{url_path}/members/{flow}")[1].version)


def test_error_text_names_the_class_of_an_exception_without_text() -> None:
    kazoo_exceptions = services.require_module("kazoo.exceptions", "kazoo")
    assert error_text(kazoo_exceptions.ConnectionLoss()) == "ConnectionLoss"
    assert error_text(ValueError("bad port")) == "bad port"


def test_a_new_flow_too_big_for_one_request_says_what_was_refused_and_why(zookeeper_path_url: str) -> None:
    # A flow created in the step is never split (its links need its members znode, made
    # with it), and TaskFlow cannot save it either: the error must say why.
    backend, conn = _connected(zookeeper_path_url)
    try:
        book = LogBook("book")
        flow = FlowDetail("big", str(uuid.uuid4()))
        book.add(flow)
        for atom in _tasks(_TOO_MANY_ATOMS):
            flow.add(atom)
        with pytest.raises(exc.StorageFailure) as caught:
            conn.save_logbook(book)
        message = str(caught.value)
        assert message.startswith(f"save_logbook of {book.uuid} failed on zookeeper://")
        assert not message.rstrip().endswith(":")
        carried = re.search(r"transaction of ([\d,]+) znode operations \(([\d,]+) bytes\)", message)
        assert carried is not None
        assert int(carried[1].replace(",", "")) > 2 * _TOO_MANY_ATOMS  # atoms and their links, and more
        assert int(carried[2].replace(",", "")) > 1_048_575
        assert "jute.maxbuffer, 1 MB" in message
        lost = caught.value.__cause__
        assert lost is not None and lost.size > 1_048_575  # type: ignore[attr-defined]
        # Nothing of the refused transaction was written, and the store serves on.
        assert [b.uuid for b in conn.get_logbooks()] == []
    finally:
        backend.close()


def test_new_atoms_of_a_saved_flow_go_in_parts_under_the_limit(
    zookeeper_path_url: str, zookeeper_server: services.ZooKeeperServer
) -> None:
    backend, conn = _connected(zookeeper_path_url)
    path = "/" + zookeeper_path_url.split("/", 3)[3]
    try:
        flow = _saved_flow(conn)
        before = _members_version(path, zookeeper_server, flow.uuid)
        for atom in _tasks(_TOO_MANY_ATOMS):
            flow.add(atom)
        conn.update_flow_details(flow)
        loaded = conn.get_flow_details(flow.uuid)
        assert sorted(ad.name for ad in loaded) == sorted(ad.name for ad in flow)
        # Each part gave the flow's members a new version, so readers saw every part.
        assert _members_version(path, zookeeper_server, flow.uuid) - before >= 3
    finally:
        backend.close()


def test_an_engine_runs_a_flow_too_big_for_one_request(zookeeper_path_url: str) -> None:
    backend, _conn = _connected(zookeeper_path_url)
    flow = linear_flow.Flow("big").add(
        *(FunctorTask(lambda: None, name=f"task-{number}") for number in range(_TOO_MANY_ATOMS))
    )
    try:
        engine = engines.load(flow, backend=backend)
        engine.run()
        detail = backend.get_connection().get_flow_details(engine.storage.flow_uuid)
        assert detail.state == states.SUCCESS
        assert len(detail) == _TOO_MANY_ATOMS
        assert {ad.state for ad in detail} == {states.SUCCESS}
    finally:
        backend.close()


def test_a_fenced_write_split_in_parts_checks_the_fence_in_each_part(zookeeper_path_url: str) -> None:
    backend, conn = _connected(zookeeper_path_url, _SMALL_LIMIT)
    rival_backend, rival = _connected(zookeeper_path_url)
    try:
        flow = _saved_flow(conn)
        mine, theirs = WriteFence("job", 1), WriteFence("job", 2)
        conn.take_fence(flow.uuid, mine)
        store = conn._store  # type: ignore[attr-defined]

        def take_over(made: int) -> None:
            if made == 1:  # after the first part committed, a later claim takes the fence
                rival.take_fence(flow.uuid, theirs)

        store._client = _BetweenParts(store._client, take_over)
        atoms = _tasks(100)
        with pytest.raises(FenceRefused):
            conn.save_flow_progress_fenced(flow, atoms, True, mine)
        assert store._client.made >= 2  # it was split, and the second part was refused
        # The first part landed under the fence it checked; nothing after the fence moved.
        landed = {ad.name for ad in rival.get_flow_details(flow.uuid)}
        assert landed and landed < {ad.name for ad in atoms}
        assert rival.flow_fence(flow.uuid) == theirs
        # The new holder writes the flow as usual, the atoms that landed among them.
        rival.save_flow_progress_fenced(flow, atoms, True, theirs)
        assert len(rival.get_flow_details(flow.uuid)) == len(atoms)
    finally:
        backend.close()
        rival_backend.close()


def test_an_engine_resumes_after_a_crash_between_parts_of_its_prepare(zookeeper_path_url: str) -> None:
    ran: list[str] = []

    def make_flow() -> linear_flow.Flow:
        return linear_flow.Flow("flow").add(
            *(FunctorTask(lambda name=f"t{n}": ran.append(name), name=f"t{n}") for n in range(100))
        )

    backend, conn = _connected(zookeeper_path_url, _SMALL_LIMIT)
    try:
        store = conn._store  # type: ignore[attr-defined]

        def die(made: int) -> None:
            if made == 1:
                raise _Interrupted("the process died between two parts")

        real_client = store._client
        engine = engines.load(make_flow(), backend=backend)
        store._client = _BetweenParts(real_client, die)
        with pytest.raises(exc.StorageFailure):
            engine.run()
        store._client = real_client
        partial = conn.get_flow_details(engine.storage.flow_uuid)
        assert 0 < len(partial) < 100  # the first part's atoms, linked
        assert ran == []
    finally:
        backend.close()
    # A new process loads the flow detail and runs it to the end, every task once.
    backend, conn = _connected(zookeeper_path_url, _SMALL_LIMIT)
    try:
        detail = conn.get_flow_details(partial.uuid)
        engines.load(make_flow(), flow_detail=detail, backend=backend).run()
        assert sorted(ran) == sorted(f"t{n}" for n in range(100))
        done = conn.get_flow_details(partial.uuid)
        assert len(done) == 100 and {ad.state for ad in done} == {states.SUCCESS}
    finally:
        backend.close()
