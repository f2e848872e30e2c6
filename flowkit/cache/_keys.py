"""Cache keys: a task's identity plus a canonical hash of its inputs, topologically.

The key of a cacheable atom's call is the SHA-256 of a canonical JSON document:

* the task's identity: its class path (a function task's function path), its
  ``version``, its ``cache_version`` attribute if any, and, when the class sets
  ``cache_code = True``, a hash of ``execute``'s byte code and constants;
* its inputs, argument by argument. An input that came from an upstream
  cacheable atom computed (or found) in this run is represented by that atom's
  key rather than its value, so a change anywhere upstream changes every key
  downstream of it. Other inputs are represented by their values.

A task may define ``cache_key(self, inputs)`` returning a string that replaces
the inputs' part of the key, or ``None`` to not cache that call.

Values are written type-exactly by :func:`key_text`: two inputs share a key
only when they are the same value of the same types (a set is not a list, a
tuple, ``1.0`` or ``True`` is not ``1``, ``{1: "a"}`` is not ``{"1": "a"}``).
An input no key represents fails the atom before its call (the guard raises
:class:`Uncacheable` naming the atom and the argument); a result JSON cannot
represent is not stored.
"""

from __future__ import annotations

import enum
import hashlib
import json
import marshal
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.task import FunctorTask

__all__ = [
    "KEY_FORMAT",
    "VALUE_PREFIX",
    "OldEntry",
    "Uncacheable",
    "UpstreamKey",
    "call_key",
    "decode_value",
    "encode_value",
    "key_text",
    "keyed",
    "task_identity",
]


class Uncacheable(ValueError):
    """A call whose inputs cannot be part of a cache key, or whose result cannot be stored.

    Attributes:
        atom: the name of the atom whose call it is (None: not known where raised).
        argument: the input at fault (None: the result, or not an input).
    """

    def __init__(self, message: str, *, atom: str | None = None, argument: str | None = None) -> None:
        super().__init__(message)
        self.atom = atom
        self.argument = argument


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """An input that is (part of) the result of an upstream cacheable call."""

    key: str
    item: int | str | None


def task_identity(atom: Any) -> dict[str, Any]:
    """What identifies the code that a cached result came from.

    An adapter that runs another task (a declarative spec's, see
    :mod:`flowkit.declarative`) says so with ``__flowkit_cache_identity__()``,
    returning that task and what else tells its calls apart: its own class
    would name the adapter, the same for every task it wraps.
    """
    hook = getattr(type(atom), "__flowkit_cache_identity__", None)
    if hook is not None:
        inner, extra = hook(atom)
        return {**task_identity(inner), **extra}
    source, _revert_source = atom._arg_sources()
    target = getattr(source, "__func__", source)
    if isinstance(atom, FunctorTask):  # the function is the code, not the adapter class
        name = getattr(target, "__qualname__", repr(target))
        path = f"{getattr(target, '__module__', '?')}.{name}"
    else:
        cls = type(atom)
        name = cls.__qualname__
        path = f"{cls.__module__}.{name}"
    identity: dict[str, Any] = {"task": path, "version": _plain(atom.version)}
    extra = getattr(atom, "cache_version", None)
    if extra is not None:
        identity["cache_version"] = str(extra)
    # A lambda, or a function or class made inside a function, does not own its
    # name: every lambda of a module is "<lambda>", every adder(k)'s function is
    # "adder.<locals>.add". Its code and the values it closes over tell it apart.
    unnamed = "<lambda>" in name or "<locals>" in name
    if unnamed or getattr(atom, "cache_code", False):
        code = _code_digest(target)
        if code is not None:
            identity["code"] = code
    if unnamed:
        cells = getattr(target, "__closure__", None) or ()
        if cells:
            identity["closure"] = [_cell_value(cell) for cell in cells]
    return identity


def _cell_value(cell: Any) -> Any:
    """A closed-over value as the key shows it: a class or function by its name and code."""
    try:
        value = cell.cell_contents
    except ValueError:  # a cell not filled yet
        return {"@empty": True}
    if isinstance(value, type):  # the __class__ cell of a method that calls super()
        return {"@class": f"{value.__module__}.{value.__qualname__}"}
    if isinstance(value, types.FunctionType):
        return {"@function": f"{value.__module__}.{value.__qualname__}", "code": _code_digest(value)}
    if _constant(value):
        return value
    # Mutable state (a list the function appends to, a lock, a client): its
    # contents would change the key at every call, so only its type counts.
    return {"@object": f"{type(value).__module__}.{type(value).__qualname__}"}


def _constant(value: Any) -> bool:
    """Whether ``value`` is a plain immutable value (a number, a str, a tuple of them)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) is tuple or type(value) is frozenset:
        return all(_constant(item) for item in value)
    return False


def _code_digest(function: Any) -> str | None:
    """A hash of what ``function`` runs, the same in every process (None: not Python code).

    Byte code alone does not tell ``math.floor(x)`` from ``math.ceil(x)`` (the
    names it loads are in ``co_names``), and the ``repr`` of a nested code
    object (a generator expression, a lambda, a comprehension before 3.12)
    holds its memory address, which made the key differ in every process:
    nested code is hashed the same way instead. JSON-representable defaults
    count too.
    """
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    digest = hashlib.sha256()
    _feed_code(digest, code)
    try:
        defaults = key_text(
            [getattr(function, "__defaults__", None), getattr(function, "__kwdefaults__", None)]
        )
    except Uncacheable:
        defaults = "?"  # objects JSON cannot show: their repr would differ in every process
    digest.update(defaults.encode())
    return digest.hexdigest()


def _feed_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(b"\0" + repr(code.co_names).encode() + b"\0")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            digest.update(b"code\0")
            _feed_code(digest, const)
        else:
            digest.update(_constant_text(const).encode("utf-8", "surrogatepass") + b"\0")


def _constant_text(const: Any) -> str:
    """A code constant as text, the same in every process.

    Its repr is, but for a frozenset (``x in {"a", "b"}`` compiles to one):
    that shows its items in an order that changes with the hash seed.
    """
    kind = type(const)
    if kind is frozenset:
        return f"frozenset({sorted(map(_constant_text, const))!r})"
    if kind is tuple:
        return f"({''.join(_constant_text(item) + ',' for item in const)})"
    return repr(const)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


#: Part of every key document: a change in how keys are written changes every key,
#: so an entry written under an earlier form is never looked up (it ages out).
KEY_FORMAT = 2


def key_text(value: Any) -> str:
    """Canonical text of an input for its key: distinct values of any type give distinct texts.

    Plain JSON wrote a set and a list of the same items alike (and a tuple and
    a list, ``{1: "a"}`` and ``{"1": "a"}``, an ``IntEnum`` member and its
    int), so a task given one was handed the result computed for the other.
    Here two inputs give one text only when they are the same value of the
    same types all the way down: lists, tuples and mappings in their order, a
    set or frozenset whatever order it was built in (by the sorted texts of
    its items), ints, floats and bools apart (``-0.0`` is not ``0.0``; every
    NaN is one input), a subclass by its class path, an enum member by its
    class and name, a pydantic model by its class and JSON dump, bytes apart
    from text.

    The usual input (exact ``dict``/``list``/``str``/numbers, keys all text)
    is written by the C JSON encoder: ``marshal`` refuses every subclass, and
    a JSON round trip that gives back an equal value shows that no tuple or
    non-text key was written as what JSON has instead. Anything else is a
    tagged tree (every container a list led by its tag), written after an
    ``@`` that no JSON text starts with.

    Raises:
        Uncacheable: the value holds something no key represents (an object,
            a ``datetime``), or is nested deeper than the encoder goes.
    """
    kind = type(value)
    if kind is str:
        return json.dumps(value)
    if kind is int and -_BIG < value < _BIG:
        return str(value)
    if value is None or kind is bool:
        return "null" if value is None else "true" if value else "false"
    if kind is list or kind is dict:
        try:
            text = _strict(value)
            marshal.dumps(value, 2)  # refuses subclasses (an OrderedDict, an IntEnum)
            if json.loads(text) == value:  # no tuple or non-text key became a list or text
                return text
        except (TypeError, ValueError, RecursionError):
            pass
    try:
        return "@" + _compact(_key_tree(value))
    except RecursionError as err:
        raise Uncacheable("it is nested deeper than a cache key goes") from err


#: The encoders, made once (``json.dumps`` with options makes a new one at every call).
_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_compact = json.JSONEncoder(separators=(",", ":")).encode

#: Ints beyond this are written in hex: Python refuses str() of ints of over 4,300 digits.
_BIG = 10**4000


def _key_tree(value: Any) -> Any:
    """``value`` as JSON data in which every container is a list led by its tag (see :func:`key_text`)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_BIG < value < _BIG else ["int", hex(value)]
    if kind is float:
        if math.isfinite(value):
            return value
        return ["float", "nan" if math.isnan(value) else repr(value)]
    if kind is list:
        return ["list", *map(_key_tree, value)]
    if kind is tuple:
        return ["tuple", *map(_key_tree, value)]
    if kind is dict:
        return ["dict", *[_key_tree(part) for item in value.items() for part in item]]
    if kind is set or kind is frozenset:
        # Sorted by text, not by repr: a set of strs or of frozensets iterates (and
        # shows) in an order that differs from one process to the next.
        texts = sorted(_compact(_key_tree(item)) for item in value)
        return ["set" if kind is set else "frozenset", *texts]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind is UpstreamKey:
        return ["upstream", value.key, _key_tree(value.item)]
    if isinstance(value, enum.Enum):
        return ["enum", _path(kind), value.name]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            data = dump(mode="json")
        except Exception as err:  # a field pydantic cannot dump (an arbitrary type)
            raise Uncacheable(f"a {_path(kind)} cannot be part of a cache key: {err}") from err
        return ["model", _path(kind), _key_tree(data)]
    for base, plain in _BASES:
        if isinstance(value, base):  # a subclass: its class counts, and what it holds as the base
            return ["subclass", _path(kind), _key_tree(plain(value))]
    raise Uncacheable(f"a {_path(kind)} cannot be part of a cache key")


#: Base types a subclass instance is keyed as, and how to get the plain value (the
#: base's own slot, not a ``__str__`` or ``__int__`` the subclass may redefine).
_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
    (bytes, bytes),
    (list, list),
    (tuple, tuple),
    (dict, dict),
    (set, set),
    (frozenset, frozenset),
)


def _path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def call_key(identity: Mapping[str, Any], inputs: Mapping[str, Any], custom: str | None = None) -> str:
    """The key of one call: hex SHA-256 of the identity and the inputs (or ``custom``).

    Raises:
        Uncacheable: an input no key represents; ``argument`` names it.
    """
    return keyed(key_text(dict(identity)), inputs, custom)


def keyed(identity: str, inputs: Mapping[str, Any], custom: str | None = None) -> str:
    """:func:`call_key` for an identity already written by :func:`key_text` (a guard writes it once).

    The hash reads a head naming the arguments and the length of each
    input's text, then the texts themselves: written into one JSON document,
    a large input's text was copied and escaped once more (a 100,000-int list:
    3.8 ms more than writing its text, now 0.4).
    """
    digest = hashlib.sha256()
    if custom is not None:
        digest.update(_compact([KEY_FORMAT, identity, "custom", custom]).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()
    texts = []
    for name in sorted(inputs):
        try:
            texts.append((name, key_text(inputs[name])))
        except Uncacheable as err:
            raise Uncacheable(f"argument {name!r}: {err}", argument=name) from err
    head = _compact([KEY_FORMAT, identity, "inputs", [[name, len(text)] for name, text in texts]])
    digest.update(head.encode("utf-8", "surrogatepass"))
    for _name, text in texts:
        digest.update(text.encode("ascii"))  # key texts are ASCII: JSON with every other character escaped
    return digest.hexdigest()


def encode_value(value: Any) -> str:
    """A result as stored in a cache: JSON text that decodes to an equal value.

    Plain JSON would give a hit a different value than the call that filled
    the entry: a mapping's int keys back as strings (a downstream ``m[1]``
    fails on the second run only), a tuple back as a list (which a
    ``-> tuple[...]`` result validation refuses). So what JSON does not
    round-trip is tagged: ``{"@tuple": [...]}``, ``{"@set": [...]}``,
    ``{"@frozenset": [...]}``, ``{"@int": "0x..."}`` for an int too long for
    ``str()``, and ``{"@dict": [[key, value], ...]}`` for a
    mapping with a key that is not a str or that starts with ``@`` (so a
    stored mapping is never read as a tag). A pydantic model is stored as its
    JSON dump and comes back as a mapping, which result validation turns into
    the model again. A value that needs no tag (the usual one) costs one C
    encode, decode and comparison more than before.

    The text starts with :data:`VALUE_PREFIX`, which no JSON text starts with:
    entries written before results were tagged hold the plain JSON form, and
    :func:`decode_value` must not hand that form to a task as if it were the
    value.

    Raises:
        Uncacheable: JSON cannot represent it.
    """
    try:
        try:
            text = json.dumps(value, default=_dump_default, allow_nan=False)
        except (TypeError, ValueError):  # a set, a tuple key, an int of 4,300 digits: tags may do
            pass
        else:
            if _needs_no_tags(text, value):
                return VALUE_PREFIX + text
        text = json.dumps(_tagged(value), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise Uncacheable(str(err)) from err
    try:
        # A model inside a set or as a mapping key is stored as a mapping, which
        # no set or key can hold: every hit would fail to read the entry, warn,
        # run the call and store it again.
        json.loads(text, object_hook=_untag)
    except (TypeError, ValueError, RecursionError) as err:
        raise Uncacheable(f"it cannot be given back from its stored form ({err})") from err
    return VALUE_PREFIX + text


#: What every stored result starts with (see :func:`encode_value`); a later form gets another.
VALUE_PREFIX = "v2:"


class OldEntry(ValueError):
    """An entry in the form of an earlier flowkit: a miss, which the call's result replaces."""


def _needs_no_tags(text: str, value: Any) -> bool:
    """Whether plain JSON text gives ``value`` back as it is."""
    if '"@' in text:  # a mapping key (or a str) that looks like a tag: take no chance
        return False
    try:
        return bool(json.loads(text) == value)
    except Exception:  # a value whose == fails: tag it (and let tagging decide)
        return False


_TAGS = ("@tuple", "@set", "@frozenset", "@dict")


def _tagged(value: Any) -> Any:
    """``value`` as JSON-native data that :func:`decode_value` turns back into it."""
    kind = type(value)
    if kind is int and not -_BIG < value < _BIG:  # JSON's encoder cannot write it in decimal
        return {"@int": hex(value)}
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, dict):
        if all(type(key) is str and not key.startswith("@") for key in value):
            return {key: _tagged(item) for key, item in value.items()}
        return {"@dict": [[_tagged(key), _tagged(item)] for key, item in value.items()]}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    if isinstance(value, tuple):
        return {"@tuple": [_tagged(item) for item in value]}
    if isinstance(value, frozenset):
        return {"@frozenset": [_tagged(item) for item in value]}
    if isinstance(value, set):
        return {"@set": [_tagged(item) for item in value]}
    if isinstance(value, str | int | float):  # a subclass (an enum member): JSON takes its value
        return value
    return _dump_default(value)


def _dump_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _untag(mapping: dict[str, Any]) -> Any:
    if len(mapping) == 1:
        tag, items = next(iter(mapping.items()))
        if tag == "@int" and isinstance(items, str):
            return int(items, 16)
        if tag in _TAGS and isinstance(items, list):
            if tag == "@tuple":
                return tuple(items)
            if tag == "@set":
                return set(items)
            if tag == "@frozenset":
                return frozenset(items)
            # Keys come back hashable: a tuple or frozenset key was tagged too.
            return dict(items)
    return mapping


def decode_value(text: str) -> Any:
    """A stored result, back from JSON as it was stored (a model as a mapping; validation rebuilds it).

    Raises:
        OldEntry: the text is JSON without :data:`VALUE_PREFIX`, written before
            results were tagged: ``{1: "a"}`` stored as ``{"1": "a"}``, a tuple
            as a list. What it held can no longer be told.
        ValueError: the text is not an entry (damaged, or written by something else).
    """
    if not text.startswith(VALUE_PREFIX):
        json.loads(text)  # not JSON either: a damaged entry, which the caller reports
        raise OldEntry("the entry was written in the plain JSON form of an earlier flowkit")
    body = text[len(VALUE_PREFIX) :]
    if '"@' not in body:
        return json.loads(body)
    return json.loads(body, object_hook=_untag)
