"""Tasks of the executor contract, importable by worker processes, Dask workers and task workers."""

from __future__ import annotations

import os
import threading
from typing import Any

from flowkit import task

__all__ = ["TASKS", "Add", "Announces", "AnnouncesTwice", "Boom", "Double", "Pid", "Progress", "Undoable"]


class Double(task.Task):
    """``x * 2``, provided as ``doubled``."""

    default_provides = "doubled"

    def execute(self, x: int) -> int:
        return x * 2


class Add(task.Task):
    """``doubled + y``, provided as ``total``."""

    default_provides = "total"

    def execute(self, doubled: int, y: int) -> int:
        return doubled + y


class Undoable(task.Task):
    """Returns a record of its call; its revert returns what it was given, so storage shows it."""

    def execute(self, x: int) -> dict[str, Any]:
        return {"x": x, "items": [1, 2]}

    def revert(self, x: int, result: Any, flow_failures: Any, **kwargs: Any) -> dict[str, Any]:
        failure = next(iter(flow_failures.values()))
        return {"result": result, "failed_with": failure.exception_str}


class Boom(task.Task):
    """Fails with a ValueError naming its input."""

    def execute(self, x: int) -> None:
        raise ValueError(f"boom {x}")


class Pid(task.Task):
    """The id of the process it ran in."""

    def execute(self) -> int:
        return os.getpid()


class Progress(task.Task):
    """Reports progress half-way."""

    def execute(self) -> None:
        self.update_progress(0.5)


class Announces(task.Task):
    """Notifies an event of its own on its notifier."""

    def execute(self) -> None:
        self.notifier.notify("disk-full", {"left": 3})


class AnnouncesTwice(task.Task):
    """Notifies an event whose details cannot leave the process (a lock), then one that can."""

    def execute(self) -> None:
        self.notifier.notify("odd", {"lock": threading.Lock()})
        self.notifier.notify("fine", {"n": 1})


TASKS = [Add, Announces, AnnouncesTwice, Boom, Double, Pid, Progress, Undoable]
