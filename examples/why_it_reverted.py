"""Why did this revert? The event log, the execution report and tracing.

Booking a trip holds a seat, then charges the card inside a subflow that a
retry runs at most twice. The card is declined both times, so the retry
gives up, the flow reverts, and the seat is released. Somebody will ask why.

Three answers, each readable by someone who was not there:

* the causal event log (``EventLogListener``): every transition with its
  cause, saved with the run in the database. Later, from another connection,
  ``EventLog.why("hold_seat")`` follows the causes back from the seat's
  release to the declined card.
* the execution report (``ExecutionReport``), built from the same stored
  run: one line per atom, with attempts, failures and what was reverted.
  ``flowkit flows show`` prints the same report.
* OpenTelemetry spans (``TracingListener``), here kept by the SDK's
  in-memory exporter instead of being sent to a collector: a span for the
  run with one child per ``execute`` and ``revert``.

Needs the OpenTelemetry SDK (``pip install 'flowkit[otel]'``). Run it with::

    python examples/why_it_reverted.py
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode
except ImportError:  # the base install has no SDK: say which extra, not a traceback
    raise SystemExit("why_it_reverted.py needs the OpenTelemetry SDK: pip install -e '.[otel]'") from None

from flowkit import engines, retry, task
from flowkit.listeners.events import EventLog, EventLogListener
from flowkit.listeners.otel import TracingListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from flowkit.report import ExecutionReport


class CardDeclined(Exception):
    """The payment provider refused the charge."""


class HoldSeat(task.Task):
    default_provides = "seat"

    def execute(self, flight: str) -> str:
        print(f"  [{self.name}] held seat 14C on {flight}")
        return "14C"

    def revert(self, flight: str, result: Any, **kwargs: Any) -> None:
        print(f"  [{self.name}] released seat {result} on {flight}")


class ChargeCard(task.Task):
    def execute(self, seat: str, attempt: int) -> None:
        print(f"  [{self.name}] attempt {attempt}: declined")
        raise CardDeclined(f"card declined for seat {seat}")


def build_flow() -> linear_flow.Flow:
    # revert_all: once out of attempts, undo the whole booking, not only the
    # payment subflow (which would leave the seat held; see doc/reverting.rst).
    charge_twice = retry.Times(2, "charge_twice", provides="attempt", revert_all=True)
    payment = linear_flow.Flow("payment", retry=charge_twice).add(ChargeCard("charge_card"))
    return linear_flow.Flow("book-trip").add(HoldSeat("hold_seat"), payment)


def book(backend: Any, exporter: InMemorySpanExporter) -> str:
    """Run the booking with the event log and tracing attached; return the flow's uuid."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logbook = models.LogBook("trips")
    engine = engines.load(build_flow(), store={"flight": "LX 318"}, book=logbook, backend=backend)
    with EventLogListener(engine), TracingListener(engine, tracer_provider=provider):
        try:
            engine.run()
        except CardDeclined as err:
            print(f"run() raised CardDeclined: {err}")
    return engine.storage.flow_uuid


def explain(backend: Any, flow_uuid: str) -> None:
    """Read the stored run back, as another process would, and say why it reverted."""
    with contextlib.closing(backend.get_connection()) as conn:
        flow_detail = conn.get_flow_details(flow_uuid)
    log = EventLog.from_flow_detail(flow_detail)
    print("why was hold_seat reverted? (newest cause first)")
    for event in log.why("hold_seat"):
        print(f"  {event.describe()}")

    report = ExecutionReport.from_flow_detail(flow_detail)
    print(f"report: flow '{report.flow_name}' {report.state}")
    for atom in report.atoms:
        failed = f", failed: {atom.failure.one_line()}" if atom.failure else ""
        reverted = atom.reverted or "not reverted"
        print(f"  {atom.name}: {atom.state}, attempts={atom.attempts}{failed}, {reverted}")


def show_spans(exporter: InMemorySpanExporter) -> None:
    """Print the spans as a tree, in the order they started."""
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    depth: dict[int, int] = {}
    print("spans:")
    for span in spans:
        parent = span.parent.span_id if span.parent else None
        level = depth[parent] + 1 if parent in depth else 0
        depth[span.context.span_id] = level
        attributes = span.attributes or {}
        line = f"{'  ' * level}{span.name}"
        if "flowkit.atom.attempt" in attributes:
            line += f" (attempt {attributes['flowkit.atom.attempt']})"
        if span.status.status_code is StatusCode.ERROR:
            line += f": ERROR {attributes.get('flowkit.failure.type', '')}".rstrip()
        print(f"  {line}")


def main() -> None:
    exporter = InMemorySpanExporter()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'trips.db'}"
        with contextlib.closing(backends.fetch({"connection": url})) as backend:
            with contextlib.closing(backend.get_connection()) as conn:
                conn.upgrade()
            flow_uuid = book(backend, exporter)
        with contextlib.closing(backends.fetch({"connection": url})) as backend:
            explain(backend, flow_uuid)
    show_spans(exporter)


if __name__ == "__main__":
    main()
