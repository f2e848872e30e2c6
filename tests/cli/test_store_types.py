"""``--store`` values read as the atoms taking them declare (``flowkit.cli._store_types``), in process."""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import Any, Literal

import pytest

from flowkit import declarative, retry, task
from flowkit.cli._common import CliError
from flowkit.cli._store_types import parse_item, typed_store
from flowkit.patterns import linear_flow, unordered_flow


class Ship(task.Task):
    def execute(self, postcode: str, mode: Literal["air", "sea"], copies: int = 1) -> None:
        pass


class Count(task.Task):
    def execute(self, postcode: int) -> None:
        pass


class Label(task.Task):
    """Takes its codes through ``**codes``, given by ``requires`` (TaskFlow's extra arguments)."""

    def execute(self, sheet: int, **codes: str) -> None:
        pass


class Tally(task.Task):
    def execute(self, **counts: int) -> None:
        pass


class Untyped(task.Task):
    def execute(self, anything):  # type: ignore[no-untyped-def]  # untyped on purpose
        pass


class Attempts(retry.Times):
    def execute(self, history: Any, limit: str) -> int:  # type: ignore[override]
        return 1


def _store(flow: Any, *items: str) -> dict[str, Any]:
    return typed_store([parse_item(item) for item in items], flow)


def test_text_stays_text_where_every_reader_declares_str_or_a_literal_of_strings() -> None:
    flow = linear_flow.Flow("f").add(Ship("ship"))
    assert _store(flow, "postcode=12345", "mode=air", "copies=2") == {
        "postcode": "12345",
        "mode": "air",
        "copies": 2,
    }


def test_values_a_typed_var_keyword_receives_are_read_as_it_declares() -> None:
    # ``**codes: str`` types every extra argument (doc/typed.rst): --store read them as
    # JSON regardless, so zip=12345 reached it as an int and version=1.10 as 1.1.
    flow = linear_flow.Flow("f").add(Label("label", requires=["zip", "version"]))
    assert _store(flow, "zip=12345", "version=1.10", "sheet=3") == {
        "zip": "12345",
        "version": "1.10",
        "sheet": 3,
    }


def test_a_value_a_typed_var_keyword_cannot_take_is_refused_naming_it() -> None:
    flow = linear_flow.Flow("f").add(Tally("tally", requires=["copies"]))
    with pytest.raises(CliError) as raised:
        _store(flow, "copies=lots")
    assert str(raised.value) == (
        "--store 'copies=lots': atom 'tally' takes it as its argument 'copies' (int): 'lots' (str) is not int"
    )


class Weigh(task.Task):
    def execute(self, grams: float, exact: bool, sizes: list[int] | None = None) -> None:
        pass


def test_a_json_boolean_is_not_a_number_where_a_reader_declares_one() -> None:
    # bool is an int subclass in Python, so --store n=true reached an int argument as True.
    cases = {
        "copies=true": ("atom 'ship' takes it as its argument 'copies' (int): True (bool) is not int"),
        "grams=false": ("atom 'weigh' takes it as its argument 'grams' (float): False (bool) is not float"),
        "sizes=[1, true]": (
            "atom 'weigh' takes it as its argument 'sizes' (list[int] | None): [1, True] (list) is not"
            " list[int] | None"
        ),
        # The mirror case: a number is no bool (it was refused already).
        "exact=1": "atom 'weigh' takes it as its argument 'exact' (bool): 1 (int) is not bool",
    }
    flow = unordered_flow.Flow("f").add(Ship("ship"), Weigh("weigh"))
    given = {"postcode": "postcode=x", "mode": "mode=air", "grams": "grams=1", "exact": "exact=true"}
    for item, reason in cases.items():
        key = item.partition("=")[0]
        with pytest.raises(CliError) as raised:
            _store(flow, *{**given, key: item}.values())
        assert str(raised.value) == f"--store '{item}': {reason}"
        assert raised.value.status == 2
    # An int is a float, as JSON and pydantic read it; a boolean is taken where bool is declared.
    assert _store(flow, *given.values(), "copies=2", "sizes=[1]") == {
        "postcode": "x", "mode": "air", "grams": 1, "exact": True, "copies": 2, "sizes": [1],
    }  # fmt: skip


def test_readers_are_found_in_nested_flows_and_retries() -> None:
    inner = unordered_flow.Flow("inner", retry=Attempts(name="r")).add(Ship("ship"))
    flow = linear_flow.Flow("outer").add(inner)
    assert _store(flow, "postcode=7", "mode=sea", "limit=3") == {"postcode": "7", "mode": "sea", "limit": "3"}


def test_an_untyped_reader_or_an_injected_argument_leaves_the_json_value() -> None:
    assert _store(linear_flow.Flow("f").add(Untyped("u")), "anything=12") == {"anything": 12}
    injected = linear_flow.Flow("f").add(Ship("ship", inject={"postcode": "0"}))
    assert _store(injected, "postcode=12", "mode=air") == {"postcode": 12, "mode": "air"}


def test_readers_that_disagree_are_refused_naming_the_first_that_the_value_does_not_fit() -> None:
    flow = unordered_flow.Flow("f").add(Count("count"), Ship("ship"))
    with pytest.raises(CliError) as raised:
        _store(flow, "postcode=12", "mode=air")
    assert str(raised.value) == (
        "--store 'postcode=12': atom 'ship' takes it as its argument 'postcode' (str): 12 (int) is not str"
    )
    assert raised.value.status == 2


def test_a_value_outside_a_literal_is_refused() -> None:
    with pytest.raises(CliError, match=r"--store 'mode=rail': atom 'ship' takes it as its argument 'mode'"):
        _store(linear_flow.Flow("f").add(Ship("ship")), "postcode=1", "mode=rail")


def test_a_model_argument_takes_a_json_object_and_refuses_what_does_not_validate() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):
        x: int

    class Plot(task.Task):
        def execute(self, point: Point) -> None:
            pass

    Plot.execute.__annotations__["point"] = Point  # a local class: no string to resolve
    flow = linear_flow.Flow("f").add(Plot("plot"))
    assert _store(flow, 'point={"x": 1}') == {"point": {"x": 1}}  # made a Point when the task runs
    with pytest.raises(CliError) as raised:
        _store(flow, "point={}")
    # pydantic's reason, on one line: it said only "1 validation error for Point".
    message = str(raised.value)
    assert message.startswith("--store 'point={}': atom 'plot' takes it as its argument 'point'")
    assert "1 validation error for Point: x Field required" in message
    assert "\n" not in message and "further information" not in message


def label(postcode: str, copies: int, weight: float | None = None) -> str:
    return postcode


def test_a_spec_task_with_an_adapter_reads_whole_references_as_its_task_declares() -> None:
    # Text around one input (or a field) wraps the task in an adapter: its other
    # inputs, whole references, were not read as the task declares them.
    spec = {
        "parameters": ["code", "n", "w"],
        "tasks": {
            "label": {
                "task": f"{__name__}:label",
                "inputs": {"postcode": "x${code}", "copies": "${n}", "weight": "${w.kg}"},
            }
        },
    }
    flow = declarative.load_flow(spec)
    assert _store(flow, "code=12", "n=3", 'w={"kg": "heavy"}') == {"code": 12, "n": 3, "w": {"kg": "heavy"}}
    with pytest.raises(
        CliError, match=r"--store 'n=lots': atom 'label' takes it as its argument 'copies' \(int\)"
    ):
        _store(flow, "code=12", "n=lots", "w={}")


class Level(enum.StrEnum):
    HIGH = "high"


class Archive(task.Task):
    def execute(self, out: Path, when: datetime.date, level: Level, keep: list[Path] | None) -> None:
        pass


def test_a_type_no_command_line_value_can_be_leaves_the_json_or_text_reading() -> None:
    # A Path, a date, an enum: the task was handed text (or JSON) and made its own, as
    # it did before; refusing it would stop a flow that worked.
    flow = linear_flow.Flow("f").add(Archive("archive"))
    assert _store(flow, "out=/tmp/x", "when=2024", "level=high", "keep=[1]") == {
        "out": "/tmp/x",
        "when": 2024,
        "level": "high",
        "keep": [1],
    }


#: What follows a non-finite number in its refusal (flowkit.declarative._numbers).
NO_JSON_FORM = (
    "is not a finite number: NaN, Infinity and numbers past the float range (1e400) have no JSON form"
)


@pytest.mark.parametrize(
    ("item", "shown"),
    [
        ("anything=NaN", "nan"),
        ("anything=Infinity", "inf"),
        ("anything=-Infinity", "-inf"),
        ("anything=1e400", "inf"),
        ("anything=[1, NaN]", "nan"),
        ('anything={"a": {"b": -1e400}}', "-inf"),
    ],
)
def test_a_number_json_cannot_hold_is_refused_naming_the_store_key(item: str, shown: str) -> None:
    # Python's json reads NaN, Infinity and 1e400 (as inf), which no JSON document holds:
    # the run stored them, as declarative specs no longer may.
    flow = linear_flow.Flow("f").add(Untyped("u"))
    with pytest.raises(CliError) as raised:
        _store(flow, item)
    assert str(raised.value).startswith(f"--store '{item}': {shown} {NO_JSON_FORM}"), raised.value


@pytest.mark.parametrize("item", ["grams=NaN", "grams=Infinity", "grams=1e400"])
def test_a_non_finite_number_is_refused_where_its_reader_declares_a_float(item: str) -> None:
    # A float argument took it (the label read "nan kg").
    flow = linear_flow.Flow("f").add(Weigh("weigh"))
    with pytest.raises(CliError) as raised:
        _store(flow, item)
    assert str(raised.value).startswith(f"--store '{item}': "), raised.value
    assert NO_JSON_FORM in str(raised.value)


def test_the_text_nan_stays_text_where_its_readers_declare_str() -> None:
    # Refused only as a number: a str argument is given the text, as for any other value.
    flow = linear_flow.Flow("f").add(Ship("ship"))
    assert _store(flow, "postcode=NaN", "mode=air")["postcode"] == "NaN"
    assert _store(flow, "postcode=1e400", "mode=air")["postcode"] == "1e400"
