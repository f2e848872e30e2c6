"""A task's ``execute`` and ``revert`` run inside its atom's span, on any executor.

:class:`~flowkit.listeners.otel.TracingListener` opens a span per execute and
revert when the atom changes state, in the engine's thread. The call itself
runs elsewhere: inline, on a pool thread, on the asyncio loop, in a child
process or on a Dask worker. So that spans the task makes (and the context it
passes on to services it calls) nest under the atom's span, the runtime hands
the call the span's W3C ``traceparent``, a string that pickles, and
:func:`run_traced` makes it the current context around the call, as the
Python worker does for remote tasks.

Only runs with a tracing listener get here: the module, and OpenTelemetry, are
not imported otherwise. Where OpenTelemetry is not installed (a child process
or a Dask worker without it), the call runs untraced.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run_traced"]


@functools.cache
def _otel() -> Any:
    """OpenTelemetry's context API and W3C propagator, or None when it is not installed (asked once)."""
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return context, TraceContextTextMapPropagator()


def run_traced(
    fn: Callable[[Any, dict[str, Any]], Any], traceparent: str, atom: Any, kwargs: dict[str, Any]
) -> Any:
    """``fn(atom, kwargs)`` with ``traceparent`` as the current trace context.

    A coroutine (an ``async def`` task) is wrapped so that the context is
    current while it runs, wherever it is awaited.
    """
    otel = _otel()
    if otel is None:
        return fn(atom, kwargs)
    context, propagator = otel
    parent = propagator.extract({"traceparent": traceparent})
    token = context.attach(parent)
    try:
        value = fn(atom, kwargs)
    finally:
        context.detach(token)
    if type(value) is types.CoroutineType:
        return _within(value, context, parent)
    return value


async def _within(coro: Coroutine[Any, Any, Any], context: Any, parent: Any) -> Any:
    token = context.attach(parent)
    try:
        return await coro
    finally:
        context.detach(token)
