"""The scheduler's ready queue hands nodes out in heap order, whatever structure holds them.

The queue starts as a deque kept in key order and becomes a heap only when an
entry arrives out of order (see ``Scheduler._reorder``): the order atoms run in is
TaskFlow-visible, so for random flows (nested patterns, links, priorities,
failures) and random completion orders, the scheduler must hand out exactly what
it hands out with a heap from the start.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import states
from flowkit.engines._scheduler import EXECUTE, REVERT, Scheduler
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

from .test_scheduler import FakeHooks, Noop, by_name, scheduler_for

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# A flow as drawn: an atom's priority, or (pattern, children, links between children).
Spec = Any


@st.composite
def specs(draw: st.DrawFn, depth: int = 0) -> Spec:
    """A random flow: linear, unordered or graph (with random links), atoms and nested flows."""
    kind = draw(st.sampled_from(["linear", "unordered", "graph"]))
    children: list[Spec] = []
    for _ in range(draw(st.integers(1, 5))):
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            children.append(draw(specs(depth + 1)))
        else:
            children.append(draw(st.sampled_from([0, 0, 0, -1, 1, 5])))
    links: list[tuple[int, int]] = []
    if kind == "graph" and len(children) > 1:
        pairs = st.lists(st.integers(0, len(children) - 1), min_size=2, max_size=2, unique=True)
        links = [(min(p), max(p)) for p in draw(st.lists(pairs, max_size=2 * len(children)))]
    return kind, children, links


def build(spec: Spec, names: list[str]) -> Any:
    """The flow ``spec`` describes; each atom's name is appended to ``names``."""
    if isinstance(spec, int):
        atom = Noop(f"a{len(names)}")
        atom.priority = spec
        names.append(atom.name)
        return atom
    kind, children, links = spec
    pattern = {"linear": linear_flow, "unordered": unordered_flow, "graph": graph_flow}[kind]
    items = [build(child, names) for child in children]
    flow = pattern.Flow(f"{kind}{len(names)}").add(*items)
    for u, v in links:
        flow.link(items[u], items[v])
    return flow


def _heap_from_the_start(scheduler: Scheduler) -> None:
    """Make ``scheduler`` queue ready nodes in a heap from the first one, as it always did before."""
    scheduler._use_heaps()


def _handed_out(scheduler: Scheduler, seed: int, fails: frozenset[str]) -> list[tuple[str, int]]:
    """Drive ``scheduler`` to the end, calls finishing in an order ``seed`` picks; return its hand-outs."""
    rnd = random.Random(seed)
    log: list[tuple[str, int]] = []
    in_flight: list[tuple[str, int]] = []
    scheduler.begin()
    while True:
        while (item := scheduler.next_item()) is not None:
            node, action = item
            scheduler.records[node.index].state = states.REVERTING if action == REVERT else states.RUNNING
            log.append((node.name, action))
            in_flight.append((node.name, action))
        if not in_flight:
            return log
        # Some of the calls out finish, in any order, before the next pull.
        for name, action in rnd.sample(in_flight, rnd.randint(1, len(in_flight))):
            in_flight.remove((name, action))
            node = by_name(scheduler, name)
            if action == REVERT:
                scheduler.reverted(node, True)
            else:
                scheduler.executed(node, name not in fails)


@SETTINGS
@given(spec=specs(), seed=st.integers(0, 2**32), data=st.data())
def test_nodes_are_handed_out_in_the_order_a_heap_gives(spec: Spec, seed: int, data: st.DataObject) -> None:
    names: list[str] = []
    flow = build(spec, names)
    fails = frozenset(data.draw(st.lists(st.sampled_from(names), max_size=1)))
    scheduler, _ = scheduler_for(flow)
    heap_scheduler, _ = scheduler_for(flow)
    _heap_from_the_start(heap_scheduler)
    assert _handed_out(scheduler, seed, fails) == _handed_out(heap_scheduler, seed, fails)


def test_the_ready_queue_becomes_a_heap_only_when_an_entry_arrives_out_of_order() -> None:
    flow = linear_flow.Flow("f").add(
        unordered_flow.Flow("first").add(*(Noop(f"t{i}") for i in range(3))), Noop("last")
    )
    scheduler, _ = scheduler_for(flow)
    scheduler.begin()
    assert [scheduler.next_item() is not None for _ in range(4)] == [True, True, True, False]
    assert not isinstance(scheduler._ready, list)  # three in order, none out of it
    assert scheduler._heappush is None  # _heapq's functions not even looked up

    late = Noop("late")
    late.priority = 1  # ready with the others, but goes before them
    scheduler, _ = scheduler_for(unordered_flow.Flow("u").add(Noop("a"), Noop("b"), late))
    scheduler.begin()
    assert isinstance(scheduler._ready, list)
    assert [item[0].name for item in iter(scheduler.next_item, None)] == ["late", "a", "b"]


def test_a_failure_with_nodes_still_queued_hands_out_the_same_reverts_as_a_heap() -> None:
    # One explicit case of the property above, failures and stale entries included.
    def run(heap: bool) -> list[tuple[str, int]]:
        flow = linear_flow.Flow("f").add(
            Noop("a"), unordered_flow.Flow("u").add(Noop("b"), Noop("c"), Noop("d")), Noop("e")
        )
        scheduler, _ = scheduler_for(flow, FakeHooks())
        if heap:
            _heap_from_the_start(scheduler)
        return _handed_out(scheduler, seed=7, fails=frozenset({"c"}))

    handed = run(heap=False)
    assert handed == run(heap=True)
    assert ("c", EXECUTE) in handed and ("a", REVERT) in handed
