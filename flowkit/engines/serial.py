"""The serial engine: every call runs inline, in the caller's thread, one at a time.

This is the default engine and the fastest for CPU-light flows: there is no pool,
no queue and no lock between the scheduler and the call. It starts atoms in the
order TaskFlow's serial engine does: every ready atom of a step, then the outcomes. Coroutines returned by
``async def`` tasks are run to completion on a private event-loop thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flowkit._utils.lazy_logging import module_logger
from flowkit.engines._engine import ActionEngine
from flowkit.engines._runtime import Completion, Runtime
from flowkit.states import RUNNING

if TYPE_CHECKING:
    from flowkit.engines._protocols import Driver

__all__ = ["SerialEngine"]

_LOG = module_logger(__name__)


class _SerialDriver:
    """Runs every atom that is ready, one after another, then lets the engine look.

    As TaskFlow's serial engine does, a ``SCHEDULING`` step starts the whole batch
    of ready atoms before any outcome is accounted for: two branches of an
    unordered flow advance in step, and when one fails, the other has run what
    was ready beside the failure and nothing more. Outcomes are accounted for in
    the ``ANALYZING`` step, where TaskFlow's are.

    A task that succeeds with nobody listening and nothing persisted is accounted
    for at once (:meth:`Runtime.run_inline`'s short path): nobody could tell.
    """

    #: Nothing runs in another thread, so nothing comes back through a queue.
    completions = None

    def __init__(self) -> None:
        self._done: list[Completion] = []
        #: Outcomes waiting for ANALYZING (a plain attribute: the loop reads it per step).
        self.in_flight = 0
        self._chain = False

    def open(self, runtime: Runtime) -> None:
        scheduler = runtime.scheduler
        self._next_item = scheduler.next_item
        self._has_ready = scheduler.has_ready
        self._chain = not runtime.steps_watched

    def schedule(self, runtime: Runtime) -> None:
        next_item = self._next_item
        first = next_item()
        if first is None:
            return
        second = next_item() if self._has_ready() else None
        run_inline = runtime.run_inline
        if second is None and self._chain:
            # Nobody watches the engine's steps (run(), not run_iter()): a run of
            # steps that each start one atom and account for it at once is made
            # here, without a round of the state machine per atom. What the
            # machine would check between those steps is checked here.
            run = runtime.state
            scheduler = runtime.scheduler
            has_ready = self._has_ready
            while True:
                node, action = first
                outcome = run_inline(node, action)
                if outcome is not None:
                    self._done.append(Completion(node, action, *outcome))
                    self.in_flight = len(self._done)
                    return
                loops = runtime.loops  # None unless a loop flow is in the graph
                if run.flow_state != RUNNING or scheduler.halted or (loops is not None and loops.timers):
                    return
                first = next_item()
                if first is None:
                    return
                if has_ready():
                    second = next_item()
                    break
        if second is None:
            outcome = run_inline(*first)
            if outcome is not None:
                self._done.append(Completion(first[0], first[1], *outcome))
                self.in_flight = len(self._done)
            return
        batch = [first, second]
        while (item := next_item()) is not None:
            batch.append(item)
        done = self._done
        for node, action in batch:
            outcome = run_inline(node, action)
            if outcome is not None:
                done.append(Completion(node, action, *outcome))
        self.in_flight = len(done)

    def wait(self, timeout: float | None) -> list[Completion]:
        done, self._done = self._done, []
        self.in_flight = 0
        return done

    def close(self) -> None:
        self._done = []
        self.in_flight = 0


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
