"""Flows the jobboard benchmark posts (importable by conductor processes)."""

from __future__ import annotations

import json
import os
import time

from flowkit import task
from flowkit.patterns import linear_flow


class Noop(task.Task):
    """Does nothing: the benchmark measures everything around it."""

    def execute(self) -> int:
        return 1


def one_task() -> linear_flow.Flow:
    """A trivial one-task flow."""
    return linear_flow.Flow("one").add(Noop(name="noop"))


class Gated(task.Task):
    """Logs ``{"pid", "time"}`` to ``calls`` when it starts, then waits for ``gate`` to exist."""

    def execute(self, calls: str, gate: str) -> int:
        with open(calls, "a", encoding="utf-8") as out:
            out.write(json.dumps({"pid": os.getpid(), "time": time.time()}) + "\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.005)
        return 1


def gated() -> linear_flow.Flow:
    """One gated task: the take-over measurement holds a conductor inside it."""
    return linear_flow.Flow("gated").add(Gated(name="gated"))
