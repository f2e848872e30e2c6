"""Typed provider tasks the type-check tests share, and what they ran.

Tests that assert nothing ran (a miswired flow is refused before it starts)
clear :data:`RAN` first.
"""

from __future__ import annotations

from flowkit import task

__all__ = ["RAN", "MakeNumber", "MakeText"]

#: Names of the provider tasks that executed, in order.
RAN: list[str] = []


class MakeText(task.Task):
    default_provides = "value"

    def execute(self) -> str:
        RAN.append(self.name)
        return "text"


class MakeNumber(task.Task):
    default_provides = "value"

    def execute(self) -> int:
        RAN.append(self.name)
        return 1
