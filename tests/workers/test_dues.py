"""The reply reader's deadlines (``_dues``): the earliest pending one, stale ones dropped."""

from __future__ import annotations

from dataclasses import dataclass

from flowkit.engines.worker_based._dues import Dues


@dataclass
class Request:
    state: str
    deadline: float
    started_at: float = 0.0
    timeout: float | None = None


def start(tracked: Dues, request: Request, at: float, timeout: float) -> None:
    """What the driver does when a worker says ``request`` started: ``at`` + ``timeout``."""
    request.state, request.started_at, request.timeout = "RUNNING", at, timeout
    tracked.times_out(request, at + timeout)


def dues() -> Dues:
    return Dues(frozenset({"PENDING", "WAITING"}), "RUNNING")


def test_no_request_has_no_due() -> None:
    assert dues().next() is None


def test_the_first_sent_unstarted_request_is_due_first() -> None:
    tracked = dues()
    first, second = Request("PENDING", 5.0), Request("WAITING", 6.0)
    tracked.expires(first)
    tracked.expires(second)

    assert tracked.next() == 5.0
    first.state = "RUNNING"  # started: its deadline no longer counts
    assert tracked.next() == 6.0
    second.state = "DONE"
    assert tracked.next() is None


def test_a_running_tasks_timeout_counts_while_it_runs_whichever_comes_first() -> None:
    tracked = dues()
    waiting, slow, quick = Request("PENDING", 5.0), Request("PENDING", 0.0), Request("PENDING", 0.0)
    tracked.expires(waiting)
    start(tracked, slow, 0.0, 9.0)
    start(tracked, quick, 0.0, 3.0)

    assert tracked.next() == 3.0
    quick.state = "DONE"
    assert tracked.next() == 5.0
    waiting.state = "DONE"
    assert tracked.next() == 9.0
    tracked.clear()
    assert tracked.next() is None


def test_a_task_started_again_is_due_at_its_new_timeout_not_its_first() -> None:
    # A second "running" (a job taken over by another worker) counts the timeout
    # anew; the first entry stayed at the heap's top, past, and every read of the
    # reply reader became a poll until the new timeout (thousands of ticks a second).
    tracked = dues()
    request = Request("PENDING", 0.0)
    start(tracked, request, 0.0, 1.0)
    start(tracked, request, 0.5, 1.0)

    assert tracked.next() == 1.5


def test_entries_behind_a_long_timeout_are_swept_as_the_heap_grows() -> None:
    # A task with a long timeout at the top kept the entry of every task started
    # after it, finished or not: 100,000 tasks, 100,001 entries.
    tracked = dues()
    long = Request("PENDING", 0.0)
    start(tracked, long, 0.0, 3600.0)
    for i in range(10_000):
        quick = Request("PENDING", 0.0)
        start(tracked, quick, float(i), 3601.0)
        quick.state = "DONE"

    assert tracked.next() == 3600.0
    assert len(tracked._timeouts) <= 130
