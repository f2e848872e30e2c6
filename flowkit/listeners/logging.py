"""Listeners that write an engine's state changes to a :mod:`logging` logger.

:class:`LoggingListener` logs every flow and task state change at one level.
:class:`DynamicLoggingListener` picks the level from what happened: trouble
(failures, reverts, retries) at ``failure_level``, the rest at ``level``, with a
failing task's traceback attached, whether the failure holds a live exception
or only the text recorded where it happened (say, on a remote worker).

Both log to the ``log`` given, else to the class attribute ``_LOGGER`` if a
subclass sets one, else to this module's logger (``flowkit.listeners.logging``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from flowkit import formatters, states
from flowkit._utils.text import log_safe
from flowkit.listeners import base
from flowkit.types import failure as ft

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["DynamicLoggingListener", "FailureFormatterLike", "LoggingListener"]

LOG = logging.getLogger(__name__)

Logger = logging.Logger | logging.LoggerAdapter[Any]
ExcInfo = formatters.ExcInfo


class FailureFormatterLike(Protocol):
    """What :class:`DynamicLoggingListener` needs to describe a failed task.

    :class:`flowkit.formatters.FailureFormatter` (the default) is one; a subclass of
    it, or any object with this ``format`` method, may be passed as ``fail_formatter``.
    """

    def format(self, fail: ft.Failure, atom_matcher: Callable[[Any], bool]) -> tuple[ExcInfo | None, str]:
        """Return ``(exc_info, text)``: what to log as traceback and as extra detail.

        Args:
            fail: the task's failure.
            atom_matcher: tells whether a node of the flow tree (its ``item`` is an
                atom or a flow) is the failed task.
        """
        ...


def _make_matcher(task_name: str) -> Callable[[Any], bool]:
    """Match the atom named ``task_name``, given the atom or a node holding it."""

    def matches(node: Any) -> bool:
        item = getattr(node, "item", node)
        return getattr(item, "name", None) == task_name

    return matches


def _pick_logger(log: Logger | None, class_default: Logger | None) -> Logger:
    if log is not None:
        return log
    return class_default if class_default is not None else LOG


class LoggingListener(base.DumpingListener):
    """Logs each flow and task state change at one level.

    Args:
        engine: the engine to watch.
        task_listen_for: the task events to log.
        flow_listen_for: the flow events to log.
        retry_listen_for: the retry events to hear (retries are not logged).
        log: the logger (or adapter) to write to.
        level: the level to log at.
    """

    #: The logger used when none is passed; subclasses may set one.
    _LOGGER: Logger | None = None

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        log: Logger | None = None,
        level: int = logging.DEBUG,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._logger = _pick_logger(log, self._LOGGER)
        self._level = level

    def _dumps(self) -> bool:
        # A subclass's own _dump may write elsewhere than to the logger: it is always called.
        return type(self)._dump is not LoggingListener._dump or self._logger.isEnabledFor(self._level)

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.log(self._level, message, *args, **kwargs)


class DynamicLoggingListener(base.Listener):
    """Logs each flow and task state change at a level fitting what happened.

    Flows entering ``FAILURE`` or ``REVERTED``, and tasks entering ``FAILURE``,
    ``REVERTED``, ``REVERT_FAILURE`` or ``RETRYING``, are logged at
    ``failure_level``; everything else at ``level``. A task that finishes with a
    :class:`~flowkit.types.failure.Failure` is always logged at
    ``failure_level``, with its traceback: as ``exc_info`` when the exception is
    live, as text in the message otherwise.

    A successful task's result is logged only when ``level`` is enabled on the
    logger, and never for tasks named in ``hide_inputs_outputs_of`` (results
    can be large or secret).

    Args:
        engine: the engine to watch.
        task_listen_for: the task events to log.
        flow_listen_for: the flow events to log.
        retry_listen_for: the retry events to hear (retries are not logged).
        log: the logger (or adapter) to write to.
        failure_level: the level for failures and reverts.
        level: the level for everything else.
        hide_inputs_outputs_of: names of tasks whose results are never logged.
        fail_formatter: turns a task's failure into ``(exc_info, text)``; see
            :class:`FailureFormatterLike`; a
            :class:`flowkit.formatters.FailureFormatter` by default.
        mask_inputs_keys: input keys a formatter should mask.
        mask_outputs_keys: output keys a formatter should mask.
    """

    #: The logger used when none is passed; subclasses may set one.
    _LOGGER: Logger | None = None

    #: States that mean something went wrong.
    _FAILURE_STATES: tuple[str, ...] = (states.FAILURE, states.REVERT_FAILURE)

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        log: Logger | None = None,
        failure_level: int = logging.WARNING,
        level: int = logging.DEBUG,
        hide_inputs_outputs_of: Iterable[str] = (),
        fail_formatter: FailureFormatterLike | None = None,
        mask_inputs_keys: Iterable[str] = (),
        mask_outputs_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._failure_level = failure_level
        self._level = level
        task_trouble = (states.FAILURE, states.REVERTED, states.RETRYING, states.REVERT_FAILURE)
        self._task_log_levels: dict[str, int] = dict.fromkeys(task_trouble, failure_level)
        flow_trouble = (states.FAILURE, states.REVERTED)
        self._flow_log_levels: dict[str, int] = dict.fromkeys(flow_trouble, failure_level)
        self._hide_inputs_outputs_of = frozenset(hide_inputs_outputs_of)
        self._mask_inputs_keys = frozenset(mask_inputs_keys)
        self._mask_outputs_keys = frozenset(mask_outputs_keys)
        self._logger = _pick_logger(log, self._LOGGER)
        self._fail_formatter: FailureFormatterLike = fail_formatter or formatters.FailureFormatter(
            engine,
            hide_inputs_outputs_of=self._hide_inputs_outputs_of,
            mask_inputs_keys=self._mask_inputs_keys,
            mask_outputs_keys=self._mask_outputs_keys,
        )

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        level = self._flow_log_levels.get(state, self._level)
        if not self._logger.isEnabledFor(level):
            return  # nothing to escape for a line not written
        # A conductor's flow name is the flow detail's, written to the database by
        # whoever posted the job: escaped, it cannot forge a log line of its own.
        self._logger.log(
            level,
            "Flow '%s' (%s) transitioned into state '%s' from state '%s'",
            log_safe(details["flow_name"]),
            log_safe(details["flow_uuid"]),
            state,
            details.get("old_state"),
        )

    def _task_receiver(self, state: str, details: base.Details) -> None:
        name = details["task_name"]
        transition = "Task '%s' (%s) transitioned into state '%s' from state '%s'"
        level = self._task_log_levels.get(state, self._level)
        result = details.get("result")
        failed = isinstance(result, ft.Failure) and "result" in details and state in base.FINISH_STATES
        if not self._logger.isEnabledFor(self._failure_level if failed else level):
            return  # nothing to escape for a line not written
        head = (log_safe(name), log_safe(details["task_uuid"]), state, details["old_state"])
        if "result" not in details or state not in base.FINISH_STATES:
            self._logger.log(level, transition, *head)
            return
        if isinstance(result, ft.Failure):
            exc_info, text = self._fail_formatter.format(result, _make_matcher(name))
            if text:
                self._logger.log(
                    self._failure_level, transition + "%s%s", *head, os.linesep, text, exc_info=exc_info
                )
            else:
                self._logger.log(self._failure_level, transition, *head, exc_info=exc_info)
            return
        # Results can be big: format them only when they would be shown.
        show_result = self._logger.isEnabledFor(self._level) or state == states.FAILURE
        if show_result and name not in self._hide_inputs_outputs_of:
            self._logger.log(level, transition + " with result '%s'", *head, result)
        else:
            self._logger.log(level, transition, *head)
