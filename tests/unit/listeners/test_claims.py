"""Behaviour of :mod:`flowkit.listeners.claims`, with a stand-in job and jobboard.

Jobboards come later; the listener reads only ``job.state`` and calls
``board.find_owner(job)``, which the small fakes here provide.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.listeners import claims

from ._fakes import FakeEngine

OWNER = "conductor-1"


class FakeJob:
    def __init__(self, state: str = "CLAIMED") -> None:
        self.state = state

    def __repr__(self) -> str:
        return "<FakeJob>"


class FakeBoard:
    """Answers ``find_owner`` with :attr:`owner`, or raises :attr:`error`."""

    def __init__(self, owner: str | None = OWNER) -> None:
        self.owner = owner
        self.error: Exception | None = None
        self.asked = 0

    def find_owner(self, job: Any) -> str | None:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.owner


@pytest.fixture
def job() -> FakeJob:
    return FakeJob()


@pytest.fixture
def board() -> FakeBoard:
    return FakeBoard()


def test_nothing_happens_while_the_claim_holds(engine: FakeEngine, job: FakeJob, board: FakeBoard) -> None:
    with claims.CheckingClaimListener(engine, job, board, OWNER):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING", result=1)
    assert engine.suspended == 0
    assert board.asked == 3


def test_engine_is_suspended_when_another_owner_takes_the_job(
    engine: FakeEngine, job: FakeJob, board: FakeBoard, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="flowkit.listeners.claims"),
        claims.CheckingClaimListener(engine, job, board, OWNER),
    ):
        engine.task("a", "RUNNING", "PENDING")
        board.owner = "conductor-2"
        engine.task("a", "SUCCESS", "RUNNING", result=1)
    assert engine.suspended == 1
    assert (
        "Job '<FakeJob>' has lost its claim (previously owned by 'conductor-1')" in caplog.text
    )  # TaskFlow's words


def test_engine_is_suspended_when_nobody_owns_the_job(engine: FakeEngine, job: FakeJob) -> None:
    with claims.CheckingClaimListener(engine, job, FakeBoard(owner=None), OWNER):
        engine.flow("RUNNING", "PENDING")
    assert engine.suspended == 1


def test_engine_is_suspended_when_the_job_is_unclaimed(engine: FakeEngine, board: FakeBoard) -> None:
    with claims.CheckingClaimListener(engine, FakeJob(state="UNCLAIMED"), board, OWNER):
        engine.flow("RUNNING", "PENDING")
    assert engine.suspended == 1


@pytest.mark.parametrize("error", [exc.NotFound("job is gone"), exc.JobFailure("board unreachable")])
def test_engine_is_suspended_when_the_board_cannot_tell(
    engine: FakeEngine, job: FakeJob, board: FakeBoard, error: Exception
) -> None:
    board.error = error
    with claims.CheckingClaimListener(engine, job, board, OWNER):
        engine.task("a", "RUNNING", "PENDING")
    assert engine.suspended == 1


def test_the_handler_runs_on_every_change_while_the_claim_stays_lost(
    engine: FakeEngine, job: FakeJob, board: FakeBoard
) -> None:
    board.owner = "conductor-2"
    with claims.CheckingClaimListener(engine, job, board, OWNER):
        engine.task("a", "SUCCESS", "RUNNING", result=1)
        engine.flow("SUSPENDING", "RUNNING")
    assert engine.suspended == 2


def test_a_custom_handler_gets_engine_state_and_details(
    engine: FakeEngine, job: FakeJob, board: FakeBoard
) -> None:
    calls: list[tuple[Any, str, dict[str, Any]]] = []
    board.owner = "conductor-2"
    with claims.CheckingClaimListener(engine, job, board, OWNER, on_job_loss=lambda *a: calls.append(a)):
        engine.task("a", "RUNNING", "PENDING")
    assert calls == [(engine, "RUNNING", {"task_name": "a", "task_uuid": "a-uuid", "old_state": "PENDING"})]
    assert engine.suspended == 0


def test_a_handler_that_is_not_callable_is_refused(
    engine: FakeEngine, job: FakeJob, board: FakeBoard
) -> None:
    with pytest.raises(ValueError, match="^Custom 'on_job_loss' handler must be callable"):
        claims.CheckingClaimListener(engine, job, board, OWNER, on_job_loss="suspend")  # type: ignore[arg-type]


def test_a_failed_suspend_is_logged(
    engine: FakeEngine, job: FakeJob, board: FakeBoard, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> None:
        raise exc.ExecutionFailure("cannot suspend now")

    engine.suspend = refuse  # type: ignore[method-assign]
    board.owner = "conductor-2"
    with (
        caplog.at_level(logging.WARNING, logger="flowkit.listeners.claims"),
        claims.CheckingClaimListener(engine, job, board, OWNER),
    ):
        engine.flow("RUNNING", "PENDING")
    assert "Failed suspending engine '" in caplog.text
    assert "cannot suspend now" in caplog.text


def test_retry_and_progress_events_do_not_check_the_claim(
    engine: FakeEngine, job: FakeJob, board: FakeBoard
) -> None:
    with claims.CheckingClaimListener(engine, job, board, OWNER):
        engine.retry("r", "RUNNING", "PENDING")
        engine.progress("a", 0.5)
    assert board.asked == 0


def test_claim_listener_detaches_on_exit(engine: FakeEngine, job: FakeJob, board: FakeBoard) -> None:
    with claims.CheckingClaimListener(engine, job, board, OWNER):
        assert engine.has_listeners
    assert not engine.has_listeners
