"""One engine loader per executor: every test of the executor contract runs on each.

``run_on`` returns ``load(flow, **options)``, an engine that runs ``flow`` on its
executor: inline (serial), a thread pool, a process pool, green threads, an
asyncio loop, a Dask cluster of worker processes, or a task worker on the
in-process memory transport.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit import engines
from tests import services
from tests.executors.tasks import TASKS

EXECUTORS = ["serial", "threads", "processes", "green", "asyncio", "dask", "workers"]

Load = Callable[..., Any]


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A LocalCluster of two worker processes, for the module."""
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def task_worker() -> Iterator[str]:
    """A task worker serving the contract's tasks on a memory exchange of its own; yields the exchange."""
    from flowkit.engines.worker_based.worker import Worker

    exchange = f"ex-{uuid.uuid4().hex[:8]}"
    worker = Worker(exchange=exchange, topic="t", tasks=TASKS, transport="memory")
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    assert worker.wait(10)
    try:
        yield exchange
    finally:
        worker.stop()
        runner.join(10)


@pytest.fixture(params=EXECUTORS)
def executor_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_on(executor_kind: str, request: pytest.FixtureRequest) -> Load:
    """``load(flow, **options)`` for this executor."""
    kind = executor_kind
    if kind == "serial":
        return lambda flow, **options: engines.load(flow, engine="serial", **options)
    if kind in ("threads", "processes"):
        return lambda flow, **options: engines.load(flow, engine="parallel", executor=kind, **options)
    if kind == "green":
        services.require_module("eventlet", "eventlet futurist")
        return lambda flow, **options: engines.load(
            flow, engine="parallel", executor="greenthreads", **options
        )
    if kind == "asyncio":
        return lambda flow, **options: engines.load(flow, engine="asyncio", **options)
    if kind == "dask":
        executor = request.getfixturevalue("dask_client").get_executor()
        return lambda flow, **options: engines.load(flow, engine="parallel", executor=executor, **options)
    exchange = request.getfixturevalue("task_worker")
    return lambda flow, **options: engines.load(
        flow, engine="worker-based", exchange=exchange, transport="memory", topics=["t"], **options
    )
