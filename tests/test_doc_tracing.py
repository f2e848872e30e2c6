"""The Python block of ``doc/tracing.rst`` makes the spans the page says it does.

``tests/test_doc_snippets.py`` runs the block as a reader pastes it, on
OpenTelemetry's no-op tracer (no SDK is configured there), so it proves the
block runs, not what it traces. Here the same block runs in a fresh
interpreter whose global tracer provider is the SDK's, with the in-memory
exporter (the global provider can be set once per process, so not in the
test's own), once on a flow that succeeds and once on one whose task fails
and reverts its predecessor; the spans read back are checked against the
page: names, parents, trace, attributes, status and the exception event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, NamedTuple

import pytest

from tests.test_doc_snippets import GIVEN, _snippets

pytest.importorskip("opentelemetry.sdk.trace")

#: The block the page shows for attaching the listener.
_BLOCK_START = "from opentelemetry import trace"

#: The flow that fails: ``reserve`` runs, ``charge`` raises, ``reserve`` is reverted.
_FAILING_FLOW = """
    from flowkit import engines, task
    from flowkit.patterns import linear_flow

    class CardDeclined(Exception):
        pass

    class Reserve(task.Task):
        def execute(self, order_id):
            return order_id

    class Charge(task.Task):
        def execute(self, order_id):
            raise CardDeclined(f"card declined for order {order_id}")

    flow = linear_flow.Flow("shop").add(Reserve("reserve"), Charge("charge"))
"""

#: Run in the fresh interpreter: the SDK as the global provider, the runs, the spans out as JSON.
_CHILD = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

provider = TracerProvider()
exporter = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
runs = []
for run in json.load(sys.stdin):
    namespace = {"__name__": "__main__"}
    exec(compile(run["given"], "<given>", "exec"), namespace)
    raised = None
    try:
        exec(compile(run["code"], "doc/tracing.rst", "exec"), namespace)
    except Exception as exc:
        raised = type(exc).__name__
    spans = [
        {
            "name": s.name,
            "trace": s.context.trace_id,
            "id": s.context.span_id,
            "parent": s.parent.span_id if s.parent is not None else None,
            "attributes": dict(s.attributes),
            "status": s.status.status_code.name,
            "events": [{"name": e.name, "attributes": dict(e.attributes)} for e in s.events],
        }
        for s in exporter.get_finished_spans()
    ]
    exporter.clear()
    runs.append({"raised": raised, "spans": spans})
print(json.dumps(runs))
"""


class Span(NamedTuple):
    """A finished span as the child process reported it."""

    name: str
    trace: int
    id: int
    parent: int | None
    attributes: dict[str, Any]
    status: str
    events: list[dict[str, Any]]


class Run(NamedTuple):
    """One run of the page's block: the exception it raised, if any, and its spans by name."""

    raised: str | None
    spans: dict[str, Span]


def _page_block() -> tuple[str, str]:
    """The page's block (its lines where the page has them) and what the page takes as given."""
    (snippet,) = [s for s in _snippets("tracing.rst") if s.block.text.startswith(_BLOCK_START)]
    given = textwrap.dedent(snippet.listed_in(GIVEN) or "")
    return "\n" * (snippet.block.line - 1) + snippet.block.text, given


@pytest.fixture(scope="module")
def runs() -> tuple[Run, Run]:
    code, given = _page_block()
    payload = [{"given": given, "code": code}, {"given": textwrap.dedent(_FAILING_FLOW), "code": code}]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        check=False,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert child.returncode == 0, child.stderr
    found = []
    for run in json.loads(child.stdout):
        spans = [Span(**span) for span in run["spans"]]
        by_name = {span.name: span for span in spans}
        assert len(by_name) == len(spans), [span.name for span in spans]  # one span of each name
        found.append(Run(run["raised"], by_name))
    passing, failing = found
    return passing, failing


def _flowkit_spans(run: Run) -> list[Span]:
    return [span for name, span in run.spans.items() if name != "handle order"]


def test_the_flow_span_is_a_child_of_the_callers_span_and_atom_spans_of_the_flows(
    runs: tuple[Run, Run],
) -> None:
    for run in runs:
        caller, flow = run.spans["handle order"], run.spans["flow shop"]
        assert caller.parent is None
        assert flow.parent == caller.id
        atoms = [span for span in _flowkit_spans(run) if span is not flow]
        assert atoms, run.spans
        for span in atoms:
            assert span.parent == flow.id, span.name
        assert {span.trace for span in run.spans.values()} == {caller.trace}


def test_a_run_that_goes_well_has_a_flow_span_and_an_execute_span_with_the_pages_attributes(
    runs: tuple[Run, Run],
) -> None:
    passing, _ = runs
    assert passing.raised is None
    assert sorted(passing.spans) == ["execute reserve", "flow shop", "handle order"]
    flow, execute = passing.spans["flow shop"], passing.spans["execute reserve"]
    assert flow.attributes["flowkit.flow.name"] == "shop"
    assert flow.attributes["flowkit.state"] == "SUCCESS" and flow.status == "UNSET"
    for span in (flow, execute):  # the flow's attributes are on every span
        assert span.attributes["flowkit.flow.uuid"] == flow.attributes["flowkit.flow.uuid"]
        assert span.attributes["flowkit.flow.name"] == "shop"
    assert execute.attributes["flowkit.atom.name"] == "reserve"
    assert execute.attributes["flowkit.atom.uuid"]
    assert execute.attributes["flowkit.atom.kind"] == "task"
    assert execute.attributes["flowkit.atom.attempt"] == 1
    assert execute.attributes["flowkit.state"] == "SUCCESS" and execute.status == "UNSET"
    assert not any(key.startswith("flowkit.failure.") for key in execute.attributes)
    assert execute.events == []


def test_a_failing_task_has_an_error_span_with_the_failure_and_its_predecessor_a_revert_span(
    runs: tuple[Run, Run],
) -> None:
    _, failing = runs
    assert failing.raised == "CardDeclined"
    assert sorted(failing.spans) == [
        "execute charge",
        "execute reserve",
        "flow shop",
        "handle order",
        "revert charge",
        "revert reserve",
    ]
    charge = failing.spans["execute charge"]
    assert charge.status == "ERROR"
    assert charge.attributes["flowkit.state"] == "FAILURE"
    assert charge.attributes["flowkit.failure.type"] == "__main__.CardDeclined"
    assert charge.attributes["flowkit.failure.message"] == "card declined for order 42"
    (event,) = charge.events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "__main__.CardDeclined"
    assert event["attributes"]["exception.message"] == "card declined for order 42"
    assert "in execute\n" in event["attributes"]["exception.stacktrace"]
    for name in ("reserve", "charge"):
        revert = failing.spans[f"revert {name}"]
        assert revert.attributes["flowkit.state"] == "REVERTED" and revert.status == "UNSET"
        assert revert.attributes["flowkit.atom.name"] == name
    assert failing.spans["execute reserve"].status == "UNSET"
    flow = failing.spans["flow shop"]
    assert flow.attributes["flowkit.state"] == "REVERTED" and flow.status == "ERROR"
