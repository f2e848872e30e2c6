"""The scheduler's side of graphs that change while they run: growing (spawns) and restarting (loops).

As in ``test_scheduler.py``, the test plays the driver: it pulls items and
reports outcomes, and it does the graph surgery the runtime's splicer does,
so what is checked is only what the scheduler decides.
"""

from __future__ import annotations

from typing import Any

from flowkit import states
from flowkit.engines import _compiler
from flowkit.engines._scheduler import EXECUTE, REVERT, Scheduler
from flowkit.patterns import linear_flow, loop_flow, unordered_flow

from .test_scheduler import FakeHooks, Noop, by_name, take_all


class JoinHooks(FakeHooks):
    def __init__(self) -> None:
        super().__init__()
        self.joined_for: list[str] = []

    def joined(self, spawner: _compiler.Node) -> None:
        self.joined_for.append(spawner.name)


def _splice_one(compilation: _compiler.Compilation, after: _compiler.Node, name: str) -> tuple[Any, Any]:
    """Put a new atom ``name`` and a virtual end node between ``after`` and its successors."""
    nodes = compilation.nodes
    child = _compiler.Node(len(nodes), _compiler.TASK, name, Noop(name), after.scope)
    end = _compiler.Node(len(nodes) + 1, _compiler.FLOW_END, f"{name}^end", None, after.scope)
    old = tuple(after.succ)
    after.succ = (child.index,)
    child.pred, child.succ = (after.index,), (end.index,)
    end.pred, end.succ = (child.index,), old
    for target in old:
        nodes[target].pred = tuple(end.index if p == after.index else p for p in nodes[target].pred)
    nodes.extend([child, end])
    return child, end


def test_grown_nodes_run_after_the_spawner_and_before_its_successors_and_join_once() -> None:
    compilation = _compiler.compile_flow(linear_flow.Flow("f").add(Noop("a"), Noop("b")))
    hooks = JoinHooks()
    scheduler = Scheduler(compilation, hooks)
    scheduler.begin()
    assert take_all(scheduler) == [("a", EXECUTE)]
    a = by_name(scheduler, "a")
    child, end = _splice_one(compilation, a, "x")
    scheduler.grow(end.index, a.index)
    assert scheduler.state[child.index] == states.PENDING
    scheduler.executed(a, True)
    assert take_all(scheduler) == [("x", EXECUTE)]  # b waits for the spliced atom
    assert hooks.joined_for == []
    scheduler.executed(child, True)
    assert hooks.joined_for == ["a"]  # before b may start, so b reads a's final result
    assert take_all(scheduler) == [("b", EXECUTE)]


def test_a_failure_after_a_splice_reverts_the_spliced_atoms_before_the_spawner() -> None:
    compilation = _compiler.compile_flow(linear_flow.Flow("f").add(Noop("a"), Noop("b")))
    scheduler = Scheduler(compilation, JoinHooks())
    scheduler.begin()
    take_all(scheduler)
    a = by_name(scheduler, "a")
    child, end = _splice_one(compilation, a, "x")
    scheduler.grow(end.index, a.index)
    scheduler.executed(a, True)
    take_all(scheduler)
    scheduler.executed(child, True)
    take_all(scheduler)
    scheduler.executed(by_name(scheduler, "b"), False)
    order = []
    while batch := take_all(scheduler):
        for name, action in batch:
            assert action == REVERT
            order.append(name)
            scheduler.reverted(by_name(scheduler, name), True)
    assert order == ["b", "x", "a"]


def test_restart_puts_a_loop_body_back_to_pending_and_wake_queues_it_again() -> None:
    loop = loop_flow.Flow("l", Noop("p"), Noop("q"), until=lambda: True, max_iterations=3)
    compilation = _compiler.compile_flow(linear_flow.Flow("f").add(loop, Noop("after")))
    hooks = FakeHooks()
    scheduler = Scheduler(compilation, hooks)
    scheduler.begin()
    for name in ("p", "q", "l^until"):
        assert take_all(scheduler) == [(name, EXECUTE)]
        if name != "l^until":
            scheduler.executed(by_name(scheduler, name), True)
    until = by_name(scheduler, "l^until")
    scope = until.scope
    changed = scheduler.restart(scheduler.body(scope.start, scope.end))
    assert sorted(n.name for n in changed) == ["l^until", "p", "q"]
    assert sorted(hooks.records) == sorted(
        (name, states.PENDING, states.EXECUTE) for name in ("p", "q", "l^until")
    )
    assert take_all(scheduler) == []  # nothing runs until the delay is over
    scheduler.wake(scope.start)
    assert take_all(scheduler) == [("p", EXECUTE)]
    scheduler.executed(by_name(scheduler, "p"), True)
    assert take_all(scheduler) == [("q", EXECUTE)]
    scheduler.executed(by_name(scheduler, "q"), True)
    assert take_all(scheduler) == [("l^until", EXECUTE)]
    scheduler.executed(until, True)
    assert take_all(scheduler) == [("after", EXECUTE)]


def test_wake_does_nothing_once_the_loop_is_being_reverted() -> None:
    loop = loop_flow.Flow("l", Noop("p"), until=lambda: True, max_iterations=3)
    compilation = _compiler.compile_flow(unordered_flow.Flow("u").add(Noop("other"), loop))
    scheduler = Scheduler(compilation, FakeHooks())
    scheduler.begin()
    assert sorted(take_all(scheduler)) == [("other", EXECUTE), ("p", EXECUTE)]
    scheduler.executed(by_name(scheduler, "p"), True)
    assert take_all(scheduler) == [("l^until", EXECUTE)]
    until = by_name(scheduler, "l^until")
    scheduler.restart(scheduler.body(until.scope.start, until.scope.end))
    # The other branch fails while the loop waits out its delay: everything reverts.
    scheduler.executed(by_name(scheduler, "other"), False)
    assert scheduler.reverting(until.scope.start)
    scheduler.wake(until.scope.start)
    assert take_all(scheduler) == [("other", REVERT)]  # the loop body is not run again
