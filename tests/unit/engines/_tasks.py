"""Tasks shared by the engine tests.

Module-level and picklable where a process pool needs them: the process tests
import these by name in the child processes. The recording tasks write into a
:class:`Recorder`, a thread-safe event log, so tests can check what ran, in
which order and with which arguments without sleeping.
"""

from __future__ import annotations

import threading
from typing import Any

from flowkit import task

_NAME: Any = object()


class CustomError(Exception):
    """An exception class of our own, to check type names survive a process boundary."""


class Recorder:
    """A thread-safe log of ``(what, atom_name, details)`` events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str, Any]] = []

    def add(self, what: str, name: str, details: Any = None) -> None:
        with self._lock:
            self.events.append((what, name, details))

    def names(self, what: str) -> list[str]:
        """Atom names of the events of one kind, oldest first."""
        with self._lock:
            return [name for kind, name, _ in self.events if kind == what]

    def executed(self) -> list[str]:
        return self.names("execute")

    def reverted(self) -> list[str]:
        return self.names("revert")

    def details(self, what: str, name: str) -> list[Any]:
        """The details of every ``what`` event of atom ``name``."""
        with self._lock:
            return [details for kind, who, details in self.events if kind == what and who == name]


class Step(task.Task):
    """Records its execute (with its arguments) and revert; returns ``value`` (its name by default)."""

    def __init__(self, name: str, recorder: Recorder, value: Any = _NAME, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.recorder = recorder
        self.value = name if value is _NAME else value

    def execute(self, **kwargs: Any) -> Any:
        self.recorder.add("execute", self.name, kwargs)
        return self.value

    def revert(self, **kwargs: Any) -> Any:
        self.recorder.add("revert", self.name, kwargs)
        return f"undid {self.name}"


class Boom(Step):
    """Records its execute, then raises ``ValueError('<name> failed')``."""

    def execute(self, **kwargs: Any) -> Any:
        self.recorder.add("execute", self.name, kwargs)
        raise ValueError(f"{self.name} failed")


class FailTimes(Step):
    """Fails its first ``times`` executions with ValueError, then returns ``value``."""

    def __init__(self, name: str, recorder: Recorder, times: int, **kwargs: Any) -> None:
        super().__init__(name, recorder, **kwargs)
        self.times = times
        self.calls = 0

    def execute(self, **kwargs: Any) -> Any:
        self.calls += 1
        self.recorder.add("execute", self.name, kwargs)
        if self.calls <= self.times:
            raise ValueError(f"{self.name} failed (call {self.calls})")
        return self.value


class RevertBoom(Step):
    """Succeeds, but its revert raises ``RuntimeError('<name> revert failed')``."""

    def revert(self, **kwargs: Any) -> Any:
        self.recorder.add("revert", self.name, kwargs)
        raise RuntimeError(f"{self.name} revert failed")


# -- picklable tasks for the process pool ---------------------------------------------


class Square(task.Task):
    """Returns ``x * x``; picklable (module-level, no recorder)."""

    def execute(self, x: int) -> int:
        return x * x


class AddOne(task.Task):
    """Returns ``value + 1``."""

    def execute(self, value: int) -> int:
        return value + 1


class RaiseCustom(task.Task):
    """Raises :class:`CustomError` in whatever process runs it."""

    def execute(self) -> None:
        raise CustomError("raised in a child process")


class ReportPid(task.Task):
    """Returns the id of the process that ran it."""

    def execute(self) -> int:
        import os

        return os.getpid()


class ReportsHalfway(task.Task):
    """Reports progress 0.5 from whatever process runs it and returns once ``heard`` is set.

    ``heard`` is a multiprocessing manager's event: a report relayed from a child
    process travels apart from the call's result, so the test sets it when the
    report arrived, and only then lets the task finish.
    """

    def execute(self, heard: Any) -> bool:
        self.update_progress(0.5)
        return bool(heard.wait(30))


class HoldsLock(task.Task):
    """Keeps a lock as an attribute: the task object itself cannot be pickled."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.lock = threading.Lock()

    def execute(self) -> int:
        return 1


class ReturnsLock(task.Task):
    """Returns a lock from whatever process runs it: the result cannot be pickled."""

    def execute(self) -> Any:
        return threading.Lock()


class RevertReturnsLock(task.Task):
    """Runs fine; its revert returns a lock, which cannot be pickled."""

    def execute(self) -> int:
        return 1

    def revert(self, **kwargs: Any) -> Any:
        return threading.Lock()
