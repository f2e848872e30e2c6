"""Progress a running task reports (``update_progress``): recorded, and relayed to the engine thread.

A report made in the engine thread is stored and told to the listeners at
once; one made in any other thread (a pool worker, an event loop, the thread
relaying a process pool's or a remote worker's reports) goes through the
run's completion queue, and the engine thread records it as it waits
(:meth:`Runtime.relay_progress`). The 0.0 and 1.0 the engine reports itself
are not here: listened runs send them for every task. A run whose tasks
report nothing never gets here, so this module is imported with the first
report rather than with the runtime: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

import _thread
from typing import TYPE_CHECKING, Any

from flowkit import states as st

if TYPE_CHECKING:
    from flowkit.engines._completions import ProgressReport
    from flowkit.engines._runtime import Runtime

__all__ = ["Reporting"]

#: States in which an atom's call is out, so a progress report about it is current.
_CALL_STATES = frozenset({st.RUNNING, st.REVERTING})


class Reporting:
    """A runtime's progress reports: recorded in the engine thread, queued from any other.

    The runtime makes one with the first report and keeps it (:meth:`Runtime._reporting`):
    a task may report many times, and importing this module at each report cost
    a third of a reporting task's run.

    Args:
        runtime: the runtime whose storage and listeners hear the reports.
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def on_progress(self, atom: Any, progress: float, details: dict[str, Any] | None) -> None:
        """A running task reported progress, in any thread (:meth:`Runtime._on_progress`)."""
        runtime = self._runtime
        relay = runtime._relay
        if relay is not None and _thread.get_ident() != runtime._engine_thread:
            relay.put_progress(atom.name, progress, details)
        else:
            self._record(atom.name, progress, details)

    def progress_by_name(self, atom_name: str, progress: float, details: dict[str, Any] | None) -> None:
        """Progress reported for an atom that runs elsewhere (see :meth:`Runtime.progress_by_name`)."""
        runtime = self._runtime
        relay = runtime._relay
        if relay is not None and _thread.get_ident() != runtime._engine_thread:
            relay.put_progress(atom_name, progress, details)
        else:
            self._apply(atom_name, progress, details)

    def apply_report(self, report: ProgressReport) -> None:
        """Record a progress report taken from the completion queue (engine thread)."""
        self._apply(report.name, report.progress, report.details)

    def _apply(self, atom_name: str, progress: float, details: dict[str, Any] | None) -> None:
        """Record a report that may come late: one whose atom's call has ended is dropped."""
        record = self._runtime.state.records.get(atom_name)
        if record is not None and record.state in _CALL_STATES:
            self._record(atom_name, progress, details)

    def _record(self, name: str, progress: float, details: dict[str, Any] | None) -> None:
        runtime = self._runtime
        # A report without details erases the last ones, as in TaskFlow.
        runtime.storage.set_task_progress(name, progress, details or {})
        runtime._notify_progress(name, progress, details)
