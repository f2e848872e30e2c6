"""TaskFlow 6.5's etcd jobboard as an oracle: both boards on one etcd path share their jobs.

Octavia may run TaskFlow and flowkit conductors side by side during a
migration, so each board must read what the other writes (TaskFlow's key
layout) and respect the other's claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import states
from flowkit.jobs import backends
from flowkit.jobs.base import JobBoard
from tests import services

tf_impl_etcd = pytest.importorskip("taskflow.jobs.backends.impl_etcd")
tf_states = pytest.importorskip("taskflow.states")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: TaskFlow's names flowkit leaves out: the states of the job cache TaskFlow's board lists
#: from (flowkit's asks the server on every listing, so they would describe nothing).
_NOT_MIRRORED = {"INIT_STATE", "CONNECTED_STATE", "FETCH_STATE"}


def _both_boards(etcd_server: services.EtcdServer, **options: Any) -> Iterator[tuple[Any, JobBoard]]:
    """TaskFlow's board and flowkit's, with ``options``, connected to the session's etcd on one fresh path."""
    conf = {
        "board": "etcd",
        "host": etcd_server.host,
        "port": etcd_server.port,
        "path": uuid.uuid4().hex,
        **options,
    }
    theirs = tf_impl_etcd.EtcdJobBoard("taskflow", dict(conf))
    ours = backends.fetch("flowkit", dict(conf))
    theirs.connect()
    ours.connect()
    try:
        yield theirs, ours
    finally:
        ours.close()
        theirs.close()


@pytest.fixture
def boards(etcd_server: services.EtcdServer) -> Iterator[tuple[Any, JobBoard]]:
    """TaskFlow's board and flowkit's, connected to the session's etcd on one fresh path."""
    yield from _both_boards(etcd_server)


def test_flowkit_has_taskflows_public_names() -> None:
    from flowkit.jobs.backends import impl_etcd

    for name in ("EtcdJobBoard", "EtcdJob"):
        theirs = {n for n in dir(getattr(tf_impl_etcd, name)) if not n.startswith("_")}
        ours = {n for n in dir(getattr(impl_etcd, name)) if not n.startswith("_")}
        assert theirs - ours - _NOT_MIRRORED == set(), name
    for name in ("ROOT_PATH", "TRASH_PATH", "DEFAULT_PATH", "JOB_PREFIX", "SEQUENCE_KEY", "LOCK_POSTFIX"):
        assert getattr(impl_etcd.EtcdJobBoard, name) == getattr(tf_impl_etcd.EtcdJobBoard, name), name


def test_flowkit_reads_claims_and_consumes_a_job_taskflow_posted(boards: tuple[Any, JobBoard]) -> None:
    theirs, ours = boards
    posted = theirs.post("boot", details={"store": {"vm": 42}}, priority="HIGH")
    [job] = list(ours.iterjobs())
    assert (job.uuid, job.name, job.details, job.priority.value) == (
        posted.uuid,
        "boot",
        {"store": {"vm": 42}},
        "HIGH",
    )
    assert job.state == states.UNCLAIMED
    ours.claim(job, "flowkit-host", expiry=30)
    assert posted.state == tf_states.CLAIMED
    assert theirs.find_owner(posted) == "flowkit-host"
    assert 0 < posted.expires_in() <= 30
    with pytest.raises(tf_impl_etcd.exc.UnclaimableJob, match="flowkit-host"):
        theirs.claim(posted, "taskflow-host")
    ours.consume(job, "flowkit-host")
    assert posted.state == tf_states.COMPLETE
    assert list(theirs.iterjobs(ensure_fresh=True)) == []


def test_taskflow_reads_claims_and_consumes_a_job_flowkit_posted(boards: tuple[Any, JobBoard]) -> None:
    theirs, ours = boards
    first = ours.post("a")
    second = ours.post("b")
    listed = list(theirs.iterjobs(ensure_fresh=True))
    assert [(j.uuid, j.name, j.sequence) for j in listed] == [(first.uuid, "a", 1), (second.uuid, "b", 2)]
    theirs.claim(listed[0], "taskflow-host")
    assert ours.find_owner(first) == "taskflow-host"
    assert first.state == states.CLAIMED
    # TaskFlow's lock has no fencing token: flowkit reads it as 0, below any claim of its own.
    claim = ours.current_claim(first)
    assert claim is not None and claim.token == 0
    theirs.abandon(listed[0], "taskflow-host")
    assert ours.claim(first, "flowkit-host").token > 0
    ours.abandon(first, "flowkit-host")
    theirs.claim(listed[0], "taskflow-host")
    theirs.consume(listed[0], "taskflow-host")
    assert first.state == states.COMPLETE
    assert [j.uuid for j in ours.iterjobs()] == [second.uuid]
    # One counter: a job either board posts next is numbered after both.
    assert theirs.post("c").sequence == 3
    assert ours.post("d").sequence == 4  # type: ignore[attr-defined]


@pytest.fixture
def ttl_boards(etcd_server: services.EtcdServer) -> Iterator[tuple[Any, JobBoard]]:
    """As ``boards``, both with the option ``ttl`` = 30 (Octavia's ``jobboard_expiration_time``)."""
    yield from _both_boards(etcd_server, ttl=30)


def test_claim_expiry_and_renewal_match_taskflow_where_it_defines_them(
    ttl_boards: tuple[Any, JobBoard],
) -> None:
    """The same answers, job for job, from either board's claims (doc/jobs.rst lists the differences).

    The ``ttl`` option leases a claim made without expiry; ``expires_in()``
    counts down from it; ``extend_expiry`` with that same TTL keeps the lease
    alive; a claim whose lease ran out leaves the job unclaimed for either
    board, ``expires_in()`` -1 and ``extend_expiry`` ``False``.
    """
    theirs, ours = ttl_boards
    for board in (theirs, ours):
        job = board.post(f"by-{board.name}")
        board.claim(job, "holder")
        [seen_by_theirs] = [j for j in theirs.iterjobs(ensure_fresh=True) if j.uuid == job.uuid]
        [seen_by_ours] = [j for j in ours.iterjobs() if j.uuid == job.uuid]
        for other in (seen_by_theirs, seen_by_ours):
            assert 25 <= other.expires_in() <= 30, board.name
        assert job.extend_expiry(30) is True
        assert 25 <= job.expires_in() <= 30
        board.consume(job, "holder")

    lapsing = {board.name: board.post(f"lapsing-{board.name}") for board in (theirs, ours)}
    for board in (theirs, ours):
        board.claim(lapsing[board.name], "holder", expiry=1)
        # TaskFlow's job keeps the lease it first reads: read it before the lock goes (after: TypeError).
        assert lapsing[board.name].lease is not None
    for board in (theirs, ours):
        job = lapsing[board.name]
        services.wait_until(lambda job=job: job.state == states.UNCLAIMED, timeout=10)
        assert job.expires_in() == -1
        assert job.extend_expiry(30) is False
    # Either board takes over a job whose claim, made by the other, ran out.
    assert ours.claim(lapsing["taskflow"], "flowkit-host", expiry=30).owner == "flowkit-host"
    theirs.claim(lapsing["flowkit"], "taskflow-host")
    assert ours.find_owner(lapsing["flowkit"]) == "taskflow-host"
