"""The engine interface every engine kind implements (TaskFlow's ``engines.base``)."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import Any

from flowkit.storage import Storage
from flowkit.task import EVENT_UPDATE_PROGRESS
from flowkit.types.notifier import Notifier

__all__ = ["Engine"]


class Engine(metaclass=abc.ABCMeta):
    """Runs one flow against one storage.

    Args:
        flow: the flow (or single atom) to run.
        flow_detail: stored details of an earlier run to resume, or None.
        backend: the persistence backend, or None for memory.
        options: engine options (see each engine kind for the ones it takes).
    """

    #: Whether the engine closes its backend after each run: set by
    #: :func:`flowkit.engines.load` for a backend it made from a configuration
    #: dict, which is the engine's alone (see ``ActionEngine._steps``).
    _closes_backend: bool = False

    def __init__(self, flow: Any, flow_detail: Any, backend: Any, options: Mapping[str, Any] | None) -> None:
        self._flow = flow
        self._flow_detail = flow_detail
        self._backend = backend
        self._options = dict(options or {})
        self._notifier = Notifier()
        # Progress reaches those who ask for it by name; ANY listeners see states only.
        self._atom_notifier = Notifier(named_only=(EVENT_UPDATE_PROGRESS,))

    @property
    def notifier(self) -> Notifier:
        """Flow state changes: event = new state; details: ``engine``, ``flow_name``,
        ``flow_uuid``, ``old_state``."""
        return self._notifier

    @property
    def atom_notifier(self) -> Notifier:
        """Atom state changes (and ``update_progress`` events) of every atom."""
        return self._atom_notifier

    @property
    def options(self) -> dict[str, Any]:
        """The options this engine was loaded with."""
        return self._options

    @property
    @abc.abstractmethod
    def storage(self) -> Storage:
        """The storage of the flow this engine runs."""

    @property
    @abc.abstractmethod
    def statistics(self) -> dict[str, Any]:
        """Counters and timings of the last run."""

    @abc.abstractmethod
    def compile(self) -> None:
        """Turn the flow into an execution graph; raises on structural errors."""

    def expect_inject(self, inject: Mapping[str, Mapping[str, Any]]) -> None:  # noqa: B027
        """Hear ``engines.load``'s per-atom ``inject=`` before :meth:`compile` (default: ignore it).

        ``engines.load`` compiles first, to check the atom names, and gives
        the values to the atoms only after; an engine whose compile looks at
        injected values (flowkit's type check) keeps them from here.
        """

    @abc.abstractmethod
    def prepare(self) -> None:
        """Create storage records for every atom (idempotent)."""

    @abc.abstractmethod
    def validate(self) -> None:
        """Check that every requirement can be satisfied; raises MissingDependencies."""

    @abc.abstractmethod
    def run(self, timeout: float | None = None) -> None:
        """Run the flow to an end state, re-raising the failure that reverted it."""

    @abc.abstractmethod
    def run_iter(self, timeout: float | None = None) -> Iterator[str]:
        """Run the flow, yielding each engine state; sending a truthy value suspends."""

    @abc.abstractmethod
    def suspend(self) -> None:
        """Stop starting new atoms; running ones finish, then the run returns SUSPENDED."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Put every atom back to PENDING so the flow can run afresh."""
