"""OpenTelemetry tracing: a span per flow run and per atom execution and revert.

::

    from flowkit.listeners.otel import TracingListener

    with TracingListener(engine):           # the global tracer provider
        engine.run()

The flow run's span (``flow <name>``) is a child of whatever span is current
when the run starts, so a run inside your own span joins your trace. Each
``execute`` and ``revert`` of an atom is a child span (``execute <atom>``,
``revert <atom>``) with these attributes:

``flowkit.flow.name``, ``flowkit.flow.uuid``
    the flow run.
``flowkit.atom.name``, ``flowkit.atom.uuid``, ``flowkit.atom.kind``
    the atom (``task`` or ``retry``).
``flowkit.atom.attempt``
    which execution of the atom (1 for the first; a retry's RETRY adds one).
    A resumed run counts on from the executions the event log recorded in
    earlier runs (:mod:`flowkit.listeners.events`), so the span and the
    event of one execute carry the same number; without an event log from
    those runs, the count starts again at 1.
``flowkit.state``
    the state it ended in (atoms and the flow).
``flowkit.failure.type``, ``flowkit.failure.message``
    when it failed (the span's status is then ERROR).
``flowkit.cache.hit``
    on a cacheable atom's ``execute`` span when a cache is in use: True when
    its result came from the cache and ``execute`` was not called; the
    ``revert`` span carries it too: True for a hit (its revert is not
    called), False for a miss (its revert is called).
``flowkit.worker.id``
    on the worker-based engine, the worker that started the request (the
    worker's id in the protocol; the span of a request no worker started, one
    that timed out in the queue, has none).

Each ``run()`` is a flow span of its own. A run that resumes an earlier one
(after a suspension, an interrupt or a crash, in this engine or another) is
linked to the earlier run's flow span, whose ``traceparent`` the flow detail
keeps under :data:`TRACEPARENT_META_KEY`.

A task's ``execute`` and ``revert`` run with the atom's span current (on
every executor: the listener joins the engine's ``trace_sources``), so the
spans a task makes nest under it.

Spans are timed by the notifications, on the engine's side: for a task run by
a remote worker, the span covers the round trip. On the worker-based engine
each request also carries the W3C ``traceparent`` of its atom's span (the
listener joins the engine's ``trace_sources``), so what the worker does joins
the flow's trace: the Python worker runs the task in a child span of its own
(when OpenTelemetry is installed there), and both workers hand the context to
the task. Needs ``opentelemetry-api``
(``pip install 'flowkit[otel]'``) and, to export anything, an SDK configured
by the application.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flowkit import states as st
from flowkit.listeners import base
from flowkit.listeners._event_model import META_KEY, recorded_attempts
from flowkit.types.failure import Failure

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["TRACEPARENT_META_KEY", "TracingListener"]

#: The flow detail's metadata key of the W3C ``traceparent`` of its latest run's flow span.
TRACEPARENT_META_KEY = "traceparent"

_EXECUTE_ENDS = frozenset({st.SUCCESS, st.FAILURE})
_REVERT_ENDS = frozenset({st.REVERTED, st.REVERT_FAILURE})
_FLOW_ENDS = frozenset({st.SUCCESS, st.REVERTED, st.FAILURE, st.SUSPENDED})
_FAILED = frozenset({st.FAILURE, st.REVERT_FAILURE})


def _trace_api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("TracingListener needs OpenTelemetry: pip install 'flowkit[otel]'") from err
    return trace


def _record_exception(span: Any, failure: Failure, kind: str) -> None:
    """The "exception" event OpenTelemetry's semantic conventions define, from a Failure.

    ``span.record_exception`` wants the exception object, which a failure from
    a worker or a child process no longer has: the record form is enough.
    """
    trace = failure.traceback_str
    stack = f"Traceback (most recent call last):\n{trace}" if trace else ""
    span.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": failure.exception_str,
            "exception.stacktrace": f"{stack}{kind}: {failure.exception_str}",
        },
    )


def _traceparent(span: Any) -> str | None:
    """The W3C ``traceparent`` of ``span``, or None for a span that records nothing (no SDK)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _version() -> str | None:
    """flowkit's installed version, for the tracer's name (read without importing flowkit)."""
    from importlib import metadata

    try:
        return metadata.version("flowkit")
    except metadata.PackageNotFoundError:
        return None


class TracingListener(base.Listener):
    """Emits OpenTelemetry spans for a flow run and each atom's execute and revert.

    Args:
        engine: the engine to trace.
        tracer: the tracer to make spans with (default: ``flowkit`` from the
            global tracer provider, or from ``tracer_provider``).
        tracer_provider: where to get the default tracer from.
    """

    def __init__(self, engine: Engine, tracer: Any = None, tracer_provider: Any = None) -> None:
        super().__init__(engine)
        trace = _trace_api()
        if tracer is None:
            tracer = trace.get_tracer("flowkit", _version(), tracer_provider=tracer_provider)
        self._trace = trace
        self._tracer = tracer
        self._lock = threading.Lock()
        self._flow_span: Any = None
        self._flow_attrs: dict[str, str] = {}
        #: atom name -> its open span.
        self._spans: dict[str, Any] = {}
        self._attempts: dict[str, int] = {}
        #: The exception type that ended the ``with`` block, if any (see __exit__).
        self._interrupt: str | None = None

    def register(self) -> None:
        """Start listening, and give a worker-based engine's requests the atom's trace context."""
        super().register()
        sources = getattr(self._engine, "trace_sources", None)
        if isinstance(sources, list) and self.traceparent not in sources:
            sources.append(self.traceparent)
        watchers = getattr(self._engine, "start_watchers", None)
        if isinstance(watchers, list) and self.started_by not in watchers:
            watchers.append(self.started_by)

    def traceparent(self, atom: str) -> str | None:
        """The W3C ``traceparent`` of ``atom``'s open span, or None when it has none.

        Called by the worker-based engine as it builds the request for
        ``atom`` (after the RUNNING or REVERTING notification opened its span).
        """
        with self._lock:
            span = self._spans.get(atom)
        return None if span is None else _traceparent(span)

    def started_by(self, atom: str, worker: str) -> None:
        """Name ``worker`` on ``atom``'s open span (the worker-based engine calls this).

        Called from the engine's reply reader when a worker reports that it
        started the atom's request.
        """
        with self._lock:
            span = self._spans.get(atom)
            if span is not None:
                span.set_attribute("flowkit.worker.id", worker)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Detach; spans the run left open are ended as interrupted by ``exc_type``, if any."""
        self._interrupt = None if exc_type is None else exc_type.__name__
        super().__exit__(exc_type, exc_value, tb)

    def deregister(self) -> None:
        """Stop listening; end any span still open, as interrupted.

        A span is still open only when the run stopped before the atom (or the
        flow) reached an end state: an interrupt (KeyboardInterrupt,
        SystemExit) leaves them RUNNING (or REVERTING). Such a span says so
        (``flowkit.interrupted``, status ERROR) rather than ending as if it went well.
        """
        super().deregister()
        sources = getattr(self._engine, "trace_sources", None)
        if isinstance(sources, list) and self.traceparent in sources:
            sources.remove(self.traceparent)
        watchers = getattr(self._engine, "start_watchers", None)
        if isinstance(watchers, list) and self.started_by in watchers:
            watchers.remove(self.started_by)
        with self._lock:
            for span in self._spans.values():
                self._end_interrupted(span, st.REVERTING if span.name.startswith("revert ") else st.RUNNING)
            self._spans.clear()
            if self._flow_span is not None:
                self._end_interrupted(self._flow_span, st.RUNNING)
                self._flow_span = None

    def _end_interrupted(self, span: Any, state: str) -> None:
        reason = "interrupted" if self._interrupt is None else f"interrupted: {self._interrupt}"
        span.set_attribute("flowkit.state", state)
        span.set_attribute("flowkit.interrupted", True)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, reason))
        span.end()

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        with self._lock:
            if state == st.RUNNING and self._flow_span is None:
                self._open_flow_span(details["flow_name"], details["flow_uuid"])
                if details.get("old_state") not in (None, st.PENDING):
                    self._count_earlier_attempts()
                    self._open_in_doubt()
            elif state in _FLOW_ENDS and self._flow_span is not None:
                span, self._flow_span = self._flow_span, None
                span.set_attribute("flowkit.state", state)
                if state in (st.REVERTED, st.FAILURE):
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"flow ended {state}"))
                span.end()

    def _open_flow_span(self, name: str, uuid: str) -> None:
        """Start the run's flow span, linked to the earlier run's, and keep its traceparent."""
        self._flow_attrs = {"flowkit.flow.name": name, "flowkit.flow.uuid": uuid}
        self._flow_span = self._tracer.start_span(
            f"flow {name}", attributes=self._flow_attrs, links=self._earlier_run()
        )
        traceparent = _traceparent(self._flow_span)
        if traceparent is not None:
            self._engine.storage.update_flow_metadata({TRACEPARENT_META_KEY: traceparent})

    def _in_run(self) -> bool:
        return self._flow_span is not None

    def _begin_unannounced_run(self, atom: str, was: str | None) -> None:
        """Open the flow span of a run whose start no notice told: ``atom``'s notice did.

        Its first notice may be the outcome of ``atom``, which the interrupt
        left ``was`` (RUNNING), already stored: it is in doubt like the others.
        """
        storage = self._engine.storage
        self._open_flow_span(storage.flow_name, storage.flow_uuid)
        self._count_earlier_attempts()
        self._open_in_doubt(atom, was)

    def _earlier_run(self) -> list[Any]:
        """A link to the flow span of the run this one continues, if one was traced.

        A run resumed (after a suspension, an interrupt or a crash, by this
        engine or another one) is a flow span of its own, in the trace current
        when it starts; the link ties it to the earlier run's span, whose
        ``traceparent`` the flow detail keeps (saved with the engine's own
        writes, so another process finds it).
        """
        traceparent = self._engine.storage.flow_meta.get(TRACEPARENT_META_KEY)
        if not isinstance(traceparent, str):
            return []
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {"traceparent": traceparent}
        context = self._trace.get_current_span(
            TraceContextTextMapPropagator().extract(carrier)
        ).get_span_context()
        return [self._trace.Link(context)] if context.is_valid else []

    def _count_earlier_attempts(self) -> None:
        """Take up the attempt counts the event log stored in earlier runs.

        Read as the run starts, before any atom of it runs (an event log
        attached to this engine then has not yet written this run's events),
        from the same stored events the event log numbers its attempts from.
        """
        if not self._engine.storage.flow_meta.get(META_KEY):
            return  # no event log was kept: nothing to count on from
        run = getattr(self._engine.storage, "run_state", None)
        records = getattr(run, "records", None)
        if not records:
            return
        for record in list(records.values()):
            attempts = recorded_attempts(record.meta)
            if attempts:
                self._attempts[record.name] = attempts

    def _open_in_doubt(self, heard: str | None = None, was: str | None = None) -> None:
        """Open spans for the atoms a resumed run finds RUNNING or REVERTING.

        The engine runs (or reverts) them again without announcing it, since
        they never left that state: their outcome would otherwise arrive with
        no span to end, and that execute would be missing from the trace.
        Their spans start with the run, which takes them up first. ``heard``,
        whose notice is being handled, was in ``was`` as the run began.
        """
        run = getattr(self._engine.storage, "run_state", None)
        records = getattr(run, "records", None)
        if not records:
            return
        for record in list(records.values()):
            state = was if record.name == heard and was is not None else record.state
            if state in (st.RUNNING, st.REVERTING):
                self._start("retry" if record.is_retry else "task", record.name, record.uuid, state)

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._atom("task", details["task_name"], details["task_uuid"], state, details)

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        self._atom("retry", details["retry_name"], details["retry_uuid"], state, details)

    def _atom(self, kind: str, name: str, uuid: str, state: str, details: base.Details) -> None:
        with self._lock:
            if self._flow_span is None:  # inline first: this runs for every notice
                self._take_up_run(name, state, details)
            if state in (st.RUNNING, st.REVERTING):
                self._start(kind, name, uuid, state)
            elif state in _EXECUTE_ENDS or state in _REVERT_ENDS or state == st.PENDING:
                # PENDING straight from RUNNING: a loop's until said "not yet" and
                # its loop runs again; its execute ended there, not at the next one.
                span = self._spans.pop(name, None)
                if span is None:
                    return
                span.set_attribute("flowkit.state", state)
                hit = details.get("cache_hit")
                if type(hit) is bool:  # a cacheable atom: whether its call (or revert) was skipped
                    span.set_attribute("flowkit.cache.hit", hit)
                if state in _FAILED:
                    result = details.get("result")
                    if isinstance(result, Failure):
                        names = result.exception_type_names
                        kind = names[0] if names else "Exception"
                        span.set_attribute("flowkit.failure.type", kind)
                        span.set_attribute("flowkit.failure.message", result.exception_str)
                        message = f"{kind}: {result.exception_str}"
                        _record_exception(span, result, kind)
                    else:
                        message = state
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message))
                span.end()

    def _start(self, kind: str, name: str, uuid: str, state: str) -> None:
        leftover = self._spans.pop(name, None)
        if leftover is not None:  # in doubt (a resumed run): close what never ended
            leftover.end()
        if state == st.RUNNING:
            self._attempts[name] = self._attempts.get(name, 0) + 1
        action = "execute" if state == st.RUNNING else "revert"
        context = None
        if self._flow_span is not None:
            context = self._trace.set_span_in_context(self._flow_span)
        self._spans[name] = self._tracer.start_span(
            f"{action} {name}",
            context=context,
            attributes={
                **self._flow_attrs,
                "flowkit.atom.name": name,
                "flowkit.atom.uuid": uuid,
                "flowkit.atom.kind": kind,
                "flowkit.atom.attempt": self._attempts.get(name, 1),
            },
        )
