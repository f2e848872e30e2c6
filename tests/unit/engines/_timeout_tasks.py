"""Tasks for the timeout and limit tests; module-level so process pools can import them."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

from flowkit import task


class Gate:
    """What a blocking task waits on, and what it tells the test."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.cancelled = threading.Event()
        self.reverted: list[Any] = []


GATES: dict[str, Gate] = {}
#: Names of the :class:`Blocking` tasks as they start, in order: a test that cannot know which
#: of two a pool runs first takes it from here (a timed call is armed just before its task
#: starts, so the gates may not say yet).
STARTS: queue.SimpleQueue[str] = queue.SimpleQueue()


def gate(name: str) -> Gate:
    """The gate of atom ``name`` (the test and the task may ask first, from two threads)."""
    found = GATES.get(name)
    if found is None:
        found = GATES.setdefault(name, Gate())  # atomic: both threads get the same gate
    return found


class Blocking(task.Task):
    """Blocks (in a thread) until its gate is released; records its revert's ``result``."""

    def execute(self) -> str:
        g = gate(self.name)
        g.started.set()
        STARTS.put(self.name)
        g.release.wait(30)
        g.finished.set()
        return f"{self.name} done"

    def revert(self, result: Any, **kwargs: Any) -> None:
        gate(self.name).reverted.append(result)


class AsyncBlocking(task.Task):
    """Awaits its gate; records being cancelled."""

    async def execute(self) -> str:
        g = gate(self.name)
        try:
            while not g.release.is_set():
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            g.cancelled.set()
            raise
        g.finished.set()
        return f"{self.name} done"

    def revert(self, result: Any, **kwargs: Any) -> None:
        gate(self.name).reverted.append(result)


class Stubborn(task.Task):
    """An async task that ignores cancellation and keeps going until released."""

    async def execute(self) -> str:
        g = gate(self.name)
        while not g.release.is_set():
            try:
                await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                g.cancelled.set()  # noted, and ignored
        g.finished.set()
        return f"{self.name} done anyway"

    def revert(self, result: Any, **kwargs: Any) -> None:
        gate(self.name).reverted.append(result)


class Quick(task.Task):
    def execute(self) -> str:
        return f"{self.name} done"


class SleepsLong(task.Task):
    """Sleeps far longer than any test waits (for process pools, where no Event reaches)."""

    def execute(self) -> str:
        time.sleep(120)
        return "never"
