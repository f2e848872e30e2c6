"""Property tests: on random DAGs every atom runs once after its predecessors, and reverts run backwards."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import engines, task
from flowkit.patterns import graph_flow

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Log:
    """Events in the order they happened, across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, int]] = []

    def add(self, what: str, node: int) -> None:
        with self._lock:
            self.events.append((what, node))

    def index(self, what: str) -> dict[int, int]:
        """Node -> position of its (only) ``what`` event."""
        found: dict[int, int] = {}
        for position, (kind, node) in enumerate(self.events):
            if kind == what:
                assert node not in found, f"node {node} has two {what!r} events"
                found[node] = position
        return found

    def nodes(self, what: str) -> list[int]:
        return [node for kind, node in self.events if kind == what]


class Node(task.Task):
    def __init__(self, index: int, log: Log, fails: bool) -> None:
        super().__init__(f"n{index}")
        self.index = index
        self.log = log
        self.fails = fails

    def execute(self) -> int:
        self.log.add("start", self.index)
        self.log.add("done", self.index)
        if self.fails:
            raise ValueError(f"n{self.index} failed")
        return self.index

    def revert(self, **kwargs: Any) -> None:
        self.log.add("revert-start", self.index)
        self.log.add("revert-done", self.index)


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], list[int]]:
    """``(n, edges u -> v with u < v, the order nodes are added to the flow)``."""
    n = draw(st.integers(min_value=1, max_value=30))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=min(3 * n, 80)))
    edges = {(min(u, v), max(u, v)) for u, v in pairs if u != v}
    insertion = draw(st.permutations(range(n)))
    return n, edges, list(insertion)


def _build(
    dag: tuple[int, set[tuple[int, int]], list[int]], log: Log, failing: int | None
) -> graph_flow.Flow:
    n, edges, insertion = dag
    nodes = [Node(i, log, fails=i == failing) for i in range(n)]
    flow = graph_flow.Flow("dag").add(*(nodes[i] for i in insertion))
    for u, v in sorted(edges):
        flow.link(nodes[u], nodes[v])
    return flow


def _successors(n: int, edges: set[tuple[int, int]]) -> dict[int, set[int]]:
    """Node -> all its transitive successors."""
    direct: dict[int, set[int]] = {i: set() for i in range(n)}
    for u, v in edges:
        direct[u].add(v)
    closure: dict[int, set[int]] = {}
    for node in reversed(range(n)):  # edges go from lower to higher index
        reach = set(direct[node])
        for succ in direct[node]:
            reach |= closure[succ]
        closure[node] = reach
    return closure


def _load(flow: graph_flow.Flow, kind: str) -> Any:
    options = {"max_workers": 4} if kind == "parallel" else {}
    return engines.load(flow, engine=kind, **options)


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@SETTINGS
@given(dag=dags())
def test_every_atom_runs_once_after_all_its_predecessors(kind: str, dag: Any) -> None:
    n, edges, _ = dag
    log = Log()
    _load(_build(dag, log, failing=None), kind).run()
    started, done = log.index("start"), log.index("done")
    assert sorted(started) == list(range(n))
    for u, v in edges:
        assert done[u] < started[v], f"n{v} started before its predecessor n{u} finished"
    assert log.nodes("revert-start") == []


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@SETTINGS
@given(dag=dags(), data=st.data())
def test_after_a_failure_everything_that_ran_is_reverted_once_successors_first(
    kind: str, dag: Any, data: st.DataObject
) -> None:
    n, edges, _ = dag
    failing = data.draw(st.integers(0, n - 1), label="failing")
    log = Log()
    engine = _load(_build(dag, log, failing=failing), kind)
    with pytest.raises(ValueError, match=f"n{failing} failed"):
        engine.run()
    finished = log.index("done")
    revert_started, revert_done = log.index("revert-start"), log.index("revert-done")
    # Exactly the atoms that ran are reverted, each once (index() checks "once").
    assert set(revert_started) == set(finished)
    assert failing in revert_started
    successors = _successors(n, edges)
    for node, position in revert_started.items():
        for succ in successors[node]:
            if succ in finished:
                assert revert_done[succ] < position, f"n{node} reverted before its successor n{succ}"
    # An atom is reverted only after it finished.
    for node, position in revert_started.items():
        assert finished[node] < position
    # (The serial engine, like TaskFlow's, reverts every atom whose revert is ready
    # in one step, so the order is newest first only among atoms ready together.)
