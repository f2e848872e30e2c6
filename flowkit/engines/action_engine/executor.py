"""TaskFlow's task executor class names, as executors flowkit's parallel engine takes.

TaskFlow programs build an executor object and hand it to the parallel engine
(``engines.load(flow, engine="parallel", executor=ParallelThreadTaskExecutor(max_workers=4))``).
flowkit's parallel engine takes any :class:`concurrent.futures.Executor`, so each
name here is such an executor:

* :class:`SerialTaskExecutor` runs each call inline, in the engine's thread;
* :class:`ParallelThreadTaskExecutor` runs calls on a thread pool it makes on
  first use (``max_workers`` threads), or on the executor it was given;
* :class:`ParallelGreenThreadTaskExecutor` runs calls on eventlet green threads
  (futurist's green pool), when eventlet and futurist are installed; the
  parallel engine then waits the green way (see ``flowkit.engines._green``).

TaskFlow's engines call ``start()`` before a run and ``stop()`` after it; flowkit's
engine does not need either, and :meth:`TaskExecutor.stop` shuts down only a pool
the executor made itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "ParallelGreenThreadTaskExecutor",
    "ParallelTaskExecutor",
    "ParallelThreadTaskExecutor",
    "SerialRetryExecutor",
    "SerialTaskExecutor",
    "TaskExecutor",
]

T = TypeVar("T")


def _run_inline(fn: Callable[..., T], *args: Any, **kwargs: Any) -> cf.Future[T]:
    """Call ``fn`` now and return a finished future holding its outcome."""
    future: cf.Future[T] = cf.Future()
    try:
        result = fn(*args, **kwargs)
    except BaseException as err:  # the future carries any outcome, as a pool would
        future.set_exception(err)
    else:
        future.set_result(result)
    return future


class TaskExecutor(cf.Executor):
    """Base of TaskFlow's task executors: a :class:`concurrent.futures.Executor`."""

    def start(self) -> None:
        """Get ready to run calls (TaskFlow's engines call this first); nothing to do here."""

    def stop(self) -> None:
        """Stop running calls: the same as ``shutdown(wait=True)``."""
        self.shutdown(wait=True)


class SerialTaskExecutor(TaskExecutor):
    """Runs every call inline, in the thread that submits it (the engine's)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Call ``fn`` now; return a finished future holding its result or exception."""
        return _run_inline(fn, *args, **kwargs)


class SerialRetryExecutor(SerialTaskExecutor):
    """Runs retry decisions inline; flowkit's engines always decide retries in their own thread."""


class ParallelTaskExecutor(TaskExecutor):
    """Runs calls on ``executor``, or on a pool made on first use with ``max_workers`` workers.

    Args:
        executor: A :class:`concurrent.futures.Executor` to run calls on; its owner
            shuts it down.
        max_workers: The size of the pool this executor makes when given none.
    """

    def __init__(self, executor: cf.Executor | None = None, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError(f"max_workers must be a positive number, not {max_workers!r}")
        self._given = executor
        self._max_workers = max_workers
        self._own: cf.Executor | None = None
        self._lock = threading.Lock()

    @property
    def max_workers(self) -> int | None:
        """The size of the pool this executor makes (None: the pool's default)."""
        return self._max_workers

    def _create_executor(self, max_workers: int | None = None) -> cf.Executor:
        """Make the pool calls run on when no executor was given."""
        raise NotImplementedError(f"{type(self).__name__} does not make its own pool")

    def _executor(self) -> cf.Executor:
        if self._given is not None:
            return self._given
        with self._lock:
            if self._own is None:
                self._own = self._create_executor(self._max_workers)
            return self._own

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Run ``fn`` on the pool (made now if this is the first call); return its future."""
        return self._executor().submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut down the pool this executor made, if any (never one it was given)."""
        with self._lock:
            own, self._own = self._own, None
        if own is not None:
            own.shutdown(wait=wait, cancel_futures=cancel_futures)


class ParallelThreadTaskExecutor(ParallelTaskExecutor):
    """Runs calls on a thread pool (TaskFlow's default for ``engine="parallel"``)."""

    def _create_executor(self, max_workers: int | None = None) -> cf.Executor:
        return cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="flowkit-task")


class ParallelGreenThreadTaskExecutor(ParallelThreadTaskExecutor):
    """Runs calls on eventlet green threads (TaskFlow's ``executor="greenthreads"``).

    Raises:
        ImportError: when made, if eventlet or futurist is not installed.
    """

    #: Tells the parallel engine to wait the green way (``flowkit.engines._green``).
    green = True

    def __init__(self, executor: cf.Executor | None = None, max_workers: int | None = None) -> None:
        from flowkit.engines import _green

        _green.require()  # fail here, naming what to install, not at the first call
        super().__init__(executor, max_workers)

    def _create_executor(self, max_workers: int | None = None) -> cf.Executor:
        from flowkit.engines import _green

        return _green.make_pool(max_workers)
