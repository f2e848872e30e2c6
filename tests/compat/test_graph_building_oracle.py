"""TaskFlow 6.5 as an oracle for building flows: the same random build, on both, links alike.

A build is a list of steps over a few flows (graph, linear, unordered): add a task to
one, nest one in another (even after the nested one was itself added somewhere and
while it keeps growing), or set a nested task's ``provides`` by hand. After every
step both libraries must agree on each flow's links (with their reasons), items,
``requires`` and ``provides``, and on the kind of error a step raised. This guards
the graph flow's indexes of nested flows, which are re-read only when told of a change.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")

KINDS = ("graph", "linear", "unordered")
SYMBOLS = ("a", "b", "c", "d")


class _Lib:
    def __init__(self, root: str) -> None:
        mod = lambda name: importlib.import_module(f"{root}.{name}")  # noqa: E731
        self.patterns = {
            "graph": mod("patterns.graph_flow").Flow,
            "linear": mod("patterns.linear_flow").Flow,
            "unordered": mod("patterns.unordered_flow").Flow,
        }

        class Step(mod("task").Task):  # type: ignore[misc]
            def execute(self, **kwargs: Any) -> Any:
                return None

        self.Step = Step


def _steps() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    task = st.tuples(
        st.just("task"),
        st.integers(0, 3),
        st.sets(st.sampled_from(SYMBOLS), max_size=2),
        st.sets(st.sampled_from(SYMBOLS), max_size=2),
    )
    nest = st.tuples(st.just("nest"), st.integers(0, 3), st.integers(0, 3))
    edit = st.tuples(st.just("edit"), st.integers(0, 20), st.sets(st.sampled_from(SYMBOLS), max_size=2))
    return st.lists(st.one_of(task, task, nest, edit), max_size=14)


def _view(item: Any) -> Any:
    links = sorted(
        (u.name, v.name, tuple(sorted(meta.get("reasons", ())))) for u, v, meta in item.iter_links()
    )
    nodes = sorted(node.name for node, _meta in item.iter_nodes())
    return links, nodes, sorted(item.requires), sorted(item.provides)


def _build(root: str, kinds: list[str], steps: list[tuple[Any, ...]]) -> list[Any]:
    lib = _Lib(root)
    flows = [lib.patterns[kind](f"f{i}") for i, kind in enumerate(kinds)]
    # Tasks never added straight to a graph flow (their symbols may be set by hand:
    # a graph flow reads its own atoms' symbols once, TaskFlow at every add).
    editable: list[Any] = []
    seen: list[Any] = []
    for number, step in enumerate(steps):
        outcome: Any = None
        try:
            if step[0] == "task":
                _op, at, provides, requires = step
                made = lib.Step(f"t{number}", provides=sorted(provides), requires=sorted(requires))
                flows[at].add(made)
                if kinds[at] != "graph":
                    editable.append(made)
            elif step[0] == "nest":
                _op, child, parent = step
                if child > parent:  # keeps the nesting a tree of no loops
                    flows[parent].add(flows[child])
            elif editable:
                _op, which, provides = step
                editable[which % len(editable)].provides = frozenset(provides)
        except Exception as error:  # noqa: BLE001 - the kind of error is compared
            outcome = type(error).__name__
        seen.append((outcome, [_view(item) for item in flows]))
    return seen


@settings(max_examples=300, deadline=None)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=4, max_size=4), steps=_steps())
def test_building_nested_flows_step_by_step_links_as_taskflow(
    kinds: list[str], steps: list[tuple[Any, ...]]
) -> None:
    kinds[0] = "graph"
    assert _build("flowkit", kinds, steps) == _build("taskflow", kinds, steps)
