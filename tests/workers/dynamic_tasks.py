"""Tasks that spawn sub-flows on a worker (flowkit.dynamic), for the worker-based engine tests."""

from __future__ import annotations

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
