"""Property tests over random flows with spawners and loops, on every in-process engine kind.

A random flow is a linear chain of *segments*: a plain task, a spawner (whose
sub-flow of children, linear or unordered, may hold spawners in turn), or a
loop whose body runs a chosen number of times; optionally one task fails at
the end. For each, on the serial, parallel and asyncio engines:

- each atom executes once per spawn and loop iteration, after everything
  before it in the chain (a spawned child after its spawner, before the next
  segment);
- on failure each atom that executed is reverted exactly once, after every
  atom that comes after it (a child before its spawner);
- the final results are the same on every engine.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import dynamic, engines, task
from flowkit.patterns import linear_flow, loop_flow, unordered_flow

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = ("serial", "parallel", "asyncio")


class Log:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str]] = []

    def add(self, what: str, name: str) -> None:
        with self._lock:
            self.events.append((what, name))


class Leaf(task.Task):
    def __init__(self, name: str, log: Log, fails: bool = False) -> None:
        super().__init__(name)
        self.log = log
        self.fails = fails

    def execute(self) -> str:
        self.log.add("execute", self.name)
        if self.fails:
            raise ValueError(f"{self.name} fails")
        return self.name

    def revert(self, **kwargs: Any) -> None:
        self.log.add("revert", self.name)


class Spawner(Leaf):
    """Spawns its ``tree``: ``(linear?, [child spec, ...])``; a child spec is a name or a nested tree."""

    def __init__(self, name: str, log: Log, tree: tuple[bool, list[Any]]) -> None:
        super().__init__(name, log)
        self.tree = tree

    def execute(self) -> Any:
        self.log.add("execute", self.name)
        linear, children = self.tree
        flow = (linear_flow.Flow if linear else unordered_flow.Flow)(f"{self.name}-sub")
        for pos, child in enumerate(children):
            name = f"{self.name}.{pos}"
            flow.add(Spawner(name, self.log, child) if isinstance(child, tuple) else Leaf(name, self.log))
        return dynamic.subflow(flow)


class Counter(Leaf):
    """Provides how many times it has run in this engine run."""

    def __init__(self, name: str, log: Log, provides: str) -> None:
        task.Task.__init__(self, name, provides=provides)
        self.log = log
        self.fails = False
        self.count = 0

    def execute(self) -> int:  # type: ignore[override]
        self.log.add("execute", self.name)
        self.count += 1
        return self.count


trees = st.recursive(
    st.just("leaf"),
    lambda inner: st.tuples(st.booleans(), st.lists(inner, max_size=3)),
    max_leaves=6,
)
segments = st.lists(
    st.one_of(
        st.tuples(st.just("task"), st.none()),
        st.tuples(st.just("spawn"), st.tuples(st.booleans(), st.lists(trees, max_size=4))),
        st.tuples(st.just("loop"), st.integers(min_value=1, max_value=3)),
    ),
    min_size=1,
    max_size=5,
)


def _build(plan: list[tuple[str, Any]], fail: bool, log: Log) -> tuple[linear_flow.Flow, list[list[str]]]:
    """The flow, and per segment the names of its top-level atoms (spawned ones come from the log)."""
    flow = linear_flow.Flow("random")
    names: list[list[str]] = []
    for pos, (kind, arg) in enumerate(plan):
        name = f"s{pos}"
        if kind == "task":
            flow.add(Leaf(name, log))
            names.append([name])
        elif kind == "spawn":
            flow.add(Spawner(name, log, arg))
            names.append([name])
        else:
            symbol = f"{name}_n"
            counter = Counter(f"{name}.count", log, provides=symbol)
            rounds = arg
            until = _until(symbol, rounds)
            flow.add(loop_flow.Flow(name, counter, Leaf(f"{name}.body", log), until=until, max_iterations=3))
            names.append([f"{name}.count", f"{name}.body", f"{name}^until"])
    if fail:
        flow.add(Leaf("last", log, fails=True))
        names.append(["last"])
    return flow, names


def _until(symbol: str, rounds: int) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def until({symbol}):\n    return {symbol} >= {rounds}", namespace)  # noqa: S102 - a parameter named by data
    return namespace["until"]


def _segment_of(name: str) -> int:
    return int(name.split(".", maxsplit=1)[0].split("^", maxsplit=1)[0][1:]) if name != "last" else 10**6


def _is_descendant(child: str, parent: str) -> bool:
    return child.startswith(parent + ".") and not parent.endswith(".count") and not parent.endswith(".body")


def _run(plan: list[tuple[str, Any]], fail: bool, kind: str) -> tuple[Log, dict[str, Any]]:
    log = Log()
    flow, _names = _build(plan, fail, log)
    engine = engines.load(flow, engine=kind)
    try:
        engine.run()
    except ValueError:
        assert fail
    results = {name: engine.storage.get_atom_state(name) for name in engine.storage.run_state.names()}
    if not fail:
        results.update({f"{name}:result": engine.storage.get(name) for name in results})
    return log, results


@SETTINGS
@given(plan=segments, fail=st.booleans())
def test_random_flows_with_spawners_and_loops_run_and_revert_in_order_on_every_engine(
    plan: list[tuple[str, Any]], fail: bool
) -> None:
    outcomes = []
    for kind in KINDS:
        log, results = _run(plan, fail, kind)
        outcomes.append(results)
        executes = [(pos, name) for pos, (what, name) in enumerate(log.events) if what == "execute"]
        # Atoms outside loops execute once; loop atoms once per iteration.
        counts: dict[str, int] = {}
        for _pos, name in executes:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            segment = _segment_of(name)
            if segment < len(plan) and plan[segment][0] == "loop":
                assert count == plan[segment][1], (name, count)
            else:
                assert count == 1, (name, count)
        # Forward order: segment by segment; a spawned atom after its spawner.
        last_of: dict[int, int] = {}
        first_of: dict[int, int] = {}
        for pos, name in executes:
            seg = _segment_of(name)
            first_of.setdefault(seg, pos)
            last_of[seg] = pos
        ordered = sorted(first_of)
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert last_of[before] < first_of[after]
        first_exec = {name: pos for pos, name in reversed(executes)}
        for name, pos in first_exec.items():
            for other, other_pos in first_exec.items():
                if _is_descendant(name, other):
                    assert other_pos < pos, (other, name)
        reverts = [(pos, name) for pos, (what, name) in enumerate(log.events) if what == "revert"]
        if not fail:
            assert not reverts
            continue
        reverted_names = [name for _pos, name in reverts]
        assert sorted(reverted_names) == sorted(set(counts)), "each executed atom reverts exactly once"
        at = {name: pos for pos, name in reverts}
        for name, pos in at.items():
            for other, other_pos in at.items():
                if _segment_of(other) > _segment_of(name) or _is_descendant(other, name):
                    assert other_pos < pos, f"{other} should revert before {name}"
    assert outcomes[0] == outcomes[1] == outcomes[2]
