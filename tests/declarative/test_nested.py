"""Sub-flows in specs: a spec with nested linear, unordered and graph flows runs as the Python flow.

Each spec is checked against the same flow built by hand with the patterns
(results, every atom's state sequence and the flow's states, on the serial
engine and the concurrent ones), and each mistake a sub-flow makes possible is
a FlowSpecError naming the file, line and item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from tests.declarative.helpers import error_of, run
from tests.declarative.tasks import Step

STEP = "tests.declarative.tasks:Step"


def step(**inputs: Any) -> dict[str, Any]:
    return {"task": STEP, "inputs": inputs}


#: linear(a, graph(b, c <- b, unordered(d, e)), f <- c, d) inside the spec's graph flow, beside g.
NESTED: dict[str, Any] = {
    "name": "nested",
    "tasks": {
        "outer": {
            "flow": "linear",
            "tasks": {
                "a": step(x=1),
                "inner": {
                    "flow": "graph",
                    "name": "inner-flow",
                    "tasks": {
                        "c": step(x="${b}", y=10),
                        "b": step(x="${a}", y=2),
                        "par": {
                            "flow": "unordered",
                            "tasks": {"d": step(x="${a}", y=3), "e": step(x=4)},
                        },
                    },
                },
                "f": step(x="${c}", y="${d}", z="${g}"),
            },
        },
        "g": step(x=100),
    },
}


def nested_by_hand(fail: bool = False) -> graph_flow.Flow:
    def make(name: str, rebind: dict[str, str] | None = None, **inject: Any) -> Step:
        return Step(name=name, provides=name, rebind=rebind, inject=inject or None)

    par = unordered_flow.Flow("par").add(make("d", {"x": "a"}, y=3), make("e", x=4))
    inner = graph_flow.Flow("inner-flow").add(make("c", {"x": "b"}, y=10), make("b", {"x": "a"}, y=2), par)
    f_inject = {"fail": True} if fail else {}
    outer = linear_flow.Flow("outer").add(
        make("a", x=1), inner, make("f", {"x": "c", "y": "d", "z": "g"}, **f_inject)
    )
    return graph_flow.Flow("nested").add(outer, make("g", x=100))


def test_a_nested_spec_builds_the_patterns_it_names() -> None:
    flow = declarative.load_flow(NESTED)
    assert isinstance(flow, graph_flow.Flow)
    outer = next(item for item in flow if item.name == "outer")
    assert isinstance(outer, linear_flow.Flow)
    inner = list(outer)[1]
    assert isinstance(inner, graph_flow.Flow) and inner.name == "inner-flow"
    assert any(isinstance(item, unordered_flow.Flow) for item in inner)


@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
def test_a_nested_spec_runs_as_the_flow_built_in_python(kind: str) -> None:
    loaded = run(declarative.load_flow(NESTED), kind)
    assert loaded == run(nested_by_hand(), kind)
    assert loaded[0]["f"] == 13 + 4 + 100  # c = (a + 2) + 10, d = a + 3, g
    assert loaded[3] is None


def test_a_failing_nested_spec_reverts_as_the_flow_built_in_python() -> None:
    spec = {**NESTED, "tasks": {**NESTED["tasks"]}}
    outer = dict(spec["tasks"]["outer"])
    outer["tasks"] = {**outer["tasks"], "f": {**step(x="${c}", y="${d}", z="${g}")}}
    outer["tasks"]["f"]["inputs"]["fail"] = True
    spec["tasks"]["outer"] = outer
    loaded = run(declarative.load_flow(spec), "serial")
    assert loaded[3] is not None and "f fails" in loaded[3][1]
    assert loaded == run(nested_by_hand(fail=True), "serial")


def test_the_spec_itself_may_be_a_linear_flow_of_sub_flows() -> None:
    spec = {
        "name": "top",
        "flow": "linear",
        "tasks": {
            "first": {"flow": "graph", "tasks": {"a": step(x=1), "b": step(x="${a}")}},
            "c": step(x="${b}", y=1),
        },
    }
    flow = declarative.load_flow(spec)
    assert isinstance(flow, linear_flow.Flow)
    hand = linear_flow.Flow("top").add(
        graph_flow.Flow("first").add(
            Step(name="a", provides="a", inject={"x": 1}), Step(name="b", provides="b", rebind={"x": "a"})
        ),
        Step(name="c", provides="c", rebind={"x": "b"}, inject={"y": 1}),
    )
    assert run(flow, "serial") == run(hand, "serial")


def test_sub_flow_names_may_repeat_or_be_task_names_as_in_python(tmp_path: Path) -> None:
    # TaskFlow checks atom names only, not flow names (see tests/compat/test_taskflow_oracle.py):
    # a declared flow takes the names a Python flow could have. Keys stay unique.
    path = tmp_path / "names.yaml"
    path.write_text(
        "name: top\n"
        "tasks:\n"
        f"  a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
        "  s1: {flow: linear, name: a, tasks: {b: {task: " + STEP + ", inputs: {x: 2}}}}\n"
        "  s2: {flow: unordered, name: a, tasks: {c: {task: " + STEP + ", inputs: {x: 3}}}}\n"
        "  s3: {flow: linear, name: top, tasks: {d: {task: " + STEP + ", inputs: {x: 4}}}}\n"
    )
    hand = graph_flow.Flow("top").add(
        Step(name="a", provides="a", inject={"x": 1}),
        linear_flow.Flow("a").add(Step(name="b", provides="b", inject={"x": 2})),
        unordered_flow.Flow("a").add(Step(name="c", provides="c", inject={"x": 3})),
        linear_flow.Flow("top").add(Step(name="d", provides="d", inject={"x": 4})),
    )
    loaded = run(declarative.load_flow(path), "serial")
    assert loaded == run(hand, "serial")
    assert loaded[0] == {"a": 1, "b": 2, "c": 3, "d": 4}


def test_a_task_named_like_another_in_a_sub_flow_names_both_and_the_file(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        "tasks:\n"
        f"  a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
        "  s:\n"
        "    flow: linear\n"
        "    tasks:\n"
        f"      b: {{task: {STEP}, inputs: {{x: 2}}, name: a}}\n",
    )
    assert str(err).startswith(f"{tmp_path / 'flow.yaml'}, line 6, task 'b', key 'name': ")
    assert "atom name 'a' is also used by task 'a'" in err.reason


def test_after_may_name_a_sibling_sub_flow() -> None:
    spec = {
        "name": "f",
        "tasks": {
            "setup": {"flow": "unordered", "tasks": {"a": step(x=1), "b": step(x=2)}},
            "go": {**step(x=3), "after": "setup"},
        },
    }
    flow = declarative.load_flow(spec)
    setup = graph_flow.Flow("f")
    par = unordered_flow.Flow("setup").add(
        Step(name="a", provides="a", inject={"x": 1}), Step(name="b", provides="b", inject={"x": 2})
    )
    go = Step(name="go", provides="go", inject={"x": 3})
    setup.add(par, go).link(par, go)
    assert run(flow, "serial") == run(setup, "serial")
    assert run(flow, "parallel")[0] == {"a": 1, "b": 2, "go": 3}


def test_a_sub_flow_keeps_a_task_retry() -> None:
    spec = {"name": "f", "tasks": {"sub": {"flow": "linear", "tasks": {"a": {**step(x=1), "retry": 2}}}}}
    sub = list(declarative.load_flow(spec))[0]
    assert isinstance(sub, linear_flow.Flow)
    wrapped = list(sub)[0]
    assert isinstance(wrapped, linear_flow.Flow) and wrapped.retry is not None
    assert wrapped.retry.name == "a-retry"


@pytest.mark.parametrize(
    ("text", "line", "task", "key", "reason"),
    [
        (
            # a nested task's own errors name its line, as a top-level task's do
            "tasks:\n  sub:\n    flow: linear\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: 1, w: 2}}}}\n",
            5,
            "a",
            "inputs.w",
            "takes no argument 'w'",
        ),
        (
            f"tasks:\n  sub:\n    flow: linear\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: '${{b}}'}}}}\n"
            f"      b: {{task: {STEP}, inputs: {{x: 1}}}}\n",
            5,
            "a",
            "inputs.x",
            "${b} reads an item that runs later in linear flow 'sub'",
        ),
        (
            f"tasks:\n  sub:\n    flow: unordered\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
            f"      b: {{task: {STEP}, inputs: {{x: '${{a}}'}}}}\n",
            6,
            "b",
            "inputs.x",
            "${a} reads another item of unordered flow 'sub'",
        ),
        (
            f"tasks:\n  sub:\n    flow: linear\n    tasks:\n      a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
            f"  b: {{task: {STEP}, inputs: {{x: '${{sub}}'}}}}\n",
            6,
            "b",
            "inputs.x",
            "${sub} names a sub-flow",
        ),
        (
            f"tasks:\n  sub:\n    flow: linear\n    tasks:\n      a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
            f"      b: {{task: {STEP}, inputs: {{x: 1}}, after: a}}\n",
            6,
            "b",
            "after",
            "'after' orders items of a graph flow",
        ),
        (
            f"tasks:\n  a: {{task: {STEP}, inputs: {{x: 1}}}}\n  sub:\n    flow: graph\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: 2}}}}\n",
            6,
            "a",
            None,
            "key 'a' is used twice",
        ),
        (
            f"tasks:\n  sub:\n    flow: graph\n    tasks:\n      a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
            f"  b: {{task: {STEP}, inputs: {{x: 1}}, after: a}}\n",
            6,
            "b",
            "after",
            "'after' names no task or sub-flow of the same flow: 'a'",
        ),
        ("tasks:\n  sub:\n    flow: tree\n    tasks: {}\n", 3, "sub", "flow", "'flow' must be one of"),
        ("tasks:\n  sub:\n    flow: graph\n    tasks: {}\n", 4, "sub", "tasks", "non-empty mapping"),
        (
            "tasks:\n  sub:\n    flow: graph\n    retries: 2\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: 1}}}}\n",
            4,
            "sub",
            "retries",
            "unknown key 'retries' (did you mean 'retry'?); a sub-flow has",
        ),
        (
            # a sub-flow reading a sibling that reads the sub-flow: no graph order exists
            f"tasks:\n  sub:\n    flow: linear\n    tasks:\n      a: {{task: {STEP}, inputs: {{x: 1}}}}\n"
            f"      c: {{task: {STEP}, inputs: {{x: '${{b}}'}}}}\n"
            f"  b: {{task: {STEP}, inputs: {{x: '${{a}}'}}}}\n",
            7,
            "b",
            None,
            "cannot be placed",
        ),
        ("flow: tree\ntasks:\n  a: {task: x}\n", 1, None, "flow", "'flow' must be one of"),
    ],
)
def test_sub_flow_mistakes_name_the_file_line_and_item(
    tmp_path: Path, text: str, line: int, task: str | None, key: str | None, reason: str
) -> None:
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (line, task, key), str(err)
    assert reason in err.reason, str(err)
    assert str(err).startswith(f"{tmp_path / 'flow.yaml'}, line {line}")
    if err.__cause__ is not None:  # its words, quoted in the message, are not said again below it
        assert str(err).count(str(err.__cause__).splitlines()[0]) == 1, str(err)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("tasks:\n  sub:\n    flow: tree\n    tasks: {}\n", "line 3, sub-flow 'sub', key 'flow'"),
        (
            "tasks:\n  sub:\n    flow: linear\n    retry: {controller: times, attempts: -1}\n    tasks:\n"
            f"      a: {{task: {STEP}, inputs: {{x: 1}}}}\n",
            "line 4, sub-flow 'sub', key 'retry.attempts'",
        ),
        (f"tasks:\n  a: {{task: {STEP}, inputs: {{x: 1}}, retry: -1}}\n", "line 2, task 'a', key 'retry'"),
    ],
)
def test_an_error_about_a_sub_flow_calls_it_a_sub_flow(tmp_path: Path, text: str, where: str) -> None:
    # It said "task 'sub'" of a sub-flow.
    err = error_of(tmp_path, text)
    assert str(err).startswith(f"{tmp_path / 'flow.yaml'}, {where}: "), str(err)


def test_a_linear_flow_of_big_sub_flows_records_a_bounded_number_of_dependencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each task of a linear flow's second sub-flow was given every task of the first
    # as a dependency: k**2 entries for two sub-flows of k tasks (4,000 tasks: 3 s).
    from flowkit.declarative import _build

    seen: list[Any] = []
    original = _build._check_cycles

    def spy(*args: Any) -> Any:
        seen.append(args[1])  # the parsed spec (its task list, before)
        return original(*args)

    monkeypatch.setattr(_build, "_check_cycles", spy)
    k = 200
    subs = {
        f"s{s}": {"flow": "unordered", "tasks": {f"t{s}_{i}": step(x=i) for i in range(k)}} for s in range(2)
    }
    flow = declarative.load_flow({"flow": "linear", "tasks": subs})
    assert [len(item) for item in flow] == [k, k]
    specs = getattr(seen[0], "tasks", seen[0])
    recorded = sum(len(spec.before) + len(getattr(spec, "after_items", ())) for spec in specs)
    assert recorded <= 2 * k
