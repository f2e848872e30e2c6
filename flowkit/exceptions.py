"""Every error flowkit raises on purpose, under one root.

The tree (names follow TaskFlow's so ``except`` clauses migrate unchanged)::

    Exception
     +-- TaskFlowException (alias FlowkitError)   root of flowkit's own errors
     |    +-- StorageFailure                    a backend could not read or write
     |    |    +-- StoreNotUpgraded             a store without its collections or schema
     |    |    |    +-- StoreMissing            no store at all (a backend not writable creates none)
     |    |    +-- StoreReadOnly                a write through a backend opened writable=False
     |    +-- ConductorFailure
     |    +-- JobFailure
     |    |    +-- UnclaimableJob
     |    +-- ExecutionFailure                  running went wrong (not a task's error)
     |    |    +-- RequestTimeout
     |    |    +-- TaskTimeout (TimeoutError)   a task ran past its ``timeout``
     |    |    +-- InvalidState                 a forbidden state transition
     |    |    +-- SpawnLimitExceeded           dynamic sub-flows nested or grew too far
     |    |    +-- LoopExhausted                a loop ran out of iterations
     |    +-- DependencyFailure                 symbols or links cannot be satisfied
     |    |    +-- AmbiguousDependency          two providers, no way to choose
     |    |    +-- MissingDependencies          nobody provides a required symbol
     |    |    +-- TypeMismatch (TypeError)     a provider's type cannot satisfy a consumer's
     |    +-- CompilationFailure                a flow cannot be turned into a graph
     |    |    +-- InvalidFlowItem (TypeError)  something not an atom or flow was added
     |    |    |    +-- InvalidGraphFlowItem (AttributeError)  the same, in a graph flow
     |    +-- IncompatibleVersion
     |    +-- Duplicate                         two atoms share a name
     |    +-- NotFound
     |    |    +-- UnknownEngine (ValueError)   no engine of that name
     |    +-- Empty
     |    +-- MultipleChoices
     |    +-- InvalidFormat                     a value has the wrong shape
     |    |    +-- InvalidEngineOption (TypeError)
     |    |    +-- InvalidAtomOption (ValueError)  a task's timeout, concurrency key or retry
     |    |    +-- ResultUnpackError            a result does not fit ``provides``
     |    |    +-- InvalidResult (TypeError)    a result is not of its declared type
     |    +-- FlowSpecError (ValueError)        a declarative flow spec is wrong
     |    +-- DisallowedAccess
     +-- WrappedFailure                         several failures at once
    NotImplementedError
     +-- NotImplementedError                    flowkit's own, to tell it apart

Context travels in keyword attributes (``MissingDependencies(...).atom``,
``.missing``) so tests and callers never parse messages, and causes use Python's
native chaining (``raise ... from exc``); the ``cause`` argument kept for
TaskFlow compatibility simply sets ``__cause__``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from flowkit.types.failure import Failure

__all__ = [
    "AmbiguousDependency",
    "CompilationFailure",
    "ConductorFailure",
    "DependencyFailure",
    "DisallowedAccess",
    "Duplicate",
    "Empty",
    "ExecutionFailure",
    "FlowSpecError",
    "FlowkitError",
    "IncompatibleVersion",
    "InvalidAtomOption",
    "InvalidEngineOption",
    "InvalidFlowItem",
    "InvalidFormat",
    "InvalidGraphFlowItem",
    "InvalidResult",
    "InvalidState",
    "JobFailure",
    "LoopExhausted",
    "MissingDependencies",
    "MultipleChoices",
    "NotFound",
    "NotImplementedError",
    "RequestTimeout",
    "ResultUnpackError",
    "SpawnLimitExceeded",
    "StorageFailure",
    "StoreMissing",
    "StoreNotUpgraded",
    "StoreReadOnly",
    "TaskFlowException",
    "TaskTimeout",
    "TypeMismatch",
    "UnclaimableJob",
    "UnknownEngine",
    "WrappedFailure",
    "raise_with_cause",
]


class TaskFlowException(Exception):
    """Root of the errors flowkit raises itself.

    Args:
        message: what went wrong, for people.
        cause: an optional exception that led here; stored as ``__cause__`` so
            tracebacks show the chain the normal Python way.
    """

    #: True for errors whose message already quotes their cause: ``str()`` then
    #: leaves the cause out instead of saying it twice (it stays ``__cause__``).
    #: Set on a class whose messages always quote it, or on one error by
    #: :func:`quoting_cause`.
    _message_quotes_cause = False

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        """The exception this one was raised from, if any."""
        return self.__cause__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        # TaskFlow's str() is the whole chain: the message, then each cause indented.
        return self.pformat()

    def pformat(self, indent: int = 2, indent_text: str = " ", show_root_class: bool = False) -> str:
        """Format this error and its chain of causes, one indented line each."""
        import traceback  # only formatting needs it (start-up time)

        if indent < 0:
            raise ValueError(f"indent must be zero or more, not {indent}")
        lines = [(f"{type(self).__name__}: " if show_root_class else "") + self.message]
        depth = indent
        seen: set[int] = {id(self)}
        cause = None if self._message_quotes_cause else self.__cause__
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            text = "".join(traceback.format_exception_only(type(cause), cause)).rstrip("\n")
            if isinstance(cause, TaskFlowException):
                text = f"{type(cause).__name__}: {cause.message}"
            lines.extend(indent_text * depth + part for part in text.split("\n"))
            if not isinstance(cause, TaskFlowException):
                break
            depth += indent
            cause = cause.__cause__
        return "\n".join(lines)


FlowkitError = TaskFlowException
"""flowkit's own name for the root error; identical to :class:`TaskFlowException`."""

_Error = TypeVar("_Error", bound=TaskFlowException)


def quoting_cause(error: _Error) -> _Error:
    """Return ``error``, marked as quoting its cause's words in its own message.

    For flowkit's code that raises ``error`` from the exception it quotes
    (``raise quoting_cause(InvalidFormat(f"...: {err}")) from err``): ``str()``
    then says those words once, in the message, rather than again on the line
    TaskFlow's format adds for each cause. The cause stays chained, for
    tracebacks and ``.cause``. Not part of the public API.
    """
    error._message_quotes_cause = True
    return error


def raise_with_cause(exc_cls: type[TaskFlowException], message: str, *args: Any, **kwargs: Any) -> None:
    """Raise ``exc_cls(message, ...)`` chained to the exception being handled now."""
    if not issubclass(exc_cls, TaskFlowException):
        raise ValueError("raise_with_cause needs a subclass of TaskFlowException")
    import sys

    current = sys.exc_info()[1]
    kwargs.setdefault("cause", current)
    raise exc_cls(message, *args, **kwargs)


# -- storage, jobs, conductors -------------------------------------------------


class StorageFailure(TaskFlowException):
    """A persistence backend could not read, save or delete something."""


class StoreNotUpgraded(StorageFailure):
    """A directory or ZooKeeper store exists but was never upgraded (it lacks its collections).

    A :class:`StorageFailure`, so code catching that (as TaskFlow's does)
    sees no change; its own class lets the command line tell a user the
    command that makes the collections (``flowkit db upgrade``) instead of
    the library's ``upgrade()``. ``location`` is the store's masked URL.
    """

    def __init__(self, message: str, location: str = "", cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause)
        self.location = location


class StoreMissing(StoreNotUpgraded):
    """There is no store at the backend's location: no SQLite file, directory or ZooKeeper path.

    Raised by a backend configured ``writable=False``, which creates nothing where
    a writable one would create the store. A :class:`StoreNotUpgraded`: a
    store that does not exist was never upgraded either, and ``flowkit db
    upgrade`` (or ``upgrade()`` on a writable backend) makes it.
    ``location`` is the store's masked URL or path.
    """


class StoreReadOnly(StorageFailure):
    """A write (or ``upgrade()``'s migration) was asked of a backend configured ``writable=False``.

    Every bundled backend raises it, before anything is written, for every
    method that would write: ``save_logbook``, ``update_*_details``,
    ``save_flow_progress`` and its fenced form, the fences, ``destroy_logbook``
    and ``clear_all``.

    Attributes:
        location: the store's masked URL or path.
        operation: what was refused (the connection method's name).
    """

    def __init__(self, message: str = "", *, location: str = "", operation: str = "") -> None:
        super().__init__(
            message
            or f"{location} is not writable: {operation} refused (a backend configured writable=False "
            "writes nothing; open one without it to write)"
        )
        self.location = location
        self.operation = operation


class ConductorFailure(TaskFlowException):
    """A conductor could not do its work."""


class JobFailure(TaskFlowException):
    """A job or jobboard operation failed."""


class UnclaimableJob(JobFailure):
    """A job cannot be claimed (someone else holds it, or it is gone)."""


# -- running -------------------------------------------------------------------


class ExecutionFailure(TaskFlowException):
    """Running a flow failed for a reason other than a task's own error."""


class RequestTimeout(ExecutionFailure):
    """A request (to a worker, a lock, a server) did not finish in time."""


class TaskTimeout(ExecutionFailure, builtins.TimeoutError):
    """A task's ``execute`` ran longer than its ``timeout``; the atom fails with it.

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.

    Attributes:
        atom: the atom's name.
        timeout: the limit it ran past, in seconds.
    """

    def __init__(self, message: str, *, atom: str | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.atom = atom
        self.timeout = timeout


class InvalidState(ExecutionFailure):
    """A state transition that the state tables forbid was attempted."""


class SpawnLimitExceeded(ExecutionFailure):
    """A task spawned a sub-flow past :data:`flowkit.dynamic.MAX_DEPTH` or ``MAX_SPAWNED``.

    Attributes:
        atom: the spawning task's name.
        limit: the limit that was passed.
    """

    def __init__(self, message: str, *, atom: str | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.atom = atom
        self.limit = limit


class LoopExhausted(ExecutionFailure):
    """A :mod:`~flowkit.patterns.loop_flow` loop's ``until`` never held in ``max_iterations``.

    Attributes:
        loop: the loop flow's name.
        iterations: how many iterations ran.
    """

    def __init__(self, message: str, *, loop: str | None = None, iterations: int | None = None) -> None:
        super().__init__(message)
        self.loop = loop
        self.iterations = iterations


# -- dependencies and compilation ---------------------------------------------


class DependencyFailure(TaskFlowException):
    """Symbols or links between atoms cannot be satisfied."""


class AmbiguousDependency(DependencyFailure):
    """A symbol has several providers where only one may be chosen.

    Attributes:
        symbol: the symbol name.
        providers: names of the atoms or flows that provide it.
        atom: the name of the atom that requires it (may be ``None``).
    """

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        symbol: str | None = None,
        providers: Iterable[str] = (),
        atom: str | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self.symbol = symbol
        self.providers = tuple(providers)
        self.atom = atom


class MissingDependencies(DependencyFailure):
    """An atom or flow requires symbols that nothing provides.

    TaskFlow's signature ``MissingDependencies(who, requirements, cause=None,
    method=None)`` is kept.

    Attributes:
        atom: name of the atom (or flow) at fault.
        missing: the sorted missing symbol names (also ``missing_requirements``).
        method: ``"execute"`` or ``"revert"`` when the gap is in one method.
    """

    def __init__(
        self,
        who: Any,
        requirements: Iterable[str],
        cause: BaseException | None = None,
        method: str | None = None,
    ) -> None:
        name = getattr(who, "name", who)
        missing = sorted(requirements)
        # TaskFlow's sentence, word for word (services and log scrapers match on it):
        # ``who`` is shown as ``str(who)``, so a flow reads '"linear_flow.Flow: f(len=1)"'.
        where = f"'{method}' method on " if method else ""
        message = f"{where}'{who}' requires {missing} but no other entity produces said requirements"
        super().__init__(message, cause=cause)
        self.who = who
        self.atom: str = str(name)
        self.missing: list[str] = missing
        self.missing_requirements: list[str] = missing
        self.method = method


class TypeMismatch(DependencyFailure, TypeError):
    """A provider's declared result type cannot satisfy a consumer's declared argument type.

    Raised when a flow is compiled, before anything runs; only atoms whose
    ``execute`` is annotated on both ends are checked.

    Attributes:
        symbol: the symbol passed from one to the other.
        provider: the name of the atom whose result it is.
        consumer: the name of the atom that requires it.
        argument: the consumer's argument the symbol feeds.
        provided: the provider's declared type, as text.
        required: the consumer's declared type, as text.
    """

    def __init__(
        self,
        message: str,
        *,
        symbol: str,
        provider: str,
        consumer: str,
        argument: str,
        provided: str,
        required: str,
    ) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.provider = provider
        self.consumer = consumer
        self.argument = argument
        self.provided = provided
        self.required = required


class CompilationFailure(TaskFlowException):
    """A flow cannot be compiled into an execution graph."""


class InvalidFlowItem(CompilationFailure, TypeError):
    """Something that is neither an atom nor a flow was added to a flow.

    Attributes:
        flow: the name of the flow being built.
        item: the rejected object.
    """

    def __init__(self, message: str, *, flow: str | None = None, item: Any = None) -> None:
        super().__init__(message)
        self.flow = flow
        self.item = item


class InvalidGraphFlowItem(InvalidFlowItem, AttributeError):
    """Something that is neither an atom nor a flow was added to a graph flow.

    Also an ``AttributeError``: TaskFlow's graph flow raises that (reading the
    item's ``requires``) for the same mistake, and code ported from it may catch it.
    """


class IncompatibleVersion(TaskFlowException):
    """Stored data was written by an incompatible version."""


class Duplicate(TaskFlowException):
    """Two things share a name that must be unique (for example atom names).

    Attributes:
        names: the duplicated names.
    """

    def __init__(
        self, message: str, cause: BaseException | None = None, *, names: Iterable[str] = ()
    ) -> None:
        super().__init__(message, cause=cause)
        self.names = tuple(names)


class NotFound(TaskFlowException):
    """Something looked up by name does not exist."""


class UnknownEngine(NotFound, ValueError):
    """No engine is registered under the requested name.

    Attributes:
        engine: the requested name.
        known: the names that exist.
    """

    def __init__(self, engine: str, known: Iterable[str]) -> None:
        self.engine = engine
        self.known = tuple(sorted(known))
        # TaskFlow's sentence first, then the names that would have worked.
        super().__init__(f"Could not find engine {engine!r} (known engines: {', '.join(self.known)})")


class Empty(TaskFlowException):
    """Something is empty that must not be."""


class MultipleChoices(TaskFlowException):
    """A decision cannot be made because several choices fit."""


class InvalidFormat(TaskFlowException):
    """A value or record has the wrong shape."""


class InvalidEngineOption(InvalidFormat, TypeError, ValueError):
    """An engine was given an option it does not understand or a bad value.

    A ``ValueError`` too: TaskFlow raises that for an unknown executor name.

    Attributes:
        engine: the engine kind.
        option: the offending option name.
    """

    def __init__(self, message: str, *, engine: str | None = None, option: str | None = None) -> None:
        super().__init__(message)
        self.engine = engine
        self.option = option


class InvalidAtomOption(InvalidFormat, ValueError):
    """A task was given a bad ``timeout``, ``concurrency_key``, ``retry`` or caching switch.

    Raised when the task is made (constructor arguments) or when the engine
    loads it (class attributes, a key the engine has no limit for, and, in a
    run with a cache, a ``cache``, ``cache_strict`` or ``cache_code`` that is
    not a bool), before anything runs.

    Attributes:
        atom: the atom's name.
        option: ``"timeout"``, ``"concurrency_key"``, ``"retry"``, ``"cache"``,
            ``"cache_strict"`` or ``"cache_code"``.
        value: the value refused.
    """

    def __init__(self, message: str, *, atom: str | None = None, option: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.atom = atom
        self.option = option
        self.value = value


class ResultUnpackError(InvalidFormat):
    """An atom returned a value its ``provides`` cannot be unpacked from.

    Attributes:
        atom: the atom's name.
        provides: the names the atom declared it provides.
    """

    def __init__(self, message: str, *, atom: str | None = None, provides: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.atom = atom
        self.provides = tuple(provides)


class InvalidResult(InvalidFormat, TypeError):
    """An atom returned (or was given) a value that is not of its declared type.

    Raised by run-time type validation; it fails the atom, so the flow reverts.
    The message ends with why the value does not fit, the words of the
    ``TypeError`` (or pydantic's error) it is raised from, so ``str()`` does
    not repeat that cause below it.

    Attributes:
        atom: the atom's name.
        what: ``"result"`` or the name of the argument that was checked.
        expected: the declared type, as text.
    """

    _message_quotes_cause = True

    def __init__(
        self, message: str, *, atom: str | None = None, what: str = "result", expected: str = ""
    ) -> None:
        super().__init__(message)
        self.atom = atom
        self.what = what
        self.expected = expected


class FlowSpecError(TaskFlowException, ValueError):
    """A declarative flow spec (dict, YAML or JSON) is wrong; nothing has run.

    The message starts with where: the file (when read from one), the line
    (when known), the task and the key at fault.

    Attributes:
        source: the file the spec was read from (``None`` for a dict).
        task: the key of the spec's task or sub-flow at fault (``None`` for
            flow-level keys).
        key: the key at fault, dotted (``"inputs.amount"``, ``"after"``...).
        line: the 1-based line in ``source``, when known.
        reason: what is wrong, without the place (the message after it), for
            callers that show the place their own way.
        sub_flow: whether ``task`` is the key of a sub-flow (the message then
            says ``sub-flow 'key'``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        task: str | None = None,
        key: str | None = None,
        line: int | None = None,
        sub_flow: bool = False,
    ) -> None:
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if task is not None:
            where.append(f"{'sub-flow' if sub_flow else 'task'} '{task}'")
        if key is not None:
            where.append(f"key '{key}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.source = source
        self.task = task
        self.key = key
        self.line = line
        self.reason = message
        self.sub_flow = sub_flow


class DisallowedAccess(TaskFlowException):
    """Storage refused access because of the state something is in.

    Attributes:
        state: that state.
    """

    def __init__(self, message: str, cause: BaseException | None = None, state: str | None = None) -> None:
        super().__init__(message, cause=cause)
        self.state = state


class NotImplementedError(builtins.NotImplementedError):  # noqa: A001 - TaskFlow's public name
    """A flowkit feature that is not available, told apart from user code's own."""


class WrappedFailure(Exception):
    """Several failures raised at once (for example from parallel tasks).

    Iterating yields the :class:`~flowkit.types.failure.Failure` objects; wrapped
    failures inside are flattened.

    Args:
        causes: the failures.
    """

    def __init__(self, causes: Iterable[Failure]) -> None:
        flat: list[Failure] = []
        for cause in causes:
            inner = getattr(cause, "exception", None)
            if isinstance(inner, WrappedFailure):
                flat.extend(inner)
            else:
                flat.append(cause)
        self._causes = flat
        super().__init__(flat)

    def __iter__(self) -> Iterator[Failure]:
        return iter(self._causes)

    def __len__(self) -> int:
        return len(self._causes)

    def check(self, *exc_classes: type[BaseException] | str) -> type[BaseException] | str | None:
        """Return the first of ``exc_classes`` that any wrapped failure matches."""
        for cause in self._causes:
            found = cause.check(*exc_classes)
            if found is not None:
                return found
        return None

    def __str__(self) -> str:
        return "WrappedFailure: [" + ", ".join(str(cause) for cause in self._causes) + "]"
