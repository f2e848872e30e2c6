"""A module a hostile spec names: importing it must not happen (the test checks sys.modules)."""

from __future__ import annotations

from flowkit import task


class Marker(task.Task):
    def execute(self) -> None:
        return None
