"""What listeners hear: state sequences, notification details, progress."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest

from flowkit import engines, retry, states, task
from flowkit.listeners.capturing import CaptureListener
from flowkit.patterns import linear_flow

from ._tasks import Boom, FailTimes, Recorder, ReportsHalfway, Step


class Capture(CaptureListener):
    @staticmethod
    def _format_capture(kind: str, state: str, details: dict[str, Any]) -> Any:
        return (details[f"{kind}_name"], state)


class Progressing(task.Task):
    def execute(self) -> str:
        self.update_progress(0.25)
        self.update_progress(0.5)
        return "done"


def _atom_events(engine: Any) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    engine.atom_notifier.register(
        engine.atom_notifier.ANY, lambda state, details: events.append((state, details))
    )
    return events


def test_capture_listener_sees_each_state_of_a_successful_run(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec), Step("b", rec)), engine=engine_kind)
    with Capture(engine) as capture:
        engine.run()
    assert capture.values == [
        ("f", states.RUNNING),
        ("a", states.RUNNING),
        ("a", states.SUCCESS),
        ("b", states.RUNNING),
        ("b", states.SUCCESS),
        ("f", states.SUCCESS),
    ]


def test_capture_listener_sees_each_state_of_a_reverted_run(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec)), engine=engine_kind)
    with Capture(engine) as capture, pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert capture.values == [
        ("f", states.RUNNING),
        ("a", states.RUNNING),
        ("a", states.SUCCESS),
        ("b", states.RUNNING),
        ("b", states.FAILURE),
        ("b", states.REVERTING),
        ("b", states.REVERTED),
        ("a", states.REVERTING),
        ("a", states.REVERTED),
        ("f", states.REVERTED),
    ]


def test_capture_listener_sees_a_retry_go_round(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(FailTimes("t", rec, times=1))
    engine = engines.load(flow, engine=engine_kind)
    with Capture(engine) as capture:
        engine.run()
    assert capture.values == [
        ("f", states.RUNNING),
        ("r", states.RUNNING),
        ("r", states.SUCCESS),
        ("t", states.RUNNING),
        ("t", states.FAILURE),
        ("t", states.REVERTING),
        ("t", states.REVERTED),
        ("r", states.RETRYING),
        ("t", states.PENDING),
        ("r", states.RUNNING),
        ("r", states.SUCCESS),
        ("t", states.RUNNING),
        ("t", states.SUCCESS),
        ("f", states.SUCCESS),
    ]


def test_task_notifications_carry_taskflows_detail_keys(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(Step("a", rec, value=7), engine=engine_kind)
    events = _atom_events(engine)
    engine.run()
    changes = [(state, d) for state, d in events if state != "update_progress"]
    assert [state for state, _ in changes] == [states.RUNNING, states.SUCCESS]
    uuid = engine.storage.get_atom_uuid("a")
    running, success = changes[0][1], changes[1][1]
    assert running == {"task_name": "a", "task_uuid": uuid, "old_state": states.PENDING}
    assert success == {"task_name": "a", "task_uuid": uuid, "old_state": states.RUNNING, "result": 7}


def test_a_failure_notification_carries_the_failure_as_result(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(Boom("a", rec), engine=engine_kind)
    events = _atom_events(engine)
    with pytest.raises(ValueError, match="a failed"):
        engine.run()
    by_state = dict(events)
    assert by_state[states.FAILURE]["result"].check(ValueError)
    assert by_state[states.REVERTED]["result"] == "undid a"
    assert "result" not in by_state[states.REVERTING]


def test_retry_notifications_carry_retry_name_and_uuid(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(Step("t", rec))
    engine = engines.load(flow, engine=engine_kind)
    events = _atom_events(engine)
    engine.run()
    retry_events = [(state, d) for state, d in events if "retry_name" in d]
    assert [state for state, _ in retry_events] == [states.RUNNING, states.SUCCESS]
    uuid = engine.storage.get_atom_uuid("r")
    assert retry_events[1][1] == {
        "retry_name": "r",
        "retry_uuid": uuid,
        "old_state": states.RUNNING,
        "result": 1,
    }
    assert all("task_name" not in d for _, d in retry_events)


def test_flow_notifications_carry_engine_flow_name_uuid_and_old_state(
    engine_kind: str, rec: Recorder
) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec)), engine=engine_kind)
    events: list[tuple[str, dict[str, Any]]] = []
    engine.notifier.register(engine.notifier.ANY, lambda state, details: events.append((state, details)))
    engine.run()
    assert [state for state, _ in events] == [states.RUNNING, states.SUCCESS]
    for _, details in events:
        assert set(details) == {"engine", "flow_name", "flow_uuid", "old_state"}
        assert details["engine"] is engine
        assert details["flow_name"] == "f"
        assert details["flow_uuid"] == engine.storage.flow_uuid
    assert events[1][1]["old_state"] == states.RUNNING


def test_progress_updates_reach_the_atom_notifier(engine_kind: str) -> None:
    engine = engines.load(Progressing("p"), engine=engine_kind)
    progress: list[dict[str, Any]] = []
    engine.atom_notifier.register("update_progress", lambda event, details: progress.append(details))
    engine.run()
    # As on the task's own notifier (TaskFlow): 0.0 when it starts, 1.0 when it is done.
    assert [d["progress"] for d in progress] == [0.0, 0.25, 0.5, 1.0]
    uuid = engine.storage.get_atom_uuid("p")
    assert all(d["task_name"] == "p" and d["task_uuid"] == uuid for d in progress)
    assert engine.storage.get_task_progress("p") == 1.0


class Finishes(task.Task):
    def execute(self) -> None:
        self.update_progress(0.5)
        self.update_progress(1.0)


def test_a_task_that_reports_done_itself_is_heard_at_one_twice_as_on_taskflow(engine_kind: str) -> None:
    # TaskFlow 6.5 gives [0.0, 0.5, 1.0, 1.0] on its serial, parallel and
    # worker-based engines: the task's own report, then the engine's at SUCCESS.
    finishes = Finishes("f")
    own: list[float] = []
    finishes.notifier.register("update_progress", lambda event, details: own.append(details["progress"]))
    engine = engines.load(finishes, engine=engine_kind)
    announced: list[float] = []
    engine.atom_notifier.register(
        "update_progress", lambda event, details: announced.append(details["progress"])
    )

    engine.run()

    assert own == announced == [0.0, 0.5, 1.0, 1.0]


def test_any_listeners_see_state_changes_only_as_on_taskflow(engine_kind: str) -> None:
    # TaskFlow never sent progress to atom_notifier; an ANY listener written for it
    # (reading details["old_state"]) must not start receiving progress events.
    engine = engines.load(Progressing("p"), engine=engine_kind)
    events = _atom_events(engine)
    engine.run()
    assert [state for state, _details in events] == [states.RUNNING, states.SUCCESS]
    assert all("old_state" in details for _state, details in events)


class ProgressingWhere(task.Task):
    """Reports progress and says which thread it ran in."""

    def execute(self) -> int:
        self.update_progress(0.5)
        return threading.get_ident()


def test_progress_from_another_thread_is_recorded_and_announced_in_the_engine_thread(
    engine_kind: str,
) -> None:
    # The engine thread is the only writer of a run's records: a report made in a
    # pool worker or an event loop's thread travels through the completion queue.
    engine = engines.load(ProgressingWhere("p", provides="ran_in"), engine=engine_kind)
    heard: list[tuple[float, int]] = []
    engine.atom_notifier.register(
        "update_progress", lambda event, details: heard.append((details["progress"], threading.get_ident()))
    )
    engine.run()
    here = threading.get_ident()
    if engine_kind != "serial":
        assert engine.storage.fetch("ran_in") != here  # or the test proves nothing
    assert heard == [(0.0, here), (0.5, here), (1.0, here)]
    assert engine.storage.get_task_progress("p") == 1.0


def test_progress_relayed_from_a_child_process_is_announced_in_the_engine_thread() -> None:
    with multiprocessing.Manager() as manager:
        arrived = manager.Event()
        engine = engines.load(
            ReportsHalfway("p", provides="finished"),
            store={"heard": arrived},
            engine="parallel",
            executor="processes",
            max_workers=1,
        )
        heard: list[tuple[float, int]] = []

        def on_progress(event: str, details: dict[str, Any]) -> None:
            heard.append((details["progress"], threading.get_ident()))
            if details["progress"] == 0.5:
                arrived.set()

        engine.atom_notifier.register("update_progress", on_progress)
        engine.run()
    here = threading.get_ident()
    assert engine.storage.fetch("finished") is True
    assert heard == [(0.0, here), (0.5, here), (1.0, here)]


def test_progress_a_child_reports_just_before_it_returns_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reports travel on a pipe of their own, read by a relay thread; when that
    # thread had not read them yet as the call's result came back, the engine
    # dropped them as stale (about 8% of reports of quick tasks). The relay thread
    # is held here until the pool closes, the worst case of that race.
    from flowkit.engines import _process_progress

    closing = threading.Event()
    pump, close = _process_progress.ProgressRelay._pump, _process_progress.ProgressRelay.close

    def late_pump(relay: Any) -> None:
        closing.wait()
        pump(relay)

    def closing_close(relay: Any) -> None:
        closing.set()
        close(relay)

    monkeypatch.setattr(_process_progress.ProgressRelay, "_pump", late_pump)
    monkeypatch.setattr(_process_progress.ProgressRelay, "close", closing_close)
    engine = engines.load(Progressing("p"), engine="parallel", executor="processes", max_workers=1)
    heard: list[float] = []
    engine.atom_notifier.register("update_progress", lambda event, details: heard.append(details["progress"]))
    engine.run()
    assert heard == [0.0, 0.25, 0.5, 1.0]


def test_progress_is_stored_even_with_no_listener(engine_kind: str) -> None:
    engine = engines.load(Progressing("p"), engine=engine_kind)
    engine.run()
    assert engine.storage.get_task_progress("p") == 1.0


def test_progress_updates_reach_listeners_on_the_tasks_own_notifier(engine_kind: str) -> None:
    seen: list[float] = []
    progressing = Progressing("p")
    progressing.notifier.register("update_progress", lambda event, details: seen.append(details["progress"]))
    engines.run(progressing, engine=engine_kind)
    assert seen == [0.0, 0.25, 0.5, 1.0]


def test_capture_listener_ignores_progress_events(engine_kind: str) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Progressing("p")), engine=engine_kind)
    with Capture(engine) as capture:
        engine.run()
    assert capture.values == [
        ("f", states.RUNNING),
        ("p", states.RUNNING),
        ("p", states.SUCCESS),
        ("f", states.SUCCESS),
    ]
