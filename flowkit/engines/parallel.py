"""The parallel engine: calls run on an executor while the engine thread schedules.

Workers never touch the scheduler: a finished call is put on a queue, and the
engine thread takes it from there, so the decision core needs no locks. With a
thread pool (the default) a worker reports straight into the queue; with any
other :class:`concurrent.futures.Executor` (a process pool, or your own) the
future's done-callback does. That driver is in :mod:`flowkit.engines._executor_driver`,
imported only for such an ``executor=`` option (the first-load cost,
``doc/benchmarks.rst``).

Process pools pickle the task and its arguments (so tasks must be importable and
picklable) and bring failures back as JSON-safe records, never as pickled
exceptions. Retries always run in the engine thread: they only decide.

A Dask client's executor (``client.get_executor()``) is driven the same way,
except where Dask's own defaults would get a flow wrong: see :mod:`flowkit.engines._dask`,
imported only for such an executor.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit import exceptions as exc
from flowkit.engines import _threads
from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completions
from flowkit.engines._engine import ActionEngine, DispatchingDriver, positive_workers
from flowkit.engines._runtime import Call, Runtime, _shared_bridge

if TYPE_CHECKING:
    # Imported where an executor is made or checked: concurrent.futures imports
    # logging, a few milliseconds that the default thread pool never needs.
    import concurrent.futures as cf
    from collections.abc import Callable

    from flowkit.engines._protocols import Driver

__all__ = ["ParallelEngine"]

_THREAD_NAMES = frozenset({"thread", "threads", "threaded"})
_PROCESS_NAMES = frozenset({"process", "processes"})


def _report(done: Completions, node: Node, action: int, call: Call) -> None:
    """Run ``call`` on a pool thread and hand its outcome straight to the engine.

    A coroutine (an ``async def`` task) is handed on to the shared loop thread,
    which reports its outcome, and the pool thread is free at once: awaiting it
    here held a thread for as long as the task awaited, so ``max_workers``
    coroutines at a time ran, where a timed one (handed on the same way by
    :func:`~flowkit.engines._timeouts.run_timed`) never held one.
    """
    fn, kwargs = call
    try:
        value = fn(**kwargs)
        if type(value) is types.CoroutineType:
            future = _shared_bridge().submit(value)
            future.add_done_callback(functools.partial(done.put_value_future, node, action))
            return
    except BaseException as err:
        done.put_raised(node, action, err)
    else:
        done.put(node, action, True, value)


def _callers_context_run() -> Callable[..., Any] | None:
    """``run`` of a copy of the calling thread's context, or None when no context variable can exist.

    A context variable made in Python needs the ``_contextvars`` extension
    (:mod:`contextvars` and :mod:`asyncio` import it), and the standard library's
    one made in C is :mod:`decimal`'s. While neither is loaded a copy would
    carry nothing, and not loading the extension for it spares a fresh
    process's first parallel run about 0.3 ms. Once either is loaded, every
    call is made in a copy (a variable a task makes is carried from then on).
    """
    modules = sys.modules
    if "_contextvars" not in modules and "_decimal" not in modules:
        return None
    import _contextvars

    return _contextvars.copy_context().run


class _ThreadsDriver(DispatchingDriver):
    """Hands every ready atom to the engine's own worker threads."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._threads: _threads.WorkerThreads | None = None
        self._runtime: Runtime | None = None

    def open(self, runtime: Runtime) -> None:
        self._threads = _threads.borrow(self._size)
        self._runtime = runtime

    def dispatch(self, done: Completions, node: Node, action: int, call: Call) -> None:
        # In a copy of the engine thread's context, as asyncio.to_thread does: the
        # pool's threads outlive runs, and calls made in their own context saw
        # none of the caller's context variables (a request id) and kept what an
        # earlier call set there, of this run or of any run before it.
        threads = self._threads
        assert threads is not None
        run_in_context = _callers_context_run()
        if run_in_context is None:
            threads.submit(_report, done, node, action, call)
        else:
            threads.submit(run_in_context, _report, done, node, action, call)

    def dispatch_timed(self, runtime: Runtime, node: Node, action: int, call: Call, seconds: float) -> None:
        # Armed on the pool thread when the call starts, so waiting for a free
        # thread does not count; a coroutine is handed on to the loop thread, and
        # cancelled there on time-out.
        assert self._threads is not None
        watch = runtime.timed_calls()
        watch.on_abandoned = self._threads.lend
        timed = watch.call(self._done, node, action, seconds)
        from contextvars import copy_context  # a timed call's module imports it anyway

        from flowkit.engines._timeouts import run_timed  # with logging: only runs with timeouts need it

        self._threads.submit(copy_context().run, run_timed, timed, node, action, call.fn, call.kwargs)

    def close(self) -> None:
        threads, self._threads = self._threads, None
        if threads is None:
            return
        watch = self._runtime.watchdog if self._runtime is not None else None
        if self.in_flight or (watch is not None and watch.abandoned):
            # An interrupted run (or a timed-out call) left calls running: those
            # threads are not reusable, so they are told to stop once their calls end.
            threads.stop()
        else:
            _threads.give_back(threads)


class ParallelEngine(ActionEngine):
    """Runs independent atoms at the same time (``engine="parallel"``).

    Options (besides the common ones): ``executor`` (a
    :class:`concurrent.futures.Executor` you own, or ``"threads"`` (default) or
    ``"processes"``) and ``max_workers`` (pool size when flowkit creates the pool).
    """

    kind: ClassVar[str] = "parallel"
    OPTIONS: ClassVar[frozenset[str]] = ActionEngine.OPTIONS | {"executor", "max_workers"}

    def _check_options(self) -> None:
        self._workers = positive_workers(self._options, self.kind)
        executor = self._options.get("executor")
        self._executor: cf.Executor | None = None
        self._processes = False
        self._green = False
        self._dask = False
        # An Executor instance means concurrent.futures is imported already.
        futures = sys.modules.get("concurrent.futures")
        if futures is not None and isinstance(executor, futures.Executor):
            self._executor = executor
            self._processes = isinstance(executor, futures.ProcessPoolExecutor)
            # Dask's is recognised without importing distributed: a program using it did.
            dask = sys.modules.get("distributed.cfexecutor")
            self._dask = dask is not None and isinstance(executor, dask.ClientExecutor)
            from flowkit.engines import _green

            self._green = _green.is_green(executor)
        elif isinstance(executor, str) and executor.lower() in _PROCESS_NAMES:
            self._processes = True
        elif executor is None or (isinstance(executor, str) and executor.lower() in _THREAD_NAMES):
            pass  # flowkit's own worker threads, the default
        else:
            # Green threads (or a mistake): only then is their module imported.
            from flowkit.engines import _green

            if not (isinstance(executor, str) and executor.lower() in _green.GREEN_NAMES):
                names = sorted(_THREAD_NAMES | _PROCESS_NAMES | _green.GREEN_NAMES)
                # TaskFlow's sentences, which name what it would have taken.
                message = (
                    f"Unknown executor string {executor!r} expected one of {names} (or mixed case equivalent)"
                    if isinstance(executor, str)
                    else f"Unknown executor '{executor}' ({type(executor)}) expected an instance of "
                    f"[<class 'concurrent.futures._base.Executor'>] or one of the strings {names}"
                )
                raise exc.InvalidEngineOption(
                    message,
                    engine=self.kind,
                    option="executor",
                )
            try:
                _green.require()
            except ImportError as err:
                raise exc.InvalidEngineOption(str(err), engine=self.kind, option="executor") from err
            self._green = True

    def _make_driver(self) -> Driver:
        if self._executor is None and not self._processes and not self._green:
            return _ThreadsDriver(self._workers or _threads.default_thread_count())
        if self._dask and self._executor is not None:
            from flowkit.engines import _dask  # only a Dask client's executor needs it

            return _dask.DaskDriver(self._executor)
        from flowkit.engines import _executor_driver  # only an executor= option needs it (first-load cost)

        return _executor_driver.ExecutorDriver(self._executor, self._processes, self._workers, self._green)
