"""``${...}`` references in a spec's input values: parsing once, rendering per call.

An input value is parsed into a small tree:

* a string that is exactly ``${name}`` or ``${name.field...}`` is a
  :class:`Ref`, rendered as the referenced value itself (any type);
* a string with text around references is an :class:`Interpolation`, rendered
  as text (``"price is ${price}"``);
* lists and mappings are walked, so references may sit inside them;
* anything else is a constant. ``$${`` writes a literal ``${``.

A field is a mapping key, a sequence index (digits) or an attribute (pydantic
models, dataclasses, any object), tried in that order. Attributes whose name
starts with ``_`` are never read: ``__class__`` and its like lead from a
result to code and module globals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Constant",
    "FieldMissing",
    "Interpolation",
    "ListValue",
    "MapValue",
    "Ref",
    "RefSyntaxError",
    "Value",
    "get_field",
    "is_constant",
    "parse_value",
    "refs_in",
    "render",
]

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z|[0-9]+\Z")


class RefSyntaxError(ValueError):
    """A ``${...}`` that is not ``${name}`` or ``${name.field...}``."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to a task's result (or a flow parameter), and a path into it."""

    name: str
    path: tuple[str | int, ...]

    @property
    def text(self) -> str:
        return "${" + ".".join([self.name, *map(str, self.path)]) + "}"


@dataclass(frozen=True, slots=True)
class Interpolation:
    """Text with references in it; rendered with ``str()`` of each referenced value."""

    parts: tuple[str | Ref, ...]


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class MapValue:
    items: tuple[tuple[Any, Value], ...]


@dataclass(frozen=True, slots=True)
class Constant:
    value: Any


Value = Ref | Interpolation | ListValue | MapValue | Constant


def _parse_ref(body: str) -> Ref:
    parts = body.strip().split(".")
    if not _NAME.match(parts[0]) or not all(_FIELD.match(p) for p in parts[1:]):
        raise RefSyntaxError(f"'${{{body}}}' is not a reference: write ${{task}} or ${{task.field}}")
    path = tuple(int(p) if p.isdigit() else p for p in parts[1:])
    return Ref(parts[0], path)


def _outside(text: str, start: int, end: int) -> str:
    """The text between references, refused when it holds a ``${`` never closed.

    ``"price is ${price"`` would otherwise reach the task as that very text;
    ``$${`` writes a literal ``${``.
    """
    between = text[start:end]
    if "${" in between:
        raise RefSyntaxError(f"'${{' is not closed in {text!r}: write ${{task}}, or $${{ for a literal '${{'")
    return between


def _parse_text(text: str) -> Value:
    if "$" not in text:
        return Constant(text)
    parts: list[str | Ref] = []
    pos = 0
    buffer = ""
    for match in _REF.finditer(text):
        buffer += _outside(text, pos, match.start())
        pos = match.end()
        if match.group(1) is None:  # "$${": a literal "${"
            buffer += "${"
            continue
        if buffer:
            parts.append(buffer)
            buffer = ""
        parts.append(_parse_ref(match.group(1)))
    buffer += _outside(text, pos, len(text))
    if buffer:
        parts.append(buffer)
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return parts[0]
    if not any(isinstance(p, Ref) for p in parts):
        return Constant("".join(p for p in parts if isinstance(p, str)))
    return Interpolation(tuple(parts))


def parse_value(value: Any) -> Value:
    """Parse an input value from a spec.

    Raises:
        RefSyntaxError: a malformed ``${...}``.
    """
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, list):
        items = tuple(parse_value(v) for v in value)
        if all(isinstance(i, Constant) for i in items):
            return Constant(value)
        return ListValue(items)
    if isinstance(value, Mapping):
        pairs = tuple((k, parse_value(v)) for k, v in value.items())
        if all(isinstance(v, Constant) for _, v in pairs):
            return Constant(value)
        return MapValue(pairs)
    return Constant(value)


def is_constant(value: Value) -> bool:
    return isinstance(value, Constant)


def refs_in(value: Value) -> Iterator[Ref]:
    """Every reference inside ``value``, in order."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Interpolation):
        yield from (p for p in value.parts if isinstance(p, Ref))
    elif isinstance(value, ListValue):
        for item in value.items:
            yield from refs_in(item)
    elif isinstance(value, MapValue):
        for _key, item in value.items:
            yield from refs_in(item)


class FieldMissing(LookupError):
    """A reference's field is not in the value it reads from."""

    def __init__(self, ref: Ref, field: str | int, value: Any) -> None:
        hidden = isinstance(field, str) and field.startswith("_") and not isinstance(value, Mapping)
        note = " (attributes starting with '_' are not read)" if hidden else ""
        super().__init__(f"{ref.text}: {type(value).__name__} value has no field {field!r}{note}")
        self.ref = ref
        self.field = field


def get_field(value: Any, field: str | int) -> Any:
    """Read ``field`` from ``value``: mapping key, then sequence index, then attribute.

    Raises:
        LookupError: none of them exists.
    """
    if isinstance(value, Mapping):
        if field in value:
            return value[field]
        if isinstance(field, int) and str(field) in value:
            return value[str(field)]
        raise LookupError(field)
    if isinstance(field, int):
        if isinstance(value, Sequence) and not isinstance(value, str) and -len(value) <= field < len(value):
            return value[field]
        raise LookupError(field)
    if field.startswith("_"):
        # Private and special attributes lead out of the data: from any object,
        # `__class__.__init__.__globals__` reaches its module's globals, and
        # from there os.environ. A spec may come from elsewhere: data only.
        raise LookupError(field)
    try:
        return getattr(value, field)
    except AttributeError:
        raise LookupError(field) from None


def _resolve(ref: Ref, values: Mapping[str, Any]) -> Any:
    found = values[ref.name]
    for field in ref.path:
        try:
            found = get_field(found, field)
        except LookupError:
            raise FieldMissing(ref, field, found) from None
    return found


def render(value: Value, values: Mapping[str, Any]) -> Any:
    """The value of ``value`` given each referenced name's value.

    Raises:
        FieldMissing: a referenced field does not exist.
    """
    if isinstance(value, Constant):
        return value.value
    if isinstance(value, Ref):
        return _resolve(value, values)
    if isinstance(value, Interpolation):
        return "".join(p if isinstance(p, str) else str(_resolve(p, values)) for p in value.parts)
    if isinstance(value, ListValue):
        return [render(item, values) for item in value.items]
    return {key: render(item, values) for key, item in value.items}
