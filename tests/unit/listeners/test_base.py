"""Behaviour of :mod:`flowkit.listeners.base`: attaching, routing, filtering, dumping."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowkit.listeners import base
from flowkit.types.failure import Failure
from flowkit.types.notifier import Notifier, RestrictedNotifier

from ._fakes import FLOW_NAME, FLOW_UUID, FakeEngine


class Recording(base.Listener):
    """Remembers what each receiver heard."""

    def __init__(self, engine: Any, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.heard: list[tuple[str, str, dict[str, Any]]] = []

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.heard.append(("flow", state, details))

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.heard.append(("task", state, details))

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.heard.append(("retry", state, details))

    def kinds_and_states(self) -> list[tuple[str, str]]:
        return [(kind, state) for kind, state, _ in self.heard]


class FlowOnly(base.Listener):
    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.states: list[str] = []

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.states.append(state)


class Dumps(base.DumpingListener):
    """A dumping listener that keeps its formatted lines."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.lines: list[str] = []
        self.exc_infos: list[Any] = []

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(message % args)
        self.exc_infos.append(kwargs.get("exc_info"))


def _raise_failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


# -- attaching ------------------------------------------------------------------


def test_register_attaches_to_both_notifiers_and_deregister_detaches(engine: FakeEngine) -> None:
    listener = Recording(engine)
    assert not engine.has_listeners
    listener.register()
    assert engine.notifier.has_listeners
    assert engine.atom_notifier.has_listeners
    listener.deregister()
    assert not engine.notifier.has_listeners
    assert not engine.atom_notifier.has_listeners


def test_context_manager_registers_for_the_block_only(engine: FakeEngine) -> None:
    with Recording(engine) as listener:
        engine.flow("RUNNING", "PENDING")
    engine.flow("SUCCESS", "RUNNING")
    assert isinstance(listener, Recording)
    assert listener.kinds_and_states() == [("flow", "RUNNING")]
    assert not engine.has_listeners


def test_context_manager_deregisters_when_the_block_raises(engine: FakeEngine) -> None:
    with pytest.raises(RuntimeError), Recording(engine):
        raise RuntimeError("engine blew up")
    assert not engine.has_listeners


def test_registering_twice_delivers_each_event_once(engine: FakeEngine) -> None:
    listener = Recording(engine)
    listener.register()
    listener.register()
    engine.task("a", "RUNNING", "PENDING")
    assert listener.kinds_and_states() == [("task", "RUNNING")]
    listener.deregister()
    assert not engine.has_listeners


def test_deregister_without_register_is_harmless(engine: FakeEngine) -> None:
    Recording(engine).deregister()
    assert not engine.has_listeners


def test_listener_can_register_again_after_deregistering(engine: FakeEngine) -> None:
    listener = Recording(engine)
    listener.register()
    listener.deregister()
    listener.register()
    engine.flow("RUNNING", "PENDING")
    assert listener.kinds_and_states() == [("flow", "RUNNING")]


def test_two_listeners_on_one_engine_are_independent(engine: FakeEngine) -> None:
    first, second = Recording(engine), Recording(engine)
    first.register()
    second.register()
    first.deregister()
    engine.flow("RUNNING", "PENDING")
    assert first.heard == []
    assert second.kinds_and_states() == [("flow", "RUNNING")]


def test_receivers_left_as_no_ops_are_not_registered(engine: FakeEngine) -> None:
    listener = FlowOnly(engine)
    listener.register()
    assert engine.notifier.has_listeners
    assert not engine.atom_notifier.has_listeners
    engine.flow("RUNNING", "PENDING")
    assert listener.states == ["RUNNING"]


def test_a_refused_registration_undoes_the_others_and_raises(engine: FakeEngine) -> None:
    engine.atom_notifier = RestrictedNotifier(["RUNNING"], allow_any=False)
    listener = Recording(engine, task_listen_for=["RUNNING", "SUCCESS"])
    with pytest.raises(ValueError):
        listener.register()
    assert not engine.atom_notifier.has_listeners


def test_a_failing_deregister_on_exit_is_logged_not_raised(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recording):
        def deregister(self) -> None:
            raise RuntimeError("cannot detach")

    with caplog.at_level(logging.WARNING, logger="flowkit.listeners.base"), Broken(engine):
        pass
    assert "Failed deregistering listeners from engine" in caplog.text  # TaskFlow's words


# -- routing and filtering --------------------------------------------------------


def test_task_retry_and_flow_events_reach_their_own_receiver(engine: FakeEngine) -> None:
    with Recording(engine) as listener:
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        engine.retry("r", "RUNNING", "PENDING")
        engine.retry("r", "RETRYING", "SUCCESS")
    assert listener.kinds_and_states() == [
        ("flow", "RUNNING"),
        ("task", "RUNNING"),
        ("retry", "RUNNING"),
        ("retry", "RETRYING"),
    ]


def test_receivers_get_the_notified_details(engine: FakeEngine) -> None:
    with Recording(engine) as listener:
        engine.task("a", "SUCCESS", "RUNNING", result=5)
    (_, _, details) = listener.heard[0]
    assert details == {"task_name": "a", "task_uuid": "a-uuid", "old_state": "RUNNING", "result": 5}


def test_listen_for_limits_the_events_heard(engine: FakeEngine) -> None:
    listener = Recording(
        engine, task_listen_for=["SUCCESS"], flow_listen_for=["FAILURE"], retry_listen_for=["RETRYING"]
    )
    with listener:
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING", result=1)
        engine.retry("r", "RUNNING", "PENDING")
        engine.retry("r", "RETRYING", "SUCCESS")
        engine.flow("FAILURE", "RUNNING")
    assert listener.kinds_and_states() == [("task", "SUCCESS"), ("retry", "RETRYING"), ("flow", "FAILURE")]


@pytest.mark.parametrize("nothing", [None, (), []])
def test_empty_listen_for_hears_nothing_of_that_kind(engine: FakeEngine, nothing: Any) -> None:
    with Recording(engine, task_listen_for=nothing, retry_listen_for=nothing) as listener:
        assert not engine.atom_notifier.has_listeners
        engine.task("a", "RUNNING", "PENDING")
        engine.flow("RUNNING", "PENDING")
    assert listener.kinds_and_states() == [("flow", "RUNNING")]


def test_duplicate_listen_for_entries_deliver_once(engine: FakeEngine) -> None:
    with Recording(engine, task_listen_for=["RUNNING", "RUNNING"]) as listener:
        engine.task("a", "RUNNING", "PENDING")
    assert listener.kinds_and_states() == [("task", "RUNNING")]
    assert not engine.has_listeners


def test_progress_is_not_a_state_change_for_any_listeners(engine: FakeEngine) -> None:
    with Recording(engine) as listener:
        engine.progress("a", 0.5)
        engine.task("a", "SUCCESS", "RUNNING", result=1)
    assert listener.kinds_and_states() == [("task", "SUCCESS")]


def test_progress_reaches_a_listener_that_asks_for_it_by_name(engine: FakeEngine) -> None:
    with Recording(engine, task_listen_for=["update_progress"]) as listener:
        engine.progress("a", 0.25, note="quarter")
    assert listener.heard == [
        (
            "task",
            "update_progress",
            {"task_name": "a", "task_uuid": "a-uuid", "progress": 0.25, "note": "quarter"},
        )
    ]


def test_atom_events_of_unknown_kind_are_ignored(engine: FakeEngine) -> None:
    with Recording(engine) as listener:
        engine.atom_notifier.notify("RUNNING", {"something": "else", "old_state": "PENDING"})
    assert listener.heard == []


def test_default_listen_for_is_every_event() -> None:
    assert base.DEFAULT_LISTEN_FOR == (Notifier.ANY,)


def test_finish_states_are_those_carrying_results() -> None:
    assert set(base.FINISH_STATES) == {"SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE"}


# -- dumping -----------------------------------------------------------------------


def test_dumping_listener_cannot_be_made_without_dump(engine: FakeEngine) -> None:
    with pytest.raises(TypeError):
        base.DumpingListener(engine)  # type: ignore[abstract]


def test_dump_of_a_flow_change_names_engine_flow_and_both_states(engine: FakeEngine) -> None:
    with Dumps(engine) as dumps:
        engine.flow("RUNNING", "PENDING")
    (line,) = dumps.lines
    for part in ("<FakeEngine>", FLOW_NAME, FLOW_UUID, "'PENDING'", "'RUNNING'"):
        assert part in line


def test_dump_of_an_intermediate_task_change_has_no_result(engine: FakeEngine) -> None:
    with Dumps(engine) as dumps:
        engine.task("a", "RUNNING", "PENDING")
    (line,) = dumps.lines
    assert "task 'a' (a-uuid)" in line
    assert line == "<FakeEngine> has moved task 'a' (a-uuid) into state 'RUNNING' from state 'PENDING'"
    assert "result" not in line
    assert dumps.exc_infos == [None]


def test_dump_of_a_finished_task_shows_its_result(engine: FakeEngine) -> None:
    with Dumps(engine) as dumps:
        engine.task("a", "SUCCESS", "RUNNING", result=42)
    (line,) = dumps.lines
    assert "into state 'SUCCESS'" in line
    assert "result '42'" in line
    assert "failure=False" in line
    assert dumps.exc_infos == [None]


def test_dump_of_a_live_failure_passes_its_exc_info(engine: FakeEngine) -> None:
    failure = _raise_failure()
    with Dumps(engine) as dumps:
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    assert "failure=True" in dumps.lines[0]
    exc_info = dumps.exc_infos[0]
    assert exc_info is not None
    assert exc_info[1] is failure.exception


def test_dump_of_a_deserialized_failure_appends_its_recorded_traceback(engine: FakeEngine) -> None:
    failure = Failure.from_dict(_raise_failure().to_dict())
    with Dumps(engine) as dumps:
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    assert dumps.exc_infos == [None]
    assert "failure=True" in dumps.lines[0]
    assert "Traceback (most recent call last)" in dumps.lines[0]
    assert "_raise_failure" in dumps.lines[0]


def test_dumping_listener_ignores_retries(engine: FakeEngine) -> None:
    with Dumps(engine) as dumps:
        engine.retry("r", "RUNNING", "PENDING")
    assert dumps.lines == []
