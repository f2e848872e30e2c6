"""The scheduler on its own: a compiled flow, a fake for its hooks, and outcomes we choose.

The scheduler decides and does no I/O; these tests play the driver's part (pull an
item, report how it went) and check what it hands out next, and what it asks of
its :class:`~flowkit.engines._scheduler.Hooks`.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, retry, states, task
from flowkit.deciders import Depth
from flowkit.engines import _compiler
from flowkit.engines._scheduler import EXECUTE, RETRY_AGAIN, REVERT, Scheduler
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.retry import Decision


class Noop(task.Task):
    def execute(self) -> None:
        """Never called: the scheduler only hands atoms out."""


class FakeHooks:
    """Records what the scheduler asks; answers deciders and retries from tables."""

    def __init__(
        self,
        depths: dict[str, Depth | None] | None = None,
        decisions: dict[str, list[Decision]] | None = None,
    ) -> None:
        self.records: list[tuple[str, str | None, str | None]] = []
        self.asked: list[tuple[str, str, str]] = []
        self.depths = depths or {}
        self.decisions = decisions or {}

    def record(self, node: _compiler.Node, state: str | None, intention: str | None) -> None:
        self.records.append((node.name, state, intention))

    def decide(self, node: _compiler.Node) -> Depth | None:
        return self.depths.get(node.name)

    def ask_retry(self, retry: _compiler.Node, failed: _compiler.Node, origin: _compiler.Node) -> Decision:
        self.asked.append((retry.name, failed.name, origin.name))
        return self.decisions[retry.name].pop(0)


def scheduler_for(flow: Any, hooks: FakeHooks | None = None, **options: Any) -> tuple[Scheduler, FakeHooks]:
    hooks = hooks or FakeHooks()
    scheduler = Scheduler(_compiler.compile_flow(flow), hooks, **options)
    return scheduler, hooks


def take_all(scheduler: Scheduler) -> list[tuple[str, int]]:
    """Pull every item ready now (as the serial engine's step does), marking each started."""
    found = []
    while (item := scheduler.next_item()) is not None:
        node, action = item
        scheduler.records[node.index].state = states.REVERTING if action == REVERT else states.RUNNING
        found.append((node.name, action))
    return found


def by_name(scheduler: Scheduler, name: str) -> _compiler.Node:
    return next(node for node in scheduler._nodes if node.name == name and node.atom is not None)


def drive(scheduler: Scheduler, fails: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    """Run to the end: every execute of a name in ``fails`` fails, everything else succeeds."""
    log: list[tuple[str, int]] = []
    while batch := take_all(scheduler):
        log.extend(batch)
        for name, action in batch:
            node = by_name(scheduler, name)
            if action == REVERT:
                scheduler.reverted(node, True)
            else:
                if action == RETRY_AGAIN:
                    scheduler.retry_restarted(node)
                scheduler.executed(node, name not in fails)
    return log


def test_a_linear_flow_hands_out_one_atom_at_a_time_in_order() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"), Noop("c"))
    scheduler, hooks = scheduler_for(flow)
    scheduler.begin()
    assert take_all(scheduler) == [("a", EXECUTE)]
    assert scheduler.next_item() is None  # b waits for a
    scheduler.executed(by_name(scheduler, "a"), True)
    assert take_all(scheduler) == [("b", EXECUTE)]
    scheduler.executed(by_name(scheduler, "b"), True)
    assert take_all(scheduler) == [("c", EXECUTE)]
    scheduler.executed(by_name(scheduler, "c"), True)
    assert not scheduler.has_ready() and scheduler.next_item() is None
    assert hooks.records == []  # forward success needs no hook: the runtime records it


def test_unordered_atoms_are_all_ready_at_once_highest_priority_first() -> None:
    low, high, mid = Noop("low"), Noop("high"), Noop("mid")
    low.priority, high.priority = -1, 5
    scheduler, _ = scheduler_for(unordered_flow.Flow("u").add(low, mid, high))
    scheduler.begin()
    assert take_all(scheduler) == [("high", EXECUTE), ("mid", EXECUTE), ("low", EXECUTE)]


def test_an_item_handed_out_is_never_handed_out_again_before_it_is_reported() -> None:
    scheduler, _ = scheduler_for(unordered_flow.Flow("u").add(Noop("a"), Noop("b")))
    scheduler.begin()
    assert len(take_all(scheduler)) == 2
    assert take_all(scheduler) == []


def test_a_failure_without_retry_reverts_what_ran_successors_first() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"), Noop("c"), Noop("d"))
    scheduler, hooks = scheduler_for(flow)
    scheduler.begin()
    log = drive(scheduler, fails=frozenset({"c"}))
    assert log == [
        ("a", EXECUTE),
        ("b", EXECUTE),
        ("c", EXECUTE),
        ("c", REVERT),
        ("b", REVERT),
        ("a", REVERT),
    ]
    # Every atom got the intention to revert, announced through the hook; d never ran.
    assert sorted(name for name, _state, intention in hooks.records if intention == states.REVERT) == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert scheduler.state[by_name(scheduler, "d").index] == states.PENDING
    assert not scheduler.halted


def test_a_retry_is_asked_and_its_scope_reverted_then_run_again() -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(3, "r")).add(Noop("a"), Noop("b"))
    hooks = FakeHooks(decisions={"r": [Decision.RETRY]})
    scheduler, _ = scheduler_for(flow, hooks)
    scheduler.begin()
    fails = {"b"}
    log: list[tuple[str, int]] = []
    while batch := take_all(scheduler):
        log.extend(batch)
        for name, action in batch:
            node = by_name(scheduler, name)
            if action == REVERT:
                scheduler.reverted(node, True)
            else:
                if action == RETRY_AGAIN:
                    scheduler.retry_restarted(node)
                ok = name not in fails
                fails.discard(name)  # b fails once
                scheduler.executed(node, ok)
    assert hooks.asked == [("r", "b", "b")]
    assert log == [
        ("r", EXECUTE),
        ("a", EXECUTE),
        ("b", EXECUTE),
        ("b", REVERT),
        ("a", REVERT),
        ("r", RETRY_AGAIN),
        ("a", EXECUTE),
        ("b", EXECUTE),
    ]
    assert all(scheduler.state[n.index] == states.SUCCESS for n in scheduler._nodes if n.atom is not None)


def test_a_revert_decision_reverts_only_the_retry_scope() -> None:
    inner = linear_flow.Flow("s", retry=retry.AlwaysRevert("r")).add(Noop("b"), Noop("c"))
    flow = linear_flow.Flow("f").add(Noop("a"), inner, Noop("d"))
    scheduler, hooks = scheduler_for(flow, FakeHooks(decisions={"r": [Decision.REVERT]}))
    scheduler.begin()
    log = drive(scheduler, fails=frozenset({"c"}))
    assert ("a", REVERT) not in log
    assert log[-3:] == [("c", REVERT), ("b", REVERT), ("r", REVERT)]
    assert hooks.asked == [("r", "c", "c")]


def test_a_decider_saying_no_ignores_the_atom_and_lets_the_rest_run() -> None:
    a, b, c = Noop("a"), Noop("b"), Noop("c")
    flow = graph_flow.Flow("g").add(a, b, c).link(a, b, decider=lambda history: False).link(b, c)
    scheduler, hooks = scheduler_for(flow, FakeHooks(depths={"b": Depth.ATOM}))
    scheduler.begin()
    assert drive(scheduler) == [("a", EXECUTE), ("c", EXECUTE)]
    assert ("b", states.IGNORE, states.IGNORE) in hooks.records
    assert scheduler.state[by_name(scheduler, "b").index] == states.IGNORE


def test_never_resolve_halts_at_the_first_failure() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"), Noop("c"))
    scheduler, hooks = scheduler_for(flow, never_resolve=True)
    scheduler.begin()
    assert drive(scheduler, fails=frozenset({"b"})) == [("a", EXECUTE), ("b", EXECUTE)]
    assert scheduler.halted
    assert hooks.records == []


def test_a_failed_revert_halts_the_run() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"))
    scheduler, _ = scheduler_for(flow)
    scheduler.begin()
    assert take_all(scheduler) == [("a", EXECUTE)]
    scheduler.executed(by_name(scheduler, "a"), True)
    assert take_all(scheduler) == [("b", EXECUTE)]
    scheduler.executed(by_name(scheduler, "b"), False)
    assert take_all(scheduler) == [("b", REVERT)]
    scheduler.reverted(by_name(scheduler, "b"), False)
    assert scheduler.halted
    assert scheduler.next_item() is None


def test_resuming_skips_what_succeeded_and_reruns_the_atom_in_doubt() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"), Noop("c"))
    scheduler, _ = scheduler_for(flow)
    scheduler.load(by_name(scheduler, "a").index, states.SUCCESS, states.EXECUTE)
    scheduler.load(by_name(scheduler, "b").index, states.RUNNING, states.EXECUTE)
    assert scheduler.begin() == []
    assert drive(scheduler) == [("b", EXECUTE), ("c", EXECUTE)]


def test_resuming_reverts_an_atom_in_doubt_that_was_marked_for_revert() -> None:
    # The process died while b ran and a failure elsewhere had already marked it
    # for revert: no call is out for it any more, so it is reverted (it may have run).
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"), Noop("c"))
    scheduler, _ = scheduler_for(flow)
    scheduler.load(by_name(scheduler, "a").index, states.SUCCESS, states.REVERT)
    scheduler.load(by_name(scheduler, "b").index, states.RUNNING, states.REVERT)
    scheduler.load(by_name(scheduler, "c").index, states.PENDING, states.REVERT)
    assert scheduler.begin() == []
    assert drive(scheduler) == [("b", REVERT), ("a", REVERT)]


def test_the_scheduler_decides_on_the_records_it_is_given_and_keeps_no_copy() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"))
    compilation = _compiler.compile_flow(flow)
    given = [Holder() if node.atom is not None else None for node in compilation.nodes]
    scheduler = Scheduler(compilation, FakeHooks(), records=given)
    a, b = (by_name(scheduler, name) for name in ("a", "b"))
    assert scheduler.records[a.index] is given[a.index]
    given[a.index].state = states.SUCCESS  # as the runtime records it, nowhere else
    scheduler.begin()
    assert take_all(scheduler) == [("b", EXECUTE)]
    scheduler.executed(b, True)
    assert given[b.index].state == states.SUCCESS


def test_an_engines_scheduler_decides_on_the_run_states_own_records() -> None:
    # One source of truth: no state list beside the records, synced by hand.
    flow = graph_flow.Flow("f").add(Noop("a"), Noop("b"))
    engine = engines.load(flow)
    engine.run()
    runtime = engine._runtime  # type: ignore[attr-defined]
    run_state = engine.storage.run_state
    for node in runtime.compilation.atoms:
        assert runtime.scheduler.records[node.index] is run_state.records[node.name]
    assert not hasattr(runtime.scheduler, "intention")


class Holder:
    """A stand-in for an atom record: where a state and an intention live."""

    def __init__(self) -> None:
        self.state = states.PENDING
        self.intention = states.EXECUTE


def test_resuming_a_failure_not_yet_resolved_hands_it_back() -> None:
    flow = linear_flow.Flow("f").add(Noop("a"), Noop("b"))
    scheduler, _ = scheduler_for(flow)
    scheduler.load(by_name(scheduler, "a").index, states.SUCCESS, states.EXECUTE)
    scheduler.load(by_name(scheduler, "b").index, states.FAILURE, states.EXECUTE)
    assert [node.name for node in scheduler.begin()] == ["b"]


@pytest.mark.parametrize("size", [10, 1000])
def test_a_linear_step_costs_the_same_whatever_the_flow_size(size: int) -> None:
    # Counted, not timed: the ready queue never holds more than the one ready atom.
    flow = linear_flow.Flow("f").add(*(Noop(f"t{i}") for i in range(size)))
    scheduler, _ = scheduler_for(flow)
    nodes = {node.name: node for node in scheduler._nodes}
    scheduler.begin()
    ran = largest = 0
    while batch := take_all(scheduler):
        for name, _action in batch:
            scheduler.executed(nodes[name], True)
            ran += 1
        largest = max(largest, len(scheduler._ready))
    assert ran == size
    assert largest <= 1


@pytest.mark.parametrize(
    ("retry_state", "retry_intention"),
    [(states.RETRYING, states.EXECUTE), (states.SUCCESS, states.RETRY)],
    ids=["stopped-while-retrying", "stopped-after-deciding-to-retry"],
)
def test_resuming_a_retry_that_was_about_to_retry_retries_its_scope(
    retry_state: str, retry_intention: str
) -> None:
    # Its atoms may be left with any intention (TaskFlow's test_retries sets only states).
    flow = linear_flow.Flow("f", retry=retry.Times(3, "r")).add(Noop("a"), Noop("b"))
    scheduler, _ = scheduler_for(flow)
    scheduler.load(by_name(scheduler, "r").index, retry_state, retry_intention)
    scheduler.load(by_name(scheduler, "a").index, states.REVERTED, states.EXECUTE)
    scheduler.load(by_name(scheduler, "b").index, states.PENDING, states.EXECUTE)
    scheduler.begin()
    assert drive(scheduler) == [("r", RETRY_AGAIN), ("a", EXECUTE), ("b", EXECUTE)]
