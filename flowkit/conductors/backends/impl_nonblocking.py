"""The non-blocking conductor: several jobs at once on a pool of threads."""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Mapping
from typing import Any

from flowkit.conductors.backends.impl_executor import ExecutorConductor
from flowkit.jobs.base import JobBoard
from flowkit.persistence.base import Backend

__all__ = ["NonBlockingConductor"]


class NonBlockingConductor(ExecutorConductor):
    """Runs up to ``max_simultaneous_jobs`` jobs at once.

    Args:
        executor_factory: called with no arguments at ``run()`` to make the
            executor jobs run on, as TaskFlow's conductor calls it (its
            docstring says with the conductor; its code and its tests call
            it bare); by default a thread pool as large as
            ``max_simultaneous_jobs``.
        other arguments: as :class:`~flowkit.conductors.backends.impl_executor.ExecutorConductor`.
    """

    #: TaskFlow's default: one job more than there are CPUs (its ``get_optimal_thread_count``).
    MAX_SIMULTANEOUS_JOBS = (os.cpu_count() or 1) + 1

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        executor_factory: Callable[[], concurrent.futures.Executor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name, jobboard, persistence=persistence, engine=engine, engine_options=engine_options, **kwargs
        )
        if executor_factory is not None and not callable(executor_factory):
            raise ValueError(f"executor_factory must be callable, not {executor_factory!r}")
        self._made_executor = executor_factory

    def _executor_factory(self) -> concurrent.futures.Executor:
        if self._made_executor is not None:
            return self._made_executor()
        workers = (
            self._max_simultaneous_jobs if self._max_simultaneous_jobs > 0 else self.MAX_SIMULTANEOUS_JOBS
        )
        return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"conductor-{self._name}")

    def _wake(self) -> None:
        # The loop sleeps on the stop event between listings; a finished job
        # frees a slot, which the next listing (at most wait_timeout later) fills.
        pass
