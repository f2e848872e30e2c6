"""Python twins of the Go worker's example tasks, for one suite run against both workers.

Each class carries the Go task's name in ``worker_task_name``, so a request
for ``flowkit_go_tasks.Echo`` means the same thing to either worker, and
behaves the same way: same results, same failure type names and messages,
same progress reports. Only ``Reserve`` has a revert of its own, as only its
Go twin registers one: the revert of any other does nothing, whatever
arguments it is given. The Python worker serves them when started with
``--tasks tests.workers.behaviour_tasks``; the tests also hand these very
classes to the worker-based engine as stubs (the engine only reads their
names and signatures, it never runs them).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from flowkit import task

__all__ = [
    "Announce",
    "CountPrimes",
    "Echo",
    "Fail",
    "Reserve",
    "Sha256Rounds",
    "Sleep",
    "TaskFailed",
    "TraceParent",
    "sha256_rounds",
]

#: Prefix of every Go example task's name; the twins share it.
GO_TASKS = "flowkit_go_tasks"


class TaskFailed(Exception):
    """What ``Fail`` raises; its type names match the Go worker's failure record."""


# Failure records name a class by module and qualified name: pretending to
# live in the Go tasks' "module" gives the same exc_type_names as the Go
# worker sends (flowkit_go_tasks.TaskFailed, builtins.Exception, ...).
TaskFailed.__module__ = GO_TASKS


def sha256_rounds(data: str, rounds: int) -> str:
    """Hash the UTF-8 bytes of ``data`` ``rounds`` times (each round hashes the raw digest).

    Returns:
        The last digest in lowercase hex (``data``'s own bytes in hex for 0 rounds).
    """
    digest = data.encode("utf-8")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def count_primes(limit: int) -> int:
    """Return how many primes are smaller than ``limit`` (a sieve, CPU-bound on purpose)."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


class CountPrimes(task.Task):
    """Count the primes below ``limit``."""

    worker_task_name = f"{GO_TASKS}.CountPrimes"

    def execute(self, limit: int) -> int:
        return count_primes(limit)


class Sha256Rounds(task.Task):
    """Apply SHA-256 ``rounds`` times to ``data``."""

    worker_task_name = f"{GO_TASKS}.Sha256Rounds"

    def execute(self, data: str, rounds: int) -> str:
        return sha256_rounds(data, rounds)


class Fail(task.Task):
    """Always fail with ``message``."""

    worker_task_name = f"{GO_TASKS}.Fail"

    def execute(self, message: str) -> None:
        raise TaskFailed(message)


class Sleep(task.Task):
    """Sleep ``seconds``, reporting progress 0.5 halfway through."""

    worker_task_name = f"{GO_TASKS}.Sleep"

    def execute(self, seconds: float) -> None:
        time.sleep(seconds / 2)
        self.update_progress(0.5)
        time.sleep(seconds / 2)


class Echo(task.Task):
    """Return ``value`` unchanged."""

    worker_task_name = f"{GO_TASKS}.Echo"

    def execute(self, value: Any) -> Any:
        return value


class Reserve(task.Task):
    """Reserve ``slot`` (a string), returning it; the revert releases it and says so."""

    worker_task_name = f"{GO_TASKS}.Reserve"

    def execute(self, slot: str) -> str:
        return slot

    def revert(self, slot: str, result: Any, flow_failures: Any) -> str:
        return f"released {slot}"


class Exit(task.Task):
    """Stop instead of returning: ``SystemExit`` here, ``runtime.Goexit`` in the Go twin."""

    worker_task_name = f"{GO_TASKS}.Exit"

    def execute(self) -> None:
        raise SystemExit(3)


class TraceParent(task.Task):
    """Return the W3C ``traceparent`` the request carried ("" for none)."""

    worker_task_name = f"{GO_TASKS}.TraceParent"

    def execute(self) -> str:
        from flowkit.engines.worker_based.worker import current_traceparent

        return current_traceparent() or ""


class Announce(task.Task):
    """Notify each event of ``events`` with those not yet announced, reporting progress after each.

    The task of TaskFlow's ``wbe_event_sender`` example; returns how many it announced.
    """

    worker_task_name = f"{GO_TASKS}.Announce"

    def execute(self, events: list[str]) -> int:
        for i, name in enumerate(events):
            self.notifier.notify(name, {"leftover": events[i:]})
            self.update_progress((i + 1) / len(events))
        return len(events)
