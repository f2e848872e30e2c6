"""Trace context through the worker protocol: remote tasks join the flow's trace.

Real Redis, real workers (the Python worker in a process and in a thread of
the test, the Go worker binary), spans read back with the OpenTelemetry SDK's
in-memory exporter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines
from flowkit.engines.worker_based import protocol
from flowkit.patterns import linear_flow
from tests.workers.conftest import WorkerFactory, fresh_topic, load_engine

pytest.importorskip("redis")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402 - optional extra
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from flowkit.listeners.otel import TracingListener  # noqa: E402
from tests.workers.behaviour_tasks import Echo, Fail, TraceParent  # noqa: E402

pytestmark = pytest.mark.timeout(90)


class Recorder:
    """A tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.provider = sdk_trace.TracerProvider()
        self.exporter = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def named(self, name: str) -> Any:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return span


@pytest.fixture
def engine_spans() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.provider.shutdown()


def traceparent_of(span: Any) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_each_worker_hands_the_atom_spans_trace_context_to_the_task(
    spawn_worker: WorkerFactory, redis_flushed_url: str, engine_spans: Recorder
) -> None:
    topic = fresh_topic()
    spawn_worker(topic)
    flow = linear_flow.Flow("traced").add(TraceParent("seen", provides="seen"))
    engine = load_engine(flow, redis_flushed_url, topic)

    with TracingListener(engine, tracer=engine_spans.tracer):
        engine.run()

    execute = engine_spans.named("execute seen")
    flow_span = engine_spans.named("flow traced")
    assert execute.parent.span_id == flow_span.context.span_id
    # The task, on the worker (Python or Go), saw the context of the engine's span for it.
    assert engine.storage.fetch("seen") == traceparent_of(execute)
    # The engine's span names the worker that ran the request.
    assert execute.attributes["flowkit.worker.id"]
    assert not engine.trace_sources  # the listener left the engine as it found it


def test_without_a_tracing_listener_requests_carry_no_trace_context(
    spawn_worker: WorkerFactory, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    spawn_worker(topic)
    engine = load_engine(TraceParent("seen", provides="seen"), redis_flushed_url, topic)
    engine.run()
    assert engine.storage.fetch("seen") == ""


@pytest.fixture
def worker_spans(redis_flushed_url: str) -> Iterator[tuple[str, Recorder]]:
    """A Python worker in this process, tracing into its own provider; yields its topic."""
    with _traced_worker(redis_flushed_url, "tests.workers.behaviour_tasks") as made:
        yield made


@contextlib.contextmanager
def _traced_worker(redis_url: str, tasks: str) -> Iterator[tuple[str, Recorder]]:
    """A Python worker of ``tasks`` in this process, tracing into its own provider."""
    from flowkit.engines.worker_based.worker import Worker

    recorder = Recorder()
    topic = fresh_topic()
    worker = Worker(
        topic=topic,
        tasks=[tasks],
        url=redis_url,
        heartbeat=0.2,
        visibility_timeout=2.0,
        grace=1.0,
        tracer_provider=recorder.provider,
    )
    worker.start()
    try:
        yield topic, recorder
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)
        recorder.provider.shutdown()


def test_the_python_worker_runs_the_task_in_a_child_span_of_the_atom_span(
    worker_spans: tuple[str, Recorder], redis_flushed_url: str, engine_spans: Recorder
) -> None:
    topic, on_worker = worker_spans
    flow = linear_flow.Flow("traced").add(Echo("echo", provides="echoed"), Fail("fail"))
    engine = load_engine(flow, redis_flushed_url, topic, store={"value": 5, "message": "disk full"})

    with TracingListener(engine, tracer=engine_spans.tracer), pytest.raises(Exception, match="disk full"):  # noqa: PT011 - the remote TaskFailed
        engine.run()

    flow_span = engine_spans.named("flow traced")
    remote = {s.name: s for s in on_worker.exporter.get_finished_spans()}
    for atom, action, task in (
        ("echo", "execute", Echo.worker_task_name),
        ("fail", "execute", Fail.worker_task_name),
        ("echo", "revert", Echo.worker_task_name),
    ):
        engine_span = engine_spans.named(f"{action} {atom}")
        span = remote[f"worker {action} {task}"]
        assert span.context.trace_id == flow_span.context.trace_id
        assert span.parent.span_id == engine_span.context.span_id
        assert span.parent.is_remote
        assert span.kind == SpanKind.CONSUMER
        assert span.attributes["flowkit.atom.name"] == atom
        assert span.attributes["flowkit.worker.topic"] == topic
        # The engine's span names the worker the worker's own span says it was.
        assert engine_span.attributes["flowkit.worker.id"] == span.attributes["flowkit.worker.id"]
    assert remote[f"worker execute {Fail.worker_task_name}"].status.status_code == StatusCode.ERROR
    assert remote[f"worker execute {Echo.worker_task_name}"].status.status_code == StatusCode.UNSET


def test_a_traceparent_that_does_not_parse_is_ignored_not_refused(
    worker_spans: tuple[str, Recorder], redis_flushed_url: str
) -> None:
    topic, on_worker = worker_spans
    engine = load_engine(TraceParent("seen", provides="seen"), redis_flushed_url, topic)
    engine.trace_sources.append(lambda atom: "not-a-traceparent")
    engine.run()
    assert engine.storage.fetch("seen") == ""
    assert on_worker.exporter.get_finished_spans() == ()


def test_request_messages_carry_the_traceparent_only_when_given() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    plain = protocol.request_message("i", "r", protocol.EXECUTE, "t", "n", {}, 1.0)
    traced = protocol.request_message("i", "r", protocol.EXECUTE, "t", "n", {}, 1.0, traceparent=value)
    assert "traceparent" not in plain
    assert protocol.decode(protocol.encode(traced, None), None)["traceparent"] == value
    with pytest.raises(protocol.ProtocolError, match="'traceparent' must be a string"):
        protocol.decode(protocol.encode({**plain, "traceparent": 1}, None), None)


def test_a_local_engine_takes_the_listeners_trace_context_only_while_it_is_attached() -> None:
    # Local engines run each call in its atom's trace context (tests/cli/test_tracing.py);
    # a detached listener leaves nothing behind.
    engine = engines.load(Echo("echo", provides="v"), store={"value": 1})
    with TracingListener(engine) as listener:
        assert engine.trace_sources == [listener.traceparent]
        engine.run()
    assert engine.trace_sources == []


def test_the_worker_span_of_a_result_it_cannot_send_is_an_error(
    redis_flushed_url: str, engine_spans: Recorder
) -> None:
    # The task returned, so its span ended well; the result then could not be
    # encoded and the atom failed: the worker's span said UNSET all the same.
    from tests.workers.worker_tasks import Unsendable

    with _traced_worker(redis_flushed_url, "tests.workers.worker_tasks") as (topic, on_worker):
        engine = load_engine(Unsendable("unsendable"), redis_flushed_url, topic)
        with (
            TracingListener(engine, tracer=engine_spans.tracer),
            pytest.raises(Exception, match="returned a result it cannot send"),  # noqa: PT011 - remote
        ):
            engine.run()
        (span,) = [s for s in on_worker.exporter.get_finished_spans() if s.name.startswith("worker execute")]
    assert span.status.status_code == StatusCode.ERROR
    assert "returned a result it cannot send" in span.status.description
    assert engine_spans.named("execute unsendable").status.status_code == StatusCode.ERROR
