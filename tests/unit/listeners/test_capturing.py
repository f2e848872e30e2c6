"""Behaviour of :mod:`flowkit.listeners.capturing`."""

from __future__ import annotations

from typing import Any

from flowkit.listeners import capturing

from ._fakes import FLOW_NAME, FLOW_UUID, FakeEngine


class StringCapture(capturing.CaptureListener):
    """The compact ``name.k STATE(result)`` strings TaskFlow-style tests compare."""

    @staticmethod
    def _format_capture(kind: str, state: str, details: dict[str, Any]) -> Any:
        name = f"{details[kind + '_name']}.{kind[0]}"
        if "result" in details:
            return f"{name} {state}({details['result']})"
        return f"{name} {state}"


def _run_story(engine: FakeEngine) -> None:
    engine.flow("RUNNING", "PENDING")
    engine.retry("r", "RUNNING", "PENDING")
    engine.retry("r", "SUCCESS", "RUNNING", result=1)
    engine.task("a", "RUNNING", "PENDING")
    engine.progress("a", 0.5)
    engine.task("a", "SUCCESS", "RUNNING", result=5)
    engine.flow("SUCCESS", "RUNNING")


def test_capture_stores_kind_state_and_details_tuples(engine: FakeEngine) -> None:
    with capturing.CaptureListener(engine) as capture:
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING", result=5)
        engine.retry("r", "RUNNING", "PENDING")
    assert capture.values == [
        (
            "flow",
            "RUNNING",
            {"engine": engine, "flow_name": FLOW_NAME, "flow_uuid": FLOW_UUID, "old_state": "PENDING"},
        ),
        ("task", "SUCCESS", {"task_name": "a", "task_uuid": "a-uuid", "old_state": "RUNNING", "result": 5}),
        ("retry", "RUNNING", {"retry_name": "r", "retry_uuid": "r-uuid", "old_state": "PENDING"}),
    ]


def test_capture_kinds_are_taskflows() -> None:
    assert (
        capturing.CaptureListener.FLOW,
        capturing.CaptureListener.TASK,
        capturing.CaptureListener.RETRY,
    ) == (
        "flow",
        "task",
        "retry",
    )


def test_format_capture_can_be_overridden(engine: FakeEngine) -> None:
    with StringCapture(engine) as capture:
        _run_story(engine)
    assert capture.values == [
        "flow-1.f RUNNING",
        "r.r RUNNING",
        "r.r SUCCESS(1)",
        "a.t RUNNING",
        "a.t SUCCESS(5)",
        "flow-1.f SUCCESS",
    ]


def test_capture_flags_turn_whole_kinds_off(engine: FakeEngine) -> None:
    with StringCapture(engine, capture_flow=False, capture_retry=False) as capture:
        _run_story(engine)
    assert capture.values == ["a.t RUNNING", "a.t SUCCESS(5)"]


def test_capture_task_false_keeps_flows_and_retries(engine: FakeEngine) -> None:
    with StringCapture(engine, capture_task=False) as capture:
        _run_story(engine)
    assert capture.values == ["flow-1.f RUNNING", "r.r RUNNING", "r.r SUCCESS(1)", "flow-1.f SUCCESS"]


def test_capture_skips_named_tasks_retries_and_flows(engine: FakeEngine) -> None:
    with StringCapture(engine, skip_tasks=["a"], skip_retries=["r"], skip_flows=[FLOW_NAME]) as capture:
        _run_story(engine)
        engine.task("b", "RUNNING", "PENDING")
    assert capture.values == ["b.t RUNNING"]


def test_capture_honours_listen_for(engine: FakeEngine) -> None:
    listener = StringCapture(
        engine, task_listen_for=["SUCCESS"], flow_listen_for=["SUCCESS"], retry_listen_for=()
    )
    with listener as capture:
        _run_story(engine)
    assert capture.values == ["a.t SUCCESS(5)", "flow-1.f SUCCESS"]


def test_capture_appends_to_a_given_list(engine: FakeEngine) -> None:
    shared = ["earlier"]
    with StringCapture(engine, values=shared, capture_task=False, capture_retry=False) as capture:
        engine.flow("RUNNING", "PENDING")
    assert capture.values is shared
    assert shared == ["earlier", "flow-1.f RUNNING"]


def test_capture_stops_after_deregister(engine: FakeEngine) -> None:
    with StringCapture(engine) as capture:
        engine.flow("RUNNING", "PENDING")
    engine.flow("SUCCESS", "RUNNING")
    assert capture.values == ["flow-1.f RUNNING"]
    assert not engine.has_listeners
