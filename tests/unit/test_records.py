"""``Record`` makes the class ``typing.NamedTuple`` would, minus evaluating annotations."""

from __future__ import annotations

import pickle
import typing
from typing import Any, NamedTuple

import pytest

from flowkit._utils.records import Record


class Point(Record):
    """A point, with a default and a method."""

    x: int
    y: int
    label: str | None = None

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


class TypedPoint(NamedTuple):
    """A point, with a default and a method."""

    x: int
    y: int
    label: str | None = None

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def test_a_record_is_the_named_tuple_typing_would_make() -> None:
    point, typed = Point(1, -2), TypedPoint(1, -2)
    assert point == typed == (1, -2, None)
    assert Point._fields == TypedPoint._fields == ("x", "y", "label")
    assert Point._field_defaults == TypedPoint._field_defaults == {"label": None}
    assert Point.__mro__ == (Point, tuple, object)
    assert (Point.__module__, Point.__qualname__) == (__name__, "Point")
    assert Point.__doc__ == TypedPoint.__doc__
    assert point.norm1() == 3
    assert point._replace(label="a") == (1, -2, "a")
    assert pickle.loads(pickle.dumps(point)) == point


def test_annotations_stay_strings_and_still_resolve() -> None:
    assert Point.__annotations__ == {"x": "int", "y": "int", "label": "str | None"}
    assert typing.get_type_hints(Point) == typing.get_type_hints(TypedPoint)


def test_a_field_without_default_after_one_with_default_is_refused() -> None:
    with pytest.raises(TypeError, match="field y without a default"):

        class Bad(Record):
            x: int = 0
            y: int


def test_namedtuple_internals_cannot_be_overridden() -> None:
    with pytest.raises(AttributeError, match="_make"):

        class Bad(Record):
            x: int

            @classmethod
            def _make(cls, iterable: Any) -> Any:
                return iterable
