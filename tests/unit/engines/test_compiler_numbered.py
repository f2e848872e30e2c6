"""A graph flow compiled from its numbered links compiles exactly as from its link dicts.

Stock graph flows keep every link twice: in dicts keyed by item (what the public
reading API walks) and as two arrays of insertion numbers (what the compiler
reads to wire a big graph without cache misses). These tests build random graph
flows, with failed adds, hand links, backward links, deciders, nested flows and
atoms that keep results under several names, and check that the compilation made
through the numbers is the one made the general way, node by node and argument
by argument.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import exceptions as exc
from flowkit import flow as flow_mod
from flowkit import task
from flowkit.engines import _compiler
from flowkit.engines._compiler import Compilation, compile_flow
from flowkit.patterns import graph_flow, linear_flow

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Step(task.Task):
    def execute(self, **kwargs: Any) -> None:
        """Never called: only compiling is compared."""


def _dump(compilation: Compilation) -> list[Any]:
    """Everything the engine reads of a compilation, as plain comparable values."""
    rows: list[Any] = [list(compilation.order), [n.index for n in compilation.open_atoms]]
    for node in compilation.nodes:
        rows.append(
            (
                node.index,
                node.kind,
                node.name,
                node.retry,
                node.pos,
                tuple(node.succ),
                tuple(node.pred),
                node.exec_args,
                node.revert_args,
                [(d.source, d.depth) for d in node.deciders],
                node.scope.name,
                node.scope.mode,
                {pos: sorted(preds) for pos, preds in node.scope.preds_of.items()},
                node.scope.rank,
            )
        )
    return rows


def _general(flow: Any, *, strict: bool = False) -> Compilation:
    """Compile ``flow`` the general way: no numbered links, no sibling shortcuts."""
    index_providers = _compiler._index_providers

    def without_shortcut(scope: _compiler.FlowScope, nodes: list[_compiler.Node]) -> None:
        index_providers(scope, nodes)
        scope.atoms_from = -1

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(graph_flow.Flow, "_numbered_links", lambda self: None)
        patched.setattr(_compiler, "_index_providers", without_shortcut)
        return compile_flow(flow, strict=strict)


def _outcome(compile_it: Callable[[], Compilation]) -> Any:
    """The compilation dumped, or the error it raised (its class and attributes)."""
    try:
        return _dump(compile_it())
    except exc.AmbiguousDependency as error:  # strict: equally near providers
        return type(error), vars(error)


def _same_compilation(flow: Any) -> None:
    assert _dump(compile_flow(flow)) == _dump(_general(flow))
    strict = _outcome(lambda: compile_flow(flow, strict=True))
    assert strict == _outcome(lambda: _general(flow, strict=True))


def _numbers_match_dicts(flow: graph_flow.Flow) -> None:
    """The numbered links are the dict links, in the order they were made per source."""
    position = {item: at for at, item in enumerate(flow._order)}
    numbered: dict[int, list[int]] = {}
    items = list(flow._order)
    for u, v, symbol in zip(flow._link_from, flow._link_to, flow._link_symbol, strict=True):
        numbered.setdefault(u, []).append(v)
        reasons = graph_flow._copy_meta(flow._succ[items[u]][items[v]]).get(flow_mod.LINK_REASONS, set())
        assert symbol in reasons if symbol is not None else not reasons
    from_dicts = {position[u]: [position[v] for v in outs] for u, outs in flow._succ.items() if outs}
    assert numbered == from_dicts
    assert flow._items == list(flow._order)
    assert all(flow._order[item] == at for at, item in enumerate(flow._items))


@st.composite
def _graph_flows(draw: st.DrawFn) -> graph_flow.Flow:
    flow = graph_flow.Flow("g")
    items: list[Any] = []
    count = draw(st.integers(1, 24))
    # Half the flows are of plain atoms only (the shape big generated flows have).
    shapes = ["one", "none"] if draw(st.booleans()) else ["one", "two", "none", "nested", "shared", "told"]
    made = 0
    while made < count:
        batch: list[Any] = []
        for _ in range(draw(st.integers(1, 4))):
            i = made
            made += 1
            symbols = [f"s{p}" for p in draw(st.lists(st.integers(0, count - 1), max_size=3, unique=True))]
            shape = draw(st.sampled_from(shapes))
            if shape == "nested":
                inner = linear_flow.Flow(f"f{i}").add(
                    Step(f"t{i}a", provides=f"s{i}", requires=symbols), Step(f"t{i}b", provides=f"u{i}")
                )
                batch.append(inner)
                continue
            names = {
                "one": f"s{i}",
                "two": [f"s{i}", f"w{i}"],
                "none": None,
                "shared": "shared",
                "told": f"w{i}",
            }
            provides: Any = names[shape]
            requires = symbols + (["shared"] if draw(st.booleans()) and draw(st.booleans()) else [])
            step = Step(f"t{i}", provides=provides, requires=requires)
            if shape == "told":
                # provides set by hand to what save_as does not hold: the flow links
                # by provides, the compiler reads save_as.
                step.provides = frozenset({f"s{i}"})
            batch.append(step)
        try:
            flow.add(*batch, resolve_existing=draw(st.booleans()))
        except (exc.AmbiguousDependency, exc.DependencyFailure):
            pass  # the flow is left as it was: what is compared below
        else:
            items.extend(batch)
        _numbers_match_dicts(flow)
        if len(items) >= 2 and draw(st.booleans()):
            u, v = draw(st.permutations(items))[:2]
            decider = (lambda history: True) if draw(st.integers(0, 5)) == 0 else None
            with contextlib.suppress(exc.DependencyFailure):  # a cycle: refused, nothing changed
                flow.link(u, v, decider=decider)
            _numbers_match_dicts(flow)
    return flow


@SETTINGS
@given(flow=_graph_flows())
def test_a_random_graph_flow_compiles_the_same_through_its_numbered_links(flow: graph_flow.Flow) -> None:
    _same_compilation(flow)


def test_a_failed_add_takes_its_numbered_links_and_numbers_back() -> None:
    a = Step("a", provides="x")
    b = Step("b", provides="x")
    flow = graph_flow.Flow("g").add(a, Step("c", requires=["x"]))
    with pytest.raises(exc.AmbiguousDependency):
        flow.add(b, Step("d", provides="y", requires=["x"]))
    _numbers_match_dicts(flow)
    flow.add(Step("e", requires=["x"]))
    _numbers_match_dicts(flow)
    assert flow._numbered_links() is not None


def test_links_in_a_flow_with_a_target_are_not_read_as_numbers() -> None:
    flow = graph_flow.TargetedFlow("g").add(Step("a", provides="x"), Step("b", requires=["x"]), Step("c"))
    assert flow._numbered_links() is not None
    flow.set_target(flow._order.__iter__().__next__())
    assert flow._numbered_links() is None


def test_a_backward_link_makes_the_compiler_read_the_link_dicts() -> None:
    a, b = Step("a", requires=["x"]), Step("b", provides="x")
    flow = graph_flow.Flow("g").add(a, b)  # b is linked to a, added before it
    assert flow._numbered_links() is None
    _same_compilation(flow)


def test_readers_of_linked_and_unlinked_symbols_are_planned_as_the_general_path_does() -> None:
    a, b = Step("a", provides="x"), Step("b", provides="y")
    both = Step("both", provides=["p", "q"])
    flow = graph_flow.Flow("g").add(a, b, both)
    reader = Step("reader", requires=["x", "missing"])  # one link, one open argument
    two = Step("two", requires=["y", "x"])  # two links, made in symbol order
    same = Step("same", requires=["p", "q"])  # one link made for two symbols
    late = Step("late", requires=["z"])
    flow.add(reader, two, same, late, Step("c", provides="z"), resolve_existing=False)
    flow.link(a, late)  # by hand: made for no symbol
    _same_compilation(flow)
    plans = {node.name: node.exec_args for node in compile_flow(flow).nodes}
    assert [p.provider for p in plans["reader"]] == [1, -1]


def test_a_compilation_of_siblings_read_by_number_is_the_general_one() -> None:
    providers = [Step(f"p{i}", provides=f"x{i}") for i in range(5)]
    several = Step("several", provides=["y", "z"])
    readers = [Step(f"r{i}", requires=[f"x{i}", "y"]) for i in range(5)]
    flow = graph_flow.Flow("g").add(*providers, several, *readers)
    _same_compilation(flow)
    (read_y,) = [plan for plan in compile_flow(flow).nodes[-2].exec_args if plan.symbol == "y"]
    assert read_y.key == 0  # the first of the names it keeps its results under
