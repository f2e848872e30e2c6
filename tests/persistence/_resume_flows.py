"""Flows and tasks for the crash-and-resume tests, importable by child processes.

A resumed run rebuilds its flow from the factory recorded in the flow detail
(``engines.load_from_factory``), so the factories here are module-level
functions taking JSON arguments only.

Every call of a task's ``execute`` or ``revert`` appends one JSON line
(``{"atom", "action", "pid", "time"}``) to the log file named by the ``resume_log``
symbol of the flow's store. The file is opened, appended to and closed for
each line, so a process killed with SIGKILL loses nothing it already logged.

A task told to crash (``crash_on="execute"`` or ``"revert"``) kills its own
process with SIGKILL, after logging the call, the first time that method
runs: a marker file next to the log makes every later call (the resumed run)
behave normally.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from flowkit import task
from flowkit.patterns import graph_flow, linear_flow

__all__ = ["LOG_SYMBOL", "Join", "Logged", "fan_out_graph", "linear_chain", "read_log"]

#: The store symbol naming the call log.
LOG_SYMBOL = "resume_log"


def log_call(log_path: str, atom: str, action: str) -> None:
    """Append one call record to ``log_path`` (open, write, close: nothing buffered)."""
    record = {"atom": atom, "action": action, "pid": os.getpid(), "time": time.time()}
    line = json.dumps(record) + "\n"
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(line)
        out.flush()


def read_log(log_path: str | Path) -> list[dict[str, Any]]:
    """Every call record in ``log_path``, oldest first (none if there is no log yet)."""
    path = Path(log_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _crash_once(log_path: str, atom: str, action: str) -> None:
    """SIGKILL this process, unless an earlier call already did (the marker file exists)."""
    marker = f"{log_path}.{atom}.{action}.crashed"
    try:
        with open(marker, "x", encoding="utf-8"):
            pass
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class Logged(task.Task):
    """Appends its own name to ``value``; logs every call; may crash or fail on demand.

    Args:
        name: the task's name.
        crash_on: ``"execute"`` or ``"revert"``: that method kills the process
            the first time it runs.
        fail: whether ``execute`` raises ``RuntimeError("<name> failed")``.
        kwargs: passed to :class:`~flowkit.task.Task` (``provides``, ``rebind``...).
    """

    def __init__(self, name: str, crash_on: str | None = None, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._crash_on = crash_on
        self._fail = fail

    def execute(self, value: str, resume_log: str) -> str:
        log_call(resume_log, self.name, "execute")
        if self._crash_on == "execute":
            _crash_once(resume_log, self.name, "execute")
        if self._fail:
            raise RuntimeError(f"{self.name} failed")
        return f"{value}>{self.name}"

    def revert(self, value: str, resume_log: str, **kwargs: Any) -> None:
        log_call(resume_log, self.name, "revert")
        if self._crash_on == "revert":
            _crash_once(resume_log, self.name, "revert")


class Join(task.Task):
    """Combines the four branch results of :func:`fan_out_graph`."""

    def execute(self, w0: str, w1: str, w2: str, w3: str, resume_log: str) -> str:
        log_call(resume_log, self.name, "execute")
        return "+".join((w0, w1, w2, w3))

    def revert(self, resume_log: str, **kwargs: Any) -> None:
        log_call(resume_log, self.name, "revert")


def linear_chain(
    count: int,
    crash_at: int | None = None,
    crash_on: str = "execute",
    fail_at: int | None = None,
) -> linear_flow.Flow:
    """Tasks ``t1``..``t<count>`` in a line, each one's result the next one's ``value``.

    Args:
        count: how many tasks.
        crash_at: the number of the task that crashes (None: none does).
        crash_on: which of its methods crashes, ``"execute"`` or ``"revert"``.
        fail_at: the number of the task whose execute fails (None: none does).
    """
    flow = linear_flow.Flow(f"chain-{count}")
    for number in range(1, count + 1):
        flow.add(
            Logged(
                f"t{number}",
                crash_on=crash_on if number == crash_at else None,
                fail=number == fail_at,
                provides=f"t{number}",
                rebind={"value": "value" if number == 1 else f"t{number - 1}"},
            )
        )
    return flow


def fan_out_graph(crash_at: str | None = None) -> graph_flow.Flow:
    """``start`` feeds four branches ``w0``..``w3`` that ``join`` combines.

    Args:
        crash_at: the name of the branch whose execute crashes (None: none does).
    """
    flow = graph_flow.Flow("fan-out")
    flow.add(Logged("start", provides="seed"))
    for number in range(4):
        name = f"w{number}"
        flow.add(
            Logged(
                name,
                crash_on="execute" if name == crash_at else None,
                provides=name,
                rebind={"value": "seed"},
            )
        )
    flow.add(Join("join", provides="joined"))
    return flow
