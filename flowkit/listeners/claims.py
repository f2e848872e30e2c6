"""A listener that stops an engine whose job's claim was lost.

A conductor claims a job on a jobboard, then runs the job's flow in an engine.
If the claim is lost meanwhile (the conductor's session expired, someone
abandoned or took the job), another conductor may already be running the same
flow, and this engine should stop before it does more damage.
:class:`CheckingClaimListener` checks the claim on every flow and task state
change and, once it is lost, calls a handler; the default one suspends the
engine.

Checking asks the jobboard each time, which may be a network round trip per
state change: the price of noticing a lost claim quickly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from flowkit import exceptions as exc
from flowkit import states
from flowkit.listeners import base

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["CheckingClaimListener"]

LOG = logging.getLogger(__name__)

#: Called as ``on_job_loss(engine, state, details)`` when the claim is found lost.
JobLossHandler = Callable[[Any, str, base.Details], Any]


class _Job(Protocol):
    """The part of a jobboard job this listener reads."""

    @property
    def state(self) -> str:
        """``UNCLAIMED``, ``CLAIMED`` or ``COMPLETE``."""
        ...


class _Board(Protocol):
    """The part of a jobboard this listener calls."""

    def find_owner(self, job: Any) -> Any:
        """Return who holds ``job``'s claim, or ``None``."""
        ...


class CheckingClaimListener(base.Listener):
    """Checks, on each flow and task state change, that ``owner`` still holds ``job``.

    The claim counts as lost when the job is ``UNCLAIMED``, when the board
    names another owner (or none), or when asking raises
    :class:`~flowkit.exceptions.NotFound` or
    :class:`~flowkit.exceptions.JobFailure`. The handler is then called on each
    state change for as long as the claim stays lost.

    Args:
        engine: the engine running the job's flow.
        job: the claimed job (its ``state`` is read).
        board: the jobboard holding it (its ``find_owner(job)`` is called).
        owner: the name the job was claimed under.
        on_job_loss: called as ``on_job_loss(engine, state, details)`` when the
            claim is lost; by default the engine is suspended.

    Raises:
        ValueError: ``on_job_loss`` is not callable.
    """

    def __init__(
        self, engine: Engine, job: _Job, board: _Board, owner: Any, on_job_loss: JobLossHandler | None = None
    ) -> None:
        super().__init__(engine)
        self._job = job
        self._board = board
        self._owner = owner
        if on_job_loss is None:
            self._on_job_loss: JobLossHandler = self._suspend_engine_on_loss
        elif not callable(on_job_loss):
            raise ValueError(f"Custom 'on_job_loss' handler must be callable, not {on_job_loss!r}")
        else:
            self._on_job_loss = on_job_loss

    def _suspend_engine_on_loss(self, engine: Engine, state: str, details: base.Details) -> None:
        """The default handler: ask the engine to stop after what is running now."""
        try:
            engine.suspend()
        except exc.TaskFlowException as error:
            LOG.warning(
                "Failed suspending engine '%s', (previously owned by '%s'):%s%s",
                engine,
                self._owner,
                os.linesep,
                error.pformat(),
            )

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        self._claim_checker(state, details)

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._claim_checker(state, details)

    def _has_been_lost(self) -> bool:
        try:
            job_state = self._job.state
            job_owner = self._board.find_owner(self._job)
        except (exc.NotFound, exc.JobFailure):
            return True
        return job_state == states.UNCLAIMED or job_owner != self._owner

    def _claim_checker(self, state: str, details: base.Details) -> None:
        if not self._has_been_lost():
            LOG.debug("Job '%s' is still claimed (actively owned by '%s')", self._job, self._owner)
            return
        # TaskFlow's words: log searches and alerts written for it keep working.
        LOG.warning("Job '%s' has lost its claim (previously owned by '%s')", self._job, self._owner)
        self._on_job_loss(self._engine, state, details)
