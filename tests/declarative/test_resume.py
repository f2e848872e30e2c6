"""A spec's flow is an ordinary flow: persisted to SQLite, stopped, and resumed by a fresh load."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from flowkit import declarative, engines, states
from flowkit.persistence import backends
from flowkit.types.notifier import Notifier
from tests.declarative import tasks

SPEC = {
    "name": "resumable",
    "tasks": {
        "a": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": 1}},
        "b": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": {"v": "${a}"}}},
        "c": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": "got ${b.v}"}},
    },
}


def test_a_suspended_spec_flow_resumes_from_sqlite(tmp_path: Path) -> None:
    tasks.CALLS.clear()
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    try:
        engine = engines.load(declarative.load_flow(SPEC), backend=backend)

        def stop_after_b(state: str, details: dict[str, Any]) -> None:
            if details["task_name"] == "b" and state == states.SUCCESS:
                engine.suspend()

        engine.atom_notifier.register(Notifier.ANY, stop_after_b)
        engine.run()
        assert engine.storage.get_flow_state() == states.SUSPENDED
        flow_uuid = engine.storage.flow_uuid
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(flow_uuid)

        resumed = engines.load(declarative.load_flow(SPEC), flow_detail=detail, backend=backend)
        resumed.run()
        assert resumed.storage.get_flow_state() == states.SUCCESS
        assert resumed.storage.fetch_all() == {"a": 1, "b": {"v": 1}, "c": "got 1"}
        assert [name for name, _ in tasks.CALLS] == ["a", "b", "c"]
    finally:
        backend.close()
