"""Behaviour of :mod:`flowkit.listeners.timing`, driven by a hand-moved clock."""

from __future__ import annotations

import logging

import pytest

from flowkit.listeners import timing
from tests.manual_clock import ManualClock

from ._fakes import FakeEngine

# -- DurationListener -----------------------------------------------------------------


def test_duration_of_a_task_is_saved_in_its_metadata(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(2.5)
        engine.task("a", "SUCCESS", "RUNNING", result=1)
    assert engine.storage.atom_meta == {"a": {"duration": 2.5}}


def test_duration_of_the_flow_is_saved_in_flow_metadata(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.flow("RUNNING", "PENDING")
        clock.advance(7.0)
        engine.flow("SUCCESS", "RUNNING")
    assert engine.storage.flow_meta == {"duration": 7.0}
    assert engine.storage.atom_meta == {}


@pytest.mark.parametrize("end_state", ["SUCCESS", "FAILURE"])
def test_a_task_is_timed_until_it_succeeds_or_fails(
    engine: FakeEngine, clock: ManualClock, end_state: str
) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(1.0)
        engine.task("a", end_state, "RUNNING")
    assert engine.storage.atom_meta["a"]["duration"] == 1.0


@pytest.mark.parametrize("end_state", ["REVERTED", "REVERT_FAILURE"])
def test_a_revert_is_timed_from_reverting(engine: FakeEngine, clock: ManualClock, end_state: str) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(1.0)
        engine.task("a", "SUCCESS", "RUNNING", result=1)
        clock.advance(10.0)
        engine.task("a", "REVERTING", "SUCCESS")
        clock.advance(0.25)
        engine.task("a", end_state, "REVERTING")
    assert engine.storage.atom_meta["a"]["duration"] == 0.25


def test_tasks_are_timed_separately(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(1.0)
        engine.task("b", "RUNNING", "PENDING")
        clock.advance(2.0)
        engine.task("a", "SUCCESS", "RUNNING")
        clock.advance(4.0)
        engine.task("b", "SUCCESS", "RUNNING")
    assert engine.storage.atom_meta == {"a": {"duration": 3.0}, "b": {"duration": 6.0}}


def test_pending_forgets_a_started_timer(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "PENDING", "REVERTED")
        engine.task("a", "SUCCESS", "RUNNING")
    assert engine.storage.atom_meta == {}


def test_finishing_without_starting_records_nothing(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.task("a", "SUCCESS", "RUNNING")
    assert engine.storage.atom_meta == {}


def test_retries_and_progress_are_not_timed(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.DurationListener(engine, clock=clock):
        engine.retry("r", "RUNNING", "PENDING")
        engine.progress("a", 0.5)
        engine.retry("r", "SUCCESS", "RUNNING")
    assert engine.storage.atom_meta == {}


def test_a_storage_failure_is_logged_not_raised(
    engine: FakeEngine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine.storage.broken = True
    with (
        caplog.at_level(logging.WARNING, logger="flowkit.listeners.timing"),
        timing.DurationListener(engine, clock=clock),
    ):
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING")
    assert "Failure to store duration update" in caplog.text
    assert caplog.records[0].exc_info is not None


def test_deregister_warns_about_unfinished_timers(
    engine: FakeEngine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = timing.DurationListener(engine, clock=clock)
    with caplog.at_level(logging.WARNING, logger="flowkit.listeners.timing"):
        with listener:
            engine.task("a", "RUNNING", "PENDING")
        assert "1 task(s) did not enter" in caplog.text
        caplog.clear()
        # The leftovers were forgotten: a second round starts clean.
        with listener:
            pass
    assert caplog.records == []
    assert not engine.has_listeners


def test_duration_listener_defaults_to_a_monotonic_clock(engine: FakeEngine) -> None:
    with timing.DurationListener(engine):
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING")
    assert engine.storage.atom_meta["a"]["duration"] >= 0.0


# -- PrintingDurationListener -----------------------------------------------------------


def test_printing_duration_listener_prints_starts_and_durations(
    engine: FakeEngine, clock: ManualClock
) -> None:
    printed: list[str] = []
    with timing.PrintingDurationListener(engine, printer=printed.append, clock=clock):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(1.234)
        engine.task("a", "SUCCESS", "RUNNING")
        clock.advance(1.0)
        engine.flow("SUCCESS", "RUNNING")
    assert printed == [
        # TaskFlow's wording, word for word.
        "'flow-1' flow started.",
        "'a' task started.",
        "It took task 'a' 1.23 seconds to finish.",
        "It took flow 'flow-1' 2.23 seconds to finish.",
    ]
    assert engine.storage.atom_meta["a"]["duration"] == pytest.approx(1.234)


def test_printing_duration_listener_prints_to_stdout_by_default(
    engine: FakeEngine, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    with timing.PrintingDurationListener(engine, clock=clock):
        engine.task("a", "RUNNING", "PENDING")
    assert capsys.readouterr().out == "'a' task started.\n"


# -- EventTimeListener -------------------------------------------------------------------


def test_event_time_listener_stamps_each_state_entered(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.EventTimeListener(engine, clock=clock):
        engine.flow("RUNNING", "PENDING")
        clock.advance(1.0)
        engine.task("a", "RUNNING", "PENDING")
        clock.advance(1.0)
        engine.task("a", "SUCCESS", "RUNNING")
        engine.retry("r", "RUNNING", "PENDING")
        engine.progress("a", 0.5)
    assert engine.storage.flow_meta == {"RUNNING-timestamp": 100.0}
    assert engine.storage.atom_meta == {
        "a": {"RUNNING-timestamp": 101.0, "SUCCESS-timestamp": 102.0},
        "r": {"RUNNING-timestamp": 102.0},
    }


def test_event_time_listener_honours_listen_for(engine: FakeEngine, clock: ManualClock) -> None:
    with timing.EventTimeListener(engine, task_listen_for=["SUCCESS"], flow_listen_for=(), clock=clock):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING")
    assert engine.storage.flow_meta == {}
    assert engine.storage.atom_meta == {"a": {"SUCCESS-timestamp": 100.0}}


def test_event_time_listener_logs_storage_failures(
    engine: FakeEngine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine.storage.broken = True
    with (
        caplog.at_level(logging.WARNING, logger="flowkit.listeners.timing"),
        timing.EventTimeListener(engine, clock=clock),
    ):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
    assert len(caplog.records) == 2
    assert "flow 'flow-1'" in caplog.records[0].getMessage()
    assert "atom 'a'" in caplog.records[1].getMessage()


def test_watch_states_cover_starts_ends_and_pending() -> None:
    assert {"RUNNING", "REVERTING"} == timing.STARTING_STATES
    assert {"SUCCESS", "FAILURE", "REVERTED", "REVERT_FAILURE"} == timing.FINISHED_STATES
    assert timing.STARTING_STATES | timing.FINISHED_STATES | {"PENDING"} == timing.WATCH_STATES
