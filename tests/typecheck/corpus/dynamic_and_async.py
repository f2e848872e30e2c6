"""Sub-flows spawned at run time, loops, async tasks and executors, as flowkit's users write them.

Type-checked with ``mypy --strict`` by tests/typecheck/test_user_code.py and never
run: every statement here is a correct program that a type checker must accept.
"""

from __future__ import annotations

import asyncio
from concurrent import futures
from typing import Any, assert_type

from flowkit import dynamic, engines, task
from flowkit.engines.action_engine import executor
from flowkit.listeners import capturing
from flowkit.patterns import linear_flow, loop_flow, unordered_flow


class Snapshot(task.Task):
    def execute(self, volume: str) -> str:
        return f"snap-{volume}"


class Fetch(task.Task):
    """An async task: the asyncio engine awaits it, other engines run it on a loop."""

    default_provides = "page"

    async def execute(self, url: str, retries: int = 2) -> bytes:
        return await asyncio.to_thread(url.encode)

    async def revert(self, url: str, **kwargs: Any) -> None:
        await asyncio.to_thread(print, f"forget {url}")


def snapshots(volumes: list[str]) -> unordered_flow.Flow:
    """A module-level factory, so a resumed run can build the same sub-flow again."""
    return unordered_flow.Flow("snapshots").add(
        *(Snapshot(f"snapshot-{v}", inject={"volume": v}) for v in volumes)
    )


class SnapshotAll(task.Task):
    """Spawns one snapshot per volume; their results, in order, become this task's result."""

    default_provides = "snapshots"

    def execute(self, volumes: list[str]) -> dynamic.Subflow:
        return dynamic.subflow(snapshots, volumes, collect=dynamic.Collect.LIST)


class Status(task.Task):
    default_provides = "status"

    def execute(self) -> str:
        return "ready"


def is_ready(status: str) -> bool:
    """The loop's ``until``: called with the body's symbols by keyword (a def, so pyright knows them)."""
    return status == "ready"


def build() -> linear_flow.Flow:
    wait = loop_flow.Flow(
        "wait-ready",
        Status(),
        until=is_ready,
        max_iterations=5,
        delay=1.0,
    )
    return linear_flow.Flow("backup").add(wait, SnapshotAll(), Fetch())


async def run_async() -> Any:
    engine = engines.load(build(), store={"volumes": ["a"], "url": "u"}, engine="asyncio")
    with capturing.CaptureListener(engine, capture_flow=False) as capture:
        await asyncio.to_thread(engine.run)
    assert_type(capture.values, list[Any])  # what _format_capture makes: a subclass chooses
    return engine.storage.fetch("snapshots")


def run_with_executors() -> None:
    with futures.ThreadPoolExecutor(2) as pool:
        engines.run(build(), store={"volumes": ["a"], "url": "u"}, engine="parallel", executor=pool)
    engines.run(
        build(),
        store={"volumes": ["a"], "url": "u"},
        engine="parallel",
        executor=executor.ParallelThreadTaskExecutor(max_workers=2),
    )
    engines.run(build(), store={"volumes": ["a"], "url": "u"}, engine="parallel", executor="threaded")
