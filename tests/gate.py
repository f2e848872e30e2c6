"""A gate an atom waits at, so that a test can break a server while the atom runs.

The outage tests stop a database or a cache store while a task is inside
``execute`` and let it go on only then: the run meets the outage at a known
point, not at whatever point a timer picked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

__all__ = ["Gate", "held"]


class Gate:
    """Where a gated atom says it is running (:attr:`inside`) and waits for :attr:`go`.

    ``calls`` is the tests' record of what ran, in order.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reset()

    def reset(self) -> None:
        """Start a test afresh (the tasks find their module's one gate)."""
        self.inside = threading.Event()
        self.go = threading.Event()
        self.calls: list[object] = []

    def enter(self) -> None:
        """Say the atom is running, then wait (bounded) for the test to let it go."""
        self.inside.set()
        if not self.go.wait(self.timeout):
            raise TimeoutError("the test never let the gated atom finish")


def held(gate: Gate) -> Iterator[Gate]:
    """The body of a test's ``gate`` fixture: a fresh gate, always opened at the end."""
    gate.reset()
    try:
        yield gate
    finally:
        gate.go.set()
