"""A console progress display for a running flow, drawn with ``rich``.

One bar for the flow (atoms finished out of all atoms; a resumed run starts
it at those earlier runs finished) and one per running task, which moves with
the task's own ``update_progress`` calls::

    with ProgressListener(engine):
        engine.run()

It stays silent when the console is not a terminal (output piped to a file
or to another program), so logs and scripts are never filled with bar
drawings. ``rich`` is an optional dependency: ``pip install 'flowkit[cli]'``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from flowkit import states as st
from flowkit.listeners import base
from flowkit.task import EVENT_UPDATE_PROGRESS
from flowkit.types import notifier as nt

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["ProgressListener"]

#: Atom states that end a running row.
_FINISHED = frozenset({st.SUCCESS, st.FAILURE, st.REVERTED, st.REVERT_FAILURE, st.IGNORE})
#: Atom states that count as done on the flow's bar.
_DONE = frozenset({st.SUCCESS, st.IGNORE})


def _rich_progress() -> Any:
    try:
        import rich.progress
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("the progress display needs rich: pip install 'flowkit[cli]'") from err
    return rich.progress


class ProgressListener(base.Listener):
    """Shows the flow's progress and each running task's on the console.

    Args:
        engine: the engine to watch.
        console: a ``rich.console.Console`` to draw on (default: a new one on
            stdout). Nothing is drawn when it is not a terminal.
        total: how many atoms the flow has (default: counted from the engine's
            compiled graph, again as atoms finish, so the atoms a spawned
            sub-flow adds count too).
    """

    def __init__(self, engine: Engine, console: Any = None, total: int | None = None) -> None:
        super().__init__(
            engine,
            task_listen_for=(nt.Notifier.ANY, EVENT_UPDATE_PROGRESS),
            retry_listen_for=base.DEFAULT_LISTEN_FOR,
            flow_listen_for=base.DEFAULT_LISTEN_FOR,
        )
        progress = _rich_progress()
        if console is None:
            from rich.console import Console

            console = Console()
        self.enabled = bool(console.is_terminal)
        self._total = total
        self._lock = threading.Lock()
        self._bar = progress.Progress(
            progress.SpinnerColumn(),
            progress.TextColumn("{task.description}"),
            progress.BarColumn(),
            progress.TaskProgressColumn(),
            progress.TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._flow_task: Any = None
        self._atoms: dict[str, Any] = {}
        self._done: set[str] = set()

    def register(self) -> None:
        """Start listening (only when the console is a terminal)."""
        if self.enabled:
            super().register()

    def deregister(self) -> None:
        super().deregister()
        with self._lock:
            if self._flow_task is not None:
                self._bar.stop()
                self._flow_task = None

    def _count(self) -> int:
        if self._total is not None:
            return self._total
        compilation = getattr(self._engine, "compilation", None)
        return len(getattr(compilation, "atoms", None) or ()) or 1

    def _done_before(self) -> set[str]:
        """The atoms a resumed run finds done: earlier runs' work, on the flow's bar from the start."""
        compilation = getattr(self._engine, "compilation", None)
        names = [node.name for node in getattr(compilation, "atoms", None) or ()]
        found = self._engine.storage.get_atoms_states(names)
        return {name for name, (state, _) in found.items() if state in _DONE}

    def _start_flow_bar(self, flow_name: str, resumed: bool) -> None:
        """Draw the flow's bar; a ``resumed`` run's starts at the atoms earlier runs finished."""
        if resumed:
            self._done.update(self._done_before())
        self._bar.start()
        self._flow_task = self._bar.add_task(
            f"flow {flow_name}", total=self._count(), completed=len(self._done)
        )

    def _in_run(self) -> bool:
        return self._flow_task is not None

    def _begin_unannounced_run(self, atom: str, was: str | None) -> None:
        """Draw the flow's bar for a run no flow notice began (one run again after an interrupt)."""
        self._start_flow_bar(self._engine.storage.flow_name, resumed=True)

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        with self._lock:
            if state == st.RUNNING and self._flow_task is None:
                resumed = details.get("old_state") not in (None, st.PENDING)
                self._start_flow_bar(details["flow_name"], resumed)
            elif self._flow_task is not None:
                self._bar.update(self._flow_task, description=f"flow {details['flow_name']} {state}")

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._atom(details["task_name"], state, details)

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        self._atom(details["retry_name"], state, details)

    def _atom(self, name: str, state: str, details: base.Details) -> None:
        with self._lock:
            if not self._take_up_run(name, state, details):
                return
            bar = self._bar
            row = self._atoms.get(name)
            if state == EVENT_UPDATE_PROGRESS:
                if row is not None:
                    bar.update(row, completed=float(details.get("progress", 0.0)))
            elif state in (st.RUNNING, st.REVERTING):
                label = f"  {name}" if state == st.RUNNING else f"  {name} (reverting)"
                if row is None:
                    self._atoms[name] = bar.add_task(label, total=1.0)
                else:
                    bar.reset(row, description=label, total=1.0)
            else:
                if state in _FINISHED and row is not None:
                    bar.remove_task(row)
                    del self._atoms[name]
                # The flow's bar counts atoms whose work stands (a revert or a
                # retry's reset takes one back).
                if state in _DONE:
                    self._done.add(name)
                else:
                    self._done.discard(name)
                # Counted again: a spawned sub-flow's atoms join the graph as it runs.
                bar.update(self._flow_task, completed=len(self._done), total=self._count())
