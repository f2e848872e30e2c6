"""``Record`` makes the class ``typing.NamedTuple`` would, minus evaluating annotations."""

from __future__ import annotations

import collections
import copy
import inspect
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


def _namedtuple_twin(fields: tuple[str, ...], defaults: tuple[Any, ...]) -> tuple[type, type]:
    namespace: dict[str, Any] = {"__annotations__": dict.fromkeys(fields, "int"), "__module__": __name__}
    namespace.update(zip(fields[len(fields) - len(defaults) :], defaults, strict=True))
    made = type(Record)("Many", (Record,), namespace)
    return made, collections.namedtuple("Many", fields, defaults=defaults, module=__name__)


@pytest.mark.parametrize("count", [1, 2, 5, 8, 9, 12])
def test_records_of_any_size_behave_as_namedtuple_classes(count: int) -> None:
    fields = tuple(f"f{i}" for i in range(count))
    made, twin = _namedtuple_twin(fields, (7,))
    values = tuple(range(count))
    record, reference = made(*values), twin(*values)
    assert record == reference
    assert repr(record) == repr(reference)
    assert made(**dict(zip(fields, values, strict=True))) == record  # keywords are the field names
    assert made(*values[:-1]) == (*values[:-1], 7)  # the default
    assert str(inspect.signature(made)) == str(inspect.signature(twin))
    assert record._asdict() == reference._asdict()
    assert made._make(values) == record
    assert record._replace(f0=-1)[0] == -1
    assert made.__match_args__ == fields
    assert made.__doc__ == twin.__doc__
    assert [getattr(record, name) for name in fields] == list(values)
    assert copy.copy(record) == record  # through __getnewargs__, as pickle (see above)
    with pytest.raises(TypeError, match=f"Expected {count} arguments"):
        made._make(values + (0,))
    with pytest.raises(ValueError, match="unexpected field names"):
        record._replace(nope=1)
    with pytest.raises(TypeError, match="positional arguments"):
        made(*values, 0)
