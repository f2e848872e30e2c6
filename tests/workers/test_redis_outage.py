"""The worker-based engine against a Redis that stops answering (frozen, not dead).

A frozen server accepts connections and never replies: without socket timeouts
every command of the engine waits for ever. These tests freeze a Redis of their
own (SIGSTOP) mid-run and check that the run stops within a bounded time with
an error naming the (masked) URL and the atoms in doubt, and that the flow
resumes to the end once Redis answers again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services

redis = services.require_module("redis", "redis")

from flowkit import engines, states  # noqa: E402
from flowkit import exceptions as exc  # noqa: E402
from flowkit.engines.worker_based.worker import Worker  # noqa: E402
from flowkit.patterns import linear_flow  # noqa: E402
from flowkit.persistence import backends  # noqa: E402
from tests.workers import worker_tasks  # noqa: E402
from tests.workers.conftest import BackgroundRun, fresh_topic  # noqa: E402

MODULE = "tests.workers.worker_tasks"
PASSWORD = "s3cret-outage-pw"


@pytest.fixture
def locked_url(own_redis: services.RedisServer) -> str:
    """``own_redis`` behind a password, so the tests can check it never shows."""
    client = redis.Redis.from_url(own_redis.url)
    try:
        client.config_set("requirepass", PASSWORD)
    finally:
        client.close()
    return own_redis.url.replace("redis://", f"redis://:{PASSWORD}@", 1)


@pytest.fixture
def gate() -> Iterator[None]:
    worker_tasks.GATE.clear()
    worker_tasks.GATE_ENTERED.clear()
    yield
    worker_tasks.GATE.set()


def _flow() -> linear_flow.Flow:
    return linear_flow.Flow("outage").add(
        worker_tasks.Add(name="first", provides="s"),
        worker_tasks.Gate(name="gate", provides="g"),
        worker_tasks.Add(name="last", provides="t", rebind={"x": "s"}),
    )


def test_a_run_against_a_frozen_redis_stops_naming_url_and_atoms_and_resumes_once_it_is_back(
    own_redis: services.RedisServer, locked_url: str, gate: None
) -> None:
    topic = fresh_topic()
    worker = Worker(
        topic=topic, tasks=[MODULE], url=locked_url, heartbeat=0.1, visibility_timeout=5.0, grace=1.0
    )
    worker.start()
    backend = backends.fetch({"connection": "memory://"})
    try:
        options: dict[str, Any] = {
            "url": locked_url,
            "topics": [topic],
            "transition_timeout": 30.0,
            "socket_timeout": 0.5,
            "outage_timeout": 1.0,
        }
        store = {"x": 1, "y": 2}
        engine = engines.load(_flow(), store=store, engine="worker-based", backend=backend, **options)
        run = BackgroundRun(engine)
        assert worker_tasks.GATE_ENTERED.wait(15), "the gate task never started"
        services.wait_until(
            lambda: engine.storage.get_atom_state("gate") == states.RUNNING, 10.0, message="gate RUNNING"
        )
        own_redis.freeze()
        frozen_at = time.monotonic()
        error = run.join(30.0)
        took = time.monotonic() - frozen_at
        # Outage seen within a socket timeout or two, then the outage limit: far below 30 s.
        assert took < 10.0, f"the run took {took:.1f} s to stop"
        assert isinstance(error, exc.ExecutionFailure), repr(error)
        message = str(error)
        assert PASSWORD not in message, message
        assert f"redis://:***@127.0.0.1:{own_redis.port}/0" in message, message
        assert "'gate'" in message and "resume" in message, message
        # The atom in doubt stays RUNNING for a resume to run again; the finished one keeps its result.
        assert engine.storage.get_atom_state("first") == states.SUCCESS
        assert engine.storage.get_atom_state("gate") == states.RUNNING
        assert engine.storage.get_atom_state("last") == states.PENDING

        own_redis.thaw()
        worker_tasks.GATE.set()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        resumed = engines.load(_flow(), flow_detail=detail, engine="worker-based", backend=backend, **options)
        resumed.run()
        assert resumed.storage.get_flow_state() == states.SUCCESS
        assert resumed.storage.fetch("g") == "opened"
        assert resumed.storage.fetch("t") == 5
    finally:
        own_redis.thaw()
        worker_tasks.GATE.set()
        worker.stop(grace=0.5)
        assert worker.join(15)
        backend.close()


def test_a_run_started_against_a_frozen_redis_fails_within_its_timeouts(
    own_redis: services.RedisServer, locked_url: str
) -> None:
    engine = engines.load(
        _flow(),
        store={"x": 1, "y": 2},
        engine="worker-based",
        url=locked_url,
        topics=[fresh_topic()],
        socket_timeout=0.5,
    )
    own_redis.freeze()
    run = BackgroundRun(engine)
    error = run.join(20.0)
    assert run.done, "the run still hangs 20 s after it started against a frozen Redis"
    assert isinstance(error, exc.ExecutionFailure), repr(error)
    assert f"redis://:***@127.0.0.1:{own_redis.port}/0" in str(error), str(error)
    assert PASSWORD not in str(error)


@pytest.mark.parametrize(
    ("option", "value"),
    [("socket_timeout", 0), ("socket_timeout", "soon"), ("outage_timeout", -1.0), ("outage_timeout", True)],
)
def test_bad_redis_timeouts_are_refused_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(exc.InvalidEngineOption, match=option):
        engines.load(_flow(), engine="worker-based", url="redis://127.0.0.1:1/0", **{option: value})


def test_redis_timeouts_come_from_an_engine_uri_too() -> None:
    engine: Any = engines.load(
        _flow(), engine="worker-based://?socket_timeout=2.5&outage_timeout=7", url="redis://127.0.0.1:1/0"
    )
    assert (engine._socket_timeout, engine._outage_timeout) == (2.5, 7.0)
