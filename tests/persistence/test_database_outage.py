"""A durable engine run on PostgreSQL while the server stops and starts again (a restart, a fail-over).

Two outcomes, both documented in doc/persistence.rst: with the default retries
(well under a second of waiting) the run stops with a ``StorageFailure`` naming
the masked URL, the stored flow stays as of the last write and a new engine on
it finishes the flow; with ``max_retries`` enough to outlast the restart, the
same run carries on by itself. Either way, no atom that finished runs again
and nothing is written twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.persistence.base import Backend
from tests import services
from tests.conftest import wait_until
from tests.gate import Gate, held

__all__: list[str] = []

#: Bounded wait for a run thread (the outage itself lasts a server restart).
RUN_TIMEOUT = 60.0


GATE = Gate(RUN_TIMEOUT)


class Step(task.Task):
    def execute(self) -> str:
        GATE.calls.append(self.name)
        return self.name


class Gated(task.Task):
    """Waits (bounded) for the test's go after saying it is running."""

    def execute(self) -> str:
        GATE.calls.append(self.name)
        GATE.enter()
        return self.name


def make_flow() -> linear_flow.Flow:
    return linear_flow.Flow("outage").add(Step("a"), Gated("b"), Step("c"))


@pytest.fixture
def gate() -> Iterator[Gate]:
    yield from held(GATE)


def _backend(url: str, query: str = "") -> Backend:
    backend = backends.fetch({"connection": url + query})
    with backend.get_connection() as conn:
        conn.upgrade()
    return backend


def _stored(backend: Backend, flow_uuid: str) -> tuple[str, dict[str, str]]:
    with backend.get_connection() as conn:
        fd = conn.get_flow_details(flow_uuid)
    return fd.state, {ad.name: ad.state for ad in fd}


@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_the_default_run_stops_naming_the_masked_url_and_a_new_engine_finishes_it(
    kind: str,
    postgresql_server: services.PostgresServer,
    postgresql_db_url: str,
    gate: Gate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = postgresql_db_url.replace("flowkit@", "flowkit:s3cret@")
    backend = _backend(url)
    try:
        engine = engines.load(make_flow(), backend=backend, engine=kind)
        flow_uuid = engine.storage.flow_uuid
        thread, outcome = services.start_run(engine)
        assert gate.inside.wait(RUN_TIMEOUT), "the gated atom never ran"
        postgresql_server.stop()
        try:
            gate.go.set()  # 'b' finishes while the database is away
            thread.join(RUN_TIMEOUT)
            assert outcome, "the run hung while the database was away"
        finally:
            postgresql_server.start()
        error = outcome[0]
        assert isinstance(error, exceptions.StorageFailure), repr(error)
        assert "flowkit:***@127.0.0.1" in error.message and "s3cret" not in str(error)
        # The outage is reported once, as the run's error: no traceback logged beside it.
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
        # Stored as of the last write: 'b' in doubt, 'c' not run, nothing half written.
        assert _stored(backend, flow_uuid) == (
            states.RUNNING,
            {"a": states.SUCCESS, "b": states.RUNNING, "c": states.PENDING},
        )
        with backend.get_connection() as conn:
            fd = conn.get_flow_details(flow_uuid)
        gate.calls.clear()
        engines.load(make_flow(), backend=backend, flow_detail=fd, book=None, engine=kind).run()
        assert gate.calls == ["b", "c"]  # 'a' is not run again; 'b' was in doubt
        assert _stored(backend, flow_uuid) == (states.SUCCESS, dict.fromkeys("abc", states.SUCCESS))
    finally:
        backend.close()


def test_with_retries_that_outlast_the_restart_the_run_carries_on(
    postgresql_server: services.PostgresServer,
    postgresql_db_url: str,
    gate: Gate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 0.05 s doubling to at most 2 s a wait: 14 retries wait about 19 s in all.
    backend = _backend(postgresql_db_url, "?max_retries=14")
    caplog.set_level(logging.WARNING, "flowkit.persistence.backends.impl_sqlalchemy")
    try:
        engine = engines.load(make_flow(), backend=backend)
        flow_uuid = engine.storage.flow_uuid
        thread, outcome = services.start_run(engine)
        assert gate.inside.wait(RUN_TIMEOUT), "the gated atom never ran"
        postgresql_server.stop()
        try:
            gate.go.set()
            # The run is retrying its write while the server is away.
            wait_until(lambda: "transient database error" in caplog.text, timeout=RUN_TIMEOUT)
            assert not outcome, f"the run ended during the outage: {outcome[0]!r}"
        finally:
            postgresql_server.start()
        thread.join(RUN_TIMEOUT)
        assert outcome == [None], f"the run failed: {outcome!r}"
        assert gate.calls == ["a", "b", "c"]
        assert _stored(backend, flow_uuid) == (states.SUCCESS, dict.fromkeys("abc", states.SUCCESS))
    finally:
        backend.close()
