"""Tasks that spawn sub-flows on a worker (flowkit.dynamic), for the worker-based engine tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowkit import dynamic, task
from flowkit.patterns import unordered_flow
from tests.workers.behaviour_tasks import Echo


class FanOut(task.Task):
    """Spawns one Echo per item of ``values`` (each echoing its item)."""

    def execute(self, values: list[Any]) -> Any:
        children = [Echo(name=f"echo-{i}", inject={"value": value}) for i, value in enumerate(values)]
        return dynamic.subflow(unordered_flow.Flow("echoes").add(*children))


class BadFanOut(task.Task):
    """Spawns an atom that cannot be described, so it cannot travel."""

    def execute(self) -> Any:
        class Inner(task.Task):
            def execute(self) -> int:
                return 1

        return dynamic.subflow(unordered_flow.Flow("bad").add(Inner("inner")))


def leave_mark(name: str, **_ignored: Any) -> None:
    """Create the file ``name``: stands for any importable function a hostile result could name.

    Its signature fits both ways a spawn record calls something: as a factory
    (``args=[path]``) and as an atom class (``name=path, provides=...``).
    """
    Path(name).touch()


@dynamic.spawnable
def make_echoes(values: list[Any]) -> unordered_flow.Flow:
    """A factory a worker's spawn may name: one Echo per item of ``values``."""
    children = [Echo(name=f"made-{i}", inject={"value": value}) for i, value in enumerate(values)]
    return unordered_flow.Flow("made").add(*children)


class FactoryFanOut(task.Task):
    """Spawns through the marked factory :func:`make_echoes`."""

    def execute(self, values: list[Any]) -> Any:
        return dynamic.subflow(make_echoes, values)
