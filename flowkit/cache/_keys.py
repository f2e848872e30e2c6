"""Cache keys: a task's identity plus a canonical hash of its inputs, topologically.

The key of a cacheable atom's call is the SHA-256 of canonical bytes of:

* the task's identity: its class path (a function task's function path), its
  ``version``, its ``cache_version`` attribute if any, and, when the class sets
  ``cache_code = True``, a hash of ``execute``'s byte code and constants;
* its inputs, argument by argument. An input that came from an upstream
  cacheable atom computed (or found) in this run is represented by that atom's
  key rather than its value, so a change anywhere upstream changes every key
  downstream of it. Other inputs are represented by their values.

A task may define ``cache_key(self, inputs)`` returning a string (or another
value an input may be: a tuple, a set...) that replaces the inputs' part of
the key, or ``None`` to not cache that call.

Values are written type-exactly by :func:`key_bytes`: two inputs share a key
only when they are the same value of the same types (a set is not a list, a
tuple, ``1.0`` or ``True`` is not ``1``, ``{1: "a"}`` is not ``{"1": "a"}``).
An input no key represents raises :class:`Uncacheable` naming the argument:
the guard runs the call uncached with a WARNING, or fails the atom before its
call when the task sets ``cache_strict = True``. A result JSON cannot
represent is not stored.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import json
import marshal
import operator
import pathlib
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowkit.task import FunctorTask

if TYPE_CHECKING:  # imported by whoever made such an input: a key need not import them
    import datetime
    import decimal
    import uuid

__all__ = [
    "KEY_FORMAT",
    "VALUE_PREFIX",
    "OldEntry",
    "Uncacheable",
    "UpstreamKey",
    "call_key",
    "decode_value",
    "encode_value",
    "key_bytes",
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
    """An input that is (part of) the result of an upstream cacheable call.

    ``value`` (when ``valued``) is the input itself, counted beside the key:
    for an upstream whose revert removes its entry, the key no longer stands
    for one result (a reverted call's volume is deleted; the next call under
    the same key makes another), so an entry made from the old result must
    not be served for the new one.
    """

    key: str
    item: int | str | None
    value: Any = None
    valued: bool = False


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
        defaults = key_bytes(
            [getattr(function, "__defaults__", None), getattr(function, "__kwdefaults__", None)]
        )
    except Uncacheable:
        defaults = b"?"  # objects no key shows: their repr would differ in every process
    digest.update(defaults)
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


#: Part of every key: a change in how keys are written changes every key, so an
#: entry written under an earlier form is never looked up (it ages out).
KEY_FORMAT = 3


def key_bytes(value: Any) -> bytes:
    """Canonical bytes of an input for its key: distinct values of any type give distinct bytes.

    Two inputs give the same bytes only when they are the same value of the
    same types all the way down: lists, tuples and mappings in their order, a
    set or frozenset whatever order it was built in, ints, floats and bools
    apart (``-0.0`` is not ``0.0``), bytes apart from text and from a
    bytearray, a subclass by its class path, an enum member by its class and
    value, a pydantic model by its class and JSON dump, and the standard types
    of doc/caching.rst ("Which inputs are equal") by what a task can see of
    them.

    The bytes are ``marshal``'s version 2 form, which is exact about types
    (a tuple is not a list, ``{1: "a"}`` not ``{"1": "a"}``), refuses every
    subclass, has no references between objects (``[a, a]`` and ``[a, b]`` of
    equal ``a`` and ``b`` are written alike), writes a set's items sorted by
    their own bytes (since Python 3.11) and does not depend on the process or
    the platform. The usual input, exact ``list``/``tuple``/``dict``/``set``/
    ``frozenset`` of str, bytes, numbers, bools and None, is written as it is, in
    one pass of C code: one scan of the types of its items, level by level
    (C code too: no Python call per item), tells that it holds nothing else,
    without making a copy of it. Any other input is first made into such a
    value by :func:`_tag`, which writes what marshal would not write exactly
    (a bytearray, which it writes as bytes; a ``datetime``, which it refuses)
    as a tuple led by ``...``, which no input written as it is holds.

    Raises:
        Uncacheable: the value holds something no key represents (an
            arbitrary object), or is nested deeper than a key goes.
    """
    kind = type(value)
    if kind in _SCALARS:
        return _dumps(value, 2)
    if kind in _CONTAINERS:
        try:
            # First, as it also stops at a value holding itself, which the scan would not.
            data = _dumps(value, 2)
        except ValueError:  # something marshal refuses, or too deep: _tag decides
            pass
        else:
            try:
                if _writes_exactly(value):
                    return data
            except RecursionError:  # too deep for this scan: _tag, as deep, says so
                pass
    try:
        tagged = _tag(value)
        return _dumps(tagged, 2)
    except Uncacheable:
        raise
    except (RecursionError, ValueError) as err:  # ValueError: deeper than marshal goes
        raise Uncacheable("it is nested deeper than a cache key goes") from err


_dumps = marshal.dumps

#: The types marshal writes exactly, and the containers among them.
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
#: Sets too: since Python 3.11 marshal writes a set's items in the order of their
#: own marshal bytes, not the set's (which, for strs, changes with the hash seed).
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_CONTAINERS = _SEQUENCES | {dict}
_EXACT = _SCALARS | _CONTAINERS
#: Containers up to this size are looked through item by item (see :func:`_writes_exactly`).
_SMALL = 16
_is_dict = functools.partial(operator.is_, dict)


def _writes_exactly(value: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> bool:
    """Whether ``value`` holds only :data:`_EXACT` types, all the way down.

    A small container is looked through item by item, a larger one a level
    at a time: the items of every container of a level are chained and their
    types collected by C code (``set(map(type, ...))``), and only the
    containers among them make the next level. A list of 100,000 ints is one
    pass; a list of 10,000 tuples two.

    Raises:
        RecursionError: small containers nested about 1,000 deep.
    """
    if len(value) <= _SMALL:
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind not in _SCALARS and (kind not in _CONTAINERS or not _writes_exactly(item)):
                return False
        if type(value) is dict:
            for item in value:
                kind = type(item)
                if kind not in _SCALARS and (kind not in _CONTAINERS or not _writes_exactly(item)):
                    return False
        return True
    sequences: list[Any] = [value] if type(value) is not dict else []
    mappings: list[Any] = [value] if type(value) is dict else []
    while sequences or mappings:
        items: Any
        if len(sequences) == 1 and not mappings:
            items = sequences[0]
        else:
            items = list(itertools.chain.from_iterable(sequences))
            if mappings:
                items.extend(itertools.chain.from_iterable(mappings))  # the keys
                items.extend(itertools.chain.from_iterable(map(dict.values, mappings)))
        kinds = set(map(type, items))
        if kinds <= _SCALARS:
            return True
        if not kinds <= _EXACT:
            return False
        if kinds <= _SEQUENCES:
            sequences, mappings = items, []
        elif kinds == {dict}:
            sequences, mappings = [], items
        else:
            of = list(map(type, items))
            sequences = list(itertools.compress(items, map(_SEQUENCES.__contains__, of)))
            mappings = list(itertools.compress(items, map(_is_dict, of)))
    return True


#: What leads a tagged value (see :func:`key_bytes`): no value written as it is holds it.
_TAG = ...


def _tag(value: Any) -> Any:
    """``value`` as one that marshal writes exactly: ``value`` itself when it is one.

    What marshal would not write exactly is a tuple ``(..., kind, ...)``; a
    list, tuple or mapping that holds such a thing is made anew around it
    (a mapping as ``(..., "dict", key, value, key, value...)``, as tagged keys
    could compare equal where the values did not).

    Raises:
        Uncacheable: ``value`` holds something no key represents.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    tag = _TAGGERS.get(kind)
    if tag is not None:
        return tag(value)
    return _tag_other(value, kind)


def _tag_list(value: list[Any]) -> Any:
    items = _tag_items(value)
    return value if items is None else items


def _tag_tuple(value: tuple[Any, ...]) -> Any:
    items = _tag_items(value)
    return value if items is None else tuple(items)


def _tag_items(items: Any) -> list[Any] | None:
    """:func:`_tag` of each of ``items``; None when every item is its own."""
    if set(map(type, items)) <= _SCALARS:  # the usual case, in C
        return None
    scalars = _SCALARS
    tagged = [item if type(item) in scalars else _tag(item) for item in items]
    return None if all(map(operator.is_, tagged, items)) else tagged


def _tag_dict(value: dict[Any, Any]) -> Any:
    keys = _tag_items(value)
    values = _tag_items(value.values())
    if keys is None and values is None:
        return value
    pairs = zip(keys or value, values or value.values(), strict=True)
    return (_TAG, "dict", *itertools.chain.from_iterable(pairs))


def _tag_set(value: set[Any] | frozenset[Any]) -> Any:
    items = _tag_items(value)
    if items is None:  # marshal writes it exactly (see _SEQUENCES)
        return value
    # As marshal orders a set: by the items' bytes, not in the set's order (that
    # of strs changes with the hash seed). Tagged, the items may not be hashable.
    items.sort(key=_marshal_2)
    return (_TAG, "set" if type(value) is set else "frozenset", *items)


def _marshal_2(value: Any) -> bytes:
    return _dumps(value, 2)


def _tz(tzinfo: datetime.tzinfo | None, when: datetime.datetime | None) -> Any:
    """A time zone as a task sees it: its UTC offset then, and which zone it is."""
    if tzinfo is None:
        return None
    offset = tzinfo.utcoffset(when)
    shift = None if offset is None else (offset.days, offset.seconds, offset.microseconds)
    kind = type(tzinfo)
    if kind is sys.modules["datetime"].timezone:
        return (shift, "timezone", tzinfo.tzname(None))
    name = getattr(tzinfo, "key", None) or getattr(tzinfo, "zone", None) or tzinfo.tzname(when)
    return (shift, _path(kind), name if type(name) is str else None)


def _tag_datetime(value: datetime.datetime) -> Any:
    return (
        _TAG,
        "datetime",
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.fold,
        _tz(value.tzinfo, value),
    )


def _tag_date(value: datetime.date) -> Any:
    return (_TAG, "date", value.year, value.month, value.day)


def _tag_time(value: datetime.time) -> Any:
    return (
        _TAG,
        "time",
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.fold,
        _tz(value.tzinfo, None),
    )


def _tag_timedelta(value: datetime.timedelta) -> Any:
    return (_TAG, "timedelta", value.days, value.seconds, value.microseconds)


def _tag_decimal(value: decimal.Decimal) -> Any:
    # Its str is exact, and tells "1.0" from "1.00": equal, but a task sees (and
    # computes with) its exponent, so they are two inputs.
    return (_TAG, "decimal", str(value))


def _tag_path(value: pathlib.PurePath) -> Any:
    kind = type(value)
    # The standard classes by name: their module moved (pathlib._local in 3.13).
    name = kind.__qualname__ if kind in _PATHS else _path(kind)
    return (_TAG, "path", name, str(value))


_PATHS = frozenset(
    {
        pathlib.PurePath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        pathlib.Path,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    }
)


def _tag_upstream(value: UpstreamKey) -> Any:
    if value.valued:
        return (_TAG, "upstream valued", value.key, value.item, _tag(value.value))
    return (_TAG, "upstream", value.key, value.item)


#: Exact type -> what :func:`_tag` makes of a value of it.
_TAGGERS: dict[type, Callable[[Any], Any]] = {
    list: _tag_list,
    tuple: _tag_tuple,
    dict: _tag_dict,
    set: _tag_set,
    frozenset: _tag_set,
    bytearray: lambda value: (_TAG, "bytearray", bytes(value)),
    complex: lambda value: (_TAG, "complex", value.real, value.imag),
    UpstreamKey: _tag_upstream,
    **dict.fromkeys(_PATHS, _tag_path),
}


def _tag_uuid(value: uuid.UUID) -> Any:
    return (_TAG, "uuid", value.int)


#: Standard types by module and name, joined to :data:`_TAGGERS` when first seen:
#: importing their modules here would make the first run that caches pay for them.
_STANDARD: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("datetime", "datetime"): _tag_datetime,
    ("datetime", "date"): _tag_date,
    ("datetime", "time"): _tag_time,
    ("datetime", "timedelta"): _tag_timedelta,
    ("decimal", "Decimal"): _tag_decimal,
    ("uuid", "UUID"): _tag_uuid,
}


def _tag_other(value: Any, kind: type) -> Any:
    """:func:`_tag` of a value of a type not in :data:`_TAGGERS`."""
    module, name = kind.__module__, kind.__qualname__
    standard = _STANDARD.get((module, name))
    if standard is not None and getattr(sys.modules.get(module), name, None) is kind:
        _TAGGERS[kind] = standard
        return standard(value)
    if isinstance(value, enum.Enum):
        try:
            return (_TAG, "enum", _path(kind), _tag(value._value_))
        except Uncacheable:  # a member whose value is an object: its name tells it apart
            return (_TAG, "enum name", _path(kind), value._name_)
    numpy = sys.modules.get("numpy")  # never imported here: an input of it was made by it
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return _tag_numpy(value, kind, numpy)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            data = dump(mode="json")
        except Exception as err:  # a field pydantic cannot dump (an arbitrary type)
            raise Uncacheable(f"a {_path(kind)} cannot be part of a cache key: {err}") from err
        if not _dump_shows_all(value, kind, data):
            raise Uncacheable(
                f"a {_path(kind)} cannot be part of a cache key: its JSON dump does not show all of "
                "it (a SecretStr is written '**********', an excluded field not at all)"
            )
        return (_TAG, "model", _path(kind), _tag(data))
    if isinstance(value, pathlib.PurePath):
        return _tag_path(value)
    for base, plain in _BASES:
        if isinstance(value, base):  # a subclass: its class counts, and what it holds as the base
            return (_TAG, "subclass", _path(kind), _tag(plain(value)))
    raise Uncacheable(f"a {_path(kind)} cannot be part of a cache key")


def _dump_shows_all(value: Any, kind: type, data: Any) -> bool:
    """Whether a model's JSON dump ``data`` tells it from every other model of its class.

    A model counts by its dump, which hides some fields: two ``Credentials``
    of other passwords both dump ``"password": "**********"`` and shared a
    key, so a call with the wrong password was answered from the cache with
    what the right one got. The dump made into the model again must be equal
    to it. A dump pydantic does not take back as it is (fields by alias,
    say) cannot be checked this way, and counts by its dump as before.
    """
    validate = getattr(kind, "model_validate", None)
    if not callable(validate):
        return True
    try:
        again = validate(data)
    except Exception:
        return True
    try:
        return bool(again == value)
    except Exception:  # an == that fails: take no chance
        return False


def _tag_numpy(value: Any, kind: type, numpy: Any) -> Any:
    """A NumPy array by its dtype, shape and items; a NumPy scalar by its dtype and bytes."""
    if kind is not numpy.ndarray and not isinstance(value, numpy.generic):
        # A masked array, a matrix: what they hold besides the items would not count.
        raise Uncacheable(f"a {_path(kind)} cannot be part of a cache key")
    dtype = _tag(value.dtype.descr)
    if isinstance(value, numpy.generic):
        return (_TAG, "numpy scalar", dtype, value.tobytes())
    if value.dtype.hasobject:  # its bytes are addresses: its items count instead
        return (_TAG, "numpy array", dtype, value.shape, _tag(value.tolist()))
    # marshal writes a C-contiguous array's memory as bytes, without a copy of it.
    items = value if value.flags.c_contiguous else numpy.ascontiguousarray(value)
    return (_TAG, "numpy array", dtype, value.shape, items)


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


def call_key(identity: Mapping[str, Any], inputs: Mapping[str, Any], custom: Any = None) -> str:
    """The key of one call: hex SHA-256 of the identity and the inputs (or ``custom``).

    Raises:
        Uncacheable: an input no key represents; ``argument`` names it.
    """
    return keyed(key_bytes(identity if type(identity) is dict else dict(identity)), inputs, custom)


def keyed(identity: bytes, inputs: Mapping[str, Any], custom: Any = None) -> str:
    """:func:`call_key` for an identity already written by :func:`key_bytes` (a guard writes it once).

    The hash reads a head naming the arguments and the length of each
    input's bytes, then the bytes themselves (not one document holding them
    all, which would copy every input's bytes once more).

    Args:
        custom: what a task's ``cache_key`` hook returned, in place of the
            inputs (None: no hook). A str counts as it is; another value by
            :func:`_custom_part`.

    Raises:
        Uncacheable: an input no key represents; ``argument`` names it.
    """
    if custom is not None:
        if type(custom) is str:  # the usual hook's value: no more work than before
            return hashlib.sha256(_dumps((KEY_FORMAT, identity, "custom", custom), 2)).hexdigest()
        return hashlib.sha256(_dumps((KEY_FORMAT, identity, *_custom_part(custom)), 2)).hexdigest()
    names = sorted(inputs)
    try:
        datas = [key_bytes(inputs[name]) for name in names]
    except Uncacheable:
        for name in names:  # which one (the usual call has no such input: no try per input)
            try:
                key_bytes(inputs[name])
            except Uncacheable as err:
                raise Uncacheable(f"argument {name!r}: {err}", argument=name) from err
        raise
    digest = hashlib.sha256(_dumps((KEY_FORMAT, identity, "inputs", tuple(names), tuple(map(len, datas))), 2))
    for data in datas:
        digest.update(data)
    return digest.hexdigest()


def _custom_part(value: Any) -> tuple[str, bytes | str]:
    """A ``cache_key`` hook's value (not a str) as the key shows it, the same in every process.

    It went into the key as ``str(value)``, and a set of strs shows its items
    in an order that changes with the hash seed (``PYTHONHASHSEED``): each
    process had its own key, and a worker or the next run of a script missed
    every entry the first one stored. It is written as an input is, by
    :func:`key_bytes`: type-exactly (``5`` is not ``"5"``, a tuple not a
    list) and a set whatever order it was built in. A value no key
    represents (an arbitrary object) still counts by its ``str``, as before,
    which the hook must then keep the same from process to process.
    """
    try:
        return "custom value", key_bytes(value)
    except Uncacheable:
        return "custom text", str(value)


def encode_value(value: Any, *, plain_enums: bool = False) -> str:
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

    Args:
        value: the result.
        plain_enums: store a plain ``Enum`` member (neither a str nor an int)
            as its value. Only for a task whose result annotation declares
            the enum, which makes the member again from it: else the hit
            gives ``"red"`` where the call gave ``Colour.RED``, which is not
            equal to it (a str or int enum's value is).

    Raises:
        Uncacheable: JSON cannot represent it.
    """
    try:
        subclass = _plain_only(value, plain_enums)
        if subclass is not None:
            if issubclass(subclass, enum.Enum):
                raise Uncacheable(
                    f"it holds a {_path(subclass)} member, which would come back from the cache as "
                    f"its value; declare the enum in the result's annotation to cache it"
                )
            raise Uncacheable(
                f"it holds a {_path(subclass)}, which would come back from the cache as a plain "
                f"{_base_name(subclass)}; return a plain one, or a pydantic model"
            )
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


#: Results of these types are stored as they are; a subclass of one (but an enum) would come back as it.
_PLAIN_RESULTS = (str, int, float, list, tuple, dict, set, frozenset)


def _plain_only(value: Any, plain_enums: bool = False) -> type | None:
    """The first subclass of a JSON-able type in ``value`` (an enum member aside), or None.

    JSON keeps only the base: a named tuple came back from a hit as a plain
    tuple (a downstream ``made.x`` failed on the second run only), a
    ``defaultdict`` as a dict (``made["missing"]`` a KeyError), an
    ``OrderedDict`` without ``move_to_end``. Such a result is not stored, as
    one JSON cannot hold. An enum member is stored as its value, as
    documented (a result declared as the enum comes back as the member), but
    for a plain ``Enum``'s member unless ``plain_enums``: its value is not
    equal to it. A pydantic model is not looked into (validation rebuilds it).

    Raises:
        RecursionError: nested deeper than Python's recursion limit.
    """
    kind = type(value)
    if kind in _CONTAINERS:
        if _writes_exactly(value):  # the usual result: one scan of its types, in C
            return None
        items: Any = itertools.chain(value, value.values()) if kind is dict else value
        for item in items:
            found = _plain_only(item, plain_enums)
            if found is not None:
                return found
        return None
    if kind in _SCALARS:
        return None
    if isinstance(value, enum.Enum):
        return None if plain_enums or isinstance(value, str | int | float) else kind
    if not isinstance(value, _PLAIN_RESULTS):
        return None
    return kind


def _base_name(kind: type) -> str:
    return next(base.__name__ for base in _PLAIN_RESULTS if issubclass(kind, base))


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

#: Ints beyond this are stored in hex: Python refuses str() of ints of over 4,300 digits.
_BIG = 10**4000


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
    if isinstance(value, enum.Enum):  # a plain enum's member (see encode_value): its value
        return _tagged(value._value_)
    return _dump_default(value)


def _dump_default(value: Any) -> Any:
    """What JSON writes for ``value``, which it cannot write itself: a model's dump, an enum's value.

    A plain ``Enum`` member (neither a str nor an int; :func:`encode_value`
    lets one through only for a result declared as the enum) is stored as its
    value, as a str or int enum's is by JSON itself, and comes back as the
    member (see :func:`flowkit.typed.revive_result`).
    """
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, enum.Enum):
        return value._value_
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
