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

Type names are fully qualified, ``"module.Qualname"``, from the exception's
class down to ``builtins.BaseException``. TaskFlow writes built-in names bare
(``"ValueError"``); :meth:`Failure.check` accepts both spellings.
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

# Class -> its type names. Weak keys so exception classes made on the fly can
# still be collected. Made by the first failure, so that a run that never fails
# does not import weakref (start-up time).
_names_cache: weakref.WeakKeyDictionary[type, tuple[str, ...]] | None = None


def _class_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    return f"{module}.{cls.__qualname__}" if module else cls.__qualname__


def _type_names(cls: type[BaseException]) -> tuple[str, ...]:
    global _names_cache  # noqa: PLW0603 - made on first use (see above)
    if _names_cache is None:
        import weakref

        _names_cache = weakref.WeakKeyDictionary()
    names = _names_cache.get(cls)
    if names is None:
        names = tuple(_class_name(base) for base in cls.__mro__ if base is not object)
        _names_cache[cls] = names
    return names


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
    return exc.InvalidFormat(f"failure record field '{where}{field}' {problem}")


def _safe_str(value: BaseException) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not hide the original error
        return f"<unprintable {type(value).__name__} object>"


class Failure:
    """An immutable record of an exception: its types, message and traceback.

    Args:
        exc_info: a ``(type, value, traceback)`` triple; when omitted (and no
            record fields are given) the exception being handled right now is
            captured.
        exception_str: record form: the exception's message.
        traceback_str: record form: the formatted traceback.
        exc_type_names: record form: fully qualified type names, most
            specific first.
        exc_args: record form: the exception's (JSON-safe) arguments.
        causes: record form: failures this one was caused by.

    Raises:
        ValueError: nothing to capture (no exception is being handled), or
            ``exc_info`` is not a triple with an exception in it.
        TypeError: record fields given without ``exception_str``.
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
            self._capture(sys.exc_info() if exc_info is None else exc_info)
            return
        # Record form, as rebuilt by from_dict (a live exc_info may ride along).
        self._exc_info = None if exc_info is None else self._checked_exc_info(exc_info)
        self._exception_str = exception_str
        self._traceback_str = traceback_str or ""
        self._exc_type_names = tuple(exc_type_names or ())
        self._exc_args = _safe_args(exc_args or ())
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

    def _capture(self, exc_info: Sequence[Any]) -> None:
        import traceback  # not at module level: a run that never fails never needs it

        info = self._checked_exc_info(exc_info)
        value, tb = info[1], info[2]
        self._exc_info = info
        self._exc_type_names = _type_names(info[0])
        self._exception_str = _safe_str(value)
        # Eager on purpose: the record needs it and the frames' source may change later.
        self._traceback_str = "".join(traceback.format_tb(tb)) if tb is not None else ""
        self._exc_args = _safe_args(getattr(value, "args", ()))

    @classmethod
    def from_exception(cls, exception: BaseException) -> Failure:
        """Build a failure from an exception object (raised or not)."""
        return cls((type(exception), exception, exception.__traceback__))

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
        """The exception's arguments that survive JSON (others are dropped)."""
        return self._exc_args

    @property
    def traceback_str(self) -> str:
        """The formatted traceback (empty when the exception was never raised)."""
        return self._traceback_str

    @property
    def exception_type_names(self) -> tuple[str, ...]:
        """Fully qualified names of the exception's class and its bases, most specific first."""
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
            self._causes = tuple(self._walk_causes())
        return self._causes

    def _walk_causes(self) -> Iterator[Failure]:
        current = self.exception
        seen = {id(current)}
        while current is not None:
            candidates = [current.__cause__]
            if not current.__suppress_context__:
                candidates.append(current.__context__)
            current = next((c for c in candidates if c is not None and id(c) not in seen), None)
            if current is not None:
                seen.add(id(current))
                yield Failure.from_exception(current)

    def check(self, *exc_classes: type[BaseException] | str) -> type[BaseException] | str | None:
        """Return the first of ``exc_classes`` this failure is an instance of.

        Works on deserialized failures too, since it compares type names.

        Args:
            exc_classes: exception classes, or their fully qualified names
                (built-ins may also be named bare, ``"ValueError"``).

        Returns:
            The matching argument, or ``None``.
        """
        names = self._exc_type_names
        for wanted in exc_classes:
            name = _class_name(wanted) if isinstance(wanted, type) else wanted
            if name in names:
                return wanted
            # Built-ins match with or without their prefix, so records written by
            # TaskFlow (bare names) and by flowkit (``builtins.`` names) both work.
            if name.startswith(_BUILTINS_PREFIX):
                if name[len(_BUILTINS_PREFIX) :] in names:
                    return wanted
            elif "." not in name and _BUILTINS_PREFIX + name in names:
                return wanted
        return None

    # -- comparing ---------------------------------------------------------

    def matches(self, other: object) -> bool:
        """Whether ``other`` is a failure with the same types, message and traceback."""
        if not isinstance(other, Failure):
            return False
        return self is other or (
            self._exc_type_names == other._exc_type_names
            and self._exception_str == other._exception_str
            and self._traceback_str == other._traceback_str
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failure):
            return NotImplemented
        return self.matches(other)

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

        Args:
            include_args: whether to keep the exception's arguments.
        """
        return {
            "version": self.DICT_VERSION,
            "exception_str": self._exception_str,
            "traceback_str": self._traceback_str,
            "exc_type_names": list(self._exc_type_names),
            "exc_args": list(self._exc_args) if include_args else [],
            "causes": [cause.to_dict(include_args) for cause in self.causes],
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
        return cls(
            exception_str=data["exception_str"],
            traceback_str=data["traceback_str"],
            exc_type_names=data["exc_type_names"],
            exc_args=data.get("exc_args") or (),
            causes=[cls._from_valid(cause) for cause in data.get("causes") or ()],
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
            if type(version) is not int or version < 0:
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

    def __repr__(self) -> str:
        name = self._exc_type_names[0] if self._exc_type_names else "?"
        live = "" if self._exc_info is not None else ", deserialized"
        return f"<Failure {name}: {self._exception_str!r}{live}>"
