"""The causal event log is kept with the flow detail in every backend, written with the states."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.listeners.events import META_KEY, EventLog, EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from tests.cli._flows import CardDeclined, make_shop


def test_the_event_log_is_kept_with_the_flow_detail_in_every_backend(backend_url: str) -> None:
    backend = backends.fetch({"connection": backend_url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        engine = engines.load(make_shop(), store={"amount": 500}, backend=backend)
        with EventLogListener(engine) as events, pytest.raises(CardDeclined):
            engine.run()
        recorded = events.log.to_list()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        log = EventLog.from_flow_detail(detail)
    finally:
        backend.close()
    assert log.to_list() == recorded
    states = {(e.name, e.state) for e in log}
    assert {("charge", "FAILURE"), ("reserve", "REVERTED"), ("shop", "REVERTED")} <= states
    # The chain behind reserve's revert reaches the failure that caused it.
    assert [e.state for e in log.why("reserve")] == ["REVERTED", "REVERTING", "FAILURE"]


class Peek(task.Task):
    """Returns the states of the events its own atom detail holds in the database now."""

    def execute(self, url: str) -> list[str]:
        with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
            for book in conn.get_logbooks():
                for flow in book:
                    for detail in flow:
                        if detail.name == self.name:
                            return [e["state"] for e in (detail.meta or {}).get(META_KEY, ())]
        return []


def test_a_persisted_run_writes_each_event_with_the_state_it_explains(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend(url) as backend:
        flow = linear_flow.Flow("peek").add(Peek("first", provides="a"), Peek("second", provides="b"))
        engine = engines.load(flow, store={"url": url}, backend=backend)
        with EventLogListener(engine):
            engine.run()
    # While it ran, each task's RUNNING state and the event saying why were already saved together.
    assert engine.storage.fetch("a") == ["RUNNING"]
    assert engine.storage.fetch("b") == ["RUNNING"]


def test_a_run_kept_in_memory_hands_its_events_over_when_asked_and_at_the_end() -> None:
    seen: dict[str, Any] = {}

    class Look(task.Task):
        def execute(self) -> None:
            seen["before"] = dict(engine.storage.get_atom_metadata("a"))
            seen["log"] = [(e.name, e.state) for e in listener.log if e.kind == "task"]
            seen["after"] = dict(engine.storage.get_atom_metadata("a"))

    flow = linear_flow.Flow("mem").add(Look("a"))
    engine = engines.load(flow)
    listener = EventLogListener(engine)
    with listener:
        engine.run()
    # Held by the listener while the run went on; reading the log handed it over.
    assert META_KEY not in seen["before"]
    assert seen["log"] == [("a", "RUNNING")]
    assert [e["state"] for e in seen["after"][META_KEY]] == ["RUNNING"]
    final = EventLog.from_flow_detail(engine.storage.flow_detail)
    assert [(e.name, e.state) for e in final if e.kind == "task"] == [("a", "RUNNING"), ("a", "SUCCESS")]
