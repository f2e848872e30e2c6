"""Trace context on the worker side: a request's task runs inside the engine's trace.

An engine traced by :class:`~flowkit.listeners.otel.TracingListener` puts the
W3C ``traceparent`` of the atom's span in each request. The worker then

* keeps it where the task can read it, :func:`current_traceparent` (for tasks
  that call other services and pass the context on themselves);
* when OpenTelemetry is installed in the worker, runs the task in a span
  ``worker <action> <task>`` whose parent is the engine's atom span, made
  current, so spans the task makes nest under it and the whole remote run
  appears in the flow's trace. The spans go wherever the worker process's
  tracer provider (the global one, or the worker's ``tracer_provider``)
  exports them.

A request without a ``traceparent``, or one that does not parse (W3C Trace
Context says to ignore it then), runs exactly as before: no span, no cost
beyond a dictionary lookup.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["current_traceparent", "request_span", "valid_traceparent"]

#: version (not ff) - trace id (not all zeros) - parent span id (not all zeros) - flags.
_TRACEPARENT: Final = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")

_CURRENT: ContextVar[str | None] = ContextVar("flowkit_worker_traceparent", default=None)


def current_traceparent() -> str | None:
    """The ``traceparent`` the request being run in this thread carried, or None.

    For a task that passes the trace context on to services it calls. Outside
    a worker, or for a request that carried none, it is None.
    """
    return _CURRENT.get()


def valid_traceparent(value: Any) -> str | None:
    """``value`` when it is a W3C ``traceparent`` this side understands, else None."""
    if type(value) is str and _TRACEPARENT.fullmatch(value):
        return value
    return None


@functools.cache
def _otel() -> Any:
    """OpenTelemetry's trace API and W3C propagator, or None when it is not installed (asked once)."""
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return trace, TraceContextTextMapPropagator()


@contextlib.contextmanager
def request_span(
    request: Mapping[str, Any], worker_id: str, topic: str, tracer_provider: Any
) -> Iterator[None]:
    """Run the body as part of ``request``'s trace (see the module docstring).

    Args:
        request: the decoded request.
        worker_id: this worker, for the span's attributes.
        topic: the topic it serves.
        tracer_provider: where the span's tracer comes from (None: the global one).
    """
    traceparent = valid_traceparent(request.get("traceparent"))
    if traceparent is None:
        yield
        return
    token = _CURRENT.set(traceparent)
    try:
        otel = _otel()
        if otel is None:
            yield
            return
        trace, propagator = otel
        parent = propagator.extract({"traceparent": traceparent})
        tracer = trace.get_tracer("flowkit.worker", tracer_provider=tracer_provider)
        name = f"worker {request['action']} {request['task']}"
        attributes = {
            "flowkit.atom.name": request["name"],
            "flowkit.task": request["task"],
            "flowkit.worker.id": worker_id,
            "flowkit.worker.topic": topic,
            "flowkit.request.id": request["id"],
        }
        with tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
        ):
            yield
    finally:
        _CURRENT.reset(token)
