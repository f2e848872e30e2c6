"""Listeners that time flows and atoms and keep the times in storage metadata.

:class:`DurationListener` measures how long the flow and each task spent
between starting (``RUNNING`` or ``REVERTING``) and finishing, and saves it as
``{"duration": seconds}`` in the flow's or the task's metadata.
:class:`PrintingDurationListener` also prints it. :class:`EventTimeListener`
stamps the wall-clock time of every state entered, as ``"<STATE>-timestamp"``
metadata keys, so durations can be worked out afterwards.

The clocks are arguments (beyond TaskFlow's signatures) so that tests can drive
time by hand. A storage error never escapes a listener: it is logged and the
engine carries on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states
from flowkit.listeners import base

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = [
    "FINISHED_STATES",
    "STARTING_STATES",
    "WATCH_STATES",
    "DurationListener",
    "EventTimeListener",
    "PrintingDurationListener",
]

LOG = logging.getLogger(__name__)

#: States in which timing of a flow or task starts.
STARTING_STATES = frozenset((states.RUNNING, states.REVERTING))
#: States in which it stops and the duration is recorded.
FINISHED_STATES = frozenset(base.FINISH_STATES)
#: The states :class:`DurationListener` listens for (``PENDING`` forgets a timer).
WATCH_STATES = FINISHED_STATES | STARTING_STATES | {states.PENDING}

# What is being timed; also the word used in printed messages.
_TASK = "task"
_FLOW = "flow"

Clock = Callable[[], float]


class DurationListener(base.Listener):
    """Records how long the flow and each of its tasks took, in storage metadata.

    The duration, in seconds as a float, goes under the ``"duration"`` key of
    the task's metadata (``storage.update_atom_metadata``) or of the flow's
    (``storage.update_flow_metadata``). Retries are not timed.

    Args:
        engine: the engine to watch; its ``storage`` receives the durations.
        clock: returns the current time in seconds; only differences matter.
    """

    def __init__(self, engine: Engine, clock: Clock = time.monotonic) -> None:
        super().__init__(
            engine, task_listen_for=WATCH_STATES, flow_listen_for=WATCH_STATES, retry_listen_for=()
        )
        self._clock = clock
        # Kind -> name -> when it started.
        self._started: dict[str, dict[str, float]] = {_TASK: {}, _FLOW: {}}

    def deregister(self) -> None:
        """Stop listening, and warn about anything that started but never finished."""
        super().deregister()
        for kind, started in self._started.items():
            if started:
                LOG.warning(
                    "%d %s(s) did not enter %s states: %s",
                    len(started),
                    kind,
                    sorted(FINISHED_STATES),
                    sorted(started),
                )
            started.clear()

    def _record_ending(self, elapsed: float, kind: str, name: str, state: str) -> None:
        """Save ``elapsed`` seconds for the flow or task ``name`` that just finished in ``state``."""
        update = {"duration": elapsed}
        try:
            storage = self._engine.storage
            if kind == _FLOW:
                storage.update_flow_metadata(update)
            else:
                storage.update_atom_metadata(name, update)
        except exc.StorageFailure:
            LOG.warning("Failure to store duration update %s for %s %s", update, kind, name, exc_info=True)

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._receiver(_TASK, details["task_name"], state)

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        self._receiver(_FLOW, details["flow_name"], state)

    def _receiver(self, kind: str, name: str, state: str) -> None:
        started = self._started[kind]
        if state == states.PENDING:
            # Reset (for example by a retry): whatever was running is void.
            started.pop(name, None)
        elif state in STARTING_STATES:
            started[name] = self._clock()
        elif state in FINISHED_STATES:
            began = started.pop(name, None)
            if began is not None:
                self._record_ending(self._clock() - began, kind, name, state)


class PrintingDurationListener(DurationListener):
    """A :class:`DurationListener` that also prints when things start and how long they took.

    Args:
        engine: the engine to watch.
        printer: called with each message (default: :func:`print`).
        clock: returns the current time in seconds; only differences matter.
    """

    def __init__(
        self, engine: Engine, printer: Callable[[str], Any] | None = None, clock: Clock = time.monotonic
    ) -> None:
        super().__init__(engine, clock=clock)
        self._printer: Callable[[str], Any] = printer if printer is not None else print

    def _record_ending(self, elapsed: float, kind: str, name: str, state: str) -> None:
        super()._record_ending(elapsed, kind, name, state)
        # TaskFlow's words, so output and anything parsing it stay the same.
        self._printer(f"It took {kind} '{name}' {elapsed:0.2f} seconds to finish.")

    def _receiver(self, kind: str, name: str, state: str) -> None:
        super()._receiver(kind, name, state)
        if state in STARTING_STATES:
            self._printer(f"'{name}' {kind} started.")


class EventTimeListener(base.Listener):
    """Stamps when the flow, tasks and retries enter each state, in storage metadata.

    Each event adds ``{"<STATE>-timestamp": seconds since the epoch}`` to the
    flow's or the atom's metadata.

    Args:
        engine: the engine to watch; its ``storage`` receives the stamps.
        task_listen_for: the task events to stamp.
        flow_listen_for: the flow events to stamp.
        retry_listen_for: the retry events to stamp.
        clock: returns the current wall-clock time in seconds since the epoch.
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._clock = clock

    def _stamp(self, state: str) -> dict[str, float]:
        return {f"{state}-timestamp": self._clock()}

    def _record_atom_event(self, state: str, atom_name: str) -> None:
        update = self._stamp(state)
        try:
            self._engine.storage.update_atom_metadata(atom_name, update)
        except exc.StorageFailure:
            LOG.warning("could not save timestamp %s of atom '%s'", update, atom_name, exc_info=True)

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        update = self._stamp(state)
        try:
            self._engine.storage.update_flow_metadata(update)
        except exc.StorageFailure:
            LOG.warning(
                "could not save timestamp %s of flow '%s'", update, details["flow_name"], exc_info=True
            )

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._record_atom_event(state, details["task_name"])

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        self._record_atom_event(state, details["retry_name"])
