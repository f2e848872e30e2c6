"""Tasks the Dask tests run on cluster workers: importable there, picklable, JSON results."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from flowkit import task
from flowkit.patterns import linear_flow, unordered_flow


class Square(task.Task):
    """Returns its input squared and the PID of the process that computed it."""

    def execute(self, x: int) -> list[int]:
        return [x * x, os.getpid()]


def squares(count: int) -> unordered_flow.Flow:
    """``count`` independent squares of ``x0``, ``x1``... providing ``r0``, ``r1``..."""
    flow = unordered_flow.Flow("squares")
    for i in range(count):
        flow.add(Square(name=f"sq{i}", provides=f"r{i}", rebind={"x": f"x{i}"}))
    return flow


class Reserve(task.Task):
    """Reserves something; its revert records the PID that undid it in a file."""

    def execute(self, x: int, undo_log: str) -> int:
        return x

    def revert(self, x: int, undo_log: str, **kwargs: Any) -> None:
        with open(undo_log, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")


class Refuse(task.Task):
    """Always fails, naming the worker process."""

    def execute(self, x: int) -> None:
        raise ValueError(f"refused {x} in process {os.getpid()}")


def reserve_then_refuse() -> linear_flow.Flow:
    return linear_flow.Flow("refusing").add(Reserve(name="reserve"), Refuse(name="refuse"))


class Charge(task.Task):
    """Records that it started in ``marker_dir``, then waits for a ``release`` file there.

    It stands for a side effect (charging a card) two jobs may ask for with the
    same arguments: each job's call must run.
    """

    def execute(self, marker_dir: str, amount: int) -> int:
        with open(os.path.join(marker_dir, f"started-{os.getpid()}-{time.monotonic_ns()}"), "w"):
            pass
        release = os.path.join(marker_dir, "release")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return amount


class ReturnsLock(task.Task):
    """Returns what no pickler can send back: a lock."""

    def execute(self) -> Any:
        return threading.Lock()


class HoldsLock(task.Task):
    """Keeps a lock as an attribute: the task object itself cannot be sent."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.lock = threading.Lock()

    def execute(self) -> int:
        return 1


class Echo(task.Task):
    """Returns its argument."""

    def execute(self, value: Any) -> Any:
        return value


class Exit(task.Task):
    """Calls ``sys.exit`` in the middle of a flow."""

    def execute(self) -> None:
        sys.exit(3)


class KillsItsWorker(task.Task):
    """Ends the worker process it runs in at once, as the kernel's OOM killer would."""

    def execute(self) -> None:
        os._exit(7)


class GraphCounter:
    """A Dask scheduler plugin: which keys each graph the scheduler takes in holds.

    Registered with ``client.register_plugin``; read back with
    ``client.run_on_scheduler(graphs_received, name=...)``.
    """

    name = "flowkit-graph-counter"

    def __init__(self) -> None:
        self.graphs: list[list[str]] = []

    def update_graph(self, scheduler: Any, *, keys: Any, **kwargs: Any) -> None:
        self.graphs.append(sorted(str(key) for key in keys))


def graphs_received(dask_scheduler: Any) -> list[list[str]]:
    """The keys of every graph the registered :class:`GraphCounter` saw."""
    plugin = dask_scheduler.plugins[GraphCounter.name]
    return list(plugin.graphs)


class Steps(task.Task):
    """Reports its progress ``steps - 1`` times, the step and ``label`` as details; returns ``label``."""

    def execute(self, steps: int, label: str) -> str:
        for step in range(1, steps):
            self.notifier.notify(
                task.EVENT_UPDATE_PROGRESS, {"progress": step / steps, "step": step, "label": label}
            )
        return label


class ReportsThenWaits(task.Task):
    """Reports progress with ``label`` as details, then waits for a ``release`` file in ``marker_dir``.

    Reports again as it ends, so a run hears the other's if they share a channel.
    """

    def execute(self, marker_dir: str, label: str) -> str:
        self.notifier.notify(task.EVENT_UPDATE_PROGRESS, {"progress": 0.25, "label": label})
        release = os.path.join(marker_dir, "release")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.notifier.notify(task.EVENT_UPDATE_PROGRESS, {"progress": 0.75, "label": label})
        self.notifier.notify("done", {"label": label})
        return label


def flowkit_topics(dask_scheduler: Any) -> dict[str, int]:
    """The scheduler's event topics of flowkit's runs, and how many clients subscribe to each.

    Reads the scheduler's event broker, which Dask has no public call for.
    """
    return {
        name: len(topic.subscribers)
        for name, topic in dask_scheduler._broker._topics.items()
        if name.startswith("flowkit-")
    }


class ReportsLock(task.Task):
    """Reports progress with details that cannot leave the worker (a lock), then with details that can."""

    def execute(self) -> None:
        self.notifier.notify(task.EVENT_UPDATE_PROGRESS, {"progress": 0.5, "lock": threading.Lock()})
        self.notifier.notify(task.EVENT_UPDATE_PROGRESS, {"progress": 0.75, "n": 1})


class FailsTwice(task.Task):
    """Fails its first two calls (counted by files in ``marker_dir``, shared by every worker)."""

    def execute(self, marker_dir: str) -> int:
        tries = len(os.listdir(marker_dir))
        with open(os.path.join(marker_dir, f"try-{tries}"), "w"):
            pass
        if tries < 2:
            raise RuntimeError(f"transient failure on try {tries}")
        return tries
