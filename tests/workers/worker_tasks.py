"""Tasks the worker tests register with a :class:`~flowkit.engines.worker_based.worker.Worker`.

They live in an importable module so that a worker started in a subprocess
(``flowkit worker --tasks tests.workers.worker_tasks``) finds them too.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from flowkit import task
from flowkit.types.failure import Failure

#: Opened by tests to let :class:`Gate` finish.
GATE = threading.Event()
#: Set by :class:`Gate` once it has started.
GATE_ENTERED = threading.Event()
#: Released by tests once per progress report :class:`Paced` may make.
PACE = threading.Semaphore(0)
#: Released by :class:`Paced` once per report made.
PACED = threading.Semaphore(0)


class TaskFailed(Exception):
    """A task's own error, to check type names cross the wire."""


class Add(task.Task):
    def execute(self, x: int, y: int) -> int:
        return x + y

    def revert(self, x: int, y: int, result: Any, flow_failures: dict[str, Failure], **kwargs: Any) -> Any:
        """Report what revert received, so tests can check it."""
        if isinstance(result, Failure):
            seen: Any = {"failure": result.exception_str, "types": list(result.exception_type_names)}
        else:
            seen = {"result": result}
        seen["flow_failures"] = {name: failure.exception_str for name, failure in flow_failures.items()}
        seen["name"] = self.name
        return seen


class Boom(task.Task):
    def execute(self, message: str) -> None:
        raise TaskFailed(message)


class Exits(task.Task):
    """Raises SystemExit, which the worker sends back as the task's failure."""

    def execute(self, code: int) -> None:
        raise SystemExit(code)


class Unencodable(task.Task):
    """Fails with a message holding a lone surrogate, which no UTF-8 encoder takes."""

    def execute(self) -> None:
        raise TaskFailed("broken \ud800 text")


class CyclicCauses(task.Task):
    """Fails with an exception whose cause chain loops back to itself (``a from b``, ``b from a``)."""

    def execute(self) -> None:
        first, second = TaskFailed("first"), TaskFailed("second")
        second.__cause__ = first
        raise first from second


class LongChain(task.Task):
    """Fails with a chain of ``depth`` exceptions, each raised from the one below."""

    def execute(self, depth: int) -> None:
        try:
            if depth:
                LongChain(name=self.name).execute(depth - 1)
        except TaskFailed as err:
            raise TaskFailed(f"level {depth}") from err
        raise TaskFailed(f"level {depth}")


class Progress(task.Task):
    def execute(self, steps: int) -> str:
        for step in range(1, steps + 1):
            self.update_progress(step / steps)
        return "done"


class Paced(task.Task):
    """Reports each value of ``steps`` when the test releases :data:`PACE`, then releases :data:`PACED`.

    The test moves the worker's clock between reports, so which of them the
    rate limit lets through is decided by the test, not by how fast this runs.
    """

    def execute(self, steps: list[float]) -> str:
        for value in steps:
            if not PACE.acquire(timeout=10):
                raise TimeoutError("the test never released the next progress report")
            self.update_progress(value)
            PACED.release()
        return "done"


class Double(task.Task):
    async def execute(self, value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    async def revert(self, value: int, result: Any, flow_failures: Any) -> str:
        await asyncio.sleep(0)
        return f"undid {result}"


class Unsendable(task.Task):
    def execute(self) -> object:
        return object()


class _BrokenModel:
    """Looks like a pydantic model to the encoder, whose dump fails as a computed field that raises does."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        raise KeyError("quota")


class UnsendableModel(task.Task):
    def execute(self) -> object:
        return _BrokenModel()


class Gate(task.Task):
    """Blocks until a test opens :data:`GATE` (at most 10 s)."""

    def execute(self) -> str:
        GATE_ENTERED.set()
        GATE.wait(10)
        return "opened"


class Noop(task.Task):
    def execute(self) -> None:
        return None


class Named(task.Task):
    """Registered under an explicit name, like a stub for a task in another language."""

    worker_task_name = "tests.named.Echo"

    def execute(self, value: Any) -> Any:
        return value


NOT_A_TASK = 42
