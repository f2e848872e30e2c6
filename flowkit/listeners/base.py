"""The listener base classes: attach to an engine's notifiers, hear state changes.

An engine has two notifiers: ``engine.notifier`` announces the flow's state
changes and ``engine.atom_notifier`` those of its atoms. Tasks and retries share
the atom notifier; what tells them apart is the details' keys (``task_name`` and
``task_uuid`` for a task, ``retry_name`` and ``retry_uuid`` for a retry), so a
:class:`Listener` registers its task and retry receivers with details filters
that pick out their own kind.

The atom notifier also carries task progress (``update_progress``), which is not
a state change. A receiver registered for :attr:`Notifier.ANY
<flowkit.types.notifier.Notifier.ANY>` hears state changes only (their details
always carry ``old_state``); a listener that wants progress lists
``update_progress`` in ``task_listen_for`` explicitly.

Receivers a subclass leaves as the base no-ops are not registered at all, so an
engine pays nothing for the kinds of events a listener ignores.

A run need not be announced: an engine run again after an interrupt says
nothing as it starts (the flow never left RUNNING, as in TaskFlow), so its
first notice may be an atom's. A listener that keeps something per run (a
trace's flow span, a progress bar, the event log's run number) takes such a
run up through one hook, :meth:`Listener._take_up_run`.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Hashable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from flowkit import states
from flowkit._utils.records import Record
from flowkit._utils.text import log_safe
from flowkit.task import EVENT_UPDATE_PROGRESS
from flowkit.types import failure as ft
from flowkit.types import notifier as nt

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["DEFAULT_LISTEN_FOR", "FINISH_STATES", "RUNS_NOTHING", "DumpingListener", "Listener"]

LOG = logging.getLogger(__name__)

#: The atom states whose notification details carry a ``result``.
FINISH_STATES: tuple[str, ...] = (
    states.FAILURE,
    states.SUCCESS,
    states.REVERTED,
    states.REVERT_FAILURE,
)

#: Atom notices that run nothing (a reset, a skip, a retry's decision, progress): they
#: may come outside any run (``engine.reset()``), so they do not begin one unannounced.
RUNS_NOTHING: frozenset[str] = frozenset(
    {states.PENDING, states.IGNORE, states.RETRYING, EVENT_UPDATE_PROGRESS}
)

#: What a listener hears unless told otherwise: every event.
DEFAULT_LISTEN_FOR: tuple[Hashable, ...] = (nt.Notifier.ANY,)

Details = dict[str, Any]
Receiver = Callable[[str, Details], None]
DetailsFilter = Callable[[Any], bool]


def _task_matcher(details: Any) -> bool:
    """Whether ``details`` describe an event of a task."""
    return bool(details) and "task_name" in details and "task_uuid" in details


def _task_transition_matcher(details: Any) -> bool:
    """Whether ``details`` describe a task's state change (not, say, its progress)."""
    return _task_matcher(details) and "old_state" in details


def _retry_matcher(details: Any) -> bool:
    """Whether ``details`` describe an event of a retry."""
    return bool(details) and "retry_name" in details and "retry_uuid" in details


def _retry_transition_matcher(details: Any) -> bool:
    """Whether ``details`` describe a retry's state change."""
    return _retry_matcher(details) and "old_state" in details


class _AtomFilters(Record):
    """The details filters of one kind of atom's receivers.

    Progress events share the atom notifier with state changes: an event named
    explicitly hears both, ``ANY`` hears state changes only.
    """

    named: DetailsFilter
    any: DetailsFilter


_ATOM_FILTERS: dict[str, _AtomFilters] = {
    "task": _AtomFilters(named=_task_matcher, any=_task_transition_matcher),
    "retry": _AtomFilters(named=_retry_matcher, any=_retry_transition_matcher),
}


class _Registration(Record):
    """One receiver registered on a notifier, kept so deregistering undoes exactly it."""

    notifier: nt.Notifier
    event: Hashable
    receiver: Receiver
    details_filter: DetailsFilter | None

    def is_registered(self) -> bool:
        return self.notifier.is_registered(self.event, self.receiver, details_filter=self.details_filter)

    def register(self) -> None:
        self.notifier.register(self.event, self.receiver, details_filter=self.details_filter)

    def deregister(self) -> None:
        self.notifier.deregister(self.event, self.receiver, details_filter=self.details_filter)


def _listen_list(listen_for: Iterable[Hashable] | None) -> list[Hashable]:
    # TaskFlow accepts None (or any empty value) for "listen to nothing".
    return list(listen_for) if listen_for else []


class Listener:
    """Watches an engine's flow, task and retry state changes.

    Subclass and override :meth:`_flow_receiver`, :meth:`_task_receiver` and/or
    :meth:`_retry_receiver`. Then either call :meth:`register` and
    :meth:`deregister`, or use the listener as a context manager around running
    the engine::

        with MyListener(engine):
            engine.run()

    Args:
        engine: the engine to watch; it must have ``notifier`` and
            ``atom_notifier`` attributes (notifiers).
        task_listen_for: the task events to hear (``None`` or empty: none).
        flow_listen_for: the flow events to hear.
        retry_listen_for: the retry events to hear.
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = DEFAULT_LISTEN_FOR,
    ) -> None:
        self._engine = engine
        self._listen_for: dict[str, list[Hashable]] = {
            "task": _listen_list(task_listen_for),
            "retry": _listen_list(retry_listen_for),
            "flow": _listen_list(flow_listen_for),
        }
        # Kind -> what was registered for it; a kind is absent until registered.
        self._registered: dict[str, list[_Registration]] = {}

    # -- what subclasses override ------------------------------------------------

    def _flow_receiver(self, state: str, details: Details) -> None:
        """Called when the flow moves into ``state``; does nothing here."""

    def _task_receiver(self, state: str, details: Details) -> None:
        """Called when a task moves into ``state``; does nothing here."""

    def _retry_receiver(self, state: str, details: Details) -> None:
        """Called when a retry moves into ``state``; does nothing here."""

    def _in_run(self) -> bool:
        """Whether this listener has begun the current run (True here: it keeps nothing per run)."""
        return True

    def _begin_unannounced_run(self, atom: str, was: str | None) -> None:
        """Begin a run that no flow notice announced, on ``atom``'s notice; does nothing here.

        Args:
            atom: the atom whose notice is the run's first.
            was: the state that notice says the atom left (its ``old_state``):
                the one it was in as the run began. An atom an interrupt left
                RUNNING is run again without a notice of its own, so its first
                may already be its outcome.
        """

    # -- what subclasses call ----------------------------------------------------

    def _take_up_run(self, atom: str, state: str, details: Details, *, any_notice: bool = False) -> bool:
        """Begin the current run on ``atom``'s notice if no flow notice began it; whether a run is on.

        An engine run again after an interrupt announces nothing as it starts
        (the flow never left RUNNING, as in TaskFlow): the first atom notice
        begins the run then, through :meth:`_begin_unannounced_run`. A notice
        that runs nothing (:data:`RUNS_NOTHING`) may come outside any run and
        begins none, unless ``any_notice`` (the event log records those too).

        Args:
            atom: the atom the notice is about.
            state: the notice's event (the state entered, or ``update_progress``).
            details: the notice's details.
            any_notice: whether every notice begins a run, those that run nothing too.

        Returns:
            False for a notice outside any run that begins none (nothing to do with it).
        """
        if self._in_run():
            return True
        if not any_notice and state in RUNS_NOTHING:
            return False
        self._begin_unannounced_run(atom, details.get("old_state"))
        return True

    # -- attaching ---------------------------------------------------------------

    def _is_overridden(self, kind: str) -> bool:
        name = f"_{kind}_receiver"
        return getattr(type(self), name) is not getattr(Listener, name)

    def _plan(self, kind: str) -> list[_Registration]:
        """What registering ``kind`` means: one registration per event listened for."""
        if not self._is_overridden(kind):
            return []
        if kind == "flow":
            notifier: nt.Notifier = self._engine.notifier
            return [
                _Registration(notifier, event, self._flow_receiver, None) for event in self._listen_for[kind]
            ]
        notifier = self._engine.atom_notifier
        receiver = self._task_receiver if kind == "task" else self._retry_receiver
        filters = _ATOM_FILTERS[kind]
        return [
            _Registration(
                notifier, event, receiver, filters.any if event == nt.Notifier.ANY else filters.named
            )
            for event in self._listen_for[kind]
        ]

    def register(self) -> None:
        """Start hearing the engine's notifications (again a no-op once registered).

        Raises:
            ValueError: a notifier refused a registration; whatever this call
                had registered is undone first.
        """
        for kind in ("task", "retry", "flow"):
            if kind in self._registered:
                continue
            done: list[_Registration] = []
            try:
                for planned in self._plan(kind):
                    if planned.is_registered():
                        continue
                    planned.register()
                    done.append(planned)
            except ValueError:
                self._undo(done)
                raise
            self._registered[kind] = done

    def deregister(self) -> None:
        """Stop hearing the engine's notifications (a no-op if not registered)."""
        for kind in ("task", "retry", "flow"):
            self._undo(self._registered.pop(kind, []))

    @staticmethod
    def _undo(registrations: list[_Registration]) -> None:
        while registrations:
            registrations.pop().deregister()

    def __enter__(self) -> Self:
        self.register()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.deregister()
        except Exception:
            # Whatever the block raised matters more than a failed cleanup.
            # TaskFlow's words, then the listener at fault.
            LOG.warning(
                "Failed deregistering listeners from engine %s (%r)", self._engine, self, exc_info=True
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._engine!r}>"


class DumpingListener(Listener, metaclass=abc.ABCMeta):
    """Writes a line for each flow and task state change to somewhere.

    Subclasses say where by implementing :meth:`_dump`. Messages are TaskFlow's,
    word for word (operators grep for them): ``"<engine> has moved task 'NAME'
    (UUID) into state 'NEW' from state 'OLD'"``, with ``" with result '...'
    (failure=...)"`` for finishing states. A failure's live exception is passed along as
    ``exc_info=``; a failure without one (for example one that came back from a
    remote worker) has its recorded traceback appended to the message instead.
    """

    @abc.abstractmethod
    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Write ``message % args`` somewhere.

        Args:
            message: a ``%``-style template.
            args: the template's values.
            kwargs: ``exc_info`` (an ``(type, value, traceback)`` tuple or
                ``None``) for messages about failures.
        """

    def _dumps(self) -> bool:
        """Whether :meth:`_dump` writes anything now; a listener whose output is off skips the formatting.

        The names shown are escaped (:func:`~flowkit._utils.text.log_safe`)
        before :meth:`_dump` is called, so a listener whose messages go nowhere
        (a logger whose level is off) says so here instead of paying for it.
        """
        return True

    def _flow_receiver(self, state: str, details: Details) -> None:
        if not self._dumps():
            return
        # A conductor's flow name is the flow detail's, written to the database
        # by whoever posted the job: escaped, it cannot forge a line of its own.
        self._dump(
            "%s has moved flow '%s' (%s) into state '%s' from state '%s'",
            self._engine,
            log_safe(details["flow_name"]),
            log_safe(details["flow_uuid"]),
            state,
            details["old_state"],
        )

    def _task_receiver(self, state: str, details: Details) -> None:
        if not self._dumps():
            return
        if state not in FINISH_STATES:
            self._dump(
                "%s has moved task '%s' (%s) into state '%s' from state '%s'",
                self._engine,
                log_safe(details["task_name"]),
                log_safe(details["task_uuid"]),
                state,
                details["old_state"],
            )
            return
        result = details.get("result")
        is_failure = isinstance(result, ft.Failure)
        exc_info: tuple[Any, ...] | None = None
        message = "%s has moved task '%s' (%s) into state '%s' from state '%s' with result '%s' (failure=%s)"
        args: list[Any] = [
            self._engine,
            log_safe(details["task_name"]),
            log_safe(details["task_uuid"]),
            state,
            details["old_state"],
            result,
            is_failure,
        ]
        if isinstance(result, ft.Failure):
            if result.exc_info is not None:
                exc_info = tuple(result.exc_info)
            else:
                message += "%s%s"
                args += [os.linesep, result.pformat(traceback=True)]
        self._dump(message, *args, exc_info=exc_info)
