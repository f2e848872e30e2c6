"""TaskFlow 6.5 as an oracle for building flows: the same random build, on both, links alike.

A build is a list of steps over a few flows (graph, linear, unordered): add a task to
one, nest one in another (even after the nested one was itself added somewhere and
while it keeps growing), or set a task's ``provides`` or ``requires`` by hand after
it was made (whether it sits in a nested flow, straight in a graph flow, or nowhere
yet). After every step both libraries must agree on each flow's links (with their
reasons), items, ``requires`` and ``provides``, and on the kind of error a step
raised. At the end the outer flow is run on both (each task records the arguments it
was given): they must fail alike or hand every task the same values, so the engine
compiles the edited atoms as TaskFlow does and a consumer reads the same provider.

This guards the graph flow's indexes: of its own atoms' symbols (re-read when an atom
in it was edited) and of nested flows (re-read only when told of a change).
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
        self.engines = mod("engines")
        #: Task name -> the arguments its execute was given, in the last run.
        self.given: dict[str, dict[str, Any]] = {}
        given = self.given

        class Step(mod("task").Task):  # type: ignore[misc]
            def execute(self, **kwargs: Any) -> Any:
                given[self.name] = kwargs
                return self.name

        self.Step = Step


def _steps() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    symbols = st.sets(st.sampled_from(SYMBOLS), max_size=2)
    task = st.tuples(st.just("task"), st.integers(0, 3), symbols, symbols)
    nest = st.tuples(st.just("nest"), st.integers(0, 3), st.integers(0, 3))
    edit = st.tuples(st.just("edit"), st.integers(0, 20), st.sampled_from(("provides", "requires")), symbols)
    return st.lists(st.one_of(task, task, nest, edit), max_size=14)


def _view(item: Any) -> Any:
    links = sorted(
        (u.name, v.name, tuple(sorted(meta.get("reasons", ())))) for u, v, meta in item.iter_links()
    )
    nodes = sorted(node.name for node, _meta in item.iter_nodes())
    return links, nodes, sorted(item.requires), sorted(item.provides)


def _run(lib: _Lib, outer: Any, store: dict[str, Any]) -> Any:
    """Run ``outer`` serially: the kind of error it raised, or what each task was given."""
    lib.given.clear()
    try:
        lib.engines.run(outer, engine="serial", store=dict(store))
    except Exception as error:  # noqa: BLE001 - the kind of error is compared
        if type(error) is ValueError and "duplicate" in str(error):
            # A flow nested twice: TaskFlow's compiler says so with a ValueError,
            # flowkit's with exceptions.Duplicate (doc/exceptions.rst).
            return "Duplicate"
        return type(error).__name__
    return sorted((name, sorted(kwargs.items())) for name, kwargs in lib.given.items())


def _build(root: str, kinds: list[str], steps: list[tuple[Any, ...]], store: dict[str, Any]) -> list[Any]:
    lib = _Lib(root)
    flows = [lib.patterns[kind](f"f{i}") for i, kind in enumerate(kinds)]
    made: list[Any] = []
    seen: list[Any] = []
    for number, step in enumerate(steps):
        outcome: Any = None
        try:
            if step[0] == "task":
                _op, at, provides, requires = step
                task = lib.Step(f"t{number}", provides=sorted(provides), requires=sorted(requires))
                made.append(task)
                flows[at].add(task)
            elif step[0] == "nest":
                _op, child, parent = step
                if child > parent:  # keeps the nesting a tree of no loops
                    flows[parent].add(flows[child])
            elif made:
                _op, which, attribute, symbols = step
                setattr(made[which % len(made)], attribute, frozenset(symbols))
        except Exception as error:  # noqa: BLE001 - the kind of error is compared
            outcome = type(error).__name__
        seen.append((outcome, [_view(item) for item in flows]))
    seen.append(_run(lib, flows[0], store))
    return seen


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=4, max_size=4),
    steps=_steps(),
    stored=st.sets(st.sampled_from(SYMBOLS)),
)
def test_building_and_editing_nested_flows_step_by_step_links_and_runs_as_taskflow(
    kinds: list[str], steps: list[tuple[Any, ...]], stored: set[str]
) -> None:
    kinds[0] = "graph"
    store = {symbol: f"stored {symbol}" for symbol in stored}
    assert _build("flowkit", kinds, steps, store) == _build("taskflow", kinds, steps, store)
