"""Eventlet green threads as the parallel engine's executor (TaskFlow's ``executor="greenthreads"``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowkit import engines, states, task
from flowkit.engines.action_engine import executor
from flowkit.patterns import unordered_flow

eventlet = pytest.importorskip("eventlet")
futurist = pytest.importorskip("futurist")

# futurist deprecates its green pool and futures along with eventlet; that is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:Using class 'Green:DeprecationWarning")


class Waits(task.Task):
    """Waits (the green way) until its sibling has run: only green concurrency gets past it."""

    def __init__(self, name: str, event: Any, seen: list[int]) -> None:
        super().__init__(name, provides=name)
        self.event, self.seen = event, seen

    def execute(self) -> str:
        self.seen.append(threading.get_ident())
        self.event.wait()
        return self.name


class Sends(Waits):
    def execute(self) -> str:
        self.seen.append(threading.get_ident())
        eventlet.sleep(0)
        self.event.send(True)
        return self.name


def _flow(seen: list[int]) -> Any:
    event = eventlet.event.Event()
    return unordered_flow.Flow("u").add(Waits("waits", event, seen), Sends("sends", event, seen))


@pytest.mark.parametrize("name", ["greenthreads", "GreenThread", "greenthreaded"])
def test_named_green_executor_runs_tasks_as_green_threads_of_the_engine_thread(name: str) -> None:
    seen: list[int] = []
    engine = engines.load(_flow(seen), engine="parallel", executor=name, max_workers=4)
    engine.run(timeout=5)
    assert engine.storage.fetch_all() == {"waits": "waits", "sends": "sends"}
    assert seen == [threading.get_ident()] * 2  # green threads live in the caller's thread


def test_a_futurist_green_pool_is_waited_on_the_green_way_and_left_open() -> None:
    # Waiting on a native queue would never give the green threads a turn: the run would hang.
    pool = futurist.GreenThreadPoolExecutor(max_workers=2)
    try:
        seen: list[int] = []
        engine = engines.load(_flow(seen), engine="parallel", executor=pool)
        engine.run(timeout=5)
        assert engine.storage.get_flow_state() == states.SUCCESS
        assert pool.submit(lambda: 7).result() == 7  # not shut down by the engine
    finally:
        pool.shutdown()


def test_taskflows_green_task_executor_class_works() -> None:
    green = executor.ParallelGreenThreadTaskExecutor(max_workers=2)
    try:
        seen: list[int] = []
        engine = engines.load(_flow(seen), engine="parallel", executor=green)
        engine.run(timeout=5)
        assert engine.storage.get_flow_state() == states.SUCCESS
    finally:
        green.shutdown()


class Fails(task.Task):
    def execute(self) -> None:
        raise ValueError("green boom")


def test_a_failing_green_task_reverts_the_flow() -> None:
    seen: list[int] = []
    flow = unordered_flow.Flow("u").add(Sends("sends", eventlet.event.Event(), seen), Fails("fails"))
    engine = engines.load(flow, engine="parallel", executor="greenthreads")
    with pytest.raises(ValueError, match="green boom"):
        engine.run(timeout=5)
    assert engine.storage.get_flow_state() == states.REVERTED
