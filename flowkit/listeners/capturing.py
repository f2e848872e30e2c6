"""A listener that keeps what it hears in a list, mostly for tests to inspect.

By default each captured event is stored as a ``(kind, state, details)`` tuple,
``kind`` being :attr:`CaptureListener.FLOW`, :attr:`CaptureListener.TASK` or
:attr:`CaptureListener.RETRY`. Override :meth:`CaptureListener._format_capture`
to store something else, for example compact strings::

    class Capture(CaptureListener):
        @staticmethod
        def _format_capture(kind, state, details):
            return f"{details[kind + '_name']} {state}"
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from flowkit.listeners import base

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["CaptureListener"]


class CaptureListener(base.Listener):
    """Appends each flow, task and retry state change it hears to :attr:`values`.

    Args:
        engine: the engine to watch.
        task_listen_for: the task events to capture.
        flow_listen_for: the flow events to capture.
        retry_listen_for: the retry events to capture.
        capture_flow: capture flow events at all.
        capture_task: capture task events at all.
        capture_retry: capture retry events at all.
        skip_tasks: names of tasks whose events are not captured.
        skip_retries: names of retries whose events are not captured.
        skip_flows: names of flows whose events are not captured.
        values: a list to append to (for example one shared by several
            listeners); a new one by default.

    Attributes:
        values: what was captured, oldest first, each made by
            :meth:`_format_capture`.
    """

    #: The kind of a flow capture (first item of the default tuple).
    FLOW = "flow"
    #: The kind of a task capture.
    TASK = "task"
    #: The kind of a retry capture.
    RETRY = "retry"

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        capture_flow: bool = True,
        capture_task: bool = True,
        capture_retry: bool = True,
        skip_tasks: Iterable[str] | None = None,
        skip_retries: Iterable[str] | None = None,
        skip_flows: Iterable[str] | None = None,
        values: list[Any] | None = None,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._capture_flow = capture_flow
        self._capture_task = capture_task
        self._capture_retry = capture_retry
        self._skip_tasks = frozenset(skip_tasks or ())
        self._skip_retries = frozenset(skip_retries or ())
        self._skip_flows = frozenset(skip_flows or ())
        self.values: list[Any] = [] if values is None else values

    @staticmethod
    def _format_capture(kind: str, state: str, details: base.Details) -> Any:
        """Return what to store for one event; override to store something else."""
        return (kind, state, details)

    def _task_receiver(self, state: str, details: base.Details) -> None:
        if self._capture_task and details["task_name"] not in self._skip_tasks:
            self.values.append(self._format_capture(self.TASK, state, details))

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        if self._capture_retry and details["retry_name"] not in self._skip_retries:
            self.values.append(self._format_capture(self.RETRY, state, details))

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        if self._capture_flow and details["flow_name"] not in self._skip_flows:
            self.values.append(self._format_capture(self.FLOW, state, details))
