"""Graph links with deciders in specs: named by import path, under the ``tasks=`` allow-list."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import declarative, exceptions
from flowkit.patterns import graph_flow
from tests.declarative.helpers import run
from tests.declarative.tasks import Step

STEP = "tests.declarative.tasks:Step"
HERE = "tests.declarative.test_deciders"


def big(history: dict[str, Any]) -> bool:
    """Let the next item run only when every decided predecessor returned more than 5."""
    return all(value > 5 for value in history.values())


def spec_with(link: Any, x: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": "f",
        "tasks": {
            "a": {"task": STEP, "inputs": {"x": x}},
            "b": {"task": STEP, "inputs": {"x": 2}, "after": [link], **extra},
            "c": {"task": STEP, "inputs": {"x": "${b}"}},
        },
    }


def hand(x: int, depth: str | None) -> graph_flow.Flow:
    a = Step(name="a", provides="a", inject={"x": x})
    b = Step(name="b", provides="b", inject={"x": 2})
    c = Step(name="c", provides="c", rebind={"x": "b"})
    return graph_flow.Flow("f").add(a, b, c).link(a, b, decider=big, decider_depth=depth)


@pytest.mark.parametrize("x", [1, 9])
@pytest.mark.parametrize("depth", [None, "atom", "all"])
@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_a_decided_link_runs_as_the_same_link_built_in_python(x: int, depth: str | None, kind: str) -> None:
    link: dict[str, Any] = {"item": "a", "decider": f"{HERE}:big"}
    if depth is not None:
        link["depth"] = depth
    loaded = run(declarative.load_flow(spec_with(link, x)), kind)
    assert loaded == run(hand(x, depth), kind)
    assert ("b" in loaded[0]) == (x > 5)


def test_a_link_in_a_sub_flow_takes_a_decider() -> None:
    spec = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "graph",
                "tasks": {
                    "a": {"task": STEP, "inputs": {"x": 1}},
                    "b": {"task": STEP, "inputs": {"x": 2}, "after": {"item": "a", "decider": f"{HERE}:big"}},
                },
            }
        },
    }
    assert run(declarative.load_flow(spec), "serial")[0] == {"a": 1}


def test_the_allow_list_holds_deciders_too() -> None:
    spec = spec_with({"item": "a", "decider": f"{HERE}:big"})
    with pytest.raises(exceptions.FlowSpecError) as info:
        declarative.load_flow(spec, tasks=["tests.declarative.tasks."])
    assert (info.value.task, info.value.key) == ("b", "after")
    assert "not an allowed" in info.value.reason
    declarative.load_flow(spec, tasks=["tests.declarative.tasks.", f"{HERE}.big"])


def test_a_refused_decider_module_is_never_imported() -> None:
    import sys

    spec = spec_with({"item": "a", "decider": "flowkit_planted_decider_module:f"})
    with pytest.raises(exceptions.FlowSpecError, match="not an allowed"):
        declarative.load_flow(spec, tasks=["tests.declarative."])
    assert "flowkit_planted_decider_module" not in sys.modules


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ({"item": "a", "decider": "registered-step"}, "named by an import path"),
        ({"item": "a", "decider": f"{HERE}:Step"}, "is a class, not a function"),
        ({"item": "a", "decider": f"{HERE}:nothing"}, "decider: module"),
        ({"item": "a", "depth": "all"}, "'depth' needs a 'decider'"),
        ({"item": "a", "decider": f"{HERE}:big", "depth": "deep"}, "'depth' must be one of"),
        ({"item": "a", "when": 1}, "unknown key 'when'"),
        ({"decider": f"{HERE}:big"}, "an 'after' entry is an item key or a mapping"),
        ({"item": "a", "decider": "operator:not_"}, "cannot be called as decider(history=...)"),
    ],
)
def test_link_mistakes_name_the_task_and_key(link: Any, reason: str) -> None:
    declarative.register("registered-step", Step)
    try:
        with pytest.raises(exceptions.FlowSpecError) as info:
            declarative.load_flow(spec_with(link))
    finally:
        declarative.unregister("registered-step")
    assert (info.value.task, info.value.key) == ("b", "after"), str(info.value)
    assert reason in info.value.reason, str(info.value)
    cause = info.value.__cause__
    if cause is not None:  # its words, quoted in the message, are not said again below it
        assert str(info.value).count(str(cause).splitlines()[0]) == 1, str(info.value)
