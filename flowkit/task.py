"""Tasks: atoms that do work and know how to undo it.

Subclass :class:`Task` and write ``execute`` (and usually ``revert``), or wrap
plain functions with :class:`FunctorTask`, :class:`MapFunctorTask` and
:class:`ReduceFunctorTask`. A task can report progress with
:meth:`BaseTask.update_progress`; listeners hear it through the task's
:attr:`~BaseTask.notifier`, which is only created when first asked for so that
making a task stays cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from flowkit import atom
from flowkit._utils import reflection
from flowkit._utils.lazy_logging import module_logger
from flowkit.types import notifier
from flowkit.types.notifier import RestrictedNotifier as _RestrictedNotifier

__all__ = [
    "EVENT_UPDATE_PROGRESS",
    "REVERT_FLOW_FAILURES",
    "REVERT_RESULT",
    "BaseTask",
    "FunctorTask",
    "MapFunctorTask",
    "ReduceFunctorTask",
    "Task",
]

LOG = module_logger(__name__)

#: Keyword under which ``revert`` receives what ``execute`` returned (or its failure).
REVERT_RESULT = "result"
#: Keyword under which ``revert`` receives the failures that caused the revert.
REVERT_FLOW_FAILURES = "flow_failures"
#: Event a task's notifier emits from :meth:`BaseTask.update_progress`.
EVENT_UPDATE_PROGRESS = "update_progress"


ProgressSink = Callable[..., None]
"""``sink(task, progress[, details])``: how a running engine hears a task's progress."""
EventSink = Callable[[Any, Any], None]
"""``sink(event_type, details)``: how a worker hears the other events a task notifies."""


class _TaskNotifier(notifier.RestrictedNotifier):
    """A task's own notifier, which also hands progress notified on it to the engine.

    TaskFlow's engines listen on each task's notifier, so a task may report
    progress with details by notifying :data:`EVENT_UPDATE_PROGRESS` itself
    (``{"progress": 0.5, ...}``). flowkit's engine hears progress through the
    task's sink instead (no notifier is made per task), so such a report is
    passed on to the sink here.
    """

    def __init__(self, owner: BaseTask, events: Iterable[str]) -> None:
        super().__init__(events)
        self.owner = owner

    def notify(self, event_type: Any, details: Any) -> None:
        sink = self.owner._progress_sink
        if event_type == EVENT_UPDATE_PROGRESS and sink is not None and details and "progress" in details:
            rest = {key: value for key, value in details.items() if key != "progress"}
            if rest:
                sink(self.owner, details["progress"], rest)
            else:
                sink(self.owner, details["progress"])
        elif event_type not in (EVENT_UPDATE_PROGRESS, self.ANY):
            events = self.owner._event_sink  # a worker relaying the task's events (none made per request)
            if events is not None:
                events(event_type, details or {})
        super().notify(event_type, details)

    def tell_listeners(self, event_type: Any, details: Any) -> None:
        """Notify the registered listeners only (the engine's own 0.0 and 1.0 reports)."""
        super().notify(event_type, details)


class BaseTask(atom.Atom):
    """An atom that does work, can undo it, and can report its progress.

    Takes the same arguments as :class:`~flowkit.atom.Atom`.
    """

    #: The events listeners may register for on :attr:`notifier`.
    TASK_EVENTS: ClassVar[tuple[str, ...]] = (EVENT_UPDATE_PROGRESS,)

    # Options engines read with getattr() when a class or an instance sets them
    # (doc/caching.rst, doc/typed.rst). They are declared without a value, for
    # type checkers only: ``render.cache = True`` on one instance then type-checks,
    # and an option nobody set is still absent at run time, as before.
    #: Take results from the engine's cache store when code and inputs are unchanged.
    cache: bool
    #: Fail the atom (rather than run uncached) when an input cannot be part of a cache key.
    cache_strict: bool
    #: Part of the cache key: set it when instances of one class differ in what they compute.
    cache_version: object
    #: Also key the cache by a hash of ``execute``'s code.
    cache_code: bool
    #: Validate the result against its annotation (True), never (False), or as the engine says.
    validate_types: bool | None
    #: Send this task's calls to workers listening on this topic (doc/workers.rst).
    worker_topic: str

    # Created on first use of ``notifier`` (or ``_notifier``); most tasks never get a listener.
    _own_notifier: _TaskNotifier | None = None
    # Set by a running engine to hear progress (``sink(task, progress[, details])``)
    # without registering on, or creating, the task's own notifier.
    _progress_sink: ProgressSink | None = None
    # Set by a worker to hear every other event notified on the task's notifier
    # (``sink(event_type, details)``), again without making one per request.
    _event_sink: EventSink | None = None

    @property
    def notifier(self) -> notifier.RestrictedNotifier:
        """The notifier for this task's own events (see :attr:`TASK_EVENTS`)."""
        found = self._own_notifier
        if found is None:
            found = self._own_notifier = _TaskNotifier(self, self.TASK_EVENTS)
        return found

    @property
    def _notifier(self) -> _RestrictedNotifier:
        """The same notifier, under TaskFlow's attribute name.

        Services written for TaskFlow call ``self._notifier.notify("update_progress",
        {"progress": ..., ...})`` from ``execute`` to report progress with details
        (OpenStack Masakari does), so it must exist even when nobody registered.
        """
        return self.notifier

    def copy(self, retain_listeners: bool = True) -> BaseTask:
        """Return a shallow copy of this task.

        Args:
            retain_listeners: keep the registered progress listeners on the copy
                (registered independently from now on); otherwise it has none.
        """
        from copy import copy as shallow_copy  # rarely needed (start-up time)

        clone = shallow_copy(self)
        if self._own_notifier is not None:
            copied = self._own_notifier.copy() if retain_listeners else None
            if isinstance(copied, _TaskNotifier):
                copied.owner = clone
                clone._own_notifier = copied
            else:
                clone._own_notifier = None
        return clone

    def update_progress(self, progress: float) -> None:
        """Tell listeners how far along this task is.

        Args:
            progress: a fraction from 0.0 to 1.0; values outside are clamped
                (and a warning logged).
        """
        if not 0.0 <= progress <= 1.0:  # NaN too: it would be stored and shown as "nan%"
            clamped = 1.0 if progress > 1.0 else 0.0
            LOG.warning(
                "Progress must be between 0.0 and 1.0, not %r (task '%s'); clamping it to %s",
                progress,
                self.name,
                clamped,
            )
            progress = clamped
        found = self._own_notifier
        if found is not None:
            found.notify(EVENT_UPDATE_PROGRESS, {"progress": progress})  # tells the sink too
            return
        sink = self._progress_sink
        if sink is not None:
            sink(self, progress)


class Task(BaseTask):
    """Base class for user tasks: subclass it and define ``execute`` (and ``revert``).

    What the task requires is read from ``execute``'s signature; its name
    defaults to the class's ``module.ClassName``. See :class:`~flowkit.atom.Atom`
    for the arguments.
    """


def _check_callable(value: object, role: str) -> None:
    if not callable(value):
        raise ValueError(f"the function to use for {role} must be callable, not {value!r}")


class FunctorTask(Task):
    """A task made from a function (and optionally a function that undoes it).

    Args:
        execute: called with the task's arguments by keyword; what it requires
            is read from its signature.
        name: defaults to the dotted name of ``execute``.
        provides: see :class:`~flowkit.atom.Atom`.
        requires: see :class:`~flowkit.atom.Atom`.
        auto_extract: see :class:`~flowkit.atom.Atom`.
        rebind: see :class:`~flowkit.atom.Atom`.
        revert: called to undo ``execute``; without it reverting does nothing.
        version: overrides the default ``(1, 0)``.
        inject: see :class:`~flowkit.atom.Atom`.
        timeout: see :class:`~flowkit.atom.Atom`.
        concurrency_key: see :class:`~flowkit.atom.Atom`.
        retry: see :class:`~flowkit.atom.Atom`.

    Raises:
        ValueError: ``execute`` or ``revert`` is not callable.
    """

    def __init__(
        self,
        execute: Callable[..., Any],
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
        revert: Callable[..., Any] | None = None,
        version: tuple[int, ...] | None = None,
        inject: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        concurrency_key: str | None = None,
        retry: Any = None,
    ) -> None:
        _check_callable(execute, "executing")
        if revert is not None:
            _check_callable(revert, "reverting")
        self._execute = execute
        self._revert = revert
        if name is None:
            name = reflection.get_callable_name(execute)
        super().__init__(
            name,
            provides=provides,
            requires=requires,
            auto_extract=auto_extract,
            rebind=rebind,
            inject=inject,
            timeout=timeout,
            concurrency_key=concurrency_key,
            retry=retry,
        )
        if version is not None:
            self.version = version

    def _arg_sources(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        # Without a revert function, revert takes exactly what execute took.
        return self._execute, self._revert

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._execute(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self._revert is None:
            return None
        return self._revert(*args, **kwargs)


def _as_requirements(requires: object) -> list[str]:
    if isinstance(requires, str) or not isinstance(requires, Iterable):
        raise TypeError(f"requires must be an iterable of names (not a str), not {type(requires).__name__}")
    return list(requires)


class _ValuesFunctorTask(Task):
    """Shared plumbing of the map and reduce tasks: a functor over the required values."""

    _functor_arity: ClassVar[int]
    _role: ClassVar[str]

    def __init__(
        self,
        functor: Callable[..., Any],
        requires: Iterable[str],
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
        inject: dict[str, Any] | None = None,
        revert: Callable[..., Any] | None = None,
    ) -> None:
        _check_callable(functor, self._role)
        count = len(reflection.get_callable_args(functor))
        if count != self._functor_arity:
            raise ValueError(
                f"the {self._role} functor must take exactly {self._functor_arity} "
                f"argument(s), but it takes {count}"
            )
        names = self._check_requires(_as_requirements(requires))
        if revert is not None:
            _check_callable(revert, "reverting")
        self._functor = functor
        #: ``functor`` is ``async def``: ``execute`` returns a coroutine awaiting each call.
        self._awaits = reflection.is_coroutine_function(functor)
        self._revert = revert
        if name is None:
            name = reflection.get_callable_name(functor)
        super().__init__(
            name, provides=provides, requires=names, auto_extract=auto_extract, rebind=rebind, inject=inject
        )
        # The engine passes values by argument name; keep the requirement order.
        self._value_args = tuple(self.rebind)

    def _check_requires(self, names: list[str]) -> list[str]:
        return names

    def _values(self, kwargs: dict[str, Any]) -> list[Any]:
        return [kwargs[arg] for arg in self._value_args]

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self._revert is None:
            return None
        return self._revert(*args, **kwargs)


class MapFunctorTask(_ValuesFunctorTask):
    """A task that applies a one-argument function to each required value, like ``map``.

    Returns the list of results, in the order of ``requires``; give
    ``provides`` a list of names to store each result under its own symbol.

    Args:
        functor: a function of one argument; if it is ``async def``, the task
            awaits it on each value in turn (as any async task, on every engine).
        requires: the symbols whose values are mapped (a list, not a str).
        name: defaults to the dotted name of ``functor``.
        provides: see :class:`~flowkit.atom.Atom`.
        auto_extract: see :class:`~flowkit.atom.Atom`.
        rebind: see :class:`~flowkit.atom.Atom`.
        inject: see :class:`~flowkit.atom.Atom`.
        revert: optional function called (by keyword) to undo the task.

    Raises:
        ValueError: ``functor`` is not callable or does not take one argument.
        TypeError: ``requires`` is not an iterable of names.
    """

    _functor_arity = 1
    _role = "map"

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self._awaits:
            return _map_awaiting(self._functor, self._values(kwargs))
        return [self._functor(value) for value in self._values(kwargs)]


async def _map_awaiting(functor: Callable[..., Any], values: list[Any]) -> list[Any]:
    """Await ``functor`` on each value, one after the other, as a plain map calls it.

    One at a time, in order, stopping at the first failure: the same calls a
    synchronous functor gets, so making it ``async def`` changes only where it
    waits (gather would start them all, and leave the rest running past a failure).
    """
    return [await functor(value) for value in values]


class ReduceFunctorTask(_ValuesFunctorTask):
    """A task that folds the required values with a two-argument function, like ``reduce``.

    Args:
        functor: a function of two arguments; if it is ``async def``, each
            step is awaited.
        requires: at least two symbols whose values are reduced, in order.
        name: defaults to the dotted name of ``functor``.
        provides: see :class:`~flowkit.atom.Atom`.
        auto_extract: see :class:`~flowkit.atom.Atom`.
        rebind: see :class:`~flowkit.atom.Atom`.
        inject: see :class:`~flowkit.atom.Atom`.
        revert: optional function called (by keyword) to undo the task.

    Raises:
        ValueError: ``functor`` is not callable or does not take two
            arguments, or fewer than two requirements are given.
        TypeError: ``requires`` is not an iterable of names.
    """

    _functor_arity = 2
    _role = "reduce"

    def _check_requires(self, names: list[str]) -> list[str]:
        if len(names) < 2:
            raise ValueError(f"reduce needs at least 2 requirements, got {len(names)}: {names}")
        return names

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self._awaits:
            return _reduce_awaiting(self._functor, self._values(kwargs))
        return functools.reduce(self._functor, self._values(kwargs))


async def _reduce_awaiting(functor: Callable[..., Any], values: list[Any]) -> Any:
    """Fold ``values`` with an ``async def`` functor, awaiting each step."""
    total = values[0]
    for value in values[1:]:
        total = await functor(total, value)
    return total
