"""A spec and the graph flow one would write by hand run alike, on every engine.

Generated DAGs of tasks whose inputs are constants and whole references, with
``after:`` links and sometimes a failing task: the spec's flow and the
hand-built one give the same results, the same state sequence for every atom
and the same flow states, on the serial, parallel and asyncio engines, and on
the worker-based engine with a Python worker over a real Redis.

Failing flows are compared on the serial engine only: on a concurrent engine an
atom independent of the failing one may or may not have started when the
failure is seen, so even one flow run twice can differ there.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import declarative
from flowkit.patterns import graph_flow
from tests.declarative.helpers import run
from tests.declarative.tasks import Step

STEP = "tests.declarative.tasks:Step"


@st.composite
def dags(draw: st.DrawFn, may_fail: bool = True) -> dict[str, Any]:
    count = draw(st.integers(1, 7))
    tasks: dict[str, Any] = {}
    failing = draw(st.one_of(st.none(), st.integers(0, count - 1))) if may_fail else None
    for i in range(count):
        earlier = [f"t{j}" for j in range(i)]
        inputs: dict[str, Any] = {}
        for arg in ("x", "y", "z"):
            if arg != "x" and draw(st.booleans()):
                continue
            if earlier and draw(st.booleans()):
                inputs[arg] = "${" + draw(st.sampled_from(earlier)) + "}"
            else:
                inputs[arg] = draw(st.integers(-5, 5))
        if failing == i:
            inputs["fail"] = True
        body: dict[str, Any] = {"task": STEP, "inputs": inputs}
        if earlier and draw(st.booleans()):
            body["after"] = sorted(set(draw(st.lists(st.sampled_from(earlier), max_size=2))))
        tasks[f"t{i}"] = body
    return {"name": "generated", "tasks": tasks}


def by_hand(spec: dict[str, Any]) -> graph_flow.Flow:
    flow = graph_flow.Flow(spec["name"])
    made = {}
    for key, body in spec["tasks"].items():
        rebind = {a: v[2:-1] for a, v in body["inputs"].items() if isinstance(v, str)}
        inject = {a: v for a, v in body["inputs"].items() if not isinstance(v, str)}
        made[key] = Step(name=key, provides=key, rebind=rebind or None, inject=inject or None)
    flow.add(*made.values())
    for key, body in spec["tasks"].items():
        for before in body.get("after", []):
            flow.link(made[before], made[key])
    return flow


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags())
def test_spec_and_hand_built_flow_run_alike_on_the_serial_engine(spec: dict[str, Any]) -> None:
    assert run(declarative.load_flow(spec), "serial") == run(by_hand(spec), "serial")


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags(may_fail=False))
def test_spec_and_hand_built_flow_run_alike_on_concurrent_engines(kind: str, spec: dict[str, Any]) -> None:
    assert run(declarative.load_flow(spec), kind) == run(by_hand(spec), kind)


@pytest.fixture(scope="module")
def worker_topic(redis_url: str) -> Any:
    """A Python worker in this process serving the generated flows' task, on a topic of its own."""
    pytest.importorskip("redis")
    import uuid

    from flowkit.engines.worker_based.worker import Worker

    topic = f"spec-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        topic=topic, tasks=[STEP], url=redis_url, heartbeat=0.2, visibility_timeout=2.0, grace=1.0
    )
    worker.start()
    try:
        yield redis_url, topic
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)


@pytest.mark.timeout(300)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=dags(may_fail=False))
def test_spec_and_hand_built_flow_run_alike_on_the_worker_based_engine(
    worker_topic: tuple[str, str], spec: dict[str, Any]
) -> None:
    url, topic = worker_topic
    options = {"url": url, "topics": [topic], "transition_timeout": 30.0}
    assert run(declarative.load_flow(spec), "worker-based", **options) == run(
        by_hand(spec), "worker-based", **options
    )
