"""Running one request's task inside a worker: arguments in, outcome out, progress on the side.

Kept apart from the worker loop because it is the part that touches user code:
it builds a fresh task per request, turns revert records back into
:class:`~flowkit.types.failure.Failure` objects, runs ``async def`` methods to
completion, makes JSON objects into the pydantic models ``execute``'s
annotations ask for, and throttles progress reports so a chatty task cannot flood the
engine's reply stream (a task that reports a few times, as most do, has every report
sent, as the protocol asks and TaskFlow does). Other events the task notifies on its
own notifier are handed on as they come, none held back: each may mean something.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from flowkit import task as task_module
from flowkit import typed
from flowkit.engines.worker_based import protocol
from flowkit.types.failure import Failure

__all__ = ["PROGRESS_BURST", "PROGRESS_INTERVAL", "EventSink", "ProgressThrottle", "call_task"]

EventSink = task_module.EventSink
"""``sink(event_type, details)``: receives the events a task notifies, progress aside."""

#: Reports a task may send back to back; past them, one per :data:`PROGRESS_INTERVAL`.
PROGRESS_BURST = 20
#: Seconds in which a task earns back the right to send one more report.
PROGRESS_INTERVAL = 0.05


class ProgressThrottle:
    """Pass a task's progress reports on: all of a burst, then one per :data:`PROGRESS_INTERVAL`.

    A token bucket: :data:`PROGRESS_BURST` reports go out at once, and one
    more is allowed every interval. A report beyond that is kept, replacing
    the one kept before, and :meth:`flush` sends it at the end.

    Args:
        send: called with a progress value to send it.
        monotonic: the clock the interval is measured on (the worker's, so
            tests can move it).
    """

    __slots__ = ("_at", "_monotonic", "_send", "_tokens", "_unsent")

    def __init__(
        self, send: Callable[[float], None], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._send = send
        self._monotonic = monotonic
        self._tokens = float(PROGRESS_BURST)
        self._at = monotonic()
        self._unsent: float | None = None

    def report(self, _task: task_module.BaseTask, progress: float, _details: object = None) -> None:
        """The task's progress sink: send now, or keep the value for later (details stay here)."""
        now = self._monotonic()
        self._tokens = min(PROGRESS_BURST, self._tokens + (now - self._at) / PROGRESS_INTERVAL)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._unsent = None
            self._send(progress)
        else:
            self._unsent = progress

    def flush(self) -> None:
        """Send the last reported value if the rate limit held it back."""
        if self._unsent is not None:
            value, self._unsent = self._unsent, None
            self._send(value)


def call_task(
    task_cls: type[task_module.BaseTask],
    request: Mapping[str, Any],
    progress: Callable[[task_module.BaseTask, float], None] | None = None,
    events: EventSink | None = None,
) -> Any:
    """Execute or revert a fresh instance of ``task_cls`` as ``request`` asks; return its outcome.

    Args:
        task_cls: the registered class; instantiated with the atom's name.
        request: a decoded, valid request message.
        progress: receives the task's ``update_progress`` reports.
        events: receives every other event the task notifies on its own
            notifier (``self.notifier.notify("A", {...})``), as it is notified.

    Raises:
        BaseException: whatever the task raised.
    """
    task = task_cls(name=request["name"])
    if progress is not None:
        task._progress_sink = progress
    if events is not None:
        # Its notifier, if the task ever uses one, hands events here: none is made per request.
        task._event_sink = events
    arguments = _typed_arguments(task, request["arguments"])
    executing = request["action"] == protocol.EXECUTE
    extras = {} if executing else _revert_extras(request)
    # The hooks around the call run as in an engine's own process (and as TaskFlow's
    # workers run them): the post-hook whatever happened, the pre-hook's failure too.
    try:
        if executing:
            task.pre_execute()
            outcome = task.execute(**arguments)
        else:
            task.pre_revert()
            outcome = task.revert(**arguments, **extras)
        if inspect.isawaitable(outcome):
            # A fresh loop per call: pool threads have none, and tasks share nothing across calls.
            outcome = asyncio.run(_awaited(outcome))
    finally:
        if executing:
            task.post_execute()
        else:
            task.post_revert()
    return outcome


def _typed_arguments(task: task_module.BaseTask, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with those ``execute`` types as pydantic models made into the models.

    Models cross the wire as JSON objects; the engine side turns them back into
    models before a local call, and this does the same before a remote one.

    Raises:
        InvalidResult: an argument cannot be made into its model.
    """
    models = typed.model_inputs(task)
    if models is None:
        return arguments
    arguments = dict(arguments)
    typed.coerce_inputs(task.name, models, arguments)
    return arguments


def _revert_extras(request: Mapping[str, Any]) -> dict[str, Any]:
    if "failure" in request:
        result: Any = Failure.from_dict(request["failure"])
    else:
        result = request.get("result")
    failures = {name: Failure.from_dict(record) for name, record in request["flow_failures"].items()}
    return {task_module.REVERT_RESULT: result, task_module.REVERT_FLOW_FAILURES: failures}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
