"""Listeners attached to a real engine, checked against the event orders TaskFlow produces.

The expected sequences below are what TaskFlow 6.5 notifies for the same flows,
so listeners written for TaskFlow see the same thing under flowkit.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.listeners import capturing, claims, printing, timing
from flowkit.listeners import logging as logging_listeners
from flowkit.patterns import linear_flow


class Capture(capturing.CaptureListener):
    @staticmethod
    def _format_capture(kind: str, state: str, details: dict[str, Any]) -> Any:
        name = f"{details[kind + '_name']}.{kind[0]}"
        if "result" in details:
            return f"{name} {state}({details['result']})"
        return f"{name} {state}"


class ReturnsOne(task.Task):
    def execute(self) -> int:
        return 1


class Fails(task.Task):
    def execute(self) -> None:
        raise ValueError("boom")

    def revert(self, **kwargs: Any) -> str:
        return "undone"


class Board:
    """A jobboard stand-in whose owner a task can change mid-flow."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def find_owner(self, job: Any) -> str:
        return self.owner


class Job:
    state = "CLAIMED"


def test_capture_sees_taskflows_order_for_a_successful_flow() -> None:
    engine = engines.load(linear_flow.Flow("f").add(ReturnsOne("a"), ReturnsOne("b")))
    with Capture(engine) as capture:
        engine.run()
    assert capture.values == [
        "f.f RUNNING",
        "a.t RUNNING",
        "a.t SUCCESS(1)",
        "b.t RUNNING",
        "b.t SUCCESS(1)",
        "f.f SUCCESS",
    ]
    assert not engine.notifier.has_listeners
    assert not engine.atom_notifier.has_listeners


def test_capture_sees_taskflows_order_for_a_reverted_flow() -> None:
    engine = engines.load(linear_flow.Flow("f").add(ReturnsOne("a"), Fails("b")))
    with Capture(engine) as capture, pytest.raises(ValueError, match="boom"):
        engine.run()
    assert capture.values == [
        "f.f RUNNING",
        "a.t RUNNING",
        "a.t SUCCESS(1)",
        "b.t RUNNING",
        "b.t FAILURE(Failure: ValueError: boom)",
        "b.t REVERTING",
        "b.t REVERTED(undone)",
        "a.t REVERTING",
        "a.t REVERTED(None)",
        "f.f REVERTED",
    ]


def test_dynamic_logging_logs_the_failing_tasks_traceback(caplog: pytest.LogCaptureFixture) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Fails("b")))
    caplog.set_level(logging.DEBUG, logger="flowkit.listeners.logging")
    with logging_listeners.DynamicLoggingListener(engine), pytest.raises(ValueError):
        engine.run()
    failed = [r for r in caplog.records if "into state 'FAILURE'" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]
    assert failed[0].getMessage().startswith("Task 'b'")
    assert "ValueError: boom" in caplog.text
    reverted = [r for r in caplog.records if "into state 'REVERTED'" in r.getMessage()]
    assert [r.levelno for r in reverted] == [logging.WARNING, logging.WARNING]  # the task, then the flow


def test_printing_listener_prints_every_change(capsys: pytest.CaptureFixture[str]) -> None:
    engine = engines.load(linear_flow.Flow("f").add(ReturnsOne("a")))
    with printing.PrintingListener(engine):
        engine.run()
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_duration_listener_times_each_task_and_the_flow() -> None:
    ended: list[tuple[str, str, str]] = []

    class Recording(timing.DurationListener):
        def _record_ending(self, elapsed: float, kind: str, name: str, state: str) -> None:
            super()._record_ending(elapsed, kind, name, state)
            ended.append((kind, name, state))

    engine = engines.load(linear_flow.Flow("f").add(ReturnsOne("a"), ReturnsOne("b")))
    with Recording(engine):
        engine.run()
    assert ended == [("task", "a", "SUCCESS"), ("task", "b", "SUCCESS"), ("flow", "f", "SUCCESS")]


def test_claim_listener_suspends_the_engine_when_the_claim_is_lost() -> None:
    board = Board("me")

    class GivesUpClaim(task.Task):
        def execute(self) -> int:
            board.owner = "someone else"
            return 2

    engine = engines.load(linear_flow.Flow("f").add(ReturnsOne("a"), GivesUpClaim("b"), ReturnsOne("c")))
    with claims.CheckingClaimListener(engine, Job(), board, "me"):
        engine.run()
    assert engine.storage.get_flow_state() == "SUSPENDED"
    assert [engine.storage.get_atom_state(name) for name in "abc"] == ["SUCCESS", "SUCCESS", "PENDING"]
