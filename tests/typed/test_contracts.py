"""Contracts read from annotations, static compatibility, and basic value checks."""

from __future__ import annotations

import copy
import pickle
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, Optional, TypeVar, Union

import pytest

from flowkit import task, typed

T = TypeVar("T")


class Typed(task.Task):
    def execute(self, a: int, b: list[str], c=None) -> dict[str, int]:  # type: ignore[no-untyped-def]
        return {}


class Plain(task.Task):
    def execute(self, a, b):  # type: ignore[no-untyped-def]
        return a


def typed_function(x: float) -> str:
    return str(x)


def test_contract_of_a_task_class_and_a_function() -> None:
    contract = typed.contract_of(Typed())
    assert dict(contract.inputs) == {"a": int, "b": list[str]}
    assert contract.result == dict[str, int]
    functor = task.FunctorTask(typed_function)
    assert dict(typed.contract_of(functor).inputs) == {"x": float}
    assert typed.contract_of(functor).result is str


def test_untyped_atoms_have_an_empty_contract() -> None:
    contract = typed.contract_of(Plain())
    assert not contract.typed
    assert contract.result is typed.UNTYPED


def test_untyped_is_one_instance_through_pickling_and_copying() -> None:
    # Contracts travel to process pools and workers: the marker must come back as itself.
    untyped = typed.UNTYPED
    assert typed.Untyped.UNTYPED is untyped
    assert pickle.loads(pickle.dumps(untyped)) is untyped
    assert copy.copy(untyped) is untyped
    assert copy.deepcopy([untyped])[0] is untyped
    assert (untyped.name, untyped.value) == ("UNTYPED", "untyped")
    assert repr(untyped) == "<Untyped.UNTYPED: 'untyped'>"


@pytest.mark.parametrize(
    ("provided", "required"),
    [
        (int, int),
        (int, float),
        (bool, int),
        (list[int], Sequence[int]),
        (dict[str, int], Mapping[str, float]),
        (int, Optional[int]),  # noqa: UP045 - the spelling under test
        (int, int | str),
        (Literal["a"], str),
        (str, Literal["a", "b"]),
        (Any, int),
        (int, Any),
        (T, int),
        (tuple[int, int], tuple[int, ...]),
        (typed.UNTYPED, int),
        (int, object),
        (None, Optional[str]),  # noqa: UP045
        # A tuple of fixed length is a sequence of its items: these were refused.
        (tuple[int, int], Sequence[int]),
        (tuple[int, bool], Iterable[float]),
        (tuple[int, str], Collection[int | str]),
        (Literal["a"], Literal["a", "b"]),
        (Literal[1, "a"], int | str),
    ],
)
def test_compatible_declarations(provided: Any, required: Any) -> None:
    assert typed.satisfies(provided, required)


@pytest.mark.parametrize(
    ("provided", "required"),
    [
        (str, int),
        (float, int),
        (list[str], list[int]),
        (int | None, int),
        (Union[int, str], int),  # noqa: UP007
        (dict[str, str], Mapping[str, int]),
        (tuple[int, str], tuple[int, ...]),
        (Literal[1], str),
        (None, int),
        (tuple[int, str], Sequence[int]),
        (tuple[str, ...], Iterable[int]),
        # Two literals with no value in common: this was accepted.
        (Literal["a"], Literal["b"]),
        (Literal[1], Literal[True]),
    ],
)
def test_certain_mismatches(provided: Any, required: Any) -> None:
    assert not typed.satisfies(provided, required)


@pytest.mark.parametrize(
    ("value", "tp", "ok"),
    [
        (1, int, True),
        (1, float, True),
        (1.5, int, False),
        ("x", int, False),
        (None, Optional[int], True),  # noqa: UP045
        ([1, 2], list[int], True),
        ([1, "2"], list[int], False),
        ({"a": 1}, dict[str, int], True),
        ({"a": "b"}, dict[str, int], False),
        ((1, "a"), tuple[int, str], True),
        ((1, 2), tuple[int, str], False),
        ("a", Literal["a", "b"], True),
        ("c", Literal["a", "b"], False),
        (object(), Any, True),
        # As the compile check accepts a bool for a float (as type checkers do): True was refused.
        (True, float, True),
        (True, complex, True),
        (2.5, complex, True),
        ("1", float, False),
    ],
)
def test_check_value_for_basic_types(value: Any, tp: Any, ok: bool) -> None:
    assert typed.check_value(value, tp) is ok


def test_coerce_value_turns_a_mapping_into_a_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Price(pydantic.BaseModel):
        amount: float

    assert typed.coerce_value({"amount": 2}, Price) == Price(amount=2.0)
    with pytest.raises(TypeError, match="amount"):
        typed.coerce_value({"amount": "lots"}, Price)
    assert typed.coerce_value([{"amount": 1}], list[Price]) == [Price(amount=1.0)]


def test_model_inputs_are_read_once_per_class_whose_atoms_share_a_contract() -> None:
    # The guards ask per atom per run, a declarative step and a worker per call:
    # all get the one answer kept for the class, as revives() keeps its own.
    pytest.importorskip("pydantic")
    from tests.typed.models import Price, UsePrice

    first = typed.model_inputs(UsePrice("a"))
    assert first is not None and first.input_type("price") is Price
    assert typed.model_inputs(UsePrice("b")) is first
    assert typed.model_inputs(Typed()) is None
    assert typed.model_inputs(Typed()) is None


def _amount_as_int(price: int) -> int:
    return price


def test_model_inputs_of_function_tasks_follow_each_function() -> None:
    # A function task's contract is its function's: never one kept for the class.
    pytest.importorskip("pydantic")
    from tests.typed.models import Price, amount_of

    models = typed.model_inputs(task.FunctorTask(amount_of))
    assert models is not None and models.input_type("price") is Price
    assert typed.model_inputs(task.FunctorTask(_amount_as_int)) is None
    assert typed.model_inputs(task.FunctorTask(amount_of)) is not None


class Order:
    """A class of this module, named by a string annotation."""


def _plain_names(a: int, b: Order, c: None, d: str = "") -> bool:
    return True


def _not_plain(a: int | None, b: list[str], c: Optional[int]) -> Mapping[str, int]:  # noqa: UP045 - the old spelling on purpose
    return {}


def _unknown(a: NoSuchName) -> int:  # type: ignore[name-defined]  # noqa: F821 - unresolvable on purpose
    return 0


@pytest.mark.parametrize("fn", [_plain_names, _not_plain, typed_function, Typed().execute])
def test_hints_of_plain_names_are_read_without_compile_and_match_typing(
    fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = typing.get_type_hints(fn)
    if typed._plain_hints(fn) is not None:  # plain names only: no compile() on the way
        monkeypatch.setattr("builtins.compile", _no_compile)
    assert dict(typed._read_contract(fn).inputs) == {k: v for k, v in expected.items() if k != "return"}
    assert typed._read_contract(fn).result == expected.get("return", typed.UNTYPED)


def _no_compile(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"compile{args!r}")


def test_which_annotations_count_as_plain_names() -> None:
    assert typed._plain_hints(_plain_names) == {
        "a": int,
        "b": Order,
        "c": type(None),
        "d": str,
        "return": bool,
    }
    assert typed._plain_hints(typed_function) == {"x": float, "return": str}
    assert typed._plain_hints(_not_plain) is None
    assert typed._plain_hints(_unknown) is None  # left to typing, which cannot resolve it either
    assert typed._read_contract(_unknown) is typed._read_contract(Plain().execute)  # both empty


class Span(typing.NamedTuple):
    low: int
    high: str


@pytest.mark.parametrize(
    ("result", "key", "item"),
    [
        (tuple[int, str], 1, str),
        (tuple[int, str], 2, typed.UNTYPED),  # past the end: left to the run, as TaskFlow does
        (tuple[int, ...], 5, int),
        (Span, 0, int),
        (list[str], 3, str),
        (Sequence[float], 0, float),
        (typing.List[bytes], 0, bytes),  # noqa: UP006 - the old spelling is read alike
        (dict[str, int], "rows", int),
        (Mapping[str, int], 0, int),  # TaskFlow's result[0] and a spec's ${p.0} look the key up
        (set[int], 0, typed.UNTYPED),  # no index
        (list[str], "x", typed.UNTYPED),
        (Optional[list[str]], 0, typed.UNTYPED),  # noqa: UP045 - a union: not certain
    ],
)
def test_item_type_of_containers(result: Any, key: int | str, item: Any) -> None:
    assert typed.item_type(result, key) == item


class Row(typing.TypedDict):
    a: int


@pytest.mark.parametrize(
    ("values", "element"),
    [
        (list[str], str),
        (Sequence[float], float),
        (typing.List[bytes], bytes),  # noqa: UP006 - the old spelling is read alike
        (tuple[int, ...], int),
        (tuple[int, str], int | str),  # any of its positions
        (tuple[int, int], int),
        (Span, int | str),
        (set[int], int),
        (frozenset[str], str),
        (Iterable[float], float),
        (dict[str, int], str),  # a mapping is iterated by its keys
        (Mapping[int, str], int),
        (Row, str),
        (str, str),
        (list, typed.UNTYPED),  # the item's type is not declared
        (dict, typed.UNTYPED),
        (int, typed.UNTYPED),
        (Any, typed.UNTYPED),
        (typed.UNTYPED, typed.UNTYPED),
        (Optional[list[str]], typed.UNTYPED),  # noqa: UP045 - a union: not certain
        (typing.Annotated[list[int], "ids"], int),
    ],
)
def test_element_type_is_what_iterating_a_value_yields(values: Any, element: Any) -> None:
    # What a parameterized_for_each retry provides of the values it is given.
    assert typed.element_type(values) == element


def test_tuple_items_are_the_positions_of_a_fixed_tuple_or_named_tuple() -> None:
    assert typed.tuple_items(tuple[int, str]) == (int, str)
    assert typed.tuple_items(Span) == (int, str)
    assert typed.tuple_items(typing.Annotated[tuple[int], "x"]) == (int,)
    for other in (tuple[int, ...], tuple, list[int], int):
        assert typed.tuple_items(other) is None
