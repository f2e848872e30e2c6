"""Tasks for ``tools/bench_workers.py``: as cheap as a task can be, so the protocol is what is measured.

Python workers serve this module (``flowkit worker --tasks tools._bench_worker_tasks``);
the benchmark's engine uses the same classes as stubs, so the names match.
"""

from __future__ import annotations

import time
from typing import Any

from flowkit import task

__all__ = ["Nap", "Noop"]


class Noop(task.Task):
    """Return ``value`` unchanged."""

    def execute(self, value: Any) -> Any:
        return value

    def revert(self, value: Any, **kwargs: Any) -> None:
        return None


class Nap(task.Task):
    """Sleep ``seconds``: a task that outlives its timeout (``tools/bench_wakeups.py``)."""

    def execute(self, seconds: float) -> None:
        time.sleep(seconds)
