"""Progress reports and other events from tasks running in child processes.

A task in a process pool cannot reach the engine's runtime, so when flowkit makes
the pool itself (``executor="processes"``) each child gets one end of a
multiprocessing queue at start-up; a task's ``update_progress`` puts
``(atom name, progress)`` on it, and a thread in the engine's process hands each
report to the runtime as if the task ran locally. Other events the task notifies
on its own notifier travel the same way to its listeners in the engine's process
(as TaskFlow's process executor sends them); one whose details do not pickle is
dropped with a warning. A process pool you pass in was started without that
queue, so its tasks' progress and events stay in the child.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["ProgressRelay", "attach_in_child", "child_initializer"]

_child_queue: Any = None


def child_initializer(reports: Any) -> None:
    """Pool initializer: remember where this child sends progress reports."""
    global _child_queue  # noqa: PLW0603 - one queue per child process, set once at start-up
    _child_queue = reports


class _Event(NamedTuple):
    """An event a task notified on its own notifier in a child (progress travels as a plain tuple)."""

    name: str
    event_type: Any
    details: dict[str, Any]


def _report_from_child(atom: Any, progress: float, details: dict[str, Any] | None = None) -> None:
    _child_queue.put((atom.name, progress, details))


def _event_from_child(name: str, event_type: Any, details: dict[str, Any]) -> None:
    try:
        _child_queue.put(_Event(name, event_type, details))  # pickled before anything is written
    except Exception:  # the task's run goes on, as when a worker cannot send an event
        import logging

        logging.getLogger(__name__).warning(
            "event %r of task '%s' cannot be sent to the engine (it does not pickle); dropped",
            event_type,
            name,
            exc_info=True,
        )


def attach_in_child(atom: Any) -> None:
    """In a child, route ``atom``'s progress and other events to the parent (if the pool has a queue)."""
    if _child_queue is not None:
        atom._progress_sink = _report_from_child
        atom._event_sink = functools.partial(_event_from_child, atom.name)


class ProgressRelay:
    """Carries progress reports from pool children to ``deliver`` in this process."""

    def __init__(
        self,
        deliver: Callable[[str, float, dict[str, Any] | None], None],
        deliver_event: Callable[[str, Any, dict[str, Any]], None] | None = None,
    ) -> None:
        # Imported here: only a process pool needs it, and it brings pickle, socket
        # and selectors (~30 ms) to every run of the parallel engine otherwise.
        import multiprocessing

        # A SimpleQueue writes each report into its pipe before put() returns, so a
        # child's reports are all in the pipe by the time its call's result is sent.
        self.queue: Any = multiprocessing.get_context().SimpleQueue()
        self._deliver = deliver
        self._deliver_event = deliver_event
        # Held while a report is taken and delivered, so drain() and the pump
        # deliver every report once and in the order the child sent them.
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name="flowkit-progress", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._closed:
            self.queue._reader.poll(None)  # wait for a report without holding the lock
            self.drain()

    def drain(self) -> None:
        """Deliver every report already sent, in this thread (any thread).

        Called before a call's outcome is handed to the engine: the pump thread
        may not have read that call's last reports yet, and a report handed in
        after its call's outcome is dropped as stale.
        """
        with self._lock:
            while not self._closed and not self.queue.empty():
                report = self.queue.get()
                if report is None:
                    self._closed = True
                elif isinstance(report, _Event):
                    if self._deliver_event is not None:
                        self._deliver_event(*report)
                else:
                    self._deliver(*report)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        self.queue.put(None)
        self._thread.join()
        self.queue.close()
