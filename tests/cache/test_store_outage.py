"""A cache store whose server (PostgreSQL, Redis) stops in the middle of a run, then comes back.

A cache is there to save time: the run goes on uncached, with one WARNING
naming the atom and the store (password masked), rather than failing the
atom and reverting the whole flow as a lookup failure once did. Once the
server is back, the next run uses the store again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines, states, task
from flowkit.cache import open_store
from flowkit.patterns import linear_flow
from tests import services
from tests.gate import Gate, held

__all__: list[str] = []

#: Bounded wait for the gated atom and for a run thread.
RUN_TIMEOUT = 60.0


GATE = Gate(RUN_TIMEOUT)


class Gated(task.Task):
    """Runs first; waits (bounded) for the test to stop the store's server and let it go."""

    def execute(self) -> int:
        GATE.enter()
        return 1


class Double(task.Task):
    cache = True
    default_provides = "y"

    def execute(self, x: int) -> int:
        GATE.calls.append(x)
        return x * 2


class Last(task.Task):
    default_provides = "z"

    def execute(self, y: int) -> int:
        return y + 1


def make_flow() -> linear_flow.Flow:
    return linear_flow.Flow("cached").add(Gated("gated"), Double("double"), Last("last"))


@pytest.fixture
def gate() -> Iterator[Gate]:
    yield from held(GATE)


def _run(url: str, x: int) -> Any:
    GATE.go.set()
    engine = engines.load(make_flow(), store={"x": x}, cache=url)
    engine.run()
    return engine


def _run_through_an_outage(server: Any, url: str, x: int) -> tuple[Any, list[BaseException | None]]:
    """Run the flow, stopping ``server`` while the first atom runs; start it again once the run ended."""
    engine = engines.load(make_flow(), store={"x": x}, cache=url)
    thread, outcome = services.start_run(engine)
    assert GATE.inside.wait(RUN_TIMEOUT), "the gated atom never ran"
    server.stop()
    try:
        GATE.go.set()
        thread.join(RUN_TIMEOUT)
        assert outcome, "the run hung while the cache store was away"
    finally:
        server.start()
    return engine, outcome


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_run_goes_on_uncached_while_its_store_restarts_and_the_next_run_uses_it_again(
    kind: str, request: pytest.FixtureRequest, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flowkit")
    if kind == "postgresql":
        server: Any = request.getfixturevalue("postgresql_server")
        # A password in the URL (trust auth ignores it): the warning must mask it.
        url = str(request.getfixturevalue("postgresql_db_url")).replace("flowkit@", "flowkit:s3cret@")
        shown = url.replace("s3cret", "***")
    else:
        server = request.getfixturevalue("redis_server")
        url = shown = str(request.getfixturevalue("redis_flushed_url"))
    _run(url, 5)  # the store is open and holds x=5's entry
    gate.go.clear()
    gate.inside.clear()
    gate.calls.clear()
    engine, outcome = _run_through_an_outage(server, url, 7)
    assert outcome == [None], f"the run failed with its cache store away: {outcome!r}"
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch("z") == 15
    assert gate.calls == [7]  # run, uncached
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    said = [m for m in warnings if "atom 'double'" in m and "runs uncached" in m]
    assert len(said) == 1, warnings
    assert shown in said[0], said[0]
    assert "s3cret" not in " ".join(warnings)
    # Back: the next runs use the store again (a stored entry is a hit).
    gate.calls.clear()
    _run(url, 9)
    _run(url, 9)
    assert gate.calls == [9]


def test_a_sql_store_whose_database_restarted_since_its_last_call_serves_the_next_one(
    postgresql_server: Any, postgresql_db_url: str
) -> None:
    # The store keeps one connection, which the restart ends: the next call used to fail
    # on it (in a run: a WARNING and the call run uncached) although the database was back.
    store = open_store(postgresql_db_url)
    try:
        store.put("a" * 64, "1")
        postgresql_server.stop()
        postgresql_server.start()
        assert store.get("a" * 64) == "1"
        store.put("b" * 64, "2")
        assert store.get("b" * 64) == "2"
    finally:
        store.close()
