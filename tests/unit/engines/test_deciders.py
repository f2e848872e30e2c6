"""Deciders on graph flow links: a "no" skips the target (IGNORE) and as much after it as its depth says."""

from __future__ import annotations

import itertools
import sys
from typing import Any, NamedTuple

import pytest

from flowkit import engines, states
from flowkit.deciders import Depth
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.persistence.models import FlowDetail
from flowkit.types.notifier import Notifier

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


# -- a suspend around a decided link: TaskFlow 6.5's sequences, written out ------------------
#
# TaskFlow asks a link's deciders as soon as the link's source finishes (while it
# takes in that outcome), not when it next starts atoms: a suspend asked for as the
# source succeeds still finds the skipped atoms IGNORE, in storage and in the
# notifications, before the run ends. Each case runs on a flow where one atom at a
# time is ready, so the order is the same on every engine.


def _chain(rec: Recorder, depth: Any) -> graph_flow.Flow:
    """a -(no, ``depth``)-> b -> c -> d -> sub (a linear flow of s1, s2)."""
    a, b, c, d = (Step(n, rec) for n in "abcd")
    sub = linear_flow.Flow("sub").add(Step("s1", rec), Step("s2", rec))
    flow = graph_flow.Flow("g").add(a, b, c, d, sub)
    flow.link(a, b, decider=lambda history: False, decider_depth=depth)
    return flow.link(b, c).link(c, d).link(d, sub)


#: The flow's and atoms' notifications of a run, as (atom name or "flow", state).
Events = list[tuple[str, str]]


class Run(NamedTuple):
    """One run of a flow suspended and resumed: what listeners heard, what storage said after."""

    events: Events
    stored: dict[str, str]


def _runs_suspended_at(engine_kind: str, build: Any, at: str, names: list[str]) -> list[Run]:
    """Suspend as ``at`` succeeds, then resume with a new engine on the same flow detail until done.

    Returns each run's notifications and every atom's stored state once ``run()`` returned.
    """
    detail = FlowDetail("g", "11111111-2222-3333-4444-555555555555")
    engine = engines.load(build(), flow_detail=detail, engine=engine_kind)
    runs: list[Run] = []
    asked: list[bool] = []
    while len(runs) < 3:
        events: Events = []

        def on_atom(
            state: str, details: dict[str, Any], engine: Any = engine, events: Events = events
        ) -> None:
            events.append((details["task_name"], state))
            if (details["task_name"], state) == (at, states.SUCCESS) and not asked:
                asked.append(True)
                engine.suspend()

        engine.atom_notifier.register(Notifier.ANY, on_atom)
        engine.notifier.register(
            Notifier.ANY, lambda state, details, events=events: events.append(("flow", state))
        )
        engine.run()
        runs.append(Run(events, {name: engine.storage.get_atom_state(name) for name in names}))
        if engine.storage.get_flow_state() != states.SUSPENDED:
            return runs
        engine = engines.load(build(), flow_detail=detail, engine=engine_kind)
    raise AssertionError("the run did not end in three runs")


CHAIN = ["a", "b", "c", "d", "s1", "s2"]
_START = [("flow", "RUNNING"), ("a", "RUNNING"), ("a", "SUCCESS"), ("flow", "SUSPENDING")]
_REST = [("s1", "RUNNING"), ("s1", "SUCCESS"), ("s2", "RUNNING"), ("s2", "SUCCESS"), ("flow", "SUCCESS")]

#: What TaskFlow 6.5 tells and stores when the chain is suspended as "a" succeeds, per depth.
SUSPENDED_AT_THE_SOURCE = {
    # Only skipped atoms are left: the run ends SUCCESS, not SUSPENDED.
    Depth.ALL: [
        Run(
            [*_START, ("b", "IGNORE"), ("c", "IGNORE"), ("d", "IGNORE"), ("s1", "IGNORE"), ("s2", "IGNORE")]
            + [("flow", "SUCCESS")],
            {"a": "SUCCESS", "b": "IGNORE", "c": "IGNORE", "d": "IGNORE", "s1": "IGNORE", "s2": "IGNORE"},
        )
    ],
    Depth.FLOW: [
        Run(
            [*_START, ("b", "IGNORE"), ("c", "IGNORE"), ("d", "IGNORE"), ("flow", "SUSPENDED")],
            {"a": "SUCCESS", "b": "IGNORE", "c": "IGNORE", "d": "IGNORE", "s1": "PENDING", "s2": "PENDING"},
        ),
        Run(
            [("flow", "RUNNING"), *_REST],
            {"a": "SUCCESS", "b": "IGNORE", "c": "IGNORE", "d": "IGNORE", "s1": "SUCCESS", "s2": "SUCCESS"},
        ),
    ],
    Depth.NEIGHBORS: [
        Run(
            [*_START, ("b", "IGNORE"), ("c", "IGNORE"), ("flow", "SUSPENDED")],
            {"a": "SUCCESS", "b": "IGNORE", "c": "IGNORE", "d": "PENDING", "s1": "PENDING", "s2": "PENDING"},
        ),
        Run(
            [("flow", "RUNNING"), ("d", "RUNNING"), ("d", "SUCCESS"), *_REST],
            {"a": "SUCCESS", "b": "IGNORE", "c": "IGNORE", "d": "SUCCESS", "s1": "SUCCESS", "s2": "SUCCESS"},
        ),
    ],
    Depth.ATOM: [
        Run(
            [*_START, ("b", "IGNORE"), ("flow", "SUSPENDED")],
            {"a": "SUCCESS", "b": "IGNORE", "c": "PENDING", "d": "PENDING", "s1": "PENDING", "s2": "PENDING"},
        ),
        Run(
            [
                ("flow", "RUNNING"),
                ("c", "RUNNING"),
                ("c", "SUCCESS"),
                ("d", "RUNNING"),
                ("d", "SUCCESS"),
                *_REST,
            ],
            {"a": "SUCCESS", "b": "IGNORE", "c": "SUCCESS", "d": "SUCCESS", "s1": "SUCCESS", "s2": "SUCCESS"},
        ),
    ],
}


@pytest.mark.parametrize("depth", list(SUSPENDED_AT_THE_SOURCE), ids=str)
def test_a_suspend_as_the_links_source_succeeds_still_ignores_what_its_decider_skips(
    engine_kind: str, rec: Recorder, depth: Depth
) -> None:
    runs = _runs_suspended_at(engine_kind, lambda: _chain(rec, depth), "a", CHAIN)
    assert runs == SUSPENDED_AT_THE_SOURCE[depth]


def test_a_suspend_with_only_skipped_atoms_left_ends_the_run_successfully(
    engine_kind: str, rec: Recorder
) -> None:
    def build() -> linear_flow.Flow:
        a, b = Step("a", rec), Step("b", rec)
        decided = graph_flow.Flow("g").add(a, b).link(a, b, decider=lambda history: False)
        return linear_flow.Flow("top").add(Step("pre", rec), decided, Step("post", rec))

    runs = _runs_suspended_at(engine_kind, build, "a", ["pre", "a", "b", "post"])
    assert runs == [
        Run(
            [("flow", "RUNNING"), ("pre", "RUNNING"), ("pre", "SUCCESS"), ("a", "RUNNING"), ("a", "SUCCESS")]
            + [("flow", "SUSPENDING"), ("b", "IGNORE"), ("post", "IGNORE"), ("flow", "SUCCESS")],
            {"pre": "SUCCESS", "a": "SUCCESS", "b": "IGNORE", "post": "IGNORE"},
        )
    ]


def test_a_suspend_inside_a_nested_graph_ignores_its_skipped_atoms_before_the_run_stops(
    engine_kind: str, rec: Recorder
) -> None:
    def build() -> linear_flow.Flow:
        b, c, d = Step("b", rec), Step("c", rec), Step("d", rec)
        inner = graph_flow.Flow("inner").add(b, c, d)
        inner.link(b, c, decider=lambda history: False, decider_depth=Depth.FLOW).link(c, d)
        a = Step("a", rec)
        outer = graph_flow.Flow("outer").add(a, inner).link(a, inner)
        return linear_flow.Flow("top").add(Step("pre", rec), outer, Step("post", rec))

    runs = _runs_suspended_at(engine_kind, build, "b", ["pre", "a", "b", "c", "d", "post"])
    ran = [("flow", "RUNNING"), ("pre", "RUNNING"), ("pre", "SUCCESS"), ("a", "RUNNING"), ("a", "SUCCESS")]
    assert runs == [
        Run(
            [
                *ran,
                ("b", "RUNNING"),
                ("b", "SUCCESS"),
                ("flow", "SUSPENDING"),
                ("c", "IGNORE"),
                ("d", "IGNORE"),
            ]
            + [("flow", "SUSPENDED")],
            {
                "pre": "SUCCESS",
                "a": "SUCCESS",
                "b": "SUCCESS",
                "c": "IGNORE",
                "d": "IGNORE",
                "post": "PENDING",
            },
        ),
        Run(
            [("flow", "RUNNING"), ("post", "RUNNING"), ("post", "SUCCESS"), ("flow", "SUCCESS")],
            {
                "pre": "SUCCESS",
                "a": "SUCCESS",
                "b": "SUCCESS",
                "c": "IGNORE",
                "d": "IGNORE",
                "post": "SUCCESS",
            },
        ),
    ]


def test_a_suspend_before_a_link_into_a_sub_flow_ignores_its_first_atom(
    engine_kind: str, rec: Recorder
) -> None:
    def build() -> graph_flow.Flow:
        a, z = Step("a", rec), Step("z", rec)
        sub = linear_flow.Flow("sub").add(Step("s1", rec), Step("s2", rec))
        flow = graph_flow.Flow("g").add(a, sub, z)
        return flow.link(a, sub, decider=lambda history: False, decider_depth=Depth.ATOM).link(sub, z)

    runs = _runs_suspended_at(engine_kind, build, "a", ["a", "s1", "s2", "z"])
    assert runs == [
        Run(
            [*_START, ("s1", "IGNORE"), ("flow", "SUSPENDED")],
            {"a": "SUCCESS", "s1": "IGNORE", "s2": "PENDING", "z": "PENDING"},
        ),
        Run(
            [("flow", "RUNNING"), ("s2", "RUNNING"), ("s2", "SUCCESS"), ("z", "RUNNING"), ("z", "SUCCESS")]
            + [("flow", "SUCCESS")],
            {"a": "SUCCESS", "s1": "IGNORE", "s2": "SUCCESS", "z": "SUCCESS"},
        ),
    ]


def test_a_skip_is_told_right_after_the_links_source_succeeds(engine_kind: str, rec: Recorder) -> None:
    # "a" and "x" run in one step; TaskFlow takes in their outcomes one by one (in
    # no set order) and asks a's link decider while taking in a's: b's IGNORE
    # comes next to a's SUCCESS, never after x's.
    a, b, x = Step("a", rec), Step("b", rec), Step("x", rec)
    flow = graph_flow.Flow("g").add(a, b, x).link(a, b, decider=lambda history: False)
    engine = engines.load(flow, engine=engine_kind)
    events: Events = []
    engine.atom_notifier.register(
        Notifier.ANY, lambda state, details: events.append((details["task_name"], state))
    )
    engine.run()
    assert events[events.index(("a", "SUCCESS")) + 1] == ("b", "IGNORE")
    assert sorted(events) == sorted(
        [("a", "RUNNING"), ("a", "SUCCESS"), ("b", "IGNORE"), ("x", "RUNNING"), ("x", "SUCCESS")]
    )


def test_a_decider_that_raises_fails_the_run_once_the_steps_outcomes_are_stored(rec: Recorder) -> None:
    # "a" and "x" run in one step of the serial engine. a's decider raises while
    # a's outcome is taken in; as on TaskFlow, x's is still taken in and stored,
    # nothing more starts, and the run raises what the decider raised.
    a, b, x, y = Step("a", rec), Step("b", rec), Step("x", rec), Step("y", rec)
    flow = graph_flow.Flow("g").add(a, b, x, y).link(a, b, decider=lambda history: 1 / 0).link(x, y)
    engine = engines.load(flow, engine="serial")
    with pytest.raises(ZeroDivisionError):
        engine.run()
    assert engine.storage.get_flow_state() == states.FAILURE
    assert {name: engine.storage.get_atom_state(name) for name in "abxy"} == {
        "a": states.SUCCESS,
        "b": states.PENDING,
        "x": states.SUCCESS,
        "y": states.PENDING,
    }
    assert sorted(rec.executed()) == ["a", "x"]


# -- a link into a sub-flow that starts with several atoms ------------------------------------
#
# TaskFlow hands the deciders of a link into a flow down to each atom the flow
# starts with, and asks them for each such atom when it is ready: once per first
# atom, each "no" skipping that atom and what its depth reaches from it.


def _into_unordered(rec: Recorder, asked: list[dict[str, Any]], answer: bool, depth: Any) -> graph_flow.Flow:
    """a -(decider)-> sub (an unordered flow of s1, s2) -> z."""

    def decide(history: dict[str, Any]) -> bool:
        asked.append(dict(history))
        return answer

    a, z = Step("a", rec), Step("z", rec)
    sub = unordered_flow.Flow("sub").add(Step("s1", rec), Step("s2", rec))
    flow = graph_flow.Flow("g").add(a, sub, z)
    return flow.link(a, sub, decider=decide, decider_depth=depth).link(sub, z)


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (Depth.ALL, [("s1", "IGNORE"), ("z", "IGNORE"), ("s2", "IGNORE")]),
        (Depth.ATOM, [("s1", "IGNORE"), ("s2", "IGNORE"), ("z", "RUNNING"), ("z", "SUCCESS")]),
    ],
    ids=["all", "atom"],
)
def test_a_no_on_a_link_into_a_flow_is_asked_and_applied_for_each_atom_it_starts_with(
    engine_kind: str, rec: Recorder, depth: Depth, expected: Events
) -> None:
    asked: list[dict[str, Any]] = []
    engine = engines.load(_into_unordered(rec, asked, False, depth), engine=engine_kind)
    events: Events = []
    engine.atom_notifier.register(
        Notifier.ANY, lambda state, details: events.append((details["task_name"], state))
    )
    engine.run()
    assert events == [("a", "RUNNING"), ("a", "SUCCESS"), *expected]
    assert asked == [{"a": "a"}, {"a": "a"}]


def test_a_yes_on_a_link_into_a_flow_is_asked_again_for_its_first_atoms_when_the_run_resumes(
    engine_kind: str, rec: Recorder
) -> None:
    asked: list[dict[str, Any]] = []
    runs = _runs_suspended_at(
        engine_kind, lambda: _into_unordered(rec, asked, True, None), "a", ["a", "s1", "s2", "z"]
    )
    assert [run.stored for run in runs] == [
        {"a": "SUCCESS", "s1": "PENDING", "s2": "PENDING", "z": "PENDING"},
        {"a": "SUCCESS", "s1": "SUCCESS", "s2": "SUCCESS", "z": "SUCCESS"},
    ]
    # Twice as "a" succeeds, twice more as the run resumes with s1 and s2 still to run.
    assert asked == [{"a": "a"}] * 4


def test_a_resume_asks_a_links_deciders_for_a_first_atom_of_its_flow_still_pending(rec: Recorder) -> None:
    # Stopped with a and s1 done and s2 not started (as a parallel run suspended
    # then can be): TaskFlow asks the link's decider for s2 as the run resumes.
    asked: list[dict[str, Any]] = []
    detail = FlowDetail("g", "11111111-2222-3333-4444-555555555555")
    first = engines.load(_into_unordered(rec, asked, False, None), flow_detail=detail)
    first.compile()
    first.prepare()
    for name in ("a", "s1"):
        first.storage.save(name, name)
    resumed = engines.load(_into_unordered(rec, asked, False, None), flow_detail=detail)
    events: Events = []
    resumed.atom_notifier.register(
        Notifier.ANY, lambda state, details: events.append((details["task_name"], state))
    )
    resumed.run()
    assert events == [("s2", "IGNORE"), ("z", "IGNORE")]
    assert asked == [{"a": "a"}]
    assert rec.executed() == []


def _into_nested(rec: Recorder, asked: list[dict[str, Any]], depth: Depth) -> graph_flow.Flow:
    """a -(no, ``depth``)-> sub (an unordered flow of s1 and inner, a linear flow of i1, i2) -> z."""

    def decide(history: dict[str, Any]) -> bool:
        asked.append(dict(history))
        return False

    a, z = Step("a", rec), Step("z", rec)
    inner = linear_flow.Flow("inner").add(Step("i1", rec), Step("i2", rec))
    sub = unordered_flow.Flow("sub").add(Step("s1", rec), inner)
    flow = graph_flow.Flow("g").add(a, sub, z)
    return flow.link(a, sub, decider=decide, decider_depth=depth).link(sub, z)


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        # TaskFlow 6.5's sequences for the same flow and stored states.
        (
            Depth.ATOM,
            [
                ("s1", "IGNORE"),
                ("i1", "IGNORE"),
                ("i2", "RUNNING"),
                ("i2", "SUCCESS"),
                ("z", "RUNNING"),
                ("z", "SUCCESS"),
            ],
        ),
        (Depth.ALL, [("s1", "IGNORE"), ("z", "IGNORE"), ("i1", "IGNORE"), ("i2", "IGNORE")]),
    ],
    ids=["atom", "all"],
)
def test_a_resume_asks_for_each_first_atom_of_a_flow_one_of_them_inside_a_flow_of_its_own(
    rec: Recorder, depth: Depth, expected: Events
) -> None:
    # The link's flow starts with s1 and, through inner's start, i1: a resume with
    # both PENDING asks the decider for each, as the first run would.
    asked: list[dict[str, Any]] = []
    detail = FlowDetail("g", "11111111-2222-3333-4444-555555555555")
    first = engines.load(_into_nested(rec, asked, depth), flow_detail=detail)
    first.compile()
    first.prepare()
    first.storage.save("a", "a")
    resumed = engines.load(_into_nested(rec, asked, depth), flow_detail=detail)
    events: Events = []
    resumed.atom_notifier.register(
        Notifier.ANY, lambda state, details: events.append((details["task_name"], state))
    )
    resumed.run()
    assert events == expected
    assert asked == [{"a": "a"}, {"a": "a"}]


def test_a_no_tells_the_skips_in_the_order_of_taskflows_depth_first_walk(
    engine_kind: str, rec: Recorder
) -> None:
    # b is linked to c (then d) before sub: TaskFlow walks b's successors last
    # linked first, so sub's atoms are skipped before c and d.
    engine = engines.load(_graph(rec, lambda history: False), engine=engine_kind)
    events: Events = []
    engine.atom_notifier.register(
        Notifier.ANY, lambda state, details: events.append((details["task_name"], state))
    )
    engine.run()
    assert events == [
        ("a", "RUNNING"),
        ("a", "SUCCESS"),
        ("b", "IGNORE"),
        ("s1", "IGNORE"),
        ("s2", "IGNORE"),
        ("c", "IGNORE"),
        ("d", "IGNORE"),
    ]


@pytest.mark.parametrize("depth", [Depth.ALL, Depth.ATOM], ids=str)
def test_a_skip_passes_through_a_chain_longer_than_the_recursion_limit(rec: Recorder, depth: Depth) -> None:
    # ALL: one "no" skips the whole chain after it. ATOM: every atom of the chain
    # has its own "no" from "a", asked as the atom before it is skipped. Either
    # way the engine passes through the skipped chain without recursing per atom.
    length = sys.getrecursionlimit() + 100
    a = Step("a", rec)
    chain = [Step(f"t{i}", rec) for i in range(length)]
    flow = graph_flow.Flow("g").add(a, *chain)
    flow.link(a, chain[0], decider=lambda history: False, decider_depth=depth)
    for before, after in itertools.pairwise(chain):
        flow.link(before, after)
        if depth == Depth.ATOM:
            flow.link(a, after, decider=lambda history: False, decider_depth=depth)
    engine = engines.load(flow, engine="serial")
    engine.run()
    assert rec.executed() == ["a"]
    assert engine.storage.get_atom_state(chain[-1].name) == states.IGNORE
    assert engine.storage.get_flow_state() == states.SUCCESS
