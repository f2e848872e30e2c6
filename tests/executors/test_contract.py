"""The executor contract: what a flow's run gives back does not depend on where its tasks ran.

Every test runs on each executor of ``conftest.EXECUTORS``; tasks are in
``tasks.py`` so that other processes (a process pool, Dask workers) and task
workers can import them.
"""

from __future__ import annotations

import os

import pytest

from flowkit import exceptions as exc
from flowkit import states, task
from flowkit.patterns import linear_flow, unordered_flow
from tests.executors.conftest import Load
from tests.executors.tasks import Add, Announces, AnnouncesTwice, Boom, Double, Pid, Progress, Undoable


def test_results_pass_from_task_to_task(run_on: Load) -> None:
    engine = run_on(linear_flow.Flow("f").add(Double(), Add()), store={"x": 20, "y": 2})
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert (engine.storage.fetch("doubled"), engine.storage.fetch("total")) == (40, 42)


def test_independent_tasks_each_run_once(run_on: Load) -> None:
    flow = unordered_flow.Flow("u").add(
        *(Double(f"d{i}", provides=f"d{i}", inject={"x": i}) for i in range(6))
    )
    engine = run_on(flow)
    engine.run()
    assert [engine.storage.fetch(f"d{i}") for i in range(6)] == [0, 2, 4, 6, 8, 10]


def test_results_come_back_as_the_task_returned_them(run_on: Load) -> None:
    engine = run_on(linear_flow.Flow("f").add(Undoable()), store={"x": 1})
    engine.run()
    assert engine.storage.get(Undoable().name) == {"x": 1, "items": [1, 2]}


def test_a_failure_reverts_the_finished_tasks_with_their_result_and_the_failure(run_on: Load) -> None:
    engine = run_on(linear_flow.Flow("f").add(Undoable(), Boom()), store={"x": 7})
    with pytest.raises((ValueError, exc.WrappedFailure), match="boom 7"):
        engine.run()
    storage = engine.storage
    assert storage.get_flow_state() == states.REVERTED
    assert storage.get_atom_state(Undoable().name) == states.REVERTED
    assert storage.get_revert_result(Undoable().name) == {
        "result": {"x": 7, "items": [1, 2]},
        "failed_with": "boom 7",
    }
    [failure] = storage.get_execute_failures().values()
    assert failure.check(ValueError) is ValueError and failure.exception_str == "boom 7"


#: Executors whose tasks run in another process: their failures come back as records,
#: without the live exception, so the run raises WrappedFailure around them (as TaskFlow's do).
OUT_OF_PROCESS = ("processes", "dask", "workers")


def test_the_run_raises_the_tasks_error_or_a_wrapped_failure_of_its_type(
    executor_kind: str, run_on: Load
) -> None:
    engine = run_on(linear_flow.Flow("f").add(Boom()), store={"x": 1})
    with pytest.raises(Exception) as raised:
        engine.run()
    if executor_kind in OUT_OF_PROCESS:
        assert isinstance(raised.value, exc.WrappedFailure)
        [failure] = list(raised.value)
        assert failure.check(ValueError) is ValueError and failure.exception_str == "boom 1"
    else:
        assert type(raised.value) is ValueError and str(raised.value) == "boom 1"


def test_progress_reports_reach_the_tasks_own_listeners(run_on: Load) -> None:
    progress = Progress()
    seen: list[float] = []
    progress.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event_type, details: seen.append(details["progress"])
    )
    run_on(linear_flow.Flow("f").add(progress)).run()
    assert seen == [0.0, 0.5, 1.0]


def test_events_a_task_notifies_reach_its_own_listeners(run_on: Load) -> None:
    announces = Announces()
    heard: list[tuple[str, object]] = []
    announces.notifier.register(
        announces.notifier.ANY, lambda event_type, details: heard.append((event_type, details))
    )
    run_on(linear_flow.Flow("f").add(announces)).run()
    assert [(event, details) for event, details in heard if event != task.EVENT_UPDATE_PROGRESS] == [
        ("disk-full", {"left": 3})
    ]


def test_an_event_that_cannot_leave_the_tasks_process_is_dropped_and_the_run_goes_on(
    executor_kind: str, run_on: Load
) -> None:
    announces = AnnouncesTwice()
    heard: list[str] = []
    announces.notifier.register(announces.notifier.ANY, lambda event_type, details: heard.append(event_type))
    engine = run_on(linear_flow.Flow("f").add(announces))
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    crossed = executor_kind not in OUT_OF_PROCESS  # in this process nothing needs to cross
    assert [event for event in heard if event != task.EVENT_UPDATE_PROGRESS] == (
        ["odd", "fine"] if crossed else ["fine"]
    )


def test_tasks_run_in_this_process_unless_the_executor_is_a_process_pool_or_cluster(
    executor_kind: str, run_on: Load
) -> None:
    # Task workers on the memory transport run in this process too (in their own threads).
    engine = run_on(linear_flow.Flow("f").add(Pid()))
    engine.run()
    elsewhere = engine.storage.get(Pid().name) != os.getpid()
    assert elsewhere == (executor_kind in ("processes", "dask")), executor_kind
