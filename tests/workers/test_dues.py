"""The reply reader's deadlines (``_dues``): the earliest pending one, stale ones dropped."""

from __future__ import annotations

from dataclasses import dataclass

from flowkit.engines.worker_based._dues import Dues


@dataclass
class Request:
    state: str
    deadline: float


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
    waiting, slow, quick = Request("PENDING", 5.0), Request("RUNNING", 0.0), Request("RUNNING", 0.0)
    tracked.expires(waiting)
    tracked.times_out(slow, 9.0)
    tracked.times_out(quick, 3.0)

    assert tracked.next() == 3.0
    quick.state = "DONE"
    assert tracked.next() == 5.0
    waiting.state = "DONE"
    assert tracked.next() == 9.0
    tracked.clear()
    assert tracked.next() is None
