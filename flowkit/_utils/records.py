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

The methods namedtuple makes for each class (``_make``, ``_replace``,
``__repr__``, ``_asdict``, ``__getnewargs__``) are made once here and read the
class's ``_fields``, and the class body's own names go into the namespace the
class is made from: eight records take 212 µs to make in a fresh process,
against 290 µs with a closure per method per class.
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

    # The methods namedtuple makes per class, made once: they read the class's
    # ``_fields`` (and ``_repr_format``) instead of closing over its own copy.
    # Making five functions and a closure each per class was a third of a
    # record's creation (about 10 of 36 µs in a fresh process; the engine's first
    # load makes eight records).

    def _make(cls: Any, iterable: Any) -> Any:
        """Make a new record from a sequence or iterable."""
        made = _tuple_new(cls, iterable)
        if len(made) != len(cls._fields):
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(made)}")
        return made

    def _replace(self: Any, /, **changes: Any) -> Any:
        """Return a new record replacing specified fields with new values."""
        made = self._make(map(changes.pop, self._fields, self))
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return made

    def __repr__(self: Any) -> str:
        """Return a nicely formatted representation string"""
        return type(self).__name__ + self._repr_format % self

    def _asdict(self: Any) -> dict[str, Any]:
        """Return a new dict which maps field names to their values."""
        return dict(zip(self._fields, self, strict=True))

    def __getnewargs__(self: Any) -> tuple[Any, ...]:
        """Return self as a plain tuple.  Used by copy and pickle."""
        return tuple(self)

    _SHARED_METHODS = {
        "_make": classmethod(_make),
        "_replace": _replace,
        "__repr__": __repr__,
        "_asdict": _asdict,
        "__getnewargs__": __getnewargs__,
    }
    _GETTER_DOCS = tuple(
        sys.intern(f"Alias for field number {index}") for index in range(len(_NEW_TEMPLATES))
    )

    def _record_class(
        name: str, fields: tuple[str, ...], defaults: tuple[Any, ...], module: str, body: dict[str, Any]
    ) -> type:
        """The class ``collections.namedtuple(name, fields, defaults=defaults, module=module)``
        makes, with ``body`` (the class body's own names) set on it."""
        count = len(fields)
        usable = 0 < count <= len(_NEW_TEMPLATES) and len(set(fields)) == count
        if usable:
            for field in fields:
                if not field.isidentifier() or field.startswith("_"):
                    usable = False
                    break
        if not usable:
            # No template (or bad names): namedtuple makes it, or says what is wrong.
            made = collections.namedtuple(name, fields, defaults=defaults, module=module)
            for key, value in body.items():
                setattr(made, key, value)
            return made
        template = _NEW_TEMPLATES[count - 1]
        code = template.__code__.replace(
            co_varnames=("_cls", *fields), co_name="__new__", co_qualname=f"{name}.__new__"
        )
        arg_list = ", ".join(fields) + ("," if count == 1 else "")
        new = FunctionType(code, template.__globals__, "__new__", defaults or None)
        new.__doc__ = f"Create new instance of {name}({arg_list})"
        namespace: dict[str, Any] = {
            "__doc__": f"{name}({arg_list})",
            "__slots__": (),
            "_fields": fields,
            "_field_defaults": dict(zip(fields[count - len(defaults) :], defaults, strict=True)),
            "__new__": new,
            "__match_args__": fields,
            "__module__": module,
            "_repr_format": "(" + ", ".join([f"{field}=%r" for field in fields]) + ")",
            **_SHARED_METHODS,
        }
        for index, field in enumerate(fields):
            namespace[field] = _tuplegetter(index, _GETTER_DOCS[index])
        # The body's names go in before the class is made: setting them after
        # costs a type attribute write (and cache invalidation) each.
        namespace.update(body)
        return type(name, (tuple,), namespace)

    class _RecordMeta(type):
        def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if not bases:  # Record itself
                return super().__new__(mcs, name, bases, namespace)
            if bases != (Record,):
                raise TypeError(f"record {name} can only derive from Record")
            annotations = namespace.get("__annotations__", {})
            fields = tuple(map(sys.intern, annotations))
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(
                        f"record {name}: field {field} without a default follows one with a default"
                    )
            body = {"__qualname__": namespace.get("__qualname__", name), "__annotations__": dict(annotations)}
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"record {name} cannot set {key}")
                if key not in _NOT_COPIED and key not in fields:
                    body[key] = value
            return _record_class(name, fields, tuple(defaults), namespace["__module__"], body)

    class Record(metaclass=_RecordMeta):
        """Base of a record class (see the module docstring)."""
