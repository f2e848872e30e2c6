"""The completion queue: finished calls and progress reports from other threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowkit.engines._completions import Completion, Completions, ProgressReport

NODE: Any = object()  # the queue carries nodes without looking at them


def test_take_returns_completions_and_applies_progress_reports_in_queue_order() -> None:
    done = Completions()
    applied: list[ProgressReport] = []
    done.on_progress = applied.append
    done.started()
    done.started()
    done.put_progress("a", 0.5, None)
    done.put(NODE, 0, True, "first")
    done.put_progress("b", 0.25, {"step": 1})
    done.put(NODE, 1, False, "second")

    taken = done.take(0)

    assert taken == [Completion(NODE, 0, True, "first"), Completion(NODE, 1, False, "second")]
    assert applied == [ProgressReport("a", 0.5, None), ProgressReport("b", 0.25, {"step": 1})]
    assert done.in_flight == 0


def test_a_progress_report_does_not_end_the_wait_for_a_completion() -> None:
    done = Completions()
    applied: list[ProgressReport] = []
    done.on_progress = applied.append
    done.started()
    done.put_progress("a", 0.5, None)
    finisher = threading.Timer(0.05, done.put, (NODE, 0, True, "late"))
    finisher.start()
    try:
        taken = done.take(10.0)
    finally:
        finisher.cancel()
    assert taken == [Completion(NODE, 0, True, "late")]
    assert applied == [ProgressReport("a", 0.5, None)]


def test_progress_alone_comes_back_empty_when_the_wait_times_out() -> None:
    done = Completions()
    applied: list[ProgressReport] = []
    done.on_progress = applied.append
    done.put_progress("a", 1.0, None)
    assert done.take(0) == []
    assert applied == [ProgressReport("a", 1.0, None)]


def test_reports_with_no_run_listening_are_dropped() -> None:
    done = Completions()
    done.put_progress("a", 0.5, None)
    assert done.take(0) == []


def test_an_interrupt_met_by_a_call_is_raised_in_the_taking_thread() -> None:
    done = Completions()
    done.started()
    done.put_raising(NODE, 0, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        done.take(0)
    assert done.in_flight == 0


def test_an_ordinary_exception_is_a_failed_completion() -> None:
    done = Completions()
    done.started()
    done.put_raising(NODE, 0, ValueError("bad"))
    (taken,) = done.take(0)
    assert taken.ok is False and taken.value.check(ValueError)
