#!/usr/bin/env python3
"""What observing a run costs: the in-memory linear flow with and without the observers.

Usage (the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_events.py              # 1000 tasks, best of 7
    python tools/bench_events.py -n 10000 --repeat 3 --json out.json

Measures load+run of a linear flow of ``n`` trivial tasks on the serial engine,
in memory: bare; with the causal event log
(:class:`flowkit.listeners.events.EventLogListener`); with the event log and
the execution report built after the run; with the OpenTelemetry listener
(when ``opentelemetry-sdk`` is installed, spans kept in memory). Then the same
flow persisted to a ``memory://`` backend (what ``flowkit run`` uses by
default), bare and with the event log. Prints the best time per task of each
and the cost added per task over its bare row.

Times are the process's CPU time (the runs are serial and in process), so
other work on a busy machine moves them much less than wall-clock time.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowkit import engines, task
from flowkit.patterns import linear_flow


class Noop(task.Task):
    def execute(self) -> int:
        return 1


def build(n: int) -> linear_flow.Flow:
    return linear_flow.Flow("linear").add(*(Noop(f"t{i}") for i in range(n)))


def bare(n: int) -> None:
    engines.load(build(n)).run()


def with_events(n: int) -> None:
    from flowkit.listeners.events import EventLogListener

    engine = engines.load(build(n))
    with EventLogListener(engine):
        engine.run()


def with_events_and_report(n: int) -> None:
    from flowkit.listeners.events import EventLogListener
    from flowkit.report import ExecutionReport

    engine = engines.load(build(n))
    with EventLogListener(engine):
        engine.run()
    ExecutionReport.from_engine(engine).to_dict()


def persisted(n: int) -> None:
    from flowkit.persistence import backends

    engines.load(build(n), backend=backends.fetch({"connection": "memory://"})).run()


def persisted_with_events(n: int) -> None:
    from flowkit.listeners.events import EventLogListener
    from flowkit.persistence import backends

    engine = engines.load(build(n), backend=backends.fetch({"connection": "memory://"}))
    with EventLogListener(engine):
        engine.run()


def _otel() -> Callable[[int], None] | None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from flowkit.listeners.otel import TracingListener
    except ImportError:
        return None
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")

    def with_otel(n: int) -> None:
        exporter.clear()
        engine = engines.load(build(n))
        with TracingListener(engine, tracer=tracer):
            engine.run()

    return with_otel


def best(fn: Callable[[int], None], n: int, repeat: int) -> float:
    fn(min(n, 50))  # warm imports and caches
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        fn(n)
        times.append(time.process_time() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="tasks in the flow (default 1000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    cases: dict[str, Callable[[int], None]] = {
        "bare": bare,
        "event log": with_events,
        "event log + report": with_events_and_report,
    }
    otel = _otel()
    if otel is not None:
        cases["opentelemetry"] = otel
    cases["persisted, bare"] = persisted
    cases["persisted, event log"] = persisted_with_events
    results: dict[str, Any] = {}
    base = 0.0
    print(f"linear-{args.n}, serial engine, in memory, best of {args.repeat} (CPU time)")
    for label, fn in cases.items():
        seconds = best(fn, args.n, args.repeat)
        per_task = seconds / args.n * 1e6
        bare_row = label.endswith("bare")
        base = per_task if bare_row else base
        extra = "" if bare_row else f"  (+{per_task - base:.1f} us/task)"
        print(f"  {label:<20} {seconds * 1e3:8.1f} ms  {per_task:6.1f} us/task{extra}")
        results[label] = {"seconds": seconds, "us_per_task": per_task, "added_us_per_task": per_task - base}
    if args.json:
        Path(args.json).write_text(json.dumps({"n": args.n, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
