"""A task's error, kept so it can be inspected, stored, sent and raised again.

A :class:`Failure` is made on every task failure, so building one does only
what a stored record needs: the exception's message, its type names (the class
and all its bases) and its traceback text. Causes are walked lazily, the first
time someone asks.

A failure crosses process, storage and language boundaries only as the JSON
record returned by :meth:`Failure.to_dict`; nothing is ever pickled. After the
trip the live exception is gone (tracebacks hold stack frames, and importing
foreign exception classes by name would be unsafe), so
:meth:`Failure.reraise` raises :class:`~flowkit.exceptions.WrappedFailure`
around the failure instead.

Type names are spelt as TaskFlow spells them, since services read them: the
exception's class and its bases that are :class:`Exception` subclasses, each as
``"module.Name"``, built-ins bare (``["KeyError", "LookupError", "Exception"]``),
and an exception that is no :class:`Exception` (``KeyboardInterrupt``,
``SystemExit``) is refused with :class:`TypeError`, as TaskFlow refuses it.
``qualified=True`` opts in to flowkit's own form, which names every class
unambiguously (``"module.Qualname"``, ``builtins.`` included) down to
``builtins.BaseException`` and so can record any exception. :meth:`Failure.check`
matches either spelling, so records of both forms (and those stored by earlier
flowkit builds and Go workers, which wrote the qualified form) read alike.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeAlias

from flowkit import exceptions as exc

if TYPE_CHECKING:
    import weakref

__all__ = ["ExcInfo", "Failure"]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
"""The ``(type, value, traceback)`` triple that :func:`sys.exc_info` returns."""

_BUILTINS_PREFIX = "builtins."
_SCALARS = (str, int, bool, type(None))
# Nesting deeper than this in an exception argument is not worth keeping (and
# guards against self-referencing containers).
_MAX_ARG_DEPTH = 16
#: The longest cause chain ``to_dict`` writes nested, as TaskFlow does (at most
#: 2**6 records); a longer one is written flat, each cause once.
_NESTED_CHAIN_MAX = 6

# Class -> its type names. Weak keys so exception classes made on the fly can
# still be collected. Made by the first failure, so that a run that never fails
# does not import weakref (start-up time).
# The value is (qualified names, TaskFlow's names up to Exception, those or, for an
# exception that is no Exception, TaskFlow-spelt names down to BaseException).
_names_cache: weakref.WeakKeyDictionary[type, tuple[tuple[str, ...], ...]] | None = None

# Spellings of a name, for check(): TaskFlow's form and the qualified one.
_QUALIFIED, _TASKFLOW, _TASKFLOW_BASE = 0, 1, 2


def _class_name(cls: type) -> str:
    """``module.Qualname`` (flowkit's qualified form)."""
    module = getattr(cls, "__module__", None)
    return f"{module}.{cls.__qualname__}" if module else cls.__qualname__


def _taskflow_name(cls: type) -> str:
    """``module.Name``, a built-in bare: the spelling TaskFlow writes and compares."""
    module = getattr(cls, "__module__", None)
    if not module or module == "builtins":
        return cls.__name__
    return f"{module}.{cls.__name__}"


def _linked(chain: tuple[Failure, ...]) -> bool:
    """Whether each failure of ``chain`` has the rest of it (the same objects) as its causes.

    So are the causes of a live failure (one walk down the exception chain) and
    of a record written flat; a record read back in TaskFlow's nested form has
    copies instead, and is compared and written cause by cause.
    """
    size = len(chain)
    for index, cause in enumerate(chain):
        rest = cause._causes
        if rest is None or len(rest) != size - index - 1:
            return False
        if any(mine is not theirs for mine, theirs in zip(rest, chain[index + 1 :], strict=True)):
            return False
    return True


def _type_names(cls: type[BaseException], form: int) -> tuple[str, ...]:
    global _names_cache  # noqa: PLW0603 - made on first use (see above)
    if _names_cache is None:
        import weakref

        _names_cache = weakref.WeakKeyDictionary()
    forms = _names_cache.get(cls)
    if forms is None:
        bases = [base for base in cls.__mro__ if base is not object]
        taskflow = tuple(_taskflow_name(base) for base in bases if issubclass(base, Exception))
        # An Exception ends at Exception in every TaskFlow-spelt form; only one that
        # is no Exception (an interrupt) needs the names down to BaseException.
        forms = (
            tuple(_class_name(base) for base in bases),
            taskflow,
            taskflow or tuple(_taskflow_name(base) for base in bases),
        )
        _names_cache[cls] = forms
    return forms[form]


def _spellings(name: str) -> tuple[str, ...]:
    """The names a record may use for the class ``name`` spells (a built-in: both)."""
    if name.startswith(_BUILTINS_PREFIX):
        return (name, name[len(_BUILTINS_PREFIX) :])
    if "." not in name:
        return (name, _BUILTINS_PREFIX + name)
    return (name,)


def _same_exc_info(first: ExcInfo | None, second: ExcInfo | None) -> bool:
    """Whether two live triples hold the same error: type, text, repr and traceback text."""
    if first is second:
        return True
    if first is None or second is None:
        return False
    if first[0] is not second[0] or type(first[1]) is not type(second[1]):
        return False
    if _safe_str(first[1]) != _safe_str(second[1]) or _safe_repr(first[1]) != _safe_repr(second[1]):
        return False
    if first[2] is second[2]:
        return True
    import traceback

    return traceback.format_tb(first[2]) == traceback.format_tb(second[2])


def _json_safe(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """Return ``(ok, copy)``: a JSON-round-trippable copy of ``value`` if it has one."""
    kind = type(value)
    if kind in _SCALARS:
        return True, value
    if kind is float:
        # NaN and infinities are not JSON; json.dumps would emit non-standard tokens.
        return math.isfinite(value), value
    if depth >= _MAX_ARG_DEPTH:
        return False, None
    if kind is list or kind is tuple:
        items = []
        for item in value:
            ok, item_copy = _json_safe(item, depth + 1)
            if not ok:
                return False, None
            items.append(item_copy)
        return True, items
    if kind is dict:
        mapping = {}
        for key, item in value.items():
            if type(key) is not str:
                return False, None
            ok, item_copy = _json_safe(item, depth + 1)
            if not ok:
                return False, None
            mapping[key] = item_copy
        return True, mapping
    return False, None


def _safe_args(args: Iterable[Any]) -> tuple[Any, ...]:
    kept = []
    for arg in args:
        if type(arg) is str:  # the usual case, kept fast
            kept.append(arg)
            continue
        ok, arg_copy = _json_safe(arg)
        if ok:
            kept.append(arg_copy)
    return tuple(kept)


def _bad(where: str, field: str, problem: str) -> exc.InvalidFormat:
    # TaskFlow's sentence first (its detail is a JSON schema's, flowkit names the field).
    return exc.InvalidFormat(f"Failure data not of the expected format: field '{where}{field}' {problem}")


def _safe_str(value: BaseException) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not hide the original error
        return f"<unprintable {type(value).__name__} object>"


def _safe_repr(value: BaseException) -> str:
    try:
        return repr(value)
    except Exception:  # as _safe_str
        return f"<unrepresentable {type(value).__name__} object>"


class Failure:
    """An immutable record of an exception: its types, message and traceback.

    Args:
        exc_info: a ``(type, value, traceback)`` triple; when omitted (and no
            record fields are given) the exception being handled right now is
            captured.
        qualified: name the captured exception's types in flowkit's qualified
            form (``builtins.RuntimeError`` ... ``builtins.BaseException``),
            which also records exceptions that are no :class:`Exception`
            (``KeyboardInterrupt``, ``SystemExit``). By default they are named
            as TaskFlow names them, and those are refused, as TaskFlow refuses
            them (see the module docstring).
        exception_str: record form: the exception's message.
        traceback_str: record form: the formatted traceback.
        exc_type_names: record form: type names, most specific first.
        exc_args: record form: the exception's (JSON-safe) arguments.
        causes: record form: failures this one was caused by.

    Raises:
        ValueError: ``exc_info`` is not a ``(type, value, traceback)`` triple.
        TypeError: nothing to capture (no exception is being handled), the
            exception is no :class:`Exception` and ``qualified`` is false, or
            record fields given without ``exception_str``.
    """

    DICT_VERSION: ClassVar[int] = 1
    """Version written to, and required from, :meth:`to_dict` records."""

    BASE_EXCEPTIONS: ClassVar[tuple[str, ...]] = (
        "builtins.BaseException",
        "builtins.Exception",
        "BaseException",
        "Exception",
    )
    """Names a valid record's type list may end with (bare ones come from TaskFlow)."""

    __slots__ = ("_causes", "_exc_args", "_exc_info", "_exc_type_names", "_exception_str", "_traceback_str")

    _causes: tuple[Failure, ...] | None
    _exc_args: tuple[Any, ...]
    _exc_info: ExcInfo | None
    _exc_type_names: tuple[str, ...]
    _exception_str: str
    _traceback_str: str

    def __init__(
        self,
        exc_info: Sequence[Any] | None = None,
        *,
        qualified: bool = False,
        exception_str: str | None = None,
        traceback_str: str | None = None,
        exc_type_names: Iterable[str] | None = None,
        exc_args: Iterable[Any] | None = None,
        causes: Iterable[Failure] | None = None,
        **unexpected: Any,
    ) -> None:
        if unexpected:
            names = ", ".join(unexpected)
            raise TypeError(f"Failure.__init__ got unexpected keyword argument(s): {names}")
        self._causes = None if causes is None else tuple(causes)
        if exception_str is None:
            if traceback_str is not None or exc_type_names is not None or exc_args is not None:
                raise TypeError("a Failure built from record fields needs exception_str")
            self._capture(
                sys.exc_info() if exc_info is None else exc_info, _QUALIFIED if qualified else _TASKFLOW
            )
            return
        # Record form, as rebuilt by from_dict (a live exc_info may ride along).
        self._exc_info = None if exc_info is None else self._checked_exc_info(exc_info)
        self._exception_str = exception_str
        self._traceback_str = traceback_str or ""
        self._exc_type_names = tuple(exc_type_names or ())
        self._exc_args = tuple(exc_args or ())
        if self._causes is None:
            self._causes = ()

    @staticmethod
    def _checked_exc_info(exc_info: Sequence[Any]) -> ExcInfo:
        if len(exc_info) != 3:
            raise ValueError(f"exc_info must be a (type, value, traceback) triple, not {exc_info!r}")
        value = exc_info[1]
        # TypeError with TaskFlow's opening words, as TaskFlow raises for both.
        if value is None:
            raise TypeError(
                f"Invalid exception type '{exc_info[0]}' ({type(exc_info[0])}): no exception to capture: "
                "call Failure() inside an except block, or use Failure.from_exception(exc)"
            )
        if not isinstance(value, BaseException):
            raise TypeError(
                f"Invalid exception type '{exc_info[0]}' ({type(exc_info[0])}): "
                f"exc_info must hold an exception, not {value!r}"
            )
        return (type(value), value, exc_info[2])

    def _capture(self, exc_info: Sequence[Any], form: int) -> None:
        import traceback  # not at module level: a run that never fails never needs it

        info = self._checked_exc_info(exc_info)
        names = _type_names(info[0], form)
        if not names:
            # TaskFlow's refusal, worded as TaskFlow words it, then what to do instead.
            raise TypeError(
                f"Invalid exception type '{info[0]}' ({type(info[0])}): {info[0].__name__} is no "
                "Exception subclass, which TaskFlow's Failure refuses; pass qualified=True to record it"
            )
        value, tb = info[1], info[2]
        self._exc_info = info
        self._exc_type_names = names
        self._exception_str = _safe_str(value)
        # Eager on purpose: the record needs it and the frames' source may change later.
        self._traceback_str = "".join(traceback.format_tb(tb)) if tb is not None else ""
        try:
            self._exc_args = tuple(getattr(value, "args", ()))
        except Exception:  # an exception whose args are not iterable: none to keep
            self._exc_args = ()

    @classmethod
    def from_exception(cls, exception: BaseException, *, qualified: bool = False) -> Failure:
        """Build a failure from an exception object (raised or not); ``qualified`` as for the class."""
        return cls((type(exception), exception, exception.__traceback__), qualified=qualified)

    @classmethod
    def _of_any(cls, exception: BaseException | None = None) -> Failure:
        """Capture any exception, an interrupt or a cancellation too, in TaskFlow's spelling.

        For flowkit's own machinery, which must hand such an exception on as a
        failure (an asyncio task's own ``CancelledError``, a remote task's
        ``SystemExit``): its names run down to ``BaseException``, which TaskFlow's
        records may end with, so any reader takes the record. An
        :class:`Exception` gets exactly the default names.
        """
        info = sys.exc_info() if exception is None else (type(exception), exception, exception.__traceback__)
        failure = cls.__new__(cls)
        failure._causes = None
        failure._capture(info, _TASKFLOW_BASE)
        return failure

    # -- what happened -----------------------------------------------------

    @property
    def exception(self) -> BaseException | None:
        """The live exception, or ``None`` once the failure was deserialized."""
        return self._exc_info[1] if self._exc_info is not None else None

    @property
    def exc_info(self) -> ExcInfo | None:
        """The live ``(type, value, traceback)`` triple, or ``None`` after deserialization."""
        return self._exc_info

    @property
    def exception_str(self) -> str:
        """The exception's message, ``str(exception)``."""
        return self._exception_str

    @property
    def exception_args(self) -> tuple[Any, ...]:
        """The exception's arguments, as given to it (TaskFlow's).

        Only those that survive JSON are written to the record (:meth:`to_dict`),
        so a failure read back has those alone.
        """
        return self._exc_args

    @property
    def traceback_str(self) -> str:
        """The formatted traceback (empty when the exception was never raised)."""
        return self._traceback_str

    @property
    def exception_type_names(self) -> tuple[str, ...]:
        """Names of the exception's class and its bases, most specific first, as recorded."""
        return self._exc_type_names

    def __iter__(self) -> Iterator[str]:
        """Iterate over :attr:`exception_type_names` (TaskFlow's way to read them)."""
        return iter(self._exc_type_names)

    @property
    def causes(self) -> tuple[Failure, ...]:
        """Failures that led to this one, nearest first (this one excluded).

        Follows ``__cause__`` (explicit ``raise ... from``), else ``__context__``
        (unless suppressed), as far as the chain goes. Each cause has its own,
        shorter, ``causes``.
        """
        if self._causes is None:
            chain = tuple(self._walk_causes())
            # Each cause's own causes are the rest of this chain, handed down rather
            # than walked again from its exception: a chain that loops (``a from b``,
            # ``b from a``) would otherwise start anew at every level, and recording
            # the failure (to_dict, pformat) would recurse for ever.
            for index, cause in enumerate(chain):
                cause._causes = chain[index + 1 :]
            self._causes = chain
        return self._causes

    def _walk_causes(self) -> Iterator[Failure]:
        current = self.exception
        seen = {id(current)}
        # Causes are named as this failure is (a cause may be any exception, so the
        # TaskFlow-spelt form runs down to BaseException where it must).
        names = self._exc_type_names
        form = _QUALIFIED if names and names[-1] == "builtins.BaseException" else _TASKFLOW_BASE
        while current is not None:
            candidates = [current.__cause__]
            if not current.__suppress_context__:
                candidates.append(current.__context__)
            current = next((c for c in candidates if c is not None and id(c) not in seen), None)
            if current is not None:
                seen.add(id(current))
                cause = Failure.__new__(Failure)
                cause._causes = None
                cause._capture((type(current), current, current.__traceback__), form)
                yield cause

    def check(self, *exc_classes: type[BaseException] | str) -> type[BaseException] | str | None:
        """Return the first of ``exc_classes`` this failure is an instance of.

        Works on deserialized failures too, since it compares type names.

        Args:
            exc_classes: exception classes, or their names in either spelling
                (``"ValueError"`` or ``"builtins.ValueError"``,
                ``"module.Name"``).

        Returns:
            The matching argument, or ``None``.
        """
        names = self._exc_type_names
        for wanted in exc_classes:
            if isinstance(wanted, type):
                # Both forms, so a record written either way (TaskFlow's, flowkit's
                # default, qualified=True, an older Go worker's) matches the class.
                spelt = {*_spellings(_class_name(wanted)), *_spellings(_taskflow_name(wanted))}
            else:
                spelt = set(_spellings(wanted))
            if not spelt.isdisjoint(names):
                return wanted
        return None

    # -- comparing ---------------------------------------------------------

    def _same_record(self, other: Failure, causes_match: bool, own_only: bool = False) -> bool:
        if self is other:
            return True
        # A record compared with a live failure: its arguments are those JSON kept.
        args_equal = (
            _safe_args(self._exc_args) == _safe_args(other._exc_args)
            if causes_match
            else self._exc_args == other._exc_args
        )
        if not (
            self._exc_type_names == other._exc_type_names
            and args_equal
            and self._exception_str == other._exception_str
            and self._traceback_str == other._traceback_str
        ):
            return False
        if own_only:
            return True
        mine, theirs = self.causes, other.causes
        if len(mine) != len(theirs):
            return False
        if _linked(mine) and _linked(theirs):
            # Each cause's causes are the rest of the same list on both sides: its own
            # fields are all that is left to compare. Recursing would compare every
            # suffix again, in time doubling with each cause of the chain.
            return all(
                a._same_record(b, causes_match, own_only=True)
                and (causes_match or _same_exc_info(a._exc_info, b._exc_info))
                for a, b in zip(mine, theirs, strict=True)
            )
        if not causes_match:
            return mine == theirs
        return all(a.matches(b) for a, b in zip(mine, theirs, strict=True))

    def matches(self, other: object) -> bool:
        """Whether ``other`` is a failure of the same record, live or read back.

        Compares types, arguments, message, traceback text and causes. Two live
        failures must also be equal (``==``), as in TaskFlow; a failure read back
        from storage or from a worker matches the live one it was written from
        (causes included, which TaskFlow's does not manage).
        """
        if not isinstance(other, Failure):
            return False
        if self._exc_info is None or other._exc_info is None:
            return self._same_record(other, causes_match=True)
        return self == other

    def __eq__(self, other: object) -> bool:
        """TaskFlow's equality: the same record *and* the same live exception, or both read back.

        So a live failure is not equal to its own JSON round trip (it *matches*
        it: :meth:`matches`), while two captures of one error are equal.
        """
        if not isinstance(other, Failure):
            return NotImplemented
        return self._same_record(other, causes_match=False) and _same_exc_info(
            self._exc_info, other._exc_info
        )

    # Equal failures may hold different live exceptions; no sensible hash exists.
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    # -- raising -----------------------------------------------------------

    def reraise(self) -> NoReturn:
        """Raise the captured exception again, with its original traceback.

        Raises:
            BaseException: the live exception itself, when there is one.
            WrappedFailure: around this failure, once deserialized.
        """
        if self._exc_info is None:
            raise exc.WrappedFailure([self])
        _, value, tb = self._exc_info
        if value.__traceback__ is not tb:
            raise value.with_traceback(tb)
        raise value

    @staticmethod
    def reraise_if_any(failures: Iterable[Failure]) -> None:
        """Raise for ``failures``: nothing if none, the one itself, or all wrapped.

        Raises:
            BaseException: the single failure's exception (see :meth:`reraise`).
            WrappedFailure: when there are several.
        """
        found = failures if isinstance(failures, list | tuple) else list(failures)
        if len(found) == 1:
            found[0].reraise()
        elif found:
            raise exc.WrappedFailure(found)

    # -- records -----------------------------------------------------------

    def to_dict(self, include_args: bool = True) -> dict[str, Any]:
        """Return a JSON-serialisable record of this failure (and its causes).

        The dict is TaskFlow's: ``exc_args`` a tuple (the exception's
        arguments), the rest lists, strings and the version; JSON writes the
        tuple as the array every reader expects.

        Args:
            include_args: whether to keep the exception's arguments.
        """
        chain = self.causes
        if len(chain) > _NESTED_CHAIN_MAX and _linked(chain):
            # A long chain (each cause's causes are the rest of it) is written once,
            # flat: written cause by cause with their own causes, as TaskFlow does,
            # the record doubles with each cause (a chain of 30 never finished).
            # from_dict links such a list back into a chain.
            causes = [cause._own_dict(include_args, []) for cause in chain]
        else:
            causes = [cause.to_dict(include_args) for cause in chain]
        return self._own_dict(include_args, causes)

    def _own_dict(self, include_args: bool, causes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "version": self.DICT_VERSION,
            "exception_str": self._exception_str,
            "traceback_str": self._traceback_str,
            "exc_type_names": list(self._exc_type_names),
            "exc_args": _safe_args(self._exc_args) if include_args else (),
            "causes": causes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        """Rebuild a failure from a :meth:`to_dict` record.

        Raises:
            InvalidFormat: the record is malformed (the message names the field).
            ValueError: the record's ``version`` is missing or unsupported.
        """
        # The version first, as TaskFlow does: a dict that is no failure record
        # at all (no version) is a ValueError there, and callers catch that.
        version = data.get("version") if isinstance(data, Mapping) else None
        if version != cls.DICT_VERSION:
            raise ValueError(
                f"Invalid dict version of failure object: {version!r} (expected {cls.DICT_VERSION})"
            )
        cls.validate(data)
        return cls._from_valid(data)

    @classmethod
    def _from_valid(cls, data: Mapping[str, Any]) -> Failure:
        records = data.get("causes") or ()
        causes = [cls._from_valid(cause) for cause in records]
        if len(causes) > 1 and not any(record.get("causes") for record in records):
            # A chain written flat (to_dict's form): each cause was caused by the next.
            for index, cause in enumerate(causes):
                cause._causes = tuple(causes[index + 1 :])
        return cls(
            exception_str=data["exception_str"],
            traceback_str=data["traceback_str"],
            exc_type_names=data["exc_type_names"],
            exc_args=data.get("exc_args") or (),
            causes=causes,
        )

    @classmethod
    def validate(cls, data: object) -> None:
        """Check that ``data`` has the shape of a failure record.

        Raises:
            InvalidFormat: naming the first bad field, e.g. ``causes[0].exc_type_names``.
        """
        pending: list[tuple[str, object]] = [("", data)]
        while pending:
            where, record = pending.pop()
            if not isinstance(record, Mapping):
                raise exc.InvalidFormat(f"failure record '{where or '.'}' must be a mapping")
            for field in ("exception_str", "traceback_str"):
                if field not in record:
                    raise _bad(where, field, "is missing")
                if not isinstance(record[field], str):
                    raise _bad(where, field, "must be a string")
            names = record.get("exc_type_names")
            if not isinstance(names, list | tuple) or not names:
                raise _bad(where, "exc_type_names", "must be a non-empty list")
            if not all(isinstance(name, str) for name in names):
                raise _bad(where, "exc_type_names", "must hold only strings")
            if names[-1] not in cls.BASE_EXCEPTIONS:
                raise _bad(where, "exc_type_names", f"must end with one of {cls.BASE_EXCEPTIONS}")
            version = record.get("version", 0)
            # An integral float is a JSON integer (TaskFlow's schema takes 1.0): a
            # worker whose JSON library writes 1.0 sends the same record.
            integral = type(version) is int or (type(version) is float and version.is_integer())
            if not integral or version < 0:
                raise _bad(where, "version", "must be a non-negative integer")
            if not isinstance(record.get("exc_args", []), list | tuple):
                raise _bad(where, "exc_args", "must be a list")
            causes = record.get("causes", [])
            if not isinstance(causes, list | tuple):
                raise _bad(where, "causes", "must be a list")
            pending.extend((f"{where}causes[{i}].", cause) for i, cause in enumerate(causes))

    # -- display and copies --------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Pickling keeps the record and drops the live exception (tracebacks cannot be
        # pickled), as TaskFlow does; flowkit itself never pickles failures.
        state = {name: getattr(self, name) for name in self.__slots__ if hasattr(self, name)}
        state["_exc_info"] = None
        state["_exc_args"] = _safe_args(self._exc_args)  # what the record keeps, and pickles
        state["_causes"] = tuple(self.causes)  # worked out from the live exception, if not yet
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def copy(self) -> Failure:
        """Return an equal failure sharing the same (immutable) state and live exception."""
        clone = Failure.__new__(Failure)
        clone._exc_info = self._exc_info
        clone._exception_str = self._exception_str
        clone._traceback_str = self._traceback_str
        clone._exc_type_names = self._exc_type_names
        clone._exc_args = self._exc_args
        clone._causes = self._causes
        return clone

    def pformat(self, traceback: bool = False) -> str:
        """Format as ``Failure: Type: message``, optionally with the traceback."""
        name = self._exc_type_names[0] if self._exc_type_names else ""
        name = name.removeprefix(_BUILTINS_PREFIX)
        text = f"Failure: {name}: {self._exception_str}" if name else f"Failure: {self._exception_str}"
        if not traceback:
            return text
        tb_text = self._traceback_str.rstrip()
        if not tb_text:
            return f"{text}\nTraceback not available."
        return f"{text}\nTraceback (most recent call last):\n{tb_text}"

    def __str__(self) -> str:
        return self.pformat()

    # No __repr__ of its own: TaskFlow's Failure has the default one, and it shows in
    # the DynamicLoggingListener's lines (a retry's history) that log scrapers read;
    # str() and pformat() say what failed.
