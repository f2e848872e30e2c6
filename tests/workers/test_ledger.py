"""The worker-based driver's ledger of requests: held ones stay in the order they were first held.

Under ``max_in_flight`` the held requests a worker offers take the free slots
oldest first; the ledger keeps them in their own ordered structures so a send
need not walk every request. These tests pin the order through the moves that
reorder a structure (a request held again after a failed send, one whose
worker came or went) and the count of requests out, which is read from it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flowkit.engines import _scheduler as sch
from flowkit.engines.worker_based._driver import DONE, PENDING, RUNNING, WAITING, _Ledger, _Request


def _request(name: str, topic: str) -> _Request:
    node: Any = SimpleNamespace(name=name)
    return _Request(name, node, sch.EXECUTE, "tasks.T", topic)


def _ids(held: dict[str, _Request]) -> list[str]:
    return list(held)


def test_held_requests_keep_the_order_they_were_first_held_in_through_every_move() -> None:
    ledger = _Ledger()
    r0, r1, r2, r3 = (_request(f"r{i}", "" if i == 1 else "t") for i in range(4))
    for request in (r0, r1, r2, r3):
        ledger.move(request, WAITING)
    assert (_ids(ledger.for_room), _ids(ledger.for_worker), ledger.out) == (["r0", "r2", "r3"], ["r1"], 0)

    ledger.move(r0, PENDING)  # claimed: it takes a slot
    assert (_ids(ledger.for_room), ledger.out) == (["r2", "r3"], 1)
    ledger.move(r0, WAITING)  # its send failed for now: held again, in its old place
    assert (_ids(ledger.for_room), ledger.out) == (["r0", "r2", "r3"], 0)

    ledger.route(r1, "t")  # a worker offers its task now
    assert (_ids(ledger.for_room), _ids(ledger.for_worker)) == (["r0", "r1", "r2", "r3"], [])
    ledger.route_all(lambda request: "" if request.id == "r2" else "t", scans=7)
    assert (_ids(ledger.for_room), _ids(ledger.for_worker), ledger.routed_at) == (
        ["r0", "r1", "r3"],
        ["r2"],
        7,
    )
    assert r2.topic == ""

    ledger.move(r3, PENDING)
    ledger.move(r3, RUNNING)
    assert (_ids(ledger.for_room), ledger.out) == (["r0", "r1"], 1)
    ledger.move(r3, DONE)
    ledger.move(r2, DONE)  # a held one timing out
    assert (list(ledger.live), _ids(ledger.for_worker), ledger.out) == (["r0", "r1"], [], 0)
