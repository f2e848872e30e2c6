"""``requires``, ``rebind`` (list and mapping), ``inject`` and ``provides`` on spec tasks, as Task takes them.

Each spec runs against the same flow built in Python with those arguments of
Task, and each mistake is a FlowSpecError naming file, line, task and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative, exceptions
from flowkit.patterns import graph_flow
from tests.declarative.helpers import error_of, run
from tests.declarative.tasks import Step

STEP = "tests.declarative.tasks:Step"
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"rebind": {"x": "a"}}, {"rebind": {"x": "a"}}),
    ({"rebind": ["a"]}, {"rebind": ["a"]}),
    ({"rebind": ["a", "y"]}, {"rebind": ["a", "y"]}),
    ({"rebind": {"x": "a", "z": "p"}}, {"rebind": {"x": "a", "z": "p"}}),
    ({"requires": ["y"], "rebind": {"x": "a"}}, {"requires": ["y"], "rebind": {"x": "a"}}),
    ({"requires": "x"}, {"requires": ["x"]}),
    ({"inject": {"x": 5}}, {"inject": {"x": 5}}),
    ({"rebind": {"x": "s"}, "inject": {"s": 7, "z": 1}}, {"rebind": {"x": "s"}, "inject": {"s": 7, "z": 1}}),
]


@pytest.mark.parametrize(("options", "python"), CASES)
@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_bindings_run_as_the_same_task_built_in_python(
    kind: str, options: dict[str, Any], python: dict[str, Any]
) -> None:
    spec = {
        "name": "f",
        "parameters": ["p", "x", "y"],
        "tasks": {"a": {"task": STEP, "inputs": {"x": 1}}, "b": {"task": STEP, **options}},
    }
    hand = graph_flow.Flow("f").add(
        Step(name="a", provides="a", inject={"x": 1}), Step(name="b", provides="b", **python)
    )
    store = {"p": 100, "x": 10, "y": 20}
    assert run(declarative.load_flow(spec), kind, store=store) == run(hand, kind, store=store)


def test_inject_values_are_constants_not_references() -> None:
    spec = {
        "name": "f",
        "tasks": {"n": {"task": "tests.declarative.tasks:Notify", "inject": {"text": "${n}"}}},
    }
    assert run(declarative.load_flow(spec), "serial")[0] == {"n": "${n}"}


def test_a_rebind_reference_is_checked_like_an_input() -> None:
    spec = {"name": "f", "tasks": {"b": {"task": STEP, "rebind": {"x": "nope"}}}}
    with pytest.raises(exceptions.FlowSpecError) as info:
        declarative.load_flow(spec)
    assert (info.value.task, info.value.key) == ("b", "rebind.x")
    assert "${nope} names no task or parameter" in info.value.reason


HEAD = f"parameters: [p]\ntasks:\n  a:\n    task: {STEP}\n"


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        (
            "    inputs: {x: 1}\n    rebind: {x: p}\n",
            "rebind.x",
            "argument 'x' is already given by 'inputs.x'",
        ),
        ("    rebind: [p]\n    requires: [x]\n", "requires", "argument 'x' is already given by 'rebind'"),
        ("    rebind: p\n", "rebind", "'rebind' must be a list of symbols"),
        ("    requires: {x: p}\n", "requires", "'requires' must be a symbol or a list"),
        ("    inject: [1]\n", "inject", "'inject' must be a mapping of symbol -> constant"),
        ("    inputs: {x: 1}\n    inject: {q: 2}\n", "inject.q", "no argument of"),
        ("    rebind: {w: p}\n", "rebind.w", "takes no argument 'w'"),
        ("    rebind: {y: p}\n", "inputs", "missing input(s) ['x']"),
        ("    rebind: {x: 3}\n", "rebind.x", "names must be non-empty strings"),
    ],
)
def test_binding_mistakes_name_the_file_line_and_key(
    tmp_path: Path, body: str, key: str, reason: str
) -> None:
    err = error_of(tmp_path, HEAD + body)
    assert (err.task, err.key) == ("a", key), str(err)
    assert reason in err.reason, str(err)
    assert err.line is not None and err.line >= 3


def pair(x: int, y: int = 0, z: int = 0) -> tuple[int, int]:
    return (x + y + z, x - y)


PAIR = "tests.declarative.test_bindings:pair"


@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_provides_runs_as_the_same_task_built_in_python(kind: str) -> None:
    from flowkit.task import FunctorTask

    spec = {
        "name": "f",
        "tasks": {
            "a": {"task": STEP, "inputs": {"x": 1}, "provides": "one"},
            "b": {"task": PAIR, "inputs": {"x": "${one}", "y": 5}, "provides": ["s", "d"]},
            "c": {"task": STEP, "rebind": {"x": "s", "y": "d"}},
            "t": {"task": "tests.declarative.tasks:Notify", "inputs": {"text": "${s} and ${d}"}},
        },
    }
    hand = graph_flow.Flow("f").add(
        Step(name="a", provides="one", inject={"x": 1}),
        FunctorTask(pair, name="b", provides=("s", "d"), rebind={"x": "one"}, inject={"y": 5}),
        Step(name="c", provides="c", rebind={"x": "s", "y": "d"}),
    )
    loaded = run(declarative.load_flow(spec), kind)
    expected = run(hand, kind)
    assert loaded[0].pop("t") == "6 and -4"
    del loaded[1]["t"]
    assert loaded == expected
    assert loaded[0] == {"one": 1, "s": 6, "d": -4, "c": 2}


@pytest.mark.parametrize(
    ("tasks_", "task", "key", "reason"),
    [
        (
            {
                "a": {"task": STEP, "inputs": {"x": 1}, "provides": "p"},
                "b": {"task": STEP, "inputs": {"x": "${a}"}},
            },
            "b",
            "inputs.x",
            "task 'a' stores its result under ['p'] (its provides); reference ${p}",
        ),
        (
            {
                "a": {"task": STEP, "inputs": {"x": 1}, "provides": "b"},
                "b": {"task": STEP, "inputs": {"x": 1}},
            },
            "a",
            "provides",
            "symbol 'b' cannot be provided: it is the key of another task",
        ),
        (
            {
                "a": {"task": STEP, "inputs": {"x": 1}, "provides": ["p", "q"]},
                "b": {"task": STEP, "inputs": {"x": 1}, "provides": "q"},
            },
            "b",
            "provides",
            "task 'a' stores its result under it too",
        ),
        ({"a": {"task": STEP, "inputs": {"x": 1}, "provides": "pp"}}, "a", "provides", "it is a parameter"),
        (
            {"a": {"task": STEP, "inputs": {"x": "${p}"}, "provides": "p"}},
            "a",
            "inputs.x",
            "refers to the task itself",
        ),
        ({"a": {"task": STEP, "inputs": {"x": 1}, "provides": [1]}}, "a", "provides", "'provides' must be"),
    ],
)
def test_provides_mistakes_name_the_task_and_key(
    tasks_: dict[str, Any], task: str, key: str, reason: str
) -> None:
    with pytest.raises(exceptions.FlowSpecError) as info:
        declarative.load_flow({"name": "f", "parameters": ["pp"], "tasks": tasks_})
    assert (info.value.task, info.value.key) == (task, key), str(info.value)
    assert reason in info.value.reason, str(info.value)
