"""``Record``: :class:`typing.NamedTuple` without evaluating the field annotations.

Under ``from __future__ import annotations`` every field annotation is a string,
and ``typing.NamedTuple`` turns each one into a ``ForwardRef``, which runs the
builtin :func:`compile` on it. The first ``compile()`` of a process also builds
the interpreter's AST classes: the nine records on the way of a first flow run
cost about 2 ms of an 18 ms start-up that way, for annotations nobody evaluates.

``class Call(Record): ...`` is written and checked exactly as a ``NamedTuple``
(type checkers see ``typing.NamedTuple`` itself) and makes the class
:func:`collections.namedtuple` would: fields, defaults, docstring and any methods
from the class body, and ``__annotations__`` kept as the strings they are
(``typing.get_type_hints`` still resolves them).

It makes that class itself rather than calling :func:`collections.namedtuple`,
which builds each class's ``__new__`` by ``eval`` of a ``lambda`` (half of its
80 µs per class; the engine's first load makes seven records). Here ``__new__``
is one of the fixed-arity ``lambda`` s below with its parameters renamed to the
fields (:meth:`types.CodeType.replace`): the same bytecode, so records are built
as fast, and keyword arguments match the field names. A record with more fields
than there are templates is left to :func:`collections.namedtuple`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Record"]

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    import collections
    import sys
    from _collections import _tuplegetter
    from types import FunctionType

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

    _tuple_new = tuple.__new__

    # ``__new__`` of a record of 1, 2, ... fields, before its parameters are renamed.
    _NEW_TEMPLATES = (
        lambda _cls, a: _tuple_new(_cls, (a,)),
        lambda _cls, a, b: _tuple_new(_cls, (a, b)),
        lambda _cls, a, b, c: _tuple_new(_cls, (a, b, c)),
        lambda _cls, a, b, c, d: _tuple_new(_cls, (a, b, c, d)),
        lambda _cls, a, b, c, d, e: _tuple_new(_cls, (a, b, c, d, e)),
        lambda _cls, a, b, c, d, e, f: _tuple_new(_cls, (a, b, c, d, e, f)),
        lambda _cls, a, b, c, d, e, f, g: _tuple_new(_cls, (a, b, c, d, e, f, g)),
        lambda _cls, a, b, c, d, e, f, g, h: _tuple_new(_cls, (a, b, c, d, e, f, g, h)),
    )

    def _record_class(name: str, fields: tuple[str, ...], defaults: tuple[Any, ...], module: str) -> type:
        """The class ``collections.namedtuple(name, fields, defaults=defaults, module=module)`` makes."""
        count = len(fields)
        if not 0 < count <= len(_NEW_TEMPLATES) or len(set(fields)) != count:
            # No template (or duplicate names): namedtuple makes it, or says what is wrong.
            return collections.namedtuple(name, fields, defaults=defaults, module=module)
        for field in fields:
            if not field.isidentifier() or field.startswith("_"):
                return collections.namedtuple(name, fields, defaults=defaults, module=module)
        fields = tuple(map(sys.intern, fields))
        template = _NEW_TEMPLATES[count - 1]
        code = template.__code__.replace(
            co_varnames=("_cls", *fields), co_name="__new__", co_qualname=f"{name}.__new__"
        )
        arg_list = ", ".join(fields) + ("," if count == 1 else "")
        new = FunctionType(code, template.__globals__, "__new__", defaults or None)
        new.__doc__ = f"Create new instance of {name}({arg_list})"
        repr_format = "(" + ", ".join(f"{field}=%r" for field in fields) + ")"

        def _make(cls: type, iterable: Any) -> Any:
            made = _tuple_new(cls, iterable)
            if len(made) != count:
                raise TypeError(f"Expected {count} arguments, got {len(made)}")
            return made

        _make.__doc__ = f"Make a new {name} object from a sequence or iterable"

        def _replace(self: Any, /, **changes: Any) -> Any:
            made = self._make(map(changes.pop, fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return made

        _replace.__doc__ = f"Return a new {name} object replacing specified fields with new values"

        def __repr__(self: Any) -> str:
            """Return a nicely formatted representation string"""
            return type(self).__name__ + repr_format % self

        def _asdict(self: Any) -> dict[str, Any]:
            """Return a new dict which maps field names to their values."""
            return dict(zip(fields, self, strict=True))

        def __getnewargs__(self: Any) -> tuple[Any, ...]:
            """Return self as a plain tuple.  Used by copy and pickle."""
            return tuple(self)

        for method in (new, _make, _replace, __repr__, _asdict, __getnewargs__):
            method.__qualname__ = f"{name}.{method.__name__}"
        namespace: dict[str, Any] = {
            "__doc__": f"{name}({arg_list})",
            "__slots__": (),
            "_fields": fields,
            "_field_defaults": dict(zip(fields[count - len(defaults) :], defaults, strict=True)),
            "__new__": new,
            "_make": classmethod(_make),
            "_replace": _replace,
            "__repr__": __repr__,
            "_asdict": _asdict,
            "__getnewargs__": __getnewargs__,
            "__match_args__": fields,
            "__module__": module,
        }
        for index, field in enumerate(fields):
            namespace[field] = _tuplegetter(index, sys.intern(f"Alias for field number {index}"))
        return type(name, (tuple,), namespace)

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
            cls = _record_class(name, tuple(fields), tuple(defaults), namespace["__module__"])
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
