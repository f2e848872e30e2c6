"""Retry controllers on a spec's flow and sub-flows, run against the same flows built in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative, retry, task
from flowkit.patterns import graph_flow, linear_flow
from tests.declarative.helpers import error_of, run
from tests.declarative.tasks import Notify

HERE = "tests.declarative.test_retries"
#: Calls of Flaky per task name: a task fails until it has been called `succeed_on` times.
COUNTS: dict[str, int] = {}


class Flaky(task.Task):
    """Fails until its ``succeed_on``-th call, or while ``value`` is not ``good``."""

    def execute(self, succeed_on: int = 1, value: Any = None, good: Any = None) -> int:
        COUNTS[self.name] = COUNTS.get(self.name, 0) + 1
        if COUNTS[self.name] < succeed_on or value != good:
            raise RuntimeError(f"{self.name} fails on call {COUNTS[self.name]} with {value!r}")
        return COUNTS[self.name]


def both(spec: dict[str, Any], hand: Any, **options: Any) -> tuple[Any, Any]:
    COUNTS.clear()
    loaded = run(declarative.load_flow(spec), "serial", **options)
    COUNTS.clear()
    return loaded, run(hand, "serial", **options)


FLAKY = f"{HERE}:Flaky"


def test_times_on_a_sub_flow() -> None:
    spec = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "linear",
                "retry": {"controller": "times", "attempts": 3, "name": "again"},
                "tasks": {"a": {"task": FLAKY, "inputs": {"succeed_on": 3}}},
            }
        },
    }
    hand = graph_flow.Flow("f").add(
        linear_flow.Flow("sub", retry=retry.Times(3, name="again")).add(
            Flaky(name="a", provides="a", inject={"succeed_on": 3})
        )
    )
    loaded, expected = both(spec, hand)
    assert loaded == expected
    assert loaded[0] == {"a": 3} and loaded[3] is None


def test_a_number_is_a_times_retry_and_too_few_attempts_revert_alike() -> None:
    spec = {
        "name": "f",
        "flow": "linear",
        "retry": 2,
        "tasks": {"a": {"task": FLAKY, "inputs": {"succeed_on": 3}}},
    }
    hand = linear_flow.Flow("f", retry=retry.Times(2)).add(
        Flaky(name="a", provides="a", inject={"succeed_on": 3})
    )
    loaded, expected = both(spec, hand)
    assert loaded == expected
    assert loaded[3] is not None and "fails on call 2" in loaded[3][1]


def test_for_each_provides_the_value_being_tried() -> None:
    spec = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "graph",
                "retry": {"controller": "for_each", "values": [1, 2, 3, 4], "provides": "v"},
                "tasks": {"a": {"task": FLAKY, "inputs": {"value": "${v}", "good": 3}}},
            },
            "b": {"task": FLAKY, "inputs": {"value": "${a}", "good": 3}},
        },
    }
    hand = graph_flow.Flow("f").add(
        graph_flow.Flow("sub", retry=retry.ForEach([1, 2, 3, 4], provides="v")).add(
            Flaky(name="a", provides="a", rebind={"value": "v"}, inject={"good": 3})
        ),
        Flaky(name="b", provides="b", rebind={"value": "a"}, inject={"good": 3}),
    )
    loaded, expected = both(spec, hand)
    assert loaded == expected
    assert loaded[0]["v"] == 3 and loaded[3] is None


@pytest.mark.parametrize("source", ["parameter", "task"])
def test_parameterized_for_each_reads_its_values(source: str) -> None:
    items: dict[str, Any] = {
        "sub": {
            "flow": "linear",
            "retry": {"controller": "parameterized_for_each", "values": "${hosts}", "provides": "h"},
            "tasks": {"a": {"task": FLAKY, "inputs": {"value": "${h}", "good": "c"}}},
        }
    }
    hand_items: list[Any] = []
    options: dict[str, Any] = {}
    spec: dict[str, Any] = {"name": "f", "tasks": items}
    if source == "parameter":
        spec["parameters"] = ["hosts"]
        options["store"] = {"hosts": ["a", "b", "c"]}
    else:
        items["hosts"] = {"task": "tests.declarative.tasks:Notify", "inputs": {"text": "abc"}}
        hand_items.append(Notify(name="hosts", provides="hosts", inject={"text": "abc"}))
    hand = graph_flow.Flow("f").add(
        linear_flow.Flow(
            "sub", retry=retry.ParameterizedForEach(provides="h", rebind={"values": "hosts"})
        ).add(Flaky(name="a", provides="a", rebind={"value": "h"}, inject={"good": "c"})),
        *hand_items,
    )
    loaded, expected = both(spec, hand, **options)
    assert loaded == expected
    assert loaded[0]["h"] == "c" and loaded[3] is None


@pytest.mark.parametrize("controller", ["always_revert", "always_revert_all"])
def test_always_revert_controllers(controller: str) -> None:
    spec = {
        "name": "f",
        "tasks": {
            "ok": {"task": FLAKY},
            "sub": {
                "flow": "linear",
                "retry": controller,
                "after": "ok",
                "tasks": {"a": {"task": FLAKY, "inputs": {"value": 1}}},
            },
        },
    }
    made = retry.AlwaysRevert() if controller == "always_revert" else retry.AlwaysRevertAll()
    ok = Flaky(name="ok", provides="ok")
    sub = linear_flow.Flow("sub", retry=made).add(Flaky(name="a", provides="a", inject={"value": 1}))
    hand = graph_flow.Flow("f").add(ok, sub).link(ok, sub)
    loaded, expected = both(spec, hand)
    assert loaded == expected
    assert loaded[3] is not None


SUB = f"tasks:\n  sub:\n    flow: linear\n    tasks:\n      a: {{task: {FLAKY}}}\n"


@pytest.mark.parametrize(
    ("extra", "task", "key", "reason"),
    [
        ("    retry: forever\n", "sub", "retry", "'retry' must be a number of attempts"),
        ("    retry: {controller: times, values: [1]}\n", "sub", "retry.values", "unknown option 'values'"),
        ("    retry: {controller: times, attempts: -1}\n", "sub", "retry.attempts", "a whole number"),
        ("    retry: {controller: for_each, values: 3}\n", "sub", "retry.values", "list of values"),
        (
            "    retry: {controller: parameterized_for_each, values: [1]}\n",
            "sub",
            "retry.values",
            "whole reference",
        ),
        (
            "    retry: {controller: parameterized_for_each, values: '${zz'}\n",
            "sub",
            "retry.values",
            "is not closed",
        ),
        (
            "    retry: {controller: parameterized_for_each, values: '${zz}'}\n",
            "sub",
            "retry.values",
            "names no task",
        ),
        (
            "    retry: {controller: parameterized_for_each, values: '${a}'}\n",
            "sub",
            "retry.values",
            "inside the flow",
        ),
        (
            "    retry: {controller: for_each, values: [1], provides: a}\n",
            "sub",
            "retry.provides",
            "cannot be provided",
        ),
        (
            "    retry: {controller: for_each, values: [1], provides: v}\n"
            f"  b: {{task: {FLAKY}, inputs: {{value: '${{v}}'}}}}\n",
            "b",
            "inputs.value",
            "only its own tasks can read",
        ),
    ],
)
def test_retry_mistakes_name_the_file_line_and_key(
    tmp_path: Path, extra: str, task: str, key: str, reason: str
) -> None:
    err = error_of(tmp_path, SUB + extra)
    assert (err.task, err.key) == (task, key), str(err)
    assert reason in err.reason, str(err)
    assert err.line is not None and err.line >= 6
    if err.__cause__ is not None:  # its words, quoted in the message, are not said again below it
        assert str(err).count(str(err.__cause__).splitlines()[0]) == 1, str(err)


def test_a_top_level_retry_error_names_the_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "retry: {controller: times, attempts: x}\n" + SUB)
    assert (err.line, err.task, err.key) == (1, None, "retry.attempts")


@pytest.mark.parametrize(
    ("text", "line", "task", "key", "names"),
    [
        (
            # an unnamed sub-flow retry takes `<flow name>_retry`, a task's name here
            f"tasks:\n  sub_retry: {{task: {FLAKY}}}\n  sub:\n    flow: linear\n    retry: 2\n"
            f"    tasks:\n      a: {{task: {FLAKY}}}\n",
            5,
            "sub",
            "retry",
            ("'sub_retry'", "task 'sub_retry'"),
        ),
        (
            # the spec's own unnamed retry, named after the spec
            f"name: f\nretry: 2\nflow: linear\ntasks:\n  f_retry: {{task: {FLAKY}}}\n",
            2,
            None,
            "retry",
            ("'f_retry'", "task 'f_retry'"),
        ),
        (
            # a retry's own name is checked too, against another flow's retry
            f"name: f\nretry: {{controller: times, name: again}}\ntasks:\n  sub:\n    flow: linear\n"
            "    retry: {controller: always_revert, name: again}\n"
            f"    tasks:\n      a: {{task: {FLAKY}}}\n",
            6,
            "sub",
            "retry.name",
            ("'again'", "the retry of the spec's flow"),
        ),
    ],
)
def test_a_retry_name_clash_names_the_file_line_and_both_claims(
    tmp_path: Path, text: str, line: int, task: str | None, key: str, names: tuple[str, str]
) -> None:
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (line, task, key), str(err)
    assert err.source is not None and err.source.endswith("flow.yaml")
    for name in names:
        assert name in err.reason, str(err)


@pytest.mark.parametrize(
    ("kind", "depth", "line", "task", "reason"),
    [
        ("unordered", 0, 5, "sub", "reads another item of the unordered flow of the spec"),
        ("unordered", 1, 8, "inner", "reads another item of the unordered flow of the spec"),
        ("linear", 0, 5, "sub", "reads an item that runs later in the linear flow of the spec"),
    ],
)
def test_a_parameterized_for_each_reading_a_sibling_it_cannot_wait_for_is_refused(
    tmp_path: Path, kind: str, depth: int, line: int, task: str, reason: str
) -> None:
    retried = (
        "    flow: linear\n"
        "    retry: {controller: parameterized_for_each, values: '${hosts}'}\n"
        f"    tasks:\n      a: {{task: {FLAKY}}}\n"
    )
    if depth:  # the retried flow one level down, inside the sibling of `hosts`
        retried = "    flow: linear\n    tasks:\n      inner:\n" + "".join(
            "    " + row + "\n" for row in retried.splitlines()
        )
    text = f"flow: {kind}\ntasks:\n  sub:\n{retried}  hosts: {{task: {FLAKY}}}\n"
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (line, task, "retry.values"), str(err)
    assert "${hosts}" in err.reason and reason in err.reason, str(err)


def test_a_for_each_value_that_does_not_fit_the_argument_reading_it_is_refused_at_load(
    tmp_path: Path,
) -> None:
    # The values are constants of the spec, as an input's are: ``inputs: {n: eu}``
    # for an int is refused at load, but ``values: [1, eu]`` read as ``${n}`` ran,
    # and the task got 'eu' for its int on the second try.
    err = error_of(
        tmp_path,
        "tasks:\n"
        "  sub:\n"
        "    flow: linear\n"
        "    retry: {controller: for_each, values: [1, eu], provides: n}\n"
        "    tasks:\n"
        "      c: {task: tests.declarative.tasks:Count, inputs: {n: '${n}'}}\n",
    )
    assert (err.line, err.task, err.key) == (6, "c", "inputs.n")
    assert "wrong type: ${n} takes the for_each values of the retry of sub-flow 'sub'" in err.reason
    assert "'eu' (str) is not int" in err.reason
    spec = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "linear",
                "retry": {"controller": "for_each", "values": [5, 6], "provides": "n"},
                "tasks": {"c": {"task": "tests.declarative.tasks:Count", "inputs": {"n": "${n}"}}},
            }
        },
    }
    assert run(declarative.load_flow(spec), "serial")[0]["c"] == 5


@pytest.mark.parametrize(
    ("reader", "line", "task", "key", "reason"),
    [
        # The attempt number is an int (Times.execute says so): a str argument
        # reading it loaded, and only the engine's check_types saw it.
        (
            "      c: {task: tests.declarative.tasks:Notify, inputs: {text: '${n}'}}\n",
            6,
            "c",
            "inputs.text",
            "wrong type: ${n} is int, argument 'text' wants str",
        ),
        # A field of an int: it failed at run time with NotFound.
        (
            "      c: {task: tests.declarative.tasks:Count, inputs: {n: '${n.x}'}}\n",
            6,
            "c",
            "inputs.n",
            "${n.x}: the value of the retry of sub-flow 'sub' has no field 'x'",
        ),
    ],
)
def test_a_times_retry_value_is_checked_against_its_readers_as_a_tasks_result_is(
    tmp_path: Path, reader: str, line: int, task: str, key: str, reason: str
) -> None:
    text = (
        "tasks:\n  sub:\n    flow: linear\n    retry: {controller: times, attempts: 2, provides: n}\n"
        "    tasks:\n" + reader
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key, err.reason) == (line, task, key, reason), str(err)


def test_a_times_retry_value_read_as_an_int_runs() -> None:
    spec = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "linear",
                "retry": {"controller": "times", "attempts": 2, "provides": "n"},
                "tasks": {"c": {"task": "tests.declarative.tasks:Count", "inputs": {"n": "${n}"}}},
            }
        },
    }
    assert run(declarative.load_flow(spec), "serial", check_types=True)[0]["c"] == 1


@pytest.mark.parametrize("controller", ["{controller: times", "{controller: for_each, values: [1]"])
def test_a_retry_symbol_that_is_a_task_key_is_refused(tmp_path: Path, controller: str) -> None:
    # Task `a` stores its result under `b`, so `a` named no symbol, and the retry
    # took it: `${a}` then read the retry's value where the reader meant task a
    # (a task's `provides` naming another task's key is refused alike).
    text = (
        f"tasks:\n  a: {{task: {FLAKY}, provides: b}}\n  sub:\n    flow: linear\n"
        f"    retry: {controller}, provides: a}}\n"
        f"    tasks:\n      c: {{task: {FLAKY}}}\n"
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (5, "sub", "retry.provides"), str(err)
    assert err.reason == "retry symbol 'a' cannot be provided: it is the key of task 'a'"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        # The second value has no x: its try failed at run time with NotFound.
        (
            "[{x: 1}, {y: 2}]",
            "${v.x}: the for_each value {'y': 2} of the retry of sub-flow 'sub' has no field 'x'",
        ),
        # A field is a constant too: 'eu' for an int ran, as ${v} of it was refused.
        (
            "[{x: 1}, {x: eu}]",
            "wrong type: ${v.x} takes the for_each values of the retry of sub-flow 'sub', "
            "and 'eu' (str) is not int",
        ),
    ],
)
def test_a_field_of_for_each_values_is_checked_in_each_value(
    tmp_path: Path, values: str, reason: str
) -> None:
    text = (
        "tasks:\n  sub:\n    flow: linear\n"
        f"    retry: {{controller: for_each, values: {values}, provides: v}}\n"
        "    tasks:\n      c: {task: tests.declarative.tasks:Count, inputs: {n: '${v.x}'}}\n"
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key, err.reason) == (6, "c", "inputs.n", reason), str(err)
    fits = {
        "name": "f",
        "tasks": {
            "sub": {
                "flow": "linear",
                "retry": {"controller": "for_each", "values": [{"x": 4}], "provides": "v"},
                "tasks": {"c": {"task": "tests.declarative.tasks:Count", "inputs": {"n": "${v.x}"}}},
            }
        },
    }
    assert run(declarative.load_flow(fits), "serial")[0]["c"] == 4


TASKS = "tests.declarative.tasks"


def _iterating(values_task: str, reader: str) -> str:
    """A spec whose sub-flow's parameterized_for_each retry tries the items of task ``values``'s result."""
    return (
        f"tasks:\n  values: {{task: {TASKS}:{values_task}}}\n  sub:\n    flow: linear\n"
        "    retry: {controller: parameterized_for_each, values: '${values}', provides: h}\n"
        f"    tasks:\n      c: {reader}\n"
    )


@pytest.mark.parametrize(
    ("values_task", "reader", "key", "reason"),
    [
        # labels() -> list[str]: each value tried is a str. It loaded, and the task
        # was handed "first" for its int.
        (
            "labels",
            f"{{task: {TASKS}:Count, inputs: {{n: '${{h}}'}}}}",
            "inputs.n",
            "wrong type: ${h} is str, argument 'n' wants int",
        ),
        # counts() -> dict[str, int]: a mapping is iterated by its keys, the strs.
        (
            "counts",
            f"{{task: {TASKS}:Count, inputs: {{n: '${{h}}'}}}}",
            "inputs.n",
            "wrong type: ${h} is str, argument 'n' wants int",
        ),
        # low_high() -> tuple[int, str]: an item is either.
        (
            "low_high",
            f"{{task: {TASKS}:Count, inputs: {{n: '${{h}}'}}}}",
            "inputs.n",
            "wrong type: ${h} is int | str, argument 'n' wants int",
        ),
        # A field of a str: it failed at run time with NotFound.
        (
            "labels",
            f"{{task: {TASKS}:Notify, inputs: {{text: '${{h.x}}'}}}}",
            "inputs.text",
            "${h.x}: the value of the retry of sub-flow 'sub' has no field 'x'",
        ),
    ],
)
def test_a_parameterized_for_each_value_is_typed_as_an_item_of_its_values(
    tmp_path: Path, values_task: str, reader: str, key: str, reason: str
) -> None:
    err = error_of(tmp_path, _iterating(values_task, reader))
    assert (err.line, err.task, err.key, err.reason) == (7, "c", key, reason), str(err)


@pytest.mark.parametrize("values_task", ["labels", "counts"])
def test_a_parameterized_for_each_value_read_as_its_item_type_runs(values_task: str) -> None:
    spec = {
        "name": "f",
        "tasks": {
            "values": {"task": f"{TASKS}:{values_task}"},
            "sub": {
                "flow": "linear",
                "retry": {"controller": "parameterized_for_each", "values": "${values}", "provides": "h"},
                "tasks": {"c": {"task": f"{TASKS}:Notify", "inputs": {"text": "${h}"}}},
            },
        },
    }
    results = run(declarative.load_flow(spec), "serial", check_types=True)[0]
    assert results["c"] == results["h"] and isinstance(results["h"], str)


def test_a_parameterized_for_each_value_of_a_parameter_is_left_untyped() -> None:
    # The parameter's type is not known at load: any reader loads, as for ${parameter}.
    spec = {
        "name": "f",
        "parameters": ["numbers"],
        "tasks": {
            "sub": {
                "flow": "linear",
                "retry": {"controller": "parameterized_for_each", "values": "${numbers}", "provides": "h"},
                "tasks": {"c": {"task": f"{TASKS}:Count", "inputs": {"n": "${h}"}}},
            },
        },
    }
    assert run(declarative.load_flow(spec), "serial", store={"numbers": [4, 5]})[0]["c"] == 4


@pytest.mark.parametrize(
    ("provides", "reason"),
    [
        ("a", "it is the key of task 'a'"),
        ("b", "task 'a' stores its result under it"),
        ("hosts", "it is a parameter"),
    ],
)
def test_a_parameterized_for_each_symbol_clash_is_refused(tmp_path: Path, provides: str, reason: str) -> None:
    text = (
        f"parameters: [hosts]\ntasks:\n  a: {{task: {FLAKY}, provides: b}}\n  sub:\n    flow: linear\n"
        f"    retry: {{controller: parameterized_for_each, values: '${{hosts}}', provides: {provides}}}\n"
        f"    tasks:\n      c: {{task: {FLAKY}}}\n"
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (6, "sub", "retry.provides"), str(err)
    assert err.reason == f"retry symbol {provides!r} cannot be provided: {reason}"
