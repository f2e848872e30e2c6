"""The asyncio engine: a whole flow's calls run on one event loop.

For I/O-bound flows. ``async def`` tasks run as coroutines on the loop, many at a
time; plain (synchronous) tasks run on flowkit's own daemon threads, up to
``max_workers`` of them (never the loop's default executor: see
:func:`_in_pool_thread`), so they never block it. The engine's own
bookkeeping stays in the thread that called :meth:`~AsyncioEngine.run`; from
async code, ``await engine.run_async()`` runs the flow's coroutines on *your*
loop while the bookkeeping runs in a helper thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit import exceptions as exc
from flowkit._utils.asyncio_bridge import EventLoopThread
from flowkit._utils.reflection import is_coroutine_function
from flowkit.engines import _threads, _timeouts
from flowkit.engines._compiler import Node
from flowkit.engines._completions import RAISE, Completions
from flowkit.engines._engine import ActionEngine, DispatchingDriver, positive_workers
from flowkit.engines._runtime import Call, Runtime
from flowkit.engines._threads import WorkerThreads
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator
    from concurrent.futures import Future

    from flowkit.engines._protocols import Driver

__all__ = ["AsyncioEngine"]


def _wants_loop(atom: Any, action: int) -> bool:
    """Tell whether the atom's method makes a coroutine (else it runs in a thread).

    Its own ``async def``, a function task's ``async def`` function (its
    ``_execute``/``_revert``), or a map or reduce task's ``async def`` functor
    (its execute returns a coroutine awaiting each call: ``_awaits``). One
    sent to a thread came back as a coroutine that a timed call then awaited
    on flowkit's own loop, not the caller's.
    """
    name = "revert" if action == 1 else "execute"
    method = getattr(type(atom), name, None)
    inner = getattr(atom, "_" + name, None)
    if is_coroutine_function(method) or (inner is not None and is_coroutine_function(inner)):
        return True
    return action != 1 and getattr(atom, "_awaits", False) is True


async def _run_on_loop(
    call: Call,
    threads: WorkerThreads | None,
    limit: asyncio.Semaphore | None,
    timed: _timeouts.TimedCall | None = None,
) -> tuple[bool | None, Any]:
    """Make ``call`` on the loop, or on one of ``threads`` (a plain call); its outcome for the engine."""
    fn, kwargs = call
    try:
        if limit is not None:
            await limit.acquire()
        try:
            if timed is not None:
                timed.arm()  # a timed call's time starts when it runs, not while it waits for max_workers
            value = fn(**kwargs) if threads is None else await _in_pool_thread(threads, fn, kwargs)
            if asyncio.iscoroutine(value):
                value = await (value if timed is None else _abandonable(_timeouts.watched(value, timed)))
        finally:
            if limit is not None:
                limit.release()
    except Exception:
        return False, Failure()
    except asyncio.CancelledError as err:
        current = asyncio.current_task()
        if current is not None and not current.cancelling():
            # Raised by the task itself, not a cancel of its call (a timeout, a
            # cancelled run_async): a failure, as on the other engines.
            return False, Failure._of_any()
        return RAISE, err
    except BaseException as err:
        # An interrupt inside the loop would kill the loop thread; carry it to the engine.
        return RAISE, err
    return True, value


async def _in_pool_thread(threads: WorkerThreads, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(**kwargs)`` on one of ``threads``; return what it returns, or raise what it raises.

    For the engine's plain calls and for :meth:`AsyncioEngine.run_async`'s
    bookkeeping: on flowkit's own daemon threads, not on the loop's default
    executor (``asyncio.to_thread``). That executor's size (cpus + 4) capped
    how many plain tasks ran at once, whatever ``max_workers`` said. Under
    ``run_async`` it is the application's: the flow's calls took its threads,
    and each run's bookkeeping held one for the whole run, so as many runs at
    once as it has threads left no thread for any plain task, and every run
    hung. And a timed call abandoned when it times out runs on, holding its
    thread for good: the calls queued behind it never started, so never timed
    out, and a process cannot exit before that executor's threads end. The
    pool lends a thread for each abandoned call (see :meth:`WorkerThreads.lend`).

    The call runs in a copy of the caller's context, as ``asyncio.to_thread``
    runs it. Cancelled while still queued for a thread (a stopped run), the
    call never starts, as a call queued on an executor is cancelled with its
    future.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()
    taken = threading.Lock()  # by the thread as it starts the call, or by a cancel before

    def run() -> None:
        if not taken.acquire(blocking=False):
            return  # cancelled before a thread was free
        error: BaseException | None = None
        value: Any = None
        try:
            value = context.run(fn, **kwargs)
        except BaseException as err:  # handed to the awaiting coroutine, as to_thread does
            error = err
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: an abandoned call
            loop.call_soon_threadsafe(_set_ended, ended, value, error)

    threads.submit(run)
    try:
        return await ended
    except asyncio.CancelledError:
        taken.acquire(blocking=False)
        raise


def _set_ended(ended: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if ended.done():  # cancelled: the call timed out, or the run stopped
        return
    if error is None:
        ended.set_result(value)
    else:
        ended.set_exception(error)


async def _abandonable(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` in a task of its own, so that cancelling the caller stops the wait at once.

    A timed coroutine that swallows its cancellation goes on, abandoned; awaited
    directly, its caller went on waiting for it too, holding a ``max_workers``
    slot for as long as it ran, and a run with one slot hung.
    """
    inner = asyncio.ensure_future(coro)
    try:
        await asyncio.wait((inner,))
    except asyncio.CancelledError:
        inner.cancel()
        # Its outcome, if it ever comes, is logged by watched(): not left "never retrieved".
        inner.add_done_callback(_retrieved)
        raise
    return inner.result()


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _tracked(
    calls: dict[asyncio.Task[Any], _timeouts.TimedCall], timed: _timeouts.TimedCall, coro: Any
) -> Any:
    """Run ``coro`` (a timed thread call), known to ``calls`` while it runs."""
    task = asyncio.current_task()
    assert task is not None
    calls[task] = timed
    try:
        return await coro
    finally:
        del calls[task]


async def _settle(calls: dict[asyncio.Task[Any], _timeouts.TimedCall]) -> None:
    """Let the timed thread calls whose outcome (or deadline) came end their tasks.

    Such a call reports through its TimedCall from the thread, so the run may
    end before the loop has seen the thread return (or an abandoned call's
    cancellation land): closing the loop then would leave the task pending
    ("Task was destroyed but it is pending!"). They end at once; calls still
    running with no outcome (an interrupted run) are not waited for.
    """
    waiting = [task for task, timed in list(calls.items()) if timed.settled]
    if waiting:
        await asyncio.wait(waiting)


class _LoopDriver(DispatchingDriver):
    """Hands every ready atom to the event loop, as a task of its own."""

    bridge: EventLoopThread

    def __init__(self, bridge: EventLoopThread, max_concurrency: int | None) -> None:
        super().__init__()
        self.bridge = bridge
        self._max = max_concurrency
        self._limit: asyncio.Semaphore | None = None
        #: The loop's tasks of timed thread calls still running (read and written on the loop).
        self._thread_calls: dict[asyncio.Task[Any], _timeouts.TimedCall] = {}
        #: Set by :meth:`stop`: what every call not yet started ends with instead.
        self._stopped: BaseException | None = None
        #: The asyncio tasks of the calls running now (touched on the loop only).
        self._running: set[asyncio.Task[Any]] = set()
        #: How many threads plain (synchronous) calls get: ``max_workers``, else as
        #: many as the parallel engine starts (see _in_pool_thread).
        self._size = max_concurrency or _threads.default_thread_count()
        #: Those threads: a warm pool borrowed for the run (see :meth:`open`).
        self._threads: WorkerThreads | None = None

    def stop(self, error: BaseException) -> None:
        """End the run with ``error`` (any thread): cancel the calls, start no more.

        Every call, running or not yet started, then hands ``error`` to the
        engine, which raises it as it raises an interrupt.
        """
        self._stopped = error
        self.bridge.loop.call_soon_threadsafe(self._cancel_running)

    def _cancel_running(self) -> None:
        for running in list(self._running):
            running.cancel()

    async def _guarded(self, coro: Coroutine[Any, Any, tuple[bool | None, Any]]) -> tuple[bool | None, Any]:
        if self._stopped is not None:
            coro.close()
            return RAISE, self._stopped
        current = asyncio.current_task()
        assert current is not None
        self._running.add(current)
        try:
            return await coro
        finally:
            self._running.discard(current)

    def _submit(self, coro: Coroutine[Any, Any, tuple[bool | None, Any]]) -> Future[Any]:
        return self.bridge.submit(self._guarded(coro))

    def open(self, runtime: Runtime) -> None:
        # Borrowed, as the parallel engine's are: starting threads anew for each
        # run doubled the cost of a small flow of plain tasks.
        self._threads = _threads.borrow(self._size)
        loop = self.bridge.loop
        if self._max:
            self._limit = asyncio.run_coroutine_threadsafe(_semaphore(self._max), loop).result()

    def dispatch(self, done: Completions, node: Node, action: int, call: Call) -> None:
        threads = None if _wants_loop(node.atom, action) else self._threads
        future = self._submit(_run_on_loop(call, threads, self._limit))
        future.add_done_callback(functools.partial(done.put_future, node, action))

    def dispatch_timed(self, runtime: Runtime, node: Node, action: int, call: Call, seconds: float) -> None:
        timed = runtime.timed_calls().call(self._done, node, action, seconds)
        if _wants_loop(node.atom, action):
            # Cancelling the future cancels the coroutine's task on the loop.
            future = self._submit(_run_on_loop(call, None, self._limit, timed))
            future.add_done_callback(functools.partial(timed.put_future, node, action))
        else:
            # A plain task runs in a thread and reports through ``timed`` itself, so
            # its late outcome is logged when the thread returns; cancelling the
            # future only frees its max_workers slot: the thread cannot be stopped.
            threads = self._threads
            assert threads is not None
            runtime.timed_calls().on_abandoned = threads.lend  # an abandoned call keeps its thread
            thread_call = Call(
                _timeouts.run_timed,
                {"call": timed, "node": node, "action": action, "fn": call.fn, "kwargs": call.kwargs},
            )
            # Tracked outside the guard: a call stopped before it starts closes its
            # coroutine unstarted, and still leaves the dict as it ends.
            guarded = self._guarded(_run_on_loop(thread_call, threads, self._limit))
            future = self.bridge.submit(_tracked(self._thread_calls, timed, guarded))
        timed.attach(future.cancel)

    def close(self) -> None:
        bridge = self.bridge
        if self._thread_calls and bridge.owned:
            with contextlib.suppress(Exception):  # closing goes on whatever happens here
                asyncio.run_coroutine_threadsafe(_settle(self._thread_calls), bridge.loop).result()
        bridge.close()
        threads, self._threads = self._threads, None
        if threads is None:
            return
        if threads.idle == threads.started:
            _threads.give_back(threads)
        else:
            # A call still runs (abandoned on its timeout, or left by a stopped
            # run): its thread is not reusable, so the pool ends as its calls end.
            threads.stop()


def _check_usable(loop: asyncio.AbstractEventLoop) -> None:
    """Refuse a given loop that could never run the flow's calls, rather than wait forever.

    The engine hands coroutines to ``loop`` from its own thread and blocks until
    they finish, so the loop must be running in *another* thread.
    """
    problem = None
    if loop.is_closed():
        problem = "is closed"
    elif not loop.is_running():
        problem = "is not running: run it in another thread (loop.run_forever()) before run()"
    else:
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            problem = (
                "is the loop of the thread calling run(), which run() would block: "
                "from a coroutine, await engine.run_async() instead"
            )
    if problem is not None:
        raise exc.InvalidEngineOption(
            f"the event loop given as loop= {problem}", engine="asyncio", option="loop"
        )


def _warn_if_blocking_a_loop(engine: AsyncioEngine, method: str) -> None:
    """Warn when the blocking ``run()``/``run_iter()`` is called by a coroutine, naming the flow.

    The calling thread's loop then runs nothing else until the flow ends: every
    other task on it stalls, and a call the flow waits for that needs that loop
    never comes. ``run_async()`` is the way from async code. A warning, not a
    refusal: the flow still runs (on a loop of its own), so code that does this
    (a notebook cell, a nested run in an async task, code written for the other
    engines) keeps working. A ``loop=`` that is the caller's own loop could
    never run the flow, so :func:`_check_usable` refuses that one instead.
    """
    # The low-level getter: None outside a loop, where get_running_loop() raises.
    running = asyncio._get_running_loop()
    if running is None or running is engine._loop:
        return
    warnings.warn(
        f"engine.{method}() of flow '{engine.storage.flow_name}' was called from a coroutine: "
        "it blocks that coroutine's event loop until the flow ends (nothing else runs on it "
        "meanwhile); from async code, await engine.run_async() instead",
        RuntimeWarning,
        stacklevel=_stacklevel_outside_flowkit(),
    )


def _stacklevel_outside_flowkit() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside flowkit.

    ``engine.run()`` and ``engines.run(...)`` reach the check through different
    numbers of flowkit's frames; the user's line is the one to show.
    """
    level, frame = 1, sys._getframe(1)  # the warning's caller is level 1
    while frame.f_back is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "flowkit" and not module.startswith("flowkit."):
            break
        frame = frame.f_back
        level += 1
    return level


async def _semaphore(count: int) -> asyncio.Semaphore:
    return asyncio.Semaphore(count)


class AsyncioEngine(ActionEngine):
    """Runs atoms concurrently on an event loop (``engine="asyncio"``).

    Options (besides the common ones): ``max_workers`` limits how many calls are
    in flight at once (default: no limit), ``loop`` runs the coroutines on a given
    running loop instead of a private one.
    """

    kind: ClassVar[str] = "asyncio"
    OPTIONS: ClassVar[frozenset[str]] = ActionEngine.OPTIONS | {"max_workers", "loop"}

    def _check_options(self) -> None:
        self._workers = positive_workers(self._options, self.kind)
        loop = self._options.get("loop")
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise exc.InvalidEngineOption(
                f"loop must be an event loop, not {loop!r}", engine=self.kind, option="loop"
            )
        self._loop: asyncio.AbstractEventLoop | None = loop
        # How run_async() stops a run it was cancelled during (see run_async).
        self._stop_lock = threading.Lock()
        self._driver: _LoopDriver | None = None
        self._stop_error: BaseException | None = None

    def _make_driver(self) -> Driver:
        if self._loop is not None:
            _check_usable(self._loop)
        driver = _LoopDriver(EventLoopThread(self._loop), self._workers)
        with self._stop_lock:
            self._driver = driver
            if self._stop_error is not None:  # cancelled before the run got this far
                driver.stop(self._stop_error)
        return driver

    def run(self, timeout: float | None = None) -> None:
        """Run the flow to an end state, blocking the calling thread until then.

        Called from a coroutine, it blocks that coroutine's event loop as well,
        and warns (:class:`RuntimeWarning` naming the flow): await
        :meth:`run_async` there instead. The flow still runs, so code written
        this way keeps working.
        """
        _warn_if_blocking_a_loop(self, "run")
        super().run(timeout)

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        """Run the flow, yielding each engine state; warns as :meth:`run` does from a coroutine."""
        _warn_if_blocking_a_loop(self, "run_iter")
        return super().run_iter(timeout)

    def _stop_run(self, error: BaseException) -> None:
        """Stop the run under way, or the one about to start, with ``error``."""
        with self._stop_lock:
            self._stop_error = error
            if self._driver is not None:
                self._driver.stop(error)

    async def run_async(self, timeout: float | None = None) -> None:
        """Run the flow from async code: coroutines run on the current loop.

        Cancelling the awaiting coroutine (``asyncio.wait_for``, a cancelled
        request handler) stops the run as an interrupt does: the running calls
        are cancelled, nothing more starts, and the :class:`asyncio.CancelledError`
        is raised once the engine has stopped, leaving the flow and the
        interrupted atoms ``RUNNING`` for a later run to carry on.

        Raises:
            ExecutionFailure: the engine is running already (one run at a time,
                as with :meth:`run`).
        """
        # Taken here, before anything about the run is set: a second call while a
        # run was under way reset the first run's stop before it failed, and
        # cancelling the first run then no longer stopped it.
        self._take_run_lock()
        began: list[bool] = []  # the helper thread releases the lock once it has begun
        try:
            self._loop = asyncio.get_running_loop()
            self._driver, self._stop_error = None, None
            runner = asyncio.ensure_future(
                _in_pool_thread(
                    _threads.bookkeeping_threads(), self._run_releasing, {"timeout": timeout, "began": began}
                )
            )
            try:
                await asyncio.shield(runner)
            except asyncio.CancelledError:
                self._stop_run(asyncio.CancelledError())
                # No call of this run outlives the cancellation, however often it
                # comes; what the run raised on its way out says less than it.
                while not runner.done():
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(runner)
                raise
        finally:
            if not began:  # the helper thread never ran (it would have released the lock)
                self._end_async_run()

    def _run_releasing(self, timeout: float | None, began: list[bool]) -> None:
        """Run the flow (in a helper thread) holding the run lock run_async took; then let it go."""
        began.append(True)
        try:
            self._run_held(timeout)
        finally:
            self._end_async_run()

    def _end_async_run(self) -> None:
        """Forget the run_async run's loop and stop, and release the run lock: the engine is free."""
        self._loop = self._options.get("loop")
        with self._stop_lock:
            self._driver, self._stop_error = None, None
        self._lock.release()
