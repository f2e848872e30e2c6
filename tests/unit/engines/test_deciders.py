"""Deciders on graph flow links: a "no" skips the target (IGNORE) and as much after it as its depth says."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, states
from flowkit.deciders import Depth
from flowkit.patterns import graph_flow, linear_flow

from ._tasks import Recorder, Step


def _graph(rec: Recorder, decider: Any, depth: Any = None) -> graph_flow.Flow:
    """a -(decider)-> b -> c -> d, and b -> sub (a linear flow of s1, s2)."""
    a, b, c, d = (Step(n, rec) for n in "abcd")
    sub = linear_flow.Flow("sub").add(Step("s1", rec), Step("s2", rec))
    flow = graph_flow.Flow("g").add(a, b, c, d, sub)
    flow.link(a, b, decider=decider, decider_depth=depth)
    flow.link(b, c).link(c, d).link(b, sub)
    return flow


ALL_ATOMS = {"a", "b", "c", "d", "s1", "s2"}


@pytest.mark.parametrize(
    ("depth", "ignored"),
    [
        (None, {"b", "c", "d", "s1", "s2"}),
        (Depth.ALL, {"b", "c", "d", "s1", "s2"}),
        (Depth.FLOW, {"b", "c", "d"}),
        (Depth.NEIGHBORS, {"b", "c"}),
        (Depth.ATOM, {"b"}),
        ("atom", {"b"}),
    ],
    ids=["default-is-all", "all", "flow", "neighbors", "atom", "depth-by-name"],
)
def test_a_decider_saying_no_ignores_the_target_and_what_its_depth_covers(
    engine_kind: str, rec: Recorder, depth: Any, ignored: set[str]
) -> None:
    engine = engines.load(_graph(rec, lambda history: False, depth), engine=engine_kind)
    engine.run()
    assert set(rec.executed()) == ALL_ATOMS - ignored
    assert len(rec.executed()) == len(ALL_ATOMS - ignored)
    for name in ALL_ATOMS:
        expected = states.IGNORE if name in ignored else states.SUCCESS
        assert engine.storage.get_atom_state(name) == expected, name
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_a_decider_saying_yes_lets_everything_run(engine_kind: str, rec: Recorder) -> None:
    engines.run(_graph(rec, lambda history: True), engine=engine_kind)
    assert sorted(rec.executed()) == sorted(ALL_ATOMS)


def test_decider_history_holds_the_sources_result(engine_kind: str, rec: Recorder) -> None:
    seen: list[dict[str, Any]] = []

    def decide(history: dict[str, Any]) -> bool:
        seen.append(dict(history))
        return True

    a, b = Step("a", rec, value={"answer": 42}), Step("b", rec)
    flow = graph_flow.Flow("g").add(a, b).link(a, b, decider=decide)
    engines.run(flow, engine=engine_kind)
    assert seen == [{"a": {"answer": 42}}]


def test_a_target_with_several_deciders_sees_all_their_sources(engine_kind: str, rec: Recorder) -> None:
    seen: list[dict[str, Any]] = []

    def decide(history: dict[str, Any]) -> bool:
        seen.append(dict(history))
        return True

    a, b, c = Step("a", rec), Step("b", rec), Step("c", rec)
    flow = graph_flow.Flow("g").add(a, b, c).link(a, c, decider=decide).link(b, c, decider=decide)
    engines.run(flow, engine=engine_kind)
    assert seen
    assert all(h == {"a": "a", "b": "b"} for h in seen)
    assert rec.executed().count("c") == 1


def test_one_no_among_several_deciders_ignores_the_target(engine_kind: str, rec: Recorder) -> None:
    a, b, c = Step("a", rec), Step("b", rec), Step("c", rec)
    flow = graph_flow.Flow("g").add(a, b, c)
    flow.link(a, c, decider=lambda history: True).link(b, c, decider=lambda history: False)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert "c" not in rec.executed()
    assert engine.storage.get_atom_state("c") == states.IGNORE


def test_a_decider_on_a_link_into_a_nested_flow_ignores_its_atoms(engine_kind: str, rec: Recorder) -> None:
    a, z = Step("a", rec), Step("z", rec)
    sub = linear_flow.Flow("sub").add(Step("s1", rec), Step("s2", rec))
    flow = graph_flow.Flow("g").add(a, sub, z).link(a, sub, decider=lambda history: False).link(sub, z)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert rec.executed() == ["a"]
    for name in ("s1", "s2", "z"):
        assert engine.storage.get_atom_state(name) == states.IGNORE


def test_ignored_atoms_are_not_reverted_when_a_later_atom_fails(engine_kind: str, rec: Recorder) -> None:
    from ._tasks import Boom

    a, b, c = Step("a", rec), Step("b", rec), Boom("c", rec)
    flow = graph_flow.Flow("g").add(a, b, c)
    flow.link(a, b, decider=lambda history: False, decider_depth=Depth.ATOM).link(b, c)
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "a"]
    assert engine.storage.get_atom_state("b") == states.IGNORE
