"""Which declared types a JSON value can be: what text and spec files can give an argument.

A command line's ``--store`` value and a declarative spec's constant are JSON
(or YAML, read into the same kinds of values): they can be a ``str``, a
number, a list or a mapping, never a ``Path``, an enum member or a tuple. An
argument declared as one of those was handed text or a list and made its own
of it (``Path(path)``), as a Python flow's ``inject`` hands it what it is
given; a check of such a value against the annotation could only refuse every
value, so the readers leave those arguments unchecked. One rule for both, so
``flowkit run --store`` and a spec file agree on what they check.
"""

from __future__ import annotations

import collections.abc as cabc
import types
import typing
from typing import Any

__all__ = ["json_representable"]

#: Classes a JSON value (or the text) is an instance of, or is read into by pydantic.
_JSON_CLASSES = frozenset({str, int, float, bool, type(None), list, dict})
_JSON_ABSTRACT: frozenset[Any] = frozenset(
    {cabc.Sequence, cabc.MutableSequence, cabc.Mapping, cabc.MutableMapping, cabc.Collection, cabc.Iterable}
)


def json_representable(tp: Any) -> bool:
    """Whether a JSON value can be a ``tp``: JSON's types, containers and unions of them, pydantic models.

    Any other (a ``Path``, a ``datetime``, an enum, a tuple) no JSON value is,
    so a reader of text or of a spec leaves an argument of that type as it was
    rather than refuse a flow that worked.
    """
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if tp is None:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return all(json_representable(arg) for arg in args)
    if origin is typing.Literal:
        return True
    cls = origin if origin is not None else tp
    if cls in _JSON_CLASSES or cls in _JSON_ABSTRACT:
        return all(json_representable(arg) for arg in args)
    return isinstance(cls, type) and callable(getattr(cls, "model_validate", None))  # a pydantic model
