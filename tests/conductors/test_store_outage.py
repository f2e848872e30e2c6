"""A conductor whose persistence backend (PostgreSQL) restarts while a job waits on the board.

Each claim of the job fails to load its flow while the database is away. That
is no fault of the job's: counted as failed attempts, a few seconds of outage
made a conductor with ``max_failures`` (``flowkit conductor`` defaults to 5)
set the job aside as poisoned, for good. The job must wait out the outage and
run once the database is back.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import conductors, states
from flowkit.jobs import backends as board_backends
from flowkit.jobs.base import AttemptEnd
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import flow_state, post_flow
from tests.conftest import wait_until

__all__: list[str] = []

#: Bounded waits (the database's restart, the conductor's next turns).
TIMEOUT = 60.0
#: The conductor's poison bound: the outage outlasts this many claims of the job.
MAX_FAILURES = 2


@pytest.fixture
def on_postgresql(postgresql_db_url: str) -> Iterator[Backend]:
    backend = persistence_backends.fetch(postgresql_db_url)
    with backend.get_connection() as conn:
        conn.upgrade()
    try:
        yield backend
    finally:
        backend.close()


def _started_board(redis_server: services.RedisServer) -> dict[str, Any]:
    """Start the session's Redis (a test may have stopped it) and give a board of its own on it."""
    redis_server.start()
    return {
        "board": "redis",
        "host": "127.0.0.1",
        "port": redis_server.port,
        "namespace": f"test-{uuid.uuid4().hex[:12]}",
    }


def test_a_job_claimed_while_the_database_restarts_is_not_set_aside_and_runs_once_it_is_back(
    postgresql_server: services.PostgresServer,
    redis_server: services.RedisServer,
    on_postgresql: Backend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="flowkit.conductors")
    conf = _started_board(redis_server)
    poster = board_backends.fetch("poster", conf, persistence=on_postgresql)
    poster.connect()
    board = board_backends.fetch("c1-board", conf, persistence=on_postgresql)
    board.connect()
    calls = str(tmp_path / "calls")
    job, fd = post_flow(poster, on_postgresql, flows.chain, [2], job_store={"v0": 0, "calls": calls})
    conductor = conductors.backends.fetch(
        "blocking", "c1", board, persistence=on_postgresql, wait_timeout=0.05, max_failures=MAX_FAILURES
    )
    runner = threading.Thread(target=conductor.run, daemon=True)
    postgresql_server.stop()
    try:
        runner.start()
        # The conductor claims the job again and again while the database is away,
        # more times than its poison bound; none of those counts against the job.
        wait_until(lambda: len(job.attempts) > MAX_FAILURES + 1, timeout=TIMEOUT)
        assert not [a for a in job.attempts if a.end is AttemptEnd.FAILED], job.attempts
    finally:
        postgresql_server.start()
    try:
        wait_until(lambda: flow_state(on_postgresql, fd)[0] == states.SUCCESS, timeout=TIMEOUT)
        wait_until(lambda: not list(poster.iterjobs(ensure_fresh=True)), timeout=TIMEOUT)
        assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1"]
        assert job.state == states.COMPLETE  # consumed, not set aside
        said = [r.getMessage() for r in caplog.records if r.name.startswith("flowkit.conductors")]
        assert "is given back until the board and the store answer" in said[0]
        assert "answer again" in said[-1]
    finally:
        conductor.stop()
        runner.join(TIMEOUT)
        board.close()
        poster.close()
    assert not runner.is_alive()


def test_a_conductor_whose_store_cannot_be_reached_says_so_once_naming_its_masked_url(
    redis_server: services.RedisServer,
    on_postgresql: Backend,
    postgresql_server: services.PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `flowkit conductor --connection` with a wrong port or host: every claim of every
    # job was given back, and nothing was logged, so the operator saw jobs that stayed
    # UNCLAIMED and a conductor that said nothing at all.
    conf = _started_board(redis_server)
    poster = board_backends.fetch("poster", conf, persistence=on_postgresql)
    poster.connect()
    away_url = f"postgresql+psycopg://flowkit:s3cret@127.0.0.1:{services.free_port()}/flowkit"
    away = persistence_backends.fetch(away_url)
    board = board_backends.fetch("c1-board", conf, persistence=away)
    board.connect()
    job, _ = post_flow(poster, on_postgresql, flows.chain, [1], job_store={"v0": 0})
    conductor = conductors.backends.fetch("blocking", "c1", board, persistence=away, wait_timeout=0.05)
    runner = threading.Thread(target=conductor.run, daemon=True)
    caplog.set_level("WARNING", logger="flowkit.conductors")
    try:
        runner.start()
        wait_until(lambda: len(job.attempts) >= 3, timeout=TIMEOUT)
    finally:
        conductor.stop()
        runner.join(TIMEOUT)
        board.close()
        poster.close()
        away.close()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("flowkit.conductors")]
    assert len(said) == 1, said  # once per outage, not at every claim
    assert job.uuid in said[0] and "127.0.0.1" in said[0]
    assert "s3cret" not in said[0] and "***" in said[0]
