"""OpenTelemetry spans from TracingListener, read back with the SDK's in-memory exporter."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowkit import engines, exceptions, retry
from flowkit.listeners.otel import TracingListener
from flowkit.patterns import linear_flow, loop_flow
from flowkit.persistence import backends
from tests import services
from tests.cli._flows import CardDeclined, Charge, Step, StopsOnce
from tests.cli.conftest import SOURCE_ROOT, command_env


@pytest.fixture
def spans() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


@contextlib.contextmanager
def _stopped_on_sqlite(tmp_path: Any, watch: Callable[[Any], list[Any]] = lambda engine: []) -> Iterator[Any]:
    """Run ``a, b`` on SQLite until ``b`` stops the run (left RUNNING), watched by ``watch(engine)``'s
    listeners; yield a new engine over the stored flow detail, as a resume in another process makes."""
    StopsOnce.armed = True
    with backends.backend(f"sqlite:///{tmp_path}/runs.db") as backend:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        flow = linear_flow.Flow("f").add(Step("a"), StopsOnce("b"))
        engine = engines.load(flow, backend=backend)
        with pytest.raises(KeyboardInterrupt), contextlib.ExitStack() as listening:
            for listener in watch(engine):
                listening.enter_context(listener)
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        yield engines.load(flow, flow_detail=detail, backend=backend)


def test_an_atom_run_again_after_a_crash_has_its_execute_span(
    spans: tuple[Any, InMemorySpanExporter], tmp_path: Any
) -> None:
    # The engine does not announce the restart of an atom left RUNNING: its
    # SUCCESS found no open span, and that execute was missing from the trace.
    tracer, exporter = spans
    with _stopped_on_sqlite(tmp_path) as resumed, TracingListener(resumed, tracer=tracer):
        resumed.run()
    found = _by_name(exporter)
    (flow_span,) = found["flow f"]
    (again,) = found["execute b"]
    assert again.attributes["flowkit.state"] == "SUCCESS"
    assert again.parent.span_id == flow_span.context.span_id
    assert "execute a" not in found  # done in the first run: not run again


def test_a_loops_until_span_ends_when_it_answers_not_yet(spans: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    answers = iter([False, True])
    loop = loop_flow.Flow("poll", Step("check"), until=lambda: next(answers), max_iterations=3)
    engine = engines.load(loop)
    with TracingListener(engine, tracer=tracer):
        engine.run()
    found = _by_name(exporter)
    first, second = sorted(found["execute poll^until"], key=lambda s: s.start_time)
    # The first answer's span ends with that answer, before the body runs again.
    assert first.attributes["flowkit.state"] == "PENDING"
    assert first.end_time <= max(s.start_time for s in found["execute check"])
    assert second.attributes["flowkit.state"] == "SUCCESS"
    assert [s.attributes["flowkit.atom.attempt"] for s in (first, second)] == [1, 2]


def test_a_local_run_gives_a_flow_span_with_a_child_per_execute_and_revert(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    payment = linear_flow.Flow("payment", retry=retry.Times(2, "r1", revert_all=True)).add(Charge("charge"))
    flow = linear_flow.Flow("shop").add(Step("reserve"), payment)
    engine = engines.load(flow, store={"amount": 500})
    with (
        tracer.start_as_current_span("caller") as caller,
        TracingListener(engine, tracer=tracer),
        contextlib.suppress(CardDeclined),
    ):
        engine.run()
    found = _by_name(exporter)
    (flow_span,) = found["flow shop"]
    # The run joins the caller's trace, as a child of the span current when it started.
    assert flow_span.parent.span_id == caller.get_span_context().span_id
    assert flow_span.attributes["flowkit.flow.uuid"] == engine.storage.flow_uuid
    assert flow_span.attributes["flowkit.state"] == "REVERTED"
    assert flow_span.status.status_code == StatusCode.ERROR
    charges = sorted(found["execute charge"], key=lambda s: s.start_time)
    assert [s.attributes["flowkit.atom.attempt"] for s in charges] == [1, 2]
    for span in charges:
        assert span.parent.span_id == flow_span.context.span_id
        assert span.context.trace_id == caller.get_span_context().trace_id
        assert span.attributes["flowkit.state"] == "FAILURE"
        assert span.attributes["flowkit.failure.type"].endswith("CardDeclined")
        assert span.attributes["flowkit.failure.message"] == "card declined for 500"
        assert span.status.status_code == StatusCode.ERROR
    (reserve,) = found["execute reserve"]
    assert (
        reserve.attributes["flowkit.atom.kind"] == "task" and reserve.status.status_code == StatusCode.UNSET
    )
    (revert,) = found["revert reserve"]
    assert revert.attributes["flowkit.state"] == "REVERTED" and revert.start_time >= reserve.end_time
    assert found["execute r1"][0].attributes["flowkit.atom.kind"] == "retry"
    assert all(s.end_time is not None for s in exporter.get_finished_spans())


@contextlib.contextmanager
def _python_worker(redis_url: str, topic: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "worker", "--redis", redis_url, "--topic", topic,
         "--tasks", "tests.workers.worker_tasks"],
        env=command_env(),
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_worker_based_run_traces_each_remote_task_under_the_flow(
    spans: tuple[Any, InMemorySpanExporter], redis_flushed_url: str
) -> None:
    services.require_module("redis", "redis")
    from tests.workers.worker_tasks import Add

    tracer, exporter = spans
    topic = f"otel-{uuid.uuid4().hex[:8]}"
    flow = linear_flow.Flow("remote").add(
        Add("first", provides="z"), Add("second", rebind={"x": "z"}, provides="total")
    )
    with _python_worker(redis_flushed_url, topic):
        engine = engines.load(
            flow,
            store={"x": 1, "y": 2},
            engine="worker-based",
            url=redis_flushed_url,
            topics=[topic],
            transition_timeout=30.0,
        )
        with TracingListener(engine, tracer=tracer):
            engine.run()
    assert engine.storage.fetch("total") == 5
    found = _by_name(exporter)
    (flow_span,) = found["flow remote"]
    for name in ("first", "second"):
        (span,) = found[f"execute {name}"]
        assert span.parent.span_id == flow_span.context.span_id
        assert span.attributes["flowkit.state"] == "SUCCESS"
        assert span.attributes["flowkit.atom.name"] == name
    assert found["execute first"][0].end_time <= found["execute second"][0].start_time


class SeesItsSpan(Step):
    """Makes a span, and returns the span current while it runs as ``trace_id:span_id``."""

    #: The tracer the task makes its own span with (the test's, in this process).
    tracer: Any = None

    def execute(self) -> str:
        if SeesItsSpan.tracer is not None:
            with SeesItsSpan.tracer.start_as_current_span(f"inner {self.name}"):
                pass
        return _current_ids()


class RevertSeesItsSpan(Step):
    """Keeps the span current while its revert runs (in this process)."""

    seen: str | None = None

    def revert(self, *args: Any, **kwargs: Any) -> None:
        RevertSeesItsSpan.seen = _current_ids()


def _current_ids() -> str:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}:{context.span_id:016x}"


def _ids(span: Any) -> str:
    return f"{span.context.trace_id:032x}:{span.context.span_id:016x}"


@pytest.mark.parametrize(
    "engine_options",
    [
        {"engine": "serial"},
        {"engine": "parallel"},
        {"engine": "parallel", "executor": "processes", "max_workers": 1},
        {"engine": "asyncio"},
    ],
    ids=["serial", "threads", "processes", "asyncio"],
)
def test_a_task_runs_inside_its_execute_and_revert_spans(
    spans: tuple[Any, InMemorySpanExporter], engine_options: dict[str, Any]
) -> None:
    # The atom's span was never current while its task ran: spans the task made
    # (and context it passed to services it called) hung under whatever span the
    # caller had open, beside the atom's span, not under it, unlike on the
    # Python worker. In a child process the context arrives too (its spans go
    # to that process's tracer provider).
    from opentelemetry import trace

    tracer, exporter = spans
    in_process = engine_options.get("executor") != "processes"
    SeesItsSpan.tracer = tracer if in_process else None
    with trace.use_span(tracer.start_span("caller"), end_on_exit=True):
        engine = engines.load(linear_flow.Flow("f").add(SeesItsSpan("a")), **engine_options)
        with TracingListener(engine, tracer=tracer):
            engine.run()
    found = _by_name(exporter)
    (execute_a,) = found["execute a"]
    assert engine.storage.get("a") == _ids(execute_a)
    if in_process:
        (inner,) = found["inner a"]
        assert inner.parent.span_id == execute_a.context.span_id
    assert _current_ids().endswith(":0000000000000000")  # nothing left attached here
    RevertSeesItsSpan.seen = None
    failing = linear_flow.Flow("g").add(RevertSeesItsSpan("b"), Charge("pay"))
    engine = engines.load(failing, store={"amount": 500}, **engine_options)
    # A child process's failure comes back as a record, raised as a WrappedFailure.
    with TracingListener(engine, tracer=tracer), pytest.raises((CardDeclined, exceptions.WrappedFailure)):
        engine.run()
    (revert_b,) = _by_name(exporter)["revert b"]
    if in_process:
        assert RevertSeesItsSpan.seen == _ids(revert_b)


def test_a_failed_execute_span_records_the_exception_as_opentelemetry_says(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # Status and flowkit.failure.* attributes only: backends that show a span's
    # exception (its type, message and stack trace) from the standard "exception"
    # event had nothing to show.
    tracer, exporter = spans
    engine = engines.load(Charge("charge"), store={"amount": 500})
    with TracingListener(engine, tracer=tracer), pytest.raises(CardDeclined):
        engine.run()
    (span,) = _by_name(exporter)["execute charge"]
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"].endswith("CardDeclined")
    assert event.attributes["exception.message"] == "card declined for 500"
    assert "card declined for 500" in event.attributes["exception.stacktrace"]
    assert "in execute" in event.attributes["exception.stacktrace"]


def test_an_interrupted_run_ends_its_open_spans_as_interrupted(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # An interrupt (KeyboardInterrupt, SystemExit) leaves the flow RUNNING and the
    # atom's execute unfinished: their spans were ended with no state and status
    # UNSET, as if they had gone well.
    tracer, exporter = spans
    StopsOnce.armed = True
    engine = engines.load(linear_flow.Flow("f").add(Step("a"), StopsOnce("b")))
    with pytest.raises(KeyboardInterrupt), TracingListener(engine, tracer=tracer):
        engine.run()
    found = _by_name(exporter)
    (flow_span,) = found["flow f"]
    (execute_b,) = found["execute b"]
    for span in (flow_span, execute_b):
        assert span.attributes["flowkit.state"] == "RUNNING"
        assert span.attributes["flowkit.interrupted"] is True
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "interrupted: KeyboardInterrupt"
    assert found["execute a"][0].status.status_code == StatusCode.UNSET


def test_a_resumed_run_numbers_attempts_on_from_the_event_log(
    spans: tuple[Any, InMemorySpanExporter], tmp_path: Any
) -> None:
    # The span's attempt restarted at 1 in the new engine while the event log,
    # which reads the earlier runs' events from storage, said attempt 2.
    from flowkit.listeners.events import EventLogListener

    tracer, exporter = spans
    with _stopped_on_sqlite(
        tmp_path, lambda engine: [EventLogListener(engine), TracingListener(engine, tracer=tracer)]
    ) as resumed:
        with EventLogListener(resumed) as events, TracingListener(resumed, tracer=tracer):
            resumed.run()
        log = events.log
    first, again = sorted(_by_name(exporter)["execute b"], key=lambda s: s.start_time)
    assert first.attributes["flowkit.atom.attempt"] == 1
    (rerun,) = [e for e in log.events if e.name == "b" and e.state == "RUNNING" and e.run == 2]
    assert rerun.attempt == 2
    assert again.attributes["flowkit.atom.attempt"] == rerun.attempt


class CachedStep(Step):
    cache = True


def test_the_spans_of_an_atom_taken_from_the_cache_say_so(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # A hit's spans read "execute a" and, once the flow failed, "revert a", as if
    # both had run: neither the execute nor the revert was called.
    tracer, exporter = spans
    url = f"memory://tracing-{uuid.uuid4().hex}"
    engine = engines.load(linear_flow.Flow("f").add(CachedStep("a")), cache=url)
    with TracingListener(engine, tracer=tracer):
        engine.run()
    (first,) = _by_name(exporter)["execute a"]
    assert first.attributes["flowkit.cache.hit"] is False  # ran, and stored its result
    exporter.clear()
    flow = linear_flow.Flow("f").add(CachedStep("a"), Charge("pay"))
    engine = engines.load(flow, store={"amount": 500}, cache=url)
    with TracingListener(engine, tracer=tracer), pytest.raises(CardDeclined):
        engine.run()
    found = _by_name(exporter)
    (execute_a,) = found["execute a"]
    (revert_a,) = found["revert a"]
    assert execute_a.attributes["flowkit.cache.hit"] is True
    assert revert_a.attributes["flowkit.cache.hit"] is True
    (execute_pay,) = found["execute pay"]
    assert "flowkit.cache.hit" not in execute_pay.attributes  # not cacheable: nothing to say


def test_the_spans_of_a_cache_miss_say_so_on_execute_and_revert(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # A miss said False on its execute span and nothing on its revert span, where a
    # hit says True on both: a query for revert spans by the attribute missed them.
    tracer, exporter = spans
    flow = linear_flow.Flow("f").add(CachedStep("a"), Charge("pay"))
    engine = engines.load(flow, store={"amount": 500}, cache=f"memory://tracing-{uuid.uuid4().hex}")
    with TracingListener(engine, tracer=tracer), pytest.raises(CardDeclined):
        engine.run()
    found = _by_name(exporter)
    (execute_a,) = found["execute a"]
    (revert_a,) = found["revert a"]
    assert execute_a.attributes["flowkit.cache.hit"] is False
    assert revert_a.attributes["flowkit.cache.hit"] is False  # its revert was called
    (revert_pay,) = found["revert pay"]
    assert "flowkit.cache.hit" not in revert_pay.attributes  # not cacheable: nothing to say


class SuspendsOnce(Step):
    """Suspends the engine it runs in the first time (``engine`` set by the test)."""

    engine: Any = None

    def execute(self) -> str:
        if SuspendsOnce.engine is not None:
            SuspendsOnce.engine, engine = None, SuspendsOnce.engine
            engine.suspend()
        return self.name


def _linked_to(span: Any) -> list[str]:
    return [_ids(link) for link in span.links]


def test_a_run_resumed_after_a_suspension_links_its_flow_span_to_the_suspended_runs(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # Each run() is a flow span of its own, the resumed one in a trace of its
    # own too: nothing tied the two traces of one flow together.
    tracer, exporter = spans
    engine = engines.load(linear_flow.Flow("f").add(Step("a"), SuspendsOnce("s"), Step("b")))
    SuspendsOnce.engine = engine
    with TracingListener(engine, tracer=tracer):
        engine.run()
        assert engine.storage.get_flow_state() == "SUSPENDED"
        engine.run()
    first, second = sorted(_by_name(exporter)["flow f"], key=lambda s: s.start_time)
    assert (
        first.attributes["flowkit.state"] == "SUSPENDED" and second.attributes["flowkit.state"] == "SUCCESS"
    )
    assert _linked_to(first) == []
    assert _linked_to(second) == [_ids(first)]


def test_a_run_resumed_by_a_new_engine_links_its_flow_span_to_the_stopped_runs(
    spans: tuple[Any, InMemorySpanExporter], tmp_path: Any
) -> None:
    # The trace context of the stopped run lives in the flow detail, so a
    # resume in another engine (after a crash, in another process) finds it.
    tracer, exporter = spans
    with (
        _stopped_on_sqlite(tmp_path, lambda engine: [TracingListener(engine, tracer=tracer)]) as resumed,
        TracingListener(resumed, tracer=tracer),
    ):
        resumed.run()
    stopped, again = sorted(_by_name(exporter)["flow f"], key=lambda s: s.start_time)
    assert stopped.attributes["flowkit.interrupted"] is True
    assert again.context.trace_id != stopped.context.trace_id  # a trace of its own...
    assert _linked_to(again) == [_ids(stopped)]  # ...linked to the run it continues


def test_an_engine_run_again_after_an_interrupt_is_traced_under_a_flow_span(
    spans: tuple[Any, InMemorySpanExporter],
) -> None:
    # Run again after an interrupt, the engine announces nothing as it starts (the flow
    # never left RUNNING, as in TaskFlow): a listener attached for that run opened no
    # flow span, lost the execute of the atom left RUNNING, and made the next atom's
    # span a root span of a trace of its own.
    tracer, exporter = spans
    StopsOnce.armed = True
    engine = engines.load(linear_flow.Flow("f").add(Step("a"), StopsOnce("b"), Step("c")))
    with TracingListener(engine, tracer=tracer), pytest.raises(KeyboardInterrupt):
        engine.run()
    stopped = _by_name(exporter)["flow f"][0]
    exporter.clear()
    with TracingListener(engine, tracer=tracer):
        engine.run()
    found = _by_name(exporter)
    assert sorted(found) == ["execute b", "execute c", "flow f"]
    (flow_span,) = found["flow f"]
    assert flow_span.attributes["flowkit.state"] == "SUCCESS"
    assert flow_span.attributes["flowkit.flow.uuid"] == engine.storage.flow_uuid
    assert _linked_to(flow_span) == [_ids(stopped)]
    for name in ("b", "c"):
        (span,) = found[f"execute {name}"]
        assert span.parent.span_id == flow_span.context.span_id
        assert span.attributes["flowkit.state"] == "SUCCESS"
