"""Behaviour of :mod:`flowkit.listeners.printing`."""

from __future__ import annotations

import pytest

from flowkit.listeners import printing
from flowkit.types.failure import Failure

from ._fakes import FakeEngine


def _raise_failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


def test_printing_listener_prints_one_line_per_change_to_stdout(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    with printing.PrintingListener(engine):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING", result=5)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    assert "has moved flow 'flow-1' (flow-uuid-1) into state 'RUNNING' from state 'PENDING'" in lines[0]
    assert "has moved task 'a' (a-uuid) into state 'RUNNING' from state 'PENDING'" in lines[1]
    assert "result '5'" in lines[2]
    assert err == ""


def test_printing_listener_can_print_to_stderr(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    with printing.PrintingListener(engine, stderr=True):
        engine.flow("RUNNING", "PENDING")
    out, err = capsys.readouterr()
    assert out == ""
    assert "flow 'flow-1'" in err


def test_printing_listener_prints_a_live_failures_traceback(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    with printing.PrintingListener(engine):
        engine.task("a", "FAILURE", "RUNNING", result=_raise_failure())
    out = capsys.readouterr().out
    assert "failure=True" in out
    assert "Traceback (most recent call last)" in out
    assert "_raise_failure" in out
    assert "ValueError: boom" in out


def test_printing_listener_prints_a_deserialized_failures_recorded_traceback(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    failure = Failure.from_dict(_raise_failure().to_dict())
    with printing.PrintingListener(engine):
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    out = capsys.readouterr().out
    assert "Traceback (most recent call last)" in out
    assert "ValueError: boom" in out


def test_printing_listener_prints_nothing_once_deregistered(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    with printing.PrintingListener(engine):
        pass
    engine.flow("RUNNING", "PENDING")
    assert capsys.readouterr().out == ""
    assert not engine.has_listeners
