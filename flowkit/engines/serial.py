"""The serial engine: every call runs inline, in the caller's thread, one at a time.

This is the default engine and the fastest for CPU-light flows: there is no pool,
no queue and no lock between the scheduler and the call. Coroutines returned by
``async def`` tasks are run to completion on a private event-loop thread.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from flowkit.engines._completions import Completion
from flowkit.engines._engine import ActionEngine, Driver
from flowkit.engines._runtime import Runtime

__all__ = ["SerialEngine"]

_LOG = logging.getLogger(__name__)


class _SerialDriver:
    """Runs one ready atom per engine cycle, inline."""

    in_flight = 0

    def open(self, runtime: Runtime) -> None:
        self._next_item = runtime.scheduler.next_item

    def schedule(self, runtime: Runtime) -> None:
        item = self._next_item()
        if item is not None:
            runtime.run_inline(*item)

    def wait(self, timeout: float | None) -> list[Completion]:
        return []

    def close(self) -> None:
        pass


class SerialEngine(ActionEngine):
    """Runs atoms one after another in the calling thread (``engine="serial"``)."""

    kind: ClassVar[str] = "serial"
    #: Taken and ignored, as TaskFlow's serial engine does: services that let the
    #: operator pick the engine (Glance, Octavia, Karbor) always pass them.
    IGNORED_OPTIONS: ClassVar[frozenset[str]] = frozenset({"executor", "max_workers"})
    OPTIONS: ClassVar[frozenset[str]] = ActionEngine.OPTIONS | IGNORED_OPTIONS

    def _check_options(self) -> None:
        ignored = sorted(name for name in self.IGNORED_OPTIONS if name in self._options)
        if ignored:
            _LOG.debug("the serial engine runs atoms inline and ignores option(s) %s", ignored)

    def _make_driver(self) -> Driver:
        return _SerialDriver()
