"""``Record``: :class:`typing.NamedTuple` without evaluating the field annotations.

Under ``from __future__ import annotations`` every field annotation is a string,
and ``typing.NamedTuple`` turns each one into a ``ForwardRef``, which runs the
builtin :func:`compile` on it. The first ``compile()`` of a process also builds
the interpreter's AST classes: the nine records on the way of a first flow run
cost about 2 ms of an 18 ms start-up that way, for annotations nobody evaluates.

``class Call(Record): ...`` is written and checked exactly as a ``NamedTuple``
(type checkers see ``typing.NamedTuple`` itself) and makes the same
:func:`collections.namedtuple` class: fields, defaults, docstring and any methods
from the class body, and ``__annotations__`` kept as the strings they are
(``typing.get_type_hints`` still resolves them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Record"]

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    import collections

    # What a class body may not set, as for typing.NamedTuple.
    _PROHIBITED = frozenset(
        {
            "__new__",
            "__init__",
            "__slots__",
            "__getnewargs__",
            "_fields",
            "_field_defaults",
            "_make",
            "_replace",
            "_asdict",
            "_source",
        }
    )
    _NOT_COPIED = frozenset({"__module__", "__qualname__", "__annotations__"})

    class _RecordMeta(type):
        def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if not bases:  # Record itself
                return super().__new__(mcs, name, bases, namespace)
            if bases != (Record,):
                raise TypeError(f"record {name} can only derive from Record")
            annotations = namespace.get("__annotations__", {})
            fields = list(annotations)
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(
                        f"record {name}: field {field} without a default follows one with a default"
                    )
            cls = collections.namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            cls.__qualname__ = namespace.get("__qualname__", name)
            cls.__annotations__ = dict(annotations)
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"record {name} cannot set {key}")
                if key not in _NOT_COPIED and key not in fields:
                    setattr(cls, key, value)
            return cls

    class Record(metaclass=_RecordMeta):
        """Base of a record class (see the module docstring)."""
