"""The event log names a concurrency-limit wait: which key, and which atom held the slot.

Real runs on the parallel engine with a limit of 1. The first keyed task to
start holds the slot at a gate until the test lets it go, so the other one is
handed out while the slot is taken and waits for it: the interleaving is forced,
nothing sleeps.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines, states, task
from flowkit.listeners.events import CauseKind, EventLogListener
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.report import ExecutionReport
from tests.gate import Gate, held

WAIT = 30.0
GATE = Gate(WAIT)


@pytest.fixture
def gate() -> Iterator[Gate]:
    yield from held(GATE)


class Gated(task.Task):
    """Says it runs, then waits at the gate (the first one holds its slot there)."""

    def execute(self) -> str:
        GATE.calls.append(self.name)
        GATE.enter()
        return self.name


class Plain(task.Task):
    def execute(self) -> str:
        return self.name


def _ticking() -> Any:
    ticks = itertools.count(1000)
    return lambda: float(next(ticks))


def _run_held(flow: Any, gate: Gate, *, fails: bool = False) -> tuple[Any, EventLogListener]:
    """Run ``flow`` (limit 1 on key ``db``) until a gated task holds the slot, check, let it go.

    ``fails``: the run ends raising one RuntimeError (reverted); else it succeeds.
    """
    engine = engines.load(flow, engine="parallel", max_workers=4, concurrency_limits={"db": 1})
    listener = EventLogListener(engine, clock=_ticking())
    raised: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:  # handed to the test thread
            raised.append(err)

    with listener:
        runner = threading.Thread(target=run)
        runner.start()
        assert gate.inside.wait(WAIT)
        # One keyed task holds the slot; the other one was handed out and waits.
        assert len(gate.calls) == 1
        gate.go.set()
        runner.join(WAIT)
        assert not runner.is_alive()
    if fails:
        assert [type(err) for err in raised] == [RuntimeError], raised
    else:
        assert not raised, raised
        assert engine.storage.get_flow_state() == states.SUCCESS
    return engine, listener


def test_why_an_atom_that_waited_for_a_slot_names_the_key_and_the_atom_that_held_it(gate: Gate) -> None:
    flow = unordered_flow.Flow("f").add(
        Gated("a", concurrency_key="db"), Gated("b", concurrency_key="db"), Plain("free")
    )
    _, listener = _run_held(flow, gate)
    first, second = map(str, gate.calls)
    log = listener.log

    started = next(e for e in log.of(second) if e.state == states.RUNNING)
    assert started.cause.kind == CauseKind.WAITED
    assert (started.cause.key, started.cause.held_by) == ("db", first)
    assert started.cause.atoms == ()  # nothing had to complete before it: first in its flow
    assert started.cause.text == (
        f"it is first in its flow, then it waited for a slot of concurrency key 'db' "
        f"(limit 1) until '{first}' gave its slot back"
    )
    # Linked to the holder's completion: `why` walks on to why the holder ran.
    assert [(e.name, e.state) for e in log.why(second)] == [
        (second, states.SUCCESS),
        (second, states.RUNNING),
        (first, states.SUCCESS),
        (first, states.RUNNING),
    ]
    # The holder, and a task without a key, started as soon as they were ready.
    for name in (first, "free"):
        assert next(e for e in log.of(name) if e.state == states.RUNNING).cause.kind == CauseKind.READY


def test_a_wait_after_a_predecessor_names_both(gate: Gate) -> None:
    # Both keyed tasks become ready when 'before' completes: one waits for the other.
    flow = linear_flow.Flow("f").add(
        Plain("before"),
        unordered_flow.Flow("pair").add(Gated("a", concurrency_key="db"), Gated("b", concurrency_key="db")),
    )
    _, listener = _run_held(flow, gate)
    first, second = map(str, gate.calls)
    cause = next(e for e in listener.log.of(second) if e.state == states.RUNNING).cause
    assert (cause.kind, cause.atoms, cause.held_by) == (CauseKind.WAITED, ("before",), first)
    assert cause.text == (
        f"'before' completed, then it waited for a slot of concurrency key 'db' (limit 1) "
        f"until '{first}' gave its slot back"
    )


def test_the_report_says_which_slot_an_atom_waited_for_and_who_held_it(gate: Gate) -> None:
    flow = unordered_flow.Flow("f").add(Gated("a", concurrency_key="db"), Gated("b", concurrency_key="db"))
    engine, _ = _run_held(flow, gate)
    first, second = map(str, gate.calls)
    report = ExecutionReport.from_engine(engine)
    atoms = {atom.name: atom for atom in report.atoms}
    assert (atoms[second].waited_for_slot, atoms[second].slot_held_by) == ("db", first)
    assert (atoms[first].waited_for_slot, atoms[first].slot_held_by) == (None, None)
    assert atoms[second].to_dict()["waited_for_slot"] == "db"
    line = next(line for line in report.to_text().splitlines() if line.strip().startswith(second))
    assert f"(waited for a 'db' slot held by '{first}')" in line


class Undone(task.Task):
    """Succeeds; its revert says it runs (the first one holds its slot at the gate)."""

    def execute(self) -> str:
        return self.name

    def revert(self, **kwargs: Any) -> None:
        GATE.calls.append(self.name)
        GATE.enter()


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("boom")


def test_a_revert_that_waited_for_a_slot_keeps_its_failure_and_says_the_wait(gate: Gate) -> None:
    # Both keyed tasks revert at once after 'boom' fails: one revert waits for the other's slot.
    flow = linear_flow.Flow("f").add(
        unordered_flow.Flow("pair").add(Undone("a", concurrency_key="db"), Undone("b", concurrency_key="db")),
        Boom("boom"),
    )
    _, listener = _run_held(flow, gate, fails=True)
    first, second = map(str, gate.calls)
    log = listener.log
    reverting = next(e for e in log.of(second) if e.state == states.REVERTING)
    assert reverting.cause.kind == CauseKind.FAILURE  # still why it reverts, linked to the failure
    assert reverting.cause.event is not None
    assert log.get(reverting.cause.event) == next(e for e in log.of("boom") if e.state == states.FAILURE)
    assert (reverting.cause.key, reverting.cause.held_by) == ("db", first)
    assert reverting.cause.text.endswith(
        f"; then it waited for a slot of concurrency key 'db' (limit 1) until '{first}' gave its slot back"
    )
