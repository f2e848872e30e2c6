"""An atom detail's metadata holds ``progress`` once its task's progress was set, as in TaskFlow.

TaskFlow 6.5 writes ``meta["progress"]`` when the engine sets a task's progress
(0.0 as it starts running or reverting, 1.0 when it succeeds or is reverted, 0.0
when a reset or a skip changes its state) or the task reports some. A retry's
metadata never holds it, nor does a task's that never ran; the expected
metadata below is what TaskFlow 6.5 stores for the same flows.
``Storage.get_task_progress`` answers 0.0 for a task whose progress was never set.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, retry, states, task
from flowkit.patterns import graph_flow, linear_flow
from flowkit.persistence import backends
from flowkit.persistence.models import FlowDetail, LogBook, RetryDetail, TaskDetail


class Plain(task.Task):
    def execute(self) -> int:
        return 1


class Reports(task.Task):
    def execute(self) -> int:
        self.update_progress(0.5)
        return 2


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("boom")


def _metas(flow_detail: Any) -> dict[str, dict[str, Any]]:
    return {detail.name: dict(detail.meta or {}) for detail in flow_detail}


def _ran(flow: Any, **kwargs: Any) -> Any:
    engine = engines.load(flow, **kwargs)
    with contextlib.suppress(RuntimeError):
        engine.run()
    return engine


def test_a_successful_run_sets_progress_for_its_tasks_and_not_for_its_retry(engine_kind: str) -> None:
    flow = linear_flow.Flow("ok", retry=retry.Times(2, "r")).add(Plain("plain"), Reports("rep"))
    engine = _ran(flow, engine=engine_kind)
    assert _metas(engine.storage.flow_detail) == {
        "r": {},
        "plain": {"progress": 1.0},
        "rep": {"progress": 1.0, "progress_details": None},
    }


def test_a_reverted_run_leaves_a_task_that_never_ran_without_progress(engine_kind: str) -> None:
    flow = linear_flow.Flow("bad", retry=retry.Times(2, "r")).add(
        Plain("plain"), Reports("rep"), Boom("boom"), Plain("never")
    )
    engine = _ran(flow, engine=engine_kind)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert _metas(engine.storage.flow_detail) == {
        "r": {},
        "plain": {"progress": 1.0},
        "rep": {"progress": 1.0, "progress_details": None},
        "boom": {"progress": 1.0},
        "never": {},
    }
    assert engine.storage.get_task_progress("never") == 0.0


def test_a_prepared_flow_holds_no_progress_and_a_skipped_task_holds_0() -> None:
    engine = engines.load(linear_flow.Flow("nr").add(Plain("plain")))
    engine.compile()
    engine.prepare()
    assert _metas(engine.storage.flow_detail) == {"plain": {}}
    assert engine.storage.get_task_progress("plain") == 0.0

    a, skipped = Plain("a"), Plain("skipped")
    flow = graph_flow.Flow("g").add(a, skipped)
    flow.link(a, skipped, decider=lambda history: False)
    engine = _ran(flow)
    assert _metas(engine.storage.flow_detail) == {"a": {"progress": 1.0}, "skipped": {"progress": 0.0}}


def test_what_is_stored_holds_progress_only_where_it_was_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    flow = linear_flow.Flow("bad", retry=retry.Times(2, "r")).add(
        Plain("plain"), Boom("boom"), Plain("never")
    )
    with backends.backend(url) as backend:
        uuid = _ran(flow, backend=backend).storage.flow_uuid
    with backends.backend(url) as backend, backend.get_connection() as conn:
        stored = conn.get_flow_details(uuid)
    assert _metas(stored) == {
        "r": {},
        "plain": {"progress": 1.0},
        "boom": {"progress": 1.0},
        "never": {},
    }


def test_records_stored_with_progress_everywhere_stay_readable(tmp_path: Path) -> None:
    # Written by earlier flowkit releases: every atom detail held a progress, retries too.
    url = f"sqlite:///{tmp_path}/old.db"
    book = LogBook("old")
    detail = FlowDetail("ok", str(uuid.uuid4()))
    book.add(detail)
    for name, cls in (("r", RetryDetail), ("plain", TaskDetail), ("rep", TaskDetail)):
        atom = cls(name, str(uuid.uuid4()))
        atom.meta = {"progress": 0.0}
        detail.add(atom)
    with backends.backend(url) as backend, backend.get_connection() as conn:
        conn.save_logbook(book)
    flow = linear_flow.Flow("ok", retry=retry.Times(2, "r")).add(Plain("plain"), Reports("rep"))
    with backends.backend(url) as backend:
        engine = engines.load(flow, backend=backend, book=book, flow_detail=detail)
        assert engine.storage.get_task_progress("plain") == 0.0
        engine.run()
        assert engine.storage.get_task_progress("plain") == 1.0
    with backends.backend(url) as backend, backend.get_connection() as conn:
        stored = conn.get_flow_details(detail.uuid)
    metas = _metas(stored)
    assert metas["plain"] == {"progress": 1.0}
    assert metas["r"] == {"progress": 0.0}  # kept as it was stored


@pytest.mark.parametrize("progress", [0.0, 0.25])
def test_a_task_that_never_ran_reads_its_stored_progress(progress: float) -> None:
    detail = FlowDetail("nr", str(uuid.uuid4()))
    atom = TaskDetail("plain", str(uuid.uuid4()))
    atom.meta = {"progress": progress}
    detail.add(atom)
    engine = engines.load(linear_flow.Flow("nr").add(Plain("plain")), flow_detail=detail)
    engine.compile()
    engine.prepare()
    assert engine.storage.get_task_progress("plain") == progress
    assert _metas(engine.storage.flow_detail) == {"plain": {"progress": progress}}
