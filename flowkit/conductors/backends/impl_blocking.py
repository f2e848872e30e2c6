"""The blocking conductor: one job at a time, run on the thread that called ``run()``."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flowkit.conductors.backends.impl_executor import ExecutorConductor

__all__ = ["BlockingConductor"]

_T = TypeVar("_T")


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each submitted call at once, on the submitting thread."""

    def __init__(self) -> None:
        self._shutdown = threading.Event()

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]:
        if self._shutdown.is_set():
            raise RuntimeError("cannot submit to an executor that was shut down")
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown.set()


class BlockingConductor(ExecutorConductor):
    """Claims a job, runs it to the end on the calling thread, then looks for the next one."""

    MAX_SIMULTANEOUS_JOBS = 1

    def _executor_factory(self) -> concurrent.futures.Executor:
        return _InlineExecutor()
