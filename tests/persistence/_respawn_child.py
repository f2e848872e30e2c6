"""A child process for test_respawn_crash.py: a retried spawner that spawns less the second time.

``python _respawn_child.py URL start|resume MARKS``: ``start`` runs
:func:`make_flow` from the start, ``resume`` resumes the one flow stored at
``URL``. The spawner ``fan`` spawns ``x`` and ``y`` on its first call and ``x``
and ``z`` on its second; ``check`` fails once, so the retry runs both again;
``z`` kills its process with SIGKILL the first time it runs. Marker files in
the directory ``MARKS`` (a store symbol) make each of those happen once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from flowkit import dynamic, engines, task
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.retry import Times


def first_time(marks: str, what: str) -> bool:
    """True the first time ``what`` is asked about in ``marks`` (a marker file is made)."""
    try:
        with open(Path(marks) / what, "x", encoding="utf-8"):
            return True
    except FileExistsError:
        return False


class Child(task.Task):
    def execute(self, attempt: int, marks: str) -> str:
        if self.name == "z" and first_time(marks, "z-killed"):
            os.kill(os.getpid(), signal.SIGKILL)
        return f"{self.name}@{attempt}"


def children(names: list[str], attempt: int) -> linear_flow.Flow:
    """The sub-flow factory (module level: rebuilt by name on resume)."""
    return linear_flow.Flow("children").add(*[Child(name, inject={"attempt": attempt}) for name in names])


class Fan(task.Task):
    default_provides = "spawned"

    def execute(self, marks: str) -> Any:
        if first_time(marks, "fan-spawned"):
            return dynamic.subflow(children, ["x", "y"], 1)
        return dynamic.subflow(children, ["x", "z"], 2)


class CheckOnce(task.Task):
    def execute(self, spawned: list[str], marks: str) -> list[str]:
        if first_time(marks, "check-failed"):
            raise RuntimeError("check fails once")
        return spawned


def make_flow() -> linear_flow.Flow:
    return linear_flow.Flow("respawn", retry=Times(3)).add(Fan("fan"), CheckOnce("check", provides="checked"))


def main(url: str, mode: str, marks: str) -> None:
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        if mode == "start":
            engine = engines.load_from_factory(make_flow, store={"marks": marks}, backend=backend)
        else:
            with contextlib.closing(backend.get_connection()) as conn:
                (book,) = conn.get_logbooks()
                (detail,) = book
            engine = engines.load_from_detail(detail, backend=backend)
        engine.run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
