"""The JSON Schema shipped in the package agrees with the loader about shapes."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from flowkit import declarative, exceptions

T = "tests.declarative.tasks"
GOOD = {
    "name": "pricing",
    "description": "d",
    "engine": {"name": "parallel", "max_workers": 2},
    "retry": {"controller": "parameterized_for_each", "values": "${currency}", "name": "r"},
    "parameters": ["currency"],
    "tasks": {
        "sub": {
            "flow": "linear",
            "retry": {"controller": "for_each", "values": [1, 2], "provides": "v", "revert_all": True},
            "name": "S",
            "tasks": {
                "inner": {"flow": "unordered", "tasks": {"c": {"task": f"{T}:Count", "inputs": {"n": 1}}}}
            },
        },
        "fx": {"task": f"{T}:FetchRate", "rebind": {"currency": "currency"}, "retry": 2, "timeout": 1.5},
        "n": {
            "task": f"{T}:Notify",
            "inputs": {"text": "rate ${fx}"},
            "after": [
                "sub",
                {"item": "fx", "decider": "tests.declarative.test_deciders:big", "depth": "atom"},
            ],
            "cache": True,
            "name": "N",
        },
    },
}
BAD_SHAPES: list[dict[str, Any]] = [
    {"tasks": {}},
    {"tasks": {"a": {"inputs": {}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "retry": -1}}},
    {"tasks": {"a": {"task": f"{T}:Count", "timeout": 0}}},
    {"tasks": {"a": {"task": f"{T}:Count", "cache": "yes"}}},
    {"tasks": {"a": {"task": f"{T}:Count", "after": [1]}}},
    {"tasks": {"a": {"task": f"{T}:Count", "unknown": 1}}},
    {"tasks": {"a": {"task": f"{T}:Count"}}, "extra": 1},
    {"tasks": {"a": {"task": f"{T}:Count"}}, "parameters": "x"},
    {"tasks": {"a.b": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"tasks": {"": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": "${p}"}}}, "parameters": ["p.q"]},
    {"tasks": {"a": {"task": f"{T}:Count", "rebind": "n"}}},
    {"tasks": {"a": {"task": f"{T}:Count", "rebind": {"n": 1}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "requires": {"n": "m"}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inject": [1]}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "provides": []}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "provides": ["x", "x"]}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "provides": "x.y"}}},
    {"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "provides": {"x": 0}}}},
    {"retry": "forever", "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {
        "retry": {"controller": "times", "values": [1]},
        "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}},
    },
    {
        "retry": {"controller": "for_each", "values": 3},
        "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}},
    },
    {"retry": {"controller": "for_each"}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    # The loader crashed on these with a TypeError (unhashable type), naming nothing.
    {"flow": ["graph"], "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"tasks": {"s": {"flow": {"kind": "graph"}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}}}},
    {"retry": {"controller": ["times"]}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    # The loader took these three: a description that is no text, a for_each
    # retry with nothing to try (NotFound at run time), a parameter listed twice.
    {"description": ["d"], "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {
        "retry": {"controller": "for_each", "values": []},
        "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}},
    },
    {"parameters": ["p", "p"], "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": "${p}"}}}},
    {
        "parameters": ["p"],
        "retry": {"controller": "parameterized_for_each", "values": "p"},
        "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}},
    },
    {
        "retry": {"controller": "always_revert", "attempts": 2},
        "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}},
    },
    {"retry": -1, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"engine": 3, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"engine": {"name": ""}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"engine": {"backend": "memory://"}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"engine": {"max-workers": 2}, "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "after": {"item": "b", "depth": "all"}}}},
    {"tasks": {"a": {"task": f"{T}:Count", "after": [{"item": "b", "when": 1}]}}},
    {"tasks": {"a": {"task": f"{T}:Count", "after": [{"decider": "m:f"}]}}},
    {"flow": "tree", "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}},
    {"tasks": {"s": {"flow": "tree", "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}}}},
    {"tasks": {"s": {"flow": "graph", "tasks": {}}}},
    {"tasks": {"s": {"flow": "graph"}}},
    {"tasks": {"s": {"flow": "graph", "tasks": {"a": {"task": f"{T}:Count"}}, "retries": 1}}},
    {"tasks": {"s": {"flow": "graph", "tasks": {"a.b": {"task": f"{T}:Count", "inputs": {"n": 1}}}}}},
    {
        "tasks": {
            "s": {"flow": "linear", "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}, "after": [2]}
        }
    },
]


def test_the_schema_is_valid_and_accepts_a_good_spec() -> None:
    schema = declarative.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(GOOD, schema)
    declarative.load_flow(GOOD)


@pytest.mark.parametrize("index", range(len(BAD_SHAPES)))
def test_schema_and_loader_both_reject_bad_shapes(index: int) -> None:
    bad = BAD_SHAPES[index]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, declarative.schema())
    with pytest.raises(exceptions.FlowSpecError):
        declarative.load_flow(bad)


def test_the_task_options_listed_in_code_are_those_of_the_schema() -> None:
    properties = declarative.schema()["$defs"]["task"]["properties"]
    assert set(properties) == {"task", "inputs", *declarative.TASK_OPTIONS}


def test_the_flow_kinds_listed_in_code_are_those_of_the_schema() -> None:
    assert declarative.schema()["$defs"]["kind"]["enum"] == list(declarative.FLOW_KINDS)


def test_the_retry_controllers_listed_in_code_are_those_of_the_schema() -> None:
    assert declarative.schema()["$defs"]["retry"]["oneOf"][1]["enum"] == list(declarative.RETRY_CONTROLLERS)


def test_the_caller_only_engine_options_are_those_of_the_schema() -> None:
    from flowkit.declarative import _build

    names = declarative.schema()["properties"]["engine"]["oneOf"][1]["propertyNames"]["not"]["enum"]
    assert set(names) == _build._CALLER_ONLY
