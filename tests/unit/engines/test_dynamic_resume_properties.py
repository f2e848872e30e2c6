"""Property test: random flows with spawners and loops, interrupted at a random call and resumed.

The flow's shape is drawn as in ``test_dynamic_properties.py`` (spawners whose
sub-flows hold spawners, loops, plain tasks). Sub-flows are spawned through a
factory, so a durable run can record them. The first run is interrupted
(``KeyboardInterrupt``, which leaves the flow RUNNING as a crash would) at
the k-th call; a second engine resumes the stored run. Then:

- the resumed run ends as an uninterrupted run of the same flow does;
- no atom stored SUCCESS at the interruption runs again in the same loop
  iteration (spawners included: their sub-flows are rebuilt from the record).
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowkit import dynamic, engines, task
from flowkit import states as fst
from flowkit.patterns import linear_flow, loop_flow, unordered_flow
from flowkit.persistence import backends, models
from flowkit.types.notifier import Notifier

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: ("running", atom, iteration) as announced, and the interruption point.
ANNOUNCED: list[tuple[str, int]] = []
KILL = {"at": 0, "calls": 0}


def _call() -> None:
    KILL["calls"] += 1
    if KILL["calls"] == KILL["at"]:
        raise KeyboardInterrupt


class Leaf(task.Task):
    def execute(self) -> str:
        _call()
        return self.name


class Spawner(task.Task):
    """Spawns the sub-flow ``tree`` describes, through the module's factory."""

    def __init__(self, name: str, tree: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.tree = tree or [False, []]

    def execute(self) -> Any:
        _call()
        return dynamic.subflow(make_sub, self.tree, self.name)


def make_sub(tree: list[Any], prefix: str) -> Any:
    """The factory: ``tree`` is ``[linear?, [child, ...]]``, a child ``"leaf"`` or a nested tree."""
    linear, children = tree
    flow = (linear_flow.Flow if linear else unordered_flow.Flow)(f"{prefix}-sub")
    for pos, child in enumerate(children):
        name = f"{prefix}.{pos}"
        flow.add(Spawner(name, child) if isinstance(child, list) else Leaf(name))
    return flow


class Counter(task.Task):
    """Counts its runs in this test (kept across the interruption: same process)."""

    def __init__(self, name: str, provides: str) -> None:
        super().__init__(name, provides=provides)
        self.count = 0

    def execute(self) -> int:
        _call()
        self.count += 1
        return self.count


trees = st.recursive(
    st.just("leaf"),
    lambda inner: st.tuples(st.booleans(), st.lists(inner, max_size=3)).map(list),
    max_leaves=5,
)
segments = st.lists(
    st.one_of(
        st.tuples(st.just("task"), st.none()),
        st.tuples(st.just("spawn"), st.tuples(st.booleans(), st.lists(trees, max_size=3)).map(list)),
        st.tuples(st.just("loop"), st.integers(min_value=1, max_value=3)),
    ),
    min_size=1,
    max_size=4,
)


def _build(plan: list[tuple[str, Any]]) -> linear_flow.Flow:
    flow = linear_flow.Flow("random")
    for pos, (kind, arg) in enumerate(plan):
        name = f"s{pos}"
        if kind == "task":
            flow.add(Leaf(name))
        elif kind == "spawn":
            flow.add(Spawner(name, arg))
        else:
            symbol = f"{name}_n"
            namespace: dict[str, Any] = {}
            exec(f"def until({symbol}):\n    return {symbol} >= {arg}", namespace)  # noqa: S102
            flow.add(
                loop_flow.Flow(
                    name, Counter(f"{name}.count", symbol), until=namespace["until"], max_iterations=3
                )
            )
    return flow


def _announce(engine: Any) -> None:
    def on_state(state: str, details: dict[str, Any]) -> None:
        if state == fst.RUNNING:
            ANNOUNCED.append((details["task_name"], int(details.get("iteration", 0))))

    engine.atom_notifier.register(Notifier.ANY, on_state)


def _outcome(engine: Any) -> dict[str, Any]:
    storage = engine.storage
    names = sorted(storage.run_state.names())
    return {name: (storage.get_atom_state(name), storage.get(name)) for name in names}


@SETTINGS
@given(plan=segments, at=st.integers(min_value=1, max_value=15))
def test_a_run_interrupted_anywhere_resumes_to_the_uninterrupted_outcome(
    plan: list[tuple[str, Any]], at: int
) -> None:
    KILL.update(at=0, calls=0)
    reference = engines.load(_build(plan))
    reference.run()
    want = _outcome(reference)

    backend = backends.fetch({"connection": "memory://"})
    with contextlib.closing(backend):
        flow = _build(plan)
        KILL.update(at=at, calls=0)
        engine = engines.load(flow, backend=backend, book=models.LogBook("props"))
        ANNOUNCED.clear()
        _announce(engine)
        try:
            engine.run()
        except KeyboardInterrupt:
            pass
        else:
            event("finished before the interruption point")
            assert _outcome(engine) == want
            return
        spawned = any(
            isinstance((ad.meta or {}).get("spawned"), dict) for ad in engine.storage.run_state.snapshot()
        )
        event("interrupted after a spawn" if spawned else "interrupted before any spawn")
        KILL["at"] = 0
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        stored = {ad.name: (ad.state, int((ad.meta or {}).get("iteration", 0))) for ad in detail}
        ANNOUNCED.clear()
        resumed = engines.load(flow, flow_detail=detail, backend=backend)
        _announce(resumed)
        resumed.run()
        assert _outcome(resumed) == want
        for name, iteration in ANNOUNCED:
            assert stored.get(name) != (fst.SUCCESS, iteration), f"{name} ran again in iteration {iteration}"
